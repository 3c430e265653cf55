/*
 * test_col_group: the DN normal form that decides group membership (col_group_dn_normalize), and the
 * watcher's contract before its first read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "col_group.h"

static char *norm(const char *dn)
{
    char *out = NULL;
    cs_err *err = col_group_dn_normalize(dn, &out);
    assert_null(err);
    assert_non_null(out);
    return out;
}

/* Case and spaces around separators do not matter: AD and OpenLDAP list members as written. */
static void test_normalize_equal_forms(void **state)
{
    (void)state;
    char *a = norm("CN=Alice Smith,OU=Users,DC=corp,DC=example");
    char *b = norm("cn=alice smith, ou=users , dc=Corp,dc=EXAMPLE");
    assert_string_equal(a, b);
    assert_string_equal(a, "cn=alice smith,ou=users,dc=corp,dc=example");
    free(a);
    free(b);
}

/* Different users stay different (the normal form must not collapse values). */
static void test_normalize_distinct(void **state)
{
    (void)state;
    char *a = norm("uid=u1,ou=p,dc=x");
    char *b = norm("uid=u10,ou=p,dc=x");
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

/* An escaped comma inside a value is not a separator. */
static void test_normalize_escaped(void **state)
{
    (void)state;
    char *a = norm("CN=Smith\\, Alice,DC=x");
    char *b = norm("cn=smith\\, alice,dc=x");
    char *c = norm("cn=smith,cn=alice,dc=x");
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    free(a);
    free(b);
    free(c);
}

/* Before the first read nobody is a member and there is no member hash; an empty DN is refused. */
static void test_watcher_before_read(void **state)
{
    (void)state;
    col_group *g = NULL;
    assert_null(col_group_new("cn=g,dc=x", false, &g));
    assert_false(col_group_is_member(g, "cn=a,dc=x"));
    assert_string_equal(col_group_members_sha256(g), "");
    assert_int_equal(col_group_count(g), 0);
    const char *const *dns = NULL;
    assert_int_equal(col_group_joined(g, &dns), 0);
    assert_int_equal(col_group_left(g, &dns), 0);
    assert_null(col_group_entry_csn(g));
    col_group_free(g);
    cs_err *err = col_group_new("", true, &g);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "ldap.group_dn"));
    assert_null(g);
    cs_err_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_equal_forms),
        cmocka_unit_test(test_normalize_distinct),
        cmocka_unit_test(test_normalize_escaped),
        cmocka_unit_test(test_watcher_before_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
