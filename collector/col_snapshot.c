/*
 * col_snapshot: paged snapshot (see col_snapshot.h).
 */
#include "col_snapshot.h"

#include <stdio.h>
#include <sys/time.h>
#include <stdlib.h>

#include "cs_log.h"

#define FAC "snapshot"

/* One base DN, page by page. */
static cs_err *snapshot_base(col_ldap *c, const char *base, const char *filter, col_change_cb cb, void *ctx,
                             size_t *n_objects, size_t *n_skipped)
{
    LDAP *ld = col_ldap_handle(c);
    struct berval *cookie = NULL;
    cs_err *err = NULL;
    long long timeout_ms = col_ldap_timeout_ms(c);
    int page_size = col_ldap_config(c)->ldap_page_size;
    long pages;

    for (pages = 0; pages < COL_SNAPSHOT_MAX_PAGES; pages++) {
        LDAPControl *page = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL, *resp;
        LDAPMessage *res = NULL, *e;
        struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
        int rc, result = LDAP_SUCCESS;
        ber_int_t count = 0;
        struct berval empty = {0, NULL};

        /* Critical: a server that ignored paging would send everything at once, or stop at its size limit. */
        rc = ldap_create_page_control(ld, page_size, cookie != NULL ? cookie : &empty, 1, &page);
        if (rc != LDAP_SUCCESS) {
            err = col_ldap_error(c, "creating the paged-results control", rc);
            break;
        }
        sctrls[0] = page;
        rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, filter, col_object_attrs(col_ldap_kind(c)), 0,
                               sctrls, NULL, &tv, LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS) {
            char op[600];
            snprintf(op, sizeof op, "paged search of %.250s with %.250s", base, filter);
            err = col_ldap_error(c, op, rc);
            ldap_msgfree(res);
            break;
        }
        for (e = ldap_first_entry(ld, res); e != NULL && err == NULL; e = ldap_next_entry(ld, e)) {
            col_object *o = NULL;
            cs_err *perr = col_object_from_entry(ld, e, col_ldap_kind(c), &o);
            if (perr != NULL) {
                /* One bad entry must not stop the snapshot: report it and go on. */
                cs_log_kv(CS_LOG_ERROR, FAC, "entry skipped", "base", base, "error", cs_err_message(perr),
                          NULL);
                cs_err_free(perr);
                (*n_skipped)++;
                continue;
            }
            col_change ch = {.kind = COL_CHANGE_UPSERT, .object = o};
            err = cb(ctx, &ch);
            col_object_free(o);
            (*n_objects)++;
        }
        if (err == NULL) {
            rc = ldap_parse_result(ld, res, &result, NULL, NULL, NULL, &rctrls, 0);
            if (rc != LDAP_SUCCESS || result != LDAP_SUCCESS)
                err = col_ldap_error(c, "paged search result", rc != LDAP_SUCCESS ? rc : result);
        }
        ldap_msgfree(res);
        if (err != NULL) {
            ldap_controls_free(rctrls);
            break;
        }
        resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL);
        ber_bvfree(cookie);
        cookie = NULL;
        if (resp != NULL) {
            rc = ldap_parse_pageresponse_control(ld, resp, &count, &empty);
            if (rc == LDAP_SUCCESS) {
                cookie = ber_bvdup(&empty);
                ber_memfree(empty.bv_val);
            }
        }
        ldap_controls_free(rctrls);
        if (cookie == NULL || cookie->bv_len == 0)
            break; /* last page */
    }
    if (err == NULL && pages == COL_SNAPSHOT_MAX_PAGES)
        err = cs_err_new(CS_ERR_LDAP, 0, "%s: paged search of %s still had pages after %d; giving up",
                         col_ldap_url(c), base, COL_SNAPSHOT_MAX_PAGES);
    ber_bvfree(cookie);
    return err;
}

cs_err *col_snapshot_run(col_ldap *c, const char *const *base_dns, size_t n, const char *filter,
                         col_change_cb cb, void *ctx, size_t *n_objects, size_t *n_skipped)
{
    cs_err *err = NULL;

    *n_objects = 0;
    *n_skipped = 0;
    for (size_t i = 0; i < n && err == NULL; i++)
        err = snapshot_base(c, base_dns[i], filter, cb, ctx, n_objects, n_skipped);
    if (err == NULL)
        cs_log_kv(CS_LOG_INFO, FAC, "snapshot done", "url", col_ldap_url(c), NULL);
    return err;
}
