/*
 * col_dirsync: Active Directory change tracking with the DirSync control (1.2.840.113556.1.4.841).
 *
 * One poll runs DirSync rounds from the current cookie while the server sets the "more" flag, searching
 * the naming-context root (DirSync refuses any other base; other configured base DNs are filtered on
 * the client). DirSync returns only the changed attributes, so every changed object is re-read in full
 * by a base search on "<GUID=...>" with the show-deleted control, on the same connection (the server that
 * issued the cookie):
 *   - isDeleted: TRUE                     -> COL_CHANGE_REMOVAL (DELETED);
 *   - the object does not exist           -> COL_CHANGE_REMOVAL (DELETED; the tombstone is gone too);
 *   - it exists but the re-read's filter does not match it
 *                                         -> COL_CHANGE_REMOVAL (OUT_OF_SCOPE) with the id and DN only;
 *   - DN under none of the base DNs       -> COL_CHANGE_REMOVAL (OUT_OF_SCOPE);
 *   - otherwise                           -> COL_CHANGE_UPSERT with the full state.
 * Leaving the filter: DirSync never reports an object that no longer matches its filter, and reports a
 * change only to a requested attribute (both checked against Samba 4.17). So DirSync searches with the
 * broad filter (col_scope_broad_filter: the filter's class terms, which an object keeps when it leaves)
 * and also requests every attribute the filter tests (col_scope_filter_attrs), and the re-read by GUID
 * applies the real filter: an object reported but not matching has left the filter (or never matched;
 * the caller's index tells). Both filters go through col_scope_tracking_filter(): AD strips
 * objectCategory from tombstones, so the default filter alone would never return a deletion (checked
 * against Samba, tests/collector/col_samba_track.sh). A tombstone whose lastKnownParent is under none of
 * the base DNs is not reported.
 * With the object-security flag, col_dirsync_new() checks that CN=Deleted Objects is readable and logs an
 * error naming the fix when it is not (deletions would be invisible).
 * After each round the new cookie is handed over as COL_CHANGE_COOKIE. Requested attributes: the
 * certificate attributes, identity (mail, UPN, proxyAddresses, sAMAccountName, consistency GUID), `name`
 * (renames and moves) and isDeleted, so lifecycle changes are seen too.
 */
#ifndef COL_DIRSYNC_H
#define COL_DIRSYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "col_change.h"
#include "col_ldap.h"
#include "cs_err.h"

/* Bound on "more data" rounds in one poll. */
#define COL_DIRSYNC_MAX_ROUNDS 100000
/* Largest cookie kept (AD's grow with the up-to-dateness vector: ~100 bytes per DC). */
#define COL_DIRSYNC_MAX_COOKIE 1048576

typedef struct col_dirsync col_dirsync;

/*
 * Prepares DirSync of naming context `nc_root` with `filter` and DirSync `flags` (0, or
 * LDAP_CONTROL_X_DIRSYNC_OBJECT_SECURITY when the account lacks Replicating Directory Changes), resuming
 * from `cookie` (NULL/empty: from the beginning). The connection must outlive the handle.
 * Caller frees *out with col_dirsync_free().
 */
cs_err *col_dirsync_new(col_ldap *c, const char *nc_root, const char *filter, int flags, const void *cookie,
                        size_t cookie_len, col_dirsync **out);

/*
 * One poll (see above). `base_dns` (n): the scope; an object under none of them is out of scope.
 * *n_changes counts callbacks. Stops at the first callback error.
 */
cs_err *col_dirsync_poll(col_dirsync *d, const char *const *base_dns, size_t n, col_change_cb cb, void *ctx,
                         size_t *n_changes);

/*
 * Runs DirSync to the end without re-reading or reporting anything, so the cookie marks "now". This is
 * how the position before a snapshot is taken: DirSync has no "current cookie" request, and a cookie
 * for the same base, filter and attributes is the only one guaranteed to resume this search. It costs
 * one pass over the changed attributes of everything in scope (no re-reads).
 */
cs_err *col_dirsync_skip_to_end(col_dirsync *d);

/* The current cookie (NULL before any). Owned by d; valid until the next poll or free. */
const void *col_dirsync_cookie(const col_dirsync *d, size_t *len);

/* Frees; NULL is allowed. */
void col_dirsync_free(col_dirsync *d);

#endif
