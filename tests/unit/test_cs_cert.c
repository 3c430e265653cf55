/*
 * cs_cert: the corpus table (tests/data/cert_corpus.tsv, checked against OpenSSL's
 * full d2i_X509) and certificates made here with OpenSSL's API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <openssl/bn.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cs_cert.h"
#include "cs_event.h"

#define CORPUS_DIR CS_SHARED_DIR "/testdata/certs"
#define CORPUS_TSV CS_SOURCE_DIR "/tests/data/cert_corpus.tsv"
#define NOW INT64_C(1735689600) /* 2025-01-01T00:00:00Z, as in the tsv header */
#define DAY INT64_C(86400)

#define BIT(p) CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_##p)

/* ------------------------------------------------------------ helpers */

static cs_cert_value *parse_ok(cs_cert_attr attr, const unsigned char *d, size_t n)
{
    cs_cert_value *v = NULL;
    cs_err *err = cs_cert_value_parse(attr, d, n, NOW, &v);
    if (err)
        fail_msg("cs_cert_value_parse returned an error: %s", cs_err_message(err));
    assert_non_null(v);
    return v;
}

static char *verdict_string(cs_cert_problems set)
{
    cs_buf b;
    cs_buf_init(&b, 512);
    assert_true(cs_cert_problems_format(set, &b));
    char *s = cs_buf_take(&b);
    assert_non_null(s);
    if (!*s) {
        free(s);
        s = strdup("ok");
    }
    return s;
}

static unsigned char *read_file(const char *path, size_t *n)
{
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
    *n = (size_t)len;
    return d;
}

/* A .pem file's value: its first CERTIFICATE block, else its first block (caller frees with OPENSSL_free). */
static unsigned char *pem_value(const unsigned char *text, size_t n, long *len)
{
    BIO *b = BIO_new_mem_buf(text, (int)n);
    unsigned char *first = NULL, *cert = NULL, *data = NULL;
    long first_len = 0, cert_len = 0;
    char *name = NULL, *hdr = NULL;
    while (!cert && PEM_read_bio(b, &name, &hdr, &data, len)) {
        if (strcmp(name, "CERTIFICATE") == 0) {
            cert = data;
            cert_len = *len;
        } else if (!first) {
            first = data;
            first_len = *len;
        } else {
            OPENSSL_free(data);
        }
        OPENSSL_free(name);
        OPENSSL_free(hdr);
    }
    ERR_clear_error();
    BIO_free(b);
    if (cert) {
        OPENSSL_free(first);
        *len = cert_len;
        return cert;
    }
    *len = first_len;
    return first;
}

static void name_rfc2253(const X509_NAME *nm, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *d = NULL;
    long n = BIO_get_mem_data(b, &d);
    snprintf(out, outlen, "%.*s", (int)n, d);
    BIO_free(b);
}

/* Holds one readable certificate's summary to what OpenSSL's full parser says. */
static void check_against_openssl(const unsigned char *value, const cs_cert_info *ci, const char *label)
{
    const unsigned char *p = value + ci->der_offset;
    X509 *x = d2i_X509(NULL, &p, (long)ci->der_len);
    if (!x)
        fail_msg("%s: d2i_X509 rejects a certificate cs_cert reads", label);
    unsigned char md[32];
    unsigned mdlen = 0;
    char hex[65], buf[40000];
    assert_true(X509_digest(x, EVP_sha256(), md, &mdlen));
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(ci->sha256_hex, hex);
    name_rfc2253(X509_get_subject_name(x), buf, sizeof buf);
    assert_string_equal(ci->subject, buf);
    name_rfc2253(X509_get_issuer_name(x), buf, sizeof buf);
    assert_string_equal(ci->issuer, buf);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *bh = BN_bn2hex(bn);
    const char *ours = ci->serial_hex;
    if (bh[0] == '-') /* BN_bn2hex drops a leading zero nibble only for "0" */
        assert_int_equal(ours[0], '-');
    assert_int_equal(strcasecmp(ours + (ours[0] == '-'), bh + (bh[0] == '-')), 0);
    OPENSSL_free(bh);
    BN_free(bn);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), (time_t)ci->not_before), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), (time_t)ci->not_after), 0);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    if (pk && ci->key_bits) /* DSA with inherited parameters has no size on either side */
        assert_int_equal((unsigned)EVP_PKEY_get_bits(pk), ci->key_bits);
    assert_int_equal(X509_check_issued(x, x) == X509_V_OK || ci->self_issued, ci->self_issued);
    ERR_clear_error();
    X509_free(x);
}

/* ------------------------------------------------------------ corpus */

typedef struct row {
    char path[256];
    char attr[64];
    char expected[256];
    bool seen;
} row;

static size_t load_rows(row *rows, size_t max)
{
    FILE *f = fopen(CORPUS_TSV, "r");
    if (!f)
        fail_msg("cannot open %s", CORPUS_TSV);
    char line[2048];
    size_t n = 0;
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (header) { /* the column names */
            header = false;
            continue;
        }
        assert_true(n < max);
        char *save = NULL;
        char *path = strtok_r(line, "\t\n", &save), *attr = strtok_r(NULL, "\t\n", &save),
             *exp = strtok_r(NULL, "\t\n", &save);
        if (!path || !attr || !exp)
            fail_msg("%s: malformed row %zu", CORPUS_TSV, n + 1);
        snprintf(rows[n].path, sizeof rows[n].path, "%s", path);
        snprintf(rows[n].attr, sizeof rows[n].attr, "%s", attr);
        snprintf(rows[n].expected, sizeof rows[n].expected, "%s", exp);
        rows[n].seen = false;
        n++;
    }
    fclose(f);
    return n;
}

