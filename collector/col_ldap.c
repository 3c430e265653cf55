/*
 * col_ldap: connection, bind and rootDSE (see col_ldap.h).
 */
#include "col_ldap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "cs_log.h"

#define FAC "ldap"

enum {
    MAX_NAMING_CONTEXTS = 64, /* a forest with more partitions than this is beyond one collector */
    MAX_CONTROLS = 256,       /* supportedControl values kept */
};

struct col_ldap {
    const col_config *cfg;
    LDAP *ld;
    char *url;
    char *server; /* host:port */
    bool tls;     /* ldaps:// or StartTLS: TLS errors get the CA hint */
    col_dir_kind kind;
    char **controls; /* supportedControl, NULL-terminated */
    size_t n_controls;
    char **ncs; /* namingContexts, NULL-terminated */
    size_t n_ncs;
    char *default_nc;
    char *ds_service_name;
    int64_t highest_usn;
    bool has_invocation_id;
    unsigned char invocation_id[16];
};

char **col_ldap_attrs(const char *const *attrs)
{
    /* libldap takes `char **attrs` but never writes them: the cast keeps the tables read-only. */
    return (char **)(uintptr_t)attrs;
}

const char *col_ldap_kind_name(col_dir_kind kind)
{
    switch (kind) {
    case COL_DIR_AD:
        return "ad";
    case COL_DIR_OPENLDAP:
        return "openldap";
    case COL_DIR_OTHER:
        break;
    }
    return "other";
}

const char *col_ldap_mode_name(col_ldap_mode mode)
{
    switch (mode) {
    case COL_LDAP_MODE_AUTO:
        return "auto";
    case COL_LDAP_MODE_DIRSYNC:
        return "dirsync";
    case COL_LDAP_MODE_USN:
        return "usn";
    case COL_LDAP_MODE_SYNCREPL:
        return "syncrepl";
    }
    return "unknown";
}

static bool is_retriable(int rc)
{
    switch (rc) {
    case LDAP_SERVER_DOWN:
    case LDAP_CONNECT_ERROR:
    case LDAP_TIMEOUT:
    case LDAP_TIMELIMIT_EXCEEDED:
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE:
        return true;
    default:
        return false;
    }
}

/* A TLS handshake that failed on the certificate says so in the diagnostic message (OpenSSL's words:
   "certificate verify failed"). Not any message that names TLS or SSL: a server that drops the connection
   (a directory restarting) gives "The TLS connection was non-properly terminated." (GnuTLS) or
   "SSL routines::unexpected eof while reading" (OpenSSL), which are transient and must stay retriable. */
static bool diag_is_tls_verify(const char *diag)
{
    return diag != NULL && (strstr(diag, "certificate") != NULL || strstr(diag, "Certificate") != NULL ||
                            strstr(diag, "verify") != NULL);
}

