/*
 * cs_policy: one test per rule with certificates made here (testcert.c), the shared
 * corpus where a verdict means something, and the configuration errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_policy.h"
#include "testcert.h"

#define CORPUS_DIR CS_SHARED_DIR "/testdata/certs"
#define NOW INT64_C(1735689600) /* 2025-01-01T00:00:00Z */
#define DAY INT64_C(86400)
#define RULE(r) CS_POLICY_RULE_BIT(CS_POLICY_RULE_##r)

static const char *const alice[] = {"alice@example.com", "a.smith@example.org"};

/* A good S/MIME certificate for alice, changed by the caller. */
static tc_opts good(void)
{
    return (tc_opts){.kind = "rsa2048",
                     .san_email = "Alice@Example.COM",
                     .not_before = NOW - 30 * DAY,
                     .not_after = NOW + 365 * DAY,
                     .ku = "critical,digitalSignature,keyEncipherment",
                     .eku = "emailProtection"};
}

static cs_policy *policy_with(const cs_policy_settings *s)
{
    cs_policy *p = NULL;
    cs_err *err = cs_policy_new(s, &p);
    if (err)
        fail_msg("cs_policy_new: %s", cs_err_message(err));
    return p;
}

/* Judges value bytes and returns the verdict (caller frees). */
static cs_policy_verdict *judge_bytes(const cs_policy *p, cs_cert_attr attr, const unsigned char *d, size_t n,
                                      const char *const *addrs, size_t n_addrs)
{
    cs_policy_verdict *v = NULL;
    cs_err *err = cs_policy_check_value(p, attr, d, n, addrs, n_addrs, NOW, "alice@corp.example", &v);
    if (err)
        fail_msg("cs_policy_check_value: %s", cs_err_message(err));
    assert_non_null(v);
    return v;
}

/* Judges one certificate built from `o` with `p` (NULL = defaults) for alice; returns the failed rules. */
static cs_policy_rules judge(const cs_policy *p, const tc_opts *o)
{
    cs_policy *own = p ? NULL : policy_with(NULL);
    X509 *x = tc_cert(o);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p ? p : own, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    cs_policy_rules r = cs_policy_verdict_rules(v);
    cs_policy_verdict_free(v);
    free(d);
    X509_free(x);
    cs_policy_free(own);
    return r;
}

static void expect_rules(cs_policy_rules got, cs_policy_rules want)
{
    if (got != want) {
        cs_buf a, b;
        cs_buf_init(&a, 512);
        cs_buf_init(&b, 512);
        cs_policy_rules_format(got, &a);
        cs_policy_rules_format(want, &b);
        fail_msg("rules: got \"%s\", want \"%s\"", cs_buf_str(&a), cs_buf_str(&b));
    }
}

/* ------------------------------------------------------------ the rules */

static void good_certificate_is_accepted(void **state)
{
    (void)state;
    cs_policy *p = policy_with(NULL);
    tc_opts o = good();
    X509 *x = tc_cert(&o);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    assert_true(cs_policy_verdict_ok(v));
    assert_true(cs_policy_verdict_fit_encryption(v));
    assert_true(cs_policy_verdict_fit_signing(v));
    assert_string_equal(cs_policy_verdict_dropped_reason(v), "");
    assert_int_equal(cs_policy_verdict_not_after(v), NOW + 365 * DAY);
    char want[256];
    snprintf(want, sizeof want, "user alice@corp.example: userCertificate certificate %s accepted by policy",
             cs_policy_verdict_fingerprint(v));
    assert_string_equal(cs_policy_verdict_message(v), want);
    assert_int_equal(strlen(cs_policy_verdict_fingerprint(v)), 64);
    /* a bare certificate: its fingerprint is the value's */
    assert_string_equal(cs_policy_verdict_fingerprint(v), cs_policy_verdict_value_sha256(v));
    cs_policy_verdict_free(v);
    free(d);
    X509_free(x);
    cs_policy_free(p);
}