static void check_row(row *r)
{
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", CORPUS_DIR, r->path);
    size_t fn = 0;
    unsigned char *file = read_file(full, &fn);
    unsigned char *value = file, *pem = NULL;
    size_t n = fn;
    if (strstr(r->path, ".pem")) {
        long pl = 0;
        pem = pem_value(file, fn, &pl);
        if (!pem)
            fail_msg("%s: no PEM block", r->path);
        value = pem;
        n = (size_t)pl;
    }
    cs_cert_attr attr = CS_CERT_ATTR_USER_CERTIFICATE;
    if (strcmp(r->attr, "userCertificate") == 0)
        attr = CS_CERT_ATTR_USER_CERTIFICATE;
    else if (strcmp(r->attr, "userSMIMECertificate") == 0)
        attr = CS_CERT_ATTR_USER_SMIME_CERTIFICATE;
    else
        fail_msg("%s: unknown attribute %s", r->path, r->attr);
    cs_cert_value *v = parse_ok(attr, value, n);
    char *got = verdict_string(cs_cert_value_verdict(v));
    if (strcmp(got, r->expected) != 0)
        fail_msg("%s: expected %s, got %s (reason: %s)", r->path, r->expected, got,
                 cs_cert_value_reason(v) ? cs_cert_value_reason(v) : "-");
    if (cs_cert_value_problems(v) & BIT(UNPARSEABLE))
        assert_non_null(cs_cert_value_reason(v));
    free(got);

    /* Parity with OpenSSL: what we read, d2i_X509 reads the same way; what we reject, it rejects. */
    for (size_t i = 0; i < cs_cert_value_cert_count(v); i++) {
        const cs_cert_info *ci = cs_cert_value_cert(v, i);
        if (!(ci->problems & BIT(UNPARSEABLE)))
            check_against_openssl(value, ci, r->path);
    }
    if (attr == CS_CERT_ATTR_USER_CERTIFICATE) {
        const unsigned char *p = value;
        X509 *x = d2i_X509(NULL, &p, (long)n);
        bool ours = !(cs_cert_value_problems(v) & BIT(UNPARSEABLE));
        if ((x != NULL) != ours)
            fail_msg("%s: d2i_X509 %s it, cs_cert %s it", r->path, x ? "accepts" : "rejects",
                     ours ? "reads" : "rejects");
        X509_free(x);
    } else {
        const unsigned char *p = value;
        PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)n);
        assert_non_null(p7);
        STACK_OF(X509) *certs = PKCS7_type_is_signed(p7) ? p7->d.sign->cert : NULL;
        assert_int_equal(cs_cert_value_cert_count(v), (size_t)(certs ? sk_X509_num(certs) : 0));
        PKCS7_free(p7);
    }
    ERR_clear_error();
    cs_cert_value_free(v);
    OPENSSL_free(pem);
    free(file);
}

static void corpus_matches_table(void **state)
{
    (void)state;
    static row rows[256];
    size_t nrows = load_rows(rows, 256);
    assert_true(nrows >= 30);
    const char *subdirs[] = {"boringssl", "boringssl-malformed", "rfc4134"};
    size_t files = 0;
    DIR *top = opendir(CORPUS_DIR);
    assert_non_null(top);
    /* Every folder and every file must have a row: new test material cannot slip by. */
    for (struct dirent *de; (de = readdir(top));) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "SOURCES.md") == 0)
            continue;
        bool known = false;
        for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++)
            known |= strcmp(de->d_name, subdirs[i]) == 0;
        if (!known)
            fail_msg("%s/%s: a folder the table does not know", CORPUS_DIR, de->d_name);
    }
    closedir(top);
    for (size_t s = 0; s < sizeof subdirs / sizeof subdirs[0]; s++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", CORPUS_DIR, subdirs[s]);
        DIR *d = opendir(dir);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));) {
            if (de->d_name[0] == '.')
                continue;
            char rel[512];
            snprintf(rel, sizeof rel, "%s/%s", subdirs[s], de->d_name);
            row *r = NULL;
            for (size_t i = 0; i < nrows && !r; i++)
                if (strcmp(rows[i].path, rel) == 0)
                    r = &rows[i];
            if (!r) {
                fail_msg("%s: no row in %s", rel, CORPUS_TSV);
                continue; /* fail_msg does not return; this tells the compiler so */
            }
            r->seen = true;
            files++;
            check_row(r);
        }
        closedir(d);
    }
    for (size_t i = 0; i < nrows; i++)
        if (!rows[i].seen)
            fail_msg("%s: row for a file that does not exist", rows[i].path);
    assert_int_equal(files, nrows);
}

/* ------------------------------------------------------------ generated certificates */

typedef struct cert_opts {
    EVP_PKEY *key;
    EVP_PKEY *signer;        /* NULL: self-signed */
    const X509 *issuer_cert; /* NULL: self-issued */
    const char *cn;
    const char *subject_email; /* NULL: none */
    const char *san;           /* e.g. "email:a@b,email:c@d"; NULL: none */
    const char *eku;           /* e.g. "emailProtection"; NULL: none */
    const char *ku;            /* e.g. "digitalSignature,keyEncipherment"; NULL: none */
    const char *comment;       /* nsComment, to make big certificates */
    int64_t not_before, not_after;
    long serial;
} cert_opts;

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    assert_non_null(ext);
    assert_true(X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const cert_opts *o)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), o->serial ? o->serial : 1);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)o->cn, -1, -1, 0);
    if (o->subject_email)
        X509_NAME_add_entry_by_NID(nm, NID_pkcs9_emailAddress, MBSTRING_ASC,
                                   (const unsigned char *)o->subject_email, -1, -1, 0);
    assert_true(X509_set_issuer_name(x, o->issuer_cert ? X509_get_subject_name(o->issuer_cert) : nm));
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)o->not_before));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)o->not_after));
    assert_true(X509_set_pubkey(x, o->key));
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, o->issuer_cert ? (X509 *)(uintptr_t)o->issuer_cert : x, x, NULL, NULL, 0);
    if (o->san)
        add_ext(x, &ctx, NID_subject_alt_name, o->san);
    if (o->eku)
        add_ext(x, &ctx, NID_ext_key_usage, o->eku);
    if (o->ku)
        add_ext(x, &ctx, NID_key_usage, o->ku);
    if (o->comment)
        add_ext(x, &ctx, NID_netscape_comment, o->comment);
    assert_true(X509_sign(x, o->signer ? o->signer : o->key, EVP_sha256()) > 0);
    return x;
}

static unsigned char *der_of(const X509 *x, size_t *n)
{
    unsigned char *d = NULL;
    int len = i2d_X509(x, &d);
    assert_true(len > 0);
    *n = (size_t)len;
    return d;
}

static EVP_PKEY *g_rsa, *g_ec;

static int keys_setup(void **state)
{
    (void)state;
    g_rsa = EVP_RSA_gen(2048);
    g_ec = EVP_EC_gen("P-256");
    return g_rsa && g_ec ? 0 : -1;
}

static int keys_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_ec);
    return 0;
}

static cert_opts user_opts(EVP_PKEY *key)
{
    return (cert_opts){.key = key,
                       .cn = "Alice",
                       .subject_email = "alice@example.com",
                       .san = "email:Alice@Example.com,email:bob@example.com,DNS:example.com",
                       .eku = "emailProtection,clientAuth",
                       .ku = "digitalSignature,keyEncipherment",
                       .not_before = NOW - 10 * DAY,
                       .not_after = NOW + 365 * DAY,
                       .serial = 0x1234};
}

