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
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pub_decide.h"
#include "testcert.h"

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
    tc_free_keys();
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

/* ------------------------------------------------------------------ certificate policy (issue 6) */

#define ADDR "alice@example.com"
#define UPN "alice.upn@corp.example"

/* A certificate every default rule accepts for ADDR, changed by the caller. */
static tc_opts good_opts(void)
{
    return (tc_opts){.kind = "P-256",
                     .san_email = ADDR,
                     .not_before = NOW - 30 * DAY,
                     .not_after = NOW + 365 * DAY,
                     .ku = "critical,digitalSignature,keyAgreement",
                     .eku = "emailProtection"};
}

/* DER of `x` in OpenSSL's allocator (ev_free releases it); frees x. */
static ProtobufCBinaryData raw_of(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    assert_true(len > 0);
    X509_free(x);
    return (ProtobufCBinaryData){.len = (size_t)len, .data = der};
}

static ProtobufCBinaryData cert_of(const tc_opts *o)
{
    return raw_of(tc_cert(o));
}

/* An event for alice: identity with mail ADDR, an SMTP proxy, UPN, a DN. */
static Certsync__V1__Identity g_id;
static char g_mail[] = ADDR, g_upn[] = UPN, g_dn[] = "CN=Alice,DC=corp,DC=example";
static char g_p0[] = "SMTP:" ADDR, g_p1[] = "smtp:alias@example.net", g_p2[] = "X500:/o=x";
static char *g_proxies[] = {g_p0, g_p1, g_p2};

static void ev_identity(ev *v)
{
    certsync__v1__identity__init(&g_id);
    g_id.mail = g_mail;
    g_id.user_principal_name = g_upn;
    g_id.dn = g_dn;
    v->e.identity = &g_id;
}

static cs_policy *policy_new(const cs_policy_settings *s)
{
    cs_policy *p = NULL;
    cs_err *err = cs_policy_new(s, &p);
    if (err)
        fail_msg("cs_policy_new: %s", cs_err_message(err));
    return p;
}

static pub_decision *decide_p(const ev *v, const cs_policy *p)
{
    pub_decision *d = NULL;
    cs_err *err = pub_decide_with_policy(&v->e, NULL, p, NOW, &d);
    if (err)
        fail_msg("%s", cs_err_message(err));
    return d;
}

