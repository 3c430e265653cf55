/*
 * Unit tests for col_syncrepl's syncInfo parsing (RFC 4533 section 2.5) with hand-built BER: the paths
 * slapd's session log hides in the integration test (refreshDelete, refreshPresent, syncIdSet with
 * refreshDeletes TRUE and FALSE, newcookie) and malformed values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "col_syncrepl.h"

#define MAX_SEEN 16

typedef struct seen {
    size_t n;
    col_change_kind kind[MAX_SEEN];
    char id[MAX_SEEN][COL_GUID_STR_LEN];
    bool sweep[MAX_SEEN];
    char cookie[MAX_SEEN][64];
} seen;

static cs_err *record(void *ctx, const col_change *ch)
{
    seen *s = ctx;
    assert_true(s->n < MAX_SEEN);
    s->kind[s->n] = ch->kind;
    s->sweep[s->n] = ch->sweep;
    if (ch->object != NULL)
        snprintf(s->id[s->n], COL_GUID_STR_LEN, "%s", col_object_id(ch->object));
    if (ch->kind == COL_CHANGE_COOKIE)
        snprintf(s->cookie[s->n], sizeof s->cookie[0], "%.*s", (int)ch->cookie_len, (const char *)ch->cookie);
    s->n++;
    return NULL;
}

static const unsigned char UUID1[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
static const unsigned char UUID2[16] = {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                        0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00};
#define ID1 "01234567-89ab-cdef-0123-456789abcdef"
#define ID2 "ffeeddcc-bbaa-9988-7766-554433221100"

/* Feeds one BER value to a fresh unconnected handle; returns the error (or NULL). */
static cs_err *feed(BerElement *ber, seen *out, bool *refreshed)
{
    struct berval bv = {0, NULL};
    col_syncrepl *s = NULL;
    size_t n = 0;
    cs_err *err;

    assert_int_not_equal(ber_flatten2(ber, &bv, 0), -1);
    assert_null(col_syncrepl_new_unconnected(&s));
    memset(out, 0, sizeof *out);
    err = col_syncrepl_handle_info(s, &bv, record, out, &n);
    assert_int_equal(n, out->n);
    *refreshed = col_syncrepl_refreshed(s);
    col_syncrepl_free(s);
    ber_free(ber, 1);
    return err;
}

static struct berval cookie_bv(const char *c)
{
    struct berval b = {strlen(c), (char *)(uintptr_t)c};
    return b;
}

static void test_new_cookie(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval ck = cookie_bv("rid=001,csn=20240101");
    seen s;
    bool refreshed;
    (void)state;
    assert_int_not_equal(ber_printf(ber, "tO", LDAP_TAG_SYNC_NEW_COOKIE, &ck), -1);
    assert_null(feed(ber, &s, &refreshed));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.kind[0], COL_CHANGE_COOKIE);
    assert_string_equal(s.cookie[0], "rid=001,csn=20240101");
    assert_false(refreshed);
}

/* refreshPresent with refreshDone FALSE: the present phase ended (sweep), the refresh has not. */
static void test_refresh_present_not_done(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval ck = cookie_bv("c1");
    seen s;
    bool refreshed;
    (void)state;
    assert_int_not_equal(
        ber_printf(ber, "t{tOb}", LDAP_TAG_SYNC_REFRESH_PRESENT, LDAP_TAG_SYNC_COOKIE, &ck, (ber_int_t)0),
        -1);
    assert_null(feed(ber, &s, &refreshed));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.kind[0], COL_CHANGE_REFRESH_DONE);
    assert_true(s.sweep[0]);
    assert_int_equal(s.kind[1], COL_CHANGE_COOKIE);
    assert_string_equal(s.cookie[1], "c1");
    assert_false(refreshed);
}

/* refreshPresent with refreshDone absent (DEFAULT TRUE) and no cookie: sweep, and the refresh is over. */
static void test_refresh_present_default_done(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    seen s;
    bool refreshed;
    (void)state;
    assert_int_not_equal(ber_printf(ber, "t{}", LDAP_TAG_SYNC_REFRESH_PRESENT), -1);
    assert_null(feed(ber, &s, &refreshed));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.kind[0], COL_CHANGE_REFRESH_DONE);
    assert_true(s.sweep[0]);
    assert_true(refreshed);
}

