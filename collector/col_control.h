/*
 * col_control: reading the response controls a directory server sends back (paged results, DirSync).
 *
 * libldap 2.5's ldap_parse_pageresponse_control() and ldap_parse_dirsync_control() read through a NULL
 * pointer when the control has no value (found by tests/fuzz/fuzz_ldap.c): a broken or hostile server could
 * crash the collector with one empty control. Every caller goes through here, where an absent or empty value
 * is an error naming the control, and the cookie length is bounded.
 */
#ifndef COL_CONTROL_H
#define COL_CONTROL_H

#include <stddef.h>

#include <ldap.h>

#include "cs_err.h"

/* Largest paged-results cookie kept: AD's are under 200 bytes, OpenLDAP's a few. */
#define COL_CONTROL_MAX_PAGE_COOKIE 65536

/*
 * Reads a paged-results response control (RFC 2696). *cookie is the next page's cookie (bv_len 0 on the
 * last page); caller frees cookie->bv_val with ber_memfree(). An empty or malformed control, or a cookie over
 * max_cookie bytes, is CS_ERR_INVALID_INPUT and leaves *cookie empty.
 */
cs_err *col_control_parse_page(LDAP *ld, const LDAPControl *ctrl, size_t max_cookie, struct berval *cookie);

/*
 * Reads a DirSync response control (MS-ADTS 3.1.1.3.4.1.3): *more and the next *cookie (caller frees
 * cookie->bv_val with ber_memfree()). Errors as col_control_parse_page().
 */
cs_err *col_control_parse_dirsync(LDAP *ld, const LDAPControl *ctrl, size_t max_cookie, int *more,
                                  struct berval *cookie);

#endif
