/*
 * pub_resolver: directory object -> Exchange recipient, with a bounded TTL cache.
 *
 * Tries the keys of `resolve.order` that the object has (immutable id, SID, UPN, mail): a Graph user
 * lookup gives the cloud object id, then Get-Recipient gives its type and primary address. For mail, a
 * recipient that is no Graph user (a mail contact) is looked up in Exchange by address directly. The
 * first key that finds one wins. "Not found" by every key is an answer, not an error: the caller treats
 * it as "not yet" (design.md: a recipient appears after the next Entra Connect cycle) and it is not
 * cached. An error (throttling, outage, ambiguity) stops the walk so a later key cannot pick the wrong
 * recipient.
 */
#ifndef PUB_RESOLVER_H
#define PUB_RESOLVER_H

#include <stddef.h>

#include "cs_err.h"
#include "pub_config.h"
#include "pub_exchange.h"
#include "pub_graph.h"

/* Mirrors certsync.v1.Recipient (proto/certsync/v1/common.proto). */
typedef struct pub_recipient {
    char external_directory_object_id[64];
    char identity
        [256]; /* what Set-* gets as -Identity: the object id, or the address of a contact without one */
    char recipient_type_details[64];
    char primary_smtp_address[256];
    char resolved_by[16]; /* pub_resolve_name() of the key that matched */
} pub_recipient;

/* What the directory knows of the object; NULL/empty fields are skipped. */
typedef struct pub_resolve_input {
    const unsigned char *object_guid; /* 16 bytes as AD stores them (or ms-DS-ConsistencyGuid), or NULL */
    const char *immutable_id;         /* precomputed base64, used when object_guid is NULL */
    const char *sid;                  /* S-1-5-... */
    const char *upn;
    const char *mail;
} pub_resolve_input;

typedef enum pub_resolve_status {
    PUB_RESOLVE_FOUND = 0,
    PUB_RESOLVE_NOT_FOUND, /* "not yet": retry later */
    PUB_RESOLVE_FAILED,    /* see err: retriable (throttled, outage) or permanent (ambiguous, auth) */
} pub_resolve_status;

typedef void (*pub_resolver_done_fn)(void *ctx, pub_resolve_status st, const pub_recipient *r,
                                     const cs_err *err, long long retry_after_ms);

typedef struct pub_resolver pub_resolver;

/*
 * A resolver trying `order[0..n)`, caching up to `max_entries` answers for `ttl_ms`. `graph` and `exo`
 * are borrowed. Caller frees with pub_resolver_free().
 */
cs_err *pub_resolver_new(const pub_resolve *order, size_t n, size_t max_entries, long long ttl_ms,
                         pub_graph *graph, pub_exchange *exo, pub_resolver **out);
void pub_resolver_free(pub_resolver *r);

/*
 * Resolves the object known as `cache_key` (e.g. the event key). A cache hit calls `done` before this
 * returns; otherwise `done` runs later from pub_http_run(). On an error return `done` is not called.
 */
cs_err *pub_resolver_resolve(pub_resolver *r, const char *cache_key, const pub_resolve_input *in,
                             pub_resolver_done_fn done, void *ctx);

/* Drops a cached answer (a write said "not found", or the object moved). */
void pub_resolver_forget(pub_resolver *r, const char *cache_key);

/* Cached entries now (for tests and metrics). */
size_t pub_resolver_cached(const pub_resolver *r);

/* Inserts an answer directly (exposed for tests of the cache bounds and TTL). */
void pub_resolver_cache_put(pub_resolver *r, const char *cache_key, const pub_recipient *rec);

/* A cached, unexpired answer copied to *out; false when none. */
bool pub_resolver_cache_get(pub_resolver *r, const char *cache_key, pub_recipient *out);

#endif
