/*
 * cs_cert: certificate value summaries. See cs_cert.h for the contract.
 *
 * Layout: a bounded DER/BER walker (der_*), the certificate fast path
 * (cert_fill: hand-walked Certificate/TBSCertificate, OpenSSL d2i for names,
 * times and extensions), then the three value formats (X.509, PKCS#7,
 * MS-OXOABK) and the choice of the user's certificate.
 */
#include "cs_cert.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* BER nesting we follow when looking for an end-of-contents; real values nest < 10 deep. */
#define DER_MAX_DEPTH 32
#define WHY_MAX 320
/* Longest value-level reason we keep (several problems joined with "; "). */
#define VALUE_REASON_MAX 2048

/* ---------------------------------------------------------------- names */

static const char *const problem_names[CS_CERT_PROBLEM_COUNT] = {
    "unparseable",     "too_large",           "expired",
    "not_yet_valid",   "no_email_protection", "no_email_address",
    "no_certificates", "unsupported_format",  "trailing_data",
};

const char *cs_cert_problem_name(cs_cert_problem p)
{
    if ((unsigned)p >= CS_CERT_PROBLEM_COUNT)
        return "unknown";
    return problem_names[p];
}

bool cs_cert_problem_from_name(const char *name, cs_cert_problem *out)
{
    if (!name || !out)
        return false;
    for (unsigned i = 0; i < CS_CERT_PROBLEM_COUNT; i++) {
        if (strcmp(name, problem_names[i]) == 0) {
            *out = (cs_cert_problem)i;
            return true;
        }
    }
    return false;
}

bool cs_cert_problems_format(cs_cert_problems set, cs_buf *out)
{
    bool first = true;
    for (unsigned i = 0; i < CS_CERT_PROBLEM_COUNT; i++) {
        if (!(set & CS_CERT_PROBLEM_BIT(i)))
            continue;
        if (!first && !cs_buf_add_str(out, ","))
            return false;
        if (!cs_buf_add_str(out, problem_names[i]))
            return false;
        first = false;
    }
    return true;
}

