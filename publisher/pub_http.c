/*
 * pub_http: libcurl multi client with bounded concurrency, exact Retry-After and jittered backoff.
 *
 * Every request lives in one list from submit to completion, in one of three states: queued (waiting
 * for a slot or for its not-before time), active (an easy handle in the multi handle) or done. One
 * easy handle per attempt; connections are reused through the multi handle's connection cache.
 */
#include "pub_http.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "cs_buf.h"
#include "cs_log.h"

#define PUB_HTTP_FAC "http"
#define PUB_HTTP_MAX_HEADER_VALUE 128 /* we keep a few short headers; longer values are truncated */
#define PUB_HTTP_MAX_PENDING 100000   /* bound on queued requests: a caller bug beyond that */
#define PUB_HTTP_MAX_WAIT_SECONDS (7LL * 24 * 3600)

#define PUB_HTTP_PACE_BUCKETS 8   /* APIs paced separately (Exchange, Graph, token, ...); more share none */
#define PUB_HTTP_PACE_KEY_MAX 256 /* scheme://host[:port]/first-segment, longer URLs are not paced */

typedef enum req_state { REQ_QUEUED, REQ_ACTIVE } req_state;

/* What the Rate-Limit-* headers of one API said last (see "Pacing" in pub_http.h). */
typedef struct pace_bucket {
    char key[PUB_HTTP_PACE_KEY_MAX];
    size_t active;         /* requests of this API on the wire */
    long long hold_until;  /* monotonic ms: start nothing before (budget used up) */
    long long interval_ms; /* 0: no spreading; else at least this long between starts */
    long long last_start;  /* monotonic ms of the last start */
} pace_bucket;

typedef struct pub_http_req {
    struct pub_http_req *next, *prev;
    req_state state;
    CURL *easy;
    struct curl_slist *hdrs;
    char *method, *url, *body;
    size_t body_len;
    pub_http_done_fn done;
    void *ctx;
    char crid[PUB_UUID_LEN + 1];
    long long not_before_ms; /* monotonic: do not start before */
    int attempts;
    /* From the last response. */
    cs_buf resp;
    bool resp_too_big;
    long status;
    char date[PUB_HTTP_MAX_HEADER_VALUE];
    char retry_after[PUB_HTTP_MAX_HEADER_VALUE];
    char request_id[PUB_HTTP_MAX_HEADER_VALUE];
    long rl_limit, rl_remaining, rl_reset;
    char curl_err[CURL_ERROR_SIZE];
    int bucket; /* pace bucket index, -1: not paced */
} pub_http_req;

struct pub_http {
    CURLM *multi;
    pub_http_opts o;
    pub_http_req *head, *tail;
    size_t pending, active;
    const char *capath; /* libcurl's built-in CA directory, or NULL */
    pace_bucket pace[PUB_HTTP_PACE_BUCKETS];
    size_t n_pace;
};

static int pace_bucket_of(pub_http *h, const char *url);

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *pub_http_outcome_name(pub_http_outcome o)
{
    switch (o) {
    case PUB_HTTP_OK:
        return "ok";
    case PUB_HTTP_THROTTLED:
        return "throttled";
    case PUB_HTTP_UNAVAILABLE:
        return "unavailable";
    case PUB_HTTP_UNAUTHORIZED:
        return "unauthorized";
    case PUB_HTTP_REJECTED:
        return "rejected";
    case PUB_HTTP_FAILED:
        return "failed";
    case PUB_HTTP_CANCELLED:
        return "cancelled";
    }
    return "?";
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), after Howard Hinnant's days_from_civil:
 * timegm() is not POSIX and mktime() would apply the local time zone. */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

