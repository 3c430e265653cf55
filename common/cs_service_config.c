#include "cs_service_config.h"

#include <stddef.h>

/* Same order as cs_log_level: the loader's index is the level. */
const char *const cs_service_config_log_levels[] = {"debug", "info", "warn", "error", NULL};

void cs_service_config_finalize_kafka(cs_config *cfg, const char *txn_prefix, const char *id_key,
                                      const char *fix)
{
    if (!cs_config_is_set(cfg, "kafka.bootstrap.servers"))
        cs_config_add_error(
            cfg, NULL,
            "missing required key \"kafka.bootstrap.servers\": the Kafka brokers to connect to, "
            "e.g. kafka-0.kafka:9092");
    if (cs_config_is_set(cfg, "kafka.transactional.id"))
        cs_config_add_error(cfg, "kafka.transactional.id",
                            "kafka.transactional.id is set by certsync (%s<%s>): remove it and %s %s instead",
                            txn_prefix, id_key, fix, id_key);
}
