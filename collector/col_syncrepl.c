/*
 * col_syncrepl: RFC 4533 refreshAndPersist with raw controls (see col_syncrepl.h).
 */
#include "col_syncrepl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cs_log.h"

#define FAC "syncrepl"

struct col_syncrepl {
    col_ldap *c;
    int msgid;
    bool active;    /* the search is outstanding */
    bool begun;     /* REFRESH_BEGIN sent */
    bool refreshed; /* refresh phase over */
    char *base;
    char **bases; /* more than one base DN: the search covers their naming context, filtered here */
    size_t n_bases;
    unsigned char *cookie;
    size_t cookie_len;
};

/* The server URL for messages; "(unconnected)" for handles made by col_syncrepl_new_unconnected(). */
static const char *url(const col_syncrepl *s)
{
    return s->c != NULL ? url(s) : "(unconnected)";
}

/* Builds the critical sync request control: {mode, cookie OPTIONAL} (reloadHint left at its default). */
static cs_err *make_request(col_ldap *c, int mode, const void *cookie, size_t cookie_len, LDAPControl **out)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval bv = {0, NULL}, ck;
    cs_err *err = NULL;
    int rc;

    *out = NULL;
    if (ber == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the syncrepl control");
    ck.bv_val = (char *)(uintptr_t)cookie; /* ber_printf only reads it */
    ck.bv_len = cookie_len;
    if (cookie != NULL && cookie_len > 0)
        rc = ber_printf(ber, "{eO}", (ber_int_t)mode, &ck);
    else
        rc = ber_printf(ber, "{e}", (ber_int_t)mode);
    if (rc == -1 || ber_flatten2(ber, &bv, 0) == -1) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "encoding the syncrepl request control failed");
        goto cleanup;
    }
    rc = ldap_control_create(LDAP_CONTROL_SYNC, 1, &bv, 1, out);
    if (rc != LDAP_SUCCESS)
        err = col_ldap_error(c, "creating the syncrepl control", rc);
cleanup:
    ber_free(ber, 1);
    return err;
}

static cs_err *set_cookie(col_syncrepl *s, const struct berval *bv)
{
    unsigned char *p;

    if (bv->bv_len > COL_SYNCREPL_MAX_COOKIE)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: syncrepl cookie of %lu bytes is over the %d-byte limit", url(s),
                          (unsigned long)bv->bv_len, COL_SYNCREPL_MAX_COOKIE);
    p = malloc(bv->bv_len + 1);
    if (p == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory keeping the syncrepl cookie");
    if (bv->bv_len > 0)
        memcpy(p, bv->bv_val, bv->bv_len);
    p[bv->bv_len] = '\0';
    free(s->cookie);
    s->cookie = p;
    s->cookie_len = bv->bv_len;
    return NULL;
}

/* Records a new cookie and tells the caller. */
static cs_err *new_cookie(col_syncrepl *s, const struct berval *bv, col_change_cb cb, void *ctx, size_t *n)
{
    cs_err *err;
    if (bv->bv_val == NULL)
        return NULL;
    err = set_cookie(s, bv);
    if (err == NULL) {
        col_change ch = {.kind = COL_CHANGE_COOKIE, .cookie = s->cookie, .cookie_len = s->cookie_len};
        err = cb(ctx, &ch);
        (*n)++;
    }
    return err;
}

/* An id-only object for a syncUUID. */
static cs_err *uuid_object(col_syncrepl *s, const struct berval *uuid, const char *dn, col_object **out)
{
    char id[COL_GUID_STR_LEN];
    cs_err *err;

    *out = NULL;
    if (uuid->bv_len != 16)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: syncUUID of %lu bytes; a UUID has 16", url(s),
                          (unsigned long)uuid->bv_len);
    col_uuid_format((const unsigned char *)uuid->bv_val, id);
    err = col_object_new(s->c != NULL ? col_ldap_kind(s->c) : COL_DIR_OPENLDAP, dn, out);
    if (err == NULL)
        err = col_object_set_id(*out, id);
    if (err != NULL) {
        col_object_free(*out);
        *out = NULL;
    }
    return err;
}

cs_err *col_syncrepl_parse_state(const struct berval *value, int *state, struct berval *uuid,
                                 struct berval *cookie, BerElement **ber)
{
    ber_int_t st = -1;
    ber_len_t len;
    cs_err *err = NULL;

