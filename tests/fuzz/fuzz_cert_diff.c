/*
 * Differential libFuzzer target: cs_cert's hand-written DER walk (common/cs_cert.c) against OpenSSL's full
 * parsers. Every input is read as a userCertificate (d2i_X509) and as a userSMIMECertificate (d2i_PKCS7).
 * Where OpenSSL accepts, cs_cert must accept too and agree on what it extracts:
 *   serial number, issuer and subject (same RFC 2253 printing), notBefore / notAfter (ASN1_TIME_diff to
 *   the epoch), SAN rfc822Names and subject emailAddress, keyUsage and extKeyUsage as OpenSSL caches them,
 *   key algorithm and size, and the SHA-256 fingerprint; for PKCS#7, the number and order of certificates.
 * Where the two legitimately differ the check is skipped, each case with its reason:
 *   - BER framing (not_der lengths) inside a certificate: d2i_X509 accepts BER, cs_cert requires DER
 *     (X.509 signs the DER encoding; a BER certificate cannot be verified, so refusing it is right).
 *   - a SEQUENCE or SET marked primitive (tag 0x10 / 0x11 instead of 0x30 / 0x31), e.g. an issuer, subject
 *     or extensions list: X.690 8.9.1 requires the constructed form, OpenSSL's decoder lets some pass
 *     (found by this harness), cs_cert refuses them.
 *   - notBefore / notAfter that ASN1_TIME_to_tm cannot read: d2i_X509 does not check the time's syntax,
 *     cs_cert needs the time to judge validity and calls the certificate unreadable.
 *   - keyUsage / extKeyUsage / SAN extensions: OpenSSL marks the whole certificate EXFLAG_INVALID when any
 *     extension is malformed or duplicated; cs_cert reads the first of each and flags the bad one, so
 *     those fields are compared only when OpenSSL's extension cache is valid.
 *   - key size: only when OpenSSL decoded the public key (d2i_X509 keeps an undecodable key).
 * And cs_cert against itself: every input is also parsed with cs_cert's DER fast readers of the subject and
 * the extensions turned off (cs_cert_fast_paths), and the two parses must give the same value, field for
 * field and reason for reason, whatever OpenSSL thinks of the input.
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into fuzz_cert_diff_replay
 * (fuzz_corpus_main.c), a unit test replaying tests/fuzz/corpus/cert_diff and the shared certificates.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_cert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1735689600 /* fixed: the verdicts must not depend on the day the fuzzer runs */
#define MAX_DEPTH 64

/* Reports a disagreement and aborts, so libFuzzer (and the replay test) keep the input. */
static void fail(const char *what, const char *ours, const char *theirs)
{
    fprintf(stderr, "fuzz_cert_diff: %s differs: cs_cert \"%s\", OpenSSL \"%s\"\n", what,
            ours ? ours : "(null)", theirs ? theirs : "(null)");
    abort();
}

/*
 * Walks the TLVs of [p, end) recursing into constructed ones. Sets *not_der when a length is not_der
 * or a SEQUENCE / SET is marked primitive (the framing cs_cert refuses and OpenSSL lets pass).
 * False when the bytes are no TLVs.
 */
static bool framing(const unsigned char *p, const unsigned char *end, int depth, bool *not_der)
{
    if (depth > MAX_DEPTH)
        return false;
    while (p < end) {
        if (end - p < 2 || (p[0] & 0x1f) == 0x1f)
            return false;
        bool constructed = (p[0] & 0x20) != 0;
        if (!constructed && (p[0] == 0x10 || p[0] == 0x11)) {
            *not_der = true; /* a primitive SEQUENCE / SET: not BER either, OpenSSL still takes some */
            return true;
        }
        size_t avail = (size_t)(end - p) - 2, len = 0;
        const unsigned char *body = p + 2;
        if (p[1] == 0x80) {
            *not_der = true;
            return true; /* nothing more to learn: the check is skipped */
        }
        if (p[1] < 0x80) {
            len = p[1];
        } else {
            size_t n = p[1] & 0x7fu;
            if (n == 0 || n > 4 || avail < n)
                return false;
            for (size_t i = 0; i < n; i++)
                len = (len << 8) | body[i];
            body += n;
            avail -= n;
        }
        if (len > avail)
            return false;
        if (constructed && !framing(body, body + len, depth + 1, not_der))
            return false;
        p = body + len;
    }
    return true;
}

