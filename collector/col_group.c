/*
 * col_group: the watched member set of ldap.group_dn (see col_group.h).
 */
#include "col_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "col_control.h"
#include "cs_buf.h"
#include "cs_log.h"

#define FAC "group"

/* One member: the DN as listed and its normal form (the sort and compare key). */
typedef struct member {
    char *dn;
    char *norm;
} member;

/* A group of the closure: ldap.group_dn first, then (ldap.group_nested) the nested groups found. */
typedef struct watched {
    char *dn;
    char *norm;
    char stamp[COL_GROUP_MAX_STAMP]; /* change stamp at the last read; WATCH_MISSING: did not exist */
} watched;

/* The stamp kept for a nested group that did not exist when the closure was read. */
#define WATCH_MISSING "-"
/* Object classes of a group (AD, OpenLDAP groupOfNames, groupOfUniqueNames). */
/* Most pages of the group listing (ldap.page_size entries each). */
#define MAX_LIST_PAGES 100000L
#define GROUP_CLASSES "(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"

struct col_group {
    char *dn;
    bool nested;                   /* ldap.group_nested */
    bool read;                     /* a member set was read at least once */
    char csn[COL_GROUP_MAX_STAMP]; /* ldap.group_dn's entryCSN, "" when the server has none */
    member *m;                     /* sorted by norm, no duplicates; nested: the non-group members */
    size_t n;
    watched *w; /* the closure; w[0] is ldap.group_dn */
    size_t n_w;
    char sha[CS_SHA256_HEX_LEN];
    char **joined, **left; /* DNs, owned */
    size_t n_joined, n_left;
};

static void members_free(member *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].dn);
        free(m[i].norm);
    }
    free(m);
}

static void watched_free(watched *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(w[i].dn);
        free(w[i].norm);
    }
    free(w);
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void diff_clear(col_group *g)
{
    strs_free(g->joined, g->n_joined);
    strs_free(g->left, g->n_left);
    g->joined = g->left = NULL;
    g->n_joined = g->n_left = 0;
}

cs_err *col_group_new(const char *group_dn, bool nested, col_group **out)
{
    *out = NULL;
    if (group_dn == NULL || group_dn[0] == '\0')
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "ldap.group_dn is empty: set a group DN or remove the key");
    col_group *g = calloc(1, sizeof *g);
    if (g == NULL || (g->dn = strdup(group_dn)) == NULL) {
        free(g);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory creating the group watcher");
    }
    g->nested = nested;
    *out = g;
    return NULL;
}

void col_group_free(col_group *g)
{
    if (g == NULL)
        return;
    diff_clear(g);
    members_free(g->m, g->n);
    watched_free(g->w, g->n_w);
    free(g->dn);
    free(g);
}

cs_err *col_group_dn_normalize(const char *dn, char **out)
{
    LDAPDN parsed = NULL;
    char *s = NULL;

    *out = NULL;
    if (ldap_str2dn(dn, &parsed, LDAP_DN_FORMAT_LDAP) == LDAP_SUCCESS &&
        ldap_dn2str(parsed, &s, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS && s != NULL) {
        *out = strdup(s);
    } else {
        *out = strdup(dn); /* not a DN libldap reads: compare as written, case-folded */
    }
    ldap_memfree(s);
    ldap_dnfree(parsed);
    if (*out == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory normalising a DN");
    for (char *p = *out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return NULL;
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const member *)a)->norm, ((const member *)b)->norm);
}