    *state = -1;
    *uuid = (struct berval){0, NULL};
    *cookie = (struct berval){0, NULL};
    *ber = NULL;
    /* liblber 2.5 builds an element without a buffer from an empty value and ber_scanf then reads through a
       NULL pointer: a control without a value (fuzz_ldap found it) must be refused before ber_init. */
    if (value == NULL || value->bv_val == NULL || value->bv_len == 0)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "sync state control without a value");
    *ber = ber_init((struct berval *)(uintptr_t)value); /* ber_init copies the value */
    if (*ber == NULL || ber_scanf(*ber, "{em", &st, uuid) == LBER_ERROR)
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "malformed sync state control");
    else if (ber_peek_tag(*ber, &len) == LDAP_TAG_SYNC_COOKIE && ber_scanf(*ber, "m", cookie) == LBER_ERROR)
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "malformed cookie in a sync state control");
    if (err != NULL) {
        if (*ber != NULL)
            ber_free(*ber, 1);
        *ber = NULL;
        *uuid = (struct berval){0, NULL};
        *cookie = (struct berval){0, NULL};
        return err;
    }
    *state = (int)st;
    return NULL;
}

cs_err *col_syncrepl_parse_done(const struct berval *value, struct berval *cookie, BerElement **ber)
{
    ber_len_t len;

    *cookie = (struct berval){0, NULL};
    *ber = NULL;
    if (value == NULL || value->bv_val == NULL || value->bv_len == 0) /* see col_syncrepl_parse_state */
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "syncDone control without a value");
    *ber = ber_init((struct berval *)(uintptr_t)value); /* ber_init copies the value */
    if (*ber == NULL || ber_scanf(*ber, "{") == LBER_ERROR ||
        (ber_peek_tag(*ber, &len) == LDAP_TAG_SYNC_COOKIE && ber_scanf(*ber, "m", cookie) == LBER_ERROR)) {
        if (*ber != NULL)
            ber_free(*ber, 1);
        *ber = NULL;
        *cookie = (struct berval){0, NULL};
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "malformed syncDone control");
    }
    return NULL;
}

static cs_err *handle_entry(col_syncrepl *s, LDAPMessage *msg, col_change_cb cb, void *ctx, size_t *n)
{
    LDAP *ld = col_ldap_handle(s->c);
    LDAPControl **ctrls = NULL, *state_ctrl;
    BerElement *ber = NULL;
    int state = -1;
    struct berval uuid = {0, NULL}, cookie = {0, NULL};
    col_object *o = NULL;
    char *dn = NULL;
    cs_err *err = NULL;
    col_change ch = {0};

    if (ldap_get_entry_controls(ld, msg, &ctrls) != LDAP_SUCCESS ||
        (state_ctrl = ldap_control_find(LDAP_CONTROL_SYNC_STATE, ctrls, NULL)) == NULL) {
        err = cs_err_new(CS_ERR_LDAP, 0, "%s: a syncrepl entry came without a sync state control", url(s));
        goto cleanup;
    }
    err = col_syncrepl_parse_state(&state_ctrl->ldctl_value, &state, &uuid, &cookie, &ber);
    if (err != NULL) {
        err = cs_err_wrap(err, "%s", url(s));
        goto cleanup;
    }
    dn = ldap_get_dn(ld, msg);
    switch (state) {
    case LDAP_SYNC_ADD:
    case LDAP_SYNC_MODIFY:
        err = col_object_from_entry(ld, msg, col_ldap_kind(s->c), &o);
        if (err != NULL) {
            cs_log_kv(CS_LOG_ERROR, FAC, "entry skipped", "dn", dn, "error", cs_err_message(err), NULL);
            cs_err_free(err);
            err = NULL;
            break;
        }
        ch.kind = COL_CHANGE_UPSERT;
        if (s->n_bases > 0) {
            bool in = false;
            for (size_t i = 0; i < s->n_bases && !in; i++)
                in = col_ldap_dn_is_under(col_object_dn(o), s->bases[i]);
            if (!in) {
                /* In the naming context but under none of the base DNs (never was, or moved out). */
                ch.kind = COL_CHANGE_REMOVAL;
                ch.reason = COL_REMOVAL_OUT_OF_SCOPE;
            }
        }
        break;
    case LDAP_SYNC_DELETE:
        ch.kind = COL_CHANGE_REMOVAL;
        ch.reason = COL_REMOVAL_DELETED;
        err = uuid_object(s, &uuid, dn, &o);
        break;
    case LDAP_SYNC_PRESENT:
        ch.kind = COL_CHANGE_PRESENT;
        err = uuid_object(s, &uuid, dn, &o);
        break;
    default:
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: unknown sync state %d for %s", url(s), (int)state,
                         dn != NULL ? dn : "(no DN)");
    }
    if (err == NULL && o != NULL) {
        ch.object = o;
        err = cb(ctx, &ch);
        (*n)++;
    }
    if (err == NULL)
        err = new_cookie(s, &cookie, cb, ctx, n);
