#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cs_version.h"

static Certsync__V1__AttributeStamp ad_stamp(uint32_t version, int64_t time,
                                             unsigned char invocation_first_byte)
{
    static unsigned char ids[256][16];
    Certsync__V1__AttributeStamp s = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    s.has_version = 1;
    s.version = version;
    s.has_originating_time = 1;
    s.originating_time = time;
    memset(ids[invocation_first_byte], 0x11, 16);
    ids[invocation_first_byte][0] = invocation_first_byte;
    s.has_originating_invocation_id = 1;
    s.originating_invocation_id.data = ids[invocation_first_byte];
    s.originating_invocation_id.len = 16;
    return s;
}

static void ad_stamps_order_by_version_then_time_then_invocation(void **state)
{
    (void)state;
    Certsync__V1__AttributeStamp v1 = ad_stamp(1, 2000, 9), v2 = ad_stamp(2, 1000, 1);
    assert_int_equal(cs_version_stamp_compare(&v2, &v1), 1); /* higher version wins even if older time */
    Certsync__V1__AttributeStamp t1 = ad_stamp(3, 1000, 9), t2 = ad_stamp(3, 1001, 1);
    assert_int_equal(cs_version_stamp_compare(&t1, &t2), -1);
    Certsync__V1__AttributeStamp i1 = ad_stamp(3, 1000, 1), i2 = ad_stamp(3, 1000, 2);
    assert_int_equal(cs_version_stamp_compare(&i2, &i1), 1);
    assert_int_equal(cs_version_stamp_compare(&i1, &i1), 0);
}

static void usn_does_not_order_stamps(void **state)
{
    (void)state;
    /* The same change seen through two DCs: identical stamps, different local views. */
    Certsync__V1__AttributeStamp a = ad_stamp(4, 5000, 7), b = ad_stamp(4, 5000, 7);
    a.has_originating_usn = 1;
    a.originating_usn = 100;
    b.has_originating_usn = 1;
    b.originating_usn = 999;
    assert_int_equal(cs_version_stamp_compare(&a, &b), 0);
}

static void absent_stamp_is_older_than_any(void **state)
{
    (void)state;
    Certsync__V1__AttributeStamp empty = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT, s = ad_stamp(1, 1, 1);
    assert_int_equal(cs_version_stamp_compare(NULL, &s), -1);
    assert_int_equal(cs_version_stamp_compare(&empty, &s), -1);
    assert_int_equal(cs_version_stamp_compare(&s, NULL), 1);
    assert_int_equal(cs_version_stamp_compare(NULL, &empty), 0);
}

static void csn_stamps_compare_as_strings(void **state)
{
    (void)state;
    Certsync__V1__AttributeStamp a = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT,
                                 b = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    a.csn = (char[]){"20261128154205.000001Z#000000#000#000000"};
    b.csn = (char[]){"20261128154205.000002Z#000000#000#000000"};
    assert_int_equal(cs_version_stamp_compare(&a, &b), -1);
    assert_int_equal(cs_version_stamp_compare(&b, &a), 1);
}

static void versions_compare_as_sets_of_stamps(void **state)
{
    (void)state;
    Certsync__V1__AttributeStamp c1 = ad_stamp(1, 10, 1), c2 = ad_stamp(2, 20, 1), s1 = ad_stamp(1, 10, 1),
                                 s2 = ad_stamp(2, 30, 1);
    Certsync__V1__Version a = CERTSYNC__V1__VERSION__INIT, b = CERTSYNC__V1__VERSION__INIT;
    a.user_certificate = &c1;
    a.user_smime_certificate = &s1;
    b.user_certificate = &c2;
    b.user_smime_certificate = &s1;
    assert_int_equal(cs_version_compare(&b, &a), CS_VERSION_NEWER);
    assert_int_equal(cs_version_compare(&a, &b), CS_VERSION_OLDER);
    assert_int_equal(cs_version_compare(&a, &a), CS_VERSION_EQUAL);
    /* One stamp newer, another older: concurrent histories, never silently ordered. */
    a.user_smime_certificate = &s2;
    assert_int_equal(cs_version_compare(&a, &b), CS_VERSION_DIVERGED);
    assert_string_equal(cs_version_order_name(CS_VERSION_DIVERGED), "diverged");
    /* A lifecycle stamp alone (a deletion) makes a version newer. */
    Certsync__V1__AttributeStamp life = ad_stamp(1, 40, 1);
    Certsync__V1__Version d = b;
    d.lifecycle = &life;
    assert_int_equal(cs_version_compare(&d, &b), CS_VERSION_NEWER);
    assert_int_equal(cs_version_compare(NULL, &b), CS_VERSION_OLDER);
    assert_int_equal(cs_version_compare(NULL, NULL), CS_VERSION_EQUAL);
}

static void inferred_lifecycle_orders_between_last_and_real_changes(void **state)
{
    (void)state;
    Certsync__V1__AttributeStamp cert = ad_stamp(3, 100, 1), life = ad_stamp(2, 5000, 1);
    Certsync__V1__Version last = CERTSYNC__V1__VERSION__INIT;
    last.user_certificate = &cert;
    last.lifecycle = &life;
    /* A clock behind the last stamp still yields a newer stamp. */
    Certsync__V1__AttributeStamp proposed = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT, next;
    proposed.has_originating_time = 1;
    proposed.originating_time = 4000;
    cs_version_next_lifecycle(&last, &proposed, &next);
    Certsync__V1__Version removal = last;
    removal.lifecycle = &next;
    assert_int_equal(cs_version_compare(&removal, &last), CS_VERSION_NEWER);
    /* An undelete or move stamps the lifecycle with a higher version: newer than the removal. */
    Certsync__V1__AttributeStamp undelete = ad_stamp(3, 4500, 1);
    Certsync__V1__Version back = last;
    back.lifecycle = &undelete;
    assert_int_equal(cs_version_compare(&back, &removal), CS_VERSION_NEWER);
    /* No lifecycle stamp before: version 0, present, so newer than absent. */
    last.lifecycle = NULL;
    cs_version_next_lifecycle(&last, &proposed, &next);
    assert_int_equal(next.version, 0);
    assert_int_equal(cs_version_stamp_compare(&next, NULL), 1);
    /* A CSN proposal is taken as is. */
    proposed.csn = (char[]){"20261128154205.000001Z#000000#000#000000"};
    cs_version_next_lifecycle(&last, &proposed, &next);
    assert_string_equal(next.csn, proposed.csn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ad_stamps_order_by_version_then_time_then_invocation),
        cmocka_unit_test(usn_does_not_order_stamps),
        cmocka_unit_test(absent_stamp_is_older_than_any),
        cmocka_unit_test(csn_stamps_compare_as_strings),
        cmocka_unit_test(versions_compare_as_sets_of_stamps),
        cmocka_unit_test(inferred_lifecycle_orders_between_last_and_real_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