static void rule_expired(void **state)
{
    (void)state;
    tc_opts o = good();
    o.not_before = NOW - 400 * DAY;
    o.not_after = NOW - DAY;
    expect_rules(judge(NULL, &o), RULE(EXPIRED));
    o.not_after = NOW; /* notAfter is inclusive */
    expect_rules(judge(NULL, &o), 0);

    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.check_validity = false;
    cs_policy *p = policy_with(&s);
    o.not_after = NOW - DAY;
    expect_rules(judge(p, &o), 0);
    cs_policy_free(p);
}

static void rule_not_yet_valid(void **state)
{
    (void)state;
    tc_opts o = good();
    o.not_before = NOW + DAY;
    expect_rules(judge(NULL, &o), RULE(NOT_YET_VALID));
    o.not_before = NOW;
    expect_rules(judge(NULL, &o), 0);
}

static void rule_address_san_subject_and_mismatch(void **state)
{
    (void)state;
    tc_opts o = good();
    /* SAN, matched case-insensitively (good() spells it Alice@Example.COM) */
    expect_rules(judge(NULL, &o), 0);
    /* the second address of the recipient */
    o.san_email = "A.Smith@example.org";
    expect_rules(judge(NULL, &o), 0);
    /* subject emailAddress only */
    o.san_email = NULL;
    o.subject_email = "alice@example.com";
    expect_rules(judge(NULL, &o), 0);
    /* someone else's address */
    o.subject_email = NULL;
    o.san_email = "mallory@example.com";
    expect_rules(judge(NULL, &o), RULE(ADDRESS_MISMATCH));
    /* a prefix is not a match */
    o.san_email = "alice@example.com.evil";
    expect_rules(judge(NULL, &o), RULE(ADDRESS_MISMATCH));
    /* no address at all: mismatch, reported as no_email_address to DroppedValue */
    o.san_email = NULL;
    cs_policy *p = policy_with(NULL);
    X509 *x = tc_cert(&o);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), RULE(ADDRESS_MISMATCH));
    assert_int_equal(cs_policy_verdict_problems(v), CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NO_EMAIL_ADDRESS));
    assert_non_null(strstr(cs_policy_verdict_message(v), "carries no e-mail address"));
    cs_policy_verdict_free(v);
    /* a recipient without addresses matches nothing */
    o.san_email = "alice@example.com";
    X509 *y = tc_cert(&o);
    size_t m = 0;
    unsigned char *e = tc_der(y, &m);
    v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, e, m, NULL, 0);
    expect_rules(cs_policy_verdict_rules(v), RULE(ADDRESS_MISMATCH));
    cs_policy_verdict_free(v);
    free(d);
    free(e);
    X509_free(x);
    X509_free(y);
    cs_policy_free(p);
}

static void addresses_are_collected(void **state)
{
    (void)state;
    const char *const proxies[] = {"SMTP:Alice@example.com", "smtp:alias@example.net",
                                   "x500:/o=Corp/cn=alice",  "sip:alice@example.com",
                                   "SmTp:ALIAS@example.net", "smtp:"};
    cs_policy_identity id = {.primary_smtp = "alice@example.com",
                             .proxies = proxies,
                             .n_proxies = 6,
                             .mail = "alice.mail@example.com",
                             .upn = "alice@corp.example"};
    cs_policy_addresses a = {0};
    cs_policy *p = policy_with(NULL);
    assert_null(cs_policy_addresses_collect(p, &id, &a));
    assert_int_equal(a.n, 3);
    assert_string_equal(a.v[0], "alice@example.com");
    assert_string_equal(a.v[1], "alias@example.net");
    assert_string_equal(a.v[2], "alice.mail@example.com");
    cs_policy_addresses_free(&a);
    cs_policy_free(p);

    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.match_upn = true;
    p = policy_with(&s);
    assert_null(cs_policy_addresses_collect(p, &id, &a));
    assert_int_equal(a.n, 4);
    assert_string_equal(a.v[3], "alice@corp.example");
    cs_policy_addresses_free(&a);
    cs_policy_free(p);

    assert_string_equal(cs_policy_proxy_smtp("SMTP:x@y"), "x@y");
    assert_null(cs_policy_proxy_smtp("X400:c=US"));
    assert_null(cs_policy_proxy_smtp("smt"));
}