cs_err *col_ldap_error(const col_ldap *c, const char *operation, int rc)
{
    char *diag = NULL;
    const char *hint = "";
    unsigned flags = is_retriable(rc) ? CS_ERR_F_RETRIABLE : 0;
    cs_err *err = NULL;

    if (c != NULL && c->ld != NULL)
        ldap_get_option(c->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    if (c != NULL && c->tls && (rc == LDAP_CONNECT_ERROR || rc == LDAP_SERVER_DOWN) &&
        diag_is_tls_verify(diag)) {
        /* A rejected certificate does not fix itself: retrying would only hide the misconfiguration. */
        hint =
            "; the server's TLS certificate was not accepted: check ldap.tls.ca_file (the CA that signed it) "
            "and that the URL's host is in the certificate";
        flags = 0;
    } else if (c != NULL && c->tls && rc == LDAP_CONNECT_ERROR) {
        hint = "; TLS could not be set up: check ldap.tls.ca_file and the server's TLS configuration";
    } else if (rc == LDAP_INVALID_CREDENTIALS) {
        hint = "; check ldap.bind_dn and the contents of ldap.password_file";
        flags |= COL_LDAP_ERR_F_BAD_CREDENTIALS;
    } else if (rc == LDAP_STRONG_AUTH_REQUIRED || rc == LDAP_CONFIDENTIALITY_REQUIRED) {
        hint = "; the server requires an encrypted connection: use ldaps:// or set ldap.starttls: true";
    } else if (rc == LDAP_INSUFFICIENT_ACCESS) {
        hint = "; the bind account lacks a right (DirSync needs Replicating Directory Changes)";
    }
    err = cs_err_new(CS_ERR_LDAP, flags, "%s: %s: %s (%d)%s%s%s",
                     c != NULL && c->url ? c->url : "(no server)", operation, ldap_err2string(rc), rc,
                     diag != NULL && diag[0] != '\0' ? ": " : "", diag != NULL ? diag : "", hint);
    ldap_memfree(diag);
    return err;
}

/* Copies a NULL-terminated array of bervals into NULL-terminated strings, at most `max`. */
static cs_err *copy_values(struct berval **vals, size_t max, char ***out, size_t *n_out)
{
    size_t n = 0, i;
    char **arr = NULL;

    while (vals != NULL && vals[n] != NULL && n < max)
        n++;
    arr = calloc(n + 1, sizeof *arr);
    if (arr == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory copying rootDSE values");
    for (i = 0; i < n; i++) {
        arr[i] = strndup(vals[i]->bv_val, vals[i]->bv_len);
        if (arr[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(arr[j]);
            free(arr);
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory copying rootDSE values");
        }
    }
    *out = arr;
    *n_out = n;
    return NULL;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static bool has_value(struct berval **vals, const char *want)
{
    for (size_t i = 0; vals != NULL && vals[i] != NULL && i < MAX_CONTROLS; i++) {
        if (vals[i]->bv_len == strlen(want) && strncasecmp(vals[i]->bv_val, want, vals[i]->bv_len) == 0)
            return true;
    }
    return false;
}

static char *first_value(struct berval **vals)
{
    if (vals == NULL || vals[0] == NULL)
        return NULL;
    return strndup(vals[0]->bv_val, vals[0]->bv_len);
}

/* Reads the invocationId of the DSA named by dsServiceName (AD only). Failure is not fatal: logged. */
static void read_invocation_id(col_ldap *c)
{
    static const char *const attrs[] = {"invocationId", NULL};
    LDAPMessage *res = NULL, *e;
    struct berval **vals = NULL;
    int rc;

    c->has_invocation_id = false;
    if (c->ds_service_name == NULL)
        return;
    rc = ldap_search_ext_s(c->ld, c->ds_service_name, LDAP_SCOPE_BASE, "(objectClass=*)",
                           col_ldap_attrs(attrs), 0, NULL, NULL, NULL, 1, &res);
    if (rc != LDAP_SUCCESS) {
        cs_err *err = col_ldap_error(c, "reading invocationId of dsServiceName", rc);
        cs_log_kv(CS_LOG_WARN, FAC, "cannot read the DSA's invocationId", "error", cs_err_message(err), NULL);
        cs_err_free(err);
        goto cleanup;
    }
    e = ldap_first_entry(c->ld, res);
    if (e != NULL)
        vals = ldap_get_values_len(c->ld, e, "invocationId");
    if (vals != NULL && vals[0] != NULL && vals[0]->bv_len == 16) {
        memcpy(c->invocation_id, vals[0]->bv_val, 16);
        c->has_invocation_id = true;
    }
cleanup:
    ldap_value_free_len(vals);
    ldap_msgfree(res);
}

cs_err *col_ldap_read_rootdse(col_ldap *c)
{
    static const char *const attrs[] = {
        "supportedControl",    "supportedCapabilities", "forestFunctionality",
        "objectClass",         "namingContexts",        "defaultNamingContext",
        "highestCommittedUSN", "dsServiceName",         NULL};
    LDAPMessage *res = NULL, *e = NULL;
    struct berval **ctl = NULL, **caps = NULL, **forest = NULL, **oc = NULL, **ncs = NULL, **dnc = NULL,
                  **usn = NULL, **dsa = NULL;
    cs_err *err = NULL;
    int rc;

    rc = ldap_search_ext_s(c->ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", col_ldap_attrs(attrs), 0, NULL,
                           NULL, NULL, 1, &res);
    if (rc != LDAP_SUCCESS) {
        err = col_ldap_error(c, "reading the rootDSE", rc);
        goto cleanup;
    }
    e = ldap_first_entry(c->ld, res);
    if (e == NULL) {
        err = cs_err_new(
            CS_ERR_LDAP, 0,
            "%s: reading the rootDSE: the server returned no entry; allow the bind account to read "
            "the rootDSE",
            c->url);
        goto cleanup;
    }
    ctl = ldap_get_values_len(c->ld, e, "supportedControl");
    caps = ldap_get_values_len(c->ld, e, "supportedCapabilities");
    forest = ldap_get_values_len(c->ld, e, "forestFunctionality");
    oc = ldap_get_values_len(c->ld, e, "objectClass");
    ncs = ldap_get_values_len(c->ld, e, "namingContexts");
    dnc = ldap_get_values_len(c->ld, e, "defaultNamingContext");
    usn = ldap_get_values_len(c->ld, e, "highestCommittedUSN");
    dsa = ldap_get_values_len(c->ld, e, "dsServiceName");

    if (caps != NULL || forest != NULL)
        c->kind = COL_DIR_AD;
    else if (has_value(oc, "OpenLDAProotDSE"))
        c->kind = COL_DIR_OPENLDAP;
    else
        c->kind = COL_DIR_OTHER;

    free_strv(c->controls);
    c->controls = NULL;
    free_strv(c->ncs);
    c->ncs = NULL;
    free(c->default_nc);
    free(c->ds_service_name);
    c->default_nc = c->ds_service_name = NULL;
    err = copy_values(ctl, MAX_CONTROLS, &c->controls, &c->n_controls);
    if (err == NULL)
        err = copy_values(ncs, MAX_NAMING_CONTEXTS, &c->ncs, &c->n_ncs);
    if (err != NULL)
        goto cleanup;
    c->default_nc = first_value(dnc);
    if (c->default_nc == NULL && c->n_ncs > 0)
        c->default_nc = strdup(c->ncs[0]);
    c->ds_service_name = first_value(dsa);
    c->highest_usn = -1;
    if (usn != NULL && usn[0] != NULL && usn[0]->bv_len > 0 && usn[0]->bv_len < 24) {
        char buf[24], *end = NULL;
        long long v;
        memcpy(buf, usn[0]->bv_val, usn[0]->bv_len);
        buf[usn[0]->bv_len] = '\0';
        v = strtoll(buf, &end, 10);
        if (end != NULL && *end == '\0' && v >= 0)
            c->highest_usn = v;
    }
    read_invocation_id(c);

cleanup:
    ldap_value_free_len(ctl);
    ldap_value_free_len(caps);
    ldap_value_free_len(forest);
    ldap_value_free_len(oc);
    ldap_value_free_len(ncs);
    ldap_value_free_len(dnc);
    ldap_value_free_len(usn);
    ldap_value_free_len(dsa);
    ldap_msgfree(res);
    return err;
}

/* host:port of the URL for events (the URL itself may carry a path or extensions). */
static char *server_of(const char *url)
{
    LDAPURLDesc *desc = NULL;
    char *out = NULL;

    if (ldap_url_parse(url, &desc) != LDAP_URL_SUCCESS)
        return strdup(url);
    {
        char buf[300];
        int port = desc->lud_port != 0
                       ? desc->lud_port
                       : (strcasecmp(desc->lud_scheme, "ldaps") == 0 ? LDAPS_PORT : LDAP_PORT);
        snprintf(buf, sizeof buf, "%.255s:%d", desc->lud_host != NULL ? desc->lud_host : "", port);
        out = strdup(buf);
    }
    ldap_free_urldesc(desc);
    return out;
}

static void ms_to_timeval(long long ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* Does a TLS connection (no bind, no credentials sent) to the configured server succeed now, with the
   configured verification (ldap.tls.ca_file) or without any? */
static bool tls_connects(const col_config *cfg, bool verify)
{
    LDAP *ld = NULL;
    int version = LDAP_VERSION3, req = verify ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER, newctx = 0, rc;
    struct timeval tv;
    bool works = false;

    if (ldap_initialize(&ld, cfg->ldap_url) != LDAP_SUCCESS)
        return false;
    ms_to_timeval(cfg->ldap_timeout_ms, &tv);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
    if (verify && cfg->ldap_tls_ca_file != NULL)
        ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, cfg->ldap_tls_ca_file);
    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &req);
    ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newctx);
    rc = cfg->ldap_starttls ? ldap_start_tls_s(ld, NULL, NULL) : ldap_connect(ld);
    works = rc == LDAP_SUCCESS;
    ldap_unbind_ext_s(ld, NULL, NULL);
    return works;
}

/*
 * libldap reports a rejected certificate on ldaps:// as a bare "Can't contact LDAP server" with no
 * diagnostic. To say what is wrong, try the same server once more without verification: if that
 * connects and a verified connection still fails, the certificate is the problem (fatal). If the verified
 * one connects too, the first failure was the connection (the server dropped it: restarting, shutting
 * down, overloaded), which is retriable: calling that a certificate problem would stop the service on a
 * directory restart.
 */
static bool tls_is_the_problem(const col_config *cfg)
{
    return cfg->ldap_tls_verify && tls_connects(cfg, false) && !tls_connects(cfg, true);
}

/* An error from connecting, StartTLS or binding, with the certificate diagnosis for TLS connections. */
static cs_err *connect_error(col_ldap *c, const char *operation, int rc)
{
    if (c->tls && (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR) && tls_is_the_problem(c->cfg)) {
        char *diag = NULL;
        cs_err *err;
        ldap_get_option(c->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
        /* Not retriable: a certificate that does not verify will not verify later either. */
        err = cs_err_new(
            CS_ERR_LDAP, 0,
            "%s: %s: %s (%d)%s%s; the server's TLS certificate was not accepted (the same server "
            "answers without verification): check ldap.tls.ca_file (the CA that signed it) and that the "
            "URL's host is in the certificate",
            c->url, operation, ldap_err2string(rc), rc, diag != NULL && diag[0] != '\0' ? ": " : "",
            diag != NULL ? diag : "");
        ldap_memfree(diag);
        return err;
    }
    return col_ldap_error(c, operation, rc);
}

cs_err *col_ldap_connect(const col_config *cfg, col_ldap **out)
{
    return col_ldap_connect_as(cfg, cfg->ldap_password, out);
}

cs_err *col_ldap_connect_as(const col_config *cfg, const char *password, col_ldap **out)
{
    col_ldap *c = NULL;
    cs_err *err = NULL;
    int rc, version = LDAP_VERSION3;
    struct timeval tv;

    *out = NULL;
    if (cfg->ldap_sasl_mech == COL_SASL_GSSAPI)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                          "ldap.sasl_mech: GSSAPI is not supported yet; use a simple bind (ldap.bind_dn and "
                          "ldap.password_file) over ldaps:// or StartTLS");
    /* Enforced here too, not only by the config loader: a col_config built any other way (tests, future
     * callers) must not send a password in clear text either. Checked before any packet is sent. */
    if (password != NULL && strncasecmp(cfg->ldap_url, "ldaps://", 8) != 0 && !cfg->ldap_starttls &&
        !cfg->ldap_allow_plaintext_bind)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                          "%s: refusing a simple bind without TLS: it would send the password in clear text; "
                          "use ldaps://, set ldap.starttls: true, or (tests only) set "
                          "ldap.allow_plaintext_bind: true",
                          cfg->ldap_url);
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory connecting to %s", cfg->ldap_url);
    c->cfg = cfg;
    c->highest_usn = -1;
    c->url = strdup(cfg->ldap_url);
    c->server = server_of(cfg->ldap_url);
    if (c->url == NULL || c->server == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory connecting to %s", cfg->ldap_url);
        goto cleanup;
    }
    c->tls = strncasecmp(cfg->ldap_url, "ldaps://", 8) == 0 || cfg->ldap_starttls;

    rc = ldap_initialize(&c->ld, cfg->ldap_url);
    if (rc != LDAP_SUCCESS) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "ldap.url %s: %s; write ldap://host[:port] or ldaps://host[:port]",
                         cfg->ldap_url, ldap_err2string(rc));
        goto cleanup;
    }
    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ms_to_timeval(cfg->ldap_timeout_ms, &tv);
    ldap_set_option(c->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(c->ld, LDAP_OPT_TIMEOUT, &tv);

    if (c->tls) {
        /* Per-connection TLS settings: the global context would leak across connections (and tests). */
        int req = cfg->ldap_tls_verify ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER, newctx = 0;
        if (cfg->ldap_tls_ca_file != NULL &&
            ldap_set_option(c->ld, LDAP_OPT_X_TLS_CACERTFILE, cfg->ldap_tls_ca_file) != LDAP_OPT_SUCCESS) {
            err = cs_err_new(CS_ERR_CONFIG, 0, "ldap.tls.ca_file %s: libldap refused it; check the path",
                             cfg->ldap_tls_ca_file);
            goto cleanup;
        }
        ldap_set_option(c->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &req);
        if (!cfg->ldap_tls_verify)
            cs_log_kv(CS_LOG_WARN, FAC,
                      "TLS certificate verification is off (ldap.tls.verify: false): the server is not "
                      "authenticated",
                      "url", c->url, NULL);
        rc = ldap_set_option(c->ld, LDAP_OPT_X_TLS_NEWCTX, &newctx);
        if (rc != LDAP_OPT_SUCCESS) {
            err = col_ldap_error(c, "creating the TLS context (check ldap.tls.ca_file)", LDAP_CONNECT_ERROR);
            goto cleanup;
        }
    }
    if (cfg->ldap_starttls) {
        rc = ldap_start_tls_s(c->ld, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            err = connect_error(c, "StartTLS", rc);
            goto cleanup;
        }
    }
    {
        struct berval cred = {0, NULL};
        if (password != NULL) {
            /* ldap_sasl_bind_s takes a non-const berval; it only reads the password. */
            cred.bv_val = (char *)(uintptr_t)password;
            cred.bv_len = strlen(password);
        }
        rc = ldap_sasl_bind_s(c->ld, cfg->ldap_bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            char op[300];
            snprintf(op, sizeof op, "simple bind as %.250s",
                     cfg->ldap_bind_dn ? cfg->ldap_bind_dn : "(anonymous)");
            err = connect_error(c, op, rc);
            goto cleanup;
        }
    }
    err = col_ldap_read_rootdse(c);
    if (err != NULL)
        goto cleanup;
    cs_log_kv(CS_LOG_INFO, FAC, "connected", "url", c->url, "directory", col_ldap_kind_name(c->kind),
              "naming_context", c->default_nc, NULL);
    *out = c;
    c = NULL;
cleanup:
    col_ldap_free(c);
    return err;
}