/* The value's digest is of every byte, whether the parse reused the certificate's fingerprint or not. */
static void value_digest_covers_the_whole_value(void **state)
{
    (void)state;
    cert_opts o = user_opts(g_ec);
    X509 *x = make_cert(&o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    unsigned char *longer = malloc(n + 3);
    assert_non_null(longer);
    memcpy(longer, d, n);
    memcpy(longer + n, "\x05\x00\x00", 3); /* trailing data: the value is more than the certificate */
    static const unsigned char garbage[] = {0x04, 0x02, 'h', 'i'};
    const struct {
        cs_cert_attr attr;
        const unsigned char *v;
        size_t n;
    } cases[] = {
        {CS_CERT_ATTR_USER_CERTIFICATE, d, n},       {CS_CERT_ATTR_USER_CERTIFICATE, longer, n + 3},
        {CS_CERT_ATTR_USER_CERTIFICATE, garbage, 4}, {CS_CERT_ATTR_USER_SMIME_CERTIFICATE, garbage, 4},
        {CS_CERT_ATTR_USER_CERTIFICATE, garbage, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_cert_value *v = parse_ok(cases[i].attr, cases[i].v, cases[i].n);
        char want[CS_SHA256_HEX_LEN], got[65];
        unsigned char md[32], want_md[32];
        cs_sha256_hex(cases[i].v, cases[i].n, want);
        cs_cert_value_sha256_hex(v, got);
        assert_string_equal(got, want);
        cs_cert_value_sha256(v, md);
        assert_non_null(SHA256(cases[i].v, cases[i].n, want_md));
        assert_memory_equal(md, want_md, 32);
        cs_cert_value_free(v);
    }
    free(longer);
    OPENSSL_free(d);
    X509_free(x);
}

/*
 * Subject and issuer text equals OpenSSL's RFC 2253 printing, for the names the fast printer takes (plain
 * ASCII in PrintableString / UTF8String / IA5String) and for those it hands to OpenSSL (characters RFC 2253
 * escapes, leading '#' or space, trailing space, UTF-8, T61String, multi-valued RDNs, unknown types).
 */
static void name_text_equals_openssl_printing(void **state)
{
    (void)state;
    static const struct {
        const char *field;
        int type; /* V_ASN1_* of the value, set as is */
        const char *value;
        int set; /* X509_NAME_add_entry_by_txt's set: 0 a new RDN, -1 joins the previous RDN */
        int len; /* 0: strlen(value) */
    } names[][4] = {
        {{"CN", V_ASN1_UTF8STRING, "Alice Example", 0, 0}, {"O", V_ASN1_PRINTABLESTRING, "Corp", 0, 0}},
        {{"DC", V_ASN1_IA5STRING, "example", 0, 0}, {"UID", V_ASN1_UTF8STRING, "alice", 0, 0}},
        {{"CN", V_ASN1_UTF8STRING, "Smith, Alice", 0, 0}},
        {{"CN", V_ASN1_UTF8STRING, "a+b<c>d;e\\f\"g", 0, 0}},
        {{"CN", V_ASN1_UTF8STRING, "#hash", 0, 0}, {"OU", V_ASN1_UTF8STRING, " lead", 0, 0}},
        {{"CN", V_ASN1_UTF8STRING, "trail ", 0, 0}},
        {{"CN", V_ASN1_UTF8STRING, "J\xc3\xbcrgen", 0, 0}},
        {{"CN", V_ASN1_T61STRING, "t61", 0, 0}},
        {{"CN", V_ASN1_BMPSTRING, "\0b\0m\0p", 0, 6}},
        {{"CN", V_ASN1_UTF8STRING, "multi", 0, 0}, {"UID", V_ASN1_UTF8STRING, "valued", -1, 0}},
        {{"1.2.3.4", V_ASN1_UTF8STRING, "unknown type", 0, 0}},
        {{"CN", V_ASN1_UTF8STRING, "x\x01y", 0, 0}},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cert_opts o = user_opts(g_ec);
        X509 *x = make_cert(&o);
        X509_NAME *nm = X509_NAME_new();
        assert_non_null(nm);
        for (size_t j = 0; j < 4 && names[i][j].field; j++)
            assert_true(X509_NAME_add_entry_by_txt(
                nm, names[i][j].field, names[i][j].type, (const unsigned char *)names[i][j].value,
                names[i][j].len ? names[i][j].len : -1, -1, names[i][j].set));
        assert_true(X509_set_subject_name(x, nm));
        assert_true(X509_set_issuer_name(x, nm));
        assert_true(X509_sign(x, g_ec, EVP_sha256()) > 0);
        size_t n;
        unsigned char *d = der_of(x, &n);
        cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
        assert_int_equal(cs_cert_value_cert_count(v), 1);
        char label[32];
        snprintf(label, sizeof label, "name %zu", i);
        check_against_openssl(d, cs_cert_value_cert(v, 0), label);
        cs_cert_value_free(v);
        OPENSSL_free(d);
        X509_NAME_free(nm);
        X509_free(x);
    }
}

/* ------------------------------------------------------------ fast readers against the OpenSSL path */

/* Asserts the two summaries are the same, field for field. */
static void same_info(const cs_cert_info *a, const cs_cert_info *b, const char *label)
{
    if (strcmp(a->sha256_hex, b->sha256_hex) != 0 || a->der_offset != b->der_offset ||
        a->der_len != b->der_len)
        fail_msg("%s: extent differs", label);
#define SAME_STR(f)                                                                                          \
    if ((a->f == NULL) != (b->f == NULL) || (a->f && strcmp(a->f, b->f) != 0))                               \
        fail_msg("%s: " #f " differs: fast \"%s\", OpenSSL path \"%s\"", label, a->f ? a->f : "(null)",      \
                 b->f ? b->f : "(null)");
#define SAME_NUM(f)                                                                                          \
    if (a->f != b->f)                                                                                        \
        fail_msg("%s: " #f " differs: fast %lld, OpenSSL path %lld", label, (long long)a->f, (long long)b->f);
    SAME_STR(subject)
    SAME_STR(issuer)
    SAME_STR(serial_hex)
    SAME_STR(reason)
    SAME_STR(ec_curve)
    SAME_NUM(n_emails)
    SAME_NUM(not_before)
    SAME_NUM(not_after)
    SAME_NUM(has_key_usage)
    SAME_NUM(key_usage)
    SAME_NUM(has_eku)
    SAME_NUM(eku_email_protection)
    SAME_NUM(eku_any)
    SAME_NUM(key_alg)
    SAME_NUM(key_bits)
    SAME_NUM(self_issued)
    SAME_NUM(problems)
#undef SAME_STR
#undef SAME_NUM
    for (size_t i = 0; i < a->n_emails; i++)
        if (strcmp(a->emails[i], b->emails[i]) != 0)
            fail_msg("%s: e-mail %zu differs: fast %s, OpenSSL path %s", label, i, a->emails[i],
                     b->emails[i]);
}

/*
 * Parses d with the fast readers and without (cs_cert_fast_paths), asserts the same result, and tells
 * whether the fast readers settled the subject and the extensions. Returns the fast parse's value (caller
 * frees it with cs_cert_value_free).
 */
static cs_cert_value *fast_and_slow(const unsigned char *d, size_t n, const char *label, bool *subj_fast,
                                    bool *ext_fast)
{
    unsigned long s0, e0, s1, e1;
    cs_cert_fast_path_counts(&s0, &e0);
    cs_cert_value *fast = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
    cs_cert_fast_path_counts(&s1, &e1);
    cs_cert_fast_paths(false);
    cs_cert_value *slow = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
    cs_cert_fast_paths(true);
    unsigned long s2, e2;
    cs_cert_fast_path_counts(&s2, &e2);
    assert_true(s2 == s1 && e2 == e1); /* switched off, they did nothing */
    *subj_fast = s1 != s0;
    *ext_fast = e1 != e0;
    assert_int_equal(cs_cert_value_problems(fast), cs_cert_value_problems(slow));
    assert_int_equal(cs_cert_value_cert_count(fast), cs_cert_value_cert_count(slow));
    for (size_t i = 0; i < cs_cert_value_cert_count(fast); i++)
        same_info(cs_cert_value_cert(fast, i), cs_cert_value_cert(slow, i), label);
    cs_cert_value_free(slow);
    return fast;
}

typedef struct name_spec {
    const char *field;
    int type;
    const char *value;
    int set; /* 0: a new RDN, -1: joins the previous one */
} name_spec;

static X509_NAME *name_from(const name_spec *spec)
{
    X509_NAME *nm = X509_NAME_new();
    assert_non_null(nm);
    for (size_t j = 0; spec[j].field; j++) /* up to the {NULL} that ends each list */
        assert_true(X509_NAME_add_entry_by_txt(nm, spec[j].field, spec[j].type,
                                               (const unsigned char *)spec[j].value, -1, -1, spec[j].set));
    return nm;
}

/* Replaces the first `n` bytes equal to `from` after `after` (a byte string that must occur) by `to`. */
static void patch_after(unsigned char *d, size_t len, const unsigned char *after, size_t an,
                        const unsigned char *from, const unsigned char *to, size_t n)
{
    for (size_t i = 0; i + an <= len; i++) {
        if (memcmp(d + i, after, an) != 0)
            continue;
        for (size_t j = i + an; j + n <= len; j++) {
            if (memcmp(d + j, from, n) == 0) {
                memcpy(d + j, to, n);
                return;
            }
        }
    }
    fail_msg("patch: pattern not found");
}

static const unsigned char KU_OID_DER[] = {0x06, 0x03, 0x55, 0x1d, 0x0f};

/*
 * Each boundary of the fast readers: what they take (and must read exactly as OpenSSL's decoders do) and
 * what they hand back to OpenSSL (and the OpenSSL path then decides, as before them).
 */
static void fast_readers_match_openssl_path(void **state)
{
    (void)state;
    static const name_spec plain[] = {{"O", V_ASN1_PRINTABLESTRING, "Corp", 0},
                                      {"CN", V_ASN1_UTF8STRING, "Alice", 0},
                                      {"emailAddress", V_ASN1_IA5STRING, "alice@example.com", 0},
                                      {NULL, 0, NULL, 0}};
    static const name_spec spaced[] = {{"CN", V_ASN1_UTF8STRING, "Alice   EXAMPLE", 0}, {NULL, 0, NULL, 0}};
    static const name_spec padded[] = {{"CN", V_ASN1_UTF8STRING, " alice example  ", 0}, {NULL, 0, NULL, 0}};
    static const name_spec folded[] = {{"CN", V_ASN1_PRINTABLESTRING, "alice example", 0},
                                       {NULL, 0, NULL, 0}};
    static const name_spec other_ca[] = {{"CN", V_ASN1_UTF8STRING, "Alice Examples", 0}, {NULL, 0, NULL, 0}};
    static const name_spec multi[] = {
        {"CN", V_ASN1_UTF8STRING, "multi", 0}, {"UID", V_ASN1_UTF8STRING, "valued", -1}, {NULL, 0, NULL, 0}};
    static const name_spec utf8[] = {{"CN", V_ASN1_UTF8STRING, "J\xc3\xbcrgen", 0}, {NULL, 0, NULL, 0}};
    static const name_spec t61[] = {{"CN", V_ASN1_T61STRING, "t61", 0}, {NULL, 0, NULL, 0}};
    static const name_spec tab[] = {{"CN", V_ASN1_UTF8STRING, "a\tb", 0}, {NULL, 0, NULL, 0}};
    static const unsigned char crit_true[] = {0x01, 0x01, 0xff};
    static const unsigned char crit_false[] = {0x01, 0x01, 0x00};
    static const unsigned char crit_one[] = {0x01, 0x01, 0x01};
    static const unsigned char os_prim[] = {0x04};
    static const unsigned char os_cons[] = {0x24};
    static const struct {
        const char *label;
        const name_spec *subject;
        const name_spec *issuer; /* NULL: the subject */
        const char *san, *ku, *eku;
        const unsigned char *from, *to; /* a 1- or 3-byte patch after the keyUsage OID; NULL: none */
        size_t patch_len;
        bool subj_fast, ext_fast;
        int self_issued; /* -1: not checked */
    } cases[] = {
        {"plain", plain, NULL, "email:a@example.com,DNS:example.com,URI:http://x/,IP:10.0.0.1,RID:1.2.3",
         "critical,digitalSignature,keyEncipherment", "emailProtection", NULL, NULL, 0, true, true, 1},
        {"canonical equality", spaced, folded, "email:a@example.com", "digitalSignature",
         "anyExtendedKeyUsage", NULL, NULL, 0, true, true, 1},
        /* RFC 2253 printing needs OpenSSL for the padding (the subject is decoded), the comparison not */
        {"canonical equality, padded", padded, folded, NULL, NULL, NULL, NULL, NULL, 0, false, false, 1},
        {"canonical inequality", spaced, other_ca, "email:a@example.com", NULL, NULL, NULL, NULL, 0, true,
         true, 0},
        {"no extensions", plain, NULL, NULL, NULL, NULL, NULL, NULL, 0, true, false, 1},
        {"UPN otherName", plain, NULL, "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@corp.example", NULL, NULL,
         NULL, NULL, 0, true, true, 1},
        {"otherName of another type", plain, NULL, "otherName:1.2.3.4;IA5STRING:x", NULL, NULL, NULL, NULL, 0,
         true, false, 1},
        {"directoryName", plain, NULL, "dirName:dir_sect", NULL, NULL, NULL, NULL, 0, true, false, 1},
        {"decipherOnly (bit 8)", plain, NULL, NULL, "keyAgreement,decipherOnly", NULL, NULL, NULL, 0, true,
         true, 1},
        {"critical FALSE spelled out", plain, NULL, NULL, "critical,keyCertSign", NULL, crit_true, crit_false,
         3, true, false, 1},
        {"critical TRUE not 0xff", plain, NULL, NULL, "critical,keyCertSign", NULL, crit_true, crit_one, 3,
         true, false, 1},
        {"constructed OCTET STRING", plain, NULL, NULL, "keyCertSign", NULL, os_prim, os_cons, 1, true, false,
         -1},
        {"multi-valued RDN subject", multi, plain, "email:a@example.com", NULL, NULL, NULL, NULL, 0, false,
         true, 0},
        {"multi-valued RDN issuer", plain, multi, NULL, NULL, NULL, NULL, NULL, 0, false, false, 0},
        {"UTF-8 subject", utf8, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false, 1},
        {"T61String subject", t61, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false, 1},
        {"tab in subject", tab, NULL, NULL, NULL, NULL, NULL, NULL, 0, false, false, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *x = X509_new();
        assert_non_null(x);
        assert_true(X509_set_version(x, 2));
        ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
        X509_NAME *subj = name_from(cases[i].subject);
        X509_NAME *iss = name_from(cases[i].issuer ? cases[i].issuer : cases[i].subject);
        assert_true(X509_set_subject_name(x, subj));
        assert_true(X509_set_issuer_name(x, iss));
        assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(NOW - DAY)));
        assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(NOW + DAY)));
        assert_true(X509_set_pubkey(x, g_ec));
        X509V3_CTX ctx;
        CONF *conf = NCONF_new(NULL);
        long errline = 0;
        BIO *cb = BIO_new_mem_buf("[dir_sect]\nCN=dir\n", -1);
        assert_true(conf && cb && NCONF_load_bio(conf, cb, &errline) > 0);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509V3_set_nconf(&ctx, conf);
        if (cases[i].san)
            add_ext(x, &ctx, NID_subject_alt_name, cases[i].san);
        if (cases[i].ku)
            add_ext(x, &ctx, NID_key_usage, cases[i].ku);
        if (cases[i].eku)
            add_ext(x, &ctx, NID_ext_key_usage, cases[i].eku);
        assert_true(X509_sign(x, g_ec, EVP_sha256()) > 0);
        size_t n;
        unsigned char *d = der_of(x, &n);
        if (cases[i].from) /* the signature no longer matches; cs_cert does not check it */
            patch_after(d, n, KU_OID_DER, sizeof KU_OID_DER, cases[i].from, cases[i].to, cases[i].patch_len);
        bool sf = false, ef = false;
        cs_cert_value *v = fast_and_slow(d, n, cases[i].label, &sf, &ef);
        if (sf != cases[i].subj_fast || ef != cases[i].ext_fast)
            fail_msg("%s: fast subject %d (want %d), fast extensions %d (want %d)", cases[i].label, sf,
                     cases[i].subj_fast, ef, cases[i].ext_fast);
        if (cases[i].self_issued >= 0 && cs_cert_value_cert_count(v) == 1)
            assert_int_equal(cs_cert_value_cert(v, 0)->self_issued, cases[i].self_issued);
        cs_cert_value_free(v);
        OPENSSL_free(d);
        BIO_free(cb);
        NCONF_free(conf);
        X509_NAME_free(subj);
        X509_NAME_free(iss);
        X509_free(x);
    }
}

