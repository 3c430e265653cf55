/*
 * col_usn: uSNChanged polling (see col_usn.h).
 */
#include "col_usn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "col_control.h"
#include "col_scope.h"
#include "cs_log.h"

#define FAC "usn"

enum { MAX_NCS = 64, MAX_ATTRS = 64 };

static const unsigned char MAGIC[4] = {'U', 'S', 'N', '1'};

struct col_usn {
    col_ldap *c;
    char *filter; /* tracking filter: scope filter plus tombstones */
    char *broad;  /* col_scope_broad_filter(): the objects that can leave the scope filter */
    char **bases; /* NULL-terminated copies */
    size_t n_bases;
    char *ncs[MAX_NCS]; /* copies: the rootDSE re-read of every poll frees c's */
    size_t n_ncs;
    char *attrs[MAX_ATTRS]; /* col_object_attrs(AD) + lastKnownParent; pointers into static tables */
    bool has_position;
    col_usn_position pos;
};

size_t col_usn_position_encode(const col_usn_position *p, unsigned char *out)
{
    size_t slen = strnlen(p->server, COL_USN_MAX_SERVER - 1);
    uint64_t v = (uint64_t)p->highest_committed_usn;

    memcpy(out, MAGIC, 4);
    memcpy(out + 4, p->invocation_id, 16);
    for (int i = 0; i < 8; i++)
        out[20 + i] = (unsigned char)(v >> (56 - 8 * i));
    memcpy(out + 28, p->server, slen);
    return 28 + slen;
}

cs_err *col_usn_position_decode(const void *buf, size_t len, col_usn_position *out)
{
    const unsigned char *b = buf;
    uint64_t v = 0;

    memset(out, 0, sizeof *out);
    if (b == NULL || len < 28 || len > COL_USN_POSITION_MAX_ENCODED - 1 || memcmp(b, MAGIC, 4) != 0)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "uSNChanged position of %zu bytes is not one col_usn wrote (\"USN1\", "
                          "invocationId, USN, server); start without a position (full resync)",
                          b == NULL ? (size_t)0 : len);
    memcpy(out->invocation_id, b + 4, 16);
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[20 + i];
    if (v > (uint64_t)INT64_MAX)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "uSNChanged position holds a negative USN");
    out->highest_committed_usn = (int64_t)v;
    memcpy(out->server, b + 28, len - 28);
    out->server[len - 28] = '\0';
    return NULL;
}

void col_usn_free(col_usn *u)
{
    if (u == NULL)
        return;
    free(u->filter);
    free(u->broad);
    for (size_t i = 0; u->bases != NULL && i < u->n_bases; i++)
        free(u->bases[i]);
    free(u->bases);
    for (size_t i = 0; i < u->n_ncs; i++)
        free(u->ncs[i]);
    free(u);
}

cs_err *col_usn_new(col_ldap *c, const char *filter, const char *const *base_dns, size_t n,
                    const col_usn_position *from, col_usn **out)
{
    col_usn *u = NULL;
    cs_err *err = NULL;
    char **ad;
    size_t k = 0;

    *out = NULL;
    if (col_ldap_kind(c) != COL_DIR_AD)
        return cs_err_new(
            CS_ERR_CONFIG, CS_ERR_F_FATAL,
            "%s: uSNChanged polling needs Active Directory; the server is %s; use ldap.mode: auto",
            col_ldap_url(c), col_ldap_kind_name(col_ldap_kind(c)));
    if (n == 0)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                          "uSNChanged polling needs at least one ldap.base_dns");
    u = calloc(1, sizeof *u);
    if (u == NULL || (u->bases = calloc(n + 1, sizeof *u->bases)) == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing uSNChanged polling");
        goto cleanup;
    }
    u->c = c;
    err = col_scope_tracking_filter(filter, &u->filter);
    if (err == NULL)
        err = col_scope_broad_filter(filter, &u->broad);
    if (err != NULL)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        const char *nc = col_ldap_naming_context_of(c, base_dns[i]);
        bool seen = false;
        if ((u->bases[i] = strdup(base_dns[i])) == NULL) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing uSNChanged polling");
            goto cleanup;
        }
        u->n_bases = i + 1;
        if (nc == NULL) {
            err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                             "ldap.base_dns: %s is in none of the naming contexts of %s; fix the DN",
                             base_dns[i], col_ldap_url(c));
            goto cleanup;
        }
        for (size_t j = 0; j < u->n_ncs; j++)
            seen = seen || strcmp(u->ncs[j], nc) == 0;
        if (!seen && u->n_ncs < MAX_NCS) {
            if ((u->ncs[u->n_ncs] = strdup(nc)) == NULL) {
                err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing uSNChanged polling");
                goto cleanup;
            }
            u->n_ncs++;
        }
    }
    /* The object attributes plus lastKnownParent (where a tombstone was deleted from). */
    ad = col_object_attrs(COL_DIR_AD);
    for (; ad[k] != NULL && k < MAX_ATTRS - 2; k++)
        u->attrs[k] = ad[k];
    u->attrs[k] = (char *)(uintptr_t) "lastKnownParent"; /* libldap only reads it */
    if (from != NULL) {
        u->pos = *from;
        u->pos.server[COL_USN_MAX_SERVER - 1] = '\0';
        u->has_position = true;
    }
    *out = u;
    u = NULL;
