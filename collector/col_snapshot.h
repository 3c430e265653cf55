/*
 * col_snapshot: the first full read of everything in scope, as a paged search (RFC 2696).
 *
 * Streams: entries are handled as they arrive (at most one page, ldap.page_size entries, is in flight);
 * each becomes a col_object handed to the callback as COL_CHANGE_UPSERT and freed right after. A paged search cannot resume on a
 * new connection, so a failure means starting the snapshot again (the index dedupes).
 * Take the incremental position (col_syncrepl_position / col_dirsync_position / the USN) BEFORE
 * calling this, so no change made during the snapshot is missed.
 */
#ifndef COL_SNAPSHOT_H
#define COL_SNAPSHOT_H

#include <stddef.h>

#include "col_change.h"
#include "col_ldap.h"
#include "cs_err.h"

/* Most pages one snapshot may take: 10^6 pages of >= 1 entry is far beyond any directory we serve. */
#define COL_SNAPSHOT_MAX_PAGES 1000000

/*
 * Searches every base DN in `base_dns` (n of them) with `filter` (subtree, paged by the connection's
 * ldap.page_size) and calls `cb` once per entry. An entry that cannot be read (malformed GUID, SID or
 * metadata) is logged with its DN and skipped, counted in *n_skipped. *n_objects counts callbacks.
 * Stops at the first callback error and returns it.
 */
cs_err *col_snapshot_run(col_ldap *c, const char *const *base_dns, size_t n, const char *filter,
                         col_change_cb cb, void *ctx, size_t *n_objects, size_t *n_skipped);

#endif