static void rsa_user_certificate(void **state)
{
    (void)state;
    cert_opts o = user_opts(g_rsa);
    X509 *x = make_cert(&o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
    assert_int_equal(cs_cert_value_format(v), CS_CERT_FORMAT_X509);
    assert_int_equal(cs_cert_value_verdict(v), 0);
    assert_int_equal(cs_cert_value_cert_count(v), 1);
    assert_int_equal(cs_cert_value_user_index(v), 0);
    const cs_cert_info *ci = cs_cert_value_user_cert(v);
    assert_string_equal(ci->subject, "emailAddress=alice@example.com,CN=Alice");
    assert_string_equal(ci->issuer, ci->subject);
    assert_true(ci->self_issued);
    assert_string_equal(ci->serial_hex, "1234");
    /* SAN first, then subject; alice@example.com differs only in case from Alice@Example.com */
    assert_int_equal(ci->n_emails, 2);
    assert_string_equal(ci->emails[0], "Alice@Example.com");
    assert_string_equal(ci->emails[1], "bob@example.com");
    assert_int_equal(ci->not_before, NOW - 10 * DAY);
    assert_int_equal(ci->not_after, NOW + 365 * DAY);
    assert_true(ci->has_key_usage);
    assert_int_equal(ci->key_usage, CS_CERT_KU_DIGITAL_SIGNATURE | CS_CERT_KU_KEY_ENCIPHERMENT);
    assert_true(ci->has_eku);
    assert_true(ci->eku_email_protection);
    assert_false(ci->eku_any);
    assert_int_equal(ci->key_alg, CS_CERT_KEY_RSA);
    assert_int_equal(ci->key_bits, 2048);
    assert_null(ci->ec_curve);
    assert_int_equal(ci->der_offset, 0);
    assert_int_equal(ci->der_len, n);
    check_against_openssl(d, ci, "rsa");
    cs_cert_value_free(v);
    OPENSSL_free(d);
    X509_free(x);
}

static void ec_user_certificate(void **state)
{
    (void)state;
    cert_opts o = user_opts(g_ec);
    o.ku = "digitalSignature,keyAgreement";
    X509 *x = make_cert(&o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
    const cs_cert_info *ci = cs_cert_value_user_cert(v);
    assert_non_null(ci);
    assert_int_equal(ci->key_alg, CS_CERT_KEY_EC);
    assert_int_equal(ci->key_bits, 256);
    assert_string_equal(ci->ec_curve, "P-256");
    assert_string_equal(cs_cert_key_alg_name(ci->key_alg), "ec");
    assert_int_equal(ci->key_usage, CS_CERT_KU_DIGITAL_SIGNATURE | CS_CERT_KU_KEY_AGREEMENT);
    check_against_openssl(d, ci, "ec");
    cs_cert_value_free(v);
    OPENSSL_free(d);
    X509_free(x);
}

static cs_cert_problems verdict_of(const cert_opts *o)
{
    X509 *x = make_cert(o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
    cs_cert_problems p = cs_cert_value_verdict(v);
    cs_cert_value_free(v);
    OPENSSL_free(d);
    X509_free(x);
    return p;
}

static void validity_and_usage_problems(void **state)
{
    (void)state;
    cert_opts o = user_opts(g_ec);
    o.not_before = NOW - 20 * DAY;
    o.not_after = NOW - 1;
    assert_int_equal(verdict_of(&o), BIT(EXPIRED));
    o.not_after = NOW; /* valid through its notAfter second */
    assert_int_equal(verdict_of(&o), 0);
    o.not_before = NOW + 1;
    o.not_after = NOW + 20 * DAY;
    assert_int_equal(verdict_of(&o), BIT(NOT_YET_VALID));

    o = user_opts(g_ec);
    o.eku = "serverAuth,clientAuth";
    assert_int_equal(verdict_of(&o), BIT(NO_EMAIL_PROTECTION));
    o.eku = "serverAuth,anyExtendedKeyUsage";
    assert_int_equal(verdict_of(&o), 0);
    o.eku = NULL; /* no EKU: any usage */
    assert_int_equal(verdict_of(&o), 0);

    o = user_opts(g_ec);
    o.san = "DNS:example.com";
    o.subject_email = NULL;
    assert_int_equal(verdict_of(&o), BIT(NO_EMAIL_ADDRESS));
    o.subject_email = "only@subject.example"; /* the subject alone is enough */
    assert_int_equal(verdict_of(&o), 0);
}

/* A CA and a user certificate it issued. */
static void make_chain(X509 **ca, X509 **user)
{
    cert_opts co = {.key = g_rsa,
                    .cn = "Test CA",
                    .ku = "keyCertSign,cRLSign",
                    .not_before = NOW - DAY,
                    .not_after = NOW + 3650 * DAY,
                    .serial = 1};
    *ca = make_cert(&co);
    cert_opts uo = user_opts(g_ec);
    uo.signer = g_rsa;
    uo.issuer_cert = *ca;
    uo.serial = 2;
    *user = make_cert(&uo);
}

/* The issuer cache (cs_cert.c): a second certificate from the same issuer takes the issuer's text from the
 * cache, and "self-issued" is still decided against that certificate's own subject, both ways. */
static void issuer_cache_keeps_results(void **state)
{
    (void)state;
    X509 *ca = NULL, *user = NULL;
    make_chain(&ca, &user);
    size_t ca_n, user_n;
    unsigned char *ca_d = der_of(ca, &ca_n), *user_d = der_of(user, &user_n);
    for (int round = 0; round < 3; round++) { /* round 0 may fill the cache; the others read it */
        cs_cert_value *cv = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, ca_d, ca_n);
        cs_cert_value *uv = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, user_d, user_n);
        const cs_cert_info *c = cs_cert_value_cert(cv, 0), *u = cs_cert_value_cert(uv, 0);
        assert_string_equal(c->issuer, "CN=Test CA");
        assert_string_equal(u->issuer, "CN=Test CA");
        assert_string_equal(u->subject, "emailAddress=alice@example.com,CN=Alice");
        assert_true(c->self_issued);
        assert_false(u->self_issued);
        cs_cert_value_free(cv);
        cs_cert_value_free(uv);
    }
    /* More issuers than the cache holds: each result is still its own. */
    for (int i = 0; i < 20; i++) {
        char cn[32];
        snprintf(cn, sizeof cn, "Issuer %d", i);
        cert_opts o = user_opts(g_ec);
        o.cn = cn;
        o.subject_email = NULL;
        X509 *x = make_cert(&o);
        size_t n;
        unsigned char *d = der_of(x, &n);
        cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
        char want[40];
        snprintf(want, sizeof want, "CN=%s", cn);
        assert_string_equal(cs_cert_value_cert(v, 0)->issuer, want);
        assert_true(cs_cert_value_cert(v, 0)->self_issued);
        cs_cert_value_free(v);
        OPENSSL_free(d);
        X509_free(x);
    }
    OPENSSL_free(ca_d);
    OPENSSL_free(user_d);
    X509_free(ca);
    X509_free(user);
}

static void pkcs7_certs_only(void **state)
{
    (void)state;
    X509 *ca, *user;
    make_chain(&ca, &user);
    PKCS7 *p7 = PKCS7_new();
    assert_true(PKCS7_set_type(p7, NID_pkcs7_signed));
    assert_true(PKCS7_content_new(p7, NID_pkcs7_data));
    /* CA first, so "first certificate" would be the wrong answer */
    assert_true(PKCS7_add_certificate(p7, ca));
    assert_true(PKCS7_add_certificate(p7, user));
    unsigned char *d = NULL;
    int n = i2d_PKCS7(p7, &d);
    assert_true(n > 0);
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, (size_t)n);
    assert_int_equal(cs_cert_value_format(v), CS_CERT_FORMAT_PKCS7);
    assert_int_equal(cs_cert_value_cert_count(v), 2);
    assert_int_equal(cs_cert_value_user_index(v), 1);
    assert_string_equal(cs_cert_value_user_cert(v)->subject, "emailAddress=alice@example.com,CN=Alice");
    assert_string_equal(cs_cert_value_cert(v, 0)->subject, "CN=Test CA");
    assert_true(cs_cert_value_cert(v, 0)->problems & BIT(NO_EMAIL_ADDRESS));
    assert_int_equal(cs_cert_value_verdict(v), 0); /* the CA's problems are not the user's */
    for (size_t i = 0; i < 2; i++)
        check_against_openssl(d, cs_cert_value_cert(v, i), "pkcs7");
    assert_null(cs_cert_value_cert(v, 2));
    cs_cert_value_free(v);
    OPENSSL_free(d);
    PKCS7_free(p7);

    /* The same without certificates. */
    p7 = PKCS7_new();
    assert_true(PKCS7_set_type(p7, NID_pkcs7_signed));
    assert_true(PKCS7_content_new(p7, NID_pkcs7_data));
    d = NULL;
    n = i2d_PKCS7(p7, &d);
    assert_true(n > 0);
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, (size_t)n);
    assert_int_equal(cs_cert_value_verdict(v), BIT(NO_CERTIFICATES));
    assert_int_equal(cs_cert_value_user_index(v), -1);
    assert_null(cs_cert_value_user_cert(v));
    cs_cert_value_free(v);
    OPENSSL_free(d);
    PKCS7_free(p7);
    X509_free(ca);
    X509_free(user);
}