const char *cs_cert_format_name(cs_cert_format f)
{
    switch (f) {
    case CS_CERT_FORMAT_X509:
        return "x509";
    case CS_CERT_FORMAT_PKCS7:
        return "pkcs7";
    case CS_CERT_FORMAT_MSOXOABK:
        return "msoxoabk";
    case CS_CERT_FORMAT_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *cs_cert_key_alg_name(cs_cert_key_alg a)
{
    switch (a) {
    case CS_CERT_KEY_RSA:
        return "rsa";
    case CS_CERT_KEY_EC:
        return "ec";
    case CS_CERT_KEY_DSA:
        return "dsa";
    case CS_CERT_KEY_ED25519:
        return "ed25519";
    case CS_CERT_KEY_ED448:
        return "ed448";
    case CS_CERT_KEY_OTHER:
        break;
    }
    return "other";
}

/* ---------------------------------------------------------------- types */

typedef struct cert_entry {
    cs_cert_info info;
    /* Raw subject/issuer DER, pointing into the input: valid only while parsing (chain heuristic). */
    const unsigned char *subj;
    size_t subj_len;
    const unsigned char *iss;
    size_t iss_len;
    unsigned role; /* MS-OXOABK tag the certificate came in, 0 otherwise */
    bool readable;
    unsigned char md[32]; /* SHA-256 of the certificate's DER (info.sha256_hex as bytes) */
} cert_entry;

struct cs_cert_value {
    cs_cert_format format;
    cs_cert_problems problems;
    char *reason;
    cert_entry *certs;
    size_t n_certs;
    size_t n_certs_seen; /* including those over CS_CERT_MAX_CERTS */
    int user;
    unsigned char sha256[32]; /* of the whole value (cs_cert_value_sha256) */
};

typedef struct parse_ctx {
    const unsigned char *base; /* the value: offsets in reasons count from here */
    size_t len;
    int64_t now;
    cs_cert_value *v;
    cs_buf reason;
    bool oom;
} parse_ctx;

typedef struct der_elem {
    unsigned tag;               /* identifier octet: class | constructed | number (< 31) */
    const unsigned char *start; /* first header byte */
    const unsigned char *body;  /* contents */
    size_t body_len;            /* contents length, without an end-of-contents */
    const unsigned char *next;  /* first byte after the element */
} der_elem;

typedef struct der_walk {
    const unsigned char *base;
    bool ber; /* indefinite lengths allowed (PKCS#7 may be BER; certificates must be DER) */
    char err[WHY_MAX];
} der_walk;

enum { TAG_INTEGER = 0x02, TAG_BIT_STRING = 0x03, TAG_OID = 0x06, TAG_SEQ = 0x30, TAG_SET = 0x31 };

/* ---------------------------------------------------------------- helpers */

/* snprintf that truncates quietly (reasons only lose detail); a function so -Wformat-truncation stays quiet. */
static void fmt_into(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fmt_into(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static void add_reason(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_reason(parse_ctx *ctx, const char *fmt, ...)
{
    char tmp[WHY_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    /* A full reason buffer only loses detail, never the problem bits. */
    if (cs_buf_len(&ctx->reason) > 0)
        (void)cs_buf_add_str(&ctx->reason, "; ");
    (void)cs_buf_add_str(&ctx->reason, tmp);
}

/* Appends OpenSSL's last error (if any) to `why`, then clears the queue we used. */
static void why_openssl(char *why, size_t whylen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char es[200] = "";
    if (e)
        ERR_error_string_n(e, es, sizeof es);
    fmt_into(why, whylen, "%s%s%s", what, e ? ": " : "", es);
}

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* ---------------------------------------------------------------- DER walker */

/* Sets w->err (truncating quietly: a reason only loses detail). */
static void werr(der_walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void werr(der_walk *w, const char *fmt, ...)
{
    char tmp[WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(w->err, tmp, sizeof tmp);
}

/* Prefixes w->err with "what: ". */
static void werr_prefix(der_walk *w, const char *what)
{
    char inner[WHY_MAX];
    memcpy(inner, w->err, sizeof inner);
    werr(w, "%s: %s", what, inner);
}

static bool der_fail(der_walk *w, const unsigned char *at, const char *what)
{
    werr(w, "%s at offset %zu", what, (size_t)(at - w->base));
    return false;
}

/*
 * Reads one element at p (not past end). Definite lengths of up to 4 length
 * octets; indefinite lengths only when w->ber and the element is constructed,
 * whose end is found by walking its children (depth-bounded). Never reads
 * outside [p, end).
 */
static bool der_get(der_walk *w, const unsigned char *p, const unsigned char *end, int depth, der_elem *e)
{
    if (depth > DER_MAX_DEPTH)
        return der_fail(w, p, "BER nesting too deep");
    if (p >= end || end - p < 2)
        return der_fail(w, p, "truncated element header");
    if ((p[0] & 0x1f) == 0x1f)
        return der_fail(w, p, "high tag number form not supported");
    e->start = p;
    e->tag = p[0];
    size_t avail = (size_t)(end - p) - 2;
    const unsigned char *q = p + 2;
    size_t len = 0;
    unsigned l0 = p[1];
    if (l0 == 0x80) {
        if (!w->ber || !(p[0] & 0x20))
            return der_fail(w, p, "indefinite length not allowed here (certificates must be DER)");
        const unsigned char *c = q;
        for (;;) { /* each turn consumes >= 2 bytes: bounded by the input */
            if (c >= end || end - c < 2)
                return der_fail(w, c, "missing end-of-contents of an indefinite length");
            if (c[0] == 0 && c[1] == 0)
                break;
            der_elem child;
            if (!der_get(w, c, end, depth + 1, &child))
                return false;
            c = child.next;
        }
        e->body = q;
        e->body_len = (size_t)(c - q);
        e->next = c + 2;
        return true;
    }
    if (l0 < 0x80) {
        len = l0;
    } else {
        unsigned n = l0 & 0x7f;
        if (n > 4)
            return der_fail(w, p, "length field longer than 4 bytes");
        if (avail < n)
            return der_fail(w, p, "truncated length field");
        for (unsigned i = 0; i < n; i++)
            len = (len << 8) | q[i];
        q += n;
        avail -= n;
    }
    if (len > avail) {
        char m[120];
        fmt_into(m, sizeof m, "length %zu exceeds the %zu bytes left", len, avail);
        return der_fail(w, p, m);
    }
    e->body = q;
    e->body_len = len;
    e->next = q + len;
    return true;
}

/* Reads the element at *p, checks its tag and advances *p past it. `what` names it in errors. */
static bool der_expect(der_walk *w, const unsigned char **p, const unsigned char *end, unsigned tag,
                       const char *what, der_elem *e)
{
    if (*p >= end) {
        char m[120];
        fmt_into(m, sizeof m, "%s missing", what);
        return der_fail(w, *p, m);
    }
    if (!der_get(w, *p, end, 0, e)) {
        werr_prefix(w, what);
        return false;
    }
    if (e->tag != tag) {
        char m[160];
        fmt_into(m, sizeof m, "%s: expected tag 0x%02x, found 0x%02x", what, tag, e->tag);
        return der_fail(w, *p, m);
    }
    *p = e->next;
    return true;
}

static const unsigned char *body_end(const der_elem *e)
{
    return e->body + e->body_len;
}

/* INTEGER contents as c2i_ASN1_INTEGER accepts them: not empty, no redundant leading octet. */
static bool int_ok(const unsigned char *c, size_t n)
{
    if (n == 0)
        return false;
    if (n > 1 && ((c[0] == 0x00 && !(c[1] & 0x80)) || (c[0] == 0xff && (c[1] & 0x80))))
        return false;
    return true;
}

/* OBJECT IDENTIFIER contents as c2i_ASN1_OBJECT accepts them. */
static bool oid_ok(const unsigned char *c, size_t n)
{
    if (n == 0 || (c[n - 1] & 0x80))
        return false;
    bool at_start = true;
    for (size_t i = 0; i < n; i++) {
        if (at_start && c[i] == 0x80)
            return false;
        at_start = !(c[i] & 0x80);
    }
    return true;
}

/* BIT STRING contents: the unused-bits octet is present and at most 7. */
static bool bits_ok(const unsigned char *c, size_t n)
{
    return n >= 1 && c[0] <= 7;
}

/* AlgorithmIdentifier ::= SEQUENCE { OID, ANY OPTIONAL } (X509_ALGOR). Sets *oid to the OID element. */
static bool algid_check(der_walk *w, const der_elem *seq, const char *what, der_elem *oid)
{
    const unsigned char *p = seq->body, *end = body_end(seq);
    char m[120];
    fmt_into(m, sizeof m, "%s algorithm", what);
    if (!der_expect(w, &p, end, TAG_OID, m, oid))
        return false;
    if (!oid_ok(oid->body, oid->body_len))
        return der_fail(w, oid->start, "invalid OBJECT IDENTIFIER encoding");
    if (p < end) {
        der_elem params;
        if (!der_get(w, p, end, 0, &params))
            return false;
        p = params.next;
    }
    if (p != end)
        return der_fail(w, p, "data after the AlgorithmIdentifier parameters");
    return true;
}

/* ---------------------------------------------------------------- certificate fields */

static bool oid_is(const der_elem *oid, const unsigned char *want, size_t n)
{
    return oid->body_len == n && memcmp(oid->body, want, n) == 0;
}

static const unsigned char OID_RSA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
/* 2.5.8.1.1 (X.509 rsa): OpenSSL's RSA2 alias, read as an RSA key. */
static const unsigned char OID_RSA_X500[] = {0x55, 0x08, 0x01, 0x01};
static const unsigned char OID_RSA_PSS[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a};
static const unsigned char OID_EC[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
static const unsigned char OID_DSA[] = {0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01};
/* OIDs OpenSSL also reads as a DSA key (its DSA1..DSA4 aliases: old OIW and dsa-with-sha1 OIDs that some
 * encoders put in subjectPublicKeyInfo): a key OpenSSL calls DSA must not be "other" here. */
static const unsigned char OID_DSA_ALIASES[][7] = {
    {0x2b, 0x0e, 0x03, 0x02, 0x0c},             /* 1.3.14.3.2.12 dsa (OIW) */
    {0x2b, 0x0e, 0x03, 0x02, 0x0d},             /* 1.3.14.3.2.13 dsaWithSHA (OIW) */
    {0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03}, /* 1.2.840.10040.4.3 dsa-with-sha1 */
    {0x2b, 0x0e, 0x03, 0x02, 0x1b},             /* 1.3.14.3.2.27 dsaWithSHA1 (OIW) */
};
static const size_t OID_DSA_ALIAS_LEN[] = {5, 5, 7, 5};

static bool oid_is_dsa(const der_elem *oid)
{
    if (oid_is(oid, OID_DSA, sizeof OID_DSA))
        return true;
    for (size_t i = 0; i < sizeof OID_DSA_ALIAS_LEN / sizeof OID_DSA_ALIAS_LEN[0]; i++)
        if (oid_is(oid, OID_DSA_ALIASES[i], OID_DSA_ALIAS_LEN[i]))
            return true;
    return false;
}
static const unsigned char OID_ED25519[] = {0x2b, 0x65, 0x70};
static const unsigned char OID_ED448[] = {0x2b, 0x65, 0x71};
static const unsigned char OID_SIGNED_DATA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};

/* Named curves we size without OpenSSL (OID contents, name as EC_curve_nid2nist / OBJ_nid2sn give it). */
static const struct {
    unsigned char oid[10];
    size_t len;
    const char *name;
    unsigned bits;
} known_curves[] = {
    {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 8, "P-256", 256},
    {{0x2b, 0x81, 0x04, 0x00, 0x22}, 5, "P-384", 384},
    {{0x2b, 0x81, 0x04, 0x00, 0x23}, 5, "P-521", 521},
    {{0x2b, 0x81, 0x04, 0x00, 0x0a}, 5, "secp256k1", 256},
    {{0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07}, 9, "brainpoolP256r1", 256},
    {{0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0b}, 9, "brainpoolP384r1", 384},
    {{0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0d}, 9, "brainpoolP512r1", 512},
};

/* Significant bits of an unsigned big-endian INTEGER's contents. */
static unsigned int_bits(const unsigned char *c, size_t n)
{
    while (n > 0 && c[0] == 0) {
        c++;
        n--;
    }
    if (n == 0 || n > 0x1000000)
        return 0;
    unsigned bits = (unsigned)(n - 1) * 8;
    for (unsigned b = c[0]; b; b >>= 1)
        bits++;
    return bits;
}

/*
 * Key algorithm and strength from SubjectPublicKeyInfo without decoding the key
 * (the slow part of d2i_X509). A key we cannot size keeps key_bits 0: OpenSSL's
 * d2i_X509 accepts such certificates too.
 */
static void spki_summarise(const der_elem *algoid, const unsigned char *params,
                           const unsigned char *params_end, const der_elem *bits, cs_cert_info *ci)
{
    der_walk w = {.base = algoid->start, .ber = false, .err = ""};
    if (oid_is(algoid, OID_RSA, sizeof OID_RSA) || oid_is(algoid, OID_RSA_PSS, sizeof OID_RSA_PSS) ||
        oid_is(algoid, OID_RSA_X500, sizeof OID_RSA_X500)) {
        ci->key_alg = CS_CERT_KEY_RSA;
        /* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } inside the BIT STRING. */
        der_elem seq, n;
        const unsigned char *p = bits->body + 1, *end = body_end(bits);
        if (bits->body_len >= 1 && bits->body[0] == 0 && der_get(&w, p, end, 0, &seq) && seq.tag == TAG_SEQ) {
            const unsigned char *q = seq.body;
            if (der_expect(&w, &q, body_end(&seq), TAG_INTEGER, "modulus", &n))
                ci->key_bits = int_bits(n.body, n.body_len);
        }
    } else if (oid_is(algoid, OID_EC, sizeof OID_EC)) {
        ci->key_alg = CS_CERT_KEY_EC;
        der_elem curve;
        const unsigned char *p = params;
        if (params < params_end && der_get(&w, p, params_end, 0, &curve) && curve.tag == TAG_OID) {
            /* Common curves from a table: EC_GROUP_new_by_curve_name costs ~20 us, more than the whole summary. */
            for (size_t i = 0; i < sizeof known_curves / sizeof known_curves[0] && !ci->ec_curve; i++) {
                if (curve.body_len == known_curves[i].len &&
                    memcmp(curve.body, known_curves[i].oid, curve.body_len) == 0) {
                    ci->ec_curve = known_curves[i].name;
                    ci->key_bits = known_curves[i].bits;
                }
            }
        }
        if (!ci->ec_curve && params < params_end && der_get(&w, p, params_end, 0, &curve) &&
            curve.tag == TAG_OID) {
            const unsigned char *q = curve.start;
            ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &q, (long)(curve.next - curve.start));
            int nid = obj ? OBJ_obj2nid(obj) : NID_undef;
            ASN1_OBJECT_free(obj);
            if (nid != NID_undef) {
                const char *nist = EC_curve_nid2nist(nid);
                ci->ec_curve = nist ? nist : OBJ_nid2sn(nid);
                EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
                if (g)
                    ci->key_bits = (unsigned)EC_GROUP_get_degree(g);
                EC_GROUP_free(g);
            }
        }
        if (!ci->ec_curve)
            ci->ec_curve = "unknown"; /* explicit parameters or an unknown curve */
    } else if (oid_is_dsa(algoid)) {
        ci->key_alg = CS_CERT_KEY_DSA;
        /* Dss-Parms ::= SEQUENCE { p, q, g }; absent when inherited from the issuer (bits stay 0). */
        der_elem seq, pe;
        if (params < params_end && der_get(&w, params, params_end, 0, &seq) && seq.tag == TAG_SEQ) {
            const unsigned char *q = seq.body;
            if (der_expect(&w, &q, body_end(&seq), TAG_INTEGER, "p", &pe))
                ci->key_bits = int_bits(pe.body, pe.body_len);
        }
    } else if (oid_is(algoid, OID_ED25519, sizeof OID_ED25519)) {
        ci->key_alg = CS_CERT_KEY_ED25519;
        ci->key_bits = 256;
    } else if (oid_is(algoid, OID_ED448, sizeof OID_ED448)) {
        ci->key_alg = CS_CERT_KEY_ED448;
        ci->key_bits = 456;
    } else {
        ci->key_alg = CS_CERT_KEY_OTHER;
    }
}

static char *serial_hex(const unsigned char *c, size_t n)
{
    unsigned char *mag = malloc(n);
    char *out = malloc(2 * n + 2);
    if (!mag || !out) {
        free(mag);
        free(out);
        return NULL;
    }
    bool neg = c[0] & 0x80;
    memcpy(mag, c, n);
    if (neg) { /* two's complement magnitude: invert, add one */
        unsigned carry = 1;
        for (size_t i = n; i-- > 0;) {
            unsigned x = (unsigned)(unsigned char)~mag[i] + carry;
            mag[i] = (unsigned char)x;
            carry = x >> 8;
        }
    }
    size_t skip = 0;
    while (skip + 1 < n && mag[skip] == 0)
        skip++;
    char *o = out;
    if (neg)
        *o++ = '-';
    hex_lower(mag + skip, n - skip, o);
    free(mag);
    return out;
}

static char *name_string(const X509_NAME *nm)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (!b)
        return NULL;
    /* RFC 2253, but UTF-8 left as UTF-8 instead of \XX escapes: people read these. */
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
        BIO_reset(b);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n < 0)
        n = 0;
    out = malloc((size_t)n + 1);
    if (out) {
        if (n)
            memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

/*
 * The attribute types name_text_fast prints: the common ones of user and CA names. Their short names come
 * from OpenSSL (OBJ_nid2sn), as X509_NAME_print_ex's XN_FLAG_FN_SN prints them.
 */
static const int fast_name_nids[] = {
    NID_commonName,
    NID_countryName,
    NID_localityName,
    NID_stateOrProvinceName,
    NID_organizationName,
    NID_organizationalUnitName,
    NID_pkcs9_emailAddress,
    NID_domainComponent,
    NID_userId,
    NID_serialNumber,
    NID_title,
    NID_surname,
    NID_givenName,
};
#define FAST_NAME_MAX_RDNS 32

/* The short name of a fast_name_nids attribute type whose OID contents are [oid, oid+n), or NULL. */
static const char *fast_name_sn(const unsigned char *oid, size_t n)
{
    for (size_t i = 0; i < sizeof fast_name_nids / sizeof fast_name_nids[0]; i++) {
        const ASN1_OBJECT *o = OBJ_nid2obj(fast_name_nids[i]);
        if (o && (size_t)OBJ_length(o) == n && memcmp(OBJ_get0_data(o), oid, n) == 0)
            return OBJ_nid2sn(fast_name_nids[i]);
    }
    return NULL;
}

/* A value that X509_NAME_print_ex (RFC 2253 flags, UTF-8 kept) prints byte for byte as it is: printable
 * ASCII, none of the characters RFC 2253 escapes (,+"\<>;), no leading '#' or space, no trailing space. */
static bool fast_name_value_ok(const unsigned char *c, size_t n)
{
    if (n == 0 || c[0] == '#' || c[0] == ' ' || c[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (c[i] < 0x20 || c[i] > 0x7e || strchr(",+\"\\<>;", c[i]))
            return false;
    return true;
}

/*
 * The text of a Name's DER [der, der+n) exactly as name_string() of its decoded form gives it, for the
 * common case: each RDN one attribute of a fast_name_nids type, a PrintableString, UTF8String or
 * IA5String value for which fast_name_value_ok holds. *out is NULL when the name is anything else (the
 * caller falls back to OpenSSL) or memory ran out (*oom). Printing with X509_NAME_print_ex through a BIO
 * was about a tenth of a snapshot's CPU; fuzz_cert_diff compares the two.
 */
static char *name_text_fast(const unsigned char *der, size_t n, bool *oom)
{
    der_walk w = {.base = der, .ber = false, .err = ""};
    der_elem name, rdn[FAST_NAME_MAX_RDNS];
    const char *sn[FAST_NAME_MAX_RDNS];
    der_elem val[FAST_NAME_MAX_RDNS];
    size_t n_rdn = 0, total = 0;
    const unsigned char *p, *end;

    *oom = false;
    if (!der_get(&w, der, der + n, 0, &name) || name.tag != TAG_SEQ || name.next != der + n)
        return NULL;
    for (p = name.body, end = body_end(&name); p < end; p = rdn[n_rdn++].next) {
        der_elem atv, oid;
        if (n_rdn == FAST_NAME_MAX_RDNS || !der_get(&w, p, end, 0, &rdn[n_rdn]) || rdn[n_rdn].tag != TAG_SET)
            return NULL;
        /* Exactly one AttributeTypeAndValue { OID, value } in the SET (no multi-valued RDN). */
        if (!der_get(&w, rdn[n_rdn].body, body_end(&rdn[n_rdn]), 0, &atv) || atv.tag != TAG_SEQ ||
            atv.next != body_end(&rdn[n_rdn]))
            return NULL;
        if (!der_get(&w, atv.body, body_end(&atv), 0, &oid) || oid.tag != TAG_OID ||
            !der_get(&w, oid.next, body_end(&atv), 0, &val[n_rdn]) || val[n_rdn].next != body_end(&atv))
            return NULL;
        if (val[n_rdn].tag != V_ASN1_PRINTABLESTRING && val[n_rdn].tag != V_ASN1_UTF8STRING &&
            val[n_rdn].tag != V_ASN1_IA5STRING)
            return NULL;
        if (!fast_name_value_ok(val[n_rdn].body, val[n_rdn].body_len) ||
            !(sn[n_rdn] = fast_name_sn(oid.body, oid.body_len)))
            return NULL;
        total += strlen(sn[n_rdn]) + 2 + val[n_rdn].body_len; /* "sn=value," */
    }
    if (n_rdn == 0)
        return NULL;
    char *out = malloc(total + 1), *o = out;
    if (!out) {
        *oom = true;
        return NULL;
    }
    /* RFC 2253 order: the last RDN first, separated by ','. */
    for (size_t i = n_rdn; i-- > 0;) {
        size_t sl = strlen(sn[i]);
        memcpy(o, sn[i], sl);
        o += sl;
        *o++ = '=';
        memcpy(o, val[i].body, val[i].body_len);
        o += val[i].body_len;
        if (i > 0)
            *o++ = ',';
    }
    *o = '\0';
    return out;
}

/* name_string of `nm`, whose DER is [der, der+n): by name_text_fast when it can, else by OpenSSL. */
static char *name_text(const unsigned char *der, size_t n, const X509_NAME *nm)
{
    bool oom = false;
    char *t = name_text_fast(der, n, &oom);
    return t || oom ? t : name_string(nm);
}

/* ---------------------------------------------------------------- process-wide caches */

/* OpenSSL 3.0 looks SHA-256 up in its provider store on every EVP_sha256() digest (a lock and a hash
 * lookup); fetched once and kept for the life of the process. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

static const EVP_MD *sha256_get(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md ? sha256_md : EVP_sha256();
}

/*
 * The issuers of the last few certificates, keyed by their exact DER. A directory's certificates come from
 * a handful of CAs, and decoding and printing the issuer Name was about 15% of a snapshot's CPU. A hit
 * means the same bytes decoded before, so it is as valid as then. Bounded: ISSUER_SLOTS names of at most
 * ISSUER_MAX_DER bytes, replaced round robin; the mutex makes it safe from any thread.
 */
#define ISSUER_SLOTS 8
#define ISSUER_MAX_DER 1024

typedef struct issuer_slot {
    unsigned char der[ISSUER_MAX_DER];
    size_t len; /* 0: empty */
    X509_NAME *name;
    char *text; /* name_string(name) */
} issuer_slot;

static issuer_slot issuer_cache[ISSUER_SLOTS];
static size_t issuer_next;
static pthread_mutex_t issuer_lock = PTHREAD_MUTEX_INITIALIZER;

static issuer_slot *issuer_find(const unsigned char *der, size_t len)
{
    for (size_t i = 0; i < ISSUER_SLOTS; i++)
        if (issuer_cache[i].len == len && memcmp(issuer_cache[i].der, der, len) == 0)
            return &issuer_cache[i];
    return NULL;
}

static bool issuer_known(const unsigned char *der, size_t len)
{
    pthread_mutex_lock(&issuer_lock);
    bool hit = issuer_find(der, len) != NULL;
    pthread_mutex_unlock(&issuer_lock);
    return hit;
}

/* On a hit: *text gets a copy of the issuer's text (NULL when out of memory) and, unless `subj` is NULL,
 * *self_issued whether `subj` equals it (X509_NAME_cmp). False when the name is not (or no longer) cached. */
static bool issuer_lookup(const unsigned char *der, size_t len, const X509_NAME *subj, char **text,
                          bool *self_issued)
{
    pthread_mutex_lock(&issuer_lock);
    const issuer_slot *sl = issuer_find(der, len);
    if (sl) {
        *text = strdup(sl->text);
        if (subj)
            *self_issued = X509_NAME_cmp(subj, sl->name) == 0;
    }
    pthread_mutex_unlock(&issuer_lock);
    return sl != NULL;
}

/* Keeps `name` (ownership passes here in every case) and a copy of `text` for `der`. */
static void issuer_remember(const unsigned char *der, size_t len, X509_NAME *name, const char *text)
{
    char *t = len <= ISSUER_MAX_DER ? strdup(text) : NULL;
    if (!t) {
        X509_NAME_free(name);
        return;
    }
    pthread_mutex_lock(&issuer_lock);
    if (issuer_find(der, len)) { /* another thread was first */
        pthread_mutex_unlock(&issuer_lock);
        X509_NAME_free(name);
        free(t);
        return;
    }
    issuer_slot *sl = &issuer_cache[issuer_next];
    issuer_next = (issuer_next + 1) % ISSUER_SLOTS;
    X509_NAME_free(sl->name);
    free(sl->text);
    memcpy(sl->der, der, len);
    sl->len = len;
    sl->name = name;
    sl->text = t;
    pthread_mutex_unlock(&issuer_lock);
}

static bool time_to_unix(const unsigned char *der, size_t n, int64_t *out)
{
    const unsigned char *q = der;
    ASN1_TIME *t = d2i_ASN1_TIME(NULL, &q, (long)n);
    struct tm tm;
    bool ok = t && q == der + n && ASN1_TIME_to_tm(t, &tm) == 1;
    if (ok)
        *out = days_from_civil((int64_t)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday) *
                   86400 +
               (int64_t)tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    ASN1_TIME_free(t);
    return ok;
}

/* E-mail list under construction: bounded, deduplicated at the end. */
typedef struct email_list {
    char **v;
    size_t n, cap;
    bool oom;
} email_list;

static void email_add(email_list *l, const unsigned char *s, size_t n)
{
    if (l->n >= CS_CERT_MAX_EMAILS || n == 0)
        return;
    /*
     * rfc822Name is an IA5String: keep printable ASCII only. This drops "a@b\0evil"
     * (which C would read as a@b) and bytes that are not valid UTF-8 in a protobuf string.
     */
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            l->oom = true;
            return;
        }
        l->v = nv;
        l->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c) {
        l->oom = true;
        return;
    }
    memcpy(c, s, n);
    c[n] = '\0';
    l->v[l->n++] = c;
}

typedef struct idx_name {
    const char *s;
    size_t i;
} idx_name;

static int idx_name_cmp(const void *a, const void *b)
{
    const idx_name *x = a, *y = b;
    int c = strcasecmp(x->s, y->s);
    if (c)
        return c;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Drops case-insensitive duplicates, keeping the first occurrence and the order. O(n log n). */
static void email_dedupe(email_list *l)
{
    if (l->n < 2)
        return;
    idx_name *ix = malloc(l->n * sizeof *ix);
    if (!ix) {
        l->oom = true;
        return;
    }
    for (size_t i = 0; i < l->n; i++)
        ix[i] = (idx_name){l->v[i], i};
    qsort(ix, l->n, sizeof *ix, idx_name_cmp);
    for (size_t i = 1; i < l->n; i++) {
        if (strcasecmp(ix[i].s, ix[i - 1].s) == 0) {
            free(l->v[ix[i].i]);
            l->v[ix[i].i] = NULL;
            ix[i].s = ix[i - 1].s; /* keep comparing against the surviving spelling */
        }
    }
    free(ix);
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i])
            l->v[k++] = l->v[i];
    l->n = k;
}

static void cert_info_clear(cs_cert_info *ci)
{
    free(ci->subject);
    free(ci->issuer);
    free(ci->serial_hex);
    for (size_t i = 0; i < ci->n_emails; i++)
        free(ci->emails[i]);
    free(ci->emails);
    free(ci->reason);
    memset(ci, 0, sizeof *ci);
}

typedef enum fill_result { FILL_OK, FILL_UNREADABLE, FILL_OOM } fill_result;

/* Extension contents decoded; sets the problem `trailing_data` when bytes follow the structure. */
static void ext_note(cs_cert_info *ci, char *why, size_t whylen, cs_cert_problem p, const char *text)
{
    ci->problems |= CS_CERT_PROBLEM_BIT(p);
    size_t used = strlen(why);
    if (used + 3 < whylen)
        fmt_into(why + used, whylen - used, "%s%s", used ? "; " : "", text);
}

static void extensions_summarise(const STACK_OF(X509_EXTENSION) * exts, cs_cert_info *ci, email_list *emails,
                                 char *why, size_t whylen)
{
    bool seen_ku = false, seen_eku = false, seen_san = false;
    char m[WHY_MAX];
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        const ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(ext);
        const unsigned char *d = ASN1_STRING_get0_data(os), *q = d;
        long n = ASN1_STRING_length(os);
        if (nid == NID_key_usage && !seen_ku) {
            seen_ku = true;
            ASN1_BIT_STRING *bs = d2i_ASN1_BIT_STRING(NULL, &q, n);
            if (!bs) {
                why_openssl(m, sizeof m, "keyUsage extension");
                ext_note(ci, why, whylen, CS_CERT_PROBLEM_UNPARSEABLE, m);
                continue;
            }
            ci->has_key_usage = true;
            for (int b = 0; b < 9; b++)
                if (ASN1_BIT_STRING_get_bit(bs, b))
                    ci->key_usage |= 1u << b;
            ASN1_BIT_STRING_free(bs);
        } else if (nid == NID_ext_key_usage && !seen_eku) {
            seen_eku = true;
            EXTENDED_KEY_USAGE *eku = d2i_EXTENDED_KEY_USAGE(NULL, &q, n);
            if (!eku) {
                why_openssl(m, sizeof m, "extKeyUsage extension");
                ext_note(ci, why, whylen, CS_CERT_PROBLEM_UNPARSEABLE, m);
                continue;
            }
            ci->has_eku = true;
            for (int k = 0; k < sk_ASN1_OBJECT_num(eku); k++) {
                int en = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, k));
                if (en == NID_email_protect)
                    ci->eku_email_protection = true;
                else if (en == NID_anyExtendedKeyUsage)
                    ci->eku_any = true;
            }
            EXTENDED_KEY_USAGE_free(eku);
        } else if (nid == NID_subject_alt_name && !seen_san) {
            seen_san = true;
            GENERAL_NAMES *gns = d2i_GENERAL_NAMES(NULL, &q, n);
            if (!gns) {
                why_openssl(m, sizeof m, "subjectAltName extension");
                ext_note(ci, why, whylen, CS_CERT_PROBLEM_UNPARSEABLE, m);
                continue;
            }
            for (int k = 0; k < sk_GENERAL_NAME_num(gns); k++) {
                const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gns, k);
                if (gn->type == GEN_EMAIL)
                    email_add(emails, ASN1_STRING_get0_data(gn->d.rfc822Name),
                              (size_t)ASN1_STRING_length(gn->d.rfc822Name));
            }
            GENERAL_NAMES_free(gns);
        } else {
            continue;
        }
        if (q != d + n) {
            fmt_into(m, sizeof m, "%s extension: %ld bytes after its value", OBJ_nid2ln(nid),
                     (long)(d + n - q));
            ext_note(ci, why, whylen, CS_CERT_PROBLEM_TRAILING_DATA, m);
        }
    }
    ERR_clear_error();
}

/* ---------------------------------------------------------------- fast readers of the summary */

/*
 * Decoding the subject and the extensions with OpenSSL (d2i_X509_NAME, d2i_X509_EXTENSIONS, then each
 * extension) was about a quarter of a snapshot's CPU, most of it allocations. The readers below take the
 * same facts straight from the DER for the common, strictly encoded case and say "don't know" (false) on
 * anything else, and the caller then takes the OpenSSL path as before; so a certificate's summary is the
 * same either way. fuzz_cert_diff checks that by parsing every input with them on and off
 * (cs_cert_fast_paths) and against OpenSSL.
 */
static bool fast_paths_on = true;
/* How often each reader settled a certificate without OpenSSL (cs_cert_fast_path_counts). */
static atomic_ulong fast_subject_count, fast_extensions_count;

void cs_cert_fast_paths(bool on)
{
    fast_paths_on = on;
}

void cs_cert_fast_path_counts(unsigned long *subjects, unsigned long *extensions)
{
    if (subjects)
        *subjects = atomic_load_explicit(&fast_subject_count, memory_order_relaxed);
    if (extensions)
        *extensions = atomic_load_explicit(&fast_extensions_count, memory_order_relaxed);
}

#define FAST_CANON_MAX 1024

/* der_get for the fast readers: also false when the length is not in its shortest (DER) form. */
static bool der_get_strict(der_walk *w, const unsigned char *p, const unsigned char *end, der_elem *e)
{
    if (!der_get(w, p, end, 0, e))
        return false;
    size_t hdr = (size_t)(e->body - e->start);
    size_t want = e->body_len < 0x80 ? 2 : e->body_len < 0x100 ? 3 : e->body_len < 0x10000 ? 4 : 5;
    return hdr == want;
}

/*
 * X509_NAME_cmp compares names by OpenSSL's canonical form (x509_name_canon: each string value as UTF-8,
 * leading and trailing white space dropped, inner runs of it collapsed to one space, ASCII lowercased;
 * multi-valued RDNs sorted). For a strict Name (each RDN one attribute, a PrintableString, UTF8String or
 * IA5String of printable ASCII; the only white space is ' ') this writes an encoding of that canonical form
 * into out (length *out_len): two such names compare equal with X509_NAME_cmp exactly when these are equal.
 * Such a name also decodes with d2i_X509_NAME. False for any other name, or one that does not fit.
 */
static bool fast_name_canon(const unsigned char *der, size_t n, unsigned char out[FAST_CANON_MAX],
                            size_t *out_len)
{
    der_walk w = {.base = der, .ber = false, .err = ""};
    der_elem name, rdn, atv, oid, val;
    size_t o = 0, n_rdn = 0;

    if (!der_get_strict(&w, der, der + n, &name) || name.tag != TAG_SEQ || name.next != der + n)
        return false;
    for (const unsigned char *p = name.body, *end = body_end(&name); p < end; p = rdn.next) {
        if (++n_rdn > FAST_NAME_MAX_RDNS || !der_get_strict(&w, p, end, &rdn) || rdn.tag != TAG_SET)
            return false;
        if (!der_get_strict(&w, rdn.body, body_end(&rdn), &atv) || atv.tag != TAG_SEQ ||
            atv.next != body_end(&rdn))
            return false;
        if (!der_get_strict(&w, atv.body, body_end(&atv), &oid) || oid.tag != TAG_OID ||
            !oid_ok(oid.body, oid.body_len) || oid.body_len > 255 ||
            !der_get_strict(&w, oid.next, body_end(&atv), &val) || val.next != body_end(&atv))
            return false;
        if (val.tag != V_ASN1_PRINTABLESTRING && val.tag != V_ASN1_UTF8STRING && val.tag != V_ASN1_IA5STRING)
            return false;
        /* type: length octet and OID contents; value: two length octets and the canonical text */
        if (FAST_CANON_MAX - o < 1 + oid.body_len + 2 + val.body_len)
            return false;
        out[o++] = (unsigned char)oid.body_len;
        memcpy(out + o, oid.body, oid.body_len);
        o += oid.body_len;
        size_t len_at = o;
        o += 2;
        const unsigned char *s = val.body, *e = body_end(&val);
        for (const unsigned char *c = s; c < e; c++)
            if (*c < 0x20 || *c > 0x7e)
                return false;
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        size_t start = o;
        while (s < e) {
            if (*s == ' ') {
                out[o++] = ' ';
                while (*s == ' ') /* stops: the last byte is not a space */
                    s++;
            } else {
                out[o++] = (unsigned char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
                s++;
            }
        }
        out[len_at] = (unsigned char)((o - start) >> 8);
        out[len_at + 1] = (unsigned char)(o - start);
    }
    if (n_rdn == 0)
        return false;
    *out_len = o;
    return true;
}

static const unsigned char OID_EMAIL_ADDRESS[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01};

/* The subject emailAddress values of a name fast_name_canon accepted, in order, into `emails` (as the
 * OpenSSL path's ASN1_STRING_to_UTF8 gives them: printable ASCII converts to itself). */
static void fast_name_emails(const unsigned char *der, size_t n, email_list *emails)
{
    der_walk w = {.base = der, .ber = false, .err = ""};
    der_elem name, rdn, atv, oid, val;
    if (!der_get_strict(&w, der, der + n, &name))
        return;
    for (const unsigned char *p = name.body, *end = body_end(&name); p < end; p = rdn.next) {
        if (!der_get_strict(&w, p, end, &rdn) || !der_get_strict(&w, rdn.body, body_end(&rdn), &atv) ||
            !der_get_strict(&w, atv.body, body_end(&atv), &oid) ||
            !der_get_strict(&w, oid.next, body_end(&atv), &val))
            return; /* not reached: the name was checked */
        if (oid_is(&oid, OID_EMAIL_ADDRESS, sizeof OID_EMAIL_ADDRESS))
            email_add(emails, val.body, val.body_len);
    }
}

/* What fast_extensions found. */
typedef struct fast_ext {
    bool has_ku, has_eku, eku_email, eku_any;
    uint32_t ku;
    der_elem san; /* the first subjectAltName's GeneralNames; san.start NULL when none */
} fast_ext;

static const unsigned char OID_EXT_KU[] = {0x55, 0x1d, 0x0f};
static const unsigned char OID_EXT_EKU[] = {0x55, 0x1d, 0x25};
static const unsigned char OID_EXT_SAN[] = {0x55, 0x1d, 0x11};
static const unsigned char OID_EKU_EMAIL[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04};
static const unsigned char OID_EKU_ANY[] = {0x55, 0x1d, 0x25, 0x00};

/* keyUsage contents [c, c+n): exactly one primitive BIT STRING. Bits as ASN1_BIT_STRING_get_bit reads them
 * (the unused bits of the last octet cleared, as c2i_ASN1_BIT_STRING clears them). */
static bool fast_ku(const unsigned char *c, size_t n, uint32_t *ku)
{
    der_walk w = {.base = c, .ber = false, .err = ""};
    der_elem bs;
    if (!der_get_strict(&w, c, c + n, &bs) || bs.tag != TAG_BIT_STRING || bs.next != c + n ||
        !bits_ok(bs.body, bs.body_len))
        return false;
    const unsigned char *data = bs.body + 1;
    size_t len = bs.body_len - 1;
    unsigned unused = bs.body[0];
    *ku = 0;
    for (unsigned b = 0; b < 9; b++) {
        size_t at = b / 8;
        if (at >= len)
            break;
        unsigned char octet = at == len - 1 ? (unsigned char)(data[at] & (0xffu << unused)) : data[at];
        if (octet & (0x80u >> (b % 8)))
            *ku |= 1u << b;
    }
    return true;
}

/* extKeyUsage contents: one SEQUENCE of at least one OBJECT IDENTIFIER. */
static bool fast_eku(const unsigned char *c, size_t n, fast_ext *fx)
{
    der_walk w = {.base = c, .ber = false, .err = ""};
    der_elem seq, oid;
    if (!der_get_strict(&w, c, c + n, &seq) || seq.tag != TAG_SEQ || seq.next != c + n || seq.body_len == 0)
        return false;
    for (const unsigned char *p = seq.body, *end = body_end(&seq); p < end; p = oid.next) {
        if (!der_get_strict(&w, p, end, &oid) || oid.tag != TAG_OID || !oid_ok(oid.body, oid.body_len))
            return false;
        if (oid_is(&oid, OID_EKU_EMAIL, sizeof OID_EKU_EMAIL))
            fx->eku_email = true;
        else if (oid_is(&oid, OID_EKU_ANY, sizeof OID_EKU_ANY))
            fx->eku_any = true;
    }
    return true;
}

/* subjectAltName contents: one non-empty SEQUENCE of GeneralNames of the kinds GENERAL_NAMES decodes
 * without question: rfc822Name, dNSName, URI (primitive IA5String), iPAddress, registeredID, and an
 * otherName whose value is a UTF8String of printable ASCII (the AD UPN). */
static bool fast_san(const unsigned char *c, size_t n, der_elem *out)
{
    der_walk w = {.base = c, .ber = false, .err = ""};
    der_elem seq, gn;
    if (!der_get_strict(&w, c, c + n, &seq) || seq.tag != TAG_SEQ || seq.next != c + n || seq.body_len == 0)
        return false;
    for (const unsigned char *p = seq.body, *end = body_end(&seq); p < end; p = gn.next) {
        if (!der_get_strict(&w, p, end, &gn))
            return false;
        switch (gn.tag) {
        case 0x81: /* rfc822Name */
        case 0x82: /* dNSName */
        case 0x86: /* uniformResourceIdentifier */
        case 0x87: /* iPAddress */
            break;
        case 0x88: /* registeredID */
            if (!oid_ok(gn.body, gn.body_len))
                return false;
            break;
        case 0xa0: { /* otherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY } */
            der_elem oid, ex, v;
            const unsigned char *ge = body_end(&gn);
            if (!der_get_strict(&w, gn.body, ge, &oid) || oid.tag != TAG_OID ||
                !oid_ok(oid.body, oid.body_len) || !der_get_strict(&w, oid.next, ge, &ex) || ex.tag != 0xa0 ||
                ex.next != ge || !der_get_strict(&w, ex.body, body_end(&ex), &v) ||
                v.tag != V_ASN1_UTF8STRING || v.next != body_end(&ex))
                return false;
            for (size_t i = 0; i < v.body_len; i++)
                if (v.body[i] < 0x20 || v.body[i] > 0x7e)
                    return false;
            break;
        }
        default:
            return false;
        }
    }
    *out = seq;
    return true;
}

/*
 * The Extensions SEQUENCE `seq`, read for the summary as extensions_summarise reads d2i_X509_EXTENSIONS'
 * result: each Extension { OID, critical TRUE (0xff) or absent, primitive OCTET STRING } and nothing more,
 * the first keyUsage, extKeyUsage and subjectAltName decoding cleanly and filling their OCTET STRING.
 * False (fx unspecified) for anything else: an empty list, a critical flag that is not DER TRUE, BER,
 * contents extensions_summarise would flag.
 */
static bool fast_extensions(const der_elem *seq, fast_ext *fx)
{
    der_walk w = {.base = seq->start, .ber = false, .err = ""};
    der_elem ext, oid, crit, os;
    bool seen_ku = false, seen_eku = false, seen_san = false;

    memset(fx, 0, sizeof *fx);
    if (seq->body_len == 0)
        return false;
    for (const unsigned char *p = seq->body, *end = body_end(seq); p < end; p = ext.next) {
        if (!der_get_strict(&w, p, end, &ext) || ext.tag != TAG_SEQ)
            return false;
        const unsigned char *q = ext.body, *xe = body_end(&ext);
        if (!der_get_strict(&w, q, xe, &oid) || oid.tag != TAG_OID || !oid_ok(oid.body, oid.body_len))
            return false;
        q = oid.next;
        if (q < xe && *q == V_ASN1_BOOLEAN) {
            if (!der_get_strict(&w, q, xe, &crit) || crit.body_len != 1 || crit.body[0] != 0xff)
                return false;
            q = crit.next;
        }
        if (!der_get_strict(&w, q, xe, &os) || os.tag != V_ASN1_OCTET_STRING || os.next != xe)
            return false;
        if (oid_is(&oid, OID_EXT_KU, sizeof OID_EXT_KU) && !seen_ku) {
            seen_ku = true;
            if (!fast_ku(os.body, os.body_len, &fx->ku))
                return false;
            fx->has_ku = true;
        } else if (oid_is(&oid, OID_EXT_EKU, sizeof OID_EXT_EKU) && !seen_eku) {
            seen_eku = true;
            if (!fast_eku(os.body, os.body_len, fx))
                return false;
            fx->has_eku = true;
        } else if (oid_is(&oid, OID_EXT_SAN, sizeof OID_EXT_SAN) && !seen_san) {
            seen_san = true;
            if (!fast_san(os.body, os.body_len, &fx->san))
                return false;
        }
    }
    return true;
}

/* The rfc822Names of a GeneralNames fast_san accepted, in order, into `emails`. */
static void fast_san_emails(const der_elem *san, email_list *emails)
{
    der_walk w = {.base = san->start, .ber = false, .err = ""};
    der_elem gn;
    for (const unsigned char *p = san->body, *end = body_end(san); p < end; p = gn.next) {
        if (!der_get_strict(&w, p, end, &gn))
            return; /* not reached: checked */
        if (gn.tag == 0x81)
            email_add(emails, gn.body, gn.body_len);
    }
}

/*
 * The fast path: fills ce from the certificate DER [der, der+n) (exactly one
 * element). The value base is used for offsets in the reason. On
 * FILL_UNREADABLE the reason (in ce->info.reason) says what and where.
 */
static fill_result cert_fill(const unsigned char *value_base, const unsigned char *der, size_t n, int64_t now,
                             cert_entry *ce)
{
    cs_cert_info *ci = &ce->info;
    der_walk w = {.base = value_base, .ber = false, .err = ""};
    char why[WHY_MAX * 2] = "";
    X509_NAME *subj = NULL, *iss = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    email_list emails = {0};
    fill_result res = FILL_UNREADABLE;
    unsigned char *md = ce->md;
    /* The fast readers' results: subj_canon when the subject is strict (then subj stays NULL until
     * something needs it decoded), fx when the extensions are. */
    unsigned char subj_canon[FAST_CANON_MAX];
    size_t subj_canon_len = 0;
    bool subj_fast = false, ext_fast = false;
    fast_ext fx = {0};
    der_elem cert, tbs, sigalg, sig, e, algoid, serial, validity, spki, spki_alg, spki_bits;

    ci->der_offset = (size_t)(der - value_base);
    ci->der_len = n;
    if (!EVP_Digest(der, n, md, NULL, sha256_get(), NULL)) {
        res = FILL_OOM;
        goto cleanup;
    }
    hex_lower(md, sizeof ce->md, ci->sha256_hex);

    const unsigned char *p = der, *end = der + n;
    if (!der_expect(&w, &p, end, TAG_SEQ, "Certificate", &cert))
        goto fail_walk;
    if (p != end) {
        der_fail(&w, p, "data after the Certificate");
        goto fail_walk;
    }
    p = cert.body;
    end = body_end(&cert);
    if (!der_expect(&w, &p, end, TAG_SEQ, "tbsCertificate", &tbs) ||
        !der_expect(&w, &p, end, TAG_SEQ, "signatureAlgorithm", &sigalg) ||
        !algid_check(&w, &sigalg, "signatureAlgorithm", &algoid) ||
        !der_expect(&w, &p, end, TAG_BIT_STRING, "signatureValue", &sig))
        goto fail_walk;
    if (!bits_ok(sig.body, sig.body_len)) {
        der_fail(&w, sig.start, "signatureValue: invalid BIT STRING");
        goto fail_walk;
    }
    if (p != end) {
        der_fail(&w, p, "data after signatureValue inside the Certificate");
        goto fail_walk;
    }

    /* TBSCertificate */
    p = tbs.body;
    end = body_end(&tbs);
    if (p < end && *p == 0xa0) {
        der_elem ver, vi;
        if (!der_expect(&w, &p, end, 0xa0, "version", &ver))
            goto fail_walk;
        const unsigned char *vp = ver.body;
        if (!der_expect(&w, &vp, body_end(&ver), TAG_INTEGER, "version", &vi))
            goto fail_walk;
        if (vp != body_end(&ver) || !int_ok(vi.body, vi.body_len)) {
            der_fail(&w, ver.start, "version: invalid INTEGER");
            goto fail_walk;
        }
    }
    if (!der_expect(&w, &p, end, TAG_INTEGER, "serialNumber", &serial))
        goto fail_walk;
    if (!int_ok(serial.body, serial.body_len)) {
        der_fail(&w, serial.start, "serialNumber: invalid INTEGER encoding");
        goto fail_walk;
    }
    if (!der_expect(&w, &p, end, TAG_SEQ, "signature", &e) || !algid_check(&w, &e, "signature", &algoid))
        goto fail_walk;

    if (!der_expect(&w, &p, end, TAG_SEQ, "issuer", &e))
        goto fail_walk;
    const unsigned char *q = e.start;
    /* A cached issuer is the same bytes that decoded before: skip the decode (see issuer_cache). */
    if (!issuer_known(e.start, (size_t)(e.next - e.start))) {
        iss = d2i_X509_NAME(NULL, &q, (long)(e.next - e.start));
        if (!iss || q != e.next) {
            char m[WHY_MAX];
            why_openssl(m, sizeof m, "issuer");
            werr(&w, "%s at offset %zu", m, (size_t)(e.start - value_base));
            goto fail_walk;
        }
    }
    ce->iss = e.start;
    ce->iss_len = (size_t)(e.next - e.start);

    if (!der_expect(&w, &p, end, TAG_SEQ, "validity", &validity))
        goto fail_walk;
    {
        const unsigned char *vp = validity.body, *ve = body_end(&validity);
        der_elem t1, t2;
        if (!der_get(&w, vp, ve, 0, &t1) || !der_get(&w, t1.next, ve, 0, &t2)) {
            werr_prefix(&w, "validity");
            goto fail_walk;
        }
        if ((t1.tag != V_ASN1_UTCTIME && t1.tag != V_ASN1_GENERALIZEDTIME) ||
            (t2.tag != V_ASN1_UTCTIME && t2.tag != V_ASN1_GENERALIZEDTIME)) {
            der_fail(&w, validity.start, "validity: notBefore/notAfter must be UTCTime or GeneralizedTime");
            goto fail_walk;
        }
        vp = t2.next;
        if (vp != ve) {
            der_fail(&w, vp, "validity: data after notAfter");
            goto fail_walk;
        }
        if (!time_to_unix(t1.start, (size_t)(t1.next - t1.start), &ci->not_before)) {
            der_fail(&w, t1.start, "notBefore: not a valid time");
            goto fail_walk;
        }
        if (!time_to_unix(t2.start, (size_t)(t2.next - t2.start), &ci->not_after)) {
            der_fail(&w, t2.start, "notAfter: not a valid time");
            goto fail_walk;
        }
    }

    if (!der_expect(&w, &p, end, TAG_SEQ, "subject", &e))
        goto fail_walk;
    q = e.start;
    subj_fast =
        fast_paths_on && fast_name_canon(e.start, (size_t)(e.next - e.start), subj_canon, &subj_canon_len);
    if (!subj_fast)
        subj = d2i_X509_NAME(NULL, &q, (long)(e.next - e.start));
    if (!subj_fast && (!subj || q != e.next)) {
        char m[WHY_MAX];
        why_openssl(m, sizeof m, "subject");
        werr(&w, "%s at offset %zu", m, (size_t)(e.start - value_base));
        goto fail_walk;
    }
    ce->subj = e.start;
    ce->subj_len = (size_t)(e.next - e.start);

    if (!der_expect(&w, &p, end, TAG_SEQ, "subjectPublicKeyInfo", &spki))
        goto fail_walk;
    {
        const unsigned char *sp = spki.body, *se = body_end(&spki);
        if (!der_expect(&w, &sp, se, TAG_SEQ, "subjectPublicKeyInfo algorithm", &spki_alg) ||
            !algid_check(&w, &spki_alg, "subjectPublicKeyInfo", &algoid) ||
            !der_expect(&w, &sp, se, TAG_BIT_STRING, "subjectPublicKey", &spki_bits))
            goto fail_walk;
        if (sp != se || !bits_ok(spki_bits.body, spki_bits.body_len)) {
            der_fail(&w, spki.start, "subjectPublicKeyInfo: malformed");
            goto fail_walk;
        }
        spki_summarise(&algoid, algoid.next, body_end(&spki_alg), &spki_bits, ci);
    }

    /* [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions: optional, in this order. */
    unsigned stage = 0;
    while (p < end) {
        if (!der_get(&w, p, end, 0, &e))
            goto fail_walk;
        unsigned num = e.tag & 0x1f;
        if ((e.tag & 0xc0) != 0x80 || num < 1 || num > 3 || num <= stage) {
            der_fail(&w, p, "unexpected element in tbsCertificate");
            goto fail_walk;
        }
        stage = num;
        if (num == 3) {
            der_elem seq;
            const unsigned char *xp = e.body;
            if (e.tag != 0xa3 || !der_expect(&w, &xp, body_end(&e), TAG_SEQ, "extensions", &seq))
                goto fail_walk_ext;
            if (xp != body_end(&e)) {
                der_fail(&w, xp, "extensions: data after the SEQUENCE");
                goto fail_walk;
            }
            q = seq.start;
            ext_fast = fast_paths_on && fast_extensions(&seq, &fx);
            if (!ext_fast)
                exts = d2i_X509_EXTENSIONS(NULL, &q, (long)(seq.next - seq.start));
            if (!ext_fast && (!exts || q != seq.next)) {
                char m[WHY_MAX];
                why_openssl(m, sizeof m, "extensions");
                werr(&w, "%s at offset %zu", m, (size_t)(seq.start - value_base));
                goto fail_walk;
            }
        }
        p = e.next;
    }

    /* Everything that can make the certificate unreadable is behind us; now the summary. */
    ci->serial_hex = serial_hex(serial.body, serial.body_len);
    /* self_issued from the canonical forms when both names are strict; else the subject is decoded for
     * X509_NAME_cmp (it decodes: fast_name_canon accepted it). */
    bool self_known = false;
    if (subj_fast) {
        unsigned char iss_canon[FAST_CANON_MAX];
        size_t iss_canon_len = 0;
        if (fast_name_canon(ce->iss, ce->iss_len, iss_canon, &iss_canon_len)) {
            ci->self_issued =
                iss_canon_len == subj_canon_len && memcmp(iss_canon, subj_canon, subj_canon_len) == 0;
            self_known = true;
        }
    }
    bool name_oom = false;
    if (subj_fast)
        ci->subject = name_text_fast(ce->subj, ce->subj_len, &name_oom);
    if (!name_oom && (!ci->subject || !self_known) && !subj) {
        q = ce->subj;
        subj = d2i_X509_NAME(NULL, &q, (long)ce->subj_len);
        if (!subj) {
            res = FILL_OOM;
            goto cleanup;
        }
    }
    if (!ci->subject && !name_oom)
        ci->subject = name_text(ce->subj, ce->subj_len, subj);
    if (!iss &&
        !issuer_lookup(ce->iss, ce->iss_len, self_known ? NULL : subj, &ci->issuer, &ci->self_issued)) {
        /* Cached when checked, replaced since (another thread): decode it again; it decoded before. */
        q = ce->iss;
        iss = d2i_X509_NAME(NULL, &q, (long)ce->iss_len);
        if (!iss) {
            res = FILL_OOM;
            goto cleanup;
        }
    }
    if (iss) {
        ci->issuer = name_text(ce->iss, ce->iss_len, iss);
        if (!self_known)
            ci->self_issued = X509_NAME_cmp(subj, iss) == 0;
        if (ci->issuer) {
            issuer_remember(ce->iss, ce->iss_len, iss, ci->issuer);
            iss = NULL;
        }
    }
    if (!ci->serial_hex || !ci->subject || !ci->issuer) {
        res = FILL_OOM;
        goto cleanup;
    }
    if (exts)
        extensions_summarise(exts, ci, &emails, why, sizeof why);
    if (ext_fast) {
        ci->has_key_usage = fx.has_ku;
        ci->key_usage = fx.ku;
        ci->has_eku = fx.has_eku;
        ci->eku_email_protection = fx.eku_email;
        ci->eku_any = fx.eku_any;
        if (fx.san.start)
            fast_san_emails(&fx.san, &emails);
    }
    if (subj_fast)
        fast_name_emails(ce->subj, ce->subj_len, &emails);
    for (int i = -1; !subj_fast && (i = X509_NAME_get_index_by_NID(subj, NID_pkcs9_emailAddress, i)) >= 0;) {
        unsigned char *u = NULL;
        int un = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
        if (un > 0)
            email_add(&emails, u, (size_t)un);
        OPENSSL_free(u);
    }
    email_dedupe(&emails);
    if (emails.oom) {
        res = FILL_OOM;
        goto cleanup;
    }
    ci->emails = emails.v;
    ci->n_emails = emails.n;
    emails.v = NULL;
    emails.n = 0;

    if (ci->not_after < now)
        ci->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_EXPIRED);
    if (ci->not_before > now)
        ci->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NOT_YET_VALID);
    if (ci->n_emails == 0)
        ci->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NO_EMAIL_ADDRESS);
    if (ci->has_eku && !ci->eku_email_protection && !ci->eku_any)
        ci->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NO_EMAIL_PROTECTION);
    ce->readable = true;
    res = FILL_OK;
    if (subj_fast && !subj)
        atomic_fetch_add_explicit(&fast_subject_count, 1, memory_order_relaxed);
    if (ext_fast)
        atomic_fetch_add_explicit(&fast_extensions_count, 1, memory_order_relaxed);
    if (why[0]) {
        ci->reason = strdup(why);
        if (!ci->reason)
            res = FILL_OOM;
    }
    goto cleanup;