/* refreshDelete, done: the refresh ends WITHOUT a sweep (deletions came as explicit removals). */
static void test_refresh_delete_done(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval ck = cookie_bv("c2");
    seen s;
    bool refreshed;
    (void)state;
    assert_int_not_equal(
        ber_printf(ber, "t{tOb}", LDAP_TAG_SYNC_REFRESH_DELETE, LDAP_TAG_SYNC_COOKIE, &ck, (ber_int_t)1), -1);
    assert_null(feed(ber, &s, &refreshed));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.kind[0], COL_CHANGE_REFRESH_DONE);
    assert_false(s.sweep[0]);
    assert_int_equal(s.kind[1], COL_CHANGE_COOKIE);
    assert_true(refreshed);
}

/* refreshDelete not done: nothing to report but the cookie. */
static void test_refresh_delete_not_done(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval ck = cookie_bv("c3");
    seen s;
    bool refreshed;
    (void)state;
    assert_int_not_equal(
        ber_printf(ber, "t{tOb}", LDAP_TAG_SYNC_REFRESH_DELETE, LDAP_TAG_SYNC_COOKIE, &ck, (ber_int_t)0), -1);
    assert_null(feed(ber, &s, &refreshed));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.kind[0], COL_CHANGE_COOKIE);
    assert_false(refreshed);
}

static void idset(bool deletes, bool with_flag)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval ck = cookie_bv("c4");
    struct berval uuids[3] = {{16, (char *)(uintptr_t)UUID1}, {16, (char *)(uintptr_t)UUID2}, {0, NULL}};
    seen s;
    bool refreshed;
    int rc = with_flag ? ber_printf(ber, "t{tOb[W]}", LDAP_TAG_SYNC_ID_SET, LDAP_TAG_SYNC_COOKIE, &ck,
                                    (ber_int_t)deletes, uuids)
                       : ber_printf(ber, "t{tO[W]}", LDAP_TAG_SYNC_ID_SET, LDAP_TAG_SYNC_COOKIE, &ck, uuids);
    assert_int_not_equal(rc, -1);
    assert_null(feed(ber, &s, &refreshed));
    assert_int_equal(s.n, 3);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(s.kind[i], deletes ? COL_CHANGE_REMOVAL : COL_CHANGE_PRESENT);
    assert_string_equal(s.id[0], ID1);
    assert_string_equal(s.id[1], ID2);
    assert_int_equal(s.kind[2], COL_CHANGE_COOKIE);
    assert_string_equal(s.cookie[2], "c4");
}

static void test_idset_deletes_true(void **state)
{
    (void)state;
    idset(true, true);
}

static void test_idset_deletes_false(void **state)
{
    (void)state;
    idset(false, true);
}

/* refreshDeletes absent: DEFAULT FALSE, so the UUIDs are present, not removed. */
static void test_idset_deletes_default(void **state)
{
    (void)state;
    idset(false, false);
}

static void test_idset_bad_uuid(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval uuids[2] = {{5, (char *)(uintptr_t) "short"}, {0, NULL}};
    seen s;
    bool refreshed;
    cs_err *err;
    (void)state;
    assert_int_not_equal(ber_printf(ber, "t{b[W]}", LDAP_TAG_SYNC_ID_SET, (ber_int_t)1, uuids), -1);
    err = feed(ber, &s, &refreshed);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "syncUUID of 5 bytes"));
    assert_int_equal(s.n, 0);
    cs_err_free(err);
}

static void test_unknown_tag(void **state)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    seen s;
    bool refreshed;
    cs_err *err;
    (void)state;
    assert_int_not_equal(ber_printf(ber, "ti", (ber_tag_t)0x85, (ber_int_t)1), -1);
    err = feed(ber, &s, &refreshed);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "malformed syncInfo"));
    cs_err_free(err);
}

static void test_truncated(void **state)
{
    /* refreshPresent claiming 10 content bytes, holding 2. */
    static const char raw[] = {(char)0xa2, 0x0a, 0x04, 0x00};
    struct berval bv = {sizeof raw, (char *)(uintptr_t)raw};
    col_syncrepl *s = NULL;
    seen sn = {0};
    size_t n = 0;
    cs_err *err;
    (void)state;
    assert_null(col_syncrepl_new_unconnected(&s));
    err = col_syncrepl_handle_info(s, &bv, record, &sn, &n);
    assert_non_null(err);
    cs_err_free(err);
    col_syncrepl_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_cookie),
        cmocka_unit_test(test_refresh_present_not_done),
        cmocka_unit_test(test_refresh_present_default_done),
        cmocka_unit_test(test_refresh_delete_done),
        cmocka_unit_test(test_refresh_delete_not_done),
        cmocka_unit_test(test_idset_deletes_true),
        cmocka_unit_test(test_idset_deletes_false),
        cmocka_unit_test(test_idset_deletes_default),
        cmocka_unit_test(test_idset_bad_uuid),
        cmocka_unit_test(test_unknown_tag),
        cmocka_unit_test(test_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
