/*
 * pub_state: put/replace/tombstone, the gate's view (own recipient write only, or a replica's newer one), drop by
 * partition, bad records.
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

/* A RecipientState record; written_at_ms < 0: without the field (records of older versions). */
static uint8_t *pack_rcpt_at(const char *rcpt_id, const char *owner, const char *sha, int64_t written_at_ms,
                             size_t *len)
{
    Certsync__V1__Recipient r = CERTSYNC__V1__RECIPIENT__INIT;
    Certsync__V1__RecipientState rs = CERTSYNC__V1__RECIPIENT_STATE__INIT;
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    r.external_directory_object_id = (char *)(uintptr_t)rcpt_id;
    rs.recipient = &r;
    rs.owner_object_key = (char *)(uintptr_t)owner;
    rs.written_sha256 = (char *)(uintptr_t)sha;
    rs.has_written_at_ms = written_at_ms >= 0;
    rs.written_at_ms = written_at_ms >= 0 ? written_at_ms : 0;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT;
    rec.recipient = &rs;
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

/* Two sources reporting one directory object (two DCs of one domain): the owner's newer version is the gate's. */
static void view_of_a_replica_uses_the_owners_newer_version(void **state)
{
    (void)state;
    pub_state *s = NULL;
    assert_null(pub_state_new(&s));
    size_t len = 0;
    uint8_t *buf = NULL;
    pub_applied_view v;
    buf = pack_obj("dc1/g", 5, "R1", &len);
    put(s, 0, "obj/dc1/g", buf, len);
    buf = pack_rcpt("R1", "dc1/g", "aa", &len);
    put(s, 0, "rcpt/R1", buf, len);
    buf = pack_obj("dc2/g", 3, "R1", &len);
    put(s, 1, "obj/dc2/g", buf, len);
    buf = pack_obj("src/h", 3, "R1", &len);
    put(s, 1, "obj/src/h", buf, len);

    /* dc2 still at 3: dc1's write at 5 is what a replicated change must beat (EQUAL -> stale). */
    assert_true(pub_state_view(s, "dc2/g", &v));
    assert_int_equal(v.version->user_certificate->version, 5);
    assert_string_equal(v.written_sha256, "aa");
    /* Another object on the same recipient is no replica: its own version, no hash. */
    assert_true(pub_state_view(s, "src/h", &v));
    assert_int_equal(v.version->user_certificate->version, 3);
    assert_null(v.written_sha256);
    /* dc2 ahead of the owner: its own version stands (the change is new, the gate lets it through). */
    buf = pack_obj("dc2/g", 7, "R1", &len);
    put(s, 1, "obj/dc2/g", buf, len);
    assert_true(pub_state_view(s, "dc2/g", &v));
    assert_int_equal(v.version->user_certificate->version, 7);
    assert_null(v.written_sha256);
    pub_state_free(s);

    assert_true(pub_state_same_object("dc1/g", "dc2/g"));
    assert_false(pub_state_same_object("dc1/g", "dc1/g"));
    assert_false(pub_state_same_object("dc1/g", "dc2/h"));
    assert_false(pub_state_same_object("dc1/", "dc2/"));
    assert_false(pub_state_same_object("dc1", "dc2"));
    assert_false(pub_state_same_object(NULL, "dc2/g"));
}

/*
 * A handover moved recipient R1 from src/a (events partition 0) to src/b (partition 1): the new owner's record
 * is in state partition 1, the old owner's record and the tombstone the handover wrote for it in partition 0.
 * A restore reads the partitions in any order; every order must end with src/b's record, and a record of an
 * older version (no tombstone, so only written_at_ms tells) must not win by being read last either.
 */
static void moved_recipient_restores_the_newer_record_in_any_order(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        for (int with_tombstone = 0; with_tombstone < 2; with_tombstone++) {
            pub_state *s = NULL;
            assert_null(pub_state_new(&s));
            size_t len = 0;
            uint8_t *buf = NULL;
            for (int step = 0; step < 2; step++) {
                if ((step == 0) == (order == 0)) { /* partition 0: old owner, then maybe the tombstone */
                    buf = pack_rcpt_at("R1", "src/a", "aa", 1000, &len);
                    put(s, 0, "rcpt/R1", buf, len);
                    if (with_tombstone)
                        assert_null(pub_state_put(s, 0, "rcpt/R1", 7, NULL, 0));
                } else { /* partition 1: the new owner */
                    buf = pack_rcpt_at("R1", "src/b", "bb", 2000, &len);
                    put(s, 1, "rcpt/R1", buf, len);
                }
            }
            const Certsync__V1__RecipientState *rs = pub_state_recipient(s, "R1");
            if (!rs || !rs->owner_object_key || strcmp(rs->owner_object_key, "src/b") != 0)
                fail_msg("order %d, tombstone %d: want src/b's record, have %s", order, with_tombstone,
                         rs && rs->owner_object_key ? rs->owner_object_key : "none");
            int32_t part = -1;
            assert_true(pub_state_partition_of(s, "rcpt/R1", &part));
            assert_int_equal(part, 1);
            assert_int_equal(pub_state_count(s), 1);
            /* The new owner's own partition still replaces and deletes as before. */
            if (order == 1 && with_tombstone == 1) {
                buf = pack_rcpt_at("R1", "src/b", "b2", 1500, &len);
                put(s, 1, "rcpt/R1", buf, len); /* same partition: log order decides */
                assert_string_equal(pub_state_recipient(s, "R1")->written_sha256, "b2");
                assert_null(pub_state_put(s, 1, "rcpt/R1", 7, NULL, 0));
                assert_null(pub_state_recipient(s, "R1"));
                assert_false(pub_state_partition_of(s, "rcpt/R1", &part));
            }
            pub_state_free(s);
        }
    }
    /* Records without written_at_ms (older versions): the one read last stays, as before. */
    pub_state *s = NULL;
    assert_null(pub_state_new(&s));
    size_t len = 0;
    uint8_t *buf = pack_rcpt_at("R1", "src/b", "bb", -1, &len);
    put(s, 1, "rcpt/R1", buf, len);
    buf = pack_rcpt_at("R1", "src/a", "aa", -1, &len);
    put(s, 0, "rcpt/R1", buf, len);
    assert_string_equal(pub_state_recipient(s, "R1")->owner_object_key, "src/a");
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
        cmocka_unit_test(view_of_a_replica_uses_the_owners_newer_version),
        cmocka_unit_test(moved_recipient_restores_the_newer_record_in_any_order),
        cmocka_unit_test(bad_records_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
