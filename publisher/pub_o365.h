/*
 * pub_o365: the Office 365 side of the publisher behind the pipeline's pub_applier interface.
 *
 * Owns the HTTP client, the token provider, the Exchange and Graph clients and the resolver. apply()
 * resolves every write's recipient (resolve.order, cached), picks the Set-* cmdlet by recipient type and
 * writes both full lists, all writes of a batch concurrently on one pub_http (http.max_inflight), and
 * returns when every one has finished. Outcomes:
 *   written                       -> APPLIED / CLEARED with the recipient
 *   write scope                   -> PERMANENT WRITE_SCOPE (the fix in the detail)
 *   values refused / no cmdlet    -> PERMANENT REJECTED
 *   not found (resolve or write)  -> RETRY_LATER with a delay growing with the attempt (first x
 *                                    factor^(n-1), at most max: retry.not_found.*, default 5 min x 3^(n-1)
 *                                    up to 6 h) and, from attempt retry.not_found.attempts (default 8) on,
 *                                    PERMANENT RECIPIENT_NOT_FOUND: "not found" is usually "not yet"
 *   throttled                     -> RETRY_LATER after Retry-After (a wait up to PUB_O365_MAX_INLINE_WAIT_MS
 *                                    happens inside pub_http; longer ones come back here to be parked)
 *   outage after retries          -> RETRY_LATER after 30 s
 *   credential / config failure   -> apply() returns the (fatal) error: the batch is not committed
 *   unfinished at the cancel time -> RETRY_LATER with `cancelled` (apply_until's pub_apply_limits): its
 *                                    requests are removed from the wire, it is not applied
 * apply_until() keeps 2 x http.max_inflight writes in progress and starts the next as one finishes, so the
 * connections stay busy for the whole batch instead of draining at chunk boundaries.
 */
#ifndef PUB_O365_H
#define PUB_O365_H

#include "cs_err.h"
#include "pub_applier.h"
#include "pub_config.h"
#include "pub_exchange.h"
#include "pub_http.h"
#include "pub_resolver.h"
#include "pub_token.h"

/* Defaults of retry.not_found.* (pub_config.c), used when the config leaves a field 0. */
#define PUB_O365_NOT_FOUND_ATTEMPTS 8
#define PUB_O365_NOT_FOUND_FIRST_DELAY_MS (5 * 60 * 1000LL)
#define PUB_O365_NOT_FOUND_FACTOR 3
#define PUB_O365_NOT_FOUND_MAX_DELAY_MS (6 * 3600 * 1000LL)
#define PUB_O365_MAX_INLINE_WAIT_MS 10000

typedef struct pub_o365 pub_o365;

/* Extra settings not (yet) in the config table; NULL fields take the defaults. */
typedef struct pub_o365_opts {
    const char *exchange_resource; /* token audience override, see pub_token_opts */
    const char *graph_resource;
    size_t resolver_cache_entries; /* 0: 100000 */
    long long resolver_ttl_ms;     /* 0: 1 hour */
    /* Metrics hooks (NULL: none), see pub_http_observe_fn: every attempt of the API client (Exchange and
     * Graph) and of the token client. */
    pub_http_observe_fn observe_api;
    pub_http_observe_fn observe_token;
    void *observe_ctx;
} pub_o365_opts;

/* Builds the Office 365 side from `cfg` (borrowed: must outlive it). Caller frees with pub_o365_free(). */
cs_err *pub_o365_new(const pub_config *cfg, const pub_o365_opts *opts, pub_o365 **out);

/* Cancels anything in flight and frees. NULL is allowed. */
void pub_o365_free(pub_o365 *o);

/* The pub_applier the pipeline calls (ctx = o). */
pub_applier pub_o365_applier(pub_o365 *o);

/* For metrics: tokens fetched so far. */
uint64_t pub_o365_token_refreshes(const pub_o365 *o);

/*
 * Obtains (or finds cached) the Exchange and Graph tokens, so credential problems show at startup and
 * readiness can say a token was obtained. Errors as pub_token_get() (fatal for bad credentials).
 */
cs_err *pub_o365_warm_up(pub_o365 *o);

/* The clients inside, for read-only tools (replay --dry-run, preflight). Owned by `o`. */
pub_http *pub_o365_http(pub_o365 *o);
pub_exchange *pub_o365_exchange(pub_o365 *o);
pub_resolver *pub_o365_resolver(pub_o365 *o);
/* The token provider (credential rotation, preflight's roles check). Owned by `o`. */
pub_token_provider *pub_o365_tokens(pub_o365 *o);

/*
 * Fills `in` with the keys the resolver tries for `id` (immutable id from ms-DS-ConsistencyGuid, else the
 * objectGUID; SID; UPN; mail, else the primary proxy address copied into `mail_buf`). Pointers into `id`
 * and `mail_buf`, which must outlive `in`.
 */
void pub_o365_resolve_input(const Certsync__V1__Identity *id, pub_resolve_input *in, char *mail_buf,
                            size_t cap);

#endif
