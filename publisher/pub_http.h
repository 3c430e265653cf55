/*
 * pub_http: the publisher's HTTPS client for Office 365, on the libcurl multi interface.
 *
 * Requests are submitted with a completion callback and driven by pub_http_run(); at most
 * `max_inflight` are on the wire at once and the multi handle's connection cache reuses connections.
 * TLS verification is always on. Every request carries a fresh `client-request-id` (UUID v4), kept over
 * its retries and logged with any failure: it is how Microsoft support traces a call.
 *
 * Classification, applied per attempt:
 *   2xx                        -> done, PUB_HTTP_OK
 *   429                        -> wait exactly Retry-After (seconds, or an HTTP-date measured against the
 *                                 response's Date header), then retry; without a usable Retry-After, backoff
 *   503, 504, 408, 425, 500, 502, timeouts, connection resets, empty replies
 *                              -> exponential backoff with full jitter, retry
 *   401                        -> done, PUB_HTTP_UNAUTHORIZED (the caller refreshes its token and resubmits)
 *   other 4xx, TLS failures    -> done at once (permanent)
 * Retries are bounded by `max_attempts`; a Retry-After longer than `max_retry_after_ms` is not waited
 * here but handed to the caller (PUB_HTTP_THROTTLED with retry_after_ms) so it can park the work instead
 * of holding anything open. A request that waits does not block the others: the loop keeps serving them.
 *
 * Pacing (o365-contract.md: Exchange publishes no number, adapt to Rate-Limit-*): every response's
 * Rate-Limit-Remaining / -Reset (per API: scheme, host and first path segment) is remembered. When the
 * remaining budget, less the requests still on the wire, is low (at most a tenth of Rate-Limit-Limit or
 * 2 x max_inflight), new requests to that API are spread evenly over the seconds to the reset; when it is
 * used up (or a 429 says Remaining 0), none starts until the reset / Retry-After has passed. A 429 with budget
 * left (one recipient throttled) delays only that request. Header values are capped
 * (PUB_HTTP_MAX_PACE_S) so a bogus one cannot stall the client.
 */
#ifndef PUB_HTTP_H
#define PUB_HTTP_H

/* Longest pause pacing takes from one Rate-Limit-Reset or Retry-After value (the rest is the caller's). */
#define PUB_HTTP_MAX_PACE_S 300

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cs_err.h"
#include "pub_codec.h"

typedef struct pub_http pub_http;

/* Called after every attempt (retries included) with its HTTP status (0: no response), from the thread
 * running pub_http_run(); for metrics. Must be quick and must not call back into the client. */
typedef void (*pub_http_observe_fn)(void *ctx, long status);

typedef struct pub_http_opts {
    int max_inflight;             /* requests on the wire at once, 1..256 */
    long long timeout_ms;         /* limit for one attempt, connect included */
    long long connect_timeout_ms; /* 0: the smaller of timeout_ms and 10 s */
    const char *ca_file;          /* PEM CA bundle trusted in addition to the system's CAs, or NULL */
    int max_attempts;             /* attempts per request for retriable failures; 0: 6 */
    long long backoff_base_ms;    /* first backoff ceiling; 0: 500 ms */
    long long backoff_max_ms;     /* largest backoff ceiling; 0: 30 s */
    long long max_retry_after_ms; /* longest Retry-After waited in here; 0: 120 s */
    size_t max_response_bytes;    /* larger bodies fail the request; 0: 8 MiB */
    pub_http_observe_fn observe;  /* NULL: none */
    void *observe_ctx;
    bool no_pacing; /* true: ignore Rate-Limit-* (see "Pacing" above; for comparisons in tests) */
} pub_http_opts;

typedef enum pub_http_outcome {
    PUB_HTTP_OK = 0,       /* 2xx */
    PUB_HTTP_THROTTLED,    /* 429 still after the attempts, or a Retry-After beyond max_retry_after_ms */
    PUB_HTTP_UNAVAILABLE,  /* 5xx, timeouts or transport failures still after the attempts */
    PUB_HTTP_UNAUTHORIZED, /* 401: refresh the token, resubmit */
    PUB_HTTP_REJECTED,     /* another 4xx: permanent for this request */
    PUB_HTTP_FAILED,       /* TLS, URL or response-size failure: permanent */
    PUB_HTTP_CANCELLED,    /* pub_http_cancel_all() or pub_http_free() */
} pub_http_outcome;

