/*
 * pub_decide: the version gate, removal, the >15 pruning order, nothing-valid and duplicates.
 * Certificates are generated with OpenSSL so validity (notAfter, EKU, e-mail) is real.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pub_decide.h"

#define NOW 1767225600 /* 2026-01-01 */
#define DAY 86400
#define MAX_VALUES 40

static EVP_PKEY *g_key;

/* A user certificate valid from NOW-10d to `not_after`; `usable` false leaves out the e-mail address. */
static ProtobufCBinaryData make_cert(int64_t not_after, bool usable, long serial)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)"Alice", -1, -1, 0);
    assert_true(X509_set_issuer_name(x, nm));
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(NOW - 10 * DAY)));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after));
    assert_true(X509_set_pubkey(x, g_key));
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
                                              usable ? "email:alice@example.com" : "DNS:x.example");
    assert_non_null(ext);
    assert_true(X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, g_key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    assert_true(len > 0);
    X509_free(x);
    return (ProtobufCBinaryData){.len = (size_t)len, .data = der};
}

/* An event under construction: owns its values. */
typedef struct ev {
    Certsync__V1__ChangeEvent e;
    Certsync__V1__Version version;
    Certsync__V1__AttributeStamp stamp;
    Certsync__V1__CertificateValue vals[2][MAX_VALUES];
    Certsync__V1__CertificateValue *ptrs[2][MAX_VALUES];
} ev;

static void ev_init(ev *v, uint32_t version)
{
    memset(v, 0, sizeof(*v));
    certsync__v1__change_event__init(&v->e);
    certsync__v1__version__init(&v->version);
    certsync__v1__attribute_stamp__init(&v->stamp);
    v->stamp.has_version = 1;
    v->stamp.version = version;
    v->stamp.has_originating_time = 1;
    v->stamp.originating_time = NOW;
    v->version.user_certificate = &v->stamp;
    v->e.version = &v->version;
    v->e.has_kind = 1;
    v->e.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    v->e.user_certificate = v->ptrs[0];
    v->e.user_smime_certificate = v->ptrs[1];
}

static void ev_add(ev *v, int attr, ProtobufCBinaryData raw)
{
    size_t *n = attr == 0 ? &v->e.n_user_certificate : &v->e.n_user_smime_certificate;
    assert_true(*n < MAX_VALUES);
    Certsync__V1__CertificateValue *cv = &v->vals[attr][*n];
    certsync__v1__certificate_value__init(cv);
    cv->has_raw = 1;
    cv->raw = raw;
    v->ptrs[attr][*n] = cv;
    (*n)++;
}

static void ev_free(ev *v)
{
    for (size_t i = 0; i < v->e.n_user_certificate; i++)
        OPENSSL_free(v->vals[0][i].raw.data);
    for (size_t i = 0; i < v->e.n_user_smime_certificate; i++)
        OPENSSL_free(v->vals[1][i].raw.data);
}

static pub_decision *decide(const ev *v, const pub_applied_view *applied)
{
    pub_decision *d = NULL;
    cs_err *err = pub_decide(&v->e, applied, NOW, &d);
    if (err)
        fail_msg("%s", cs_err_message(err));
    return d;
}

static int setup(void **state)
{
    (void)state;
    g_key = EVP_EC_gen("P-256");
    return g_key ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_key);
    return 0;
}