cleanup:
    col_object_free(o);
    ldap_memfree(dn);
    if (ber != NULL)
        ber_free(ber, 1); /* ber_init copied the value: free the copy too */
    ldap_controls_free(ctrls);
    return err;
}

static cs_err *handle_idset(col_syncrepl *s, BerElement *ber, col_change_cb cb, void *ctx, size_t *n)
{
    struct berval cookie = {0, NULL};
    BerVarray uuids = NULL;
    ber_int_t deletes = 0;
    ber_len_t len;
    cs_err *err = NULL;
    size_t count = 0;

    if (ber_scanf(ber, "{") == LBER_ERROR)
        goto malformed;
    if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE && ber_scanf(ber, "m", &cookie) == LBER_ERROR)
        goto malformed;
    if (ber_peek_tag(ber, &len) == LBER_BOOLEAN && ber_scanf(ber, "b", &deletes) == LBER_ERROR)
        goto malformed;
    if (ber_scanf(ber, "[W]", &uuids) == LBER_ERROR)
        goto malformed;
    while (uuids != NULL && uuids[count].bv_val != NULL && err == NULL) {
        col_object *o = NULL;
        if (count >= COL_SYNCREPL_MAX_IDSET) {
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: syncIdSet with more than %d UUIDs", url(s),
                             COL_SYNCREPL_MAX_IDSET);
            break;
        }
        err = uuid_object(s, &uuids[count], NULL, &o);
        if (err == NULL) {
            col_change ch = {.kind = deletes ? COL_CHANGE_REMOVAL : COL_CHANGE_PRESENT,
                             .object = o,
                             .reason = COL_REMOVAL_DELETED};
            err = cb(ctx, &ch);
            (*n)++;
        }
        col_object_free(o);
        count++;
    }
    if (err == NULL)
        err = new_cookie(s, &cookie, cb, ctx, n);
    ber_bvarray_free(uuids);
    return err;
malformed:
    ber_bvarray_free(uuids);
    return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: malformed syncIdSet message", url(s));
}

static cs_err *handle_intermediate(col_syncrepl *s, LDAPMessage *msg, col_change_cb cb, void *ctx, size_t *n)
{
    LDAP *ld = col_ldap_handle(s->c);
    char *oid = NULL;
    struct berval *data = NULL;
    cs_err *err = NULL;
    int rc;

    rc = ldap_parse_intermediate(ld, msg, &oid, &data, NULL, 0);
    if (rc != LDAP_SUCCESS) {
        err = col_ldap_error(s->c, "parsing a syncrepl intermediate message", rc);
        goto cleanup;
    }
    if (oid == NULL || strcmp(oid, LDAP_SYNC_INFO) != 0 || data == NULL)
        goto cleanup; /* not ours: ignore */
    err = col_syncrepl_handle_info(s, data, cb, ctx, n);
cleanup:
    ber_memfree(oid);
    ber_bvfree(data);
    return err;
}