static void put(unsigned char *buf, size_t *at, const void *src, size_t n)
{
    memcpy(buf + *at, src, n);
    *at += n;
}

static void pkcs7_ber_indefinite(void **state)
{
    (void)state;
    X509 *ca, *user;
    make_chain(&ca, &user);
    size_t un, cn;
    unsigned char *ud = der_of(user, &un), *cd = der_of(ca, &cn);
    static const unsigned char head[] = {
        0x30, 0x80,                                                                   /* ContentInfo */
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,             /* signedData */
        0xa0, 0x80,                                                                   /* [0] */
        0x30, 0x80,                                                                   /* SignedData */
        0x02, 0x01, 0x01,                                                             /* version */
        0x31, 0x00,                                                                   /* digestAlgorithms */
        0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, /* data ... */
        0x00, 0x00,                                                                   /* ... no content */
        0xa0, 0x80,                                                                   /* certificates */
    };
    static const unsigned char tail[] = {0x00, 0x00, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    size_t n = 0;
    unsigned char *d = malloc(sizeof head + un + cn + sizeof tail);
    assert_non_null(d);
    put(d, &n, head, sizeof head);
    put(d, &n, ud, un);
    put(d, &n, cd, cn);
    put(d, &n, tail, sizeof tail);
    /* OpenSSL agrees this is a valid PKCS#7 */
    const unsigned char *p = d;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)n);
    assert_non_null(p7);
    assert_int_equal(sk_X509_num(p7->d.sign->cert), 2);
    PKCS7_free(p7);
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n);
    assert_int_equal(cs_cert_value_verdict(v), 0);
    assert_int_equal(cs_cert_value_cert_count(v), 2);
    assert_int_equal(cs_cert_value_user_index(v), 0);
    assert_int_equal(cs_cert_value_cert(v, 0)->der_offset, sizeof head);
    check_against_openssl(d, cs_cert_value_cert(v, 1), "ber");
    cs_cert_value_free(v);
    /* Without the final end-of-contents it is unreadable, with the offset of the trouble. */
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n - 2);
    assert_int_equal(cs_cert_value_problems(v), BIT(UNPARSEABLE));
    assert_non_null(strstr(cs_cert_value_reason(v), "offset"));
    cs_cert_value_free(v);
    free(d);
    OPENSSL_free(ud);
    OPENSSL_free(cd);
    X509_free(ca);
    X509_free(user);
}