/* Appends one member value: uniqueMember's optional "#'0101'B" UID suffix (RFC 4517) is cut off. */
static cs_err *add_member(member **m, size_t *n, size_t *cap, const struct berval *v, const char *group)
{
    if (*n >= COL_GROUP_MAX_MEMBERS)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                          "ldap.group_dn %s has over %u members: scope so many users by ldap.filter instead",
                          group, COL_GROUP_MAX_MEMBERS);
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        member *nm = realloc(*m, nc * sizeof *nm);
        if (nm == NULL)
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading the members of %s", group);
        *m = nm;
        *cap = nc;
    }
    size_t len = v->bv_len;
    if (len >= 4 && v->bv_val[len - 1] == 'B' && v->bv_val[len - 2] == '\'') {
        for (size_t i = len - 2; i > 0; i--) {
            if (v->bv_val[i - 1] == '#' && i < len - 2 && v->bv_val[i] == '\'') {
                len = i - 1;
                break;
            }
        }
    }
    char *dn = malloc(len + 1);
    if (dn == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading the members of %s", group);
    memcpy(dn, v->bv_val, len);
    dn[len] = '\0';
    char *norm = NULL;
    cs_err *err = col_group_dn_normalize(dn, &norm);
    if (err) {
        free(dn);
        return err;
    }
    (*m)[*n].dn = dn;
    (*m)[*n].norm = norm;
    (*n)++;
    return NULL;
}

/* "member;range=0-1499" -> true, *next = 1500; "member;range=1500-*" -> true, *next = -1 (last round). */
static bool parse_range(const char *attr, long long *next)
{
    const char *r = strchr(attr, ';');
    const char *dash = r != NULL && strncasecmp(r, ";range=", 7) == 0 ? strchr(r, '-') : NULL;
    *next = -1;
    if (dash == NULL)
        return false;
    if (dash[1] != '*') {
        char *end = NULL;
        long long hi = strtoll(dash + 1, &end, 10);
        if (end != dash + 1 && hi >= 0)
            *next = hi + 1;
    }
    return true;
}

/*
 * Reads the stamp of the group `dn` and, when `with_members`, every member value (all ranges) into a new
 * *m / *n. A group that does not exist sets *missing (m stays empty); it is an error only for `top`
 * (ldap.group_dn itself): a nested group deleted meanwhile just drops out of the closure.
 */
static cs_err *read_group(const char *dn, col_ldap *c, bool top, bool with_members,
                          char stamp[COL_GROUP_MAX_STAMP], char csn[COL_GROUP_MAX_STAMP], member **m,
                          size_t *n, bool *missing)
{
    LDAP *ld = col_ldap_handle(c);
    long long ms = col_ldap_timeout_ms(c);
    size_t cap = 0;
    long long from = 0;
    cs_err *err = NULL;

    stamp[0] = csn[0] = '\0';
    *missing = false;
    for (int round = 0; round < COL_GROUP_MAX_RANGE_ROUNDS; round++) {
        char range[64];
        snprintf(range, sizeof range, "member;range=%lld-*", from);
        /* The first round also reads the stamps; later rounds only the next range of `member`. */
        const char *first[] = {"entryCSN", "uSNChanged", "member", "uniqueMember", NULL};
        const char *stamps[] = {"entryCSN", "uSNChanged", NULL};
        const char *later[] = {range, NULL};
        const char *const *attrs = round > 0 ? later : with_members ? first : stamps;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        LDAPMessage *res = NULL, *e;
        BerElement *ber = NULL;
        char *a;
        long long next = -1;
        int rc = ldap_search_ext_s(ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", col_ldap_attrs(attrs), 0, NULL,
                                   NULL, &tv, 1, &res);
        if (rc == LDAP_NO_SUCH_OBJECT) {
            ldap_msgfree(res);
            *missing = true;
            if (!top)
                return NULL;
            return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_RETRIABLE,
                              "ldap.group_dn %s does not exist on %s: fix the DN (or create the group)", dn,
                              col_ldap_url(c));
        }
        if (rc != LDAP_SUCCESS) {
            char op[600];
            snprintf(op, sizeof op, "reading the group %.500s", dn);
            ldap_msgfree(res);
            return col_ldap_error(c, op, rc);
        }
        e = ldap_first_entry(ld, res);
        for (a = e ? ldap_first_attribute(ld, e, &ber) : NULL; a != NULL && err == NULL;
             a = ldap_next_attribute(ld, e, ber)) {
            struct berval **vals = ldap_get_values_len(ld, e, a);
            bool is_member = strncasecmp(a, "member", 6) == 0 && (a[6] == '\0' || a[6] == ';');
            if (strcasecmp(a, "entryCSN") == 0 || strcasecmp(a, "uSNChanged") == 0) {
                if (vals && vals[0] && vals[0]->bv_len < COL_GROUP_MAX_STAMP) {
                    char *dst = strcasecmp(a, "entryCSN") == 0 ? csn : stamp;
                    memcpy(dst, vals[0]->bv_val, vals[0]->bv_len);
                    dst[vals[0]->bv_len] = '\0';
                }
            } else if (is_member || strcasecmp(a, "uniqueMember") == 0) {
                if (is_member && a[6] == ';' && !parse_range(a, &next))
                    next = -1;
                for (size_t i = 0; m != NULL && vals && vals[i] && err == NULL; i++)
                    err = add_member(m, n, &cap, vals[i], dn);
            }
            ldap_value_free_len(vals);
            ldap_memfree(a);
        }
        ber_free(ber, 0);
        ldap_msgfree(res);
        if (err)
            return err;
        if (stamp[0] == '\0')
            snprintf(stamp, COL_GROUP_MAX_STAMP, "%s", csn);
        if (!with_members || next < 0)
            return NULL;
        from = next;
    }
    return cs_err_new(CS_ERR_LDAP, 0, "the group %s: ranged retrieval of member did not end after %d rounds",
                      dn, COL_GROUP_MAX_RANGE_ROUNDS);
}