bool pub_http_parse_date(const char *s, time_t *out)
{
    static const char *const wdays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    /* IMF-fixdate is fixed width: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters). */
    if (!s || strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || s[25] != ' ' || strcmp(s + 26, "GMT") != 0)
        return false;
    bool wday_ok = false;
    for (size_t i = 0; i < 7; i++)
        wday_ok = wday_ok || strncmp(s, wdays[i], 3) == 0;
    unsigned mon = 0;
    for (unsigned i = 0; i < 12; i++)
        if (strncmp(s + 8, months[i], 3) == 0)
            mon = i + 1;
    static const int digit_pos[] = {5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24};
    for (size_t i = 0; i < sizeof digit_pos / sizeof digit_pos[0]; i++)
        if (!isdigit((unsigned char)s[digit_pos[i]]))
            return false;
    if (!wday_ok || mon == 0)
        return false;
#define D2(p) ((unsigned)(s[p] - '0') * 10 + (unsigned)(s[(p) + 1] - '0'))
    unsigned day = D2(5), hh = D2(17), mm = D2(20), ss = D2(23);
    long long year = (long long)D2(12) * 100 + D2(14);
#undef D2
    if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return false;
    long long t = days_from_civil(year, mon, day) * 86400 + hh * 3600LL + mm * 60LL + ss;
    *out = (time_t)t;
    return true;
}

bool pub_http_parse_retry_after(const char *value, const char *date_header, time_t now, long long *out_ms)
{
    if (!value || !*value)
        return false;
    /* delay-seconds = 1*DIGIT */
    if (isdigit((unsigned char)value[0])) {
        long long secs = 0;
        for (const char *p = value; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return false;
            if (secs < PUB_HTTP_MAX_WAIT_SECONDS)
                secs = secs * 10 + (*p - '0');
        }
        if (secs > PUB_HTTP_MAX_WAIT_SECONDS)
            secs = PUB_HTTP_MAX_WAIT_SECONDS; /* absurd values are capped, not overflowed */
        *out_ms = secs * 1000;
        return true;
    }
    time_t at, ref;
    if (!pub_http_parse_date(value, &at))
        return false;
    /* The server's clock, not ours: a skewed local clock must not shorten or stretch the wait. */
    if (!date_header || !pub_http_parse_date(date_header, &ref))
        ref = now;
    long long delta = (long long)at - (long long)ref;
    if (delta < 0)
        delta = 0;
    if (delta > PUB_HTTP_MAX_WAIT_SECONDS)
        delta = PUB_HTTP_MAX_WAIT_SECONDS;
    *out_ms = delta * 1000;
    return true;
}

long long pub_http_backoff_ms(int attempt, long long base_ms, long long max_ms, uint32_t rnd)
{
    if (attempt < 1)
        attempt = 1;
    if (base_ms < 1)
        base_ms = 1;
    long long ceiling = base_ms;
    for (int i = 1; i < attempt && ceiling < max_ms; i++)
        ceiling *= 2;
    if (ceiling > max_ms)
        ceiling = max_ms;
    return (long long)(rnd % (uint64_t)(ceiling + 1));
}

static uint32_t random_u32(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint32_t)mono_ms(); /* jitter only: a weak value is still better than none */
    return r;
}

cs_err *pub_http_new(const pub_http_opts *opts, pub_http **out)
{
    *out = NULL;
    if (opts->max_inflight < 1 || opts->max_inflight > 256)
        return cs_err_new(CS_ERR_CONFIG, 0, "http.max_inflight: %d is out of range: use 1..256",
                          opts->max_inflight);
    if (opts->timeout_ms < 1)
        return cs_err_new(CS_ERR_CONFIG, 0, "http.timeout: must be positive");
    static bool global_done = false; /* curl_global_init is not thread-safe: called from the first new */
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "curl_global_init failed");
        global_done = true;
    }
    pub_http *h = calloc(1, sizeof *h);
    if (!h)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    h->o = *opts;
    if (h->o.connect_timeout_ms <= 0)
        h->o.connect_timeout_ms = h->o.timeout_ms < 10000 ? h->o.timeout_ms : 10000;
    if (h->o.max_attempts <= 0)
        h->o.max_attempts = 6;
    if (h->o.backoff_base_ms <= 0)
        h->o.backoff_base_ms = 500;
    if (h->o.backoff_max_ms <= 0)
        h->o.backoff_max_ms = 30000;
    if (h->o.max_retry_after_ms <= 0)
        h->o.max_retry_after_ms = 120000;
    if (h->o.max_response_bytes == 0)
        h->o.max_response_bytes = 8u * 1024 * 1024;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "curl_multi_init failed");
    }
    const curl_version_info_data *ver = curl_version_info(CURLVERSION_NOW);
    h->capath = ver ? ver->capath : NULL;
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)h->o.max_inflight);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->o.max_inflight);
    *out = h;
    return NULL;
}

