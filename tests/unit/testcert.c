/*
 * testcert: test certificates made with OpenSSL's API (see testcert.h).
 */
#include "testcert.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_KINDS 6
static const char *const kinds[N_KINDS] = {"rsa1024", "rsa2048", "rsa2048ca", "P-192", "P-224", "P-256"};
static EVP_PKEY *keys[N_KINDS];

EVP_PKEY *tc_key(const char *kind)
{
    for (size_t i = 0; i < N_KINDS; i++) {
        if (strcmp(kind, kinds[i]) != 0)
            continue;
        if (!keys[i])
            keys[i] = strncmp(kind, "rsa", 3) == 0 ? EVP_RSA_gen((unsigned)atoi(kind + 3)) : EVP_EC_gen(kind);
        if (!keys[i])
            fail_msg("cannot generate a %s key", kind);
        return keys[i];
    }
    fail_msg("unknown key kind %s", kind);
    return NULL;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        fail_msg("bad extension value %s", value);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

void tc_free_keys(void)
{
    for (size_t i = 0; i < N_KINDS; i++) {
        EVP_PKEY_free(keys[i]);
        keys[i] = NULL;
    }
}

X509 *tc_cert(const tc_opts *o)
{
    EVP_PKEY *key = tc_key(o->kind ? o->kind : "rsa2048");
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), o->serial ? o->serial : 1);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)o->not_before);
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)o->not_after);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)(o->cn ? o->cn : "Test User"),
                               -1, -1, 0);
    if (o->subject_email)
        X509_NAME_add_entry_by_txt(nm, "emailAddress", MBSTRING_ASC, (const unsigned char *)o->subject_email,
                                   -1, -1, 0);
    X509_set_issuer_name(x, o->issuer ? X509_get_subject_name(o->issuer) : nm);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    if (o->bc)
        add_ext(x, o->issuer, NID_basic_constraints, o->bc);
    if (o->ku)
        add_ext(x, o->issuer, NID_key_usage, o->ku);
    if (o->eku)
        add_ext(x, o->issuer, NID_ext_key_usage, o->eku);
    if (o->san_email) {
        char san[256];
        snprintf(san, sizeof san, "email:%s", o->san_email);
        add_ext(x, o->issuer, NID_subject_alt_name, san);
    }
    add_ext(x, o->issuer, NID_subject_key_identifier, "hash");
    if (o->issuer)
        add_ext(x, o->issuer, NID_authority_key_identifier, "keyid");
    assert_true(X509_sign(x, o->issuer ? o->issuer_key : key, EVP_sha256()) > 0);
    return x;
}

X509 *tc_ca(const char *cn, int64_t now, X509 *issuer)
{
    tc_opts o = {.kind = "rsa2048ca",
                 .cn = cn,
                 .not_before = now - 3650 * 86400,
                 .not_after = now + 3650 * 86400,
                 .ku = "critical,keyCertSign,cRLSign",
                 .bc = "critical,CA:TRUE",
                 .serial = 77,
                 .issuer = issuer,
                 .issuer_key = issuer ? tc_key("rsa2048ca") : NULL};
    return tc_cert(&o);
}

unsigned char *tc_der(X509 *x, size_t *len)
{
    unsigned char *tmp = NULL;
    int n = i2d_X509(x, &tmp);
    assert_true(n > 0);
    unsigned char *d = malloc((size_t)n);
    assert_non_null(d);
    memcpy(d, tmp, (size_t)n);
    OPENSSL_free(tmp);
    *len = (size_t)n;
    return d;
}

unsigned char *tc_p7_der(X509 *const *certs, size_t n, size_t *len)
{
    PKCS7 *p7 = PKCS7_new();
    assert_non_null(p7);
    assert_int_equal(PKCS7_set_type(p7, NID_pkcs7_signed), 1);
    assert_int_equal(PKCS7_content_new(p7, NID_pkcs7_data), 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(PKCS7_add_certificate(p7, certs[i]), 1);
    unsigned char *tmp = NULL;
    int l = i2d_PKCS7(p7, &tmp);
    assert_true(l > 0);
    unsigned char *d = malloc((size_t)l);
    assert_non_null(d);
    memcpy(d, tmp, (size_t)l);
    OPENSSL_free(tmp);
    PKCS7_free(p7);
    *len = (size_t)l;
    return d;
}

static FILE *tmp_file(char **path)
{
    const char *dir = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/cs_policy_test_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    *path = strdup(tmpl);
    assert_non_null(*path);
    return f;
}

char *tc_write_pem_certs(X509 *const *certs, size_t n)
{
    char *path = NULL;
    FILE *f = tmp_file(&path);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(PEM_write_X509(f, certs[i]), 1);
    fclose(f);
    return path;
}

char *tc_write_crl(X509 *ca, const long *serials, size_t n, int64_t now)
{
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
    ASN1_TIME *t = ASN1_TIME_new();
    ASN1_TIME_set(t, (time_t)(now - 86400));
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_set(t, (time_t)(now + 7 * 86400));
    X509_CRL_set1_nextUpdate(crl, t);
    for (size_t i = 0; i < n; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *s = ASN1_INTEGER_new();
        ASN1_INTEGER_set(s, serials[i]);
        X509_REVOKED_set_serialNumber(r, s);
        ASN1_TIME_set(t, (time_t)(now - 3600));
        X509_REVOKED_set_revocationDate(r, t);
        assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
        ASN1_INTEGER_free(s);
    }
    ASN1_TIME_free(t);
    X509_CRL_sort(crl);
    assert_true(X509_CRL_sign(crl, tc_key("rsa2048ca"), EVP_sha256()) > 0);
    char *path = NULL;
    FILE *f = tmp_file(&path);
    assert_int_equal(PEM_write_X509_CRL(f, crl), 1);
    fclose(f);
    X509_CRL_free(crl);
    return path;
}
