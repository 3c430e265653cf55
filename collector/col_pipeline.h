/*
 * col_pipeline: tracked changes to Kafka, exactly once.
 *
 *   open: create the transactional producer, init_transactions (fences a zombie with the same
 *         transactional.id and aborts its open transaction), THEN load the checkpoint, the held events and
 *         the object index read_committed (fence first, then read).
 *   submit*: each event is judged by the index (col_index): only real changes join the batch.
 *   set_position: the tracker's position after the events submitted so far.
 *   flush (by count in submit, by time in poll, or explicitly): ONE transaction with the batch's events
 *         (topics.events, key "<source>/<object>"), held events (topics.held) and the checkpoint
 *         (topics.checkpoint, key = source id, sequence + 1). The batch stays in memory until committed:
 *         a failure that requires an abort aborts and produces the same records again.
 *   close: commit what is pending (the SIGTERM path) or drop it; then destroy.
 *
 * Errors from the producer: retriable -> the same call again (bounded); a commit that times out or fails
 * retriably is resumed (never aborted: librdkafka refuses that) until it completes or opts.stop_flag is set,
 * which kills the pipeline with a "commit pending" error and commits nothing more; requires abort -> abort,
 * redo the batch (bounded); fatal or fenced -> the pipeline is dead: every later call fails, and a fenced instance
 * never commits again (col_pipeline_is_fenced() tells the service to exit quietly).
 *
 * Mass-removal guard (design.md): an event that removes a known object or empties its certificates is
 * "removal-ish". When the removal-ish events of the current guard window (since open or the last
 * col_pipeline_guard_window_reset(); a removal sweep starts a new window) would exceed the threshold, those
 * events go to topics.held instead of topics.events, in the same transaction as the checkpoint, for the
 * rest of the window; everything else keeps flowing. A sweep that would exceed the threshold holds all of
 * its removals. Held events leave only through col_pipeline_release_held(); an event for a held object
 * that is newer than the held one supersedes it (a null record in topics.held removes it there).
 *
 * Not thread-safe: one thread drives one pipeline.
 */
#ifndef COL_PIPELINE_H
#define COL_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/collector_checkpoint.pb-c.h"
#include "cs_err.h"
#include "cs_metrics.h"

/* At most this many events are held at once (each is kept in memory for the release). */
#define COL_PIPELINE_MAX_HELD 1000000u

typedef struct col_pipeline col_pipeline;

/*
 * Test hook, called at named points: "checkpoint_load" (after init_transactions, before reading),
 * "before_commit" (every record of the batch produced, commit not called yet) and "after_commit".
 * Production code leaves it NULL.
 */
typedef void (*col_pipeline_hook_fn)(void *arg, const char *point);

typedef struct col_pipeline_opts {
    const char *source_id;        /* required, no '/' */
    const char *transactional_id; /* NULL: certsync-collector-<source_id> */
    const char *topic_events;     /* required */
    const char *topic_checkpoint; /* required */
    const char *topic_held;       /* required */
    int batch_max_events;         /* > 0 */
    long long batch_max_wait_ms;  /* > 0 */
    int mass_removal_threshold;   /* 0: guard off */
    int init_timeout_ms;          /* init_transactions, per attempt; 0: 60000 */
    int load_timeout_ms;          /* each topic load; 0: 120000 */
    cs_metrics *metrics;          /* may be NULL; families are registered once per registry */
    col_pipeline_hook_fn hook;    /* tests only */
    void *hook_arg;
    /* A commit that Kafka does not answer is resumed (bounded attempts of commit_call_timeout_ms) until it
     * completes or this flag becomes non-zero; then the pipeline is dead with an error that
     * cs_kafka_producer_is_commit_pending() recognises. NULL: resumed until it completes or fails. */
    volatile sig_atomic_t *stop_flag;
    int commit_call_timeout_ms; /* one commit attempt; 0: CS_KAFKA_COMMIT_CALL_TIMEOUT_MS_DEFAULT */
    /* Called with true when a commit becomes pending (Kafka unavailable) and false when it no longer is,
     * from the thread that drives the pipeline (readiness). May be NULL. */
    void (*on_commit_pending)(void *arg, bool pending);
    void *pending_arg;
} col_pipeline_opts;

/* Counters for tests and logs (the metrics carry the same numbers). */
typedef struct col_pipeline_stats {
    uint64_t events_produced;    /* committed to topics.events */
    uint64_t events_held;        /* committed to topics.held */
    uint64_t events_released;    /* moved from held to events by a release */
    uint64_t held_superseded;    /* held events replaced by a newer event */
    uint64_t duplicates_skipped; /* index verdict duplicate */
    uint64_t stale_skipped;      /* index verdict stale */
    uint64_t diverged;           /* index verdict diverged (emitted) */
    uint64_t txn_committed;
    uint64_t txn_aborted;
    uint64_t guard_trips;    /* times the guard started holding in a window */
    uint64_t commit_retries; /* commit attempts that had to be resumed (Kafka slow or unavailable) */
    bool fenced;
} col_pipeline_stats;

/*
 * Opens the pipeline as described above. `conf` (bootstrap, TLS/SASL, kafka.*; e.g. from
 * col_config_kafka_conf()) is taken over in every case; copies of it are used for the readers. On success
 * *out is ready for submit; caller frees with col_pipeline_close().
 */
