/*
 * cs_policy: the certificate policy (rules in cs_policy.h).
 *
 * The cheap rules read cs_cert's summary. Only the issuer and revocation rules decode
 * certificates fully (d2i_X509, ~120 us each): they run only when configured, and the
 * publisher applies the policy only to values it is about to write.
 */
#include "cs_policy.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_event.h"

#define MESSAGE_MAX 8192 /* 9 sentences of SENTENCE_MAX and the prefix fit */
#define SENTENCE_MAX 512

struct cs_policy {
    cs_policy_settings s; /* strings below are our copies; crl_files is not kept */
    char *trusted_ca_file;
    X509_STORE *store; /* NULL when the issuer rule is off */
    bool check_crl;
};

struct cs_policy_verdict {
    cs_policy_rules failed;
    char fingerprint[65];
    char value_sha256[CS_SHA256_HEX_LEN];
    bool fit_encryption;
    bool fit_signing;
    bool no_email; /* the certificate has no address at all */
    int64_t not_after;
    cs_cert_problems value_problems;
    char *message;
    char *dropped_reason;
};

static const char *const rule_names[CS_POLICY_RULE_COUNT] = {
    "unparseable", "not_yet_valid", "expired",          "address_mismatch", "key_usage",
    "eku",         "weak_key",      "untrusted_issuer", "revoked",
};

const char *cs_policy_rule_name(cs_policy_rule r)
{
    if ((unsigned)r >= CS_POLICY_RULE_COUNT)
        return "unknown";
    return rule_names[r];
}

bool cs_policy_rules_format(cs_policy_rules set, cs_buf *out)
{
    bool first = true;
    for (unsigned r = 0; r < CS_POLICY_RULE_COUNT; r++) {
        if (!(set & CS_POLICY_RULE_BIT(r)))
            continue;
        if (!first && !cs_buf_add_str(out, ","))
            return false;
        if (!cs_buf_add_str(out, rule_names[r]))
            return false;
        first = false;
    }
    return true;
}

const char *cs_policy_purpose_name(cs_policy_purpose p)
{
    switch (p) {
    case CS_POLICY_PURPOSE_ANY:
        return "any";
    case CS_POLICY_PURPOSE_ENCRYPTION:
        return "encryption";
    case CS_POLICY_PURPOSE_SIGNING:
        return "signing";
    }
    return "unknown";
}

