/*
 * Helpers for integration tests against the real Kafka started by tests/services/kafka.sh.
 * They abort the test (cmocka fail) on any error: a test helper has nobody to return an error to.
 */
#ifndef KAFKA_TEST_UTIL_H
#define KAFKA_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* Reads KAFKA_BOOTSTRAP (and KAFKA_NODES) from the file named by $CS_KAFKA_ENV. Returns a static string. */
const char *kt_bootstrap(void);
int kt_nodes(void);

/* A topic name unique to this process and call: "<prefix>-<pid>-<n>-<time>". Caller frees with free(). */
char *kt_unique_name(const char *prefix);

/* A new conf with bootstrap.servers set. Caller owns it (pass it on or rd_kafka_conf_destroy). */
rd_kafka_conf_t *kt_conf(void);

/* Creates a topic with the Admin API and waits until its leaders are known. `compact` sets
 * cleanup.policy=compact. */
void kt_create_topic(const char *name, int partitions, int replication, int compact);

/* Waits (bounded, 30 s) until no transaction is open or unfinished on any partition of `topic`:
 * read_committed LSO == high watermark. commit_transaction returns before the coordinator has written
 * the commit markers, so a reader started right after a commit may still see the old LSO. */
void kt_wait_stable(const char *topic, int partitions);

/* Polls rd_kafka_committed() (bounded, ~10 s) until `partition` of `topic` has offset `want`; returns the
 * last offset seen (RD_KAFKA_OFFSET_INVALID when none). */
int64_t kt_wait_committed_offset(rd_kafka_t *consumer, const char *topic, int32_t partition, int64_t want);

/* Counts the brokers in a metadata response. */
int kt_broker_count(void);

#endif