static cs_err *push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory listing membership changes");
    *v = nv;
    if ((nv[*n] = strdup(s)) == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory listing membership changes");
    (*n)++;
    return NULL;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The normal forms of every group object (GROUP_CLASSES) in the naming context of ldap.group_dn, sorted:
 * what tells a member that is a group from one that is not, with one paged DN-only search instead of a
 * read per member. Caller frees with strs_free().
 */
static cs_err *list_groups(const col_group *g, col_ldap *c, char ***out, size_t *n_out)
{
    static const char *const attrs[] = {"1.1", NULL};
    LDAP *ld = col_ldap_handle(c);
    const char *base = col_ldap_naming_context_of(c, g->dn);
    struct berval *cookie = NULL;
    long long ms = col_ldap_timeout_ms(c);
    int page_size = col_ldap_config(c) != NULL ? col_ldap_config(c)->ldap_page_size : 500;
    char **v = NULL;
    size_t n = 0, cap = 0;
    cs_err *err = NULL;
    long pages;

    *out = NULL;
    *n_out = 0;
    if (base == NULL)
        base = col_ldap_default_naming_context(c);
    if (base == NULL)
        base = g->dn; /* no naming context advertised: at least the groups below it */
    for (pages = 0; pages < MAX_LIST_PAGES && err == NULL; pages++) {
        LDAPControl *page = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL, *resp;
        LDAPMessage *res = NULL, *e;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        struct berval empty = {0, NULL};
        int result = LDAP_SUCCESS;
        int rc = ldap_create_page_control(ld, page_size, cookie != NULL ? cookie : &empty, 1, &page);
        if (rc != LDAP_SUCCESS) {
            err = col_ldap_error(c, "creating the paged-results control", rc);
            break;
        }
        sctrls[0] = page;
        rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, GROUP_CLASSES, col_ldap_attrs(attrs), 0, sctrls,
                               NULL, &tv, LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS) {
            char op[600];
            snprintf(op, sizeof op, "listing the groups under %.500s (ldap.group_nested)", base);
            err = col_ldap_error(c, op, rc);
            ldap_msgfree(res);
            break;
        }
        for (e = ldap_first_entry(ld, res); e != NULL && err == NULL; e = ldap_next_entry(ld, e)) {
            char *dn = ldap_get_dn(ld, e);
            if (dn == NULL)
                continue;
            if (n >= COL_GROUP_MAX_MEMBERS) {
                err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                                 "ldap.group_nested: over %u groups under %s; set ldap.group_nested: false",
                                 COL_GROUP_MAX_MEMBERS, base);
            } else if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                char **nv = realloc(v, nc * sizeof *nv);
                if (nv == NULL)
                    err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory listing the groups under %s", base);
                else
                    v = nv, cap = nc;
            }
            if (err == NULL && (err = col_group_dn_normalize(dn, &v[n])) == NULL)
                n++;
            ldap_memfree(dn);
        }
        if (err == NULL) {
            rc = ldap_parse_result(ld, res, &result, NULL, NULL, NULL, &rctrls, 0);
            if (rc != LDAP_SUCCESS || result != LDAP_SUCCESS)
                err = col_ldap_error(c, "listing the groups (ldap.group_nested)",
                                     rc != LDAP_SUCCESS ? rc : result);
        }
        ldap_msgfree(res);
        ber_bvfree(cookie);
        cookie = NULL;
        resp = err == NULL ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL) : NULL;
        if (resp != NULL) {
            struct berval next = {0, NULL};
            err = cs_err_wrap(col_control_parse_page(ld, resp, COL_CONTROL_MAX_PAGE_COOKIE, &next), "%s",
                              col_ldap_url(c));
            if (err == NULL && next.bv_len > 0)
                cookie = ber_bvdup(&next);
            ber_memfree(next.bv_val);
        }
        ldap_controls_free(rctrls);
        if (cookie == NULL)
            break;
    }
    ber_bvfree(cookie);
    if (err == NULL && pages == MAX_LIST_PAGES)
        err = cs_err_new(CS_ERR_LDAP, 0, "listing the groups under %s did not end after %ld pages", base,
                         MAX_LIST_PAGES);
    if (err) {
        strs_free(v, n);
        return err;
    }
    if (n > 0)
        qsort(v, n, sizeof *v, str_cmp);
    *out = v;
    *n_out = n;
    return NULL;
}