cs_err *col_pipeline_open(const col_pipeline_opts *opts, rd_kafka_conf_t *conf, col_pipeline **out);

/* The committed checkpoint (loaded at open, then each committed one), or NULL before the first. Owned by
 * the pipeline; valid until the next call that commits. */
const Certsync__V1__CollectorCheckpoint *col_pipeline_checkpoint(const col_pipeline *p);

/*
 * Submits one change event (copied). The event's source.source_id, when set, must be this source, and it
 * needs identity.object_id and a version. Duplicates and stale events are dropped and counted (NULL is
 * returned). Flushes when the batch reaches batch_max_events; the error is then the flush's. A
 * content_sha256 that is set (64 lowercase hex digits) must be cs_event_content_sha256() of the event, as
 * col_event_build sets it; it is used as is. Unset, the pipeline computes it.
 */
cs_err *col_pipeline_submit(col_pipeline *p, const Certsync__V1__ChangeEvent *ev);

/* Sets the position that the next commit writes (copied; source_id, sequence, committed_at_ms and
 * events_emitted are filled in by the pipeline). */
cs_err *col_pipeline_set_position(col_pipeline *p, const Certsync__V1__CollectorCheckpoint *position);

/* Commits when something is pending and the oldest pending item has waited batch_max_wait_ms. Call it
 * from the service loop at least every batch_max_wait_ms. */
cs_err *col_pipeline_poll(col_pipeline *p);

/*
 * Sets how many events close a batch from now on: max_events > 0 (at most 100000), or 0 for
 * opts.batch_max_events again.
 * A full pass raises it (fewer, larger transactions while snapshotting; each commit stops the directory
 * read for a round trip to Kafka); batch_max_wait_ms still applies. Takes effect at the next submit.
 */
void col_pipeline_set_batch_max_events(col_pipeline *p, int max_events);

/* Commits everything pending now (no-op when nothing is). */
cs_err *col_pipeline_flush(col_pipeline *p);

/* Milliseconds until poll would commit (-1: nothing pending), for the service loop's wait. */
long long col_pipeline_next_due_ms(const col_pipeline *p);

/*
 * Starts a removal sweep for a full resync; every event submitted until sweep_end marks its object
 * present. Starts a new guard window.
 */
cs_err *col_pipeline_sweep_begin(col_pipeline *p);

/*
 * Ends the sweep: each object of this source that is known, not removed and was not seen becomes a
 * removal event (REMOVAL_REASON_RESYNC_ABSENT, EMIT_REASON_RESYNC) with the object's last version whose
 * lifecycle stamp is replaced by `lifecycle` (it must be newer than the objects' own: e.g. the resync's
 * CSN or time), `source` (may be NULL) copied into each. Over the guard threshold, all are held.
 * *n_removed (may be NULL) gets the number of removal events submitted.
 */
cs_err *col_pipeline_sweep_end(col_pipeline *p, const Certsync__V1__Source *source,
                               const Certsync__V1__AttributeStamp *lifecycle, size_t *n_removed);

/*
 * The version last emitted (or submitted) for `object_id` of this source while the object is not removed;
 * *out is NULL when the object is unknown or already removed. For removals that arrive as an id only
 * (syncrepl delete): their version is this one with a newer lifecycle stamp. Caller frees *out with
 * certsync__v1__version__free_unpacked(*out, NULL).
 */
cs_err *col_pipeline_last_version(const col_pipeline *p, const char *object_id, Certsync__V1__Version **out);

/*
 * Like col_pipeline_last_version(), but also for a removed object: *removed says whether the last state is a
 * removal. Used to order a re-entry into scope after a removal (col_service: the lifecycle stamp).
 * *out is NULL when the object is unknown. Caller frees *out with certsync__v1__version__free_unpacked().
 */
cs_err *col_pipeline_lookup_version(const col_pipeline *p, const char *object_id, Certsync__V1__Version **out,
                                    bool *removed);

/* Marks `object_id` present in the open sweep (syncrepl present notices carry only an id). No-op without
 * an open sweep. */
void col_pipeline_sweep_mark(col_pipeline *p, const char *object_id);

/* True while a removal sweep is open. */
bool col_pipeline_sweep_open(const col_pipeline *p);

/* Closes an open sweep without any removal (the refresh turned out not to be a present phase). */
void col_pipeline_sweep_cancel(col_pipeline *p);

/* Starts a new mass-removal guard window (call at the start of each pass). */
void col_pipeline_guard_window_reset(col_pipeline *p);

/*
 * The explicit command: moves the held event of `key` ("<source>/<object>"), or every held event when
 * `key` is NULL, to topics.events in one transaction with the current position (and null records in
 * topics.held). Commits what was pending first. *n_released (may be NULL) gets the count.
 */
cs_err *col_pipeline_release_held(col_pipeline *p, const char *key, size_t *n_released);

/* Number of events held now. */
size_t col_pipeline_held_count(const col_pipeline *p);

/* The counters so far. */
void col_pipeline_get_stats(const col_pipeline *p, col_pipeline_stats *out);

/* True once the producer was fenced by a newer instance: stop, do not restart in this process. */
bool col_pipeline_is_fenced(const col_pipeline *p);

/*
 * Shuts down: with `commit`, commits what is pending (SIGTERM path) and returns that error, if any;
 * without, drops it. Then aborts any open transaction and frees everything. NULL is allowed.
 */
cs_err *col_pipeline_close(col_pipeline *p, bool commit);

#endif
