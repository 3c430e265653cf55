/*
 * cs_policy: the certificate policy. Which certificate values certsync is willing to
 * publish as someone's encryption key (issue 6).
 *
 * The publisher judges every value with cs_policy_check_value() before it writes and
 * leaves refused values out (a DroppedValue with cs_policy_verdict_dropped_reason());
 * both services report verdicts. On by default. A policy is immutable once built and
 * may be shared by threads.
 *
 * Rules (each can be switched off in cs_policy_settings; names are stable, they travel
 * in logs, DroppedValue reasons and metrics labels):
 *   unparseable      the value holds no readable user certificate (cs_cert's
 *                    `unparseable`, `no_certificates`, `unsupported_format`).
 *   not_yet_valid    now < notBefore.
 *   expired          notAfter < now.
 *   address_mismatch no e-mail address of the certificate (SAN rfc822Name or subject
 *                    emailAddress) equals one of the recipient's addresses, compared
 *                    case-insensitively (ASCII); see cs_policy_addresses_collect().
 *   key_usage        the certificate is not fit for the configured S/MIME purpose.
 *                    Fit for encryption: RSA with keyEncipherment, EC with keyAgreement.
 *                    Fit for signing: digitalSignature (any key). Decision: a certificate
 *                    WITHOUT the keyUsage extension is fit for both, as RFC 5280 4.2.1.3
 *                    puts no restriction on such a key, and S/MIME clients (Outlook,
 *                    Thunderbird) accept it. The default purpose is ANY (fit for at least
 *                    one of the two): a signing certificate in the GAL is harmless (Outlook
 *                    picks an encryption-capable one when it encrypts) and dual-key users
 *                    publish both; set ENCRYPTION to publish encryption keys only.
 *                    Ed25519 / Ed448 keys are fit for signing only.
 *   eku              an extKeyUsage extension without emailProtection or
 *                    anyExtendedKeyUsage (no extension at all is fine).
 *   weak_key         RSA below min_rsa_bits (2048), EC below min_ec_bits (256, i.e. P-256),
 *                    RSA/EC of unknown size, DSA (always refused: no S/MIME client
 *                    encrypts to DSA and FIPS 186-5 retired it), an unknown key algorithm.
 *   untrusted_issuer only when trusted_ca_file is set: the chain must verify with
 *                    OpenSSL's X509_verify_cert against the certificates of that file
 *                    (each one is a trust anchor: X509_V_FLAG_PARTIAL_CHAIN), with the
 *                    other certificates of a PKCS#7 value as untrusted intermediates. A
 *                    self-signed certificate a user wrote into their own
 *                    userSMIMECertificate is refused here. The leaf's own validity period
 *                    is left to not_yet_valid / expired; an expired issuer fails here.
 *   revoked          only when crl_files are set (needs trusted_ca_file): the user's
 *                    certificate is on a CRL of its issuer (X509_V_FLAG_CRL_CHECK, leaf
 *                    only). A missing, expired or badly signed CRL also fails this rule
 *                    (revocation status unknown) unless crl_allow_missing is set, which
 *                    forgives only a missing CRL.
 *
 * For a PKCS#7 or MS-OXOABK value the policy judges the user's certificate as
 * cs_cert_value_user_cert() picks it.
 */
#ifndef CS_POLICY_H
#define CS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cs_buf.h"
#include "cs_cert.h"
#include "cs_err.h"

/* Rules, in the order their names are reported. Stable: append, never renumber. */
typedef enum cs_policy_rule {
    CS_POLICY_RULE_UNPARSEABLE = 0,
    CS_POLICY_RULE_NOT_YET_VALID,
    CS_POLICY_RULE_EXPIRED,
    CS_POLICY_RULE_ADDRESS_MISMATCH,
    CS_POLICY_RULE_KEY_USAGE,
    CS_POLICY_RULE_EKU,
    CS_POLICY_RULE_WEAK_KEY,
    CS_POLICY_RULE_UNTRUSTED_ISSUER,
    CS_POLICY_RULE_REVOKED,
} cs_policy_rule;
#define CS_POLICY_RULE_COUNT 9
#define CS_POLICY_RULE_BIT(r) (1u << (unsigned)(r))
typedef uint32_t cs_policy_rules; /* a set of rules, CS_POLICY_RULE_BIT() */

