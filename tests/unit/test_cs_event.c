#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "certsync/v1/collector_checkpoint.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_event.h"

static uint8_t cert_a[] = {0x30, 0x03, 0x02, 0x01, 0x01};
static uint8_t cert_b[] = {0x30, 0x03, 0x02, 0x01, 0x02};
static char source_id[] = "corp-ad";
static char object_id[] = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

/* A minimal valid upsert with two userCertificate values in the given order. */
static void make_event(Certsync__V1__ChangeEvent *ev, Certsync__V1__Source *src, Certsync__V1__Identity *id,
                       Certsync__V1__CertificateValue *v1, Certsync__V1__CertificateValue *v2,
                       Certsync__V1__CertificateValue **values)
{
    certsync__v1__change_event__init(ev);
    certsync__v1__source__init(src);
    certsync__v1__identity__init(id);
    certsync__v1__certificate_value__init(v1);
    certsync__v1__certificate_value__init(v2);
    src->source_id = source_id;
    id->object_id = object_id;
    v1->has_raw = 1;
    v1->raw.data = cert_a;
    v1->raw.len = sizeof(cert_a);
    v2->has_raw = 1;
    v2->raw.data = cert_b;
    v2->raw.len = sizeof(cert_b);
    values[0] = v1;
    values[1] = v2;
    ev->has_kind = 1;
    ev->kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev->source = src;
    ev->identity = id;
    ev->n_user_certificate = 2;
    ev->user_certificate = values;
}

static void encode_decode_round_trip(void **state)
{
    (void)state;
    Certsync__V1__ChangeEvent ev;
    Certsync__V1__Source src;
    Certsync__V1__Identity id;
    Certsync__V1__CertificateValue v1, v2, *values[2];
    make_event(&ev, &src, &id, &v1, &v2, values);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_null(cs_event_encode(&ev, &buf, &len));
    Certsync__V1__ChangeEvent *back = NULL;
    assert_null(cs_event_decode(buf, len, &back));
    assert_string_equal(back->source->source_id, "corp-ad");
    assert_int_equal(back->n_user_certificate, 2);
    assert_memory_equal(back->user_certificate[1]->raw.data, cert_b, sizeof(cert_b));
    assert_int_equal(back->user_certificate[0]->user_index, -1); /* default: no user certificate known */
    certsync__v1__change_event__free_unpacked(back, NULL);
    free(buf);
}

static void decode_rejects_garbage_with_a_reason(void **state)
{
    (void)state;
    Certsync__V1__ChangeEvent *ev = NULL;
    cs_err *err = cs_event_decode((const uint8_t *)"", 0, &ev);
    assert_non_null(strstr(cs_err_message(err), "empty record"));
    cs_err_free(err);
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    err = cs_event_decode(garbage, sizeof(garbage), &ev);
    assert_non_null(strstr(cs_err_message(err), "not a certsync.v1.ChangeEvent"));
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    cs_err_free(err);
    /* Valid protobuf whose fields happen to fit an event's, but a checkpoint: it has no kind. */
    Certsync__V1__CollectorCheckpoint cp = CERTSYNC__V1__COLLECTOR_CHECKPOINT__INIT;
    cp.has_snapshot_complete = 1;
    cp.snapshot_complete = 1;
    uint8_t buf[64];
    size_t n = certsync__v1__collector_checkpoint__pack(&cp, buf);
    err = cs_event_decode(buf, n, &ev);
    assert_non_null(strstr(cs_err_message(err), "no kind"));
    cs_err_free(err);
    assert_null(ev);
}

static void decode_requires_source_and_object_ids(void **state)
{
    (void)state;
    Certsync__V1__ChangeEvent ev;
    Certsync__V1__Source src;
    Certsync__V1__Identity id;
    Certsync__V1__CertificateValue v1, v2, *values[2];
    make_event(&ev, &src, &id, &v1, &v2, values);
    id.object_id = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_null(cs_event_encode(&ev, &buf, &len));
    Certsync__V1__ChangeEvent *back = NULL;
    cs_err *err = cs_event_decode(buf, len, &back);
    assert_non_null(strstr(cs_err_message(err), "no object id"));
    cs_err_free(err);
    free(buf);
}

