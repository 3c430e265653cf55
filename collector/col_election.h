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
 *   kubernetes-lease  a coordination.k8s.io/v1 Lease, with client-go's leaderelection rules (col_lease.h)
 *                     over the in-cluster API (col_kube.h). A standby polls every retry_period and takes
 *                     the lease when it is empty or has not changed for leaseDurationSeconds by its OWN
 *                     clock. Once active, a thread renews every retry_period; when no renewal succeeded
 *                     for renew_deadline (< lease_duration, so before any standby may take over) the
 *                     lease is LOST: col_election_lost() turns true, the service stops producing (aborts
 *                     the open transaction) and exits COL_ELECTION_EXIT_LOST so Kubernetes restarts it as
 *                     a standby. If the service has not let go within half of (lease_duration -
 *                     renew_deadline), the thread ends the process with that code itself: a stuck commit
 *                     must not outlive the lease. col_election_free() releases a held lease
 *                     (holderIdentity "", leaseDurationSeconds 1, as client-go's ReleaseOnCancel), so on
 *                     SIGTERM the standby takes over at its next poll instead of after the lease expires.
 *                     Fencing stays the safety net for everything a lease cannot promise (a paused VM).
 *
 * A record lock belongs to the process: a second col_election in the same process would not exclude the
 * first (one collector per process, so this does not arise).
 */
#ifndef COL_ELECTION_H
#define COL_ELECTION_H

#include <signal.h>
#include <stdbool.h>

#include "col_config.h"
#include "cs_err.h"

/* How often a standby retries the lock: the takeover bound after the active dies. */
#define COL_ELECTION_POLL_MS 200
/* Longest holder description kept in the lock file. */
#define COL_ELECTION_MAX_HOLDER 256
/* Exit code of a replica that lost its lease while active (kubernetes-lease). */
#define COL_ELECTION_EXIT_LOST 6
/* Longest wait for the release PUT at shutdown. */
#define COL_ELECTION_RELEASE_TIMEOUT_MS 5000

typedef struct col_election col_election;

/*
 * Prepares the election for `mode` ("none" or "lockfile"; NULL = "none"; kubernetes-lease goes through
 * col_election_new_lease). `lock_file` is required for lockfile (opened, created with mode 0644 when
 * missing, now). Nothing is acquired yet.
 * Caller frees *out with col_election_free().
 */
cs_err *col_election_new(const char *mode, const char *lock_file, col_election **out);

/* The kubernetes-lease settings (election.kubernetes.*, resolved). */
typedef struct col_election_lease_opts {
    const char *api_url;         /* NULL: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT */
    const char *token_file;      /* NULL: the service account token */
    const char *ca_file;         /* NULL: the service account CA */
    const char *ns;              /* NULL: the service account's namespace file */
    const char *lease_name;      /* required: a DNS subdomain name */
    const char *identity;        /* required: this replica's unique name (the pod name) */
    long long lease_duration_ms; /* whole seconds, > renew_deadline_ms */
    long long renew_deadline_ms; /* > retry_period_ms */
    long long retry_period_ms;
} col_election_lease_opts;

/*
 * Prepares a kubernetes-lease election (nothing is written yet). Checks the durations' order, the names,
 * and that the token and namespace files can be read. Caller frees *out with col_election_free().
 */
cs_err *col_election_new_lease(const col_election_lease_opts *o, col_election **out);

/*
 * Prepares the election election.* of `cfg` asks for: defaults the lease name to
 * certsync-collector-<source.id> and the identity to $POD_NAME, else the host name.
 * Caller frees *out with col_election_free().
 */
cs_err *col_election_from_config(const col_config *cfg, col_election **out);

/* True once an active replica lost its lease (kubernetes-lease): stop producing and exit. Thread-safe. */
bool col_election_lost(const col_election *e);

/*
 * Blocks until this replica is active (*elected = true) or `*stop` becomes non-zero (*elected = false).
 * While another replica holds the lock it logs once that it is standby, and who is active. An I/O error
 * on the lock file (other than "held by another") is returned.
 */
cs_err *col_election_acquire(col_election *e, volatile sig_atomic_t *stop, bool *elected);

/* True when an election is configured (mode other than none). */
bool col_election_enabled(const col_election *e);

/* Stops renewing, releases the lock or lease (if held and not lost) and frees. NULL is allowed. */
void col_election_free(col_election *e);

#endif