static void setting(unsigned char *buf, size_t *at, unsigned tag, const unsigned char *data, size_t n)
{
    unsigned char h[4] = {(unsigned char)tag, (unsigned char)(tag >> 8), (unsigned char)((n + 4) & 0xff),
                          (unsigned char)((n + 4) >> 8)};
    put(buf, at, h, 4);
    put(buf, at, data, n);
}

static void msoxoabk_tagged_format(void **state)
{
    (void)state;
    X509 *ca, *user;
    make_chain(&ca, &user);
    size_t un, cn;
    unsigned char *ud = der_of(user, &un), *cd = der_of(ca, &cn);
    static const unsigned char version[] = {0x01, 0x00, 0x00, 0x00};
    unsigned char *d = malloc(64 + un + cn);
    size_t n = 0;
    setting(d, &n, 0x0001, version, sizeof version);
    setting(d, &n, 0x0004, cd, cn); /* chain first: the KeyExchangeCertificate must still win */
    setting(d, &n, 0x0003, ud, un);
    setting(d, &n, 0x000b, (const unsigned char *)"A\0l\0i\0c\0e\0\0\0", 12); /* a display name */
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n);
    assert_int_equal(cs_cert_value_format(v), CS_CERT_FORMAT_MSOXOABK);
    assert_int_equal(cs_cert_value_cert_count(v), 2);
    assert_int_equal(cs_cert_value_user_index(v), 1);
    assert_int_equal(cs_cert_value_verdict(v), 0);
    check_against_openssl(d, cs_cert_value_user_cert(v), "msoxoabk");
    cs_cert_value_free(v);

    /* A setting that claims more bytes than there are. */
    d[2] = 0xff;
    d[3] = 0xff;
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n);
    assert_true(cs_cert_value_problems(v) & BIT(UNPARSEABLE));
    assert_non_null(strstr(cs_cert_value_reason(v), "MS-OXOABK"));
    cs_cert_value_free(v);
    /* A length below the 4 header bytes would loop forever if accepted. */
    d[2] = 0x02;
    d[3] = 0x00;
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n);
    assert_true(cs_cert_value_problems(v) & BIT(UNPARSEABLE));
    cs_cert_value_free(v);
    /* Settings, but no certificate. */
    n = 0;
    setting(d, &n, 0x0001, version, sizeof version);
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n);
    assert_int_equal(cs_cert_value_verdict(v), BIT(NO_CERTIFICATES));
    cs_cert_value_free(v);
    free(d);
    OPENSSL_free(ud);
    OPENSSL_free(cd);
    X509_free(ca);
    X509_free(user);
}

