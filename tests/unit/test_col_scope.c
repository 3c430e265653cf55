/*
 * test_col_scope: the filters that express the scope to the directory: the group clause (direct and
 * in-chain), the broad filter DirSync and uSNChanged polling search with to see objects leave the filter,
 * and the attributes a filter tests (which DirSync must request).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "col_scope.h"

static void expect_filter(const char *filter, const char *group, bool nested, const char *want)
{
    char *out = NULL;
    cs_err *err = col_scope_filter(filter, group, nested, &out);
    assert_null(err);
    assert_string_equal(out, want);
    free(out);
}

/* Direct membership is a memberOf equality; nested is AD's in-chain rule; the DN is escaped. */
static void test_group_clause(void **state)
{
    (void)state;
    expect_filter("(objectClass=user)", NULL, true, "(objectClass=user)");
    expect_filter("(objectClass=user)", "CN=g,DC=x", false, "(&(objectClass=user)(memberOf=CN=g,DC=x))");
    expect_filter("(objectClass=user)", "CN=g,DC=x", true,
                  "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=g,DC=x))");
    expect_filter("(a=b)", "CN=g (x)*,DC=x", false, "(&(a=b)(memberOf=CN=g \\28x\\29\\2A,DC=x))");
}

static void expect_broad(const char *filter, const char *want)
{
    char *out = NULL;
    cs_err *err = col_scope_broad_filter(filter, &out);
    assert_null(err);
    assert_string_equal(out, want);
    free(out);
}

/* The class terms of the AND-ed components are kept (nested ANDs too); anything else broadens to all. */
static void test_broad_filter(void **state)
{
    (void)state;
    expect_broad("(&(objectCategory=person)(objectClass=user))",
                 "(&(objectCategory=person)(objectClass=user))");
    expect_broad("(&(&(objectClass=user)(sAMAccountName=cs*)(!(description=out)))(memberOf=CN=g,DC=x))",
                 "(&(objectClass=user))");
    expect_broad("(objectclass=inetOrgPerson)", "(&(objectclass=inetOrgPerson))");
    expect_broad("(|(objectClass=user)(objectClass=contact))", "(objectClass=*)");
    expect_broad("(&(department=IT)(!(objectClass=computer)))", "(objectClass=*)");
    expect_broad("(&(objectClass=us*)(mail=*))", "(objectClass=*)"); /* a wildcard is no class term */
    expect_broad("(mail=a)", "(objectClass=*)");
}

/* Every attribute tested, once, options cut; (:dn:...) and the AND/OR/NOT themselves name none. */
static void test_filter_attrs(void **state)
{
    (void)state;
    char a[8][COL_SCOPE_MAX_ATTR_NAME];
    size_t n = col_scope_filter_attrs(
        "(&(objectClass=user)(!(description=out))(|(mail=*)(Description~=x))(userCertificate;binary=*)"
        "(memberOf:1.2.840.113556.1.4.1941:=CN=g)(:dn:2.5.13.5:=x)(uSNChanged>=5))",
        a, 8);
    assert_int_equal(n, 6);
    assert_string_equal(a[0], "objectClass");
    assert_string_equal(a[1], "description");
    assert_string_equal(a[2], "mail");
    assert_string_equal(a[3], "userCertificate");
    assert_string_equal(a[4], "memberOf");
    assert_string_equal(a[5], "uSNChanged");
    assert_int_equal(col_scope_filter_attrs("(&(a=1)(b=2)(c=3))", a, 2), 2); /* bounded */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_clause),
        cmocka_unit_test(test_broad_filter),
        cmocka_unit_test(test_filter_attrs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