void col_ldap_free(col_ldap *c)
{
    if (c == NULL)
        return;
    if (c->ld != NULL)
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    free(c->url);
    free(c->server);
    free_strv(c->controls);
    free_strv(c->ncs);
    free(c->default_nc);
    free(c->ds_service_name);
    free(c);
}

LDAP *col_ldap_handle(const col_ldap *c)
{
    return c->ld;
}

const char *col_ldap_url(const col_ldap *c)
{
    return c->url;
}

const char *col_ldap_server(const col_ldap *c)
{
    return c->server;
}

const char *col_ldap_bind_dn(const col_ldap *c)
{
    return c->cfg != NULL ? c->cfg->ldap_bind_dn : NULL;
}

long long col_ldap_timeout_ms(const col_ldap *c)
{
    return c->cfg->ldap_timeout_ms;
}

const col_config *col_ldap_config(const col_ldap *c)
{
    return c->cfg;
}

col_dir_kind col_ldap_kind(const col_ldap *c)
{
    return c->kind;
}

bool col_ldap_supports_control(const col_ldap *c, const char *oid)
{
    for (size_t i = 0; i < c->n_controls; i++) {
        if (strcmp(c->controls[i], oid) == 0)
            return true;
    }
    return false;
}

const char *col_ldap_default_naming_context(const col_ldap *c)
{
    return c->default_nc;
}