bool cs_policy_purpose_parse(const char *name, cs_policy_purpose *out)
{
    static const cs_policy_purpose all[] = {CS_POLICY_PURPOSE_ANY, CS_POLICY_PURPOSE_ENCRYPTION,
                                            CS_POLICY_PURPOSE_SIGNING};
    if (!name || !out)
        return false;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, cs_policy_purpose_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

void cs_policy_settings_default(cs_policy_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->enabled = true;
    s->check_validity = true;
    s->check_address = true;
    s->match_upn = false;
    s->check_key_usage = true;
    s->purpose = CS_POLICY_PURPOSE_ANY;
    s->check_eku = true;
    s->check_key_strength = true;
    s->min_rsa_bits = CS_POLICY_DEFAULT_MIN_RSA_BITS;
    s->min_ec_bits = CS_POLICY_DEFAULT_MIN_EC_BITS;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

/* The first OpenSSL error as text, for messages; "" when the queue is empty. Clears the queue. */
static const char *openssl_error(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = '\0';
    if (e)
        ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

/* Loads the trusted certificates: PEM with any number of certificates, else one DER certificate. */
static cs_err *load_cas(X509_STORE *store, const char *path)
{
    char ebuf[256];
    X509_LOOKUP *lk = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lk)
        return cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory creating the certificate store");
    int n = X509_load_cert_file(lk, path, X509_FILETYPE_PEM);
    if (n <= 0) {
        ERR_clear_error();
        n = X509_load_cert_file(lk, path, X509_FILETYPE_ASN1);
    }
    if (n <= 0)
        return cs_err_new(
            CS_ERR_CONFIG, 0,
            "policy.trusted_ca_file %s: no certificate could be loaded (%s): give a readable PEM "
            "file with the trusted CA certificates, or unset the setting to turn the "
            "untrusted_issuer rule off",
            path, openssl_error(ebuf, sizeof ebuf));
    return NULL;
}

/* Loads one CRL file: PEM (any number of CRLs), else one DER CRL. */
static cs_err *load_crl(X509_STORE *store, const char *path)
{
    char ebuf[256];
    X509_LOOKUP *lk = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lk)
        return cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory creating the certificate store");
    int n = X509_load_crl_file(lk, path, X509_FILETYPE_PEM);
    if (n <= 0) {
        ERR_clear_error();
        n = X509_load_crl_file(lk, path, X509_FILETYPE_ASN1);
    }
    if (n <= 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "policy.crl_files %s: no CRL could be loaded (%s): give a readable PEM or DER CRL "
                          "file, or remove it from the setting",
                          path, openssl_error(ebuf, sizeof ebuf));
    return NULL;
}

cs_err *cs_policy_new(const cs_policy_settings *s, cs_policy **out)
{
    cs_err *err = NULL;
    cs_policy *p = NULL;
    cs_policy_settings defaults;

    if (!out)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "cs_policy_new: out is NULL");
    *out = NULL;
    if (!s) {
        cs_policy_settings_default(&defaults);
        s = &defaults;
    }
    if (s->min_rsa_bits < 1024 || s->min_rsa_bits > 16384) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "policy.min_rsa_bits %u is out of range: use 1024..16384 (default %u)",
                         s->min_rsa_bits, CS_POLICY_DEFAULT_MIN_RSA_BITS);
        goto cleanup;
    }
    if (s->min_ec_bits < 160 || s->min_ec_bits > 521) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "policy.min_ec_bits %u is out of range: use 160..521 (default %u)",
                         s->min_ec_bits, CS_POLICY_DEFAULT_MIN_EC_BITS);
        goto cleanup;
    }
    if ((unsigned)s->purpose > (unsigned)CS_POLICY_PURPOSE_SIGNING) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "policy.key_usage_purpose %d is unknown: use any, encryption or signing",
                         (int)s->purpose);
        goto cleanup;
    }
    if (s->n_crl_files > CS_POLICY_MAX_CRL_FILES || (s->n_crl_files > 0 && !s->crl_files)) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "policy.crl_files: %zu files given, at most %d are allowed",
                         s->n_crl_files, CS_POLICY_MAX_CRL_FILES);
        goto cleanup;
    }
    if (s->n_crl_files > 0 && (!s->trusted_ca_file || !*s->trusted_ca_file)) {
        err = cs_err_new(
            CS_ERR_CONFIG, 0,
            "policy.crl_files is set but policy.trusted_ca_file is not: a CRL's signature is checked "
            "against the CA that issued it; set policy.trusted_ca_file to the CA bundle");
        goto cleanup;
    }

    p = calloc(1, sizeof(*p));
    if (!p) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory");
        goto cleanup;
    }
    p->s = *s;
    p->s.trusted_ca_file = NULL;
    p->s.crl_files = NULL;
    p->s.n_crl_files = 0;

    if (s->trusted_ca_file && *s->trusted_ca_file) {
        p->trusted_ca_file = dup_str(s->trusted_ca_file);
        p->store = X509_STORE_new();
        if (!p->trusted_ca_file || !p->store) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory loading %s", s->trusted_ca_file);
            goto cleanup;
        }
        p->s.trusted_ca_file = p->trusted_ca_file;
        err = load_cas(p->store, s->trusted_ca_file);
        if (err)
            goto cleanup;
        unsigned long flags = X509_V_FLAG_PARTIAL_CHAIN; /* every configured certificate is an anchor */
        for (size_t i = 0; i < s->n_crl_files; i++) {
            if (!s->crl_files[i]) {
                err =
                    cs_err_new(CS_ERR_CONFIG, 0, "policy.crl_files: entry %zu is empty: give a file path", i);
                goto cleanup;
            }
            err = load_crl(p->store, s->crl_files[i]);
            if (err)
                goto cleanup;
        }
        if (s->n_crl_files > 0) {
            flags |= X509_V_FLAG_CRL_CHECK;
            p->check_crl = true;
        }
        X509_STORE_set_flags(p->store, flags);
    }
    *out = p;
    p = NULL;

cleanup:
    cs_policy_free(p);
    return err;
}

