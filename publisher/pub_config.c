#include "pub_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_service_config.h"

static const char *const auth_values[] = {"certificate", "secret", NULL};
static const char *const alg_values[] = {"RS256", "PS256", NULL};
static const char *const resolve_values[] = {"immutable_id", "sid", "upn", "mail", NULL};

#define SEC(x) ((x)*1000LL)
#define MIN(x) ((x)*60000LL)
#define HOUR(x) ((x)*3600000LL)

/* Entra tenant and application ids are GUIDs: 8-4-4-4-12 hex digits. */
static const char *check_guid(const char *v)
{
    static const char *const bad = "write a GUID like 00000000-0000-0000-0000-000000000000 (from the Entra "
                                   "admin center)";
    if (strlen(v) != 36)
        return bad;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? v[i] != '-' : !isxdigit((unsigned char)v[i]))
            return bad;
    }
    return NULL;
}

static const char *check_domain(const char *v)
{
    static const char *const bad = "write the tenant's domain, e.g. contoso.onmicrosoft.com";
    if (!strchr(v, '.') || v[0] == '.' || strlen(v) > 253)
        return bad;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
            return bad;
    return NULL;
}

/* The publisher's keys. Keep descriptions short: they are the --help-config text. */
static const cs_config_row pub_rows[] = {
    {.name = "publisher.instance_id",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = cs_config_check_id,
     .desc = "Stable id of this instance (e.g. the StatefulSet pod name); Kafka transactional.id is "
             "certsync-publisher-<id>. Unique per running instance, stable across restarts."},
    {.name = "topics.events",
     .type = CS_CONFIG_STRING,
     .def = "certsync.changes.v1",
     .check = cs_config_check_topic,
     .desc = "Topic of change events to apply."},
    {.name = "topics.state",
     .type = CS_CONFIG_STRING,
     .def = "certsync.publisher-state.v1",
     .check = cs_config_check_topic,
     .desc = "Compacted topic of applied state per object (the version gate)."},
    {.name = "topics.results",
     .type = CS_CONFIG_STRING,
     .def = "certsync.results.v1",
     .check = cs_config_check_topic,
     .desc = "Topic of publish results."},
    {.name = "topics.dlq",
     .type = CS_CONFIG_STRING,
     .def = "certsync.dlq.v1",
     .check = cs_config_check_topic,
     .desc = "Dead-letter topic for events that failed permanently."},
    {.name = "topics.retry",
     .type = CS_CONFIG_STRING,
     .def = "certsync.retry.v1",
     .check = cs_config_check_topic,
     .desc = "Topic where blocked recipients wait for a later retry."},
    {.name = "o365.tenant_id",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = check_guid,
     .desc = "Entra tenant id (GUID)."},
    {.name = "o365.tenant_domain",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = check_domain,
     .desc = "Tenant domain for the Exchange admin API, e.g. contoso.onmicrosoft.com."},
    {.name = "o365.client_id",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = check_guid,
     .desc = "Application (client) id of the app registration (GUID)."},
    {.name = "o365.authority_url",
     .type = CS_CONFIG_STRING,
     .def = "https://login.microsoftonline.com",
     .check = cs_config_check_https_url,
     .desc = "OAuth2 authority (token endpoint host)."},
    {.name = "o365.graph_url",
     .type = CS_CONFIG_STRING,
     .def = "https://graph.microsoft.com",
     .check = cs_config_check_https_url,
     .desc = "Microsoft Graph base URL (recipient lookups)."},
    {.name = "o365.exchange_url",
     .type = CS_CONFIG_STRING,
     .def = "https://outlook.office365.com",
     .check = cs_config_check_https_url,
     .desc = "Exchange Online admin API base URL (certificate writes)."},
    {.name = "o365.exchange_resource",
     .type = CS_CONFIG_STRING,
     .check = cs_config_check_https_url,
     .desc = "Resource (token audience) of the Exchange admin API when it differs from o365.exchange_url, "
             "e.g. behind a proxy or for a sovereign cloud. Default: the origin of o365.exchange_url."},
    {.name = "o365.graph_resource",
     .type = CS_CONFIG_STRING,
     .check = cs_config_check_https_url,
     .desc = "Resource (token audience) of Microsoft Graph when it differs from o365.graph_url. Default: "
             "the origin of o365.graph_url."},
    {.name = "o365.auth",
     .type = CS_CONFIG_ENUM,
     .def = "certificate",
     .allowed = auth_values,
     .desc = "How the app authenticates: certificate (signed client assertion; needs o365.certificate_file "
             "and o365.private_key_file) or secret (needs o365.client_secret_file)."},
    {.name = "o365.client_secret_file",
     .type = CS_CONFIG_SECRET,
     .desc = "File holding the client secret, for o365.auth: secret."},
    {.name = "o365.certificate_file",
     .type = CS_CONFIG_FILE,
     .desc = "PEM certificate registered on the app, for o365.auth: certificate (its thumbprint goes in the "
             "assertion header)."},
    {.name = "o365.private_key_file",
     .type = CS_CONFIG_SECRET,
     .desc = "PEM private key of o365.certificate_file, for o365.auth: certificate."},
    {.name = "o365.ca_file",
     .type = CS_CONFIG_FILE,
     .desc = "Extra PEM CA bundle trusted in addition to the system CAs (e.g. a TLS-inspecting proxy or a "
             "test emulator). Verification is always on."},
    {.name = "o365.assertion_alg",
     .type = CS_CONFIG_ENUM,
     .def = "RS256",
     .allowed = alg_values,
     .desc = "Signature algorithm of the client assertion JWT."},
    {.name = "http.max_inflight",
     .type = CS_CONFIG_INT,
     .def = "8",
     .min = 1,
     .max = 64,
     .desc = "HTTP requests to Office 365 in flight at once."},
    {.name = "http.timeout",
     .type = CS_CONFIG_DURATION,
     .def = "30s",
     .min = SEC(1),
     .max = MIN(5),
     .desc = "Limit for one HTTP request, connect included."},
    {.name = "resolve.order",
     .type = CS_CONFIG_LIST,
     .def = "immutable_id,sid,upn,mail",
     .allowed = resolve_values,
     .desc = "How a directory object is matched to an Exchange recipient, first match wins."},
    {.name = "sources.priority",
     .type = CS_CONFIG_LIST,
     .desc =
         "Multi-site precedence: source ids (the collectors' source.id), best first. When one person is "
         "in several sources, the recipient takes the certificates of the best source that has the person "
         "with certificates; sources not listed rank after the listed ones, and among equal ranks the "
         "newest change wins. Needs one publisher instance owning every events partition (replicas: 1); "
         "an instance owning only some pauses and is not ready (docs/architecture.md, Multi-site)."},
    {.name = "retry.not_found.first_delay",
     .type = CS_CONFIG_DURATION,
     .def = "5m",
     .min = SEC(1),
     .max = HOUR(24),
     .desc = "Wait before the first retry of an event whose recipient is not found: usually \"not yet\", it "
             "appears after the next Entra Connect cycle. The event waits in topics.retry; later events of "
             "other recipients go on."},
    {.name = "retry.not_found.factor",
     .type = CS_CONFIG_INT,
     .def = "3",
     .min = 1,
     .max = 10,
     .desc = "Each further wait of a not-found recipient is the previous one times this (1: constant)."},
    {.name = "retry.not_found.max_delay",
     .type = CS_CONFIG_DURATION,
     .def = "6h",
     .min = SEC(1),
     .max = HOUR(7 * 24),
     .desc = "Longest wait between two tries of a not-found recipient (at least "
             "retry.not_found.first_delay)."},
    {.name = "retry.not_found.attempts",
     .type = CS_CONFIG_INT,
     .def = "8",
     .min = 1,
     .max = 100,
     .desc = "Try at which a recipient still not found goes to topics.dlq with reason RECIPIENT_NOT_FOUND "
             "(the redrive command sends it back); 1 dead-letters at once."},
    CS_SERVICE_CONFIG_BATCH_ROWS("500", "1s"),
    {.name = "batch.max_apply_time",
     .type = CS_CONFIG_DURATION,
     .def = "60s",
     .min = 100,
     .max = MIN(30),
     .desc =
         "Longest time one batch keeps starting Office 365 writes; then the writes in flight get "
         "batch.cancel_grace to finish, what completed is committed and the rest is consumed again in the "
         "next "
         "batch, so a slow or throttled Office 365 never keeps the consumer from polling. With "
         "sources.priority the writes not started are parked in topics.retry instead (the multi-site plan "
         "belongs to the whole batch, so the batch is committed whole). batch.max_apply_time + "
         "batch.cancel_grace must be below kafka.max.poll.interval.ms (default 300000)."},
    {.name = "batch.cancel_grace",
     .type = CS_CONFIG_DURATION,
     .def = "30s",
     .min = 100,
     .max = MIN(30),
     .desc =
         "After batch.max_apply_time, how long the writes in flight may still take; a request still "
         "unanswered then (a hung Office 365 call) is cancelled, its write is not recorded as applied and "
         "it is retried through topics.retry (a full-state write: repeating it is harmless, the version "
         "gate decides)."},
    CS_SERVICE_CONFIG_ROWS(9465),
    CS_SERVICE_CONFIG_KAFKA_ROW("group.id defaults to " PUB_CONFIG_DEFAULT_GROUP_ID
                                "; transactional.id is set from publisher.instance_id."),
    {.name = NULL},
};