static void rule_key_usage(void **state)
{
    (void)state;
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.purpose = CS_POLICY_PURPOSE_ENCRYPTION;
    cs_policy *enc = policy_with(&s);
    s.purpose = CS_POLICY_PURPOSE_SIGNING;
    cs_policy *sig = policy_with(&s);

    tc_opts o = good();
    /* RSA without keyEncipherment: a signing certificate */
    o.ku = "critical,digitalSignature,nonRepudiation";
    expect_rules(judge(NULL, &o), 0); /* purpose any */
    expect_rules(judge(enc, &o), RULE(KEY_USAGE));
    expect_rules(judge(sig, &o), 0);
    /* encryption only */
    o.ku = "critical,keyEncipherment";
    expect_rules(judge(enc, &o), 0);
    expect_rules(judge(sig, &o), RULE(KEY_USAGE));
    /* a CA's usage fits no S/MIME purpose */
    o.ku = "critical,keyCertSign,cRLSign";
    expect_rules(judge(NULL, &o), RULE(KEY_USAGE));
    /* no keyUsage extension: no restriction (RFC 5280 4.2.1.3) */
    o.ku = NULL;
    expect_rules(judge(enc, &o), 0);
    expect_rules(judge(sig, &o), 0);
    /* EC encrypts by key agreement, not key encipherment */
    o.kind = "P-256";
    o.ku = "critical,keyEncipherment";
    expect_rules(judge(enc, &o), RULE(KEY_USAGE));
    o.ku = "critical,keyAgreement";
    expect_rules(judge(enc, &o), 0);
    /* RSA cannot do key agreement */
    o.kind = "rsa2048";
    expect_rules(judge(enc, &o), RULE(KEY_USAGE));
    /* switched off */
    s.purpose = CS_POLICY_PURPOSE_ENCRYPTION;
    s.check_key_usage = false;
    cs_policy *off = policy_with(&s);
    expect_rules(judge(off, &o), 0);
    cs_policy_free(off);
    cs_policy_free(enc);
    cs_policy_free(sig);
}

static void rule_eku(void **state)
{
    (void)state;
    tc_opts o = good();
    o.eku = "serverAuth";
    expect_rules(judge(NULL, &o), RULE(EKU));
    o.eku = "serverAuth,clientAuth";
    expect_rules(judge(NULL, &o), RULE(EKU));
    o.eku = "clientAuth,emailProtection";
    expect_rules(judge(NULL, &o), 0);
    o.eku = "anyExtendedKeyUsage";
    expect_rules(judge(NULL, &o), 0);
    o.eku = NULL;
    expect_rules(judge(NULL, &o), 0);
}

static void rule_weak_key(void **state)
{
    (void)state;
    tc_opts o = good();
    o.kind = "rsa1024";
    cs_policy *p = policy_with(NULL);
    X509 *x = tc_cert(&o);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), RULE(WEAK_KEY));
    assert_non_null(strstr(cs_policy_verdict_message(v), "RSA key has 1024 bits, below the minimum of 2048"));
    assert_string_equal(cs_policy_verdict_dropped_reason(v), "policy: weak_key");
    cs_policy_verdict_free(v);
    free(d);
    X509_free(x);
    cs_policy_free(p);

    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.min_rsa_bits = 1024;
    p = policy_with(&s);
    expect_rules(judge(p, &o), 0);
    cs_policy_free(p);

    o.kind = "rsa2048";
    expect_rules(judge(NULL, &o), 0);
    o.ku = "critical,digitalSignature,keyAgreement";
    o.kind = "P-192";
    expect_rules(judge(NULL, &o), RULE(WEAK_KEY));
    o.kind = "P-224";
    expect_rules(judge(NULL, &o), RULE(WEAK_KEY));
    o.kind = "P-256";
    expect_rules(judge(NULL, &o), 0);
    s.min_ec_bits = 384;
    p = policy_with(&s);
    expect_rules(judge(p, &o), RULE(WEAK_KEY));
    cs_policy_free(p);
}