void cs_policy_free(cs_policy *p)
{
    if (!p)
        return;
    X509_STORE_free(p->store);
    free(p->trusted_ca_file);
    free(p);
}

bool cs_policy_enabled(const cs_policy *p)
{
    return p && p->s.enabled;
}

/* ------------------------------------------------------------------ addresses */

/* ASCII case-insensitive equality: addresses are compared as Exchange does, without locale. */
static bool addr_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return false;
        if (!x)
            return true;
    }
}

const char *cs_policy_proxy_smtp(const char *proxy)
{
    if (!proxy)
        return NULL;
    if ((proxy[0] == 's' || proxy[0] == 'S') && (proxy[1] == 'm' || proxy[1] == 'M') &&
        (proxy[2] == 't' || proxy[2] == 'T') && (proxy[3] == 'p' || proxy[3] == 'P') && proxy[4] == ':')
        return proxy + 5;
    return NULL;
}

void cs_policy_addresses_free(cs_policy_addresses *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

/* Adds one address unless empty, without '@', a duplicate, or past the cap. */
static cs_err *addr_add(cs_policy_addresses *a, const char *s)
{
    if (!s || !*s || !strchr(s, '@') || a->n >= CS_POLICY_MAX_ADDRESSES)
        return NULL;
    for (size_t i = 0; i < a->n; i++)
        if (addr_eq(a->v[i], s))
            return NULL;
    char **grown = realloc(a->v, (a->n + 1) * sizeof(*grown));
    if (!grown)
        return cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory collecting addresses");
    a->v = grown;
    a->v[a->n] = dup_str(s);
    if (!a->v[a->n])
        return cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory collecting addresses");
    a->n++;
    return NULL;
}

cs_err *cs_policy_addresses_collect(const cs_policy *p, const cs_policy_identity *id,
                                    cs_policy_addresses *out)
{
    cs_err *err = NULL;
    if (!id || !out)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "cs_policy_addresses_collect: identity or out is NULL");
    out->v = NULL;
    out->n = 0;
    err = addr_add(out, id->primary_smtp);
    for (size_t i = 0; !err && id->proxies && i < id->n_proxies; i++)
        err = addr_add(out, cs_policy_proxy_smtp(id->proxies[i]));
    if (!err)
        err = addr_add(out, id->mail);
    if (!err && p && p->s.match_upn)
        err = addr_add(out, id->upn);
    if (err)
        cs_policy_addresses_free(out);
    return err;
}

/* ------------------------------------------------------------------ verdicts */

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)t);
}

/* Records a failed rule and its sentence (why, then the fix). */
static bool fail(cs_policy_verdict *v, cs_buf *msg, cs_policy_rule r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(cs_policy_verdict *v, cs_buf *msg, cs_policy_rule r, const char *fmt, ...)
{
    char sentence[SENTENCE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sentence, sizeof sentence, fmt, ap);
    va_end(ap);
    v->failed |= CS_POLICY_RULE_BIT(r);
    return cs_buf_printf(msg, " %s: %s.", rule_names[r], sentence);
}

static bool key_fit_encryption(const cs_cert_info *ci)
{
    bool ku_any = !ci->has_key_usage; /* RFC 5280: no extension, no restriction */
    if (ci->key_alg == CS_CERT_KEY_RSA)
        return ku_any || (ci->key_usage & CS_CERT_KU_KEY_ENCIPHERMENT);
    if (ci->key_alg == CS_CERT_KEY_EC)
        return ku_any || (ci->key_usage & CS_CERT_KU_KEY_AGREEMENT);
    return false; /* DSA and EdDSA keys cannot encrypt */
}

static bool key_fit_signing(const cs_cert_info *ci)
{
    if (ci->key_alg == CS_CERT_KEY_OTHER)
        return false;
    return !ci->has_key_usage || (ci->key_usage & CS_CERT_KU_DIGITAL_SIGNATURE);
}

/* Decodes the certificate at info's offset with the full parser. NULL when OpenSSL refuses it. */
static X509 *full_parse(const unsigned char *der, size_t len, const cs_cert_info *ci)
{
    if (ci->der_offset > len || ci->der_len > len - ci->der_offset || ci->der_len > (size_t)LONG_MAX)
        return NULL;
    const unsigned char *q = der + ci->der_offset;
    return d2i_X509(NULL, &q, (long)ci->der_len);
}

/* What the verify callback may forgive (the store context carries a pointer to it). */
typedef struct verify_ctx {
    bool crl_allow_missing;
} verify_ctx;

static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    if (ok)
        return ok;
    int e = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    const verify_ctx *vc = X509_STORE_CTX_get_app_data(ctx);
    /* The leaf's own period is judged by the expired / not_yet_valid rules (which may be off). */
    if (depth == 0 && (e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID))
        return 1;
    if (e == X509_V_ERR_UNABLE_TO_GET_CRL && vc && vc->crl_allow_missing)
        return 1;
    return 0;
}

