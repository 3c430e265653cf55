/*
 * col_ldap_connect refuses a simple bind without TLS unless ldap.allow_plaintext_bind is set (issue 6), at
 * connect time, before any packet: the config loader's check is not the only guard. The URL points at a port
 * nothing listens on, so "refused by us" and "could not connect" are told apart by the error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "col_config.h"
#include "col_ldap.h"

static col_config base_config(const char *url)
{
    static const char *const bases[] = {"dc=example,dc=test", NULL};
    col_config c;
    memset(&c, 0, sizeof c);
    c.source_id = "t";
    c.ldap_url = url;
    c.ldap_bind_dn = "cn=admin,dc=example,dc=test";
    c.ldap_password = "not-a-real-password";
    c.ldap_tls_verify = true;
    c.ldap_base_dns = bases;
    c.ldap_base_dn_count = 1;
    c.ldap_timeout_ms = 1000;
    return c;
}

static void plaintext_bind_refused(void **state)
{
    (void)state;
    col_config c = base_config("ldap://127.0.0.1:9");
    col_ldap *l = NULL;
    cs_err *err = col_ldap_connect(&c, &l);
    assert_non_null(err);
    assert_null(l);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_true(cs_err_is_fatal(err));
    assert_non_null(strstr(cs_err_message(err), "refusing a simple bind without TLS"));
    assert_non_null(strstr(cs_err_message(err), "ldap.allow_plaintext_bind"));
    /* The password is never part of the message. */
    assert_null(strstr(cs_err_message(err), c.ldap_password));
    cs_err_free(err);
}

static void plaintext_bind_allowed_or_tls(void **state)
{
    (void)state;
    col_ldap *l = NULL;
    /* Allowed explicitly: it tries to connect (and fails: nothing listens), not our refusal. */
    col_config c = base_config("ldap://127.0.0.1:9");
    c.ldap_allow_plaintext_bind = true;
    cs_err *err = col_ldap_connect(&c, &l);
    assert_non_null(err);
    assert_null(strstr(cs_err_message(err), "refusing a simple bind"));
    cs_err_free(err);
    /* ldaps:// is TLS: no refusal either. */
    c = base_config("ldaps://127.0.0.1:9");
    err = col_ldap_connect(&c, &l);
    assert_non_null(err);
    assert_null(strstr(cs_err_message(err), "refusing a simple bind"));
    cs_err_free(err);
    /* Anonymous (no password) over ldap:// is not a password leak: no refusal. */
    c = base_config("ldap://127.0.0.1:9");
    c.ldap_password = NULL;
    c.ldap_bind_dn = NULL;
    err = col_ldap_connect(&c, &l);
    assert_non_null(err);
    assert_null(strstr(cs_err_message(err), "refusing a simple bind"));
    cs_err_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plaintext_bind_refused),
        cmocka_unit_test(plaintext_bind_allowed_or_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
