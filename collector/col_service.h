/*
 * col_service: the collector's service loop, joining the directory side (col_ldap, col_snapshot,
 * col_syncrepl, col_dirsync) to the Kafka side (col_pipeline).
 *
 *   start      admin endpoint (/healthz live while the loop runs; /readyz once the checkpoint is loaded and
 *              tracking runs; /metrics), then the election (election.mode, col_election.h: a standby waits
 *              here, live but not ready, without touching Kafka, so replicas do not fence each other on
 *              every restart), then the pipeline (init_transactions fences a zombie, then the
 *              checkpoint and index load), then the directory (connect, pick the mode).
 *   full pass  when there is no checkpoint, the snapshot never completed, or the mode or scope changed:
 *              take the tracking position FIRST, then a paged snapshot inside a removal sweep, then a
 *              checkpoint with snapshot_complete and that position. An expired syncrepl cookie, a DirSync
 *              state error, or a uSNChanged position that cannot be resumed (another invocationId, a USN
 *              that went backwards, or a checkpoint bound to another server: failover) runs the same pass
 *              as a resync (EMIT_REASON_RESYNC) whose removal sweep removes what vanished meanwhile.
 *   scope      ldap.base_dns (several: one syncrepl search of their naming context, filtered on the
 *              client), ldap.filter and ldap.group_dn (col_scope_filter; checked by col_scope_check).
 *   tracking   syncrepl refreshAndPersist stepped with a bounded wait, or DirSync / uSNChanged (col_usn;
 *              the position is UsnPosition + server in the checkpoint) polled every ldap.poll_interval; events and positions go to the pipeline, which commits by size and time.
 *   failures   directory: reconnect with bounded exponential backoff and resume from the last position,
 *              no new snapshot. Kafka: retriable -> keep the position, retry; fenced -> exit
 *              COL_SERVICE_EXIT_FENCED (another instance took over); fatal -> COL_SERVICE_EXIT_FAIL.
 *   stop       the stop flag (set by the signal handler) commits the open batch and returns 0. A commit that
 *              Kafka does not answer is resumed while it is pending (/readyz not ready meanwhile); a stop
 *              then gives it up and returns COL_SERVICE_EXIT_COMMIT_PENDING.
 *
 * Exit codes (documented in --help):
 *   0  stopped by SIGTERM/SIGINT, --once finished, or --release-held done
 *   2  configuration, directory or Kafka error that a restart with the same config will not fix by itself
 *   3  fenced: a newer collector with the same source.id took over; do not restart this one in a loop
 *   4  stopped while a Kafka commit was pending (Kafka unavailable): nothing new was committed, nothing is
 *      lost; the next start resumes from the committed checkpoint (restart when Kafka is back)
 *   6  lease lost: election.mode kubernetes-lease could not renew its Lease for renew_deadline; the open
 *      transaction was aborted; restart (as a standby)
 */
#ifndef COL_SERVICE_H
#define COL_SERVICE_H

#include <signal.h>
#include <stdbool.h>

#include "col_config.h"
#include "col_election.h"

#define COL_SERVICE_EXIT_OK 0
#define COL_SERVICE_EXIT_FAIL 2
#define COL_SERVICE_EXIT_FENCED 3
/* The kubernetes-lease election was lost while active: production stopped (transaction aborted); a restart
   makes this replica a standby. */
#define COL_SERVICE_EXIT_LEASE_LOST COL_ELECTION_EXIT_LOST
/* A Kafka credential file (kafka.*_file) changed: the open batch is committed; restart to use it. */
#define COL_SERVICE_EXIT_RESTART 5
#define COL_SERVICE_EXIT_COMMIT_PENDING 4

/* Reconnect backoff: first wait, doubling up to the cap. */
#define COL_SERVICE_BACKOFF_MIN_MS 250
#define COL_SERVICE_BACKOFF_MAX_MS 30000
/* Longest single wait for directory messages, so the stop flag and batch timer are seen promptly. */
#define COL_SERVICE_STEP_WAIT_MS 200
/* Messages handled per syncrepl step. */
#define COL_SERVICE_STEP_MESSAGES 256
/* Events per Kafka transaction during a full pass, when batch.max_events is smaller: each commit stops the
 * directory read for a round trip to Kafka, and the batch (encoded events, ~1-3 KB each) is held in memory
 * until committed. */
#define COL_SERVICE_FULL_PASS_BATCH_EVENTS 2000
/* Id-only removals (syncrepl delete) waiting for the cookie that covers them. */
#define COL_SERVICE_MAX_PENDING_REMOVALS 100000

typedef struct col_service_opts {
    bool once;                        /* one pass: snapshot if needed, incremental until caught up, exit */
    bool release_held;                /* --release-held: release held events and exit */
    const char *release_key;          /* "<source>/<object>" to release one; NULL: all */
    volatile sig_atomic_t *stop_flag; /* set to non-zero by the signal handler; required */
} col_service_opts;

/*
 * Runs the collector as described above until the stop flag is set, --once finishes, or an error stops
 * it. `cfg` must outlive the call. Returns the process exit code (COL_SERVICE_EXIT_*).
 */
int col_service_run(const col_config *cfg, const col_service_opts *opts);

#endif