cleanup:
    col_usn_free(u);
    return err;
}

const col_usn_position *col_usn_get_position(const col_usn *u)
{
    return u->has_position ? &u->pos : NULL;
}

/* Reads the rootDSE into a position of "now". */
static cs_err *current(col_usn *u, col_usn_position *now)
{
    cs_err *err = col_ldap_read_rootdse(u->c);

    memset(now, 0, sizeof *now);
    if (err != NULL)
        return cs_err_wrap(err, "uSNChanged polling");
    now->highest_committed_usn = col_ldap_highest_usn(u->c);
    if (now->highest_committed_usn < 0)
        return cs_err_new(CS_ERR_LDAP, 0, "%s: the rootDSE has no highestCommittedUSN", col_ldap_url(u->c));
    if (!col_ldap_invocation_id(u->c, now->invocation_id))
        /* Without it a restored DC could not be told from a live one: refuse rather than guess. */
        return cs_err_new(CS_ERR_LDAP, CS_ERR_F_RETRIABLE,
                          "%s: cannot read the invocationId of dsServiceName %s; uSNChanged polling needs it "
                          "to detect a restored DC (let the bind account read the NTDS Settings object)",
                          col_ldap_url(u->c),
                          col_ldap_ds_service_name(u->c) ? col_ldap_ds_service_name(u->c) : "(none)");
    snprintf(now->server, sizeof now->server, "%s", col_ldap_server(u->c));
    return NULL;
}

cs_err *col_usn_skip_to_end(col_usn *u)
{
    col_usn_position now;
    cs_err *err = current(u, &now);

    if (err == NULL) {
        u->pos = now;
        u->has_position = true;
    }
    return err;
}

static bool under_a_base(const col_usn *u, const char *dn)
{
    for (size_t i = 0; i < u->n_bases; i++) {
        if (col_ldap_dn_is_under(dn, u->bases[i]))
            return true;
    }
    return false;
}

/* Classifies one entry and reports it. */
static cs_err *report(col_usn *u, LDAPMessage *e, col_change_cb cb, void *ctx, size_t *n)
{
    LDAP *ld = col_ldap_handle(u->c);
    col_object *o = NULL;
    struct berval **parent = NULL;
    col_change ch = {.kind = COL_CHANGE_UPSERT};
    cs_err *err = col_object_from_entry(ld, e, COL_DIR_AD, &o);

    if (err != NULL) {
        char *dn = ldap_get_dn(ld, e);
        /* One unreadable entry must not stop tracking: report it and go on. */
        cs_log_kv(CS_LOG_ERROR, FAC, "entry skipped", "dn", dn, "error", cs_err_message(err), NULL);
        ldap_memfree(dn);
        cs_err_free(err);
        return NULL;
    }
    if (col_object_is_deleted(o)) {
        char *p = NULL;
        parent = ldap_get_values_len(ld, e, "lastKnownParent");
        if (parent != NULL && parent[0] != NULL)
            p = strndup(parent[0]->bv_val, parent[0]->bv_len);
        /* A tombstone deleted from outside the scope was never in it (or left it earlier). */
        if (p != NULL && !under_a_base(u, p)) {
            free(p);
            goto cleanup;
        }
        free(p);
        ch.kind = COL_CHANGE_REMOVAL;
        ch.reason = COL_REMOVAL_DELETED;
    } else if (!under_a_base(u, col_object_dn(o))) {
        ch.kind = COL_CHANGE_REMOVAL;
        ch.reason = COL_REMOVAL_OUT_OF_SCOPE;
    }
    ch.object = o;
    err = cb(ctx, &ch);
    (*n)++;
cleanup:
    ldap_value_free_len(parent);
    col_object_free(o);
    return err;
}

