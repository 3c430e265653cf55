/*
 * cs_policy_config: policy.* keys into a cs_policy (see cs_policy_config.h).
 */
#include "cs_policy_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cs_policy_config_purposes[] = {"any", "encryption", "signing", NULL};

void cs_policy_config_finalize(cs_config *c)
{
    const char *const *crls = NULL;
    size_t n_crl =
        cs_config_key_ok(c, "policy.crl_files") ? cs_config_get_list(c, "policy.crl_files", &crls) : 0;
    if (n_crl > CS_POLICY_MAX_CRL_FILES)
        cs_config_add_error(c, "policy.crl_files",
                            "policy.crl_files: %zu files given, at most %d are allowed", n_crl,
                            CS_POLICY_MAX_CRL_FILES);
    if (n_crl > 0 && !cs_config_is_set(c, "policy.trusted_ca_file") &&
        cs_config_key_ok(c, "policy.trusted_ca_file"))
        cs_config_add_error(
            c, "policy.crl_files",
            "policy.crl_files is set but policy.trusted_ca_file is not: a CRL's signature is "
            "checked against the CA that issued it; set policy.trusted_ca_file to the CA bundle");
    if (n_crl == 0 && cs_config_is_set(c, "policy.crl_allow_missing"))
        cs_config_add_warning(c, "policy.crl_allow_missing",
                              "policy.crl_allow_missing is unused: policy.crl_files is not set");
    if (cs_config_key_ok(c, "policy.enabled") && !cs_config_get_bool(c, "policy.enabled"))
        cs_config_add_warning(c, "policy.enabled",
                              "policy.enabled: false: certificates are published without any check (expired, "
                              "for another address, weak keys); the collector still reports what the policy "
                              "would refuse");
}

/* `path` resolved against the directory of the config file unless absolute. Caller frees with free(). */
static char *resolve(const char *config_path, const char *path)
{
    const char *slash = strrchr(config_path, '/');
    size_t dir = path[0] == '/' || !slash ? 0 : (size_t)(slash - config_path) + 1;
    size_t n = dir + strlen(path) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s", (int)dir, config_path, path);
    return out;
}

cs_err *cs_policy_config_build(const cs_config *c, cs_policy_config_scope scope, cs_policy **out)
{
    cs_err *err = NULL;
    cs_policy *full = NULL;
    char **crl_paths = NULL;
    const char *const *crls = NULL;
    cs_policy_settings s;

    *out = NULL;
    cs_policy_settings_default(&s);
    s.enabled = cs_config_get_bool(c, "policy.enabled");
    s.check_validity = cs_config_get_bool(c, "policy.check_validity");
    s.check_address = cs_config_get_bool(c, "policy.check_address");
    s.match_upn = cs_config_get_bool(c, "policy.match_upn");
    s.check_key_usage = cs_config_get_bool(c, "policy.check_key_usage");
    if (!cs_policy_purpose_parse(cs_config_get_string(c, "policy.key_usage_purpose"), &s.purpose))
        s.purpose = CS_POLICY_PURPOSE_ANY; /* the loader already refused other names */
    s.check_eku = cs_config_get_bool(c, "policy.check_eku");
    s.check_key_strength = cs_config_get_bool(c, "policy.check_key_strength");
    s.min_rsa_bits = (unsigned)cs_config_get_int(c, "policy.min_rsa_bits");
    s.min_ec_bits = (unsigned)cs_config_get_int(c, "policy.min_ec_bits");
    s.trusted_ca_file = cs_config_get_string(c, "policy.trusted_ca_file");
    s.crl_allow_missing = cs_config_get_bool(c, "policy.crl_allow_missing");
    size_t n = cs_config_get_list(c, "policy.crl_files", &crls);
    if (n > CS_POLICY_MAX_CRL_FILES)
        n = CS_POLICY_MAX_CRL_FILES + 1; /* cs_policy_new refuses it with the limit */
    if (n > 0) {
        crl_paths = calloc(n, sizeof(*crl_paths));
        if (!crl_paths) {
            err =
                cs_err_new(CS_ERR_NOMEM, 0, "%s: out of memory loading policy.crl_files", cs_config_path(c));
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            crl_paths[i] = resolve(cs_config_path(c), crls[i]);
            if (!crl_paths[i]) {
                err = cs_err_new(CS_ERR_NOMEM, 0, "%s: out of memory loading policy.crl_files",
                                 cs_config_path(c));
                goto cleanup;
            }
        }
        s.crl_files = (const char *const *)crl_paths;
        s.n_crl_files = n;
    }
    /* Always load the files, so a bad one stops either service at startup. */
    err = cs_policy_new(&s, &full);
    if (err) {
        err = cs_err_wrap(err, "%s", cs_config_path(c));
        goto cleanup;
    }
    if (scope == CS_POLICY_CONFIG_CHEAP) {
        s.trusted_ca_file = NULL;
        s.crl_files = NULL;
        s.n_crl_files = 0;
        cs_policy_free(full);
        full = NULL;
        err = cs_policy_new(&s, &full);
        if (err) {
            err = cs_err_wrap(err, "%s", cs_config_path(c));
            goto cleanup;
        }
    }
    *out = full;
    full = NULL;

cleanup:
    for (size_t i = 0; crl_paths && i < n; i++)
        free(crl_paths[i]);
    free(crl_paths);
    cs_policy_free(full);
    return err;
}

unsigned cs_policy_config_expiring_soon_days(const cs_config *c)
{
    return (unsigned)cs_config_get_int(c, "readiness.expiring_soon_days");
}