/* The result of a request. Strings are NUL-terminated and never NULL ("" when absent). */
typedef struct pub_http_response {
    pub_http_outcome outcome;
    long status;      /* last HTTP status, 0 when no response arrived */
    const char *body; /* last response body */
    size_t body_len;
    const char *client_request_id;
    const char *request_id;   /* the server's request-id header */
    long long retry_after_ms; /* from the last response's Retry-After, -1 when none or unusable */
    long rate_limit_limit;    /* Rate-Limit-Limit / -Remaining / -Reset (seconds), -1 when absent */
    long rate_limit_remaining;
    long rate_limit_reset;
    int attempts;      /* attempts made */
    const cs_err *err; /* NULL for PUB_HTTP_OK; else what failed, naming the URL, status and
                                    client-request-id (retriable flag set for THROTTLED/UNAVAILABLE) */
} pub_http_response;

/* Called once per submitted request, from pub_http_run(), pub_http_cancel_all() or pub_http_free().
 * `resp` and everything it points to live until the callback returns. The callback may submit. */
typedef void (*pub_http_done_fn)(void *ctx, const pub_http_response *resp);

typedef struct pub_http_request {
    const char *method;         /* "GET" or "POST" */
    const char *url;            /* absolute https:// URL (http:// only for loopback tests) */
    const char *const *headers; /* "Name: value" lines ended by NULL, or NULL; copied */
    const char *body;           /* request body or NULL; copied */
    size_t body_len;
    pub_http_done_fn done; /* required for pub_http_submit() */
    void *ctx;
} pub_http_request;

/* Creates a client. Caller frees with pub_http_free(). */
cs_err *pub_http_new(const pub_http_opts *opts, pub_http **out);

/*
 * Queues a request; it starts when a slot is free. On success the callback will be called exactly once.
 * *crid_out (optional, PUB_UUID_LEN + 1 bytes) receives its client-request-id.
 */
cs_err *pub_http_submit(pub_http *h, const pub_http_request *req, char *crid_out);

/*
 * Drives transfers for at most `timeout_ms` and returns as soon as at least one request completed
 * (its callback ran), or when the time is up, or at once when nothing is pending. *completed
 * (optional) receives the number of callbacks run. Errors are failures of libcurl itself (fatal).
 */
cs_err *pub_http_run(pub_http *h, long long timeout_ms, size_t *completed);

/* Requests submitted and not completed yet. */
size_t pub_http_pending(const pub_http *h);

/*
 * Submits `req` (done/ctx ignored) and drives the client until it completes; other requests keep
 * progressing meanwhile and their callbacks run. *out: the response (caller frees with
 * pub_http_response_free()); the error return is for libcurl failures only, HTTP failures are in *out.
 * Do not call from a callback of the same client.
 */
cs_err *pub_http_perform(pub_http *h, const pub_http_request *req, pub_http_response **out);

/* Frees a response from pub_http_perform(). NULL is allowed. */
void pub_http_response_free(pub_http_response *resp);

/* Completes every pending request with PUB_HTTP_CANCELLED (for a partition revoke). */
void pub_http_cancel_all(pub_http *h);

/* Cancels what is pending (callbacks run) and frees the client. NULL is allowed. */
void pub_http_free(pub_http *h);

/* The outcome's name, e.g. "throttled", for logs and metrics labels. */
const char *pub_http_outcome_name(pub_http_outcome o);

/*
 * Parses an HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 section 5.6.7) into
 * seconds since the epoch. False on anything else.
 */
bool pub_http_parse_date(const char *s, time_t *out);

/*
 * A Rate-Limit-Limit / -Remaining / -Reset header value of `len` bytes (not NUL-terminated, blanks and CRLF
 * around it allowed): the non-negative decimal count, or -1 when it is not one (exposed for fuzzing).
 */
long pub_http_parse_count(const char *v, size_t len);

/*
 * Parses a Retry-After value into milliseconds to wait: delay-seconds, or an HTTP-date measured
 * against `date_header` (the response's Date; when NULL or unparseable, against `now`, the local
 * clock). A date in the past gives 0. False (and *out_ms untouched) for anything else.
 */
bool pub_http_parse_retry_after(const char *value, const char *date_header, time_t now, long long *out_ms);

/*
 * The wait before retry number `attempt` (1 = first retry): "full jitter", a uniform draw from
 * [0, min(max_ms, base_ms * 2^(attempt-1))] taken from `rnd`.
 */
long long pub_http_backoff_ms(int attempt, long long base_ms, long long max_ms, uint32_t rnd);

#endif