cs_err *col_syncrepl_handle_info(col_syncrepl *s, const struct berval *data, col_change_cb cb, void *ctx,
                                 size_t *n)
{
    struct berval cookie = {0, NULL};
    BerElement *ber = NULL;
    ber_tag_t tag = LBER_DEFAULT;
    ber_len_t len;
    ber_int_t done = 1;
    cs_err *err = NULL;

    ber = ber_init((struct berval *)(uintptr_t)data); /* ber_init copies the value */
    if (ber == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory parsing a syncInfo message");
        goto cleanup;
    }
    tag = ber_peek_tag(ber, &len);
    switch (tag) {
    case LDAP_TAG_SYNC_NEW_COOKIE:
        if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
            goto malformed;
        err = new_cookie(s, &cookie, cb, ctx, n);
        break;
    case LDAP_TAG_SYNC_REFRESH_DELETE:
    case LDAP_TAG_SYNC_REFRESH_PRESENT:
        if (ber_scanf(ber, "{") == LBER_ERROR)
            goto malformed;
        if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE && ber_scanf(ber, "m", &cookie) == LBER_ERROR)
            goto malformed;
        if (ber_peek_tag(ber, &len) == LBER_BOOLEAN && ber_scanf(ber, "b", &done) == LBER_ERROR)
            goto malformed;
        {
            /* The end of a present phase: whatever was not announced is gone. */
            col_change ch = {.kind = COL_CHANGE_REFRESH_DONE, .sweep = tag == LDAP_TAG_SYNC_REFRESH_PRESENT};
            if (done)
                s->refreshed = true;
            if (ch.sweep || done) {
                err = cb(ctx, &ch);
                (*n)++;
            }
        }
        if (err == NULL)
            err = new_cookie(s, &cookie, cb, ctx, n);
        break;
    case LDAP_TAG_SYNC_ID_SET:
        err = handle_idset(s, ber, cb, ctx, n);
        break;
    default:
        goto malformed;
    }
    goto cleanup;
malformed:
    err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: malformed syncInfo message (tag 0x%lx)", url(s),
                     (unsigned long)tag);
cleanup:
    if (ber != NULL)
        ber_free(ber, 1);
    return err;
}

/* The search ended: a refreshOnly result, or an error such as e-syncRefreshRequired. */
static cs_err *handle_result(col_syncrepl *s, LDAPMessage *msg, col_change_cb cb, void *ctx, size_t *n)
{
    LDAP *ld = col_ldap_handle(s->c);
    LDAPControl **ctrls = NULL, *done;
    int rc, result = LDAP_SUCCESS;
    cs_err *err = NULL;

    s->active = false;
    rc = ldap_parse_result(ld, msg, &result, NULL, NULL, NULL, &ctrls, 0);
    if (rc != LDAP_SUCCESS) {
        err = col_ldap_error(s->c, "parsing the syncrepl result", rc);
        goto cleanup;
    }
    if (result == LDAP_SYNC_REFRESH_REQUIRED) {
        err = cs_err_new(
            CS_ERR_STATE, 0,
            "%s: syncrepl of %s: the server cannot resume from the cookie (e-syncRefreshRequired): a "
            "full resync without cookie is needed",
            url(s), s->base);
        goto cleanup;
    }
    if (result != LDAP_SUCCESS) {
        err = col_ldap_error(s->c, "syncrepl search", result);
        goto cleanup;
    }
    done = ldap_control_find(LDAP_CONTROL_SYNC_DONE, ctrls, NULL);
    if (done != NULL && done->ldctl_value.bv_len > 0) {
        BerElement *ber = NULL;
        struct berval cookie = {0, NULL};
        err = col_syncrepl_parse_done(&done->ldctl_value, &cookie, &ber);
        if (err != NULL) {
            cs_err_free(err);
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: malformed syncDone control", url(s));
        } else {
            err = new_cookie(s, &cookie, cb, ctx, n);
        }
        if (ber != NULL)
            ber_free(ber, 1);
    }
    s->refreshed = true;
cleanup:
    ldap_controls_free(ctrls);
    return err;
}

