/*
 * col_scope: scope filters (see col_scope.h).
 */
#include "col_scope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "cs_buf.h"

static cs_err *too_long(const char *what)
{
    return cs_err_new(CS_ERR_CONFIG, 0, "%s makes a search filter over %d bytes; shorten ldap.filter", what,
                      COL_SCOPE_MAX_FILTER);
}

cs_err *col_scope_filter(const char *filter, const char *group_dn, bool nested, char **out)
{
    struct berval in, esc = {0, NULL};
    char *f = NULL;
    int n;

    *out = NULL;
    if (group_dn == NULL || group_dn[0] == '\0') {
        *out = strdup(filter);
        return *out != NULL ? NULL : cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the filter");
    }
    in.bv_val = (char *)(uintptr_t)group_dn; /* only read */
    in.bv_len = strlen(group_dn);
    /* A DN may hold '(', ')', '*' or '\': unescaped they would change the filter. */
    if (ldap_bv2escaped_filter_value(&in, &esc) != 0)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory escaping ldap.group_dn");
    f = malloc(COL_SCOPE_MAX_FILTER);
    if (f == NULL) {
        ber_memfree(esc.bv_val);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the filter");
    }
    n = snprintf(f, COL_SCOPE_MAX_FILTER, "(&%s(memberOf%s=%s))", filter,
                 nested ? ":" COL_SCOPE_IN_CHAIN ":" : "", esc.bv_val);
    ber_memfree(esc.bv_val);
    if (n < 0 || n >= COL_SCOPE_MAX_FILTER) {
        free(f);
        return too_long("ldap.group_dn");
    }
    *out = f;
    return NULL;
}

cs_err *col_scope_tracking_filter(const char *filter, char **out)
{
    char *f = malloc(COL_SCOPE_MAX_FILTER);
    int n;

    *out = NULL;
    if (f == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the tracking filter");
    n = snprintf(f, COL_SCOPE_MAX_FILTER, "(|%s%s)", filter, COL_SCOPE_TOMBSTONE_CLAUSE);
    if (n < 0 || n >= COL_SCOPE_MAX_FILTER) {
        free(f);
        return too_long("the tombstone clause");
    }
    *out = f;
    return NULL;
}

cs_err *col_scope_check(col_ldap *c, const col_config *cfg)
{
    cs_err *err = NULL;

    for (size_t i = 0; i < cfg->ldap_base_dn_count; i++) {
        if (col_ldap_naming_context_of(c, cfg->ldap_base_dns[i]) == NULL)
            return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                              "ldap.base_dns: %s is in none of the naming contexts of %s (%s%s); fix the DN",
                              cfg->ldap_base_dns[i], col_ldap_url(c),
                              col_ldap_default_naming_context(c) != NULL ? "e.g. " : "none advertised",
                              col_ldap_default_naming_context(c) != NULL ? col_ldap_default_naming_context(c)
                                                                         : "");
    }
    return err;
}

/* The end of the parenthesised component starting at f[0] == '(' (values escape parentheses, RFC 4515). */
static const char *component_end(const char *f)
{
    int depth = 0;
    for (const char *p = f; *p; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')' && --depth == 0)
            return p + 1;
    }
    return NULL;
}

/* True for "(objectClass=v)" / "(objectCategory=v)" (case-insensitive name, no wildcard): a class term. */
static bool class_term(const char *f, size_t len)
{
    static const char *const names[] = {"objectClass=", "objectCategory="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t k = strlen(names[i]);
        if (len > k + 2 && strncasecmp(f + 1, names[i], k) == 0 &&
            memchr(f + 1 + k, '*', len - k - 2) == NULL && memchr(f + 1, '(', len - 2) == NULL)
            return true;
    }
    return false;
}

/* Appends the class terms among the AND-ed components of f (len bytes), into AND-ed ANDs too. */
static bool collect_class_terms(const char *f, size_t len, cs_buf *b, int depth)
{
    bool ok = true;
    if (depth > 8 || len < 2)
        return true; /* deeper ANDs: their class terms are left out, the broad filter only gets broader */
    if (class_term(f, len))
        return cs_buf_add(b, f, len);
    if (f[1] != '&')
        return true;
    for (const char *p = f + 2; ok && p < f + len - 1 && *p == '(';) {
        const char *e = component_end(p);
        if (e == NULL || e > f + len - 1)
            break;
        ok = collect_class_terms(p, (size_t)(e - p), b, depth + 1);
        p = e;
    }
    return ok;
}

cs_err *col_scope_broad_filter(const char *filter, char **out)
{
    cs_buf b;
    cs_err *err = NULL;

    *out = NULL;
    cs_buf_init(&b, COL_SCOPE_MAX_FILTER);
    if (!cs_buf_add_str(&b, "(&") || !collect_class_terms(filter, strlen(filter), &b, 0) ||
        !cs_buf_add_str(&b, ")"))
        err = too_long("the class terms of ldap.filter");
    else if (strcmp(cs_buf_str(&b), "(&)") == 0)
        *out = strdup("(objectClass=*)"); /* no class to keep: every object */
    else
        *out = strdup(cs_buf_str(&b));
    cs_buf_free(&b);
    if (err == NULL && *out == NULL)
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the broad filter");
    return err;
}

size_t col_scope_filter_attrs(const char *filter, char out[][COL_SCOPE_MAX_ATTR_NAME], size_t max)
{
    size_t n = 0;
    for (const char *p = filter; *p && n < max; p++) {
        size_t len = 0;
        bool seen = false;
        if (*p != '(' || p[1] == '&' || p[1] == '|' || p[1] == '!' || p[1] == '(')
            continue;
        while (p[1 + len] != '\0' && strchr("=~<>:;()", p[1 + len]) == NULL)
            len++;
        if (len == 0 || len >= COL_SCOPE_MAX_ATTR_NAME)
            continue; /* (:dn:...) names no attribute; an over-long name is no real one */
        for (size_t i = 0; i < n && !seen; i++)
            seen = strlen(out[i]) == len && strncasecmp(out[i], p + 1, len) == 0;
        if (!seen) {
            memcpy(out[n], p + 1, len);
            out[n++][len] = '\0';
        }
    }
    return n;
}