/* Cross-field rules: what a single row cannot say. */
static void pub_finalize(cs_config *c)
{
    cs_policy_config_finalize(c);
    if (cs_config_key_ok(c, "o365.auth")) {
        bool secret = strcmp(cs_config_get_string(c, "o365.auth"), "secret") == 0;
        bool has_secret = cs_config_is_set(c, "o365.client_secret_file");
        bool has_cert = cs_config_is_set(c, "o365.certificate_file");
        bool has_key = cs_config_is_set(c, "o365.private_key_file");
        if (secret && !has_secret)
            cs_config_add_error(c, "o365.auth",
                                "o365.auth: secret needs o365.client_secret_file: set it to the file holding "
                                "the client secret");
        if (!secret && !has_cert && cs_config_key_ok(c, "o365.certificate_file"))
            cs_config_add_error(c, "o365.auth",
                                "o365.auth: certificate needs o365.certificate_file: set it to the app's PEM "
                                "certificate (or use o365.auth: secret)");
        if (!secret && !has_key && cs_config_key_ok(c, "o365.private_key_file"))
            cs_config_add_error(
                c, "o365.auth",
                "o365.auth: certificate needs o365.private_key_file: set it to the file holding "
                "the certificate's PEM private key");
        if (secret && (has_cert || has_key))
            cs_config_add_warning(c, "o365.auth",
                                  "o365.certificate_file / o365.private_key_file are ignored with o365.auth: "
                                  "secret");
        if (!secret && has_secret)
            cs_config_add_warning(c, "o365.client_secret_file",
                                  "o365.client_secret_file is ignored with o365.auth: certificate");
    }
    if (cs_config_key_ok(c, "retry.not_found.first_delay") &&
        cs_config_key_ok(c, "retry.not_found.max_delay") &&
        cs_config_get_duration_ms(c, "retry.not_found.max_delay") <
            cs_config_get_duration_ms(c, "retry.not_found.first_delay"))
        cs_config_add_error(c, "retry.not_found.max_delay",
                            "retry.not_found.max_delay is shorter than retry.not_found.first_delay: raise it "
                            "(or lower retry.not_found.first_delay)");
    cs_service_config_finalize_kafka(c, PUB_CONFIG_TXN_ID_PREFIX, "publisher.instance_id", "set");
    if (cs_config_key_ok(c, "batch.max_apply_time")) {
        /* The poll interval librdkafka enforces: leaving the group mid-batch would throw the batch away. */
        long long poll_ms = 300000;
        for (size_t i = 0; i < cs_config_prefix_count(c, "kafka."); i++) {
            const char *name, *value;
            int line;
            cs_config_prefix_at(c, "kafka.", i, &name, &value, &line);
            if (strcmp(name, "max.poll.interval.ms") == 0)
                poll_ms = strtoll(value, NULL, 10);
        }
        long long apply_ms = cs_config_get_duration_ms(c, "batch.max_apply_time");
        long long grace_ms = cs_config_key_ok(c, "batch.cancel_grace")
                                 ? cs_config_get_duration_ms(c, "batch.cancel_grace")
                                 : 0;
        if (poll_ms > 0 && apply_ms >= poll_ms)
            cs_config_add_error(
                c, "batch.max_apply_time",
                "batch.max_apply_time (%lld ms) must be below kafka.max.poll.interval.ms (%lld "
                "ms), with room for the writes in flight: lower batch.max_apply_time or raise "
                "kafka.max.poll.interval.ms",
                apply_ms, poll_ms);
        else if (poll_ms > 0 && apply_ms + grace_ms >= poll_ms)
            cs_config_add_error(c, "batch.cancel_grace",
                                "batch.max_apply_time (%lld ms) + batch.cancel_grace (%lld ms) must be below "
                                "kafka.max.poll.interval.ms (%lld ms): a batch may take that long; lower "
                                "either or raise kafka.max.poll.interval.ms",
                                apply_ms, grace_ms, poll_ms);
    }
    /* Offsets commit inside the publisher's transactions; anything else breaks exactly-once. */
    for (size_t i = 0; i < cs_config_prefix_count(c, "kafka."); i++) {
        const char *name, *value;
        int line;
        cs_config_prefix_at(c, "kafka.", i, &name, &value, &line);
        if (strcmp(name, "enable.auto.commit") == 0 && strcmp(value, "false") != 0)
            cs_config_add_error(c, "kafka.enable.auto.commit",
                                "kafka.enable.auto.commit must stay false: offsets are committed inside the "
                                "publisher's transactions");
        if (strcmp(name, "isolation.level") == 0 && strcmp(value, "read_committed") != 0)
            cs_config_add_error(
                c, "kafka.isolation.level",
                "kafka.isolation.level must stay read_committed: the publisher must not apply "
                "aborted events");
    }
}

