/*
 * col_dirsync: DirSync polling with re-reads by GUID (see col_dirsync.h).
 */
#include "col_dirsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "col_control.h"
#include "col_scope.h"
#include "cs_log.h"

#define FAC "dirsync"

enum {
    DIRSYNC_MAX_BYTES = 0x7fffffff, /* maxAttrCount: let the server choose the page size */
    MAX_ATTRS = 64,
    MAX_FILTER_ATTRS = 32
};
/* The well-known GUID of CN=Deleted Objects in a domain naming context. */
#define DELETED_OBJECTS_WKGUID "18e2ea80684f11d2b9aa00c04f79f805"

struct col_dirsync {
    col_ldap *c;
    char *nc_root;
    char *filter; /* DirSync's: the broad tracking filter (col_scope_broad_filter + tombstones) */
    char *scope;  /* the re-read's: the effective tracking filter (ldap.filter, group, tombstones) */
    char attr_names[MAX_FILTER_ATTRS][COL_SCOPE_MAX_ATTR_NAME];
    char *attrs[MAX_ATTRS]; /* dirsync_attrs + the attributes the filter tests */
    int flags;
    unsigned char *cookie;
    size_t cookie_len;
    char *reread_attrs[MAX_ATTRS]; /* col_object_attrs(AD) + lastKnownParent; static strings */
};

static const char *const dirsync_attrs[] = {"objectGUID",
                                            "userCertificate",
                                            "userSMIMECertificate",
                                            "mail",
                                            "userPrincipalName",
                                            "proxyAddresses",
                                            "sAMAccountName",
                                            "mS-DS-ConsistencyGuid",
                                            "name",
                                            "isDeleted",
                                            NULL};

static void check_deleted_objects(col_ldap *c, const char *nc_root);

cs_err *col_dirsync_new(col_ldap *c, const char *nc_root, const char *filter, int flags, const void *cookie,
                        size_t cookie_len, col_dirsync **out)
{
    col_dirsync *d = calloc(1, sizeof *d);

    *out = NULL;
    if (cookie_len > COL_DIRSYNC_MAX_COOKIE) {
        free(d);
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "DirSync cookie of %zu bytes is over the %d-byte limit",
                          cookie_len, COL_DIRSYNC_MAX_COOKIE);
    }
    if (d == NULL || (d->nc_root = strdup(nc_root)) == NULL || (d->cookie = malloc(cookie_len + 1)) == NULL) {
        col_dirsync_free(d);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing DirSync of %s", nc_root);
    }
    {
        /* Tombstones lose objectCategory: without the tombstone clause the default filter misses deletions.
           DirSync never reports an object that stopped matching its filter, so it searches with the broad
           filter and the re-read applies the real one (col_dirsync.h). */
        char *broad = NULL;
        cs_err *err = col_scope_broad_filter(filter, &broad);
        char **ad = col_object_attrs(COL_DIR_AD);
        size_t k = 0, n_f;
        if (err == NULL)
            err = col_scope_tracking_filter(broad, &d->filter);
        if (err == NULL)
            err = col_scope_tracking_filter(filter, &d->scope);
        free(broad);
        if (err != NULL) {
            col_dirsync_free(d);
            return err;
        }
        for (; dirsync_attrs[k] != NULL; k++)
            d->attrs[k] = (char *)(uintptr_t)dirsync_attrs[k]; /* libldap only reads them */
        /* DirSync reports a change only to a requested attribute: ask for what the filter tests too, or
           a user leaving (or entering) the filter by such an attribute would never be reported. memberOf is
           a back link that DirSync never reports: the group itself is watched (col_group). */
        n_f = col_scope_filter_attrs(filter, d->attr_names, MAX_FILTER_ATTRS);
        for (size_t i = 0; i < n_f && k < MAX_ATTRS - 1; i++)
            if (strcasecmp(d->attr_names[i], "memberOf") != 0)
                d->attrs[k++] = d->attr_names[i];
        d->attrs[k] = NULL;
        k = 0;
        for (; ad[k] != NULL && k < MAX_ATTRS - 2; k++)
            d->reread_attrs[k] = ad[k];
        d->reread_attrs[k] = (char *)(uintptr_t) "lastKnownParent"; /* libldap only reads it */
    }
    d->c = c;
    if ((flags & LDAP_CONTROL_X_DIRSYNC_OBJECT_SECURITY) != 0)
        check_deleted_objects(c, nc_root);
    d->flags = flags;
    if (cookie != NULL && cookie_len > 0)
        memcpy(d->cookie, cookie, cookie_len);
    d->cookie_len = cookie != NULL ? cookie_len : 0;
    *out = d;
    return NULL;
}