fail_walk_ext:
    if (e.tag != 0xa3)
        der_fail(&w, e.start, "extensions: [3] must be constructed");
fail_walk:
    ci->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE);
    ci->reason = strdup(w.err[0] ? w.err : "malformed certificate");
    res = ci->reason ? FILL_UNREADABLE : FILL_OOM;
cleanup:
    for (size_t i = 0; i < emails.n; i++)
        free(emails.v[i]);
    free(emails.v);
    X509_NAME_free(subj);
    X509_NAME_free(iss);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return res;
}

/* ---------------------------------------------------------------- value formats */

/*
 * Appends a certificate [der, der+n) to the value. Returns false only when
 * memory runs out (ctx->oom). Certificates over CS_CERT_MAX_CERTS are counted only.
 */
static bool add_cert(parse_ctx *ctx, const unsigned char *der, size_t n, unsigned role)
{
    cs_cert_value *v = ctx->v;
    v->n_certs_seen++;
    if (v->n_certs >= CS_CERT_MAX_CERTS)
        return true;
    if (!v->certs) {
        v->certs = calloc(CS_CERT_MAX_CERTS, sizeof *v->certs);
        if (!v->certs) {
            ctx->oom = true;
            return false;
        }
    }
    cert_entry *ce = &v->certs[v->n_certs++];
    memset(ce, 0, sizeof *ce);
    ce->role = role;
    if (cert_fill(ctx->base, der, n, ctx->now, ce) == FILL_OOM) {
        ctx->oom = true;
        return false;
    }
    return true;
}

