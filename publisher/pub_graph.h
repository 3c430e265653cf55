/*
 * pub_graph: Microsoft Graph user lookups, to resolve a directory object to its cloud identity
 * (o365-contract.md section 3; Graph v1.0 has no certificate attributes, so it is used for lookups only).
 *
 *   GET {graph_url}/v1.0/users?$filter=<key> eq '<value>'&$select=id,userPrincipalName,mail,
 *       onPremisesImmutableId,onPremisesSecurityIdentifier
 *
 * Keys: onPremisesImmutableId (base64 of the objectGUID bytes, or of ms-DS-ConsistencyGuid),
 * onPremisesSecurityIdentifier, userPrincipalName, and for mail proxyAddresses/any(p:p eq 'smtp:<addr>')
 * (proxyAddresses holds the primary address too, and eq on it is case-insensitive). Values are OData
 * string literals (a single quote doubles) and the query is percent-encoded.
 */
#ifndef PUB_GRAPH_H
#define PUB_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "cs_buf.h"
#include "cs_err.h"
#include "pub_config.h"
#include "pub_http.h"
#include "pub_token.h"

typedef struct pub_graph pub_graph;

/* One user; strings are "" when Graph sent null. */
typedef struct pub_graph_user {
    char id[64]; /* = Exchange's ExternalDirectoryObjectId */
    char user_principal_name[256];
    char mail[256];
    char on_premises_immutable_id[64];
} pub_graph_user;

typedef enum pub_graph_status {
    PUB_GRAPH_FOUND = 0,
    PUB_GRAPH_NOT_FOUND, /* no user matched: usually "not yet" (next Entra Connect cycle) */
    PUB_GRAPH_AMBIGUOUS, /* more than one user matched: permanent until the directory is fixed */
    PUB_GRAPH_ERROR,     /* see err (retriable flag for throttling/outages) */
} pub_graph_status;

typedef struct pub_graph_result {
    pub_graph_status status;
    const pub_graph_user *user; /* FOUND only */
    const cs_err *err;          /* ERROR only */
    long long retry_after_ms;   /* -1 when none */
} pub_graph_result;

typedef void (*pub_graph_done_fn)(void *ctx, const pub_graph_result *res);

/* A client on `http` and `tokens` (borrowed). Caller frees with pub_graph_free(). */
cs_err *pub_graph_new(const char *graph_url, pub_http *http, pub_token_provider *tokens, pub_graph **out);
void pub_graph_free(pub_graph *g);

/* Looks a user up by `key` = `value` (for PUB_RESOLVE_MAIL an SMTP address); `done` runs once. */
cs_err *pub_graph_find_user(pub_graph *g, pub_resolve key, const char *value, pub_graph_done_fn done,
                            void *ctx);

/* --- Pure functions, exposed for tests. --- */

/* Appends `s` as an OData string literal: '...' with every ' doubled. */
bool pub_odata_quote(cs_buf *out, const char *s);

/* The full lookup URL for `key` = `value` (base URL without trailing slash). */
cs_err *pub_graph_build_url(const char *graph_url, pub_resolve key, const char *value, cs_buf *out);

/* The immutable id of an objectGUID (its 16 bytes as stored in AD, base64): `out` gets 24 chars + NUL. */
bool pub_graph_immutable_id(const unsigned char guid[16], char out[25]);

/*
 * Reads a Graph user lookup body (exposed for tests and fuzzing): a "value" array of none, one or several
 * users. FOUND fills *user (strings truncated to their fields); ERROR sets *why (static text) and
 * *retriable (true when the body has no "value" array at all: an outage page rather than an answer).
 */
pub_graph_status pub_graph_parse_lookup(const char *body, size_t len, pub_graph_user *user, const char **why,
                                        bool *retriable);

#endif
