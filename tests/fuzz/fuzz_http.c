/*
 * libFuzzer target for what the publisher reads from Office 365 over HTTP. The first input byte chooses the
 * parser, the rest is the response body or header value:
 *   0  token endpoint success body (pub_token_parse_success): the token must lie inside its document and
 *      the lifetime within 1 .. PUB_TOKEN_MAX_LIFETIME_S;
 *   1  token endpoint error body, with the HTTP status from the second byte (pub_token_error_from_response);
 *   2  Exchange InvokeCommand response (pub_exchange_parse_recipients, pub_exchange_classify);
 *   3  Graph user lookup (pub_graph_parse_lookup);
 *   4  Retry-After and Date header values, split at the first newline (pub_http_parse_retry_after,
 *      pub_http_parse_date): the wait must lie within 0 .. PUB_HTTP_MAX_WAIT_SECONDS;
 *   5  a Rate-Limit-* header value (pub_http_parse_count);
 *   6  base64 and base64url certificate values (pub_b64_decode, pub_b64url_decode).
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into fuzz_http_replay
 * (fuzz_corpus_main.c), a unit test replaying tests/fuzz/corpus/http.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pub_codec.h"
#include "pub_exchange.h"
#include "pub_graph.h"
#include "pub_http.h"
#include "pub_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1735689600
#define MAX_WAIT_MS (7LL * 24 * 3600 * 1000) /* pub_http.c caps every wait at a week */

static size_t touch(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/* A NUL-terminated heap copy of [p, p+n). */
static char *dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void token_success(const char *b, size_t n)
{
    const char *at = NULL;
    size_t len = 0;
    long long life = 0;
    json_t *root = pub_token_parse_success(b, n, &at, &len, &life);
    if (root == NULL)
        return;
    if (len == 0 || strlen(at) != len || life < 1 || life > PUB_TOKEN_MAX_LIFETIME_S)
        __builtin_trap();
    json_decref(root);
}

static void token_error(const char *b, size_t n)
{
    long status = n > 0 ? 400 + (unsigned char)b[0] % 200 : 0;
    cs_err *err = pub_token_error_from_response(status, n > 0 ? b + 1 : b, n > 0 ? n - 1 : 0, "crid");
    if (err == NULL || touch(cs_err_message(err)) == 0)
        __builtin_trap();
    cs_err_free(err);
}

static void exchange(const char *b, size_t n)
{
    pub_exo_recipient *recs = NULL;
    size_t nr = 0;
    char *next = NULL, detail[512];
    cs_err *err = pub_exchange_parse_recipients(b, n, &recs, &nr, &next);
    if (err == NULL) {
        for (size_t i = 0; i < nr; i++) {
            (void)(touch(recs[i].identity) + touch(recs[i].external_directory_object_id) +
                   touch(recs[i].primary_smtp_address) + touch(recs[i].recipient_type_details) +
                   touch(recs[i].user_principal_name));
            for (size_t k = 0; k < recs[i].n_user_certificate; k++)
                if (recs[i].user_certificate[k].len > 0 && recs[i].user_certificate[k].data == NULL)
                    __builtin_trap();
            for (size_t k = 0; k < recs[i].n_user_smime_certificate; k++)
                if (recs[i].user_smime_certificate[k].len > 0 &&
                    recs[i].user_smime_certificate[k].data == NULL)
                    __builtin_trap();
        }
        (void)touch(next);
    } else if (touch(cs_err_message(err)) == 0) {
        __builtin_trap();
    }
    cs_err_free(err);
    pub_exo_recipients_free(recs, nr);
    free(next);
    static const long statuses[] = {200, 400, 403, 404, 429, 500};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        detail[0] = 'x';
        pub_exo_kind k = pub_exchange_classify(statuses[i], b, n, detail, sizeof detail);
        if (memchr(detail, '\0', sizeof detail) == NULL || touch(pub_exo_kind_name(k)) == 0)
            __builtin_trap();
    }
}

static void graph(const char *b, size_t n)
{
    pub_graph_user u;
    const char *why = NULL;
    bool retriable = false;
    pub_graph_status st = pub_graph_parse_lookup(b, n, &u, &why, &retriable);
    if (st == PUB_GRAPH_FOUND &&
        (u.id[0] == '\0' || memchr(u.id, '\0', sizeof u.id) == NULL ||
         memchr(u.mail, '\0', sizeof u.mail) == NULL ||
         memchr(u.user_principal_name, '\0', sizeof u.user_principal_name) == NULL ||
         memchr(u.on_premises_immutable_id, '\0', sizeof u.on_premises_immutable_id) == NULL))
        __builtin_trap();
    if (st == PUB_GRAPH_ERROR && touch(why) == 0)
        __builtin_trap();
}

static void retry_after(const char *b, size_t n)
{
    const char *nl = memchr(b, '\n', n);
    size_t vn = nl != NULL ? (size_t)(nl - b) : n;
    char *value = dup_n(b, vn);
    char *date = nl != NULL ? dup_n(nl + 1, n - vn - 1) : NULL;
    long long ms = -1;
    time_t t;
    if (pub_http_parse_retry_after(value, date, NOW, &ms) && (ms < 0 || ms > MAX_WAIT_MS))
        __builtin_trap();
    (void)pub_http_parse_date(value, &t);
    free(value);
    free(date);
}

static void b64(const char *b, size_t n)
{
    unsigned char *out = NULL;
    size_t len = 0;
    if (pub_b64_decode(b, n, &out, &len) && len > n)
        __builtin_trap();
    free(out);
    out = NULL;
    if (pub_b64url_decode(b, n, &out, &len) && len > n)
        __builtin_trap();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *b = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 7) {
    case 0:
        token_success(b, n);
        break;
    case 1:
        token_error(b, n);
        break;
    case 2:
        exchange(b, n);
        break;
    case 3:
        graph(b, n);
        break;
    case 4:
        retry_after(b, n);
        break;
    case 5: {
        long c = pub_http_parse_count(b, n);
        if (c < -1)
            __builtin_trap();
        break;
    }
    default:
        b64(b, n);
        break;
    }
    return 0;
}
