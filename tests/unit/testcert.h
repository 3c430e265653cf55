/*
 * testcert: certificates, CRLs and PKCS#7 values made with OpenSSL's API for the policy
 * and readiness tests. Everything aborts the test (cmocka fail) on an OpenSSL error.
 */
#ifndef TESTCERT_H
#define TESTCERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

/* Keys are cached per process: generation is the slow part. "rsa1024", "rsa2048", "P-192", "P-224", "P-256", and
 * "rsa2048ca" (the key of every tc_ca certificate). */
EVP_PKEY *tc_key(const char *kind);

/* Frees the cached keys (at the end of main, for the leak checker). */
void tc_free_keys(void);

typedef struct tc_opts {
    const char *kind;          /* key, see tc_key(); NULL = "rsa2048" */
    const char *cn;            /* subject CN; NULL = "Test User" */
    const char *san_email;     /* SAN rfc822Name or NULL */
    const char *subject_email; /* subject emailAddress or NULL */
    int64_t not_before;        /* absolute unix seconds */
    int64_t not_after;
    const char *ku;  /* X509v3 config value, e.g. "critical,digitalSignature,keyEncipherment"; NULL = none */
    const char *eku; /* e.g. "emailProtection", "serverAuth"; NULL = none */
    const char *bc;  /* basicConstraints, e.g. "critical,CA:TRUE"; NULL = none */
    long serial;     /* 0 = 1 */
    X509 *issuer;    /* NULL = self-signed */
    EVP_PKEY *issuer_key;
} tc_opts;

/* A new certificate; caller frees with X509_free(). */
X509 *tc_cert(const tc_opts *o);

/* A CA certificate (RSA 2048, CA:TRUE, keyCertSign+cRLSign) named `cn`, valid around `now`, optionally issued by
 * issuer (NULL = self-signed). Its key is tc_key("rsa2048ca"). Caller frees with X509_free(). */
X509 *tc_ca(const char *cn, int64_t now, X509 *issuer);

/* DER of a certificate; caller frees with free(). */
unsigned char *tc_der(X509 *x, size_t *len);

/* DER of a certs-only PKCS#7 SignedData holding `certs` in order; caller frees with free(). */
unsigned char *tc_p7_der(X509 *const *certs, size_t n, size_t *len);

/* Writes certificates as PEM to a new temporary file; returns its path (caller frees with free(), unlinks). */
char *tc_write_pem_certs(X509 *const *certs, size_t n);

/* A CRL of `ca` (signed with tc_key("rsa2048ca")) listing `serials`, valid around `now`, written as PEM to a new
 * temporary file; returns its path (caller frees with free(), unlinks). */
char *tc_write_crl(X509 *ca, const long *serials, size_t n, int64_t now);

#endif
