/*
 * cs_state_reader: loads a (compacted) state topic, read_committed, from the beginning up to the last stable
 * offset (LSO) of each partition, then returns.
 *
 * Used on start-up: the collector loads its checkpoint and object index (after init_transactions has fenced
 * zombies), the publisher its applied state for the partitions it was assigned. It finishes on an empty
 * topic, on a topic whose last record is a transaction abort marker, and on a topic with a transaction
 * still open by another producer: it stops at the LSO taken when the load starts and never waits for an open
 * transaction (design.md, "The last stable offset").
 *
 * librdkafka >= 1.7.1 (we have 2.0.2) returns the LSO from rd_kafka_query_watermark_offsets() for a
 * read_committed handle (librdkafka PR #3428); partition EOF, which also uses the LSO in read_committed
 * mode, ends partitions whose last records are control markers or aborted data.
 */
#ifndef CS_STATE_READER_H
#define CS_STATE_READER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cs_err.h"

/* One committed record. All pointers are valid only during the callback. */
typedef struct cs_state_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1 when the record has none */
    const void *key;      /* NULL for a null key */
    size_t key_len;
    const void *value; /* NULL for a null value (a tombstone) */
    size_t value_len;
} cs_state_record;

/* Called once per record, in offset order within a partition. Returning an error stops the load; the
 * error (wrapped with topic/partition/offset) is returned by cs_state_reader_load(). */
typedef cs_err *(*cs_state_record_cb)(const cs_state_record *record, void *opaque);

/*
 * Reads `topic` from the beginning to the LSO of each partition and calls `cb` for every committed record.
 *
 * `conf` carries bootstrap.servers and any TLS/SASL settings (kafka.* passthrough); its ownership passes to
 * this call in every case. The reader sets isolation.level=read_committed, enable.partition.eof=true,
 * enable.auto.commit=false and uses assign() (no group membership, no commits); `group.id` is not needed.
 * `partitions` (n_partitions entries) restricts the load to those partitions; NULL loads all.
 * `timeout_ms` (> 0) bounds the whole load: CS_ERR_TIMEOUT (retriable) names the partition, its position
 * and its end. A topic that does not exist, or a partition it does not have, is a CS_ERR_CONFIG error
 * naming it; so is a missing permission (TOPIC_ or GROUP_AUTHORIZATION_FAILED), named with its resource. `*n_records` (may be NULL) receives the number of records passed to `cb`.
 */
cs_err *cs_state_reader_load(rd_kafka_conf_t *conf, const char *topic, const int32_t *partitions,
                             size_t n_partitions, int timeout_ms, cs_state_record_cb cb, void *opaque,
                             uint64_t *n_records);

#endif