cs_err *col_syncrepl_start(col_ldap *c, const char *base, const char *filter, const void *cookie,
                           size_t cookie_len, col_syncrepl **out)
{
    col_syncrepl *s = NULL;
    LDAPControl *ctrl = NULL, *sctrls[2] = {NULL, NULL};
    cs_err *err = NULL;
    int rc;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->base = strdup(base)) == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory starting syncrepl of %s", base);
        goto cleanup;
    }
    s->c = c;
    if (cookie != NULL && cookie_len > 0) {
        struct berval bv = {cookie_len, (char *)(uintptr_t)cookie};
        err = set_cookie(s, &bv);
        if (err != NULL)
            goto cleanup;
    }
    err = make_request(c, LDAP_SYNC_REFRESH_AND_PERSIST, cookie, cookie_len, &ctrl);
    if (err != NULL)
        goto cleanup;
    sctrls[0] = ctrl;
    rc = ldap_search_ext(col_ldap_handle(c), base, LDAP_SCOPE_SUBTREE, filter,
                         col_object_attrs(col_ldap_kind(c)), 0, sctrls, NULL, NULL, LDAP_NO_LIMIT, &s->msgid);
    if (rc != LDAP_SUCCESS) {
        char op[600];
        snprintf(op, sizeof op, "syncrepl search of %.250s with %.250s", base, filter);
        err = col_ldap_error(c, op, rc);
        goto cleanup;
    }
    s->active = true;
    *out = s;
    s = NULL;
cleanup:
    ldap_control_free(ctrl);
    col_syncrepl_free(s);
    return err;
}

cs_err *col_syncrepl_step(col_syncrepl *s, long long wait_ms, size_t max_messages, col_change_cb cb,
                          void *ctx, size_t *n_changes, bool *ended)
{
    LDAP *ld = col_ldap_handle(s->c);
    cs_err *err = NULL;

    *n_changes = 0;
    *ended = !s->active;
    if (!s->active)
        return NULL;
    if (!s->begun) {
        col_change ch = {.kind = COL_CHANGE_REFRESH_BEGIN};
        s->begun = true;
        err = cb(ctx, &ch);
        (*n_changes)++;
    }
    for (size_t i = 0; i < max_messages && err == NULL && s->active; i++) {
        struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
        LDAPMessage *msg = NULL;
        int rc;
        /* A signal (SIGHUP: compare the secret files) cuts select() short; without LDAP_OPT_RESTART libldap
           reports that as LDAP_SERVER_DOWN and the service would reconnect although the connection is
           intact. With it libldap keeps waiting for the rest of wait_ms on the same search, and the caller
           polls its secrets after the step. Only around this wait: elsewhere a bounded operation may be cut
           short by SIGTERM. */
        ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON);
        rc = ldap_result(ld, s->msgid, LDAP_MSG_ONE, &tv, &msg);
        ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_OFF);
        if (rc == 0)
            break; /* nothing within wait_ms */
        if (rc == -1) {
            int code = LDAP_SERVER_DOWN;
            ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &code);
            s->active = false;
            err = col_ldap_error(s->c, "waiting for syncrepl messages", code);
            break;
        }
        switch (rc) {
        case LDAP_RES_SEARCH_ENTRY:
            err = handle_entry(s, msg, cb, ctx, n_changes);
            break;
        case LDAP_RES_INTERMEDIATE:
            err = handle_intermediate(s, msg, cb, ctx, n_changes);
            break;
        case LDAP_RES_SEARCH_RESULT:
            err = handle_result(s, msg, cb, ctx, n_changes);
            break;
        default:
            break; /* references are off; anything else is not ours */
        }
        ldap_msgfree(msg);
    }
    *ended = !s->active;
    return err;
}

const void *col_syncrepl_cookie(const col_syncrepl *s, size_t *len)
{
    *len = s->cookie_len;
    return s->cookie;
}

bool col_syncrepl_refreshed(const col_syncrepl *s)
{
    return s->refreshed;
}

void col_syncrepl_free(col_syncrepl *s)
{
    if (s == NULL)
        return;
    if (s->active)
        ldap_abandon_ext(col_ldap_handle(s->c), s->msgid, NULL, NULL);
    free(s->base);
    for (size_t i = 0; i < s->n_bases; i++)
        free(s->bases[i]);
    free(s->bases);
    free(s->cookie);
    free(s);
}