static void req_free(pub_http_req *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->method);
    free(r->url);
    free(r->body);
    cs_buf_free(&r->resp);
    free(r);
}

static void list_remove(pub_http *h, pub_http_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        h->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        h->tail = r->prev;
    r->next = r->prev = NULL;
    h->pending--;
}

cs_err *pub_http_submit(pub_http *h, const pub_http_request *req, char *crid_out)
{
    pub_http_req *r = NULL;
    cs_err *err = NULL;
    if (!req->done || !req->method || !req->url)
        return cs_err_new(CS_ERR_INTERNAL, 0, "pub_http_submit: method, url and done are required");
    if (h->pending >= PUB_HTTP_MAX_PENDING)
        return cs_err_new(CS_ERR_STATE, CS_ERR_F_RETRIABLE, "pub_http_submit: %d requests pending already",
                          PUB_HTTP_MAX_PENDING);
    r = calloc(1, sizeof *r);
    if (!r)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    cs_buf_init(&r->resp, h->o.max_response_bytes);
    r->method = strdup(req->method);
    r->url = strdup(req->url);
    if (!r->method || !r->url)
        goto nomem;
    if (req->body) {
        r->body = malloc(req->body_len + 1);
        if (!r->body)
            goto nomem;
        memcpy(r->body, req->body, req->body_len);
        r->body[req->body_len] = '\0';
        r->body_len = req->body_len;
    }
    if (!pub_uuid_v4(r->crid)) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "RAND_bytes failed: no client-request-id");
        goto cleanup;
    }
    char line[80];
    snprintf(line, sizeof line, "client-request-id: %s", r->crid);
    struct curl_slist *tmp = curl_slist_append(NULL, line);
    if (!tmp)
        goto nomem;
    r->hdrs = tmp;
    /* No "Expect: 100-continue" round trip for our small bodies. */
    const char *fixed[] = {"return-client-request-id: true", "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        tmp = curl_slist_append(r->hdrs, fixed[i]);
        if (!tmp)
            goto nomem;
        r->hdrs = tmp;
    }
    for (size_t i = 0; req->headers && req->headers[i] && i < 64; i++) {
        tmp = curl_slist_append(r->hdrs, req->headers[i]);
        if (!tmp)
            goto nomem;
        r->hdrs = tmp;
    }
    r->done = req->done;
    r->ctx = req->ctx;
    r->state = REQ_QUEUED;
    r->not_before_ms = 0;
    r->prev = h->tail;
    if (h->tail)
        h->tail->next = r;
    else
        h->head = r;
    h->tail = r;
    r->bucket = pace_bucket_of(h, r->url);
    h->pending++;
    if (crid_out)
        memcpy(crid_out, r->crid, PUB_UUID_LEN + 1);
    return NULL;
nomem:
    err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
