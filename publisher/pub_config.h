/*
 * pub_config: the publisher's config table and its typed view.
 *
 * The table in pub_config.c is the single source of truth for the publisher's keys: the loader checks
 * files against it and `certsync-publisher --help-config` prints it.
 */
#ifndef PUB_CONFIG_H
#define PUB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "cs_config.h"
#include "cs_err.h"
#include "cs_log.h"
#include "cs_policy.h"
#include "cs_policy_config.h"
#include "pub_owner.h"

#define PUB_CONFIG_DEFAULT_GROUP_ID "certsync-publisher"
#define PUB_CONFIG_TXN_ID_PREFIX "certsync-publisher-"

typedef enum pub_auth {
    PUB_AUTH_CERTIFICATE = 0, /* client assertion JWT signed with o365.private_key_file */
    PUB_AUTH_SECRET,          /* client secret from o365.client_secret_file */
} pub_auth;

typedef enum pub_assertion_alg {
    PUB_ASSERTION_RS256 = 0,
    PUB_ASSERTION_PS256,
} pub_assertion_alg;

typedef enum pub_resolve {
    PUB_RESOLVE_IMMUTABLE_ID = 0,
    PUB_RESOLVE_SID,
    PUB_RESOLVE_UPN,
    PUB_RESOLVE_MAIL,
} pub_resolve;

#define PUB_RESOLVE_MAX 4

/*
 * The loaded config. Strings point into the loader's storage and live until pub_config_free().
 * Read-only for the services.
 */
typedef struct pub_config {
    const char *instance_id;
    const char *topic_events;
    const char *topic_state;
    const char *topic_results;
    const char *topic_dlq;
    const char *topic_retry;
    const char *o365_tenant_id;
    const char *o365_tenant_domain;
    const char *o365_client_id;
    const char *o365_authority_url;
    const char *o365_graph_url;
    const char *o365_exchange_url;
    const char *o365_exchange_resource; /* token audience override or NULL */
    const char *o365_graph_resource;    /* token audience override or NULL */
    pub_auth o365_auth;
    const char *o365_client_secret;    /* secret contents or NULL: never log it */
    const char *o365_certificate_file; /* resolved path or NULL */
    const char *o365_private_key;      /* secret contents (PEM) or NULL: never log it */
    const char *o365_ca_file;          /* resolved path or NULL: system CAs only */
    pub_assertion_alg o365_assertion_alg;
    int http_max_inflight;
    long long http_timeout_ms;
    pub_resolve resolve_order[PUB_RESOLVE_MAX];
    size_t resolve_count;
    /* retry.not_found.*: the waits of a recipient that is not found yet (pub_o365.h) */
    long long not_found_first_delay_ms;
    int not_found_factor;
    long long not_found_max_delay_ms;
    int not_found_attempts;
    int batch_max_events;
    long long batch_max_wait_ms;
    long long batch_max_apply_time_ms; /* < kafka max.poll.interval.ms (checked at load) */
    long long batch_cancel_grace_ms;   /* + batch_max_apply_time_ms < kafka max.poll.interval.ms */
    const char *admin_listen;
    const char *admin_host;
    int admin_port;
    cs_log_level log_level;
    cs_policy *policy;            /* from policy.* (every rule), built at load: owned by the config */
    pub_owner_rules *owner_rules; /* sources.priority (pub_owner.h): owned by the config */
    unsigned readiness_expiring_soon_days; /* readiness.expiring_soon_days */
    char transactional_id[160];            /* certsync-publisher-<publisher.instance_id> */
    cs_config *raw;                        /* the loaded file: kafka.* properties and warnings */
} pub_config;

/* The publisher's table (for --help-config and tests). */
const cs_config_spec *pub_config_spec(void);

/*
 * Loads and checks `path`, including secret files, kafka.* properties and cross-field rules. On success
 * *out is the config (caller frees with pub_config_free()); on failure *out is NULL and the error lists
 * every problem, one per line.
 */
cs_err *pub_config_load(const char *path, pub_config **out);

/* Frees the config and wipes its secrets. NULL is allowed. */
void pub_config_free(pub_config *cfg);

/*
 * A new librdkafka conf: group.id certsync-publisher unless kafka.group.id is set, then the kafka.*
 * properties in file order, then transactional.id certsync-publisher-<instance_id>. Caller frees *out
 * with rd_kafka_conf_destroy() or hands it to rd_kafka_new().
 */
cs_err *pub_config_kafka_conf(const pub_config *cfg, rd_kafka_conf_t **out);

/* "immutable_id", "sid", "upn" or "mail". */
const char *pub_resolve_name(pub_resolve r);

#endif
