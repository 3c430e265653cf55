/*
 * pub_pipeline: the publisher's exactly-once batch loop on the Kafka side.
 *
 *   start: init_transactions (fences a zombie with our transactional.id and aborts its open transaction)
 *          BEFORE anything is read, then subscribe to the events topic (and the retry topic).
 *   each batch (pub_pipeline_run_once):
 *     1. poll up to batch_max_events / batch_max_wait_ms. Right after an assignment the batch is extended
 *        (up to read_ahead_max_events) until every newly assigned events partition has been read up to the
 *        last stable offset it had at assignment ("read ahead", design.md "One uncommitted write per recipient").
 *     2. decode each record; an undecodable one becomes a dead letter (UNDECODABLE) carrying the original key,
 *        bytes, headers, topic/partition/offset, and the partition moves on.
 *     3. coalesce each key to its newest event (by version; a tie goes to the later record): the others get a
 *        SKIPPED_STALE result ("superseded in batch"). At most one write per object per batch.
 *     4. decide (pub_decide) against the applied state, then hand all writes to the applier at once. Multi-site
 *        (pub_ownership.h): with sources.priority, the writes are resolved first and a non-owner's write is
 *        dropped (SKIPPED_NOT_OWNER), handovers and clears added; without it, a write that landed on another
 *        recipient than before (a re-map) has the old recipient settled by a second apply.
 *     5. ONE transaction: a PublishResult per record, the applied-state records (obj/<key>, rcpt/<id>), dead
 *        letters, parked retry records, and the consumer offsets (last offset + 1 per partition, with FRESH
 *        group metadata). Every record of the batch is finished by then (applied, skipped, dead-lettered or
 *        parked), so the lowest unfinished offset of a partition is the end of its batch. Commit. When
 *        batch_max_apply_time ran out in step 4, the records from each partition's first unstarted write on are
 *        left out (offsets committed up to it) and the partition is sought back there after the commit (with
 *        sources.priority they are parked instead); a write still unfinished batch_cancel_grace_ms later is
 *        cancelled and parked, with no applied state. A multi-site extra write (handover, clear) that failed
 *        permanently is dead-lettered with the record that led to it; one that failed retriably parks that
 *        record instead of recording it, so the plan and the extra write are made again when it comes back.
 *     6. only after the commit: the in-memory applied state and the counters are updated.
 *   errors: a retriable or timed-out commit is resumed until it completes or opts.stop_flag is set (then the
 *   pipeline stops, see cs_kafka_producer_commit_resume); one that requires an abort aborts and seeks every
 *   partition of the batch back to its first offset, so the batch is re-processed (the writes repeat
 *   identically: they are idempotent); fatal or fenced: the pipeline stops without committing and every later
 *   call returns the same error.
 *
 * Partitioning rule: topics.state and topics.retry have the same partition count as topics.events (checked at
 * start). Every state record and every parked record is produced to the partition NUMBER of the event it came
 * from, so partition p of the state topic holds the applied state of exactly the keys of events partition p
 * (restored on assign with cs_state_reader's partition filter), and the range assignor gives partition p of the
 * events and retry topics to the same member. A recipient's rcpt/<id> follows its owner: when the owner is now
 * an object of another events partition (multi-site handover, re-map), the same transaction tombstones the
 * key in the partition that held it, and a restore that meets two records for one key in two partitions keeps
 * the newer written_at_ms (pub_state_put).
 *
 * Retry topic (a simple version): a RETRY_LATER outcome parks the original record in topics.retry inside the
 * transaction with headers certsync-attempt and certsync-not-before-ms. The retry topic is consumed too; a
 * record whose not-before is in the future pauses that retry partition (and seeks back to it) until then; the
 * events partitions keep flowing. A parked event that a newer event overtook is skipped as stale when it comes
 * back. Not done: parking the later events of a blocked key with it, and a maximum attempt count / age before
 * dead-lettering (the applier decides PERMANENT itself).
 *
 * Not thread-safe: one thread drives one pipeline.
 */
#ifndef PUB_PIPELINE_H
#define PUB_PIPELINE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cs_err.h"
#include "cs_policy.h"
#include "cs_readiness.h"
#include "pub_applier.h"
#include "pub_owner.h"