/* "unparseable", "not_yet_valid", "expired", "address_mismatch", "key_usage", "eku", "weak_key",
 * "untrusted_issuer", "revoked"; "unknown" outside the enum. */
const char *cs_policy_rule_name(cs_policy_rule r);

/* Appends the names in `set`, comma separated in enum order, or nothing for an empty set. False when full. */
bool cs_policy_rules_format(cs_policy_rules set, cs_buf *out);

typedef enum cs_policy_purpose {
    CS_POLICY_PURPOSE_ANY = 0,    /* fit for encryption or for signing (default) */
    CS_POLICY_PURPOSE_ENCRYPTION, /* must be fit for encryption */
    CS_POLICY_PURPOSE_SIGNING,    /* must be fit for signing */
} cs_policy_purpose;

/* "any", "encryption", "signing"; parse returns false for other names. */
const char *cs_policy_purpose_name(cs_policy_purpose p);
bool cs_policy_purpose_parse(const char *name, cs_policy_purpose *out);

#define CS_POLICY_DEFAULT_MIN_RSA_BITS 2048u
#define CS_POLICY_DEFAULT_MIN_EC_BITS 256u
#define CS_POLICY_MAX_CRL_FILES 64

/*
 * What a service's config table fills. Start from cs_policy_settings_default(); the
 * strings are copied by cs_policy_new().
 */
typedef struct cs_policy_settings {
    bool enabled;         /* false: verdicts are still computed (for reports) but cs_policy_enabled() says
                              the caller must not drop values */
    bool check_validity;  /* not_yet_valid, expired */
    bool check_address;   /* address_mismatch */
    bool match_upn;       /* cs_policy_addresses_collect() also takes the UPN as an address */
    bool check_key_usage; /* key_usage */
    cs_policy_purpose purpose;
    bool check_eku;               /* eku */
    bool check_key_strength;      /* weak_key */
    unsigned min_rsa_bits;        /* 1024..16384 */
    unsigned min_ec_bits;         /* 160..521 */
    const char *trusted_ca_file;  /* PEM (one or more certificates) or one DER certificate; NULL = rule off */
    const char *const *crl_files; /* PEM or DER CRLs; NULL / 0 = rule off */
    size_t n_crl_files;           /* at most CS_POLICY_MAX_CRL_FILES */
    bool crl_allow_missing;       /* an issuer without a CRL in crl_files is not refused */
} cs_policy_settings;

/* Fills the defaults: enabled, every rule on except the issuer and revocation rules, purpose any,
 * RSA 2048, EC 256, UPN not matched. */
void cs_policy_settings_default(cs_policy_settings *s);

typedef struct cs_policy cs_policy;

/*
 * Builds a policy from `s` (NULL = defaults). Loads trusted_ca_file and crl_files now, so
 * a missing or empty file is a startup error (CS_ERR_CONFIG naming the file and the
 * setting); minimums out of range and CRLs without a CA file are refused too.
 * Caller frees *out with cs_policy_free().
 */
cs_err *cs_policy_new(const cs_policy_settings *s, cs_policy **out);

/* Frees a policy; NULL is allowed. */
void cs_policy_free(cs_policy *p);

/* Whether refused values are to be dropped (settings.enabled). */
bool cs_policy_enabled(const cs_policy *p);

/* ------------------------------------------------------------------ addresses */

/* One recipient's identity as the directory / Exchange gives it; every field may be NULL. */
typedef struct cs_policy_identity {
    const char *primary_smtp;   /* PrimarySmtpAddress */
    const char *const *proxies; /* proxyAddresses: "SMTP:a@x", "smtp:b@x", "x500:..." (non-SMTP skipped) */
    size_t n_proxies;
    const char *mail; /* mail */
    const char *upn;  /* userPrincipalName: used only when settings.match_upn */
} cs_policy_identity;

/* A recipient's addresses, deduplicated case-insensitively, first spelling kept. */
typedef struct cs_policy_addresses {
    char **v;
    size_t n;
} cs_policy_addresses;

#define CS_POLICY_MAX_ADDRESSES 1024

/*
 * Collects the addresses to match: primary SMTP, proxy addresses with an `smtp:` prefix
 * (any case) stripped, mail, and the UPN when the policy matches UPNs (`p` NULL = no UPN).
 * Empty strings and strings without '@' are skipped; at most CS_POLICY_MAX_ADDRESSES are
 * kept. `out` must be zeroed or freed; caller frees it with cs_policy_addresses_free().
 */
