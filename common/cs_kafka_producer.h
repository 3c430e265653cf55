/*
 * cs_kafka_producer: a transactional Kafka producer that follows librdkafka 2.0.2's error classes.
 *
 *   init (fences zombies) -> [ begin -> produce* -> send_offsets? -> commit | abort ]* -> destroy
 *
 * Every failure is a cs_err whose flags tell the caller what to do, mapped from librdkafka's:
 *   CS_ERR_F_RETRIABLE           call the same function again with the same arguments
 *   CS_ERR_F_TXN_REQUIRES_ABORT  call cs_kafka_producer_abort(), then redo the whole transaction
 *   CS_ERR_F_FATAL               the producer is unusable: destroy it (and usually exit)
 * An error librdkafka gives no flag at all is treated as fatal (services.md: librdkafka 2.0.2).
 * A fenced producer (another instance with the same transactional.id called init) gets a fatal error that
 * cs_kafka_producer_is_fenced() recognises: that is the normal end of a passive replica, not a crash.
 *
 * An explicit state machine rejects misuse (e.g. produce outside a transaction) with CS_ERR_STATE and logs
 * every transition. Not thread-safe: one thread drives one producer.
 */
#ifndef CS_KAFKA_PRODUCER_H
#define CS_KAFKA_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cs_err.h"

/* Extra cs_err flag set (with CS_ERR_F_FATAL) when the producer was fenced. Kept above the generic
 * flags of cs_err.h so the two never collide. */
#define CS_KAFKA_ERR_F_FENCED 0x100

/* Default cap of librdkafka's producer queue when the caller left the 1 GiB default (design.md). */
#define CS_KAFKA_PRODUCER_QUEUE_KBYTES_DEFAULT 65536

typedef struct cs_kafka_producer cs_kafka_producer;

typedef enum cs_kafka_producer_state {
    CS_KAFKA_PRODUCER_INIT = 0,   /* created; init_transactions not done yet */
    CS_KAFKA_PRODUCER_READY,      /* no transaction open */
    CS_KAFKA_PRODUCER_IN_TXN,     /* begin done: produce, send_offsets, commit, abort */
    CS_KAFKA_PRODUCER_COMMITTING, /* commit started; a retriable failure leaves it here: commit again */
    CS_KAFKA_PRODUCER_ABORTABLE,  /* the transaction failed: only abort is allowed */
    CS_KAFKA_PRODUCER_ABORTING,   /* abort started; a retriable failure leaves it here: abort again */
    CS_KAFKA_PRODUCER_FATAL,      /* unusable: only destroy */
} cs_kafka_producer_state;

/* One message header; `value` may be NULL (a null header value). */
typedef struct cs_kafka_header {
    const char *name;
    const void *value;
    size_t value_len;
} cs_kafka_header;

/*
 * Creates a transactional producer from `conf`, whose ownership passes to this call in every case (it is
 * destroyed on failure). Sets `transactional.id` from `transactional_id` unless that is NULL (then `conf`
 * must already hold one), `enable.idempotence=true`, and caps `queue.buffering.max.kbytes` at
 * CS_KAFKA_PRODUCER_QUEUE_KBYTES_DEFAULT if the caller left librdkafka's 1 GiB default. Installs its own
 * delivery-report, log and error callbacks and opaque (a caller's are replaced). Does not talk to Kafka yet.
 * On success *out is the producer; caller frees with cs_kafka_producer_destroy().
 */
cs_err *cs_kafka_producer_new(rd_kafka_conf_t *conf, const char *transactional_id, cs_kafka_producer **out);

/*
 * Fetches the metadata of `topics` (n of them, at most 8 per producer) now and keeps their handles, so the
 * first transaction does not wait for librdkafka's periodic scan of unknown topics (measured: up to 1 s
 * before the first produce to a new topic leaves). A topic whose metadata does not arrive within
 * `timeout_ms` is logged and left to the first produce; an error only for a bad name or too many topics.
 */
cs_err *cs_kafka_producer_warm(cs_kafka_producer *p, const char *const *topics, size_t n, int timeout_ms);

/*
 * init_transactions: registers the transactional.id with its coordinator and fences (aborts) any earlier
 * producer with the same id and its open transaction. Call it BEFORE reading the checkpoint/state topic,
 * otherwise a zombie's late commit is missed. `timeout_ms` bounds the wait (-1: librdkafka's
 * 2 x transaction.timeout.ms). Retriable errors (e.g. coordinator not yet available) may be retried.
 */
cs_err *cs_kafka_producer_init(cs_kafka_producer *p, int timeout_ms);

/* Opens a transaction (local only; no round trip). Only in state READY. */
cs_err *cs_kafka_producer_begin(cs_kafka_producer *p);

/*
 * Enqueues one message in the open transaction. `partition` may be RD_KAFKA_PARTITION_UA (the configured
 * partitioner decides by key). Key, value and headers are copied; `key`/`value` may be NULL. A full queue
 * is retriable; any other enqueue failure leaves the batch incomplete and so requires an abort.
 */
cs_err *cs_kafka_producer_produce(cs_kafka_producer *p, const char *topic, int32_t partition, const void *key,
                                  size_t key_len, const void *value, size_t value_len,
                                  const cs_kafka_header *headers, size_t n_headers);

/*
 * Adds consumer offsets (the NEXT offsets to consume, i.e. last processed + 1) to the open transaction with
 * the consumer group metadata of the consumer that read them (KIP-447: a rebalanced-away consumer cannot
 * commit). Retries a retriable error with the same arguments, a bounded number of times. Neither argument
 * is taken over. `timeout_ms` bounds each attempt.
 */