static void parse_x509(parse_ctx *ctx)
{
    der_walk w = {.base = ctx->base, .ber = false, .err = ""};
    der_elem e;
    ctx->v->format = CS_CERT_FORMAT_X509;
    if (!der_get(&w, ctx->base, ctx->base + ctx->len, 0, &e)) {
        ctx->v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE);
        add_reason(ctx, "X.509: %s", w.err);
        return;
    }
    if (!add_cert(ctx, e.start, (size_t)(e.next - e.start), 0))
        return;
    cert_entry *ce = &ctx->v->certs[0];
    if (!ce->readable) {
        /* A bare value that is no certificate: the value is unreadable, there is no certificate entry. */
        ctx->v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE);
        add_reason(ctx, "X.509: %s", ce->info.reason ? ce->info.reason : "malformed");
        cert_info_clear(&ce->info);
        ctx->v->n_certs = 0;
        ctx->v->n_certs_seen = 0;
    }
    if (e.next < ctx->base + ctx->len) {
        ctx->v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_TRAILING_DATA);
        add_reason(ctx, "%zu bytes after the certificate at offset %zu",
                   (size_t)(ctx->base + ctx->len - e.next), (size_t)(e.next - ctx->base));
    }
}

static void value_fail(parse_ctx *ctx, cs_cert_problem p, const char *what, const char *detail)
{
    ctx->v->problems |= CS_CERT_PROBLEM_BIT(p);
    add_reason(ctx, "%s: %s", what, detail);
}