cs_err *cs_policy_addresses_collect(const cs_policy *p, const cs_policy_identity *id,
                                    cs_policy_addresses *out);

/* Frees the strings and zeroes `a`; NULL is allowed. */
void cs_policy_addresses_free(cs_policy_addresses *a);

/* The address of one proxyAddresses entry ("SMTP:a@x" -> "a@x"), or NULL when it is not an SMTP proxy. */
const char *cs_policy_proxy_smtp(const char *proxy);

/* ------------------------------------------------------------------ verdicts */

typedef struct cs_policy_verdict cs_policy_verdict;

/*
 * Judges one attribute value `der`/`len` of attribute `attr` for the recipient whose
 * addresses are `addrs`/`n_addrs`, at `now` (unix seconds). `label` names the user in
 * messages (UPN or DN; NULL = "unknown user"). Bad bytes are a verdict (`unparseable`),
 * not an error; errors only for bad arguments and out of memory. Rules the settings
 * switch off are not judged. Caller frees *out with cs_policy_verdict_free().
 */
cs_err *cs_policy_check_value(const cs_policy *p, cs_cert_attr attr, const unsigned char *der, size_t len,
                              const char *const *addrs, size_t n_addrs, int64_t now, const char *label,
                              cs_policy_verdict **out);

/*
 * The same judgement for a value the caller has already parsed with cs_cert_value_parse()
 * at the same `now`, so a hot path parses each value once. `cv` stays the caller's; `der`
 * and `len` must be the bytes it was parsed from (the trusted-issuer rule re-reads them).
 * Caller frees *out with cs_policy_verdict_free().
 */
cs_err *cs_policy_check_parsed(const cs_policy *p, cs_cert_attr attr, const unsigned char *der, size_t len,
                               const cs_cert_value *cv, const char *const *addrs, size_t n_addrs, int64_t now,
                               const char *label, cs_policy_verdict **out);

/* Frees a verdict; NULL is allowed. */
void cs_policy_verdict_free(cs_policy_verdict *v);

/* True when no rule failed. */
bool cs_policy_verdict_ok(const cs_policy_verdict *v);

/* The failed rules. */
cs_policy_rules cs_policy_verdict_rules(const cs_policy_verdict *v);

/* The first failed rule in enum order; meaningless when the verdict is ok. */
cs_policy_rule cs_policy_verdict_rule(const cs_policy_verdict *v);

/* SHA-256 (hex) of the judged certificate's DER, or of the raw value when it has no readable certificate. */
const char *cs_policy_verdict_fingerprint(const cs_policy_verdict *v);

/* SHA-256 (hex) of the raw value: DroppedValue.sha256. */
const char *cs_policy_verdict_value_sha256(const cs_policy_verdict *v);

/*
 * One line for logs and reports. Refused: `user <label>: <attr> certificate <fingerprint>
 * refused by policy: <rule>: <why and the fix> [<rule>: ...]`; accepted: `user <label>:
 * <attr> certificate <fingerprint> accepted by policy`. Owned by v.
 */
const char *cs_policy_verdict_message(const cs_policy_verdict *v);

/* The user's certificate is fit for encryption / for signing by its keyUsage and key type (judged even when
 * the key_usage rule is off). False for an unreadable value. */
bool cs_policy_verdict_fit_encryption(const cs_policy_verdict *v);
bool cs_policy_verdict_fit_signing(const cs_policy_verdict *v);

/* notAfter of the judged certificate (unix seconds), 0 when unreadable. */
int64_t cs_policy_verdict_not_after(const cs_policy_verdict *v);

/*
 * The DroppedValue.reason for a refused value: `policy: <rules comma separated>`, e.g.
 * "policy: expired,weak_key" (stable, short, countable); "" when the verdict is ok.
 * Owned by v.
 */
const char *cs_policy_verdict_dropped_reason(const cs_policy_verdict *v);

/*
 * The failed rules as cs_cert problems for DroppedValue.problems: unparseable,
 * not_yet_valid, expired, eku -> no_email_protection, address_mismatch of a certificate
 * without any address -> no_email_address, plus the value's own problems. Rules with no
 * cs_cert counterpart (key_usage, weak_key, issuer, revoked) are only in the reason.
 */
cs_cert_problems cs_policy_verdict_problems(const cs_policy_verdict *v);

#endif