cleanup:
    req_free(r);
    return err;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    pub_http_req *r = userdata;
    size_t n = size * nmemb;
    if (!cs_buf_add(&r->resp, ptr, n)) {
        r->resp_too_big = true;
        return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Copies a header value, trimmed, into a fixed buffer. */
static void copy_value(char *dst, size_t cap, const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

long pub_http_parse_count(const char *v, size_t len)
{
    char tmp[32];
    copy_value(tmp, sizeof tmp, v, len);
    char *end = NULL;
    errno = 0;
    long n = strtol(tmp, &end, 10);
    if (errno != 0 || end == tmp || *end != '\0' || n < 0)
        return -1;
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    pub_http_req *r = userdata;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue or a redirect): forget the previous one's headers. */
        r->date[0] = r->retry_after[0] = r->request_id[0] = '\0';
        r->rl_limit = r->rl_remaining = r->rl_reset = -1;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    size_t name_len = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = n - name_len - 1;
#define IS(name) (name_len == sizeof(name) - 1 && strncasecmp(buf, name, name_len) == 0)
    if (IS("Date"))
        copy_value(r->date, sizeof r->date, v, vlen);
    else if (IS("Retry-After"))
        copy_value(r->retry_after, sizeof r->retry_after, v, vlen);
    else if (IS("request-id"))
        copy_value(r->request_id, sizeof r->request_id, v, vlen);
    else if (IS("Rate-Limit-Limit"))
        r->rl_limit = pub_http_parse_count(v, vlen);
    else if (IS("Rate-Limit-Remaining"))
        r->rl_remaining = pub_http_parse_count(v, vlen);
    else if (IS("Rate-Limit-Reset"))
        r->rl_reset = pub_http_parse_count(v, vlen);
#undef IS
    return n;
}

/* The pace bucket of `url` (scheme://authority/first-segment), created on first use; -1 when the URL is too
 * long or every bucket is taken (then the request is not paced: bounded, never an error). */
static int pace_bucket_of(pub_http *h, const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    p = strchr(p + 3, '/');
    size_t len = p ? (size_t)(p - url) + 1 + strcspn(p + 1, "/?#") : strlen(url);
    if (len >= PUB_HTTP_PACE_KEY_MAX)
        return -1;
    for (size_t i = 0; i < h->n_pace; i++)
        if (strlen(h->pace[i].key) == len && strncmp(h->pace[i].key, url, len) == 0)
            return (int)i;
    if (h->n_pace >= PUB_HTTP_PACE_BUCKETS)
        return -1;
    pace_bucket *b = &h->pace[h->n_pace];
    memset(b, 0, sizeof *b);
    memcpy(b->key, url, len);
    b->key[len] = '\0';
    return (int)h->n_pace++;
}

/* Ms until a request of bucket `bi` may start (0: now). */
static long long pace_wait(const pub_http *h, int bi, long long now)
{
    if (bi < 0 || h->o.no_pacing)
        return 0;
    const pace_bucket *b = &h->pace[bi];
    long long at = b->hold_until;
    if (b->interval_ms > 0 && b->last_start + b->interval_ms > at)
        at = b->last_start + b->interval_ms;
    return at > now ? at - now : 0;
}

/* Learns from a finished attempt's Rate-Limit-* headers (r is no longer counted as active). */
static void pace_update(pub_http *h, const pub_http_req *r)
{
    if (r->bucket < 0 || h->o.no_pacing || r->rl_remaining < 0 || r->rl_reset < 0)
        return;
    pace_bucket *b = &h->pace[r->bucket];
    long long now = mono_ms();
    long long reset_ms = (r->rl_reset > PUB_HTTP_MAX_PACE_S ? PUB_HTTP_MAX_PACE_S : r->rl_reset) * 1000LL;
    long long low = r->rl_limit > 0 ? r->rl_limit / 10 : 0;
    if (low < 2LL * h->o.max_inflight)
        low = 2LL * h->o.max_inflight;
    if (r->rl_remaining > low) {
        b->interval_ms = 0;
        return;
    }
    /* Each request still on the wire takes one more from the budget. */
    long long left = (long long)r->rl_remaining - (long long)b->active;
    if (left > 0) {
        b->interval_ms = reset_ms / left;
        return;
    }
    long long until = now + reset_ms;
    long long ra_ms = -1;
    if (r->status == 429 && r->retry_after[0] &&
        pub_http_parse_retry_after(r->retry_after, r->date[0] ? r->date : NULL, time(NULL), &ra_ms) &&
        ra_ms > 0 &&
        now + (ra_ms < PUB_HTTP_MAX_PACE_S * 1000LL ? ra_ms : PUB_HTTP_MAX_PACE_S * 1000LL) > until)
        until = now + (ra_ms < PUB_HTTP_MAX_PACE_S * 1000LL ? ra_ms : PUB_HTTP_MAX_PACE_S * 1000LL);
    if (until > b->hold_until) {
        char wait_s[32], rem_s[32];
        snprintf(wait_s, sizeof wait_s, "%lld", until - now);
        snprintf(rem_s, sizeof rem_s, "%ld", r->rl_remaining);
        cs_log_kv(CS_LOG_INFO, PUB_HTTP_FAC,
                  "rate limit budget used up: holding new requests until the reset", "api", b->key,
                  "remaining", rem_s, "wait_ms", wait_s, NULL);
        b->hold_until = until;
    }
    b->interval_ms = 0;
}

static cs_err *start_attempt(pub_http *h, pub_http_req *r)
{
    r->easy = curl_easy_init();
    if (!r->easy)
        return cs_err_new(CS_ERR_NOMEM, 0, "curl_easy_init failed");
    cs_buf_reset(&r->resp);
    r->resp_too_big = false;
    r->status = 0;
    r->curl_err[0] = '\0';
    r->date[0] = r->retry_after[0] = r->request_id[0] = '\0';
    r->rl_limit = r->rl_remaining = r->rl_reset = -1;
    r->attempts++;
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->o.ca_file) {
        /* o365.ca_file adds to the system's trust, it does not replace it: the file as CAINFO, the system's
         * hashed directory as CAPATH (OpenSSL consults both). */
        curl_easy_setopt(e, CURLOPT_CAINFO, h->o.ca_file);
        if (h->capath)
            curl_easy_setopt(e, CURLOPT_CAPATH, h->capath);
    }
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->o.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->o.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* never send the bearer token elsewhere */
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK)
        return cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
    r->state = REQ_ACTIVE;
    h->active++;
    if (r->bucket >= 0) {
        h->pace[r->bucket].active++;
        h->pace[r->bucket].last_start = mono_ms();
    }
    return NULL;
}