/* Older and equal versions are stale; newer and first-seen are written; diverged is written (documented). */
static void version_gate(void **state)
{
    (void)state;
    ev applied, older, newer;
    ev_init(&applied, 5);
    ev_init(&older, 4);
    ev_init(&newer, 6);
    ev_add(&newer, 0, make_cert(NOW + 100 * DAY, true, 1));
    pub_applied_view view = {.version = &applied.version, .written_sha256 = NULL};

    pub_decision *d = decide(&older, &view);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_SKIP_STALE);
    assert_int_equal(pub_decision_order(d), CS_VERSION_OLDER);
    assert_int_equal(pub_decision_outcome(d), CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE);
    size_t n = 99;
    assert_null(pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n));
    assert_int_equal(n, 0);
    pub_decision_free(d);

    d = decide(&applied, &view);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_SKIP_STALE);
    assert_int_equal(pub_decision_order(d), CS_VERSION_EQUAL);
    pub_decision_free(d);

    d = decide(&newer, &view);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    assert_int_equal(pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n)[0].len,
                     newer.vals[0][0].raw.len);
    assert_int_equal(n, 1);
    pub_decision_free(d);

    d = decide(&newer, NULL);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    pub_decision_free(d);

    /* Diverged: newer userCertificate stamp, older lifecycle stamp -> written. */
    Certsync__V1__AttributeStamp life_new, life_old;
    certsync__v1__attribute_stamp__init(&life_new);
    certsync__v1__attribute_stamp__init(&life_old);
    life_new.has_version = life_old.has_version = 1;
    life_new.version = 9;
    life_old.version = 1;
    applied.version.lifecycle = &life_new;
    newer.version.lifecycle = &life_old;
    d = decide(&newer, &view);
    assert_int_equal(pub_decision_order(d), CS_VERSION_DIVERGED);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    pub_decision_free(d);
    ev_free(&newer);
}

/* Same content as written -> duplicate; the hash matches cs_event_content_sha256 when nothing is pruned. */
static void duplicate_content(void **state)
{
    (void)state;
    ev v;
    ev_init(&v, 2);
    ev_add(&v, 0, make_cert(NOW + 100 * DAY, true, 1));
    ev_add(&v, 1, make_cert(NOW + 50 * DAY, true, 2));
    char sha[CS_SHA256_HEX_LEN];
    assert_null(cs_event_content_sha256(&v.e, sha));
    pub_decision *d = decide(&v, NULL);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    assert_string_equal(pub_decision_sha256(d), sha);
    pub_decision_free(d);

    pub_applied_view view = {.version = NULL, .written_sha256 = sha};
    d = decide(&v, &view);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_SKIP_DUPLICATE);
    assert_int_equal(pub_decision_outcome(d), CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_DUPLICATE);
    pub_decision_free(d);

    view.written_sha256 = "00";
    d = decide(&v, &view);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    pub_decision_free(d);
    ev_free(&v);
}

/* A removal clears both attributes, whatever values it carries; an event with no values is a clear by content. */
static void removal_and_empty(void **state)
{
    (void)state;
    ev v;
    ev_init(&v, 3);
    v.e.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    pub_decision *d = decide(&v, NULL);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_CLEAR);
    assert_int_equal(pub_decision_outcome(d), CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED);
    size_t n = 9;
    assert_null(pub_decision_values(d, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n));
    assert_int_equal(n, 0);
    char empty_sha[CS_SHA256_HEX_LEN];
    assert_string_equal(pub_decision_sha256(d), (cs_event_content_sha256(&v.e, empty_sha), empty_sha));
    pub_decision_free(d);

    v.e.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    d = decide(&v, NULL);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    assert_int_equal(pub_decision_dead_letter_reason(d), 0);
    pub_decision_free(d);
}

/* 15 or fewer values are all written, even expired ones (Exchange accepts them; pruning is for the limit). */
static void at_limit_nothing_pruned(void **state)
{
    (void)state;
    ev v;
    ev_init(&v, 1);
    for (int i = 0; i < PUB_DECIDE_MAX_VALUES; i++)
        ev_add(&v, 0, make_cert(NOW - DAY, true, i + 1));
    pub_decision *d = decide(&v, NULL);
    size_t n = 0;
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, PUB_DECIDE_MAX_VALUES);
    pub_decision_dropped(d, &n);
    assert_int_equal(n, 0);
    pub_decision_free(d);
    ev_free(&v);
}

/*
 * 20 values: 2 expired, 1 unusable (no e-mail address), 17 valid with distinct notAfter. Expected: the invalid
 * three dropped with their problems, then the 2 valid ones with the oldest notAfter dropped for the limit;
 * the kept 15 stay in directory order.
 */
