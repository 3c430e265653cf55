/*
 * col_scope: scope filters (see col_scope.h).
 */
#include "col_scope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

enum { MAX_SCHEMA_VALUES = 100000 }; /* attributeTypes values scanned: OpenLDAP ships ~1,500 */

static cs_err *too_long(const char *what)
{
    return cs_err_new(CS_ERR_CONFIG, 0, "%s makes a search filter over %d bytes; shorten ldap.filter", what,
                      COL_SCOPE_MAX_FILTER);
}

cs_err *col_scope_filter(const char *filter, const char *group_dn, char **out)
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
    n = snprintf(f, COL_SCOPE_MAX_FILTER, "(&%s(memberOf=%s))", filter, esc.bv_val);
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

/* True when the subschema defines an attribute type named memberOf. */
static cs_err *schema_has_member_of(col_ldap *c, bool *found)
{
    static const char *const attrs[] = {"attributeTypes", NULL};
    LDAP *ld = col_ldap_handle(c);
    LDAPMessage *res = NULL, *e;
    struct berval **vals = NULL;
    long long ms = col_ldap_timeout_ms(c);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    cs_err *err = NULL;
    int rc;

    *found = false;
    rc = ldap_search_ext_s(ld, "cn=Subschema", LDAP_SCOPE_BASE, "(objectClass=subschema)",
                           col_ldap_attrs(attrs), 0, NULL, NULL, &tv, 1, &res);
    if (rc != LDAP_SUCCESS) {
        err = col_ldap_error(c, "reading the subschema (cn=Subschema) to look for memberOf", rc);
        goto cleanup;
    }
    e = ldap_first_entry(ld, res);
    vals = e != NULL ? ldap_get_values_len(ld, e, "attributeTypes") : NULL;
    for (size_t i = 0; vals != NULL && vals[i] != NULL && i < MAX_SCHEMA_VALUES && !*found; i++) {
        /* "( 1.2.840.113556.1.2.102 NAME 'memberOf' ..." */
        const char *v = vals[i]->bv_val;
        size_t len = vals[i]->bv_len;
        static const char want[] = "'memberOf'";
        for (size_t j = 0; j + sizeof want - 1 <= len && !*found; j++)
            *found = strncasecmp(v + j, want, sizeof want - 1) == 0;
    }
cleanup:
    ldap_value_free_len(vals);
    ldap_msgfree(res);
    return err;
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
    if (cfg->ldap_group_dn != NULL && cfg->ldap_group_dn[0] != '\0' && col_ldap_kind(c) != COL_DIR_AD) {
        bool found = false;
        err = schema_has_member_of(c, &found);
        if (err == NULL && !found)
            err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                             "ldap.group_dn is set but %s (%s) does not define memberOf: load the memberof "
                             "overlay (olcOverlay=memberof) on the database, or remove ldap.group_dn and "
                             "select users with ldap.filter",
                             col_ldap_url(c), col_ldap_kind_name(col_ldap_kind(c)));
    }
    return err;
}