static bool curl_code_retriable(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* Builds the response view and calls the callback. `outcome` decides the error. */
static void complete(pub_http_req *r, pub_http_outcome outcome, CURLcode cc, long long retry_after_ms)
{
    cs_err *err = NULL;
    if (outcome != PUB_HTTP_OK) {
        unsigned flags = 0;
        if (outcome == PUB_HTTP_THROTTLED || outcome == PUB_HTTP_UNAVAILABLE)
            flags |= CS_ERR_F_RETRIABLE;
        const char *detail = r->resp_too_big                 ? "response body over the size limit"
                             : r->curl_err[0]                ? r->curl_err
                             : cc != CURLE_OK                ? curl_easy_strerror(cc)
                             : outcome == PUB_HTTP_CANCELLED ? "cancelled"
                                                             : "HTTP error";
        err = cs_err_new(
            CS_ERR_HTTP, flags, "%s %s: %s (HTTP %ld, %s after %d attempt%s, client-request-id %s%s%s)",
            r->method, r->url, detail, r->status, pub_http_outcome_name(outcome), r->attempts,
            r->attempts == 1 ? "" : "s", r->crid, r->request_id[0] ? ", request-id " : "", r->request_id);
        if (outcome != PUB_HTTP_CANCELLED && outcome != PUB_HTTP_UNAUTHORIZED)
            cs_log_kv(CS_LOG_WARN, PUB_HTTP_FAC, "request failed", "outcome", pub_http_outcome_name(outcome),
                      "method", r->method, "url", r->url, "client_request_id", r->crid, "request_id",
                      r->request_id, "error", cs_err_message(err), NULL);
    }
    pub_http_response resp = {
        .outcome = outcome,
        .status = r->status,
        .body = cs_buf_str(&r->resp),
        .body_len = cs_buf_len(&r->resp),
        .client_request_id = r->crid,
        .request_id = r->request_id,
        .retry_after_ms = retry_after_ms,
        .rate_limit_limit = r->rl_limit,
        .rate_limit_remaining = r->rl_remaining,
        .rate_limit_reset = r->rl_reset,
        .attempts = r->attempts,
        .err = err,
    };
    r->done(r->ctx, &resp);
    cs_err_free(err);
}

/* Decides what a finished attempt means: true = the request is done (then *outcome is set), false = retry
 * at r->not_before_ms. */
static bool classify(pub_http *h, pub_http_req *r, CURLcode cc, pub_http_outcome *outcome, long long *ra_ms)
{
    bool retriable = false;
    long long wait = -1;
    *ra_ms = -1;
    if (r->retry_after[0] &&
        !pub_http_parse_retry_after(r->retry_after, r->date[0] ? r->date : NULL, time(NULL), ra_ms))
        *ra_ms = -1;
    if (cc != CURLE_OK) {
        if (r->resp_too_big || !curl_code_retriable(cc)) {
            *outcome = PUB_HTTP_FAILED;
            return true;
        }
        *outcome = PUB_HTTP_UNAVAILABLE;
        retriable = true;
    } else if (r->status >= 200 && r->status < 300) {
        *outcome = PUB_HTTP_OK;
        return true;
    } else if (r->status == 429) {
        *outcome = PUB_HTTP_THROTTLED;
        retriable = true;
        if (*ra_ms >= 0) {
            if (*ra_ms > h->o.max_retry_after_ms)
                return true; /* too long to hold here: the caller parks the work */
            wait = *ra_ms;
        }
    } else if (r->status == 401) {
        *outcome = PUB_HTTP_UNAUTHORIZED;
        return true;
    } else if (r->status == 408 || r->status == 425 || r->status == 500 || r->status == 502 ||
               r->status == 503 || r->status == 504) {
        *outcome = PUB_HTTP_UNAVAILABLE;
        retriable = true;
        if (*ra_ms >= 0 && *ra_ms <= h->o.max_retry_after_ms)
            wait = *ra_ms; /* a 503 may say how long, too */
    } else if (r->status >= 400 && r->status < 500) {
        *outcome = PUB_HTTP_REJECTED;
        return true;
    } else {
        *outcome = PUB_HTTP_FAILED; /* 1xx/3xx (redirects are not followed) or 5xx we do not retry */
        return true;
    }
    if (!retriable || r->attempts >= h->o.max_attempts)
        return true;
    if (wait < 0)
        wait = pub_http_backoff_ms(r->attempts, h->o.backoff_base_ms, h->o.backoff_max_ms, random_u32());
    r->not_before_ms = mono_ms() + wait;
    char wait_s[32], status_s[16], attempt_s[16];
    snprintf(wait_s, sizeof wait_s, "%lld", wait);
    snprintf(status_s, sizeof status_s, "%ld", r->status);
    snprintf(attempt_s, sizeof attempt_s, "%d", r->attempts);
    cs_log_kv(CS_LOG_INFO, PUB_HTTP_FAC, "retrying request", "outcome", pub_http_outcome_name(*outcome),
              "status", status_s, "curl_error", cc != CURLE_OK ? curl_easy_strerror(cc) : NULL, "wait_ms",
              wait_s, "attempt", attempt_s, "method", r->method, "url", r->url, "client_request_id", r->crid,
              NULL);
    return false;
}

/* Starts queued requests whose time has come while slots are free; returns ms until the next one is due
 * (-1: none waiting). */
static long long start_due(pub_http *h, cs_err **err)
{
    long long now = mono_ms(), next = -1;
    for (pub_http_req *r = h->head; r; r = r->next) {
        if (r->state != REQ_QUEUED)
            continue;
        if (r->not_before_ms > now) {
            long long d = r->not_before_ms - now;
            if (next < 0 || d < next)
                next = d;
            continue;
        }
        if (h->active >= (size_t)h->o.max_inflight)
            continue;
        long long pw = pace_wait(h, r->bucket, now);
        if (pw > 0) {
            if (next < 0 || pw < next)
                next = pw;
            continue;
        }
        *err = start_attempt(h, r);
        if (*err)
            return -1;
    }
    return next;
}

cs_err *pub_http_run(pub_http *h, long long timeout_ms, size_t *completed)
{
    cs_err *err = NULL;
    size_t n_done = 0;
    long long deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (h->pending == 0)
            break;
        long long next_due = start_due(h, &err);
        if (err)
            goto cleanup;
        int running = 0;
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK) {
            err = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "curl_multi_perform: %s", curl_multi_strerror(mc));
            goto cleanup;
        }
        /* Take finished transfers off the multi handle first, then run callbacks: a callback may submit. */
        bool finished = false;
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            pub_http_req *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            CURLcode cc = msg->data.result;
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
            if (h->o.observe)
                h->o.observe(h->o.observe_ctx, cc == CURLE_OK ? r->status : 0);
            curl_multi_remove_handle(h->multi, r->easy);
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            h->active--;
            if (r->bucket >= 0)
                h->pace[r->bucket].active--;
            r->state = REQ_QUEUED;
            pace_update(h, r);
            pub_http_outcome outcome;
            long long ra_ms;
            if (!classify(h, r, cc, &outcome, &ra_ms))
                continue; /* queued again with a not-before time */
            list_remove(h, r);
            complete(r, outcome, cc, ra_ms);
            req_free(r);
            n_done++;
            finished = true;
        }
        if (finished)
            break;
        long long now = mono_ms();
        if (now >= deadline)
            break;
        long long wait = deadline - now;
        next_due = start_due(h, &err);
        if (err)
            goto cleanup;
        if (next_due >= 0 && next_due < wait)
            wait = next_due;
        if (h->active == 0 && next_due < 0)
            break; /* nothing on the wire and nothing waiting: cannot happen with pending > 0 */
        if (wait > 1000)
            wait = 1000; /* re-check due times at least once a second */
        mc = curl_multi_poll(h->multi, NULL, 0, (int)wait, NULL);
        if (mc != CURLM_OK) {
            err = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "curl_multi_poll: %s", curl_multi_strerror(mc));
            goto cleanup;
        }
    }