static const cs_config_spec pub_spec = {
    .service = "certsync-publisher",
    .rows = pub_rows,
    .finalize = pub_finalize,
};

const cs_config_spec *pub_config_spec(void)
{
    return &pub_spec;
}

const char *pub_resolve_name(pub_resolve r)
{
    return (unsigned)r < PUB_RESOLVE_MAX ? resolve_values[r] : "?";
}

cs_err *pub_config_load(const char *path, pub_config **out)
{
    cs_config *raw = NULL;
    pub_config *cfg = NULL;
    *out = NULL;
    cs_err *err = cs_config_load(&pub_spec, path, &raw);
    if (err)
        goto cleanup;
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "%s: out of memory", path);
        goto cleanup;
    }
    cfg->raw = raw;
    cfg->instance_id = cs_config_get_string(raw, "publisher.instance_id");
    cfg->topic_events = cs_config_get_string(raw, "topics.events");
    cfg->topic_state = cs_config_get_string(raw, "topics.state");
    cfg->topic_results = cs_config_get_string(raw, "topics.results");
    cfg->topic_dlq = cs_config_get_string(raw, "topics.dlq");
    cfg->topic_retry = cs_config_get_string(raw, "topics.retry");
    cfg->o365_tenant_id = cs_config_get_string(raw, "o365.tenant_id");
    cfg->o365_tenant_domain = cs_config_get_string(raw, "o365.tenant_domain");
    cfg->o365_client_id = cs_config_get_string(raw, "o365.client_id");
    cfg->o365_authority_url = cs_config_get_string(raw, "o365.authority_url");
    cfg->o365_graph_url = cs_config_get_string(raw, "o365.graph_url");
    cfg->o365_exchange_url = cs_config_get_string(raw, "o365.exchange_url");
    cfg->o365_exchange_resource = cs_config_get_string(raw, "o365.exchange_resource");
    cfg->o365_graph_resource = cs_config_get_string(raw, "o365.graph_resource");
    cfg->o365_auth = (pub_auth)cs_config_get_enum_index(raw, "o365.auth");
    cfg->o365_client_secret = cs_config_get_secret(raw, "o365.client_secret_file");
    cfg->o365_certificate_file = cs_config_get_string(raw, "o365.certificate_file");
    cfg->o365_private_key = cs_config_get_secret(raw, "o365.private_key_file");
    cfg->o365_ca_file = cs_config_get_string(raw, "o365.ca_file");
    cfg->o365_assertion_alg = (pub_assertion_alg)cs_config_get_enum_index(raw, "o365.assertion_alg");
    cfg->http_max_inflight = (int)cs_config_get_int(raw, "http.max_inflight");
    cfg->http_timeout_ms = cs_config_get_duration_ms(raw, "http.timeout");
    const char *const *order = NULL;
    size_t n = cs_config_get_list(raw, "resolve.order", &order);
    /* The loader refuses unknown and repeated items, so at most PUB_RESOLVE_MAX remain. */
    for (size_t i = 0; i < n && i < PUB_RESOLVE_MAX; i++)
        cfg->resolve_order[cfg->resolve_count++] =
            (pub_resolve)cs_config_enum_index(resolve_values, order[i]);
    cfg->not_found_first_delay_ms = cs_config_get_duration_ms(raw, "retry.not_found.first_delay");
    cfg->not_found_factor = (int)cs_config_get_int(raw, "retry.not_found.factor");
    cfg->not_found_max_delay_ms = cs_config_get_duration_ms(raw, "retry.not_found.max_delay");
    cfg->not_found_attempts = (int)cs_config_get_int(raw, "retry.not_found.attempts");
    cfg->batch_max_events = (int)cs_config_get_int(raw, "batch.max_events");
    cfg->batch_max_wait_ms = cs_config_get_duration_ms(raw, "batch.max_wait");
    cfg->batch_max_apply_time_ms = cs_config_get_duration_ms(raw, "batch.max_apply_time");
    cfg->batch_cancel_grace_ms = cs_config_get_duration_ms(raw, "batch.cancel_grace");
    cfg->admin_listen = cs_config_get_string(raw, "admin.listen");
    cs_config_get_listen(raw, "admin.listen", &cfg->admin_host, &cfg->admin_port);
    cfg->log_level = (cs_log_level)cs_config_get_enum_index(raw, "log.level");
    /* instance_id is at most 100 characters (cs_config_check_id), so this always fits. */
    snprintf(cfg->transactional_id, sizeof(cfg->transactional_id), "%s%s", PUB_CONFIG_TXN_ID_PREFIX,
             cfg->instance_id);
    cfg->readiness_expiring_soon_days = cs_policy_config_expiring_soon_days(raw);
    /* Built now, so --check-config loads the CA and CRL files too; the publisher judges every rule. */
    err = cs_policy_config_build(raw, CS_POLICY_CONFIG_FULL, &cfg->policy);
    if (err)
        goto cleanup;
    const char *const *prio = NULL;
    size_t n_prio = cs_config_get_list(raw, "sources.priority", &prio);
    err = pub_owner_rules_new(prio, n_prio, &cfg->owner_rules);
    if (err) {
        err = cs_err_wrap(err, "%s", path);
        goto cleanup;
    }
    *out = cfg;
    cfg = NULL;
    raw = NULL;