static void content_hash_ignores_value_order_but_not_content(void **state)
{
    (void)state;
    Certsync__V1__ChangeEvent ev;
    Certsync__V1__Source src;
    Certsync__V1__Identity id;
    Certsync__V1__CertificateValue v1, v2, *values[2];
    make_event(&ev, &src, &id, &v1, &v2, values);
    char h1[CS_SHA256_HEX_LEN], h2[CS_SHA256_HEX_LEN], h3[CS_SHA256_HEX_LEN], h4[CS_SHA256_HEX_LEN];
    assert_null(cs_event_content_sha256(&ev, h1));
    values[0] = &v2;
    values[1] = &v1;
    assert_null(cs_event_content_sha256(&ev, h2));
    assert_string_equal(h1, h2);
    assert_int_equal(strlen(h1), 64);
    /* The same values under the other attribute are different content. */
    ev.n_user_smime_certificate = 2;
    ev.user_smime_certificate = values;
    ev.n_user_certificate = 0;
    ev.user_certificate = NULL;
    assert_null(cs_event_content_sha256(&ev, h3));
    assert_string_not_equal(h1, h3);
    /* Removing a value changes the hash; the empty state has a hash too. */
    ev.n_user_smime_certificate = 0;
    assert_null(cs_event_content_sha256(&ev, h4));
    assert_string_not_equal(h3, h4);
}

/* The digest form (the collector's builder hashes each value once) gives the same hash in any order. */
static void content_hash_from_digests_equals_content_hash(void **state)
{
    (void)state;
    Certsync__V1__ChangeEvent ev;
    Certsync__V1__Source src;
    Certsync__V1__Identity id;
    Certsync__V1__CertificateValue v1, v2, *values[2];
    make_event(&ev, &src, &id, &v1, &v2, values);
    unsigned char d[2][32], rev[2][32];
    assert_non_null(SHA256(cert_a, sizeof(cert_a), d[0]));
    assert_non_null(SHA256(cert_b, sizeof(cert_b), d[1]));
    memcpy(rev[0], d[1], 32);
    memcpy(rev[1], d[0], 32);
    char want[CS_SHA256_HEX_LEN], got[CS_SHA256_HEX_LEN];
    assert_null(cs_event_content_sha256(&ev, want));
    assert_null(cs_event_content_sha256_digests((const unsigned char(*)[32])d, 2, NULL, 0, got));
    assert_string_equal(got, want);
    assert_null(cs_event_content_sha256_digests((const unsigned char(*)[32])rev, 2, NULL, 0, got));
    assert_string_equal(got, want);
    /* Under the other attribute, and split between the two: each as cs_event_content_sha256 says. */
    ev.user_smime_certificate = values;
    ev.n_user_smime_certificate = 2;
    ev.user_certificate = NULL;
    ev.n_user_certificate = 0;
    assert_null(cs_event_content_sha256(&ev, want));
    assert_null(cs_event_content_sha256_digests(NULL, 0, (const unsigned char(*)[32])d, 2, got));
    assert_string_equal(got, want);
    ev.user_certificate = values;
    ev.n_user_certificate = 1;
    ev.user_smime_certificate = values + 1;
    ev.n_user_smime_certificate = 1;
    assert_null(cs_event_content_sha256(&ev, want));
    assert_null(cs_event_content_sha256_digests((const unsigned char(*)[32])d, 1,
                                                (const unsigned char(*)[32])d + 1, 1, got));
    assert_string_equal(got, want);
    /* No values at all: the empty state's hash. */
    ev.n_user_certificate = ev.n_user_smime_certificate = 0;
    assert_null(cs_event_content_sha256(&ev, want));
    assert_null(cs_event_content_sha256_digests(NULL, 0, NULL, 0, got));
    assert_string_equal(got, want);
    /* Digests promised but missing: an error, not a crash. */
    cs_err *err = cs_event_content_sha256_digests(NULL, 1, NULL, 0, got);
    assert_non_null(err);
    cs_err_free(err);
}

