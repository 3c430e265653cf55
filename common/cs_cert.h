/*
 * cs_cert: summarise one raw certificate attribute value from the directory.
 *
 * The collector summarises every value it puts in an event; the publisher
 * prunes and checks before it writes. Input is one value of
 *   - userCertificate: a DER X.509 certificate, or
 *   - userSMIMECertificate: a DER/BER CMS/PKCS#7 SignedData (certs-only or with
 *     a small content, with or without signers), or, when the first byte is not
 *     0x30, the tagged PidTagUserX509Certificate format of [MS-OXOABK] 2.2.4.36
 *     (little-endian TAG(2) LENGTH(2, includes the 4 header bytes) DATA; the
 *     certificates are in KeyExchangeCertificate 0x0003, ChainCertificate 0x0004
 *     and SignCertificate 0x0008).
 *
 * Parsing never fails on bad bytes: a value that cannot be read yields a summary
 * with the problem `unparseable` and a reason (the OpenSSL error or the DER
 * offset), so callers keep the raw value and flag it. A cs_err is returned only
 * for bad arguments or when memory runs out.
 *
 * Speed: certificates are not decoded with d2i_X509 (OpenSSL 3 decodes the
 * public key through its provider decoders, ~120 us per certificate). A small
 * bounded DER walker splits Certificate / TBSCertificate and OpenSSL's d2i
 * functions read the names, times and extensions (~10x faster). It rejects
 * what d2i_X509 rejects for our corpus (tests/data/cert_corpus.tsv) and is
 * fuzzed (tests/fuzz/fuzz_cs_cert.c).
 */
#ifndef CS_CERT_H
#define CS_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cs_buf.h"
#include "cs_err.h"

/* AD's rangeUpper for both attributes: larger values are flagged `too_large` (and still parsed). */
#define CS_CERT_MAX_VALUE_LEN 32768
/* At most this many certificates are summarised per value; more are counted in the reason. */
#define CS_CERT_MAX_CERTS 64
/* At most this many e-mail addresses are kept per certificate. */
#define CS_CERT_MAX_EMAILS 4096

typedef enum cs_cert_attr {
    CS_CERT_ATTR_USER_CERTIFICATE,
    CS_CERT_ATTR_USER_SMIME_CERTIFICATE,
} cs_cert_attr;

/*
 * Problems. The numbers and the names are stable: they travel in protobuf
 * events and metrics labels. Append new ones at the end, never renumber.
 * A set of problems is a bit mask: CS_CERT_PROBLEM_BIT(p).
 */
typedef enum cs_cert_problem {
    CS_CERT_PROBLEM_UNPARSEABLE = 0,         /* "unparseable": bytes could not be read (reason says why) */
    CS_CERT_PROBLEM_TOO_LARGE = 1,           /* "too_large": value over CS_CERT_MAX_VALUE_LEN bytes */
    CS_CERT_PROBLEM_EXPIRED = 2,             /* "expired": notAfter < now */
    CS_CERT_PROBLEM_NOT_YET_VALID = 3,       /* "not_yet_valid": notBefore > now */
    CS_CERT_PROBLEM_NO_EMAIL_PROTECTION = 4, /* "no_email_protection": EKU without emailProtection / any */
    CS_CERT_PROBLEM_NO_EMAIL_ADDRESS = 5, /* "no_email_address": no SAN rfc822Name, no subject emailAddress */
    CS_CERT_PROBLEM_NO_CERTIFICATES = 6,  /* "no_certificates": a PKCS#7 / MS-OXOABK value without any */
    CS_CERT_PROBLEM_UNSUPPORTED_FORMAT = 7, /* "unsupported_format": not the format the attribute holds */
    CS_CERT_PROBLEM_TRAILING_DATA = 8, /* "trailing_data": bytes after the structure (or in an extension) */
} cs_cert_problem;
#define CS_CERT_PROBLEM_COUNT 9
#define CS_CERT_PROBLEM_BIT(p) (1u << (unsigned)(p))
typedef uint32_t cs_cert_problems;