static void several_rules_are_all_named(void **state)
{
    (void)state;
    tc_opts o = good();
    o.kind = "rsa1024";
    o.not_after = NOW - DAY;
    o.eku = "serverAuth";
    cs_policy *p = policy_with(NULL);
    X509 *x = tc_cert(&o);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), RULE(EXPIRED) | RULE(EKU) | RULE(WEAK_KEY));
    assert_int_equal(cs_policy_verdict_rule(v), CS_POLICY_RULE_EXPIRED);
    assert_string_equal(cs_policy_verdict_dropped_reason(v), "policy: expired,eku,weak_key");
    assert_int_equal(cs_policy_verdict_problems(v),
                     CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_EXPIRED) |
                         CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NO_EMAIL_PROTECTION));
    char prefix[256];
    snprintf(prefix, sizeof prefix,
             "user alice@corp.example: userCertificate certificate %s refused by policy: expired: expired on "
             "2024-12-31T00:00:00Z; ",
             cs_policy_verdict_fingerprint(v));
    const char *msg = cs_policy_verdict_message(v);
    assert_memory_equal(msg, prefix, strlen(prefix));
    assert_non_null(strstr(msg, " eku: its extendedKeyUsage lacks emailProtection"));
    assert_non_null(strstr(msg, " weak_key: its RSA key has 1024 bits"));
    cs_policy_verdict_free(v);
    free(d);
    X509_free(x);
    cs_policy_free(p);
}

static void rule_unparseable(void **state)
{
    (void)state;
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01};
    cs_policy *p = policy_with(NULL);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, junk, sizeof junk, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), RULE(UNPARSEABLE));
    assert_string_equal(cs_policy_verdict_fingerprint(v), cs_policy_verdict_value_sha256(v));
    assert_true(cs_policy_verdict_problems(v) & CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE));
    assert_false(cs_policy_verdict_fit_encryption(v));
    assert_string_equal(cs_policy_verdict_dropped_reason(v), "policy: unparseable");
    cs_policy_verdict_free(v);
    /* empty value */
    v = judge_bytes(p, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, NULL, 0, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), RULE(UNPARSEABLE));
    cs_policy_verdict_free(v);
    cs_policy_free(p);
}

static void bad_arguments_are_errors(void **state)
{
    (void)state;
    cs_policy *p = policy_with(NULL);
    cs_policy_verdict *v = NULL;
    cs_err *err = cs_policy_check_value(p, CS_CERT_ATTR_USER_CERTIFICATE, NULL, 5, alice, 2, NOW, "x", &v);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    cs_err_free(err);
    err = cs_policy_check_value(NULL, CS_CERT_ATTR_USER_CERTIFICATE, NULL, 0, alice, 2, NOW, "x", &v);
    assert_non_null(err);
    cs_err_free(err);
    cs_policy_free(p);
}

/* ------------------------------------------------------------ issuer and revocation */

typedef struct pki {
    X509 *ca, *other_ca;
    char *ca_file;
} pki;

static pki make_pki(void)
{
    pki k = {.ca = tc_ca("certsync Test CA", NOW, NULL), .other_ca = tc_ca("Other CA", NOW, NULL)};
    k.ca_file = tc_write_pem_certs(&k.ca, 1);
    return k;
}