/* Appends a group to the closure (BFS queue) unless it is there already (a cycle, or two paths). */
static cs_err *closure_add(watched **w, size_t *n, size_t *cap, const char *dn, const char *norm, bool *added)
{
    *added = false;
    /* Linear: the closure holds at most COL_GROUP_MAX_NESTED groups. */
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*w)[i].norm, norm) == 0)
            return NULL;
    if (*n >= COL_GROUP_MAX_NESTED)
        return cs_err_new(
            CS_ERR_CONFIG, CS_ERR_F_FATAL,
            "ldap.group_nested: the groups nested in ldap.group_dn exceed %d (at %s): flatten the "
            "nesting or set ldap.group_nested: false",
            COL_GROUP_MAX_NESTED, dn);
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        watched *nw = realloc(*w, nc * sizeof *nw);
        if (nw == NULL)
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory expanding nested groups");
        *w = nw;
        *cap = nc;
    }
    memset(&(*w)[*n], 0, sizeof **w);
    if (((*w)[*n].dn = strdup(dn)) == NULL || ((*w)[*n].norm = strdup(norm)) == NULL) {
        free((*w)[*n].dn);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory expanding nested groups");
    }
    (*n)++;
    *added = true;
    return NULL;
}

/*
 * Reads the closure: ldap.group_dn's members and, with `nested`, breadth first the members of every
 * member that is a group (each group once: cycles end there). The non-group members go to *m / *n
 * (unsorted, may repeat); the groups with their stamps to *w / *n_w (w[0] = ldap.group_dn).
 */