static void wrong_format_for_attribute(void **state)
{
    (void)state;
    cert_opts o = user_opts(g_ec);
    X509 *x = make_cert(&o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    /* A bare certificate in userSMIMECertificate: summarised, and flagged. */
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, d, n);
    assert_int_equal(cs_cert_value_verdict(v), BIT(UNSUPPORTED_FORMAT));
    assert_int_equal(cs_cert_value_cert_count(v), 1);
    cs_cert_value_free(v);
    /* A PKCS#7 in userCertificate is no certificate. */
    PKCS7 *p7 = PKCS7_new();
    assert_true(PKCS7_set_type(p7, NID_pkcs7_signed));
    assert_true(PKCS7_content_new(p7, NID_pkcs7_data));
    assert_true(PKCS7_add_certificate(p7, x));
    unsigned char *pd = NULL;
    int pn = i2d_PKCS7(p7, &pd);
    v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, pd, (size_t)pn);
    assert_int_equal(cs_cert_value_verdict(v), BIT(UNPARSEABLE));
    assert_int_equal(cs_cert_value_cert_count(v), 0);
    cs_cert_value_free(v);
    /* A ContentInfo of another type. */
    pd[14] = 0x03; /* signedData 1.7.2 -> envelopedData 1.7.3 */
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, pd, (size_t)pn);
    assert_int_equal(cs_cert_value_verdict(v), BIT(UNSUPPORTED_FORMAT));
    assert_non_null(strstr(cs_cert_value_reason(v), "1.2.840.113549.1.7.3"));
    cs_cert_value_free(v);
    OPENSSL_free(pd);
    PKCS7_free(p7);
    OPENSSL_free(d);
    X509_free(x);
}

static void large_values(void **state)
{
    (void)state;
    /* A real certificate over AD's limit: flagged, still summarised. */
    size_t clen = 39000;
    char *comment = malloc(clen + 1);
    memset(comment, 'x', clen);
    comment[clen] = '\0';
    cert_opts o = user_opts(g_ec);
    o.comment = comment;
    X509 *x = make_cert(&o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    assert_true(n > 39000 && n < 41000);
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, d, n);
    assert_int_equal(cs_cert_value_verdict(v), BIT(TOO_LARGE));
    assert_int_equal(cs_cert_value_user_cert(v)->n_emails, 2);
    cs_cert_value_free(v);
    OPENSSL_free(d);
    X509_free(x);
    free(comment);

    /* A small certificate padded to 40,000 bytes: too large and trailing data. */
    o = user_opts(g_ec);
    x = make_cert(&o);
    unsigned char *small = der_of(x, &n);
    unsigned char *big = calloc(1, 40000);
    memcpy(big, small, n);
    v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, big, 40000);
    assert_int_equal(cs_cert_value_verdict(v), BIT(TOO_LARGE) | BIT(TRAILING_DATA));
    assert_int_equal(cs_cert_value_cert_count(v), 1);
    assert_non_null(strstr(cs_cert_value_reason(v), "bytes after the certificate"));
    cs_cert_value_free(v);
    free(big);
    OPENSSL_free(small);
    X509_free(x);
}

