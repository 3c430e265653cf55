/*
 * pub_consumer: the publisher's read_committed consumer in its group.
 *
 *  - isolation.level=read_committed, enable.auto.commit=false, enable.auto.offset.store=false: offsets are
 *    committed only through the producer's transaction (send_offsets_to_transaction).
 *  - An EAGER assignor (range unless the caller chose roundrobin): librdkafka 2.0.2 has cooperative-rebalance
 *    bugs (services.md); a cooperative strategy is refused. range also keeps partition p of the events and
 *    retry topics on one member, which the retry topic relies on (pub_pipeline.h).
 *  - enable.partition.eof=true: the pipeline needs to know when it has read up to the last stable offset.
 *  - The rebalance callback calls the hooks: on revoke FIRST the caller's on_revoke (quiesce the applier,
 *    abort an open transaction, drop state), then unassigns; on assign FIRST on_assign (restore applied
 *    state), then assigns. A retriable on_assign error (a leader moving during a broker failover) assigns the
 *    partitions PAUSED: nothing of them is fetched, their position stays at the committed offset, and
 *    pub_consumer_poll() retries on_assign every second (at most 120 times) and resumes them once it
 *    succeeds; a revoke drops the retry. Any other on_assign error, or the last failed retry, is returned by
 *    the next pub_consumer_poll() as fatal: the service restarts rather than process without state.
 *
 * Not thread-safe; the hooks run inside pub_consumer_poll() and pub_consumer_close().
 */
#ifndef PUB_CONSUMER_H
#define PUB_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cs_err.h"

typedef struct pub_consumer pub_consumer;

typedef struct pub_consumer_hooks {
    /* Partitions about to be assigned: restore what is needed before any record of them is processed. */
    cs_err *(*on_assign)(void *opaque, const rd_kafka_topic_partition_list_t *partitions);
    /* Partitions about to be revoked: quiesce writes, abort the transaction, forget their state. */
    void (*on_revoke)(void *opaque, const rd_kafka_topic_partition_list_t *partitions);
    void *opaque;
} pub_consumer_hooks;

/*
 * Creates the consumer from `conf` (ownership passes in every case; it must hold bootstrap.servers and
 * group.id; librdkafka warns about, and ignores, producer-only properties such as transactional.id).
 * Caller frees *out with pub_consumer_destroy().
 */
cs_err *pub_consumer_new(rd_kafka_conf_t *conf, const pub_consumer_hooks *hooks, pub_consumer **out);

/* Subscribes to `topics` (n entries, at most 8). */
cs_err *pub_consumer_subscribe(pub_consumer *c, const char *const *topics, size_t n);

/*
 * Polls once for up to `timeout_ms`. *out is a message (caller frees with rd_kafka_message_destroy()), a
 * partition-EOF event (message with err RD_KAFKA_RESP_ERR__PARTITION_EOF, also to be destroyed), or NULL on
 * timeout. Consumer errors that librdkafka recovers from are logged and yield NULL; a fatal consumer error or a
 * failed on_assign is returned as a fatal cs_err.
 */
cs_err *pub_consumer_poll(pub_consumer *c, int timeout_ms, rd_kafka_message_t **out);

/* Fresh group metadata (generation, member id) for send_offsets. Caller frees with
 * rd_kafka_consumer_group_metadata_destroy(). NULL only when out of memory. */
rd_kafka_consumer_group_metadata_t *pub_consumer_group_metadata(pub_consumer *c);

/* Moves the fetch position of one assigned partition to `offset` (to re-process a batch after an abort). */
cs_err *pub_consumer_seek(pub_consumer *c, const char *topic, int32_t partition, int64_t offset);

/* The last stable offset of `topic`/`partition` now (read_committed high watermark). */
cs_err *pub_consumer_lso(pub_consumer *c, const char *topic, int32_t partition, int64_t *out);

/* Pauses or resumes fetching one partition (the retry topic's not-before wait). */
cs_err *pub_consumer_pause(pub_consumer *c, const char *topic, int32_t partition, int pause);

/* Leaves the group (runs the revoke hook) and destroys the consumer. NULL is allowed. */
void pub_consumer_destroy(pub_consumer *c);

/* The librdkafka handle, for metrics and tests. Owned by the consumer. */
rd_kafka_t *pub_consumer_rd_kafka(pub_consumer *c);

#endif
