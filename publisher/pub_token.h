/*
 * pub_token: OAuth2 client-credentials tokens (app-only) for Exchange Online and Microsoft Graph.
 *
 * POST {authority}/{tenant}/oauth2/v2.0/token with client_id, scope, grant_type=client_credentials and
 * either a client assertion (a JWT signed with the app's private key: RS256 with `x5t` = base64url SHA-1
 * of the certificate DER, or PS256 with `x5t#S256` = base64url SHA-256) or the client secret
 * (o365-contract.md section 1; learn.microsoft.com/entra/identity-platform/certificate-credentials).
 *
 * One scope, one resource per token: "<resource>/.default". The resource is derived from the configured
 * API base URL (scheme://host[:port] of o365.exchange_url / o365.graph_url), so a sovereign cloud
 * (e.g. https://outlook.office365.us) works by setting the base URL alone; `exchange_resource` /
 * `graph_resource` override it when the API is reached through a different host than its token audience.
 *
 * Tokens are cached per resource and refreshed when within `refresh_margin_ms` of expiry, or once 80%
 * of their lifetime has passed, whichever comes first, and after pub_token_invalidate() (a 401).
 * pub_token_get() hands out a reference: a refresh never frees a token someone still holds.
 * Thread-safe: the provider serialises fetches with a mutex.
 */
#ifndef PUB_TOKEN_H
#define PUB_TOKEN_H

#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "cs_err.h"
#include "pub_config.h"
#include "pub_http.h"

typedef enum pub_resource {
    PUB_RESOURCE_EXCHANGE = 0,
    PUB_RESOURCE_GRAPH,
} pub_resource;
#define PUB_RESOURCE_COUNT 2

typedef struct pub_token pub_token;
typedef struct pub_token_provider pub_token_provider;

typedef struct pub_token_opts {
    const char *authority_url; /* e.g. https://login.microsoftonline.com */
    const char *tenant_id;     /* GUID or domain */
    const char *client_id;
    const char *exchange_url;      /* Exchange base URL: its origin is the default resource */
    const char *graph_url;         /* Graph base URL: likewise */
    const char *exchange_resource; /* NULL: derived from exchange_url */
    const char *graph_resource;    /* NULL: derived from graph_url */
    pub_auth auth;
    const char *client_secret;    /* PUB_AUTH_SECRET: the secret (copied, wiped on free) */
    const char *certificate_file; /* PUB_AUTH_CERTIFICATE: PEM certificate registered on the app */
    const char *private_key_pem;  /* PUB_AUTH_CERTIFICATE: its PEM private key (not kept after new) */
    pub_assertion_alg alg;
    long long refresh_margin_ms; /* 0: 5 minutes */
    pub_http_opts http;          /* for the provider's own client (its max_inflight is forced to 1) */
} pub_token_opts;

/*
 * Creates a provider: loads and checks the certificate and key (the key must match the certificate)
 * or the secret. Errors name the config key and the fix. Caller frees with pub_token_provider_free().
 */
cs_err *pub_token_provider_new(const pub_token_opts *opts, pub_token_provider **out);

/* pub_token_provider_new() with the o365.* and http.* settings of `cfg`. */
cs_err *pub_token_provider_from_config(const pub_config *cfg, pub_token_provider **out);

/*
 * Replaces the credential after a rotation (cs_secret.h): the client secret (o365.auth: secret) or the
 * certificate file and PEM key (certificate), checked as pub_token_provider_new() does, then drops the
 * cached tokens so the next pub_token_get() asks with the new credential. On error the old credential
 * stays in use. Thread-safe. The strings are copied (the key is parsed), not kept.
 */
cs_err *pub_token_provider_set_credentials(pub_token_provider *p, const char *client_secret,
                                           const char *certificate_file, const char *private_key_pem);

/* Frees the provider; tokens handed out stay valid until unreferenced. NULL is allowed. */
void pub_token_provider_free(pub_token_provider *p);

/*
 * A valid access token for `r`, from the cache or fetched now. *out is a reference: the caller releases
 * it with pub_token_unref(). Errors carry the AADSTS code and flags: retriable (throttling, outages),
 * fatal (bad credentials or configuration, with the fix named).
 */
cs_err *pub_token_get(pub_token_provider *p, pub_resource r, pub_token **out);

/*
 * An API answered 401 to `seen`: drop it from the cache so the next get fetches a new one. A token that
 * was already replaced is left alone, so many failing requests cause one refresh, not many.
 */
void pub_token_invalidate(pub_token_provider *p, pub_resource r, const pub_token *seen);

/* The scope requested for `r`, e.g. "https://outlook.office365.com/.default". */
const char *pub_token_scope(const pub_token_provider *p, pub_resource r);

/* The token endpoint URL ({authority}/{tenant}/oauth2/v2.0/token); also the assertion's aud. */
const char *pub_token_url(const pub_token_provider *p);

/* Tokens fetched so far (the token_refreshes metric). */
uint64_t pub_token_refreshes(const pub_token_provider *p);

/* The bearer value of a token (never NULL) and its expiry on the wall clock. */
const char *pub_token_value(const pub_token *t);
time_t pub_token_expires_at(const pub_token *t);

/* Another reference to `t` (returns `t`). */
pub_token *pub_token_ref(pub_token *t);

/* Releases a reference; the last one frees and wipes the token. NULL is allowed. */
void pub_token_unref(pub_token *t);

/*
 * The client assertion JWT the provider would send now, with the clock at `now` (exposed for tests).
 * Caller frees *out with free(). Fails for a secret-based provider.
 */
cs_err *pub_token_build_assertion(pub_token_provider *p, time_t now, char **out);

/*
 * Turns a failed token response into an error (never NULL): the AADSTS code and description, the
 * client-request-id, the flags and, for known credential and configuration errors, the fix.
 */
cs_err *pub_token_error_from_response(long http_status, const char *body, size_t body_len,
                                      const char *client_request_id);

/* Longest token lifetime believed: Entra ID issues at most 24 hours; larger expires_in values are capped. */
#define PUB_TOKEN_MAX_LIFETIME_S 86400

/*
 * Reads a token endpoint success body (exposed for tests and fuzzing): *access_token (1..32 KiB, NUL-terminated,
 * *len bytes) and *expires_in_s (a JSON integer, or a string as the v1 endpoint sends it; 1 ..
 * PUB_TOKEN_MAX_LIFETIME_S, larger values capped). Returns the parsed document that owns *access_token
 * (caller frees with json_decref()), or NULL when the body is no JSON object with both fields usable.
 */
json_t *pub_token_parse_success(const char *body, size_t body_len, const char **access_token, size_t *len,
                                long long *expires_in_s);

/*
 * The resource (scheme://host[:port], lower case) of a base URL, into `out` (cap bytes). False when
 * `url` is not an absolute http(s) URL or does not fit.
 */
bool pub_token_resource_of(const char *url, char *out, size_t cap);

#endif