/*
 * ContentInfo { contentType signedData, [0] EXPLICIT SignedData { version,
 * digestAlgorithms SET, encapContentInfo SEQUENCE, [0] IMPLICIT certificates
 * OPTIONAL, [1] IMPLICIT crls OPTIONAL, signerInfos SET } }, DER or BER.
 * Only the certificates are read; signatures are not checked.
 */
static void parse_pkcs7(parse_ctx *ctx)
{
    der_walk w = {.base = ctx->base, .ber = true, .err = ""};
    const unsigned char *p = ctx->base, *end = ctx->base + ctx->len;
    der_elem ci, oid, content, sd, e;
    ctx->v->format = CS_CERT_FORMAT_PKCS7;
    if (!der_expect(&w, &p, end, TAG_SEQ, "ContentInfo", &ci))
        goto fail;
    if (p < end) {
        ctx->v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_TRAILING_DATA);
        add_reason(ctx, "%zu bytes after the PKCS#7 ContentInfo at offset %zu", (size_t)(end - p),
                   (size_t)(p - ctx->base));
    }
    p = ci.body;
    end = body_end(&ci);
    if (p < end && *p == TAG_SEQ) {
        /* Looks like a bare certificate stored in the wrong attribute: summarise it, flag the format. */
        ctx->v->format = CS_CERT_FORMAT_X509;
        value_fail(ctx, CS_CERT_PROBLEM_UNSUPPORTED_FORMAT, "userSMIMECertificate",
                   "a bare X.509 certificate, not a PKCS#7 SignedData");
        if (!add_cert(ctx, ci.start, (size_t)(ci.next - ci.start), 0))
            return;
        if (!ctx->v->certs[0].readable) {
            ctx->v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE);
            add_reason(ctx, "X.509: %s",
                       ctx->v->certs[0].info.reason ? ctx->v->certs[0].info.reason : "malformed");
        }
        return;
    }
    if (!der_expect(&w, &p, end, TAG_OID, "ContentInfo contentType", &oid))
        goto fail;
    if (!oid_is(&oid, OID_SIGNED_DATA, sizeof OID_SIGNED_DATA)) {
        char txt[80] = "?";
        const unsigned char *q = oid.start;
        ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &q, (long)(oid.next - oid.start));
        if (obj)
            OBJ_obj2txt(txt, sizeof txt, obj, 1);
        ASN1_OBJECT_free(obj);
        ERR_clear_error();
        ctx->v->format = CS_CERT_FORMAT_UNKNOWN;
        add_reason(ctx, "PKCS#7: contentType %s is not signedData (1.2.840.113549.1.7.2)", txt);
        ctx->v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNSUPPORTED_FORMAT);
        return;
    }
    if (!der_expect(&w, &p, end, 0xa0, "ContentInfo content", &content))
        goto fail;
    if (p != end) {
        der_fail(&w, p, "data after the ContentInfo content");
        goto fail;
    }
    p = content.body;
    end = body_end(&content);
    if (!der_expect(&w, &p, end, TAG_SEQ, "SignedData", &sd))
        goto fail;
    if (p != end) {
        der_fail(&w, p, "data after SignedData");
        goto fail;
    }
    p = sd.body;
    end = body_end(&sd);
    if (!der_expect(&w, &p, end, TAG_INTEGER, "SignedData version", &e) ||
        !der_expect(&w, &p, end, TAG_SET, "SignedData digestAlgorithms", &e) ||
        !der_expect(&w, &p, end, TAG_SEQ, "SignedData encapContentInfo", &e))
        goto fail;
    size_t found = 0;
    if (p < end && *p == 0xa0) {
        der_elem certs;
        if (!der_expect(&w, &p, end, 0xa0, "SignedData certificates", &certs))
            goto fail;
        const unsigned char *cp = certs.body, *ce = body_end(&certs);
        while (cp < ce) { /* each turn consumes one element */
            der_elem c;
            if (!der_get(&w, cp, ce, 0, &c))
                goto fail;
            if (c.tag == TAG_SEQ) {
                found++;
                if (!add_cert(ctx, c.start, (size_t)(c.next - c.start), 0))
                    return;
            } /* attribute certificates ([1], [2]) and others carry no user certificate: skipped */
            cp = c.next;
        }
    }
    if (p < end && *p == 0xa1 && !der_expect(&w, &p, end, 0xa1, "SignedData crls", &e))
        goto fail;
    if (!der_expect(&w, &p, end, TAG_SET, "SignedData signerInfos", &e))
        goto fail;
    if (p != end) {
        der_fail(&w, p, "data after SignedData signerInfos");
        goto fail;
    }
    if (found == 0)
        value_fail(ctx, CS_CERT_PROBLEM_NO_CERTIFICATES, "PKCS#7", "SignedData carries no certificates");
    return;