static char *name_string(const X509_NAME *nm)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *out;
    if (b == NULL)
        abort();
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
        (void)BIO_reset(b);
    long n = BIO_get_mem_data(b, &data);
    out = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    if (out == NULL)
        abort();
    if (n > 0)
        memcpy(out, data, (size_t)n);
    BIO_free(b);
    return out;
}

/* Lowercase hex of the serial's magnitude without leading zeros ("0" for zero), "-" first when negative. */
static void serial_norm(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    if (*in == '-' && o + 1 < cap)
        out[o++] = *in++;
    while (in[0] == '0' && in[1] != '\0')
        in++;
    for (; *in && o + 1 < cap; in++)
        out[o++] = (char)(*in >= 'A' && *in <= 'F' ? *in - 'A' + 'a' : *in);
    out[o] = '\0';
}

static bool time_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    int day = 0, sec = 0;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    bool ok = epoch != NULL && ASN1_TIME_to_tm(t, &tm) == 1 && ASN1_TIME_diff(&day, &sec, epoch, t) == 1;
    ASN1_TIME_free(epoch);
    if (ok)
        *out = (int64_t)day * 86400 + sec;
    return ok;
}

static bool printable(const unsigned char *s, int n)
{
    if (n <= 0)
        return false;
    for (int i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

static bool has_email(const cs_cert_info *ci, const unsigned char *s, int n)
{
    for (size_t k = 0; k < ci->n_emails; k++)
        if (strlen(ci->emails[k]) == (size_t)n && strncasecmp(ci->emails[k], (const char *)s, (size_t)n) == 0)
            return true;
    return false;
}

/* Every address OpenSSL sees (first SAN extension, then subject emailAddress) that cs_cert keeps. */
static size_t check_emails(X509 *x, const cs_cert_info *ci)
{
    size_t seen = 0;
    int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    if (idx >= 0) {
        GENERAL_NAMES *gns = X509V3_EXT_d2i(X509_get_ext(x, idx));
        for (int k = 0; gns != NULL && k < sk_GENERAL_NAME_num(gns); k++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gns, k);
            if (gn->type != GEN_EMAIL)
                continue;
            const unsigned char *s = ASN1_STRING_get0_data(gn->d.rfc822Name);
            int n = ASN1_STRING_length(gn->d.rfc822Name);
            if (printable(s, n) && !has_email(ci, s, n))
                fail("SAN e-mail", "(missing)", (const char *)s);
            seen++;
        }
        GENERAL_NAMES_free(gns);
    }
    const X509_NAME *subj = X509_get_subject_name(x);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_pkcs9_emailAddress, i)) >= 0;) {
        unsigned char *u = NULL;
        int un = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
        if (printable(u, un) && !has_email(ci, u, un))
            fail("subject emailAddress", "(missing)", (const char *)u);
        OPENSSL_free(u);
        seen++;
    }
    return seen;
}

/* RFC 5280 bit n of keyUsage as cs_cert numbers it, from OpenSSL's cached KU_* mask. */
static uint32_t ku_from_openssl(uint32_t ku)
{
    uint32_t out = 0;
    for (unsigned b = 0; b < 8; b++)
        if (ku & (0x80u >> b))
            out |= 1u << b;
    if (ku & 0x8000u)
        out |= 1u << 8;
    return out;
}

/*
 * Compares one certificate OpenSSL accepted (x, its bytes der/len as they stand in the input) with cs_cert's
 * summary ci.
 */