static void free_pki(pki *k)
{
    unlink(k->ca_file);
    free(k->ca_file);
    X509_free(k->ca);
    X509_free(k->other_ca);
}

static tc_opts issued_by(X509 *ca, long serial)
{
    tc_opts o = good();
    o.issuer = ca;
    o.issuer_key = tc_key("rsa2048ca");
    o.serial = serial;
    return o;
}

static void rule_untrusted_issuer(void **state)
{
    (void)state;
    pki k = make_pki();
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.trusted_ca_file = k.ca_file;
    cs_policy *p = policy_with(&s);

    tc_opts o = issued_by(k.ca, 1001);
    expect_rules(judge(p, &o), 0);
    /* the same certificate with the rule off: no store at all */
    expect_rules(judge(NULL, &o), 0);
    /* self-signed, as a user could write into their own userSMIMECertificate */
    tc_opts self = good();
    expect_rules(judge(p, &self), RULE(UNTRUSTED_ISSUER));
    expect_rules(judge(NULL, &self), 0);
    /* another CA's certificate */
    o = issued_by(k.other_ca, 1001);
    expect_rules(judge(p, &o), RULE(UNTRUSTED_ISSUER));
    /* an expired leaf from the trusted CA fails only the expiry rule */
    o = issued_by(k.ca, 1003);
    o.not_after = NOW - DAY;
    expect_rules(judge(p, &o), RULE(EXPIRED));

    /* the message names the CA file and OpenSSL's reason */
    X509 *x = tc_cert(&self);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    assert_non_null(strstr(cs_policy_verdict_message(v), k.ca_file));
    assert_non_null(strstr(cs_policy_verdict_message(v), "untrusted_issuer: it does not chain to a CA in"));
    assert_string_equal(cs_policy_verdict_dropped_reason(v), "policy: untrusted_issuer");
    cs_policy_verdict_free(v);
    free(d);
    X509_free(x);
    cs_policy_free(p);
    free_pki(&k);
}

static void pkcs7_chain_uses_its_intermediates(void **state)
{
    (void)state;
    pki k = make_pki();
    X509 *inter = tc_ca("certsync Test Issuing CA", NOW, k.ca);
    tc_opts o = issued_by(inter, 2001);
    X509 *leaf = tc_cert(&o);
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.trusted_ca_file = k.ca_file; /* the root only */
    cs_policy *p = policy_with(&s);

    /* the bare leaf cannot reach the root */
    size_t n = 0;
    unsigned char *d = tc_der(leaf, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), RULE(UNTRUSTED_ISSUER));
    char leaf_fp[65];
    memcpy(leaf_fp, cs_policy_verdict_fingerprint(v), sizeof leaf_fp);
    cs_policy_verdict_free(v);
    free(d);

    /* a userSMIMECertificate value carrying the chain: the user's certificate is judged, via the intermediate */
    X509 *set[] = {inter, leaf, k.ca};
    d = tc_p7_der(set, 3, &n);
    v = judge_bytes(p, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n, alice, 2);
    expect_rules(cs_policy_verdict_rules(v), 0);
    assert_string_equal(cs_policy_verdict_fingerprint(v), leaf_fp);
    assert_string_not_equal(cs_policy_verdict_value_sha256(v), leaf_fp);
    cs_policy_verdict_free(v);
    free(d);

    cs_policy_free(p);
    X509_free(leaf);
    X509_free(inter);
    free_pki(&k);
}

