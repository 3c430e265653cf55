/*
 * cs_service_config: the config rows and checks both services carry with the same meaning (batch.*,
 * admin.listen, log.level, the policy rows, the kafka.* passthrough), so a key reads, defaults and fails
 * the same way in the collector and the publisher.
 *
 * Each service splices the row macros into its static cs_config_row table where its keys belong (the
 * table order is the --help-config order) and calls cs_service_config_finalize_kafka() from its finalize
 * step. Rows whose text differs per service (topics.*, the id key) stay in the service's table.
 */
#ifndef CS_SERVICE_CONFIG_H
#define CS_SERVICE_CONFIG_H

#include "cs_config.h"
#include "cs_policy_config.h"

/* "debug", "info", "warn", "error", NULL: the allowed values of log.level, in cs_log_level order, so
 * cs_config_get_enum_index(cfg, "log.level") casts to cs_log_level. */
extern const char *const cs_service_config_log_levels[];

/*
 * batch.max_events and batch.max_wait; the defaults are per service (string literals as written in a
 * file, e.g. "1000" and "500ms").
 */
#define CS_SERVICE_CONFIG_BATCH_ROWS(max_events_def, max_wait_def)                                           \
    {.name = "batch.max_events",                                                                             \
     .type = CS_CONFIG_INT,                                                                                  \
     .def = max_events_def,                                                                                  \
     .min = 1,                                                                                               \
     .max = 100000,                                                                                          \
     .desc = "Commit a Kafka transaction after at most this many events."},                                  \
    {                                                                                                        \
        .name = "batch.max_wait", .type = CS_CONFIG_DURATION, .def = max_wait_def, .min = 1,                 \
        .max = 60000LL, /* 1 minute, in ms */                                                                \
            .desc = "Commit a Kafka transaction at most this long after its first event."                    \
    }

/*
 * admin.listen (default 0.0.0.0:<admin_port>, a number literal), log.level and CS_POLICY_CONFIG_ROWS.
 */
#define CS_SERVICE_CONFIG_ROWS(admin_port)                                                                   \
    {.name = "admin.listen",                                                                                 \
     .type = CS_CONFIG_LISTEN,                                                                               \
     .def = "0.0.0.0:" #admin_port,                                                                          \
     .desc = "Address of the admin HTTP endpoint (/healthz, /readyz, /metrics). Port 0 picks a free port."}, \
        {.name = "log.level",                                                                                \
         .type = CS_CONFIG_ENUM,                                                                             \
         .def = "info",                                                                                      \
         .allowed = cs_service_config_log_levels,                                                            \
         .desc = "Lowest level of log lines written."},                                                      \
        CS_POLICY_CONFIG_ROWS

/* The kafka.* passthrough row; `more` (a string literal) ends the description with the service's keys
 * certsync sets itself. */
#define CS_SERVICE_CONFIG_KAFKA_ROW(more)                                                                    \
    {                                                                                                        \
        .name = "kafka.", .type = CS_CONFIG_PREFIX,                                                          \
        .desc = "Any librdkafka property, e.g. kafka.bootstrap.servers (required), "                         \
                "kafka.security.protocol. " more                                                             \
    }

/*
 * For a service's finalize step: kafka.bootstrap.servers must be set, and kafka.transactional.id must
 * not be (certsync sets it to <txn_prefix><value of id_key>). `fix` is the verb of the error's advice,
 * e.g. "choose" gives "remove it and choose source.id instead".
 */
void cs_service_config_finalize_kafka(cs_config *cfg, const char *txn_prefix, const char *id_key,
                                      const char *fix);

#endif