static cs_err *read_closure(col_group *g, col_ldap *c, char csn[COL_GROUP_MAX_STAMP], member **m, size_t *n,
                            watched **w, size_t *n_w)
{
    char **groups = NULL;
    size_t n_groups = 0, cap_w = 0, cap_m = 0, n_cycles = 0;
    char *top_norm = NULL;
    cs_err *err = NULL;
    bool added = false;

    if ((err = col_group_dn_normalize(g->dn, &top_norm)) ||
        (err = closure_add(w, n_w, &cap_w, g->dn, top_norm, &added)))
        goto cleanup;
    if (g->nested && (err = list_groups(g, c, &groups, &n_groups)))
        goto cleanup;
    for (size_t i = 0; i < *n_w && err == NULL; i++) {
        member *gm = NULL;
        size_t gn = 0;
        char gcsn[COL_GROUP_MAX_STAMP];
        bool missing = false;
        err = read_group((*w)[i].dn, c, i == 0, true, (*w)[i].stamp, gcsn, &gm, &gn, &missing);
        if (i == 0)
            snprintf(csn, COL_GROUP_MAX_STAMP, "%s", gcsn);
        if (missing)
            snprintf((*w)[i].stamp, COL_GROUP_MAX_STAMP, "%s", WATCH_MISSING);
        for (size_t j = 0; j < gn && err == NULL; j++) {
            const char *key = gm[j].norm;
            if (g->nested && n_groups > 0 &&
                bsearch(&key, groups, n_groups, sizeof *groups, str_cmp) != NULL) {
                if ((err = closure_add(w, n_w, &cap_w, gm[j].dn, gm[j].norm, &added)) == NULL && !added)
                    n_cycles++;
                continue;
            }
            if (*n >= COL_GROUP_MAX_MEMBERS) {
                err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                                 "ldap.group_dn %s has over %u members with its nested groups: scope so many "
                                 "users by ldap.filter instead",
                                 g->dn, COL_GROUP_MAX_MEMBERS);
                break;
            }
            if (*n == cap_m) {
                size_t nc = cap_m ? cap_m * 2 : 64;
                member *nm = realloc(*m, nc * sizeof *nm);
                if (nm == NULL) {
                    err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading the members of %s", g->dn);
                    break;
                }
                *m = nm;
                cap_m = nc;
            }
            (*m)[(*n)++] = gm[j]; /* moved: the strings now belong to *m */
            gm[j].dn = gm[j].norm = NULL;
        }
        members_free(gm, gn);
    }
    if (err == NULL && g->nested)
        cs_log(CS_LOG_DEBUG, FAC,
               "group %s: %zu nested groups read, %zu repeated memberships (cycles or "
               "two paths) cut",
               g->dn, *n_w - 1, n_cycles);
cleanup:
    free(top_norm);
    strs_free(groups, n_groups);
    return err;
}

/* True when a stamp of the closure moved since the last read (or a group appeared or vanished). */
static cs_err *closure_moved(const col_group *g, col_ldap *c, bool *moved)
{
    *moved = false;
    for (size_t i = 0; i < g->n_w && !*moved; i++) {
        char stamp[COL_GROUP_MAX_STAMP], csn[COL_GROUP_MAX_STAMP];
        bool missing = false;
        cs_err *err = read_group(g->w[i].dn, c, i == 0, false, stamp, csn, NULL, NULL, &missing);
        if (err)
            return err;
        if (missing)
            snprintf(stamp, sizeof stamp, "%s", WATCH_MISSING);
        /* A server without a stamp (neither entryCSN nor uSNChanged): read the members every time. */
        *moved = stamp[0] == '\0' || strcmp(stamp, g->w[i].stamp) != 0;
    }
    return NULL;
}