static char *sha_of(ProtobufCBinaryData raw)
{
    static char hex[65];
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(raw.data, raw.len, md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/*
 * One good value and one bad value in userCertificate: the good one is written, the bad one is dropped with
 * reason "policy: <rule>" and its problems, and the refusal names the user, the fingerprint and the rule.
 */
static void expect_refused(const cs_policy *p, ProtobufCBinaryData bad, const char *rule, int problem)
{
    ev v;
    ev_init(&v, 1);
    ev_identity(&v);
    tc_opts g = good_opts();
    ev_add(&v, 0, cert_of(&g));
    ev_add(&v, 0, bad);
    char bad_sha[65];
    snprintf(bad_sha, sizeof bad_sha, "%s", sha_of(bad));
    pub_decision *d = decide_p(&v, p);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    size_t n = 0;
    const ProtobufCBinaryData *w = pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, 1);
    assert_ptr_equal(w[0].data, v.vals[0][0].raw.data);
    Certsync__V1__DroppedValue *const *dv = pub_decision_dropped(d, &n);
    assert_int_equal(n, 1);
    char want_reason[64];
    snprintf(want_reason, sizeof want_reason, "policy: %s", rule);
    assert_string_equal(dv[0]->reason, want_reason);
    assert_string_equal(dv[0]->attribute, "userCertificate");
    assert_string_equal(dv[0]->sha256, bad_sha);
    if (problem >= 0) {
        bool found = false;
        for (size_t i = 0; i < dv[0]->n_problems; i++)
            found = found || dv[0]->problems[i] == (Certsync__V1__CertProblem)(problem + 1);
        if (!found)
            fail_msg("rule %s: DroppedValue lacks problem %d", rule, problem);
    }
    assert_int_equal(pub_decision_refusal_count(d), 1);
    cs_policy_rules rules = pub_decision_refusal_rules(d, 0);
    cs_buf names;
    cs_buf_init(&names, 256);
    assert_true(cs_policy_rules_format(rules, &names));
    assert_string_equal(cs_buf_str(&names), rule);
    cs_buf_free(&names);
    const char *msg = pub_decision_refusal_message(d, 0);
    assert_non_null(strstr(msg, "user " UPN ":"));
    assert_non_null(strstr(msg, "refused by policy"));
    char rule_colon[64];
    snprintf(rule_colon, sizeof rule_colon, " %s: ", rule);
    assert_non_null(strstr(msg, rule_colon));
    assert_non_null(strstr(pub_decision_detail(d), "1 refused by policy"));
    pub_decision_free(d);
    ev_free(&v);
}

/* Each default rule's effect on what is written. */
static void policy_each_rule(void **state)
{
    (void)state;
    cs_policy *p = policy_new(NULL);
    tc_opts o = good_opts();
    o.not_after = NOW - DAY;
    X509 *expired = tc_cert(&o);
    /* The fingerprint in the message is the certificate's SHA-256 (= the DER's for a userCertificate). */
    expect_refused(p, raw_of(expired), "expired", CS_CERT_PROBLEM_EXPIRED);
    o = good_opts();
    o.not_before = NOW + DAY;
    expect_refused(p, cert_of(&o), "not_yet_valid", CS_CERT_PROBLEM_NOT_YET_VALID);
    o = good_opts();
    o.san_email = "mallory@example.com";
    expect_refused(p, cert_of(&o), "address_mismatch", -1);
    o = good_opts();
    o.san_email = NULL;
    expect_refused(p, cert_of(&o), "address_mismatch", CS_CERT_PROBLEM_NO_EMAIL_ADDRESS);
    o = good_opts();
    o.ku = "critical,keyCertSign";
    expect_refused(p, cert_of(&o), "key_usage", -1);
    o = good_opts();
    o.eku = "serverAuth";
    expect_refused(p, cert_of(&o), "eku", CS_CERT_PROBLEM_NO_EMAIL_PROTECTION);
    o = good_opts();
    o.kind = "rsa1024";
    o.ku = "critical,digitalSignature,keyEncipherment";
    expect_refused(p, cert_of(&o), "weak_key", -1);
    o = good_opts();
    o.kind = "P-224";
    expect_refused(p, cert_of(&o), "weak_key", -1);
    unsigned char *junk = OPENSSL_malloc(8);
    memcpy(junk, "\x30\x03\x02\x01\x01\xff\xff\xff", 8);
    expect_refused(p, (ProtobufCBinaryData){.len = 8, .data = junk}, "unparseable",
                   CS_CERT_PROBLEM_UNPARSEABLE);
    cs_policy_free(p);
}

/* The issuer and revocation rules, with a CA file and a CRL. */
static void policy_issuer_and_revocation(void **state)
{
    (void)state;
    X509 *ca = tc_ca("certsync test CA", NOW, NULL);
    char *ca_file = tc_write_pem_certs(&ca, 1);
    long revoked_serial = 666;
    char *crl_file = tc_write_crl(ca, &revoked_serial, 1, NOW);
    const char *crls[] = {crl_file};
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.trusted_ca_file = ca_file;
    s.crl_files = crls;
    s.n_crl_files = 1;
    cs_policy *p = policy_new(&s);

    /* The good value of expect_refused is self-signed: give this test CA-issued good values instead. */
    ev v;
    ev_init(&v, 1);
    ev_identity(&v);
    tc_opts o = good_opts();
    o.issuer = ca;
    o.issuer_key = tc_key("rsa2048ca");
    o.serial = 7;
    ev_add(&v, 0, cert_of(&o)); /* issued by the CA, not revoked: written */
    o.serial = revoked_serial;
    ev_add(&v, 0, cert_of(&o)); /* revoked */
    tc_opts self = good_opts();
    ev_add(&v, 0, cert_of(&self)); /* self-signed: untrusted issuer */
    pub_decision *d = decide_p(&v, p);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    size_t n = 0;
    const ProtobufCBinaryData *w = pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, 1);
    assert_ptr_equal(w[0].data, v.vals[0][0].raw.data);
    Certsync__V1__DroppedValue *const *dv = pub_decision_dropped(d, &n);
    assert_int_equal(n, 2);
    assert_string_equal(dv[0]->reason, "policy: revoked");
    assert_string_equal(dv[1]->reason, "policy: untrusted_issuer");
    assert_int_equal(pub_decision_refusal_count(d), 2);
    assert_int_equal(pub_decision_refusal_rules(d, 0), CS_POLICY_RULE_BIT(CS_POLICY_RULE_REVOKED));
    assert_int_equal(pub_decision_refusal_rules(d, 1), CS_POLICY_RULE_BIT(CS_POLICY_RULE_UNTRUSTED_ISSUER));
    pub_decision_free(d);
    ev_free(&v);
    cs_policy_free(p);
    unlink(ca_file);
    unlink(crl_file);
    free(ca_file);
    free(crl_file);
    X509_free(ca);
}