static bool is_crl_error(int e)
{
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
        return true;
    default:
        return false;
    }
}

/*
 * The issuer and revocation rules: X509_verify_cert of the user's certificate against
 * the configured store, with the value's other certificates as untrusted intermediates.
 */
static cs_err *check_chain(const cs_policy *p, cs_policy_verdict *v, cs_buf *msg, const unsigned char *der,
                           size_t len, const cs_cert_value *cv, int user_idx, int64_t now)
{
    cs_err *err = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    X509_STORE_CTX *ctx = NULL;
    verify_ctx vc = {.crl_allow_missing = p->s.crl_allow_missing};
    char ebuf[256];

    leaf = full_parse(der, len, cs_cert_value_cert(cv, (size_t)user_idx));
    if (!leaf) {
        /* Our summary read it but OpenSSL's full parser does not: never trust such a value. */
        fail(v, msg, CS_POLICY_RULE_UNTRUSTED_ISSUER,
             "OpenSSL's full parser rejects the certificate (%s), so its chain cannot be verified; the user "
             "must "
             "enrol a new certificate",
             openssl_error(ebuf, sizeof ebuf));
        goto cleanup;
    }
    chain = sk_X509_new_null();
    ctx = X509_STORE_CTX_new();
    if (!chain || !ctx) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory verifying a chain");
        goto cleanup;
    }
    size_t n = cs_cert_value_cert_count(cv);
    for (size_t i = 0; i < n && i < CS_CERT_MAX_CERTS; i++) {
        const cs_cert_info *ci = cs_cert_value_cert(cv, i);
        if ((int)i == user_idx || (ci->problems & CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE)))
            continue;
        X509 *x = full_parse(der, len, ci);
        if (!x) {
            ERR_clear_error();
            continue; /* an unreadable extra certificate just does not help the chain */
        }
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            err = cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory verifying a chain");
            goto cleanup;
        }
    }
    if (X509_STORE_CTX_init(ctx, p->store, leaf, chain) != 1) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "policy: cannot set up chain verification: %s",
                         openssl_error(ebuf, sizeof ebuf));
        goto cleanup;
    }
    X509_STORE_CTX_set_app_data(ctx, &vc);
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)now);
    int rc = X509_verify_cert(ctx);
    if (rc == 1)
        goto cleanup;
    int e = X509_STORE_CTX_get_error(ctx);
    if (rc < 0 || e == X509_V_OK) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "policy: X509_verify_cert failed without a verdict: %s",
                         openssl_error(ebuf, sizeof ebuf));
        goto cleanup;
    }
    if (e == X509_V_ERR_CERT_REVOKED)
        fail(v, msg, CS_POLICY_RULE_REVOKED,
             "the issuer's CRL lists it as revoked; the user must enrol a new certificate");
    else if (is_crl_error(e))
        fail(v, msg, CS_POLICY_RULE_REVOKED,
             "revocation status unknown (%s at chain depth %d); refresh the files in policy.crl_files%s",
             X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(ctx),
             e == X509_V_ERR_UNABLE_TO_GET_CRL ? " or set policy.crl_allow_missing" : "");
    else
        fail(v, msg, CS_POLICY_RULE_UNTRUSTED_ISSUER,
             "it does not chain to a CA in %s (%s at chain depth %d); the user must enrol a certificate from "
             "a "
             "trusted CA, or add its issuer to policy.trusted_ca_file",
             p->trusted_ca_file, X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(ctx));
    ERR_clear_error();