static void compare_cert(X509 *x, const unsigned char *der, size_t len, const cs_cert_info *ci)
{
    bool not_der = false;
    /* A scan that stops early (e.g. inside a Name value cs_cert hands to OpenSSL whole) proves nothing. */
    (void)framing(der, der + len, 0, &not_der);
    int64_t nb = 0, na = 0;
    bool times_ok = time_unix(X509_get0_notBefore(x), &nb) && time_unix(X509_get0_notAfter(x), &na);
    bool readable = ci->serial_hex != NULL && ci->serial_hex[0] != '\0';
    if (not_der || !times_ok) {
        ERR_clear_error();
        return; /* legitimately refused by cs_cert (see the top of this file) */
    }
    if (!readable)
        fail("acceptance", ci->reason ? ci->reason : "unreadable", "accepted");

    /* The fingerprint is over the bytes as stored: those OpenSSL consumed. (X509_digest would hash OpenSSL's
       re-encoding, which differs for non-canonical input, e.g. the RFC 4134 certificates.) */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) == 1) {
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        if (strcmp(hex, ci->sha256_hex) != 0)
            fail("SHA-256 fingerprint", ci->sha256_hex, hex);
    }

    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *theirs = bn != NULL ? BN_bn2hex(bn) : NULL;
    char a[4096], b[4096];
    if (theirs != NULL) {
        serial_norm(ci->serial_hex, a, sizeof a);
        serial_norm(theirs, b, sizeof b);
        if (strcmp(a, b) != 0)
            fail("serial", a, b);
    }
    OPENSSL_free(theirs);
    BN_free(bn);

    char *s = name_string(X509_get_subject_name(x));
    if (strcmp(s, ci->subject) != 0)
        fail("subject", ci->subject, s);
    free(s);
    s = name_string(X509_get_issuer_name(x));
    if (strcmp(s, ci->issuer) != 0)
        fail("issuer", ci->issuer, s);
    free(s);
    if (ci->self_issued != (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0))
        fail("self_issued", ci->self_issued ? "true" : "false", "the other");

    if (nb != ci->not_before || na != ci->not_after) {
        snprintf(a, sizeof a, "%lld..%lld", (long long)ci->not_before, (long long)ci->not_after);
        snprintf(b, sizeof b, "%lld..%lld", (long long)nb, (long long)na);
        fail("validity", a, b);
    }

    uint32_t flags = X509_get_extension_flags(x); /* caches the extensions */
    if (!(flags & EXFLAG_INVALID)) {
        if (ci->has_key_usage != ((flags & EXFLAG_KUSAGE) != 0))
            fail("keyUsage presence", ci->has_key_usage ? "yes" : "no", "the other");
        if (ci->has_key_usage && ci->key_usage != ku_from_openssl(X509_get_key_usage(x))) {
            snprintf(a, sizeof a, "0x%x", ci->key_usage);
            snprintf(b, sizeof b, "0x%x", ku_from_openssl(X509_get_key_usage(x)));
            fail("keyUsage bits", a, b);
        }
        if (ci->has_eku != ((flags & EXFLAG_XKUSAGE) != 0))
            fail("extKeyUsage presence", ci->has_eku ? "yes" : "no", "the other");
        uint32_t xku = X509_get_extended_key_usage(x);
        if (ci->has_eku && (ci->eku_email_protection != ((xku & XKU_SMIME) != 0)))
            fail("extKeyUsage emailProtection", ci->eku_email_protection ? "yes" : "no", "the other");
        if (ci->has_eku && (ci->eku_any != ((xku & XKU_ANYEKU) != 0)))
            fail("extKeyUsage any", ci->eku_any ? "yes" : "no", "the other");
        size_t seen = check_emails(x, ci);
        if (ci->n_emails > seen)
            fail("e-mail count", "more", "fewer");
    }

    EVP_PKEY *pk = X509_get0_pubkey(x);
    if (pk != NULL) {
        int id = EVP_PKEY_get_base_id(pk);
        cs_cert_key_alg want = id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS ? CS_CERT_KEY_RSA
                               : id == EVP_PKEY_EC                          ? CS_CERT_KEY_EC
                               : id == EVP_PKEY_DSA                         ? CS_CERT_KEY_DSA
                               : id == EVP_PKEY_ED25519                     ? CS_CERT_KEY_ED25519
                               : id == EVP_PKEY_ED448                       ? CS_CERT_KEY_ED448
                                                                            : CS_CERT_KEY_OTHER;
        if (want != ci->key_alg)
            fail("key algorithm", cs_cert_key_alg_name(ci->key_alg), cs_cert_key_alg_name(want));
        if ((want == CS_CERT_KEY_RSA || want == CS_CERT_KEY_EC) && ci->key_bits != 0 &&
            ci->key_bits != (unsigned)EVP_PKEY_get_bits(pk)) {
            snprintf(a, sizeof a, "%u", ci->key_bits);
            snprintf(b, sizeof b, "%d", EVP_PKEY_get_bits(pk));
            fail("key bits", a, b);
        }
    }
    ERR_clear_error();
}