/* Whose addresses: mail and SMTP proxies always; the UPN only with match_upn. */
static void policy_recipient_addresses(void **state)
{
    (void)state;
    cs_policy *p = policy_new(NULL);
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.match_upn = true;
    cs_policy *pu = policy_new(&s);
    ev v;
    ev_init(&v, 1);
    ev_identity(&v);
    g_id.mail = NULL;
    g_id.proxy_addresses = g_proxies;
    g_id.n_proxy_addresses = 3;
    tc_opts o = good_opts();
    o.san_email = "ALIAS@example.net"; /* a secondary smtp: proxy, other case */
    ev_add(&v, 0, cert_of(&o));
    o.san_email = UPN;
    ev_add(&v, 1, cert_of(&o));
    pub_decision *d = decide_p(&v, p);
    size_t n = 0;
    pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, 1);
    pub_decision_values(d, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n);
    assert_int_equal(n, 0); /* the UPN is not an address by default */
    Certsync__V1__DroppedValue *const *dv = pub_decision_dropped(d, &n);
    assert_int_equal(n, 1);
    assert_string_equal(dv[0]->attribute, "userSMIMECertificate");
    assert_string_equal(dv[0]->reason, "policy: address_mismatch");
    pub_decision_free(d);
    d = decide_p(&v, pu);
    pub_decision_values(d, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n);
    assert_int_equal(n, 1);
    assert_int_equal(pub_decision_refusal_count(d), 0);
    pub_decision_free(d);
    ev_free(&v);
    g_id.proxy_addresses = NULL;
    g_id.n_proxy_addresses = 0;
    cs_policy_free(p);
    cs_policy_free(pu);
}

/* Every value refused: NOTHING_VALID; no values at all: still a clear; a disabled policy writes everything. */
static void policy_nothing_valid_and_disabled(void **state)
{
    (void)state;
    cs_policy *p = policy_new(NULL);
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.enabled = false;
    cs_policy *off = policy_new(&s);
    ev v;
    ev_init(&v, 1);
    ev_identity(&v);
    tc_opts o = good_opts();
    o.not_after = NOW - DAY;
    ev_add(&v, 0, cert_of(&o));
    o = good_opts();
    o.san_email = "mallory@example.com";
    ev_add(&v, 1, cert_of(&o));
    pub_decision *d = decide_p(&v, p);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_DEAD_LETTER);
    assert_int_equal(pub_decision_dead_letter_reason(d),
                     CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_NOTHING_VALID);
    assert_non_null(strstr(pub_decision_detail(d), "2 refused by policy: expired,address_mismatch"));
    size_t n = 0;
    pub_decision_dropped(d, &n);
    assert_int_equal(n, 2);
    assert_int_equal(pub_decision_refusal_count(d), 2);
    pub_decision_free(d);

    d = decide_p(&v, off);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    assert_int_equal(pub_decision_refusal_count(d), 0);
    pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, 1);
    pub_decision_free(d);
    ev_free(&v);

    ev empty;
    ev_init(&empty, 2);
    ev_identity(&empty);
    d = decide_p(&empty, p);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    pub_decision_free(d);
    cs_policy_free(p);
    cs_policy_free(off);
}

/* The policy runs before pruning: 15 good values and 3 refused ones are all 15 written, nothing pruned. */
static void policy_before_pruning(void **state)
{
    (void)state;
    cs_policy *p = policy_new(NULL);
    ev v;
    ev_init(&v, 1);
    ev_identity(&v);
    for (int i = 0; i < 18; i++) {
        tc_opts o = good_opts();
        o.serial = 100 + i;
        o.not_after = NOW + (i + 1) * DAY;
        if (i % 6 == 5)
            o.eku = "codeSigning"; /* refused: the three with the latest notAfter of their group */
        ev_add(&v, 0, cert_of(&o));
    }
    pub_decision *d = decide_p(&v, p);
    assert_int_equal(pub_decision_get_kind(d), PUB_DECISION_WRITE);
    size_t n = 0;
    pub_decision_values(d, CS_CERT_ATTR_USER_CERTIFICATE, &n);
    assert_int_equal(n, PUB_DECIDE_MAX_VALUES);
    Certsync__V1__DroppedValue *const *dv = pub_decision_dropped(d, &n);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(dv[i]->reason, "policy: eku");
    pub_decision_free(d);
    /* Without the policy the same event prunes three of the good ones instead. */
    d = decide(&v, NULL);
    pub_decision_dropped(d, &n);
    assert_int_equal(n, 3);
    pub_decision_free(d);
    ev_free(&v);
    cs_policy_free(p);
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
        cmocka_unit_test(policy_each_rule),
        cmocka_unit_test(policy_issuer_and_revocation),
        cmocka_unit_test(policy_recipient_addresses),
        cmocka_unit_test(policy_nothing_valid_and_disabled),
        cmocka_unit_test(policy_before_pruning),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