fail:
    value_fail(ctx, CS_CERT_PROBLEM_UNPARSEABLE, "PKCS#7", w.err);
}

/* [MS-OXOABK] 2.2.4.36 setting tags that carry a DER X.509 certificate. */
#define OXOABK_KEY_EXCHANGE_CERT 0x0003
#define OXOABK_CHAIN_CERT 0x0004
#define OXOABK_SIGN_CERT 0x0008

static void parse_msoxoabk(parse_ctx *ctx)
{
    const unsigned char *p = ctx->base, *end = ctx->base + ctx->len;
    size_t found = 0;
    ctx->v->format = CS_CERT_FORMAT_MSOXOABK;
    while (p < end) { /* each turn consumes >= 4 bytes */
        size_t at = (size_t)(p - ctx->base);
        if (end - p < 4) {
            char m[120];
            fmt_into(m, sizeof m, "truncated setting header at offset %zu", at);
            value_fail(ctx, CS_CERT_PROBLEM_UNPARSEABLE, "MS-OXOABK", m);
            return;
        }
        unsigned tag = (unsigned)p[0] | (unsigned)p[1] << 8;
        size_t slen = (size_t)p[2] | (size_t)p[3] << 8;
        if (slen < 4 || slen > (size_t)(end - p)) {
            char m[160];
            fmt_into(m, sizeof m, "setting 0x%04x at offset %zu has length %zu (must be 4..%zu)", tag, at,
                     slen, (size_t)(end - p));
            value_fail(ctx, CS_CERT_PROBLEM_UNPARSEABLE, "MS-OXOABK", m);
            return;
        }
        if ((tag == OXOABK_KEY_EXCHANGE_CERT || tag == OXOABK_CHAIN_CERT || tag == OXOABK_SIGN_CERT) &&
            slen > 4) {
            found++;
            if (!add_cert(ctx, p + 4, slen - 4, tag))
                return;
        } /* other settings (version, capabilities, hashes, names) are not certificates */
        p += slen;
    }
    if (found == 0)
        value_fail(ctx, CS_CERT_PROBLEM_NO_CERTIFICATES, "MS-OXOABK",
                   "no certificate settings (0x0003, 0x0004, 0x0008)");
}