typedef struct pub_pipeline_opts {
    const char *topic_events;  /* required */
    const char *topic_state;   /* required, compacted, same partition count as topic_events */
    const char *topic_results; /* required */
    const char *topic_dlq;     /* required */
    const char *topic_retry;   /* required, same partition count as topic_events */
    const char *instance_id;   /* for dead letters and logs */
    int batch_max_events;      /* > 0 */
    int64_t batch_max_wait_ms; /* > 0 */
    int read_ahead_max_events; /* cap of a batch extended by read-ahead; 0: 10 x batch_max_events */
    /* Bound of one batch's apply phase (batch.max_apply_time), so a slow Office 365 cannot keep the consumer
     * from polling past max.poll.interval.ms: the writes are handed to the applier apply_chunk at a time, and
     * once this much time has passed since the first chunk no further chunk is started (the running one
     * finishes). The records from the lowest unstarted write of each partition on are left out of the
     * transaction and the partition is sought back to it, so the next batch consumes them again. With a
     * multi-site plan made before applying (sources.priority) the plan, its skips and its extra writes belong
     * to the whole batch, so nothing is deferred: the writes not started are parked in topics.retry (as if
     * throttled). With an applier that has apply_until, the writes are not chunked (the HTTP client stays
     * busy) and the deadline is checked as each write starts. 0: unbounded. */
    int64_t batch_max_apply_time_ms;
    /* With apply_until: after batch_max_apply_time_ms, how long unfinished writes may still take before they
     * are cancelled (a hung request), reported RETRY_LATER and parked: their state is not committed and they
     * are written again from topics.retry. 0: never cancelled. */
    int64_t batch_cancel_grace_ms;
    int apply_chunk;        /* writes per applier call when bounded; 0: 32 */
    int restore_timeout_ms; /* bound of one state restore; 0: 60000 */
    /* The certificate policy applied before pruning (pub_decide_with_policy); NULL: every value is written.
     * Must outlive the pipeline. Each refusal is logged (warn, facility "policy") once per committed batch. */
    const cs_policy *policy;
    /* Fault injection for tests: called after everything is produced and the offsets are sent, before the
     * commit; returning non-zero makes the pipeline treat the commit as failed-requiring-abort. NULL normally. */
    int (*fault_before_commit)(void *ctx);
    /* Fault injection for tests: called at the named points "restore" (each applied-state record read in the
     * assign callback) and "revoke" (entering the revoke callback, before the applier is quiesced); it may
     * kill the process there. NULL normally. */
    void (*fault_point)(void *ctx, const char *point);
    void *fault_ctx;
    /* A commit that Kafka does not answer is resumed (attempts of commit_call_timeout_ms, never an abort:
     * librdkafka refuses one while a commit is pending) until it completes or this flag becomes non-zero; then
     * the pipeline stops with an error that cs_kafka_producer_is_commit_pending() recognises, having
     * committed nothing more. NULL: resumed until it completes or fails. */
    volatile sig_atomic_t *stop_flag;
    int commit_call_timeout_ms; /* one commit attempt; 0: CS_KAFKA_COMMIT_CALL_TIMEOUT_MS_DEFAULT */
    /* Told true when a commit becomes pending and false when it no longer is (readiness); may be NULL. */
    void (*on_commit_pending)(void *ctx, bool pending);
    /* Told, from inside the assign/revoke callbacks, how many events partitions are owned with their state
     * restored and whether a restore is running (readiness: not ready meanwhile); may be NULL. */
    void (*on_owned)(void *ctx, size_t owned, bool restoring);
    void *pending_ctx; /* passed to on_commit_pending and on_owned */
    /* Multi-site precedence (sources.priority; pub_ownership.h), used when the applier has a resolve step;
     * NULL: every source ranks equal. Must outlive the pipeline. With at least one source listed, the
     * pipeline consumes only while this instance owns EVERY events partition (the claims of one person
     * can sit on two partitions): otherwise it pauses and pub_pipeline_partial_assignment() is true. */
    const pub_owner_rules *owner_rules;
    /* S/MIME readiness judged per object into its ObjectState (pub_readiness.h): "expiring soon" within this
     * many days; 0: CS_READINESS_DEFAULT_EXPIRING_SOON_DAYS. */
    unsigned readiness_expiring_soon_days;
} pub_pipeline_opts;

