/*
 * pub_replay: rebuild a tenant's certificates from the retained events topic (design.md "Replay must beat
 * the version gate"), and the apply engine that redrive shares.
 *
 *   certsync-publisher --config F replay [--from-beginning | --from-time ISO8601] [--dry-run]
 *
 * Design (the simple, robust variant; trade-offs below):
 *  1. Read topics.events read_committed from the beginning to the last stable offset each partition has
 *     when the replay starts: that LSO is the recorded end offset. Coalesce per key to the newest version
 *     (pub_latest). With --from-time only records whose (LogAppendTime) timestamp is at or after it count.
 *  2. In batches of batch.max_events objects: re-read the applied state of the batch's partitions from
 *     topics.state, then FORCE: an object whose applied version is not strictly newer than the replayed
 *     event is written even though the gate says "done" (EQUAL versions and equal content hashes are
 *     written again: the tenant may have been emptied or restored). An object whose applied version IS
 *     strictly newer was written by the live publisher after the recorded end offset: it is skipped
 *     ("newer applied"), so a replay never writes an older state over a newer one. The policy and pruning
 *     (pub_decide_with_policy) decide the values exactly as the live publisher does.
 *  3. The writes go through the same applier as the service (pub_o365: resolve, Set-*), and every batch ends
 *     in ONE Kafka transaction (transactional.id <publisher txn id>-replay, so two replays fence each other)
 *     holding a PublishResult per object and the applied-state records (obj/, rcpt/) of what was written,
 *     to the event's partition number as the pipeline does. No consumer offsets: the replay is not a group
 *     member and never moves the live group's position.
 *  After the recorded end offset nothing is forced: newer events are the live publisher's, through its gate.
 *
 * Interaction with a running publisher: the replay does not pause it. The re-read of the applied state per
 * batch narrows the window in which the live publisher could write a newer state and the replay then write
 * the older one to the time one batch's writes take (about a second); inside it a newer event of the SAME
 * object would have to be applied. For a guaranteed no-regression replay, scale the publisher to zero for
 * the replay's duration (the events are retained; it catches up afterwards through its gate). Running the
 * replay inside the live group (a forced window per owned partition, as design.md sketches) closes the
 * window but needs every member to take part; not done.
 * The live publisher's in-memory applied state does not see the replay's state records until its next
 * partition assignment; they carry the same versions it already holds (forced writes) or newer ones, so
 * that only matters for the gate's duplicate check, never for ordering.
 *
 * --dry-run writes nothing (no Set-*, no Kafka records): for every object it resolves the recipient and
 * reads what Exchange actually holds (Get-Mailbox / Get-MailUser / Get-MailContact, pub_inspect), compares
 * it with what the replay would write (order-insensitive), and prints one line per object:
 *   OBJECT RECIPIENT DIRECTORY EXCHANGE ACTION DETAIL      (counts as userCertificate/userSMIMECertificate)
 * ACTION: write (Exchange differs), clear (a removal, Exchange still holds values), none (equal),
 * not_found (no recipient: run an Entra Connect cycle), error, skip (nothing valid: the live publisher
 * dead-letters it). Exit 1 when any object needs an action, 0 when the tenant already matches.
 *
 * Exit codes (pub_cmd.h): 0 done, 1 some objects failed (listed, e.g. recipient not found: they stay as
 * they were), 2 could not run.
 *
 * Test-only hook: CERTSYNC_PUB_REPLAY_HOLD=<path> makes the engine, after reading the events and before its
 * first batch, create <path>.ready and wait (up to 60 s) until <path> exists.
 */
#ifndef PUB_REPLAY_H
#define PUB_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cs_err.h"
#include "pub_config.h"
#include "pub_latest.h"
#include "pub_o365.h"

typedef struct pub_replay_counts {
    uint64_t objects;
    uint64_t written;           /* APPLIED */
    uint64_t cleared;           /* removals written */
    uint64_t skipped_newer;     /* force: a strictly newer version is applied */
    uint64_t skipped_stale;     /* gate: not newer than the applied version */
    uint64_t skipped_duplicate; /* gate: same content */
    uint64_t nothing_valid;     /* the policy and pruning left nothing to write */
    uint64_t failed;            /* not found, write scope, refused, throttled past the retries */
} pub_replay_counts;

typedef struct pub_replay_opts {
    const char *command;   /* "replay" or "redrive": logs, report, transactional.id suffix */
    bool force;            /* bypass the gate unless a strictly newer version is applied */
    bool dry_run;          /* decide against the applied state only; print, write nothing */
    const char *hold_path; /* test hook (see above) or NULL */
} pub_replay_opts;

/*
 * Applies the newest event of each object in `set` (see above), printing one report line per object to
 * `report`:  OUTCOME OBJECT RECIPIENT DETAIL. `o` is the Office 365 client (unused and may be NULL with
 * dry_run). Returns an error when it could not go on (Kafka, credentials): batches committed before it
 * stay committed and re-running is safe (writes are idempotent).
 */
cs_err *pub_replay_apply(const pub_config *cfg, pub_o365 *o, const pub_latest *set,
                         const pub_replay_opts *opts, pub_replay_counts *counts, FILE *report);

/* The replay command: parses `argv` (argc entries after "replay") and runs; returns the exit code. */
int pub_replay_command(const pub_config *cfg, int argc, char **argv);

#endif