static void rule_revoked(void **state)
{
    (void)state;
    pki k = make_pki();
    const long revoked[] = {1001, 4242};
    char *crl = tc_write_crl(k.ca, revoked, 2, NOW);
    X509 *cas[] = {k.ca, k.other_ca};
    char *both = tc_write_pem_certs(cas, 2);
    const char *crls[] = {crl};
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    s.trusted_ca_file = both;
    s.crl_files = crls;
    s.n_crl_files = 1;
    cs_policy *p = policy_with(&s);

    tc_opts o = issued_by(k.ca, 1001);
    expect_rules(judge(p, &o), RULE(REVOKED));
    o = issued_by(k.ca, 1002);
    expect_rules(judge(p, &o), 0);
    /* other_ca has no CRL: revocation status unknown, refused unless allowed */
    o = issued_by(k.other_ca, 1002);
    expect_rules(judge(p, &o), RULE(REVOKED));
    X509 *x = tc_cert(&o);
    size_t n = 0;
    unsigned char *d = tc_der(x, &n);
    cs_policy_verdict *v = judge_bytes(p, CS_CERT_ATTR_USER_CERTIFICATE, d, n, alice, 2);
    assert_non_null(strstr(cs_policy_verdict_message(v), "revocation status unknown"));
    cs_policy_verdict_free(v);
    free(d);
    X509_free(x);
    cs_policy_free(p);

    s.crl_allow_missing = true;
    p = policy_with(&s);
    expect_rules(judge(p, &o), 0);
    o = issued_by(k.ca, 1001); /* still revoked */
    expect_rules(judge(p, &o), RULE(REVOKED));
    cs_policy_free(p);

    unlink(crl);
    unlink(both);
    free(crl);
    free(both);
    free_pki(&k);
}

static void bad_settings_are_config_errors(void **state)
{
    (void)state;
    cs_policy_settings s;
    cs_policy *p = NULL;
    cs_err *err;

    cs_policy_settings_default(&s);
    s.trusted_ca_file = "/nonexistent/ca.pem";
    err = cs_policy_new(&s, &p);
    assert_non_null(err);
    assert_null(p);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_non_null(strstr(cs_err_message(err), "policy.trusted_ca_file /nonexistent/ca.pem"));
    cs_err_free(err);

    cs_policy_settings_default(&s);
    const char *crls[] = {"/nonexistent/x.crl"};
    s.crl_files = crls;
    s.n_crl_files = 1;
    err = cs_policy_new(&s, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "policy.crl_files is set but policy.trusted_ca_file is not"));
    cs_err_free(err);

    pki k = make_pki();
    s.trusted_ca_file = k.ca_file;
    err = cs_policy_new(&s, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "policy.crl_files /nonexistent/x.crl"));
    cs_err_free(err);
    /* a CA file is not a CRL file */
    crls[0] = k.ca_file;
    err = cs_policy_new(&s, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "no CRL could be loaded"));
    cs_err_free(err);
    free_pki(&k);

    cs_policy_settings_default(&s);
    s.min_rsa_bits = 512;
    err = cs_policy_new(&s, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "policy.min_rsa_bits 512 is out of range"));
    cs_err_free(err);
    cs_policy_settings_default(&s);
    s.min_ec_bits = 1000;
    err = cs_policy_new(&s, &p);
    assert_non_null(err);
    cs_err_free(err);
}

static void names_are_stable(void **state)
{
    (void)state;
    static const char *const want[CS_POLICY_RULE_COUNT] = {"unparseable",      "not_yet_valid",    "expired",
                                                           "address_mismatch", "key_usage",        "eku",
                                                           "weak_key",         "untrusted_issuer", "revoked"};
    for (unsigned r = 0; r < CS_POLICY_RULE_COUNT; r++)
        assert_string_equal(cs_policy_rule_name((cs_policy_rule)r), want[r]);
    assert_string_equal(cs_policy_rule_name((cs_policy_rule)99), "unknown");
    cs_policy_purpose pp;
    assert_true(cs_policy_purpose_parse("encryption", &pp));
    assert_int_equal(pp, CS_POLICY_PURPOSE_ENCRYPTION);
    assert_false(cs_policy_purpose_parse("Encryption", &pp));
    cs_policy_settings s;
    cs_policy_settings_default(&s);
    cs_policy *p = policy_with(&s);
    assert_true(cs_policy_enabled(p));
    cs_policy_free(p);
    s.enabled = false;
    p = policy_with(&s);
    assert_false(cs_policy_enabled(p));
    cs_policy_free(p);
}