/* cs_cert_value_sha256_hex: the digest of every byte of the value, whatever it holds (the parse reuses a
 * bare certificate's fingerprint for it when the certificate spans the value). */
static void check_value_digest(const cs_cert_value *v, const uint8_t *data, size_t size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char theirs[2 * EVP_MAX_MD_SIZE + 1], ours[65];
    if (EVP_Digest(size > 0 ? data : (const uint8_t *)"", size, md, &mdlen, EVP_sha256(), NULL) != 1)
        return;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(theirs + 2 * i, 3, "%02x", md[i]);
    cs_cert_value_sha256_hex(v, ours);
    if (strcmp(ours, theirs) != 0)
        fail("value SHA-256", ours, theirs);
}

static void diff_x509(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    X509 *x = d2i_X509(NULL, &p, (long)size);
    cs_cert_value *v = NULL;
    cs_err *err = cs_cert_value_parse(CS_CERT_ATTR_USER_CERTIFICATE, data, size, NOW, &v);
    if (err != NULL) { /* out of memory only */
        cs_err_free(err);
        goto cleanup;
    }
    check_value_digest(v, data, size);
    if (x == NULL)
        goto cleanup;
    if (cs_cert_value_format(v) != CS_CERT_FORMAT_X509)
        fail("format", cs_cert_format_name(cs_cert_value_format(v)), "x509");
    if (cs_cert_value_cert_count(v) == 0) {
        /* Unreadable for cs_cert: only the legitimate cases may get here. */
        cs_cert_info none = {.serial_hex = (char *)(uintptr_t) "",
                             .reason = (char *)(uintptr_t)cs_cert_value_reason(v)};
        compare_cert(x, data, (size_t)(p - data), &none);
        goto cleanup;
    }
    const cs_cert_info *ci = cs_cert_value_cert(v, 0);
    if (ci->der_offset != 0 || ci->der_len != (size_t)(p - data)) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%zu+%zu", ci->der_offset, ci->der_len);
        snprintf(b, sizeof b, "0+%zu", (size_t)(p - data));
        fail("certificate extent", a, b);
    }
    compare_cert(x, data, (size_t)(p - data), ci);
cleanup:
    X509_free(x);
    cs_cert_value_free(v);
    ERR_clear_error();
}

static void diff_pkcs7(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    PKCS7 *p7 = size > 0 && data[0] == 0x30 ? d2i_PKCS7(NULL, &p, (long)size) : NULL;
    cs_cert_value *v = NULL;
    cs_err *err = cs_cert_value_parse(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, data, size, NOW, &v);
    if (err != NULL) {
        cs_err_free(err);
        goto cleanup;
    }
    check_value_digest(v, data, size);
    if (p7 == NULL || !PKCS7_type_is_signed(p7) || p7->d.sign == NULL)
        goto cleanup;
    STACK_OF(X509) *certs = p7->d.sign->cert;
    int n = certs != NULL ? sk_X509_num(certs) : 0;
    if (cs_cert_value_format(v) != CS_CERT_FORMAT_PKCS7)
        fail("format", cs_cert_format_name(cs_cert_value_format(v)), "pkcs7");
    size_t want = (size_t)n < CS_CERT_MAX_CERTS ? (size_t)n : CS_CERT_MAX_CERTS;
    if (cs_cert_value_cert_count(v) != want) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%zu", cs_cert_value_cert_count(v));
        snprintf(b, sizeof b, "%zu", want);
        fail("PKCS#7 certificate count", a, b);
    }
    for (size_t i = 0; i < want; i++) {
        const cs_cert_info *ci = cs_cert_value_cert(v, i);
        compare_cert(sk_X509_value(certs, (int)i), data + ci->der_offset, ci->der_len, ci);
    }
cleanup:
    PKCS7_free(p7);
    cs_cert_value_free(v);
    ERR_clear_error();
}