size_t col_ldap_naming_context_count(const col_ldap *c)
{
    return c->n_ncs;
}

const char *col_ldap_naming_context(const col_ldap *c, size_t i)
{
    return i < c->n_ncs ? c->ncs[i] : NULL;
}

bool col_ldap_dn_is_under(const char *dn, const char *base)
{
    size_t n = strlen(dn), b = strlen(base);

    if (b == 0)
        return true; /* the root holds everything */
    if (b > n || strcasecmp(dn + (n - b), base) != 0)
        return false;
    return n == b || dn[n - b - 1] == ',';
}

const char *col_ldap_naming_context_of(const col_ldap *c, const char *dn)
{
    const char *best = NULL;

    for (size_t i = 0; i < c->n_ncs; i++) {
        if (col_ldap_dn_is_under(dn, c->ncs[i]) && (best == NULL || strlen(c->ncs[i]) > strlen(best)))
            best = c->ncs[i];
    }
    return best;
}

int64_t col_ldap_highest_usn(const col_ldap *c)
{
    return c->highest_usn;
}

const char *col_ldap_ds_service_name(const col_ldap *c)
{
    return c->ds_service_name;
}

bool col_ldap_invocation_id(const col_ldap *c, unsigned char out[16])
{
    if (!c->has_invocation_id)
        return false;
    memcpy(out, c->invocation_id, 16);
    return true;
}

