/*
 * col_lease: the record and the decisions of a Kubernetes Lease election (coordination.k8s.io/v1 Lease),
 * without any I/O, so the rules are unit-tested on their own (col_election.c does the HTTP).
 *
 * The rules mirror client-go's tools/leaderelection (tryAcquireOrRenew):
 *   - A lease is free when it does not exist, its spec.holderIdentity is empty, or it has not CHANGED for
 *     leaseDurationSeconds as measured by the LOCAL monotonic clock since this replica last saw it change.
 *     The remote renewTime is never compared with the local clock, so clock skew between nodes cannot
 *     make a standby take a lease early (only a skew RATE can; lease_duration > renew_deadline covers it).
 *   - Taking a lease another identity held (or an empty one) bumps leaseTransitions and sets acquireTime;
 *     renewing keeps both and moves renewTime.
 *   - Every write carries the metadata.resourceVersion that was read, so a concurrent writer gets
 *     409 Conflict and exactly one of two racing standbys wins.
 *   - Releasing (ReleaseOnCancel) writes holderIdentity "" and leaseDurationSeconds 1: the standby sees an
 *     empty holder at its next poll and takes over at once.
 */
#ifndef COL_LEASE_H
#define COL_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "cs_err.h"

/* Bounds on what is kept from the API server's answer (values from the network are never trusted). */
#define COL_LEASE_MAX_ID 256     /* holderIdentity (a pod name is at most 253) */
#define COL_LEASE_MAX_RV 128     /* metadata.resourceVersion (opaque; etcd revisions are short) */
#define COL_LEASE_TIME_LEN 40    /* MicroTime "2006-01-02T15:04:05.000000Z" plus room */
#define COL_LEASE_MAX_NAME 253   /* metadata.name, a DNS subdomain */
#define COL_LEASE_MAX_BODY 65536 /* a Lease or Status body; anything bigger is refused */

/* The spec of one Lease as read or to be written, plus the resourceVersion it was read at. */
typedef struct col_lease_record {
    char holder[COL_LEASE_MAX_ID]; /* "" = nobody holds it */
    long long duration_s;          /* leaseDurationSeconds; 0 when absent */
    char acquire_time[COL_LEASE_TIME_LEN];
    char renew_time[COL_LEASE_TIME_LEN];
    long long transitions;                   /* leaseTransitions */
    char resource_version[COL_LEASE_MAX_RV]; /* "" for a create */
} col_lease_record;

/* What this replica last saw of the lease, and when (local monotonic ms). */
typedef struct col_lease_observer {
    bool have;
    col_lease_record rec;
    int64_t observed_ms;
} col_lease_observer;

typedef enum col_lease_action {
    COL_LEASE_WAIT = 0, /* another identity holds an unexpired lease */
    COL_LEASE_TAKE,     /* free or expired: write it with this identity (a transition) */
    COL_LEASE_RENEW,    /* this identity holds it: move renewTime */
} col_lease_action;

/*
 * Parses a Lease object (the body of a 200/201 answer). Requires kind Lease, metadata.resourceVersion,
 * and spec fields of the right JSON types when present; unknown fields are ignored (newer servers add
 * some). A holderIdentity or time longer than the bounds above is an error, never truncated.
 */
cs_err *col_lease_parse(const char *body, size_t len, col_lease_record *out);

/*
 * Renders the Lease object to POST (resource_version "") or PUT (with metadata.resourceVersion).
 * Caller frees *out with free().
 */
cs_err *col_lease_render(const char *ns, const char *name, const col_lease_record *rec, char **out);

/*
 * Records `cur` in `obs` (stamping now_ms when it differs from what was seen before) and decides.
 * `cur` NULL means the lease does not exist (404): TAKE.
 */
col_lease_action col_lease_decide(col_lease_observer *obs, const col_lease_record *cur, const char *identity,
                                  int64_t now_ms);

/*
 * The record to write for `act` (TAKE or RENEW) on top of `cur` (NULL: create): holder = identity,
 * leaseDurationSeconds = duration_s, renewTime = now, acquireTime now on TAKE (kept on RENEW),
 * leaseTransitions + 1 on TAKE over an existing lease, resourceVersion from `cur`.
 */
void col_lease_next(const col_lease_record *cur, col_lease_action act, const char *identity,
                    long long duration_s, const char *now, col_lease_record *out);

/*
 * The record that releases a lease read as `cur` (client-go ReleaseOnCancel): holder "",
 * leaseDurationSeconds 1, acquireTime = renewTime = now, leaseTransitions and resourceVersion kept.
 */
void col_lease_release_record(const col_lease_record *cur, const char *now, col_lease_record *out);

/* Formats `t` (wall clock) as a Kubernetes MicroTime: RFC 3339 UTC with exactly six fraction digits. */
void col_lease_microtime(const struct timespec *t, char out[COL_LEASE_TIME_LEN]);

/*
 * Reads a Kubernetes Status object (the body of an error answer) into "Reason: message" (bounded by
 * `cap`). A body that is not a Status is summarised as such. Never fails.
 */
void col_lease_status_text(const char *body, size_t len, char *out, size_t cap);

/* "wait", "take" or "renew". */
const char *col_lease_action_name(col_lease_action a);

#endif