/* Stable lowercase name of a problem ("expired"); "unknown" for a value outside the enum. */
const char *cs_cert_problem_name(cs_cert_problem p);

/* Looks a problem up by its name. Returns false when the name is not one of ours. */
bool cs_cert_problem_from_name(const char *name, cs_cert_problem *out);

/*
 * Appends the names in `set`, comma separated in enum order ("expired,no_email_address"),
 * or nothing when the set is empty. Returns false when `out` is full or out of memory.
 */
bool cs_cert_problems_format(cs_cert_problems set, cs_buf *out);

/* What the value turned out to be. */
typedef enum cs_cert_format {
    CS_CERT_FORMAT_UNKNOWN = 0, /* unreadable */
    CS_CERT_FORMAT_X509,        /* a bare certificate */
    CS_CERT_FORMAT_PKCS7,       /* CMS / PKCS#7 SignedData */
    CS_CERT_FORMAT_MSOXOABK,    /* tagged PidTagUserX509Certificate */
} cs_cert_format;
/* "unknown", "x509", "pkcs7", "msoxoabk". */
const char *cs_cert_format_name(cs_cert_format f);

typedef enum cs_cert_key_alg {
    CS_CERT_KEY_OTHER = 0,
    CS_CERT_KEY_RSA, /* rsaEncryption and RSASSA-PSS */
    CS_CERT_KEY_EC,
    CS_CERT_KEY_DSA,
    CS_CERT_KEY_ED25519,
    CS_CERT_KEY_ED448,
} cs_cert_key_alg;
/* "other", "rsa", "ec", "dsa", "ed25519", "ed448". */
const char *cs_cert_key_alg_name(cs_cert_key_alg a);

/* keyUsage bits, in RFC 5280 order (bit n = KeyUsage bit n). */
#define CS_CERT_KU_DIGITAL_SIGNATURE 0x001u
#define CS_CERT_KU_NON_REPUDIATION 0x002u
#define CS_CERT_KU_KEY_ENCIPHERMENT 0x004u
#define CS_CERT_KU_DATA_ENCIPHERMENT 0x008u
#define CS_CERT_KU_KEY_AGREEMENT 0x010u
#define CS_CERT_KU_KEY_CERT_SIGN 0x020u
#define CS_CERT_KU_CRL_SIGN 0x040u
#define CS_CERT_KU_ENCIPHER_ONLY 0x080u
#define CS_CERT_KU_DECIPHER_ONLY 0x100u

/*
 * One certificate's summary. Read-only; owned by the cs_cert_value it came from
 * and valid until cs_cert_value_free(). For a certificate that could not be read
 * (problem `unparseable`) only sha256_hex, der_offset, der_len, problems and
 * reason are set; strings are then "" and numbers 0.
 */
typedef struct cs_cert_info {
    char sha256_hex[65]; /* SHA-256 of the certificate's DER, lowercase hex */
    size_t der_offset;   /* where the certificate's DER starts in the parsed value */
    size_t der_len;      /* its length */
    char *subject;       /* RFC 2253 string */
    char *issuer;        /* RFC 2253 string */
    char *serial_hex;    /* lowercase hex of the magnitude, "-" prefix when negative ("01", "-8001" style) */
    char **emails;       /* SAN rfc822Name then subject emailAddress, deduplicated case-insensitively
                                (first spelling kept); only printable-ASCII addresses, at most CS_CERT_MAX_EMAILS */
    size_t n_emails;
    int64_t not_before; /* unix seconds */
    int64_t not_after;  /* unix seconds */
    bool has_key_usage; /* keyUsage extension present */
    uint32_t key_usage; /* CS_CERT_KU_* bits */
    bool has_eku;       /* extKeyUsage extension present */
    bool eku_email_protection;
    bool eku_any; /* anyExtendedKeyUsage */
    cs_cert_key_alg key_alg;
    unsigned key_bits;    /* RSA modulus bits, EC curve bits, DSA p bits; 0 when unknown */
    const char *ec_curve; /* "P-256", "secp256k1", ...: EC only, NULL otherwise (static string) */
    bool self_issued;     /* subject == issuer */
    cs_cert_problems problems;
    char *reason; /* why it is unparseable / has trailing data; NULL when nothing to say */
} cs_cert_info;

