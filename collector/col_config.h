/*
 * col_config: the collector's config table and its typed view.
 *
 * The table in col_config.c is the single source of truth for the collector's keys: the loader checks
 * files against it and `certsync-collector --help-config` prints it.
 */
#ifndef COL_CONFIG_H
#define COL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "cs_config.h"
#include "cs_err.h"
#include "cs_log.h"
#include "cs_policy.h"
#include "cs_policy_config.h"

/* Default search filters when ldap.filter is not set: one per kind of directory. */
#define COL_CONFIG_FILTER_AD "(&(objectCategory=person)(objectClass=user))"
#define COL_CONFIG_FILTER_OPENLDAP "(objectClass=inetOrgPerson)"

#define COL_CONFIG_TXN_ID_PREFIX "certsync-collector-"

typedef enum col_ldap_mode {
    COL_LDAP_MODE_AUTO = 0, /* DirSync on AD when permitted, else uSNChanged; syncrepl on OpenLDAP */
    COL_LDAP_MODE_DIRSYNC,
    COL_LDAP_MODE_USN,
    COL_LDAP_MODE_SYNCREPL,
} col_ldap_mode;

typedef enum col_sasl_mech {
    COL_SASL_NONE = 0, /* simple bind with ldap.bind_dn + password, or anonymous */
    COL_SASL_GSSAPI,
} col_sasl_mech;

/*
 * The loaded config. Strings point into the loader's storage and live until col_config_free().
 * Read-only for the services.
 */
typedef struct col_config {
    const char *source_id;
    const char *source_site; /* "" when not set */
    const char *ldap_url;
    bool ldap_starttls;
    const char *ldap_bind_dn;  /* NULL: anonymous or SASL */
    const char *ldap_password; /* secret contents, NULL when not set: never log it */
    col_sasl_mech ldap_sasl_mech;
    const char *ldap_tls_ca_file; /* resolved path, NULL: system CAs */
    bool ldap_tls_verify;
    bool ldap_allow_plaintext_bind;
    const char *const *ldap_base_dns; /* NULL-terminated */
    size_t ldap_base_dn_count;
    const char *ldap_filter;   /* NULL: per directory, see col_config_filter() */
    const char *ldap_group_dn; /* NULL: everyone under the base DNs */
    bool ldap_group_nested;    /* ldap.group_nested: expand nested groups of ldap.group_dn */
    col_ldap_mode ldap_mode;
    bool ldap_dirsync_object_security; /* DirSync flag 0x1: no Replicating Directory Changes needed */
    long long ldap_poll_interval_ms;
    int ldap_page_size;
    long long ldap_timeout_ms;
    const char *topic_events;
    const char *topic_checkpoint;
    const char *topic_held;
    int batch_max_events;
    long long batch_max_wait_ms;
    int guard_mass_removal_threshold;
    const char *admin_listen; /* as written */
    const char *admin_host;
    int admin_port; /* 0: any free port (tests) */
    cs_log_level log_level;
    cs_policy *policy; /* from policy.* without untrusted_issuer/revoked (reported, never applied): owned */
    unsigned readiness_expiring_soon_days; /* readiness.expiring_soon_days */
    char transactional_id[160];            /* certsync-collector-<source.id> */
    cs_config *raw;                        /* the loaded file: kafka.* properties and warnings */
} col_config;

/* The collector's table (for --help-config and tests). */
const cs_config_spec *col_config_spec(void);

/*
 * Loads and checks `path`, including secret files, kafka.* properties and cross-field rules. On success
 * *out is the config (caller frees with col_config_free()); on failure *out is NULL and the error lists
 * every problem, one per line.
 */
cs_err *col_config_load(const char *path, col_config **out);

/* Frees the config and wipes its secrets. NULL is allowed. */
void col_config_free(col_config *cfg);

/* The search filter to use: ldap.filter when set, else the default for AD or OpenLDAP. */
const char *col_config_filter(const col_config *cfg, bool active_directory);

/*
 * A new librdkafka conf with the kafka.* properties applied (in file order) and transactional.id set
 * to certsync-collector-<source.id>. Caller frees *out with rd_kafka_conf_destroy() or hands it to
 * rd_kafka_new().
 */
cs_err *col_config_kafka_conf(const col_config *cfg, rd_kafka_conf_t **out);

#endif
