/*
 * bench_cert_parse: the cs_cert fast path against OpenSSL's full d2i_X509, in
 * one run on the same certificates (a P-256 and an RSA-2048 user certificate
 * made here, or DER files given as arguments). Prints `name: value` lines.
 *
 *   bench_cert_parse [-n N] [cert.der ...]
 */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_cert.h"

#define MAX_CERTS 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char *make_cert(EVP_PKEY *key, int *len)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"Bench User", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"certsync", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    const struct {
        int nid;
        const char *v;
    } exts[] = {{NID_subject_alt_name, "email:bench@example.com"},
                {NID_ext_key_usage, "emailProtection,clientAuth"},
                {NID_key_usage, "digitalSignature,keyEncipherment"},
                {NID_basic_constraints, "CA:FALSE"}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].v);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, key, EVP_sha256());
    unsigned char *d = NULL;
    *len = i2d_X509(x, &d);
    X509_free(x);
    return d;
}

static void bench(const char *name, const unsigned char *d, int len, long n)
{
    for (int i = 0; i < 200; i++) { /* warm-up: OpenSSL's lazy initialisation, caches */
        cs_cert_value *v = NULL;
        cs_err_free(cs_cert_value_parse(CS_CERT_ATTR_USER_CERTIFICATE, d, (size_t)len, 1735689600, &v));
        cs_cert_value_free(v);
        const unsigned char *p = d;
        X509_free(d2i_X509(NULL, &p, len));
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        cs_cert_value *v = NULL;
        cs_err *err = cs_cert_value_parse(CS_CERT_ATTR_USER_CERTIFICATE, d, (size_t)len, 1735689600, &v);
        if (err || cs_cert_value_cert_count(v) != 1) {
            fprintf(stderr, "%s: fast path failed\n", name);
            exit(1);
        }
        cs_cert_value_free(v);
    }
    double t1 = now_s();
    for (long i = 0; i < n; i++) {
        const unsigned char *p = d;
        X509 *x = d2i_X509(NULL, &p, len);
        if (!x) {
            fprintf(stderr, "%s: d2i_X509 failed\n", name);
            exit(1);
        }
        X509_free(x);
    }
    double t2 = now_s();
    double fast = (t1 - t0) / (double)n * 1e6, full = (t2 - t1) / (double)n * 1e6;
    printf("%s.der_bytes: %d\n", name, len);
    printf("%s.fast_summary_us: %.2f\n", name, fast);
    printf("%s.d2i_x509_us: %.2f\n", name, full);
    printf("%s.ratio_d2i_over_fast: %.1f\n", name, full / fast);
}

int main(int argc, char **argv)
{
    long n = 2000;
    int argi = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        n = strtol(argv[2], NULL, 10);
        argi = 3;
    }
    if (n <= 0 || n > 10000000) {
        fprintf(stderr, "usage: bench_cert_parse [-n N (1..10000000)] [cert.der ...]\n");
        return 2;
    }
    printf("iterations: %ld\n", n);
    if (argi < argc) {
        for (int i = argi; i < argc && i - argi < MAX_CERTS; i++) {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                fprintf(stderr, "%s: cannot open\n", argv[i]);
                return 1;
            }
            static unsigned char buf[1 << 20];
            size_t len = fread(buf, 1, sizeof buf, f);
            fclose(f);
            bench(argv[i], buf, (int)len, n);
        }
        return 0;
    }
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);
    int elen = 0, rlen = 0;
    unsigned char *ed = make_cert(ec, &elen), *rd = make_cert(rsa, &rlen);
    if (!ed || !rd) {
        fprintf(stderr, "cannot make the benchmark certificates\n");
        return 1;
    }
    bench("p256", ed, elen, n);
    bench("rsa2048", rd, rlen, n);
    OPENSSL_free(ed);
    OPENSSL_free(rd);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
    return 0;
}