/*
 * With the object-security flag DirSync returns only what the account may read: if it cannot read
 * CN=Deleted Objects, deletions never arrive. Say so at start (design.md, "DirSync facts").
 * "Readable" means its objectGUID comes back: Samba returns the entry of a base search to any
 * authenticated user but strips the attributes it may not read, and then DirSync with the flag does not
 * return tombstones either (checked against Samba 4.17, tests/collector/col_dirsync_perms.sh). Windows
 * refuses the search instead; both are the unreadable case.
 */
static void check_deleted_objects(col_ldap *c, const char *nc_root)
{
    static const char *const attrs[] = {"objectGUID", NULL};
    LDAP *ld = col_ldap_handle(c);
    LDAPControl *show = NULL, *sctrls[2] = {NULL, NULL};
    LDAPMessage *res = NULL;
    long long ms = col_ldap_timeout_ms(c);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    char base[600];
    bool readable = false;
    int rc;

    snprintf(base, sizeof base, "<WKGUID=%s,%.500s>", DELETED_OBJECTS_WKGUID, nc_root);
    rc = ldap_control_create(COL_OID_SHOW_DELETED, 1, NULL, 0, &show);
    if (rc == LDAP_SUCCESS) {
        sctrls[0] = show;
        rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_BASE, "(objectClass=*)", col_ldap_attrs(attrs), 0, sctrls,
                               NULL, &tv, 1, &res);
    }
    if (rc == LDAP_SUCCESS) {
        LDAPMessage *e = ldap_first_entry(ld, res);
        struct berval **guid = e != NULL ? ldap_get_values_len(ld, e, "objectGUID") : NULL;
        readable = guid != NULL && guid[0] != NULL;
        ldap_value_free_len(guid);
    }
    if (!readable) {
        cs_err *err = rc != LDAP_SUCCESS ? col_ldap_error(c, "reading CN=Deleted Objects", rc) : NULL;
        char msg[1600];
        snprintf(msg, sizeof msg,
                 "ldap.dirsync_object_security: the bind account cannot read CN=Deleted Objects, so "
                 "deletions are invisible: a deleted user is NOT removed from Office 365 until the next "
                 "full resync. Fix: grant the account List Contents and Read Property on CN=Deleted "
                 "Objects (Windows: dsacls \"CN=Deleted Objects,%.500s\" /takeownership, then "
                 "dsacls \"CN=Deleted Objects,%.500s\" /G \"<DOMAIN>\\<account>:LCRP\"; Samba: "
                 "add (A;;RPLC;;;<account SID>) to its nTSecurityDescriptor with ldbmodify --show-deleted "
                 "on sam.ldb), or grant Replicating Directory Changes and set "
                 "ldap.dirsync_object_security: false",
                 nc_root, nc_root);
        cs_log_kv(CS_LOG_WARN, FAC, msg, "naming_context", nc_root, "error",
                  err != NULL ? cs_err_message(err) : "the entry came back without objectGUID (not readable)",
                  NULL);
        cs_err_free(err);
    } else {
        cs_log_kv(CS_LOG_INFO, FAC,
                  "DirSync with the object-security flag: CN=Deleted Objects is readable (deletions are "
                  "seen); only objects and attributes the account can read are tracked",
                  "naming_context", nc_root, NULL);
    }
    ldap_msgfree(res);
    ldap_control_free(show);
}