static void garbage_empty_truncated(void **state)
{
    (void)state;
    const cs_cert_attr attrs[] = {CS_CERT_ATTR_USER_CERTIFICATE, CS_CERT_ATTR_USER_SMIME_CERTIFICATE};
    cs_cert_value *v = NULL;
    for (size_t a = 0; a < 2; a++) {
        v = parse_ok(attrs[a], NULL, 0);
        assert_int_equal(cs_cert_value_verdict(v), BIT(UNPARSEABLE));
        assert_string_equal(cs_cert_value_reason(v), "value: empty");
        cs_cert_value_free(v);
    }
    unsigned char junk[1024];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        seed = seed * 1103515245u + 12345u;
        junk[i] = (unsigned char)(seed >> 16);
    }
    junk[0] = 0x30; /* looks like DER at first */
    v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, junk, sizeof junk);
    assert_true(cs_cert_value_verdict(v) & BIT(UNPARSEABLE));
    assert_int_equal(cs_cert_value_cert_count(v), 0);
    cs_cert_value_free(v);
    junk[0] = 0x42; /* MS-OXOABK path */
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, junk, sizeof junk);
    assert_true(cs_cert_value_verdict(v) & (BIT(UNPARSEABLE) | BIT(NO_CERTIFICATES)));
    cs_cert_value_free(v);

    /* Every truncation of a good certificate is unreadable, never a crash. */
    cert_opts o = user_opts(g_ec);
    X509 *x = make_cert(&o);
    size_t n;
    unsigned char *d = der_of(x, &n);
    for (size_t len = 1; len < n; len++) {
        unsigned char *copy = malloc(len); /* exact size, so ASan sees any over-read */
        memcpy(copy, d, len);
        v = parse_ok(CS_CERT_ATTR_USER_CERTIFICATE, copy, len);
        if (!(cs_cert_value_problems(v) & BIT(UNPARSEABLE)))
            fail_msg("truncated to %zu of %zu bytes but not unparseable", len, n);
        assert_non_null(cs_cert_value_reason(v));
        cs_cert_value_free(v);
        free(copy);
    }
    OPENSSL_free(d);
    X509_free(x);
}

/*
 * A set whose certificates are all unreadable has no user certificate, so the
 * problem must be on the value: otherwise the verdict (value problems plus the
 * user certificate's) would be empty, i.e. "usable".
 */
static void all_certificates_unreadable(void **state)
{
    (void)state;
    /* ContentInfo{signedData, [0]{SignedData{1, {}, {data}, [0]{SEQUENCE{INTEGER 1}}, {}}}} */
    static const unsigned char p7[] = {
        0x30, 0x2a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, /* signedData */
        0xa0, 0x1d, 0x30, 0x1b, 0x02, 0x01, 0x01, 0x31, 0x00,                         /* version, digests */
        0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, /* data */
        0xa0, 0x05, 0x30, 0x03, 0x02, 0x01, 0x01,                                     /* certificates */
        0x31, 0x00,                                                                   /* signerInfos */
    };
    cs_cert_value *v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, p7, sizeof p7);
    assert_int_equal(cs_cert_value_format(v), CS_CERT_FORMAT_PKCS7);
    assert_int_equal(cs_cert_value_cert_count(v), 1);
    assert_true(cs_cert_value_cert(v, 0)->problems & BIT(UNPARSEABLE));
    assert_int_equal(cs_cert_value_user_index(v), -1);
    assert_int_equal(cs_cert_value_verdict(v), BIT(UNPARSEABLE));
    assert_non_null(cs_cert_value_reason(v));
    assert_non_null(strstr(cs_cert_value_reason(v), "none of the 1 certificates could be read"));
    cs_cert_value_free(v);

    /* MS-OXOABK: one KeyExchangeCertificate setting holding 4 bytes that are no certificate. */
    static const unsigned char oxo[] = {0x03, 0x00, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef};
    v = parse_ok(CS_CERT_ATTR_USER_SMIME_CERTIFICATE, oxo, sizeof oxo);
    assert_int_equal(cs_cert_value_format(v), CS_CERT_FORMAT_MSOXOABK);
    assert_int_equal(cs_cert_value_cert_count(v), 1);
    assert_int_equal(cs_cert_value_user_index(v), -1);
    assert_int_equal(cs_cert_value_verdict(v), BIT(UNPARSEABLE));
    assert_non_null(cs_cert_value_reason(v));
    assert_non_null(strstr(cs_cert_value_reason(v), "none of the 1 certificates could be read"));
    cs_cert_value_free(v);
}

static void bad_arguments_are_errors(void **state)
{
    (void)state;
    const unsigned char b[1] = {0x30};
    cs_err *err = cs_cert_value_parse(CS_CERT_ATTR_USER_CERTIFICATE, b, 1, NOW, NULL);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    cs_err_free(err);
    cs_cert_value *v = (cs_cert_value *)(uintptr_t)1;
    err = cs_cert_value_parse(CS_CERT_ATTR_USER_CERTIFICATE, NULL, 5, NOW, &v);
    assert_non_null(err);
    assert_null(v);
    assert_non_null(strstr(cs_err_message(err), "NULL"));
    cs_err_free(err);
    err = cs_cert_value_parse((cs_cert_attr)7, b, 1, NOW, &v);
    assert_non_null(err);
    cs_err_free(err);
    cs_cert_value_free(NULL);
    assert_null(cs_cert_value_user_cert(NULL));
}

static void problem_names_are_stable(void **state)
{
    (void)state;
    /* These strings are in events and metrics labels: changing one is a breaking change. */
    static const char *const want[] = {"unparseable",     "too_large",           "expired",
                                       "not_yet_valid",   "no_email_protection", "no_email_address",
                                       "no_certificates", "unsupported_format",  "trailing_data"};
    assert_int_equal(sizeof want / sizeof want[0], CS_CERT_PROBLEM_COUNT);
    for (unsigned i = 0; i < CS_CERT_PROBLEM_COUNT; i++) {
        assert_string_equal(cs_cert_problem_name((cs_cert_problem)i), want[i]);
        cs_cert_problem p;
        assert_true(cs_cert_problem_from_name(want[i], &p));
        assert_int_equal(p, i);
    }
    assert_int_equal(CS_CERT_PROBLEM_TRAILING_DATA, 8);
    assert_string_equal(cs_cert_problem_name((cs_cert_problem)99), "unknown");
    cs_cert_problem p;
    assert_false(cs_cert_problem_from_name("Expired", &p));
    char *s = verdict_string(BIT(EXPIRED) | BIT(NO_EMAIL_ADDRESS));
    assert_string_equal(s, "expired,no_email_address");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(corpus_matches_table),
        cmocka_unit_test(rsa_user_certificate),
        cmocka_unit_test(ec_user_certificate),
        cmocka_unit_test(validity_and_usage_problems),
        cmocka_unit_test(pkcs7_certs_only),
        cmocka_unit_test(pkcs7_ber_indefinite),
        cmocka_unit_test(msoxoabk_tagged_format),
        cmocka_unit_test(wrong_format_for_attribute),
        cmocka_unit_test(large_values),
        cmocka_unit_test(garbage_empty_truncated),
        cmocka_unit_test(all_certificates_unreadable),
        cmocka_unit_test(bad_arguments_are_errors),
        cmocka_unit_test(problem_names_are_stable),
        cmocka_unit_test(issuer_cache_keeps_results),
        cmocka_unit_test(value_digest_covers_the_whole_value),
        cmocka_unit_test(name_text_equals_openssl_printing),
        cmocka_unit_test(fast_readers_match_openssl_path),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