static bool names_equal(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    return a && b && an == bn && memcmp(a, b, an) == 0;
}

/* Picks the user's certificate; see cs_cert_value_user_index() in the header for the rule. */
static int choose_user(const cs_cert_value *v)
{
    int best = -1;
    for (size_t i = 0; i < v->n_certs; i++) {
        const cert_entry *c = &v->certs[i];
        if (c->readable && c->role == OXOABK_KEY_EXCHANGE_CERT)
            return (int)i;
    }
    for (int pass = 0; pass < 2 && best < 0; pass++) {
        /* pass 0: only certificates that issued no other one; pass 1 (a cycle): any readable one */
        for (size_t i = 0; i < v->n_certs; i++) {
            const cert_entry *c = &v->certs[i];
            if (!c->readable)
                continue;
            bool issuer = false;
            for (size_t j = 0; pass == 0 && j < v->n_certs && !issuer; j++)
                issuer = j != i && v->certs[j].readable &&
                         (names_equal(c->subj, c->subj_len, v->certs[j].iss, v->certs[j].iss_len) ||
                          strcmp(c->info.subject, v->certs[j].info.issuer) == 0);
            if (issuer)
                continue;
            if (best < 0) {
                best = (int)i;
                continue;
            }
            const cs_cert_info *a = &c->info, *b = &v->certs[best].info;
            if ((a->n_emails > 0) != (b->n_emails > 0)) {
                if (a->n_emails > 0)
                    best = (int)i;
            } else if (a->self_issued != b->self_issued) {
                if (!a->self_issued)
                    best = (int)i;
            } else if (a->not_after > b->not_after) {
                best = (int)i;
            }
        }
    }
    return best;
}

