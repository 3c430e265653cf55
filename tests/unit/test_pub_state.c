/*
 * pub_state: put/replace/tombstone, the gate's view (own recipient write only), drop by partition, bad records.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "pub_state.h"

static uint8_t *pack_obj(const char *key, uint32_t version, const char *rcpt_id, size_t *len)
{
    Certsync__V1__AttributeStamp st = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__Version v = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__Recipient r = CERTSYNC__V1__RECIPIENT__INIT;
    Certsync__V1__ObjectState os = CERTSYNC__V1__OBJECT_STATE__INIT;
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    st.has_version = 1;
    st.version = version;
    v.user_certificate = &st;
    r.external_directory_object_id = (char *)(uintptr_t)rcpt_id;
    os.object_key = (char *)(uintptr_t)key;
    os.version = &v;
    os.recipient = rcpt_id ? &r : NULL;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT;
    rec.object = &os;
    *len = certsync__v1__applied_state_record__get_packed_size(&rec);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    certsync__v1__applied_state_record__pack(&rec, buf);
    return buf;
}

static uint8_t *pack_rcpt(const char *rcpt_id, const char *owner, const char *sha, size_t *len)
{
    Certsync__V1__Recipient r = CERTSYNC__V1__RECIPIENT__INIT;
    Certsync__V1__RecipientState rs = CERTSYNC__V1__RECIPIENT_STATE__INIT;
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    r.external_directory_object_id = (char *)(uintptr_t)rcpt_id;
    rs.recipient = &r;
    rs.owner_object_key = (char *)(uintptr_t)owner;
    rs.written_sha256 = (char *)(uintptr_t)sha;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT;
    rec.recipient = &rs;
    *len = certsync__v1__applied_state_record__get_packed_size(&rec);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    certsync__v1__applied_state_record__pack(&rec, buf);
    return buf;
}

/* Stores a packed record and frees it. (Pack first: argument evaluation order is unspecified.) */
static void put(pub_state *s, int32_t part, const char *key, uint8_t *value, size_t len)
{
    cs_err *err = pub_state_put(s, part, key, strlen(key), value, len);
    if (err)
        fail_msg("put %s: code %d: %s", key, (int)cs_err_code_of(err), cs_err_message(err));
    free(value);
}

static void view_replace_tombstone_drop(void **state)
{
    (void)state;
    pub_state *s = NULL;
    assert_null(pub_state_new(&s));
    size_t len = 0;
    uint8_t *buf = NULL;
    pub_applied_view v;
    assert_false(pub_state_view(s, "src/a", &v));
    assert_null(v.version);

    buf = pack_obj("src/a", 1, "R1", &len);
    put(s, 0, "obj/src/a", buf, len);
    buf = pack_rcpt("R1", "src/a", "aa", &len);
    put(s, 0, "rcpt/R1", buf, len);
    buf = pack_obj("src/b", 7, "R1", &len);
    put(s, 1, "obj/src/b", buf, len);
    assert_int_equal(pub_state_count(s), 3);

    assert_true(pub_state_view(s, "src/a", &v));
    assert_int_equal(v.version->user_certificate->version, 1);
    assert_string_equal(v.written_sha256, "aa");
    /* b maps to R1 too, but a owns R1's write: b must not see a's hash as its own. */
    assert_true(pub_state_view(s, "src/b", &v));
    assert_null(v.written_sha256);

    buf = pack_obj("src/a", 2, "R1", &len);
    put(s, 0, "obj/src/a", buf, len); /* replace */
    assert_true(pub_state_view(s, "src/a", &v));
    assert_int_equal(v.version->user_certificate->version, 2);
    assert_int_equal(pub_state_count(s), 3);

    assert_null(pub_state_put(s, 0, "rcpt/R1", 7, NULL, 0)); /* tombstone */
    assert_true(pub_state_view(s, "src/a", &v));
    assert_null(v.written_sha256);
    assert_int_equal(pub_state_count(s), 2);

    pub_state_drop_partition(s, 0);
    assert_false(pub_state_view(s, "src/a", &v));
    assert_true(pub_state_view(s, "src/b", &v));
    assert_int_equal(pub_state_count(s), 1);
    pub_state_free(s);
}

static void bad_records_are_errors(void **state)
{
    (void)state;
    pub_state *s = NULL;
    assert_null(pub_state_new(&s));
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    cs_err *err = pub_state_put(s, 0, "foreign", 7, junk, sizeof(junk));
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    assert_non_null(strstr(cs_err_message(err), "foreign"));
    cs_err_free(err);
    err = pub_state_put(s, 0, "obj/x", 5, junk, sizeof(junk));
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "AppliedStateRecord"));
    cs_err_free(err);
    assert_int_equal(pub_state_count(s), 0);
    pub_state_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(view_replace_tombstone_drop),
        cmocka_unit_test(bad_records_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