void col_dirsync_free(col_dirsync *d)
{
    if (d == NULL)
        return;
    free(d->nc_root);
    free(d->filter);
    free(d->scope);
    free(d->cookie);
    free(d);
}

const void *col_dirsync_cookie(const col_dirsync *d, size_t *len)
{
    *len = d->cookie_len;
    return d->cookie_len > 0 ? d->cookie : NULL;
}

/* Re-reads one object by GUID, deleted ones included, and reports it. */
static cs_err *reread(col_dirsync *d, const unsigned char guid[16], const char *dirsync_dn,
                      const char *const *bases, size_t n_bases, col_change_cb cb, void *ctx, size_t *n)
{
    LDAP *ld = col_ldap_handle(d->c);
    char id[COL_GUID_STR_LEN], base[64];
    LDAPControl *show = NULL, *sctrls[2] = {NULL, NULL};
    LDAPMessage *res = NULL, *e;
    col_object *o = NULL;
    cs_err *err = NULL;
    long long ms = col_ldap_timeout_ms(d->c);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    col_change ch = {.kind = COL_CHANGE_UPSERT};
    int rc;

    col_guid_format_ad(guid, id);
    snprintf(base, sizeof base, "<GUID=%s>", id);
    rc = ldap_control_create(COL_OID_SHOW_DELETED, 1, NULL, 0, &show);
    if (rc != LDAP_SUCCESS) {
        err = col_ldap_error(d->c, "creating the show-deleted control", rc);
        goto cleanup;
    }
    sctrls[0] = show;
    rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_BASE, d->scope, d->reread_attrs, 0, sctrls, NULL, &tv, 1,
                           &res);
    if (rc == LDAP_NO_SUCH_OBJECT) {
        /* Gone entirely (the tombstone too): a removal by id is all that is left to say. */
        err = col_object_new(COL_DIR_AD, dirsync_dn, &o);
        if (err == NULL)
            err = col_object_set_id(o, id);
        ch.kind = COL_CHANGE_REMOVAL;
        ch.reason = COL_REMOVAL_DELETED;
    } else if (rc != LDAP_SUCCESS) {
        char op[200];
        snprintf(op, sizeof op, "re-reading %s", base);
        err = col_ldap_error(d->c, op, rc);
    } else if ((e = ldap_first_entry(ld, res)) == NULL) {
        /* It exists but no longer matches the filter: out of scope. Only the id and DN are known here; the
           caller decides whether it ever was in scope (most such objects never were). */
        err = col_object_new(COL_DIR_AD, dirsync_dn, &o);
        if (err == NULL)
            err = col_object_set_id(o, id);
        ch.kind = COL_CHANGE_REMOVAL;
        ch.reason = COL_REMOVAL_OUT_OF_SCOPE;
    } else {
        err = col_object_from_entry(ld, e, COL_DIR_AD, &o);
        if (err == NULL && col_object_is_deleted(o)) {
            struct berval **parent = ldap_get_values_len(ld, e, "lastKnownParent");
            bool in = n_bases == 0 || parent == NULL || parent[0] == NULL;
            for (size_t i = 0; i < n_bases && !in; i++) {
                char *p = strndup(parent[0]->bv_val, parent[0]->bv_len);
                in = p != NULL && col_ldap_dn_is_under(p, bases[i]);
                free(p);
            }
            ldap_value_free_len(parent);
            ch.kind = COL_CHANGE_REMOVAL;
            ch.reason = COL_REMOVAL_DELETED;
            if (!in) {
                /* Deleted from outside the scope: it was never in it (or left it before). */
                col_object_free(o);
                o = NULL;
            }
        } else if (err == NULL) {
            bool in = n_bases == 0;
            for (size_t i = 0; i < n_bases && !in; i++)
                in = col_ldap_dn_is_under(col_object_dn(o), bases[i]);
            if (!in) {
                ch.kind = COL_CHANGE_REMOVAL;
                ch.reason = COL_REMOVAL_OUT_OF_SCOPE;
            }
        }
    }
    if (err == NULL && o != NULL) {
        ch.object = o;
        err = cb(ctx, &ch);
        (*n)++;
    }