cleanup:
    if (completed)
        *completed = n_done;
    return err;
}

size_t pub_http_pending(const pub_http *h)
{
    return h->pending;
}

typedef struct perform_ctx {
    bool done;
    pub_http_response *resp;
    cs_err *err;
} perform_ctx;

static char *dup_or_empty(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s ? s : "", s ? len : 0);
        d[s ? len : 0] = '\0';
    }
    return d;
}

static void perform_done(void *ctx, const pub_http_response *resp)
{
    perform_ctx *pc = ctx;
    pc->done = true;
    pub_http_response *copy = calloc(1, sizeof *copy);
    if (!copy) {
        pc->err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        return;
    }
    *copy = *resp;
    copy->body = dup_or_empty(resp->body, resp->body_len);
    copy->client_request_id = dup_or_empty(resp->client_request_id, strlen(resp->client_request_id));
    copy->request_id = dup_or_empty(resp->request_id, strlen(resp->request_id));
    copy->err = resp->err ? cs_err_new(cs_err_code_of(resp->err), cs_err_flags(resp->err), "%s",
                                       cs_err_message(resp->err))
                          : NULL;
    if (!copy->body || !copy->client_request_id || !copy->request_id) {
        pub_http_response_free(copy);
        pc->err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        return;
    }
    pc->resp = copy;
}