static void key_joins_source_and_object(void **state)
{
    (void)state;
    char *key = NULL;
    assert_null(cs_event_key("site-a", "abc", &key));
    assert_string_equal(key, "site-a/abc");
    free(key);
    cs_err *err = cs_event_key("bad/source", "abc", &key);
    assert_non_null(strstr(cs_err_message(err), "contain no '/'"));
    assert_null(key);
    cs_err_free(err);
    err = cs_event_key("ok", "", &key);
    assert_non_null(err);
    cs_err_free(err);
}

/* Every record of the schema survives encoding; catches a broken .proto or generator change. */
static void every_schema_message_round_trips(void **state)
{
    (void)state;
    uint8_t buf[512];
    Certsync__V1__Recipient r = CERTSYNC__V1__RECIPIENT__INIT;
    r.identity = (char[]){"alice@example.test"};

    Certsync__V1__RecipientState rs = CERTSYNC__V1__RECIPIENT_STATE__INIT;
    rs.recipient = &r;
    rs.written_sha256 = (char[]){"00ff"};
    Certsync__V1__AppliedStateRecord asr = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    asr.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT;
    asr.recipient = &rs;
    size_t n = certsync__v1__applied_state_record__pack(&asr, buf);
    Certsync__V1__AppliedStateRecord *asr2 = certsync__v1__applied_state_record__unpack(NULL, n, buf);
    assert_non_null(asr2);
    assert_int_equal(asr2->state_case, CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT);
    assert_string_equal(asr2->recipient->recipient->identity, "alice@example.test");
    certsync__v1__applied_state_record__free_unpacked(asr2, NULL);

    Certsync__V1__PublishResult pr = CERTSYNC__V1__PUBLISH_RESULT__INIT;
    pr.has_outcome = 1;
    pr.outcome = CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE;
    n = certsync__v1__publish_result__pack(&pr, buf);
    Certsync__V1__PublishResult *pr2 = certsync__v1__publish_result__unpack(NULL, n, buf);
    assert_int_equal(pr2->outcome, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE);
    certsync__v1__publish_result__free_unpacked(pr2, NULL);

    Certsync__V1__DeadLetter dl = CERTSYNC__V1__DEAD_LETTER__INIT;
    dl.has_original_value = 1;
    dl.original_value.data = (uint8_t *)buf + 400;
    dl.original_value.len = 3;
    memcpy(buf + 400, "\xff\x00\x01", 3);
    uint8_t out[256];
    n = certsync__v1__dead_letter__pack(&dl, out);
    Certsync__V1__DeadLetter *dl2 = certsync__v1__dead_letter__unpack(NULL, n, out);
    assert_memory_equal(dl2->original_value.data, "\xff\x00\x01", 3);
    certsync__v1__dead_letter__free_unpacked(dl2, NULL);

    Certsync__V1__UsnPosition usn = CERTSYNC__V1__USN_POSITION__INIT;
    usn.has_highest_committed_usn = 1;
    usn.highest_committed_usn = 123456789012LL;
    Certsync__V1__CollectorCheckpoint cp = CERTSYNC__V1__COLLECTOR_CHECKPOINT__INIT;
    cp.usn = &usn;
    n = certsync__v1__collector_checkpoint__pack(&cp, buf);
    Certsync__V1__CollectorCheckpoint *cp2 = certsync__v1__collector_checkpoint__unpack(NULL, n, buf);
    assert_int_equal(cp2->usn->highest_committed_usn, 123456789012LL);
    certsync__v1__collector_checkpoint__free_unpacked(cp2, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_decode_round_trip),
        cmocka_unit_test(decode_rejects_garbage_with_a_reason),
        cmocka_unit_test(decode_requires_source_and_object_ids),
        cmocka_unit_test(content_hash_ignores_value_order_but_not_content),
        cmocka_unit_test(content_hash_from_digests_equals_content_hash),
        cmocka_unit_test(key_joins_source_and_object),
        cmocka_unit_test(every_schema_message_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