cleanup:
    col_object_free(o);
    ldap_msgfree(res);
    ldap_control_free(show);
    return err;
}

/*
 * The server refused DirSync without the object-security flag: the account lacks "Replicating Directory
 * Changes" on the naming context (Samba and Windows both answer insufficientAccessRights). Not retriable:
 * a restart does not grant the right. The message names the right, where it is granted, and the fixes.
 */
static cs_err *refused(const col_dirsync *d)
{
    LDAP *ld = col_ldap_handle(d->c);
    const char *who = col_ldap_bind_dn(d->c), *trustee;
    char *diag = NULL;
    cs_err *err;

    ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    if (who == NULL)
        who = "(anonymous or SASL)";
    /* samba-tool needs a DN; ldap.bind_dn may be user@domain. */
    trustee = strchr(who, '=') != NULL ? who : "<the account's DN>";
    err = cs_err_new(
        CS_ERR_CONFIG, 0,
        "%s: DirSync of %s refused: %s (%d)%s%s. The bind account %s lacks the \"Replicating Directory "
        "Changes\" right (DS-Replication-Get-Changes, 1131f6aa-9c07-11d1-f79f-00c04fc2dcd2) on the naming "
        "context %s. Fix, either: (1) grant it on the naming context: Windows: Active Directory Users and "
        "Computers, right-click the domain, Delegate Control, add the account, \"Create a custom task\", "
        "\"This folder\", permission \"Replicating Directory Changes\" (or: dsacls \"%s\" /G "
        "\"<DOMAIN>\\<account>:CA;Replicating Directory Changes\"); Samba: samba-tool dsacl set "
        "-H ldap://<dc> -U Administrator --objectdn=\"%s\" --trusteedn=\"%s\" "
        "--car=get-changes --action=allow; or (2) set ldap.dirsync_object_security: true: no special right, "
        "but DirSync then returns only objects and attributes the account can read, and deletions only if "
        "it can read CN=Deleted Objects",
        col_ldap_url(d->c), d->nc_root, ldap_err2string(LDAP_INSUFFICIENT_ACCESS), LDAP_INSUFFICIENT_ACCESS,
        diag != NULL && diag[0] != '\0' ? ": " : "", diag != NULL ? diag : "", who, d->nc_root, d->nc_root,
        d->nc_root, trustee);
    ldap_memfree(diag);
    return err;
}

