/*
 * col_usn: Active Directory change tracking by uSNChanged polling, bound to one server.
 *
 * The position is (server, invocationId, highestCommittedUSN): USNs are local to one DC database, so a
 * position means nothing on another server, and a DC restored from backup keeps its name but gets a new
 * invocationId (and may re-issue USNs it had already issued). One poll:
 *   1. re-reads the rootDSE: highestCommittedUSN H, the DSA's invocationId, BEFORE searching, so every
 *      change with uSNChanged <= H is committed and the next pass starts right after H;
 *   2. a position from another server, another invocationId, or an H below the position's USN means the
 *      position cannot be resumed: nothing is delivered, *resync is set and a CS_ERR_STATE error returned.
 *      The caller runs a full resync with a removal sweep (design.md "Full resyncs emit removals",
 *      "Server failover"): col_usn_skip_to_end() first (the position before the snapshot), then the
 *      snapshot between COL_CHANGE_REFRESH_BEGIN / REFRESH_DONE(sweep), then polls again;
 *   3. per naming context that holds a base DN, a paged subtree search of the naming-context root with
 *      the show-deleted control and (&(uSNChanged>=prev+1)(uSNChanged<=H)<tracking filter>), the tracking
 *      filter being col_scope_tracking_filter(filter) (tombstones lose objectCategory):
 *        - isDeleted: TRUE, lastKnownParent under a base DN (or absent) -> COL_CHANGE_REMOVAL (DELETED);
 *        - DN under none of the base DNs                            -> COL_CHANGE_REMOVAL (OUT_OF_SCOPE);
 *        - otherwise                                                -> COL_CHANGE_UPSERT (full state);
 *   4. per naming context, objectGUID only, (&(uSNChanged>=prev+1)(uSNChanged<=H)<broad>(!<tracking
 *      filter>)), the broad filter being col_scope_broad_filter(filter): objects that changed and no longer
 *      match the filter -> COL_CHANGE_REMOVAL (OUT_OF_SCOPE) with the id and DN only (the caller's index
 *      tells whether it ever was in scope: most never were, and cost one GUID each);
 *   5. one COL_CHANGE_COOKIE with the new position (col_usn_position_encode) at the end of the pass, only
 *      when H moved: results are not ordered by uSNChanged, so no earlier point of a pass is a position.
 * Leaving ldap.group_dn moves no stamp of the user (a back link): the group is watched instead (col_group).
 */
#ifndef COL_USN_H
#define COL_USN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "col_change.h"
#include "col_ldap.h"
#include "cs_err.h"

/* Longest server name ("host:port") a position keeps. */
#define COL_USN_MAX_SERVER 256
/* Pages one pass may take (per naming context). */
#define COL_USN_MAX_PAGES 1000000
/* Encoded position: "USN1", 16 bytes invocationId, 8 bytes big-endian USN, then the server name. */
#define COL_USN_POSITION_MAX_ENCODED (4 + 16 + 8 + COL_USN_MAX_SERVER)

/* A uSNChanged position (UsnPosition in collector_checkpoint.proto, plus the server). */
typedef struct col_usn_position {
    char server[COL_USN_MAX_SERVER]; /* col_ldap_server(): "host:port" */
    unsigned char invocation_id[16];
    int64_t highest_committed_usn;
} col_usn_position;

typedef struct col_usn col_usn;

/*
 * Encodes a position as the bytes a COL_CHANGE_COOKIE carries. `out` has room for
 * COL_USN_POSITION_MAX_ENCODED bytes; returns the length used.
 */
size_t col_usn_position_encode(const col_usn_position *p, unsigned char *out);

/* Decodes col_usn_position_encode() bytes; CS_ERR_INVALID_INPUT when they are not such bytes. */
cs_err *col_usn_position_decode(const void *buf, size_t len, col_usn_position *out);

/*
 * Prepares polling of `c` (must be AD and outlive the handle) for `filter` (the effective filter, see
 * col_scope_filter) and the scope `base_dns` (n >= 1, each inside one of the server's naming contexts).
 * `from`: the checkpointed position, or NULL (then call col_usn_skip_to_end() before the first poll).
 * Caller frees *out with col_usn_free().
 */
cs_err *col_usn_new(col_ldap *c, const char *filter, const char *const *base_dns, size_t n,
                    const col_usn_position *from, col_usn **out);

/*
 * One pass (see above). *n_changes counts callbacks. *resync: the position cannot be resumed (then the
 * error is CS_ERR_STATE and nothing was delivered). Stops at the first callback error; the position moves
 * only when the whole pass succeeded.
 */
cs_err *col_usn_poll(col_usn *u, col_change_cb cb, void *ctx, size_t *n_changes, bool *resync);

/*
 * Takes the current position of the connected server (rootDSE highestCommittedUSN and invocationId) without
 * reading any object: the position to take before a snapshot.
 */
cs_err *col_usn_skip_to_end(col_usn *u);

/* The current position; NULL before any. Owned by u. */
const col_usn_position *col_usn_get_position(const col_usn *u);

/* Frees; NULL is allowed. */
void col_usn_free(col_usn *u);

#endif
