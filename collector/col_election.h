/*
 * col_election: one active collector per source.id, chosen BEFORE the Kafka producer's init_transactions.
 *
 * Two replicas with one transactional.id fence each other on every restart if both simply start: each
 * init_transactions aborts the other's open transaction and the older one exits, restarts, fences the
 * newer one, and so on (design.md "Active/passive without ping-pong"). An election in front of Kafka
 * makes the loser wait as a standby; fencing stays the safety net for a lost or split election.
 *
 * Backends (election.mode):
 *   none              no election: every replica is active (fencing alone decides).
 *   lockfile          an exclusive POSIX record lock (fcntl F_SETLK, whole file) on election.lock_file on a
 *                     volume the replicas share. The kernel (or the NFS lock manager) drops the lock when
 *                     the holder dies, even by kill -9, so the standby takes over within one poll
 *                     (COL_ELECTION_POLL_MS). fcntl rather than flock: it is POSIX and works over NFS.
 *                     The holder writes "<hostname> pid <pid>" into the file so a standby can say who
 *                     is active.
 *   kubernetes-lease  not implemented: col_election_new() refuses it with a CS_ERR_CONFIG that says so.
 *
 * A record lock belongs to the process: a second col_election in the same process would not exclude the
 * first (one collector per process, so this does not arise).
 */
#ifndef COL_ELECTION_H
#define COL_ELECTION_H

#include <signal.h>
#include <stdbool.h>

#include "cs_err.h"

/* How often a standby retries the lock: the takeover bound after the active dies. */
#define COL_ELECTION_POLL_MS 200
/* Longest holder description kept in the lock file. */
#define COL_ELECTION_MAX_HOLDER 256

typedef struct col_election col_election;

/*
 * Prepares the election for `mode` ("none", "lockfile", "kubernetes-lease"; NULL = "none"). `lock_file` is
 * required for lockfile (opened, created with mode 0644 when missing, now). Nothing is acquired yet.
 * Caller frees *out with col_election_free().
 */
cs_err *col_election_new(const char *mode, const char *lock_file, col_election **out);

/*
 * Blocks until this replica is active (*elected = true) or `*stop` becomes non-zero (*elected = false).
 * While another replica holds the lock it logs once that it is standby, and who is active. An I/O error
 * on the lock file (other than "held by another") is returned.
 */
cs_err *col_election_acquire(col_election *e, volatile sig_atomic_t *stop, bool *elected);

/* True when an election is configured (mode other than none). */
bool col_election_enabled(const col_election *e);

/* Releases the lock (if held) and frees. NULL is allowed. */
void col_election_free(col_election *e);

#endif