cs_err *col_syncrepl_start_scoped(col_ldap *c, const char *const *base_dns, size_t n, const char *filter,
                                  const void *cookie, size_t cookie_len, col_syncrepl **out)
{
    const char *nc;
    cs_err *err;

    *out = NULL;
    if (n == 0)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL, "syncrepl needs at least one ldap.base_dns");
    if (n == 1)
        return col_syncrepl_start(c, base_dns[0], filter, cookie, cookie_len, out);
    nc = col_ldap_naming_context_of(c, base_dns[0]);
    for (size_t i = 1; nc != NULL && i < n; i++) {
        const char *other = col_ldap_naming_context_of(c, base_dns[i]);
        if (other == NULL || strcmp(other, nc) != 0)
            return cs_err_new(
                CS_ERR_CONFIG, CS_ERR_F_FATAL,
                "ldap.base_dns: %s and %s are not in one naming context of %s; syncrepl keeps one "
                "cookie, so run one collector (source.id) per naming context",
                base_dns[0], base_dns[i], col_ldap_url(c));
    }
    if (nc == NULL)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                          "ldap.base_dns: %s is in none of the naming contexts of %s; fix the DN",
                          base_dns[0], col_ldap_url(c));
    err = col_syncrepl_start(c, nc, filter, cookie, cookie_len, out);
    if (err != NULL)
        return err;
    (*out)->bases = calloc(n, sizeof *(*out)->bases);
    for (size_t i = 0; (*out)->bases != NULL && i < n; i++) {
        if (((*out)->bases[i] = strdup(base_dns[i])) == NULL)
            break;
        (*out)->n_bases = i + 1;
    }
    if ((*out)->n_bases != n) {
        col_syncrepl_free(*out);
        *out = NULL;
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory starting syncrepl");
    }
    return NULL;
}

cs_err *col_syncrepl_new_unconnected(col_syncrepl **out)
{
    *out = calloc(1, sizeof **out);
    return *out != NULL ? NULL : cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
}

cs_err *col_syncrepl_position(col_ldap *c, const char *base, void **cookie, size_t *cookie_len)
{
    static const char *const attrs[] = {LDAP_NO_ATTRS, NULL};
    LDAPControl *ctrl = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL, *done;
    LDAPMessage *res = NULL;
    BerElement *ber = NULL;
    struct berval ck = {0, NULL};
    long long ms = col_ldap_timeout_ms(c);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    cs_err *err = NULL;
    int rc, result = LDAP_SUCCESS;

    *cookie = NULL;
    *cookie_len = 0;
    err = make_request(c, LDAP_SYNC_REFRESH_ONLY, NULL, 0, &ctrl);
    if (err != NULL)
        goto cleanup;
    sctrls[0] = ctrl;
    rc = ldap_search_ext_s(col_ldap_handle(c), base, LDAP_SCOPE_BASE, "(objectClass=*)",
                           col_ldap_attrs(attrs), 0, sctrls, NULL, &tv, 1, &res);
    if (rc != LDAP_SUCCESS) {
        err = col_ldap_error(c, "syncrepl position (refreshOnly search of the base)", rc);
        goto cleanup;
    }
    rc = ldap_parse_result(col_ldap_handle(c), res, &result, NULL, NULL, NULL, &rctrls, 0);
    if (rc != LDAP_SUCCESS || result != LDAP_SUCCESS) {
        err = col_ldap_error(c, "syncrepl position result", rc != LDAP_SUCCESS ? rc : result);
        goto cleanup;
    }
    done = ldap_control_find(LDAP_CONTROL_SYNC_DONE, rctrls, NULL);
    if (done != NULL && done->ldctl_value.bv_len > 0) {
        err = col_syncrepl_parse_done(&done->ldctl_value, &ck, &ber);
        if (err != NULL) {
            cs_err_free(err);
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: malformed syncDone control", col_ldap_url(c));
            goto cleanup;
        }
    }
    if (ck.bv_val == NULL || ck.bv_len == 0 || ck.bv_len > COL_SYNCREPL_MAX_COOKIE) {
        err = cs_err_new(
            CS_ERR_LDAP, 0,
            "%s: syncrepl position: the server returned no cookie for %s (is the syncprov overlay on "
            "this database, and does it have a contextCSN yet?)",
            col_ldap_url(c), base);
        goto cleanup;
    }
    *cookie = malloc(ck.bv_len + 1);
    if (*cookie == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory keeping the syncrepl cookie");
        goto cleanup;
    }
    memcpy(*cookie, ck.bv_val, ck.bv_len);
    ((char *)*cookie)[ck.bv_len] = '\0';
    *cookie_len = ck.bv_len;
cleanup:
    if (ber != NULL)
        ber_free(ber, 1);
    ldap_controls_free(rctrls);
    ldap_msgfree(res);
    ldap_control_free(ctrl);
    return err;
}