/* ---------------------------------------------------------------- public API */

cs_err *cs_cert_value_parse(cs_cert_attr attr, const unsigned char *der, size_t len, int64_t now,
                            cs_cert_value **out)
{
    cs_err *err = NULL;
    parse_ctx ctx = {.base = der, .len = len, .now = now};
    if (!out)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "cs_cert_value_parse: out is NULL (pass the address of a cs_cert_value *)");
    *out = NULL;
    if (!der && len > 0)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "cs_cert_value_parse: value is NULL but its length is %zu",
                          len);
    if (attr != CS_CERT_ATTR_USER_CERTIFICATE && attr != CS_CERT_ATTR_USER_SMIME_CERTIFICATE)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "cs_cert_value_parse: unknown attribute %d (use CS_CERT_ATTR_*)", (int)attr);
    cs_buf_init(&ctx.reason, VALUE_REASON_MAX);
    ctx.v = calloc(1, sizeof *ctx.v);
    if (!ctx.v) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "cs_cert_value_parse: out of memory");
        goto cleanup;
    }
    ctx.v->user = -1;
    /* OpenSSL's error queue is the caller's too: leave it as we found it. */
    ERR_set_mark();
    if (len > CS_CERT_MAX_VALUE_LEN) {
        ctx.v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_TOO_LARGE);
        add_reason(&ctx, "value is %zu bytes, over AD's limit of %d", len, CS_CERT_MAX_VALUE_LEN);
    }
    if (len == 0)
        value_fail(&ctx, CS_CERT_PROBLEM_UNPARSEABLE, "value", "empty");
    else if (attr == CS_CERT_ATTR_USER_CERTIFICATE)
        parse_x509(&ctx);
    else if (der[0] == 0x30)
        parse_pkcs7(&ctx);
    else
        parse_msoxoabk(&ctx);
    ERR_pop_to_mark();
    if (ctx.oom) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL,
                         "cs_cert_value_parse: out of memory summarising a %zu-byte value", len);
        goto cleanup;
    }
    /* A bare certificate spanning the whole value was hashed by cert_fill: the value's digest is its. */
    if (ctx.v->n_certs > 0 && ctx.v->certs[0].info.der_offset == 0 && ctx.v->certs[0].info.der_len == len)
        memcpy(ctx.v->sha256, ctx.v->certs[0].md, sizeof ctx.v->sha256);
    else if (!EVP_Digest(len > 0 ? der : (const unsigned char *)"", len, ctx.v->sha256, NULL, sha256_get(),
                         NULL)) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL,
                         "cs_cert_value_parse: SHA-256 of a %zu-byte value failed", len);
        goto cleanup;
    }
    if (ctx.v->n_certs_seen > ctx.v->n_certs)
        add_reason(&ctx, "%zu certificates, only the first %d summarised", ctx.v->n_certs_seen,
                   CS_CERT_MAX_CERTS);
    ctx.v->user = choose_user(ctx.v);
    if (ctx.v->user < 0 && ctx.v->n_certs > 0 &&
        !(ctx.v->problems & CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE))) {
        /* No user certificate means the verdict holds only the value's problems: a set whose
         * certificates are all unreadable must say so here, or it would look usable. */
        ctx.v->problems |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE);
        add_reason(&ctx, "none of the %zu certificates could be read", ctx.v->n_certs);
    }
    if (cs_buf_len(&ctx.reason) > 0) {
        ctx.v->reason = cs_buf_take(&ctx.reason);
        if (!ctx.v->reason) {
            err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "cs_cert_value_parse: out of memory");
            goto cleanup;
        }
    }
    *out = ctx.v;
    ctx.v = NULL;
cleanup:
    cs_cert_value_free(ctx.v);
    cs_buf_free(&ctx.reason);
    return err;
}

void cs_cert_value_free(cs_cert_value *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n_certs; i++)
        cert_info_clear(&v->certs[i].info);
    free(v->certs);
    free(v->reason);
    free(v);
}

cs_cert_format cs_cert_value_format(const cs_cert_value *v)
{
    return v ? v->format : CS_CERT_FORMAT_UNKNOWN;
}

cs_cert_problems cs_cert_value_problems(const cs_cert_value *v)
{
    return v ? v->problems : 0;
}

cs_cert_problems cs_cert_value_verdict(const cs_cert_value *v)
{
    const cs_cert_info *u = cs_cert_value_user_cert(v);
    return cs_cert_value_problems(v) | (u ? u->problems : 0);
}

const char *cs_cert_value_reason(const cs_cert_value *v)
{
    return v ? v->reason : NULL;
}

size_t cs_cert_value_cert_count(const cs_cert_value *v)
{
    return v ? v->n_certs : 0;
}

const cs_cert_info *cs_cert_value_cert(const cs_cert_value *v, size_t i)
{
    if (!v || i >= v->n_certs)
        return NULL;
    return &v->certs[i].info;
}

int cs_cert_value_user_index(const cs_cert_value *v)
{
    return v ? v->user : -1;
}

const cs_cert_info *cs_cert_value_user_cert(const cs_cert_value *v)
{
    if (!v || v->user < 0)
        return NULL;
    return &v->certs[v->user].info;
}

void cs_cert_value_sha256(const cs_cert_value *v, unsigned char out[32])
{
    memcpy(out, v->sha256, sizeof v->sha256);
}

void cs_cert_value_sha256_hex(const cs_cert_value *v, char out[65])
{
    hex_lower(v->sha256, sizeof v->sha256, out);
}