static void same_str(const char *what, const char *fast, const char *slow)
{
    if ((fast == NULL) != (slow == NULL) || (fast != NULL && strcmp(fast, slow) != 0))
        fail(what, fast, slow);
}

static void same_num(const char *what, long long fast, long long slow)
{
    char a[32], b[32];
    if (fast == slow)
        return;
    snprintf(a, sizeof a, "%lld", fast);
    snprintf(b, sizeof b, "%lld", slow);
    fail(what, a, b);
}

/* The value parsed with the fast readers against the value parsed without them (both from cs_cert). */
static void diff_fast(cs_cert_attr attr, const uint8_t *data, size_t size)
{
    cs_cert_value *fast = NULL, *slow = NULL;
    cs_err *e1 = cs_cert_value_parse(attr, data, size, NOW, &fast);
    cs_cert_fast_paths(false);
    cs_err *e2 = cs_cert_value_parse(attr, data, size, NOW, &slow);
    cs_cert_fast_paths(true);
    if (e1 != NULL || e2 != NULL) /* out of memory only */
        goto cleanup;
    same_num("fast/slow format", cs_cert_value_format(fast), cs_cert_value_format(slow));
    same_num("fast/slow problems", (long long)cs_cert_value_problems(fast),
             (long long)cs_cert_value_problems(slow));
    same_str("fast/slow reason", cs_cert_value_reason(fast), cs_cert_value_reason(slow));
    same_num("fast/slow user index", cs_cert_value_user_index(fast), cs_cert_value_user_index(slow));
    same_num("fast/slow cert count", (long long)cs_cert_value_cert_count(fast),
             (long long)cs_cert_value_cert_count(slow));
    for (size_t i = 0; i < cs_cert_value_cert_count(fast); i++) {
        const cs_cert_info *a = cs_cert_value_cert(fast, i), *b = cs_cert_value_cert(slow, i);
        same_str("fast/slow sha256", a->sha256_hex, b->sha256_hex);
        same_num("fast/slow der_offset", (long long)a->der_offset, (long long)b->der_offset);
        same_num("fast/slow der_len", (long long)a->der_len, (long long)b->der_len);
        same_str("fast/slow subject", a->subject, b->subject);
        same_str("fast/slow issuer", a->issuer, b->issuer);
        same_str("fast/slow serial", a->serial_hex, b->serial_hex);
        same_num("fast/slow e-mail count", (long long)a->n_emails, (long long)b->n_emails);
        for (size_t k = 0; k < a->n_emails && k < b->n_emails; k++)
            same_str("fast/slow e-mail", a->emails[k], b->emails[k]);
        same_num("fast/slow notBefore", a->not_before, b->not_before);
        same_num("fast/slow notAfter", a->not_after, b->not_after);
        same_num("fast/slow has keyUsage", a->has_key_usage, b->has_key_usage);
        same_num("fast/slow keyUsage", a->key_usage, b->key_usage);
        same_num("fast/slow has extKeyUsage", a->has_eku, b->has_eku);
        same_num("fast/slow emailProtection", a->eku_email_protection, b->eku_email_protection);
        same_num("fast/slow anyExtendedKeyUsage", a->eku_any, b->eku_any);
        same_num("fast/slow key algorithm", a->key_alg, b->key_alg);
        same_num("fast/slow key bits", a->key_bits, b->key_bits);
        same_str("fast/slow curve", a->ec_curve, b->ec_curve);
        same_num("fast/slow self_issued", a->self_issued, b->self_issued);
        same_num("fast/slow cert problems", (long long)a->problems, (long long)b->problems);
        same_str("fast/slow cert reason", a->reason, b->reason);
    }
cleanup:
    cs_err_free(e1);
    cs_err_free(e2);
    cs_cert_value_free(fast);
    cs_cert_value_free(slow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * CS_CERT_MAX_VALUE_LEN)
        return 0; /* the interesting structure fits in AD's limit; larger inputs only slow the fuzzer */
    diff_x509(data, size);
    diff_pkcs7(data, size);
    diff_fast(CS_CERT_ATTR_USER_CERTIFICATE, data, size);
    diff_fast(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, data, size);
    return 0;
}
