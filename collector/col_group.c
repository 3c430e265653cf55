/*
 * col_group: the watched member set of ldap.group_dn (see col_group.h).
 */
#include "col_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "cs_buf.h"
#include "cs_log.h"

#define FAC "group"

/* One member: the DN as listed and its normal form (the sort and compare key). */
typedef struct member {
    char *dn;
    char *norm;
} member;

struct col_group {
    char *dn;
    bool read; /* a member set was read at least once */
    char stamp[COL_GROUP_MAX_STAMP];
    char csn[COL_GROUP_MAX_STAMP]; /* entryCSN, "" when the server has none */
    member *m;                     /* sorted by norm, no duplicates */
    size_t n;
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

cs_err *col_group_new(const char *group_dn, col_group **out)
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
    *out = g;
    return NULL;
}

void col_group_free(col_group *g)
{
    if (g == NULL)
        return;
    diff_clear(g);
    members_free(g->m, g->n);
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

/* Reads stamp and, when `with_members`, every member value (all ranges) of the group. */
static cs_err *read_group(col_group *g, col_ldap *c, bool with_members, char stamp[COL_GROUP_MAX_STAMP],
                          char csn[COL_GROUP_MAX_STAMP], member **m, size_t *n)
{
    LDAP *ld = col_ldap_handle(c);
    long long ms = col_ldap_timeout_ms(c);
    size_t cap = 0;
    long long from = 0;
    cs_err *err = NULL;

    stamp[0] = csn[0] = '\0';
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
        int rc = ldap_search_ext_s(ld, g->dn, LDAP_SCOPE_BASE, "(objectClass=*)", col_ldap_attrs(attrs), 0,
                                   NULL, NULL, &tv, 1, &res);
        if (rc == LDAP_NO_SUCH_OBJECT) {
            ldap_msgfree(res);
            return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_RETRIABLE,
                              "ldap.group_dn %s does not exist on %s: fix the DN (or create the group)",
                              g->dn, col_ldap_url(c));
        }
        if (rc != LDAP_SUCCESS) {
            char op[600];
            snprintf(op, sizeof op, "reading the group %.500s", g->dn);
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
                for (size_t i = 0; vals && vals[i] && err == NULL; i++)
                    err = add_member(m, n, &cap, vals[i], g->dn);
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
                      g->dn, COL_GROUP_MAX_RANGE_ROUNDS);
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

cs_err *col_group_refresh(col_group *g, col_ldap *c, bool force, bool *changed)
{
    char stamp[COL_GROUP_MAX_STAMP], csn[COL_GROUP_MAX_STAMP];
    member *m = NULL;
    size_t n = 0, k = 0;
    cs_err *err = NULL;
    cs_buf b;

    *changed = false;
    diff_clear(g);
    if (g->read && !force) {
        if ((err = read_group(g, c, false, stamp, csn, &m, &n)))
            return err;
        if (stamp[0] != '\0' && strcmp(stamp, g->stamp) == 0)
            return NULL; /* unchanged: the member values are not read again */
    }
    if ((err = read_group(g, c, true, stamp, csn, &m, &n)))
        goto cleanup;
    if (n > 0)
        qsort(m, n, sizeof *m, member_cmp);
    /* Drop duplicates (member and uniqueMember naming the same DN). */
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
    cs_sha256_hex(cs_buf_str(&b), strlen(cs_buf_str(&b)), g->sha);
    cs_buf_free(&b);
    members_free(g->m, g->n);
    g->m = m;
    g->n = n;
    m = NULL;
    n = 0;
    g->read = true;
    snprintf(g->stamp, sizeof g->stamp, "%s", stamp);
    snprintf(g->csn, sizeof g->csn, "%s", csn);
    cs_log(CS_LOG_DEBUG, FAC, "group %s read: %zu members, %zu joined, %zu left", g->dn, g->n, g->n_joined,
           g->n_left);
cleanup:
    members_free(m, n);
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
