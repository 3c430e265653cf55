/*
 * col_syncrepl: OpenLDAP change tracking with RFC 4533 refreshAndPersist.
 *
 * Raw controls rather than libldap's ldap_sync_* API: ldap_sync_init() runs the whole refresh phase
 * before it returns, and the service loop must be able to batch and shut down at any time. Here
 * col_syncrepl_start() only sends the search; col_syncrepl_step() reads at most `max_messages`
 * messages, waiting at most `wait_ms` for the first, and hands each change to the callback:
 *   - entry with sync state add/modify  -> COL_CHANGE_UPSERT (full state: the entry is complete);
 *   - state delete                      -> COL_CHANGE_REMOVAL (id from syncUUID; syncprov also sends
 *                                          delete when an entry stops matching the filter, so the
 *                                          reason is DELETED for both; col_service tells them apart);
 *   - state present, syncIdSet without refreshDeletes -> COL_CHANGE_PRESENT (id only);
 *   - syncIdSet with refreshDeletes     -> COL_CHANGE_REMOVAL per UUID;
 *   - end of a present phase (refreshPresent info) -> COL_CHANGE_REFRESH_DONE with sweep: objects not
 *     announced since COL_CHANGE_REFRESH_BEGIN (sent at the first step) are gone;
 *   - every new cookie (in a state control, a syncInfo message or syncDone) -> COL_CHANGE_COOKIE, after
 *     the change it covers.
 * col_syncrepl_start() covers one base DN; col_syncrepl_start_scoped() several (see there). An expired cookie (e-syncRefreshRequired, 4096) is a CS_ERR_STATE
 * error: start again without a cookie and sweep.
 */
#ifndef COL_SYNCREPL_H
#define COL_SYNCREPL_H

#include <stdbool.h>
#include <stddef.h>

#include "col_change.h"
#include "col_ldap.h"
#include "cs_err.h"

/* Largest cookie kept (slapd's are ~60 bytes; a multi-provider cookie grows with its CSN set). */
#define COL_SYNCREPL_MAX_COOKIE 65536
/* Largest syncIdSet accepted in one message. */
#define COL_SYNCREPL_MAX_IDSET 1000000

typedef struct col_syncrepl col_syncrepl;

/*
 * Sends a refreshAndPersist search of `base` (subtree) with `filter`, resuming from `cookie` (NULL or
 * empty: full refresh). The connection must outlive the handle. Caller frees *out with col_syncrepl_free().
 */
cs_err *col_syncrepl_start(col_ldap *c, const char *base, const char *filter, const void *cookie,
                           size_t cookie_len, col_syncrepl **out);

/*
 * Several base DNs: ONE refreshAndPersist search of their common naming context, filtered on the client
 * (chosen over one search per base because the checkpoint holds one syncrepl cookie, and because a move
 * between two base DNs, or out of all of them, then arrives as one modify with the new DN: an entry under
 * none of the base DNs becomes COL_CHANGE_REMOVAL (OUT_OF_SCOPE)). Costs the traffic of the entries of
 * the naming context that match the filter outside the bases. Base DNs in different naming contexts are
 * a CS_ERR_CONFIG (one collector per naming context). One base DN: same as col_syncrepl_start().
 * Caller frees *out with col_syncrepl_free().
 */
cs_err *col_syncrepl_start_scoped(col_ldap *c, const char *const *base_dns, size_t n, const char *filter,
                                  const void *cookie, size_t cookie_len, col_syncrepl **out);

/*
 * Processes at most `max_messages` messages, waiting at most `wait_ms` for each (0: only what is already
 * there). *n_changes counts callbacks. *ended is set when the server ended the search (then the handle
 * is done; start a new one). Stops at the first callback error. A signal during the wait (EINTR) is no
 * error: the wait goes on (LDAP_OPT_RESTART) and the search stays active.
 */
cs_err *col_syncrepl_step(col_syncrepl *s, long long wait_ms, size_t max_messages, col_change_cb cb,
                          void *ctx, size_t *n_changes, bool *ended);

/* The newest cookie seen (NULL when none yet). Owned by s; valid until the next step or free. */
const void *col_syncrepl_cookie(const col_syncrepl *s, size_t *len);

/* True once the refresh phase has ended (persist phase: changes arrive as they happen). */
bool col_syncrepl_refreshed(const col_syncrepl *s);

/* Abandons the search and frees; NULL is allowed. */
void col_syncrepl_free(col_syncrepl *s);

/*
 * Handles one syncInfo intermediate value (RFC 4533 syncInfoValue, BER) exactly as col_syncrepl_step()
 * does: newcookie, refreshDelete / refreshPresent (REFRESH_DONE, sweep for present), syncIdSet (PRESENT,
 * or REMOVAL with refreshDeletes). Exposed so the parsing can be tested with hand-built BER.
 */
cs_err *col_syncrepl_handle_info(col_syncrepl *s, const struct berval *value, col_change_cb cb, void *ctx,
                                 size_t *n_changes);

/*
 * Reads a Sync State Control value (RFC 4533 2.2: state, entryUUID, optional cookie). *uuid and *cookie point
 * into *ber (valid until the caller frees it with ber_free(*ber, 1)); an absent cookie has bv_val NULL.
 * Malformed BER is CS_ERR_INVALID_INPUT, and then nothing is left to free. Exposed for fuzzing.
 */
cs_err *col_syncrepl_parse_state(const struct berval *value, int *state, struct berval *uuid,
                                 struct berval *cookie, BerElement **ber);

/* Reads a Sync Done Control value (RFC 4533 2.4) the same way: *cookie points into *ber, or is absent. */
cs_err *col_syncrepl_parse_done(const struct berval *value, struct berval *cookie, BerElement **ber);

/* For tests: a handle without a connection, to drive col_syncrepl_handle_info(). Free with col_syncrepl_free(). */
cs_err *col_syncrepl_new_unconnected(col_syncrepl **out);

/*
 * The current position without reading the directory: a refreshOnly search of `base` with scope base
 * and no attributes returns syncprov's cookie (its contextCSN) for one entry's cost. The cookie is not
 * bound to the scope or filter, so a later refreshAndPersist with it sends every change after that CSN
 * (from the session log, or through a present phase). Caller frees *cookie with free().
 */
cs_err *col_syncrepl_position(col_ldap *c, const char *base, void **cookie, size_t *cookie_len);

#endif
