/*
 * col_control: response controls from the directory server, checked before libldap parses them.
 */
#include "col_control.h"

#include <stdbool.h>
#include <stdint.h>

/* An absent or empty control value: libldap 2.5 would read through NULL (see col_control.h). */
static bool no_value(const LDAPControl *ctrl)
{
    return ctrl == NULL || ctrl->ldctl_value.bv_val == NULL || ctrl->ldctl_value.bv_len == 0;
}

cs_err *col_control_parse_page(LDAP *ld, const LDAPControl *ctrl, size_t max_cookie, struct berval *cookie)
{
    ber_int_t count = 0;
    int rc;

    *cookie = (struct berval){0, NULL};
    if (no_value(ctrl))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "the server sent a paged-results response control without a value");
    /* libldap does not write the control; its prototype lacks the const. */
    rc = ldap_parse_pageresponse_control(ld, (LDAPControl *)(uintptr_t)ctrl, &count, cookie);
    if (rc != LDAP_SUCCESS) {
        *cookie = (struct berval){0, NULL};
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "malformed paged-results response control: %s",
                          ldap_err2string(rc));
    }
    if (cookie->bv_len > max_cookie) {
        size_t n = cookie->bv_len;
        ber_memfree(cookie->bv_val);
        *cookie = (struct berval){0, NULL};
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "paged-results cookie of %zu bytes is over the %zu-byte limit", n, max_cookie);
    }
    return NULL;
}

cs_err *col_control_parse_dirsync(LDAP *ld, const LDAPControl *ctrl, size_t max_cookie, int *more,
                                  struct berval *cookie)
{
    int rc, zero = 0;

    *cookie = (struct berval){0, NULL};
    *more = 0;
    if (no_value(ctrl))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "the server sent a DirSync response control without a value");
    /* libldap 2.5 returns ld_errno from the parse, which may hold an older code: clear it. */
    ldap_set_option(ld, LDAP_OPT_RESULT_CODE, &zero);
    rc = ldap_parse_dirsync_control(ld, (LDAPControl *)(uintptr_t)ctrl, more, cookie);
    if (rc != LDAP_SUCCESS) {
        *cookie = (struct berval){0, NULL};
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "malformed DirSync response control: %s",
                          ldap_err2string(rc));
    }
    if (cookie->bv_len > max_cookie) {
        size_t n = cookie->bv_len;
        ber_memfree(cookie->bv_val);
        *cookie = (struct berval){0, NULL};
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "DirSync cookie of %zu bytes is over the %zu-byte limit",
                          n, max_cookie);
    }
    return NULL;
}
