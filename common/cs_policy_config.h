/*
 * cs_policy_config: the certificate policy's config keys (policy.*, readiness.*), shared by both services'
 * tables, and the cs_policy built from them (issue 6).
 *
 * Both services carry the same keys so one values file configures both: the publisher applies the policy
 * (refused values are not written), the collector only reports it. Each service puts
 * CS_POLICY_CONFIG_ROWS into its cs_config_row table and calls cs_policy_config_finalize() from its
 * finalize step, then cs_policy_config_build() after a successful load, so `--check-config` loads the CA
 * and CRL files and a bad one stops startup with an error naming the key.
 */
#ifndef CS_POLICY_CONFIG_H
#define CS_POLICY_CONFIG_H

#include <stdbool.h>

#include "cs_config.h"
#include "cs_err.h"
#include "cs_policy.h"

/* "any", "encryption", "signing", NULL: the allowed values of policy.key_usage_purpose. */
extern const char *const cs_policy_config_purposes[];

/* The rows, to be spliced into a service's static cs_config_row table. */
#define CS_POLICY_CONFIG_ROWS                                                                                \
    {.name = "policy.enabled",                                                                               \
     .type = CS_CONFIG_BOOL,                                                                                 \
     .def = "true",                                                                                          \
     .desc = "Apply the certificate policy: the publisher does not write a value a rule refuses (it is "     \
             "reported as a DroppedValue). false: every value is written; the collector still reports."},    \
        {.name = "policy.check_validity",                                                                    \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "true",                                                                                      \
         .desc = "Rules expired and not_yet_valid: the certificate must be valid now."},                     \
        {.name = "policy.check_address",                                                                     \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "true",                                                                                      \
         .desc = "Rule address_mismatch: an e-mail address of the certificate (SAN rfc822Name or subject "   \
                 "emailAddress) must be one of the user's addresses (mail, SMTP proxyAddresses)."},          \
        {.name = "policy.match_upn",                                                                         \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "false",                                                                                     \
         .desc = "Also count the userPrincipalName as one of the user's addresses (when UPN = mail)."},      \
        {.name = "policy.check_key_usage",                                                                   \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "true",                                                                                      \
         .desc = "Rule key_usage: keyUsage must allow S/MIME for policy.key_usage_purpose."},                \
        {.name = "policy.key_usage_purpose",                                                                 \
         .type = CS_CONFIG_ENUM,                                                                             \
         .def = "any",                                                                                       \
         .allowed = cs_policy_config_purposes,                                                               \
         .desc = "What a certificate must be fit for: encryption (keyEncipherment for RSA, keyAgreement "    \
                 "for EC), signing (digitalSignature) or any (either)."},                                    \
        {.name = "policy.check_eku",                                                                         \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "true",                                                                                      \
         .desc = "Rule eku: an extendedKeyUsage extension must include emailProtection (no extension is "    \
                 "fine)."},                                                                                  \
        {.name = "policy.check_key_strength",                                                                \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "true",                                                                                      \
         .desc = "Rule weak_key: RSA and EC keys below the minimums, DSA and unknown key types are "         \
                 "refused."},                                                                                \
        {.name = "policy.min_rsa_bits",                                                                      \
         .type = CS_CONFIG_INT,                                                                              \
         .def = "2048",                                                                                      \
         .min = 1024,                                                                                        \
         .max = 16384,                                                                                       \
         .desc = "Smallest RSA modulus accepted, in bits."},                                                 \
        {.name = "policy.min_ec_bits",                                                                       \
         .type = CS_CONFIG_INT,                                                                              \
         .def = "256",                                                                                       \
         .min = 160,                                                                                         \
         .max = 521,                                                                                         \
         .desc = "Smallest EC key accepted, in bits (256 = P-256)."},                                        \
        {.name = "policy.trusted_ca_file",                                                                   \
         .type = CS_CONFIG_FILE,                                                                             \
         .desc = "PEM bundle of the CAs allowed to issue published certificates (rule untrusted_issuer; "    \
                 "refuses self-signed values users wrote themselves). Unset: the rule is off. The "          \
                 "collector does not judge this rule (it needs a full parse of every value)."},              \
        {.name = "policy.crl_files",                                                                         \
         .type = CS_CONFIG_LIST,                                                                             \
         .desc = "CRL files (PEM or DER) of those CAs (rule revoked; needs policy.trusted_ca_file). "        \
                 "Relative paths resolve against the config file's directory."},                             \
        {.name = "policy.crl_allow_missing",                                                                 \
         .type = CS_CONFIG_BOOL,                                                                             \
         .def = "false",                                                                                     \
         .desc = "Do not refuse a certificate whose issuer has no CRL in policy.crl_files."},                \
    {                                                                                                        \
        .name = "readiness.expiring_soon_days", .type = CS_CONFIG_INT, .def = "30", .min = 1, .max = 365,    \
        .desc = "S/MIME readiness: a certificate expiring within this many days is reported as "             \
                "expiring_soon."                                                                             \
    }

/* For a service's finalize step: cross-field rules of the policy keys (CRLs need a CA file). */
void cs_policy_config_finalize(cs_config *c);

typedef enum cs_policy_config_scope {
    CS_POLICY_CONFIG_FULL = 0, /* every configured rule (the publisher) */
    CS_POLICY_CONFIG_CHEAP, /* without untrusted_issuer and revoked (the collector's report: no full parse) */
} cs_policy_config_scope;

/*
 * Builds the policy from a config loaded with CS_POLICY_CONFIG_ROWS. Loads policy.trusted_ca_file and
 * policy.crl_files (also for CS_POLICY_CONFIG_CHEAP, so both services refuse a bad file at startup); the
 * error is CS_ERR_CONFIG and starts with "<config path>: " and names the key. Caller frees *out with
 * cs_policy_free().
 */
cs_err *cs_policy_config_build(const cs_config *c, cs_policy_config_scope scope, cs_policy **out);

/* readiness.expiring_soon_days. */
unsigned cs_policy_config_expiring_soon_days(const cs_config *c);

#endif