cs_err *col_ldap_pick_mode(const col_ldap *c, col_ldap_mode configured, col_ldap_mode *out)
{
    bool dirsync = col_ldap_supports_control(c, COL_OID_DIRSYNC);
    bool syncrepl = col_ldap_supports_control(c, COL_OID_SYNCREPL);
    bool ad = c->kind == COL_DIR_AD;

    switch (configured) {
    case COL_LDAP_MODE_AUTO:
        if (ad && dirsync) {
            *out = COL_LDAP_MODE_DIRSYNC;
            return NULL;
        }
        if (ad && c->highest_usn >= 0) {
            *out = COL_LDAP_MODE_USN;
            return NULL;
        }
        if (syncrepl) {
            *out = COL_LDAP_MODE_SYNCREPL;
            return NULL;
        }
        return cs_err_new(
            CS_ERR_CONFIG, CS_ERR_F_FATAL,
            "%s: ldap.mode: auto found no way to track changes: the server (%s) advertises neither "
            "DirSync (AD) nor syncrepl (OpenLDAP syncprov overlay); enable syncprov or use AD",
            c->url, col_ldap_kind_name(c->kind));
    case COL_LDAP_MODE_DIRSYNC:
        if (!dirsync)
            return cs_err_new(
                CS_ERR_CONFIG, CS_ERR_F_FATAL,
                "%s: ldap.mode: dirsync but the server (%s) does not advertise the DirSync control "
                "%s; use ldap.mode: auto",
                c->url, col_ldap_kind_name(c->kind), COL_OID_DIRSYNC);
        break;
    case COL_LDAP_MODE_USN:
        if (!ad || c->highest_usn < 0)
            return cs_err_new(
                CS_ERR_CONFIG, CS_ERR_F_FATAL,
                "%s: ldap.mode: usn needs Active Directory (highestCommittedUSN in the rootDSE); "
                "the server is %s; use ldap.mode: auto",
                c->url, col_ldap_kind_name(c->kind));
        break;
    case COL_LDAP_MODE_SYNCREPL:
        if (!syncrepl)
            return cs_err_new(
                CS_ERR_CONFIG, CS_ERR_F_FATAL,
                "%s: ldap.mode: syncrepl but the server (%s) does not advertise the syncrepl control "
                "%s; load the syncprov overlay or use ldap.mode: auto",
                c->url, col_ldap_kind_name(c->kind), COL_OID_SYNCREPL);
        break;
    }
    *out = configured;
    return NULL;
}
