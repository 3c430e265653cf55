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
 *  - Pauses carry REASONS (pub_pause_reason), kept per partition: the restore retry above, the multi-site
 *    guard (sources.priority and not every partition owned) and a parked record's not-before time each set
 *    and clear only their own, and a partition is resumed only when no reason is left. So the restore
 *    retry's resume cannot undo the multi-site pause, nor a multi-site resume a not-before wait. A pause set
 *    from inside on_assign (before the partitions are assigned) is applied right after the assign.
 *    librdkafka keeps an application's pause on a partition across unassign and reassign, so a revoke
 *    resumes every paused partition and forgets all reasons: no pause outlives the assignment it was for.
 *  - Revoke versus HTTP (design.md "Fencing does not stop HTTP"): librdkafka runs the rebalance callback
 *    only inside rd_kafka_consumer_poll() and rd_kafka_consumer_close(), i.e. inside pub_consumer_poll()
 *    and pub_consumer_destroy(); the pipeline calls neither while it applies a batch (pub_applier.apply
 *    returns with nothing in flight, and the commit comes before the next poll). A rebalance that another
 *    member starts meanwhile waits for this member's next poll (up to max.poll.interval.ms), so on_revoke
 *    never finds a write of ours in flight; the applier's quiesce is the safety net.
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

/* Why a partition is paused (bits; see above). */
typedef enum pub_pause_reason {
    PUB_PAUSE_RESTORE = 1u << 0,    /* set by the consumer: its restore failed retriably, retried from poll */
    PUB_PAUSE_OWNERSHIP = 1u << 1,  /* sources.priority and not every events partition owned */
    PUB_PAUSE_NOT_BEFORE = 1u << 2, /* a parked retry record waits for its not-before time */
} pub_pause_reason;

/*
 * Sets (pause != 0) or clears `reason` on one partition: fetching stops when the first reason is set and
 * resumes when the last one is cleared. Inside on_assign the change is applied right after the assign. At
 * most 4096 partitions can hold a reason at once; beyond that a pause is refused with an error.
 */
cs_err *pub_consumer_pause(pub_consumer *c, const char *topic, int32_t partition, pub_pause_reason reason,
                           int pause);

/* The reasons (pub_pause_reason bits) `topic`/`partition` is paused for now; 0: fetching. */
unsigned pub_consumer_paused(const pub_consumer *c, const char *topic, int32_t partition);

/* Leaves the group (runs the revoke hook) and destroys the consumer. NULL is allowed. */
void pub_consumer_destroy(pub_consumer *c);

/* The librdkafka handle, for metrics and tests. Owned by the consumer. */
rd_kafka_t *pub_consumer_rd_kafka(pub_consumer *c);

#endif