/* An object that changed and no longer matches the filter: an OUT_OF_SCOPE removal with id and DN only. */
static cs_err *report_left(col_usn *u, LDAPMessage *e, col_change_cb cb, void *ctx, size_t *n)
{
    LDAP *ld = col_ldap_handle(u->c);
    struct berval **guid = ldap_get_values_len(ld, e, "objectGUID");
    char *dn = ldap_get_dn(ld, e);
    char id[COL_GUID_STR_LEN];
    col_object *o = NULL;
    cs_err *err = NULL;

    if (guid == NULL || guid[0] == NULL || guid[0]->bv_len != 16 || dn == NULL) {
        cs_log_kv(CS_LOG_ERROR, FAC, "entry without a 16-byte objectGUID skipped", "dn", dn, NULL);
        goto cleanup;
    }
    col_guid_format_ad((const unsigned char *)guid[0]->bv_val, id);
    err = col_object_new(COL_DIR_AD, dn, &o);
    if (err == NULL)
        err = col_object_set_id(o, id);
    if (err == NULL) {
        col_change ch = {.kind = COL_CHANGE_REMOVAL, .object = o, .reason = COL_REMOVAL_OUT_OF_SCOPE};
        err = cb(ctx, &ch);
        (*n)++;
    }
cleanup:
    col_object_free(o);
    ldap_memfree(dn);
    ldap_value_free_len(guid);
    return err;
}

/*
 * One naming context, page by page. `left`: the search for objects that left the filter (objectGUID only,
 * no show-deleted: a tombstone is reported by the other search); otherwise the full objects, tombstones
 * included.
 */
static cs_err *search_nc(col_usn *u, const char *nc, const char *filter, bool left, col_change_cb cb,
                         void *ctx, size_t *n)
{
    static const char *const guid_attrs[] = {"objectGUID", NULL};
    LDAP *ld = col_ldap_handle(u->c);
    struct berval *cookie = NULL;
    LDAPControl *show = NULL;
    long long ms = col_ldap_timeout_ms(u->c);
    int page_size = col_ldap_config(u->c)->ldap_page_size;
    cs_err *err = NULL;
    long pages;
    int rc;

    rc = ldap_control_create(COL_OID_SHOW_DELETED, 1, NULL, 0, &show);
    if (rc != LDAP_SUCCESS)
        return col_ldap_error(u->c, "creating the show-deleted control", rc);
    for (pages = 0; pages < COL_USN_MAX_PAGES && err == NULL; pages++) {
        LDAPControl *page = NULL, *sctrls[3] = {NULL, NULL, NULL}, **rctrls = NULL, *resp;
        LDAPMessage *res = NULL, *e;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        struct berval empty = {0, NULL}, next = {0, NULL};
        int result = LDAP_SUCCESS;

        rc = ldap_create_page_control(ld, page_size, cookie != NULL ? cookie : &empty, 1, &page);
        if (rc != LDAP_SUCCESS) {
            err = col_ldap_error(u->c, "creating the paged-results control", rc);
            break;
        }
        sctrls[0] = left ? page : show;
        sctrls[1] = left ? NULL : page;
        rc = ldap_search_ext_s(ld, nc, LDAP_SCOPE_SUBTREE, filter,
                               left ? col_ldap_attrs(guid_attrs) : u->attrs, 0, sctrls, NULL, &tv,
                               LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS) {
            char op[700];
            snprintf(op, sizeof op, "uSNChanged search of %.250s with %.400s", nc, filter);
            err = col_ldap_error(u->c, op, rc);
            ldap_msgfree(res);
            break;
        }
        for (e = ldap_first_entry(ld, res); e != NULL && err == NULL; e = ldap_next_entry(ld, e))
            err = left ? report_left(u, e, cb, ctx, n) : report(u, e, cb, ctx, n);
        if (err == NULL) {
            rc = ldap_parse_result(ld, res, &result, NULL, NULL, NULL, &rctrls, 0);
            if (rc != LDAP_SUCCESS || result != LDAP_SUCCESS)
                err = col_ldap_error(u->c, "uSNChanged search result", rc != LDAP_SUCCESS ? rc : result);
        }
        ldap_msgfree(res);
        ber_bvfree(cookie);
        cookie = NULL;
        resp = err == NULL ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL) : NULL;
        if (resp != NULL) {
            err = cs_err_wrap(col_control_parse_page(ld, resp, COL_CONTROL_MAX_PAGE_COOKIE, &next), "%s",
                              col_ldap_url(u->c));
            if (err == NULL && next.bv_len > 0)
                cookie = ber_bvdup(&next);
            ber_memfree(next.bv_val);
        }
        ldap_controls_free(rctrls);
        if (cookie == NULL)
            break; /* last page (or an error) */
    }
    if (err == NULL && pages == COL_USN_MAX_PAGES)
        err = cs_err_new(CS_ERR_LDAP, 0, "%s: uSNChanged search of %s still had pages after %d; giving up",
                         col_ldap_url(u->c), nc, COL_USN_MAX_PAGES);
    ber_bvfree(cookie);
    ldap_control_free(show);
    return err;
}

