/*
 * col_scope: scope filters (see col_scope.h).
 */
#include "col_scope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

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