cleanup:
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    return err;
}

static bool any_address_matches(const cs_cert_info *ci, const char *const *addrs, size_t n_addrs)
{
    for (size_t i = 0; i < ci->n_emails; i++)
        for (size_t j = 0; j < n_addrs; j++)
            if (addrs[j] && addr_eq(ci->emails[i], addrs[j]))
                return true;
    return false;
}

/* The cheap rules, from the summary. */
static void check_summary(const cs_policy *p, cs_policy_verdict *v, cs_buf *msg, const cs_cert_info *ci,
                          const char *const *addrs, size_t n_addrs, int64_t now)
{
    char t[32];
    const cs_policy_settings *s = &p->s;

    if (s->check_validity && ci->not_before > now) {
        format_time(ci->not_before, t);
        fail(v, msg, CS_POLICY_RULE_NOT_YET_VALID,
             "valid only from %s; publish it from then on, or check the issuing CA's clock", t);
    }
    if (s->check_validity && ci->not_after < now) {
        format_time(ci->not_after, t);
        fail(v, msg, CS_POLICY_RULE_EXPIRED,
             "expired on %s; the user must renew it, and the expired value should be removed from the "
             "directory",
             t);
    }
    if (s->check_address && !any_address_matches(ci, addrs, n_addrs)) {
        if (ci->n_emails == 0)
            fail(
                v, msg, CS_POLICY_RULE_ADDRESS_MISMATCH,
                "it carries no e-mail address (no SAN rfc822Name, no subject emailAddress), so no mail "
                "client "
                "can match it to the recipient; the user must enrol an S/MIME certificate for their address");
        else
            fail(v, msg, CS_POLICY_RULE_ADDRESS_MISMATCH,
                 "its address %s%s is not one of the recipient's %zu addresses; the user must enrol a "
                 "certificate for their own address%s",
                 ci->emails[0], ci->n_emails > 1 ? " (and others)" : "", n_addrs,
                 s->match_upn ? "" : " (the UPN counts only with policy.match_upn)");
    }
    if (s->check_key_usage) {
        bool ok = s->purpose == CS_POLICY_PURPOSE_ENCRYPTION ? v->fit_encryption
                  : s->purpose == CS_POLICY_PURPOSE_SIGNING  ? v->fit_signing
                                                             : (v->fit_encryption || v->fit_signing);
        if (!ok)
            fail(
                v, msg, CS_POLICY_RULE_KEY_USAGE,
                "its keyUsage (0x%03x) allows no S/MIME %s with its %s key (encryption needs keyEncipherment "
                "for RSA or keyAgreement for EC, signing needs digitalSignature); the user must enrol a "
                "certificate from an S/MIME template",
                (unsigned)ci->key_usage,
                s->purpose == CS_POLICY_PURPOSE_ANY ? "use" : cs_policy_purpose_name(s->purpose),
                cs_cert_key_alg_name(ci->key_alg));
    }
    if (s->check_eku && ci->has_eku && !ci->eku_email_protection && !ci->eku_any)
        fail(v, msg, CS_POLICY_RULE_EKU,
             "its extendedKeyUsage lacks emailProtection; the user must enrol a certificate from a template "
             "with the Secure Email purpose");
    if (s->check_key_strength) {
        switch (ci->key_alg) {
        case CS_CERT_KEY_RSA:
            if (ci->key_bits < s->min_rsa_bits)
                fail(
                    v, msg, CS_POLICY_RULE_WEAK_KEY,
                    "its RSA key has %u bits, below the minimum of %u; the user must enrol a new certificate "
                    "with a stronger key (or lower policy.min_rsa_bits)",
                    ci->key_bits, s->min_rsa_bits);
            break;
        case CS_CERT_KEY_EC:
            if (ci->key_bits < s->min_ec_bits)
                fail(v, msg, CS_POLICY_RULE_WEAK_KEY,
                     "its EC key on curve %s has %u bits, below the minimum of %u (P-256); the user must "
                     "enrol "
                     "a new certificate with a stronger key (or lower policy.min_ec_bits)",
                     ci->ec_curve ? ci->ec_curve : "unknown", ci->key_bits, s->min_ec_bits);
            break;
        case CS_CERT_KEY_DSA:
            fail(v, msg, CS_POLICY_RULE_WEAK_KEY,
                 "its key is DSA, which S/MIME clients cannot encrypt to and FIPS 186-5 retired; the user "
                 "must enrol a new certificate with an RSA or EC key");
            break;
        case CS_CERT_KEY_ED25519:
        case CS_CERT_KEY_ED448:
            break;
        case CS_CERT_KEY_OTHER:
        default:
            fail(v, msg, CS_POLICY_RULE_WEAK_KEY,
                 "its key algorithm is not one certsync can judge (RSA, EC, Ed25519, Ed448); the user must "
                 "enrol a new certificate with an RSA or EC key");
            break;
        }
    }
}