cs_err *col_usn_poll(col_usn *u, col_change_cb cb, void *ctx, size_t *n_changes, bool *resync)
{
    col_usn_position now;
    char *filter = NULL;
    cs_err *err = NULL;
    char prev_inv[COL_GUID_STR_LEN], now_inv[COL_GUID_STR_LEN];
    int len;

    *n_changes = 0;
    *resync = false;
    if (!u->has_position)
        return cs_err_new(CS_ERR_STATE, 0,
                          "uSNChanged polling without a position: take one with col_usn_skip_to_end() "
                          "before the snapshot");
    err = current(u, &now);
    if (err != NULL)
        return err;
    col_guid_format_ad(u->pos.invocation_id, prev_inv); /* a GUID in AD's byte order */
    col_guid_format_ad(now.invocation_id, now_inv);
    if (strcmp(u->pos.server, now.server) != 0 || memcmp(u->pos.invocation_id, now.invocation_id, 16) != 0 ||
        now.highest_committed_usn < u->pos.highest_committed_usn) {
        *resync = true;
        return cs_err_new(CS_ERR_STATE, 0,
                          "%s: the uSNChanged position (server %s, invocationId %s, USN %" PRId64
                          ") cannot be resumed on server %s (invocationId %s, highestCommittedUSN %" PRId64
                          "): %s; a full resync with a removal sweep is needed",
                          col_ldap_url(u->c), u->pos.server, prev_inv, u->pos.highest_committed_usn,
                          now.server, now_inv, now.highest_committed_usn,
                          strcmp(u->pos.server, now.server) != 0 ? "another server"
                          : memcmp(u->pos.invocation_id, now.invocation_id, 16) != 0
                              ? "the invocationId changed (a DC restored from backup)"
                              : "highestCommittedUSN went backwards");
    }
    if (now.highest_committed_usn == u->pos.highest_committed_usn)
        return NULL; /* nothing committed since */
    filter = malloc(COL_SCOPE_MAX_FILTER + 64);
    if (filter == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the uSNChanged filter");
    len =
        snprintf(filter, COL_SCOPE_MAX_FILTER + 64, "(&(uSNChanged>=%" PRId64 ")(uSNChanged<=%" PRId64 ")%s)",
                 u->pos.highest_committed_usn + 1, now.highest_committed_usn, u->filter);
    if (len < 0 || len >= COL_SCOPE_MAX_FILTER + 64) {
        free(filter);
        return cs_err_new(CS_ERR_CONFIG, 0, "the uSNChanged filter is too long; shorten ldap.filter");
    }
    for (size_t i = 0; i < u->n_ncs && err == NULL; i++)
        err = search_nc(u, u->ncs[i], filter, false, cb, ctx, n_changes);
    /* The objects of the broad filter that changed in the window and no longer match: they left the
       filter (or never matched it; the caller's index tells). GUIDs only: most are never-emitted objects. */
    if (err == NULL) {
        len = snprintf(filter, COL_SCOPE_MAX_FILTER + 64,
                       "(&(uSNChanged>=%" PRId64 ")(uSNChanged<=%" PRId64 ")%s(!%s))",
                       u->pos.highest_committed_usn + 1, now.highest_committed_usn, u->broad, u->filter);
        if (len < 0 || len >= COL_SCOPE_MAX_FILTER + 64)
            err = cs_err_new(CS_ERR_CONFIG, 0, "the uSNChanged filter is too long; shorten ldap.filter");
    }
    for (size_t i = 0; i < u->n_ncs && err == NULL; i++)
        err = search_nc(u, u->ncs[i], filter, true, cb, ctx, n_changes);
    free(filter);
    if (err == NULL) {
        unsigned char enc[COL_USN_POSITION_MAX_ENCODED];
        col_change ch = {.kind = COL_CHANGE_COOKIE};
        u->pos = now;
        ch.cookie = enc;
        ch.cookie_len = col_usn_position_encode(&u->pos, enc);
        err = cb(ctx, &ch);
        (*n_changes)++;
    }
    return err;
}