/* DirSync rounds while "more"; cb == NULL: only advance the cookie. */
static cs_err *run(col_dirsync *d, const char *const *bases, size_t n_bases, col_change_cb cb, void *ctx,
                   size_t *n)
{
    LDAP *ld = col_ldap_handle(d->c);
    cs_err *err = NULL;
    long long ms = col_ldap_timeout_ms(d->c);
    long rounds;

    *n = 0;
    for (rounds = 0; rounds < COL_DIRSYNC_MAX_ROUNDS && err == NULL; rounds++) {
        LDAPControl *ctrl = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL, *resp;
        LDAPMessage *res = NULL, *e;
        struct berval cookie = {d->cookie_len, (char *)d->cookie}, next = {0, NULL};
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        int rc, result = LDAP_SUCCESS, more = 0;

        /* ber_printf drops a NULL cookie berval ("O"): d->cookie is never NULL, an empty one is sent. */
        rc = ldap_create_dirsync_control(ld, d->flags, DIRSYNC_MAX_BYTES, &cookie, &ctrl);
        if (rc != LDAP_SUCCESS) {
            err = col_ldap_error(d->c, "creating the DirSync control", rc);
            break;
        }
        sctrls[0] = ctrl;
        rc = ldap_search_ext_s(ld, d->nc_root, LDAP_SCOPE_SUBTREE, d->filter, d->attrs, 0, sctrls, NULL, &tv,
                               LDAP_NO_LIMIT, &res);
        ldap_control_free(ctrl);
        if (rc == LDAP_INSUFFICIENT_ACCESS && (d->flags & LDAP_CONTROL_X_DIRSYNC_OBJECT_SECURITY) == 0) {
            err = refused(d);
            ldap_msgfree(res);
            break;
        }
        if (rc != LDAP_SUCCESS) {
            char op[600];
            snprintf(op, sizeof op, "DirSync search of %.250s with %.250s", d->nc_root, d->filter);
            err = col_ldap_error(d->c, op, rc);
            ldap_msgfree(res);
            break;
        }
        for (e = ldap_first_entry(ld, res); e != NULL && err == NULL && cb != NULL;
             e = ldap_next_entry(ld, e)) {
            struct berval **guid = ldap_get_values_len(ld, e, "objectGUID");
            char *dn = ldap_get_dn(ld, e);
            if (guid == NULL || guid[0] == NULL || guid[0]->bv_len != 16)
                cs_log_kv(CS_LOG_ERROR, FAC, "DirSync entry without a 16-byte objectGUID skipped", "dn", dn,
                          NULL);
            else
                err = reread(d, (const unsigned char *)guid[0]->bv_val, dn, bases, n_bases, cb, ctx, n);
            ldap_value_free_len(guid);
            ldap_memfree(dn);
        }
        if (err == NULL) {
            rc = ldap_parse_result(ld, res, &result, NULL, NULL, NULL, &rctrls, 0);
            if (rc != LDAP_SUCCESS || result != LDAP_SUCCESS)
                err = col_ldap_error(d->c, "DirSync result", rc != LDAP_SUCCESS ? rc : result);
        }
        ldap_msgfree(res);
        if (err == NULL && (resp = ldap_control_find(LDAP_CONTROL_X_DIRSYNC, rctrls, NULL)) == NULL)
            err = cs_err_new(CS_ERR_LDAP, 0, "%s: the server sent no DirSync response control",
                             col_ldap_url(d->c));
        if (err == NULL)
            err = cs_err_wrap(col_control_parse_dirsync(ld, resp, COL_DIRSYNC_MAX_COOKIE, &more, &next), "%s",
                              col_ldap_url(d->c));
        ldap_controls_free(rctrls);
        if (err == NULL) {
            unsigned char *p = malloc(next.bv_len + 1);
            if (p == NULL) {
                err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory keeping the DirSync cookie");
            } else {
                if (next.bv_len > 0)
                    memcpy(p, next.bv_val, next.bv_len);
                free(d->cookie);
                d->cookie = p;
                d->cookie_len = next.bv_len;
                if (cb != NULL) {
                    col_change ch = {
                        .kind = COL_CHANGE_COOKIE, .cookie = d->cookie, .cookie_len = d->cookie_len};
                    err = cb(ctx, &ch);
                    (*n)++;
                }
            }
        }
        ber_memfree(next.bv_val); /* the parsed cookie is a copy */
        if (!more)
            break;
    }
    if (err == NULL && rounds == COL_DIRSYNC_MAX_ROUNDS)
        err = cs_err_new(CS_ERR_LDAP, 0, "%s: DirSync still had more data after %d rounds",
                         col_ldap_url(d->c), COL_DIRSYNC_MAX_ROUNDS);
    return err;
}

cs_err *col_dirsync_poll(col_dirsync *d, const char *const *base_dns, size_t n, col_change_cb cb, void *ctx,
                         size_t *n_changes)
{
    return run(d, base_dns, n, cb, ctx, n_changes);
}

cs_err *col_dirsync_skip_to_end(col_dirsync *d)
{
    size_t n = 0;
    return run(d, NULL, 0, NULL, NULL, &n);
}