cs_err *pub_http_perform(pub_http *h, const pub_http_request *req, pub_http_response **out)
{
    perform_ctx pc = {0};
    pub_http_request r = *req;
    *out = NULL;
    r.done = perform_done;
    r.ctx = &pc;
    cs_err *err = pub_http_submit(h, &r, NULL);
    if (err)
        return err;
    while (!pc.done) {
        err = pub_http_run(h, 1000, NULL);
        if (err)
            return err; /* the request stays pending; pub_http_free cancels it */
    }
    if (pc.err)
        return pc.err;
    *out = pc.resp;
    return NULL;
}

void pub_http_response_free(pub_http_response *resp)
{
    if (!resp)
        return;
    free((char *)(uintptr_t)resp->body);
    free((char *)(uintptr_t)resp->client_request_id);
    free((char *)(uintptr_t)resp->request_id);
    cs_err_free((cs_err *)(uintptr_t)resp->err);
    free(resp);
}

void pub_http_cancel_all(pub_http *h)
{
    /* Bounded: each pass removes one request; callbacks may submit, those are cancelled too up to the cap. */
    for (size_t guard = 0; h->head && guard < 2 * PUB_HTTP_MAX_PENDING; guard++) {
        pub_http_req *r = h->head;
        if (r->easy) {
            curl_multi_remove_handle(h->multi, r->easy);
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            h->active--;
            if (r->bucket >= 0)
                h->pace[r->bucket].active--;
        }
        list_remove(h, r);
        complete(r, PUB_HTTP_CANCELLED, CURLE_OK, -1);
        req_free(r);
    }
}

void pub_http_free(pub_http *h)
{
    if (!h)
        return;
    pub_http_cancel_all(h);
    curl_multi_cleanup(h->multi);
    free(h);
}