/* ------------------------------------------------------------ the shared corpus */

static unsigned char *read_corpus(const char *rel, size_t *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *d = malloc((size_t)len + 1);
    assert_non_null(d);
    assert_int_equal(fread(d, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    if (strstr(rel, ".pem")) { /* the first PEM block's bytes */
        BIO *b = BIO_new_mem_buf(d, (int)len);
        char *name = NULL, *hdr = NULL;
        unsigned char *data = NULL;
        long dl = 0;
        assert_int_equal(PEM_read_bio(b, &name, &hdr, &data, &dl), 1);
        BIO_free(b);
        free(d);
        d = malloc((size_t)dl);
        assert_non_null(d);
        memcpy(d, data, (size_t)dl);
        OPENSSL_free(name);
        OPENSSL_free(hdr);
        OPENSSL_free(data);
        len = dl;
    }
    *n = (size_t)len;
    return d;
}

typedef struct corpus_case {
    const char *path;
    cs_cert_attr attr;
    const char *address;
    unsigned min_rsa_bits; /* 0 = default */
    cs_policy_purpose purpose;
    const char *trusted; /* corpus file used as the CA bundle, or NULL */
    cs_policy_rules want;
} corpus_case;

#define UC CS_CERT_ATTR_USER_CERTIFICATE
#define SC CS_CERT_ATTR_USER_SMIME_CERTIFICATE

static const corpus_case corpus[] = {
    /* RFC 4134: 1024-bit RSA and DSA from 1999, valid until 2039 */
    {"rfc4134/AliceRSASignByCarl.cer", UC, "alicersa@EXAMPLE.com", 0, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(WEAK_KEY)},
    {"rfc4134/AliceRSASignByCarl.cer", UC, "alicersa@example.com", 1024, CS_POLICY_PURPOSE_ANY, NULL, 0},
    /* Alice's KU is digitalSignature + nonRepudiation: not an encryption certificate */
    {"rfc4134/AliceRSASignByCarl.cer", UC, "alicersa@example.com", 1024, CS_POLICY_PURPOSE_ENCRYPTION, NULL,
     RULE(KEY_USAGE)},
    {"rfc4134/BobRSASignByCarl.cer", UC, "BobRSA@example.com", 1024, CS_POLICY_PURPOSE_ENCRYPTION, NULL, 0},
    {"rfc4134/BobRSASignByCarl.cer", UC, "alicersa@example.com", 1024, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(ADDRESS_MISMATCH)},
    /* Bob issued by Carl: trusted with Carl's certificate as the bundle (DER), untrusted with Carl DSA's */
    {"rfc4134/BobRSASignByCarl.cer", UC, "BobRSA@example.com", 1024, CS_POLICY_PURPOSE_ANY,
     "rfc4134/CarlRSASelf.cer", 0},
    {"rfc4134/BobRSASignByCarl.cer", UC, "BobRSA@example.com", 1024, CS_POLICY_PURPOSE_ANY,
     "rfc4134/CarlDSSSelf.cer", RULE(UNTRUSTED_ISSUER)},
    {"rfc4134/AliceDSSSignByCarlNoInherit.cer", UC, "AliceDSS@example.com", 1024, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(WEAK_KEY)},
    /* the CA itself: no address */
    {"rfc4134/CarlRSASelf.cer", UC, "carlrsa@example.com", 1024, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(ADDRESS_MISMATCH)},
    /* PKCS#7 values: the user's certificate is judged (4.4: AliceRSA) */
    {"rfc4134/4.4.bin", SC, "AliceRSA@example.com", 1024, CS_POLICY_PURPOSE_ANY, NULL, 0},
    {"rfc4134/4.4.bin", SC, "AliceRSA@example.com", 0, CS_POLICY_PURPOSE_ANY, NULL, RULE(WEAK_KEY)},
    {"rfc4134/4.4.bin", SC, "AliceRSA@example.com", 1024, CS_POLICY_PURPOSE_ANY, "rfc4134/CarlRSASelf.cer",
     0},
    {"rfc4134/4.11.bin", SC, "AliceDSS@example.com", 1024, CS_POLICY_PURPOSE_ANY, NULL, RULE(WEAK_KEY)},
    /* EKU serverAuth only, big SAN lists */
    {"boringssl/many_names1.pem", UC, "nobody@example.com", 0, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(ADDRESS_MISMATCH) | RULE(EKU)},
    /* server certificates from the past */
    {"boringssl/nss.p7c", SC, "alice@example.com", 0, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(EXPIRED) | RULE(ADDRESS_MISMATCH) | RULE(EKU)},
    /* no certificates / not a certificate */
    {"boringssl/sign_sha256.p7s", SC, "alice@example.com", 0, CS_POLICY_PURPOSE_ANY, NULL, RULE(UNPARSEABLE)},
    {"boringssl-malformed/cert_empty_sequence.pem", UC, "alice@example.com", 0, CS_POLICY_PURPOSE_ANY, NULL,
     RULE(UNPARSEABLE)},
    {"boringssl-malformed/cert_missing_signature.pem", UC, "alice@example.com", 0, CS_POLICY_PURPOSE_ANY,
     NULL, RULE(UNPARSEABLE)},
};

static void corpus_verdicts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        const corpus_case *c = &corpus[i];
        cs_policy_settings s;
        cs_policy_settings_default(&s);
        if (c->min_rsa_bits)
            s.min_rsa_bits = c->min_rsa_bits;
        s.purpose = c->purpose;
        char trusted[1024];
        if (c->trusted) {
            snprintf(trusted, sizeof trusted, "%s/%s", CORPUS_DIR, c->trusted);
            s.trusted_ca_file = trusted;
        }
        cs_policy *p = policy_with(&s);
        size_t n = 0;
        unsigned char *d = read_corpus(c->path, &n);
        const char *addrs[] = {c->address};
        cs_policy_verdict *v = judge_bytes(p, c->attr, d, n, addrs, 1);
        if (cs_policy_verdict_rules(v) != c->want) {
            cs_buf a, b;
            cs_buf_init(&a, 512);
            cs_buf_init(&b, 512);
            cs_policy_rules_format(cs_policy_verdict_rules(v), &a);
            cs_policy_rules_format(c->want, &b);
            fail_msg("case %zu %s: got \"%s\", want \"%s\" (%s)", i, c->path, cs_buf_str(&a), cs_buf_str(&b),
                     cs_policy_verdict_message(v));
        }
        cs_policy_verdict_free(v);
        free(d);
        cs_policy_free(p);
    }
}

static int teardown_keys(void **state)
{
    (void)state;
    tc_free_keys();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_are_stable),
        cmocka_unit_test(good_certificate_is_accepted),
        cmocka_unit_test(rule_expired),
        cmocka_unit_test(rule_not_yet_valid),
        cmocka_unit_test(rule_address_san_subject_and_mismatch),
        cmocka_unit_test(addresses_are_collected),
        cmocka_unit_test(rule_key_usage),
        cmocka_unit_test(rule_eku),
        cmocka_unit_test(rule_weak_key),
        cmocka_unit_test(several_rules_are_all_named),
        cmocka_unit_test(rule_unparseable),
        cmocka_unit_test(bad_arguments_are_errors),
        cmocka_unit_test(rule_untrusted_issuer),
        cmocka_unit_test(pkcs7_chain_uses_its_intermediates),
        cmocka_unit_test(rule_revoked),
        cmocka_unit_test(bad_settings_are_config_errors),
        cmocka_unit_test(corpus_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_keys);
}