/* "user <who>: <attr> certificate <fp> accepted by policy", put together without printf: almost every value
 * is accepted, and formatting each one showed in the collector's snapshot profile. All or nothing, like
 * cs_buf_printf, so a label past MESSAGE_MAX gives the same (empty) message either way. */
static void accepted_message(cs_buf *msg, const char *who, const char *attr_name, const char *fingerprint)
{
    const char *parts[] = {
        "user ", who, ": ", attr_name, " certificate ", fingerprint, " accepted by policy"};
    size_t lens[sizeof parts / sizeof parts[0]];
    size_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        lens[i] = strlen(parts[i]);
        if (lens[i] > MESSAGE_MAX - total)
            return;
        total += lens[i];
    }
    char line[MESSAGE_MAX]; /* one allocation in msg rather than one per part */
    size_t at = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        memcpy(line + at, parts[i], lens[i]);
        at += lens[i];
    }
    cs_buf_add(msg, line, at);
}

cs_err *cs_policy_check_value(const cs_policy *p, cs_cert_attr attr, const unsigned char *der, size_t len,
                              const char *const *addrs, size_t n_addrs, int64_t now, const char *label,
                              cs_policy_verdict **out)
{
    cs_cert_value *cv = NULL;
    if (!out || !p || (!der && len > 0) || (!addrs && n_addrs > 0))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "cs_policy_check_value: policy, value or out is NULL");
    *out = NULL;
    cs_err *err = cs_cert_value_parse(attr, der, len, now, &cv);
    if (!err)
        err = cs_policy_check_parsed(p, attr, der, len, cv, addrs, n_addrs, now, label, out);
    cs_cert_value_free(cv);
    return err;
}

cs_err *cs_policy_check_parsed(const cs_policy *p, cs_cert_attr attr, const unsigned char *der, size_t len,
                               const cs_cert_value *cv, const char *const *addrs, size_t n_addrs, int64_t now,
                               const char *label, cs_policy_verdict **out)
{
    cs_err *err = NULL;
    cs_policy_verdict *v = NULL;
    cs_buf msg;
    cs_buf_init(&msg, MESSAGE_MAX);

    if (!out || !p || !cv || (!der && len > 0) || (!addrs && n_addrs > 0))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "cs_policy_check_parsed: policy, value or out is NULL");
    *out = NULL;
    v = calloc(1, sizeof(*v));
    if (!v) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory");
        goto cleanup;
    }
    cs_cert_value_sha256_hex(cv, v->value_sha256); /* the parse hashed the value already */
    v->value_problems = cs_cert_value_problems(cv);

    const char *who = label && *label ? label : "unknown user";
    const char *attr_name =
        attr == CS_CERT_ATTR_USER_CERTIFICATE ? "userCertificate" : "userSMIMECertificate";
    int idx = cs_cert_value_user_index(cv);
    const cs_cert_info *ci = idx >= 0 ? cs_cert_value_cert(cv, (size_t)idx) : NULL;
    cs_buf rules;
    cs_buf_init(&rules, MESSAGE_MAX);
    if (!ci || (ci->problems & CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE))) {
        memcpy(v->fingerprint, v->value_sha256, sizeof v->fingerprint);
        const char *why = cs_cert_value_reason(cv);
        if (!why && ci)
            why = ci->reason;
        fail(v, &rules, CS_POLICY_RULE_UNPARSEABLE,
             "the value holds no readable certificate (%s); remove the value from the directory or re-enrol",
             why ? why : "no certificate found");
    } else {
        memcpy(v->fingerprint, ci->sha256_hex, sizeof v->fingerprint);
        v->fit_encryption = key_fit_encryption(ci);
        v->fit_signing = key_fit_signing(ci);
        v->not_after = ci->not_after;
        v->no_email = ci->n_emails == 0;
        check_summary(p, v, &rules, ci, addrs, n_addrs, now);
        if (p->store) {
            err = check_chain(p, v, &rules, der, len, cv, idx, now);
            if (err) {
                cs_buf_free(&rules);
                goto cleanup;
            }
        }
    }
    if (v->failed)
        cs_buf_printf(&msg, "user %s: %s certificate %s refused by policy:%s", who, attr_name, v->fingerprint,
                      cs_buf_str(&rules));
    else
        accepted_message(&msg, who, attr_name, v->fingerprint);
    cs_buf_free(&rules);

    cs_buf reason;
    cs_buf_init(&reason, 256);
    if (v->failed) {
        cs_buf_add_str(&reason, "policy: ");
        cs_policy_rules_format(v->failed, &reason);
    }
    v->dropped_reason = cs_buf_take(&reason);
    /* A message cut at MESSAGE_MAX is still useful; only a failed allocation is an error. */
    v->message = cs_buf_take(&msg);
    if (!v->message || !v->dropped_reason) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "policy: out of memory");
        goto cleanup;
    }
    *out = v;
    v = NULL;