typedef struct pub_pipeline_stats {
    uint64_t events;            /* records handled in committed batches */
    uint64_t applied;           /* writes reported APPLIED */
    uint64_t cleared;           /* removals reported CLEARED */
    uint64_t skipped_stale;     /* version gate, including superseded in batch */
    uint64_t skipped_duplicate; /* same content */
    uint64_t skipped_not_owner; /* another object owns the recipient (multi-site) */
    uint64_t owner_writes;      /* extra writes of the multi-site step: handovers and clears of a recipient */
    uint64_t dead_lettered;     /* undecodable, nothing valid, permanent applier failures */
    uint64_t parked;            /* sent to the retry topic */
    uint64_t commits;           /* committed transactions */
    uint64_t aborts;            /* aborted transactions (batch re-processed) */
    uint64_t commit_retries;    /* commit attempts resumed because Kafka did not answer */
    uint64_t apply_time_cuts;   /* batches committed in part because batch_max_apply_time ran out */
    uint64_t restored_records;  /* state records loaded on assignments */
    uint64_t assignments;       /* assign callbacks */
    uint64_t policy_refusals[CS_POLICY_RULE_COUNT]; /* refused values by failed rule (a value counts once per
                                                       rule it fails), in committed batches */
} pub_pipeline_stats;

typedef struct pub_pipeline pub_pipeline;

/*
 * Creates the pipeline. `conf` (ownership passes in every case) carries bootstrap.servers, group.id and
 * transactional.id (pub_config_kafka_conf() sets all three) and any kafka.* settings; the consumer, the
 * producer and the state reader each get a copy. `opts` is copied; its strings must outlive the
 * pipeline. `applier` is copied. Caller frees *out with pub_pipeline_destroy().
 */
cs_err *pub_pipeline_new(rd_kafka_conf_t *conf, const pub_pipeline_opts *opts, const pub_applier *applier,
                         pub_pipeline **out);

/*
 * Fences (init_transactions, bounded by `timeout_ms`), checks the partition counts of the topics and
 * subscribes. Call once, before pub_pipeline_run_once().
 */
cs_err *pub_pipeline_start(pub_pipeline *p, int timeout_ms);

/*
 * Runs one batch (see above). *n_records (may be NULL) receives the number of records committed (0 when the
 * poll found nothing). A retriable error (an aborted and rewound batch, an applier that could not try) may be
 * followed by another call; after a fatal one (fenced included, see cs_kafka_producer_is_fenced()) the
 * pipeline is stopped and only pub_pipeline_destroy() is useful.
 */
cs_err *pub_pipeline_run_once(pub_pipeline *p, size_t *n_records);

/* Counters so far. */
void pub_pipeline_get_stats(const pub_pipeline *p, pub_pipeline_stats *out);

/* Number of applied-state entries held for the owned partitions (for tests and metrics). */
size_t pub_pipeline_state_count(const pub_pipeline *p);

/* Events partitions assigned to this instance whose applied state is restored (for readiness). */
size_t pub_pipeline_owned_partitions(const pub_pipeline *p);

/*
 * True when this instance owns at least one events partition and every owned one was read to its end (the
 * consumer saw the partition EOF after its last record) and everything read was committed: what --once
 * waits for. Meaningful right after a pub_pipeline_run_once() that returned NULL.
 */
bool pub_pipeline_caught_up(const pub_pipeline *p);

/*
 * True while sources.priority is set and this instance owns some but not all events partitions: the
 * pipeline then consumes nothing (partitions paused) and the instance must report itself not ready.
 */
bool pub_pipeline_partial_assignment(const pub_pipeline *p);

/* True when events partition `partition` is owned with its state restored (e.g. to drop the metrics of the
 * partitions that are not). */
bool pub_pipeline_owns(const pub_pipeline *p, int32_t partition);

/*
 * The objects held for the owned partitions counted by S/MIME readiness reason at `now` (unix seconds):
 * each object's stored verdict re-evaluated for time (pub_readiness.h). One pass over the state: call it
 * when the state changed or on a timer, not per record.
 */
void pub_pipeline_readiness(const pub_pipeline *p, int64_t now, cs_readiness_tally *out);

/* Consumer lag of one owned events partition: end offset (cached watermark) minus position. */
typedef void (*pub_pipeline_lag_fn)(void *ctx, int32_t partition, int64_t lag);

/* Calls `fn` once per owned events partition with its lag, from cached offsets (no broker round trip). */
void pub_pipeline_lag(pub_pipeline *p, pub_pipeline_lag_fn fn, void *ctx);

/* Leaves the group (revoke hook: quiesce, abort), destroys consumer and producer. NULL is allowed. */
void pub_pipeline_destroy(pub_pipeline *p);

#endif