cs_err *col_group_refresh(col_group *g, col_ldap *c, bool force, bool *changed)
{
    char csn[COL_GROUP_MAX_STAMP];
    member *m = NULL;
    watched *w = NULL;
    size_t n = 0, k = 0, n_w = 0;
    cs_err *err = NULL;
    cs_buf b;

    *changed = false;
    diff_clear(g);
    if (g->read && !force) {
        bool moved = false;
        if ((err = closure_moved(g, c, &moved)) || !moved)
            return err; /* unchanged: the member values are not read again */
    }
    csn[0] = '\0';
    if ((err = read_closure(g, c, csn, &m, &n, &w, &n_w)))
        goto cleanup;
    if (n > 0)
        qsort(m, n, sizeof *m, member_cmp);
    /* Drop duplicates (member and uniqueMember naming the same DN, or one user in two nested groups). */
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && strcmp(m[k - 1].norm, m[i].norm) == 0) {
            free(m[i].dn);
            free(m[i].norm);
            continue;
        }
        m[k++] = m[i];
    }
    n = k;
    if (g->read) {
        size_t i = 0, j = 0;
        while (err == NULL && (i < g->n || j < n)) {
            int cmp = i == g->n ? 1 : j == n ? -1 : strcmp(g->m[i].norm, m[j].norm);
            if (cmp < 0)
                err = push(&g->left, &g->n_left, g->m[i++].dn);
            else if (cmp > 0)
                err = push(&g->joined, &g->n_joined, m[j++].dn);
            else
                i++, j++;
        }
        if (err)
            goto cleanup;
        *changed = g->n_joined > 0 || g->n_left > 0;
    }
    cs_buf_init(&b, (size_t)COL_GROUP_MAX_MEMBERS * 1024u);
    for (size_t i = 0; i < n; i++) {
        cs_buf_add_str(&b, m[i].norm);
        cs_buf_add_str(&b, "\n");
    }
    if (g->nested) {
        /* The closure too (sorted): another nesting with the same users is another scope to explain. */
        char **norms = calloc(n_w, sizeof *norms);
        if (norms == NULL) {
            cs_buf_free(&b);
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory hashing the nested groups");
            goto cleanup;
        }
        for (size_t i = 0; i < n_w; i++)
            norms[i] = w[i].norm;
        qsort(norms, n_w, sizeof *norms, str_cmp);
        cs_buf_add_str(&b, "nested groups:\n");
        for (size_t i = 0; i < n_w; i++) {
            cs_buf_add_str(&b, norms[i]);
            cs_buf_add_str(&b, "\n");
        }
        free(norms);
    }
    cs_sha256_hex(cs_buf_str(&b), strlen(cs_buf_str(&b)), g->sha);
    cs_buf_free(&b);
    members_free(g->m, g->n);
    g->m = m;
    g->n = n;
    m = NULL;
    n = 0;
    watched_free(g->w, g->n_w);
    g->w = w;
    g->n_w = n_w;
    w = NULL;
    n_w = 0;
    g->read = true;
    snprintf(g->csn, sizeof g->csn, "%s", csn);
    cs_log(CS_LOG_DEBUG, FAC, "group %s read: %zu members, %zu groups, %zu joined, %zu left", g->dn, g->n,
           g->n_w, g->n_joined, g->n_left);
cleanup:
    members_free(m, n);
    watched_free(w, n_w);
    if (err)
        diff_clear(g);
    return err;
}

size_t col_group_joined(const col_group *g, const char *const **dns)
{
    *dns = (const char *const *)g->joined;
    return g->n_joined;
}

size_t col_group_left(const col_group *g, const char *const **dns)
{
    *dns = (const char *const *)g->left;
    return g->n_left;
}

bool col_group_is_member(const col_group *g, const char *dn)
{
    char *norm = NULL;
    bool found = false;
    cs_err *err;

    if (!g->read || dn == NULL)
        return false;
    err = col_group_dn_normalize(dn, &norm);
    if (err == NULL) {
        member key = {.dn = NULL, .norm = norm};
        found = g->n > 0 && bsearch(&key, g->m, g->n, sizeof *g->m, member_cmp) != NULL;
    }
    cs_err_free(err);
    free(norm);
    return found;
}

size_t col_group_count(const col_group *g)
{
    return g->n;
}

size_t col_group_nested_count(const col_group *g)
{
    return g->n_w > 0 ? g->n_w - 1 : 0;
}

const char *col_group_members_sha256(const col_group *g)
{
    return g->read ? g->sha : "";
}

const char *col_group_entry_csn(const col_group *g)
{
    return g->read && g->csn[0] ? g->csn : NULL;
}

cs_err *col_group_read_object(col_ldap *c, const char *dn, const char *filter, col_object **out)
{
    LDAP *ld = col_ldap_handle(c);
    long long ms = col_ldap_timeout_ms(c);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    LDAPMessage *res = NULL, *e;
    cs_err *err = NULL;

    *out = NULL;
    int rc = ldap_search_ext_s(ld, dn, LDAP_SCOPE_BASE, filter, col_object_attrs(col_ldap_kind(c)), 0, NULL,
                               NULL, &tv, 1, &res);
    if (rc == LDAP_NO_SUCH_OBJECT)
        goto cleanup; /* deleted meanwhile: the readers report the deletion */
    if (rc != LDAP_SUCCESS) {
        char op[600];
        snprintf(op, sizeof op, "reading the group member %.500s", dn);
        err = col_ldap_error(c, op, rc);
        goto cleanup;
    }
    e = ldap_first_entry(ld, res);
    if (e != NULL)
        err = col_object_from_entry(ld, e, col_ldap_kind(c), out);
cleanup:
    ldap_msgfree(res);
    return err;
}