static void over_limit_pruning_order(void **state)
{
    (void)state;
    ev v;
    ev_init(&v, 1);
    /* index: 0 expired, 1 unusable, 2..18 valid (notAfter NOW + (10 + i) days), 19 expired. */
    ev_add(&v, 0, make_cert(NOW - DAY, true, 100));
    ev_add(&v, 0, make_cert(NOW + 999 * DAY, false, 101));
    for (int i = 2; i <= 18; i++)
        ev_add(&v, 0, make_cert(NOW + (10 + i) * DAY, true, i));
    ev_add(&v, 0, make_cert(NOW - 2 * DAY, true, 102));
    assert_int_equal(v.e.n_user_certificate, 20);

    pub_decision *d = decide(&v, NULL);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    size_t n = 0;
    const ProtobufCBinaryData *kept = pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, PUB_DECIDE_MAX_VALUES);
    /* Kept: indexes 4..18 in order (2 and 3 have the oldest notAfter among the valid). */
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(kept[i].data, v.vals[0][4 + i].raw.data);

    size_t nd = 0;
    Certsync__V1__DroppedValue *const *dropped = pub_decision_dropped(d, &nd);
    assert_int_equal(nd, 5);
    int expired = 0, unusable = 0, limit = 0;
    for (size_t i = 0; i < nd; i++) {
        assert_string_equal(dropped[i]->attribute, "userCertificate");
        assert_int_equal(strlen(dropped[i]->sha256), 64);
        if (strstr(dropped[i]->reason, "expired")) {
            expired++;
            assert_int_equal(dropped[i]->n_problems, 1);
            assert_int_equal(dropped[i]->problems[0], CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_EXPIRED);
        } else if (strstr(dropped[i]->reason, "no_email_address")) {
            unusable++;
            assert_int_equal(dropped[i]->problems[0],
                             CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_NO_EMAIL_ADDRESS);
        } else if (strstr(dropped[i]->reason, "limit")) {
            limit++;
            assert_int_equal(dropped[i]->n_problems, 0);
        }
    }
    assert_int_equal(expired, 2);
    assert_int_equal(unusable, 1);
    assert_int_equal(limit, 2);

    /* The written hash covers the kept values only, so it differs from the event's. */
    char full[CS_SHA256_HEX_LEN];
    assert_null(cs_event_content_sha256(&v.e, full));
    assert_string_not_equal(pub_decision_sha256(d), full);
    pub_decision_free(d);
    ev_free(&v);
}

/* More than 15 values, none valid -> NOTHING_VALID, nothing handed out to write. */
static void nothing_valid(void **state)
{
    (void)state;
    ev v;
    ev_init(&v, 1);
    for (int i = 0; i < 16; i++)
        ev_add(&v, 1, make_cert(NOW - (i + 1) * DAY, true, i + 1));
    pub_decision *d = decide(&v, NULL);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_DEAD_LETTER);
    assert_int_equal(pub_decision_dead_letter_reason(d),
                     CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_NOTHING_VALID);
    assert_int_equal(pub_decision_outcome(d), CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED);
    assert_non_null(strstr(pub_decision_detail(d), "nothing valid"));
    size_t n = 9;
    pub_decision_values(d, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n);
    assert_int_equal(n, 0);
    pub_decision_dropped(d, &n);
    assert_int_equal(n, 16);
    pub_decision_free(d);
    ev_free(&v);
}

static void bad_arguments(void **state)
{
    (void)state;
    pub_decision *d = NULL;
    cs_err *err = pub_decide(NULL, NULL, NOW, &d);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    cs_err_free(err);
    assert_string_equal(pub_decision_kind_name(PUB_DECISION_SKIP_DUPLICATE), "skip_duplicate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_gate),
        cmocka_unit_test(duplicate_content),
        cmocka_unit_test(removal_and_empty),
        cmocka_unit_test(at_limit_nothing_pruned),
        cmocka_unit_test(over_limit_pruning_order),
        cmocka_unit_test(nothing_valid),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