cleanup:
    if (cfg) {
        cs_policy_free(cfg->policy);
        pub_owner_rules_free(cfg->owner_rules);
    }
    free(cfg);
    cs_config_free(raw);
    return err;
}

void pub_config_free(pub_config *cfg)
{
    if (!cfg)
        return;
    cs_policy_free(cfg->policy);
    pub_owner_rules_free(cfg->owner_rules);
    cs_config_free(cfg->raw);
    free(cfg);
}

cs_err *pub_config_kafka_conf(const pub_config *cfg, rd_kafka_conf_t **out)
{
    char errstr[512];
    cs_err *err = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    *out = NULL;
    /* The default first, so a kafka.group.id in the file overrides it. */
    if (rd_kafka_conf_set(conf, "group.id", PUB_CONFIG_DEFAULT_GROUP_ID, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "setting the default group.id: %s", errstr);
        goto cleanup;
    }
    err = cs_config_apply_kafka(cfg->raw, conf);
    if (err)
        goto cleanup;
    if (rd_kafka_conf_set(conf, "transactional.id", cfg->transactional_id, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "%s: transactional.id \"%s\" (from publisher.instance_id) rejected: %s",
                         cs_config_path(cfg->raw), cfg->transactional_id, errstr);
        goto cleanup;
    }
    *out = conf;
    conf = NULL;
cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    return err;
}