cs_err *cs_kafka_producer_send_offsets(cs_kafka_producer *p, const rd_kafka_topic_partition_list_t *offsets,
                                       const rd_kafka_consumer_group_metadata_t *cgmd, int timeout_ms);

/*
 * Commits the open transaction. Waits for every message's delivery report first and fails (requiring an
 * abort) if any message of this transaction failed. One call waits at most transaction.timeout.ms (of the
 * conf given to cs_kafka_producer_new; librdkafka's default 60 s): librdkafka 2.0.2 does not bound a -1
 * commit, and a coordinator that keeps answering EndTxn with a retriable error (e.g.
 * COORDINATOR_LOAD_IN_PROGRESS) would block it for as long as that lasts. When the bound runs out the
 * result is a retriable CS_ERR_TIMEOUT and the commit goes on in the background: call commit again (the
 * same call resumes it; check your stop flag between attempts). The state stays COMMITTING, where only
 * commit is allowed: librdkafka refuses an abort while a commit is pending (__CONFLICT).
 */
cs_err *cs_kafka_producer_commit(cs_kafka_producer *p);

/* Extra cs_err flag (with CS_ERR_F_FATAL for the caller's loop): the stop flag was raised while a commit was
 * still pending. Nothing new was committed by this process; the coordinator completes or expires the pending
 * transaction on its own, so a restart resumes from whatever is committed (checkpoint / offsets). */
#define CS_KAFKA_ERR_F_COMMIT_PENDING 0x200

/* Default bound of one attempt of cs_kafka_producer_commit_resume(): short, so a stop flag is seen soon. */
#define CS_KAFKA_COMMIT_CALL_TIMEOUT_MS_DEFAULT 5000
/* Backoff between attempts that failed at once (a retriable broker error, not our bound running out). */
#define CS_KAFKA_COMMIT_BACKOFF_MAX_MS 1000

typedef struct cs_kafka_commit_opts {
    int call_timeout_ms; /* bound of one attempt (capped by transaction.timeout.ms); 0: the default above */
    /* Polled before every further attempt; true ends the loop with CS_KAFKA_ERR_F_COMMIT_PENDING. NULL: never. */
    bool (*should_stop)(void *arg);
    /* Told each time the commit becomes pending (true: a retriable failure, the commit goes on) and when it
     * stops being pending (false: committed, or given up); for readiness and metrics. NULL: not told. */
    void (*on_pending)(void *arg, bool pending, const cs_err *why);
    void *arg;
} cs_kafka_commit_opts;

/*
 * Commits the open transaction and keeps resuming it while librdkafka says the commit may be retried
 * (librdkafka 2.0.2, rd_kafka_commit_transaction: "On timeout the application may call the function again";
 * a retriable error means call commit again), e.g. for as long as Kafka is unreachable. Each attempt is
 * bounded by `o->call_timeout_ms`; between attempts `o->should_stop` is checked. Returns:
 *   NULL                              committed;
 *   an error with CS_ERR_F_TXN_REQUIRES_ABORT   abort (cs_kafka_producer_abort) and redo the transaction;
 *   an error with CS_ERR_F_FATAL      the producer is unusable (fenced included);
 *   CS_ERR_STATE with CS_ERR_F_FATAL | CS_KAFKA_ERR_F_COMMIT_PENDING   stopped while the commit was pending:
 *      the state stays COMMITTING (librdkafka refuses an abort then): destroy the producer and exit without
 *      producing anything else. `o` may be NULL (defaults, never stops). *attempts (may be NULL) gets the
 *      number of commit calls made.
 */
cs_err *cs_kafka_producer_commit_resume(cs_kafka_producer *p, const cs_kafka_commit_opts *o,
                                        unsigned *attempts);

/* True when `err` says a commit was still pending when the caller's stop flag was raised. */
bool cs_kafka_producer_is_commit_pending(const cs_err *err);

/*
 * Aborts the open (or failed) transaction, in states IN_TXN, ABORTABLE and ABORTING (not COMMITTING, see
 * commit). Bounded like commit: a retriable failure (CS_ERR_TIMEOUT when the bound ran out) leaves the
 * state ABORTING; call abort again to resume it.
 */
cs_err *cs_kafka_producer_abort(cs_kafka_producer *p);

/*
 * Aborts an open transaction (bounded), flushes, and destroys the producer. With a commit pending (state
 * COMMITTING) it does not try to abort (librdkafka refuses it, or would wait for the same unreachable
 * broker): the coordinator completes the commit or times the transaction out, and the next instance's
 * init_transactions aborts it at once.
 * NULL is allowed. Never fails: problems are logged.
 */
void cs_kafka_producer_destroy(cs_kafka_producer *p);

/* True when `err` says the producer was fenced by a newer instance with the same transactional.id. */
bool cs_kafka_producer_is_fenced(const cs_err *err);

/* The current state and its stable name ("ready", "in_txn", ...). */
cs_kafka_producer_state cs_kafka_producer_get_state(const cs_kafka_producer *p);
const char *cs_kafka_producer_state_name(cs_kafka_producer_state state);

/* The transactional.id this producer uses. Owned by the producer. */
const char *cs_kafka_producer_transactional_id(const cs_kafka_producer *p);

/* The underlying librdkafka handle, for metrics and tests (e.g. the mock cluster). Owned by the producer. */
rd_kafka_t *cs_kafka_producer_rd_kafka(cs_kafka_producer *p);

/*
 * Maps a librdkafka error object to cs_err flags (retriable / txn_requires_abort / fatal, fenced), fatal when
 * librdkafka set none. Exposed for tests; the error is not freed.
 */
unsigned cs_kafka_error_flags(const rd_kafka_error_t *error);

#endif