cleanup:
    cs_buf_free(&msg);
    cs_policy_verdict_free(v);
    return err;
}

void cs_policy_verdict_free(cs_policy_verdict *v)
{
    if (!v)
        return;
    free(v->message);
    free(v->dropped_reason);
    free(v);
}

bool cs_policy_verdict_ok(const cs_policy_verdict *v)
{
    return v && v->failed == 0;
}

cs_policy_rules cs_policy_verdict_rules(const cs_policy_verdict *v)
{
    return v ? v->failed : 0;
}

cs_policy_rule cs_policy_verdict_rule(const cs_policy_verdict *v)
{
    for (unsigned r = 0; v && r < CS_POLICY_RULE_COUNT; r++)
        if (v->failed & CS_POLICY_RULE_BIT(r))
            return (cs_policy_rule)r;
    return CS_POLICY_RULE_UNPARSEABLE;
}

const char *cs_policy_verdict_fingerprint(const cs_policy_verdict *v)
{
    return v ? v->fingerprint : "";
}

const char *cs_policy_verdict_value_sha256(const cs_policy_verdict *v)
{
    return v ? v->value_sha256 : "";
}

const char *cs_policy_verdict_message(const cs_policy_verdict *v)
{
    return v && v->message ? v->message : "";
}

bool cs_policy_verdict_fit_encryption(const cs_policy_verdict *v)
{
    return v && v->fit_encryption;
}

bool cs_policy_verdict_fit_signing(const cs_policy_verdict *v)
{
    return v && v->fit_signing;
}

int64_t cs_policy_verdict_not_after(const cs_policy_verdict *v)
{
    return v ? v->not_after : 0;
}

const char *cs_policy_verdict_dropped_reason(const cs_policy_verdict *v)
{
    return v && v->dropped_reason ? v->dropped_reason : "";
}

cs_cert_problems cs_policy_verdict_problems(const cs_policy_verdict *v)
{
    if (!v)
        return 0;
    cs_cert_problems set = v->value_problems;
    if (v->failed & CS_POLICY_RULE_BIT(CS_POLICY_RULE_UNPARSEABLE))
        set |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE);
    if (v->failed & CS_POLICY_RULE_BIT(CS_POLICY_RULE_NOT_YET_VALID))
        set |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NOT_YET_VALID);
    if (v->failed & CS_POLICY_RULE_BIT(CS_POLICY_RULE_EXPIRED))
        set |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_EXPIRED);
    if (v->failed & CS_POLICY_RULE_BIT(CS_POLICY_RULE_EKU))
        set |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NO_EMAIL_PROTECTION);
    if ((v->failed & CS_POLICY_RULE_BIT(CS_POLICY_RULE_ADDRESS_MISMATCH)) && v->no_email)
        set |= CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_NO_EMAIL_ADDRESS);
    return set;
}