typedef struct cs_cert_value cs_cert_value;

/*
 * Parses one attribute value `der`/`len` taken from attribute `attr` and judges
 * validity against `now` (unix seconds; passed in so tests are deterministic).
 * Bad bytes are not an error: *out then carries `unparseable` and a reason.
 * Returns CS_ERR_INVALID_INPUT for NULL `out` or NULL `der` with len > 0,
 * CS_ERR_NOMEM when memory runs out. Caller frees *out with cs_cert_value_free().
 */
cs_err *cs_cert_value_parse(cs_cert_attr attr, const unsigned char *der, size_t len, int64_t now,
                            cs_cert_value **out);

/* Frees a summary; NULL is allowed. */
void cs_cert_value_free(cs_cert_value *v);

cs_cert_format cs_cert_value_format(const cs_cert_value *v);

/* Problems of the value itself (unparseable, too_large, no_certificates, unsupported_format, trailing_data). */
cs_cert_problems cs_cert_value_problems(const cs_cert_value *v);

/*
 * The verdict a consumer acts on: the value's problems plus those of the user's
 * certificate (cs_cert_value_user_cert). Empty set = usable. A set (PKCS#7,
 * MS-OXOABK) holding certificates none of which could be read has no user
 * certificate and is "unparseable" as a value.
 */
cs_cert_problems cs_cert_value_verdict(const cs_cert_value *v);

/* Why the value has its problems ("PKCS#7: ... at offset 12"), or NULL. Owned by v. */
const char *cs_cert_value_reason(const cs_cert_value *v);

/* Certificates found in the value (also those that could not be read), in the order of the value. */
size_t cs_cert_value_cert_count(const cs_cert_value *v);
/* The i-th certificate, NULL when i is out of range. Owned by v. */
const cs_cert_info *cs_cert_value_cert(const cs_cert_value *v, size_t i);

/*
 * Index of the user's certificate, or -1 when there is none. For a bare X.509
 * value it is that certificate. For a set (PKCS#7, MS-OXOABK) it is chosen by a
 * heuristic among the readable certificates: an MS-OXOABK KeyExchangeCertificate
 * wins; otherwise candidates are those that issued no other certificate of the
 * set (by subject/issuer name), preferring one with an e-mail address, then one
 * not self-issued, then the latest notAfter, then the first.
 */
int cs_cert_value_user_index(const cs_cert_value *v);
/* The user's certificate or NULL. Owned by v. */
const cs_cert_info *cs_cert_value_user_cert(const cs_cert_value *v);
/*
 * SHA-256 of the whole parsed value (every byte, whatever it holds), as bytes and as lowercase hex: what
 * cs_sha256_hex() of the value gives. Computed once by the parse (for a bare certificate it is the
 * certificate's own digest), so callers that need the value's digest do not hash it again.
 */
void cs_cert_value_sha256(const cs_cert_value *v, unsigned char out[32]);
void cs_cert_value_sha256_hex(const cs_cert_value *v, char out[65]);

/*
 * Tests and fuzz_cert_diff only: turns off (false) or on (true, the default) the DER fast readers of the
 * subject and the extensions, so their summaries can be compared with those of the OpenSSL path. Not
 * synchronised: set it while no parse runs.
 */
void cs_cert_fast_paths(bool on);

/* Tests: how many certificates so far had their subject (never decoded by OpenSSL) and their extensions
 * read by the fast readers. Either pointer may be NULL. */
void cs_cert_fast_path_counts(unsigned long *subjects, unsigned long *extensions);

#endif
