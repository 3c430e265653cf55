/*
 * col_snapshot: paged snapshot (see col_snapshot.h).
 */
#include "col_snapshot.h"

#include <stdio.h>
#include <sys/time.h>
#include <stdlib.h>

#include "col_control.h"
#include "cs_log.h"

#define FAC "snapshot"

/*
 * One page, each entry handled as it arrives: the server goes on producing the page while we parse
 * (ldap_search_ext_s would wait for the whole page first, leaving one side idle at a time). The server
 * may be silent for at most timeout_ms at a time (our own work in the callback, e.g. a commit, does not
 * count against the directory), and may send at most twice the page size of messages. On success *res is
 * the page's final result (caller frees with ldap_msgfree). On any error the search is abandoned.
 */
static cs_err *page_read(col_ldap *c, const char *base, const char *filter, LDAPControl **sctrls,
                         col_change_cb cb, void *ctx, size_t *n_objects, size_t *n_skipped, LDAPMessage **res)
{
    LDAP *ld = col_ldap_handle(c);
    long long timeout_ms = col_ldap_timeout_ms(c);
    size_t max_messages = (size_t)col_ldap_config(c)->ldap_page_size * 2 + 16;
    struct timeval limit = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    cs_err *err = NULL;
    char op[600];
    int msgid = -1;

    *res = NULL;
    snprintf(op, sizeof op, "paged search of %.250s with %.250s", base, filter);
    int rc = ldap_search_ext(ld, base, LDAP_SCOPE_SUBTREE, filter, col_object_attrs(col_ldap_kind(c)), 0,
                             sctrls, NULL, &limit, LDAP_NO_LIMIT, &msgid);
    if (rc != LDAP_SUCCESS)
        return col_ldap_error(c, op, rc);
    /* Each message is one entry, one reference or the final result. */
    for (size_t i = 0;; i++) {
        if (i == max_messages) {
            err = cs_err_new(CS_ERR_LDAP, 0,
                             "%s: %s: more than %zu messages for one page of %d: the server does not honour "
                             "the paged-results control",
                             col_ldap_url(c), op, max_messages, col_ldap_config(c)->ldap_page_size);
            break;
        }
        struct timeval tv = limit;
        LDAPMessage *msg = NULL;
        rc = ldap_result(ld, msgid, LDAP_MSG_ONE, &tv, &msg);
        if (rc == 0) {
            err = col_ldap_error(c, op, LDAP_TIMEOUT);
            break;
        }
        if (rc == -1) {
            int code = LDAP_SERVER_DOWN;
            ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &code);
            err = col_ldap_error(c, op, code);
            msgid = -1; /* the connection is gone: nothing to abandon */
            break;
        }
        if (rc == LDAP_RES_SEARCH_RESULT) {
            *res = msg;
            msgid = -1;
            break;
        }
        if (rc == LDAP_RES_SEARCH_ENTRY) {
            col_object *o = NULL;
            cs_err *perr = col_object_from_entry(ld, msg, col_ldap_kind(c), &o);
            if (perr != NULL) {
                /* One bad entry must not stop the snapshot: report it and go on. */
                cs_log_kv(CS_LOG_ERROR, FAC, "entry skipped", "base", base, "error", cs_err_message(perr),
                          NULL);
                cs_err_free(perr);
                (*n_skipped)++;
            } else {
                col_change ch = {.kind = COL_CHANGE_UPSERT, .object = o};
                err = cb(ctx, &ch);
                col_object_free(o);
                (*n_objects)++;
            }
        }
        ldap_msgfree(msg); /* entries done; references are not followed */
        if (err != NULL)
            break;
    }
    if (msgid != -1)
        ldap_abandon_ext(ld, msgid, NULL, NULL);
    return err;
}

/* One base DN, page by page. */
static cs_err *snapshot_base(col_ldap *c, const char *base, const char *filter, col_change_cb cb, void *ctx,
                             size_t *n_objects, size_t *n_skipped)
{
    LDAP *ld = col_ldap_handle(c);
    struct berval *cookie = NULL;
    cs_err *err = NULL;
    int page_size = col_ldap_config(c)->ldap_page_size;
    long pages;

    for (pages = 0; pages < COL_SNAPSHOT_MAX_PAGES; pages++) {
        LDAPControl *page = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL, *resp;
        LDAPMessage *res = NULL;
        int rc, result = LDAP_SUCCESS;
        struct berval empty = {0, NULL};

        /* Critical: a server that ignored paging would send everything at once, or stop at its size limit. */
        rc = ldap_create_page_control(ld, page_size, cookie != NULL ? cookie : &empty, 1, &page);
        if (rc != LDAP_SUCCESS) {
            err = col_ldap_error(c, "creating the paged-results control", rc);
            break;
        }
        sctrls[0] = page;
        err = page_read(c, base, filter, sctrls, cb, ctx, n_objects, n_skipped, &res);
        ldap_control_free(page);
        if (err == NULL) {
            rc = ldap_parse_result(ld, res, &result, NULL, NULL, NULL, &rctrls, 0);
            if (rc != LDAP_SUCCESS || result != LDAP_SUCCESS) {
                char op[600];
                snprintf(op, sizeof op, "paged search of %.250s with %.250s", base, filter);
                err = col_ldap_error(c, op, rc != LDAP_SUCCESS ? rc : result);
            }
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
            err = cs_err_wrap(col_control_parse_page(ld, resp, COL_CONTROL_MAX_PAGE_COOKIE, &empty), "%s",
                              col_ldap_url(c));
            if (err == NULL)
                cookie = ber_bvdup(&empty);
            ber_memfree(empty.bv_val);
        }
        ldap_controls_free(rctrls);
        if (err != NULL)
            break;
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
