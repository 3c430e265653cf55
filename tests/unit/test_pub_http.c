/*
 * pub_http and pub_codec: Retry-After (seconds, an HTTP date against the Date header, garbage), HTTP-date
 * parsing, backoff bounds (full jitter), base64/base64url, percent-encoding and UUID v4.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "pub_codec.h"
#include "pub_http.h"

static void parses_http_dates(void **state)
{
    (void)state;
    time_t t = 0;
    assert_true(pub_http_parse_date("Sun, 06 Nov 1994 08:49:37 GMT", &t));
    assert_int_equal(t, 784111777); /* RFC 9110's example, `date -d ... +%s` */
    assert_true(pub_http_parse_date("Thu, 29 Feb 2024 23:59:59 GMT", &t));
    assert_int_equal(t, 1709251199);
    assert_false(pub_http_parse_date("Sun, 06 Nov 1994 08:49:37 UTC", &t));
    assert_false(pub_http_parse_date("Sunday, 06-Nov-94 08:49:37 GMT", &t));
    assert_false(pub_http_parse_date("Sun, 06 Foo 1994 08:49:37 GMT", &t));
    assert_false(pub_http_parse_date("Sun, 06 Nov 1994 25:49:37 GMT", &t));
    assert_false(pub_http_parse_date("", &t));
}

static void retry_after_seconds(void **state)
{
    (void)state;
    long long ms = -7;
    assert_true(pub_http_parse_retry_after("0", NULL, 0, &ms));
    assert_int_equal(ms, 0);
    assert_true(pub_http_parse_retry_after("120", NULL, 0, &ms));
    assert_int_equal(ms, 120000);
    /* Absurd values are capped at a week, not overflowed. */
    assert_true(pub_http_parse_retry_after("99999999999999999999999", NULL, 0, &ms));
    assert_int_equal(ms, 7LL * 24 * 3600 * 1000);
}

static void retry_after_date_uses_date_header(void **state)
{
    (void)state;
    long long ms = -1;
    /* Server says: now is 08:49:37, retry at 08:50:07 -> 30 s, whatever our clock says. */
    time_t far_local_clock = 2000000000; /* local clock years off */
    assert_true(pub_http_parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", "Sun, 06 Nov 1994 08:49:37 GMT",
                                           far_local_clock, &ms));
    assert_int_equal(ms, 30000);
    /* Without a Date header the local clock is the reference. */
    assert_true(pub_http_parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", NULL, 784111777, &ms));
    assert_int_equal(ms, 30000);
    /* A garbage Date header also falls back to the local clock. */
    assert_true(pub_http_parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", "yesterday", 784111787, &ms));
    assert_int_equal(ms, 20000);
    /* A date in the past: retry now. */
    assert_true(
        pub_http_parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT", 0, &ms));
    assert_int_equal(ms, 0);
}

static void retry_after_garbage(void **state)
{
    (void)state;
    long long ms = -42;
    assert_false(pub_http_parse_retry_after("", NULL, 0, &ms));
    assert_false(pub_http_parse_retry_after("-5", NULL, 0, &ms));
    assert_false(pub_http_parse_retry_after("5s", NULL, 0, &ms));
    assert_false(pub_http_parse_retry_after("1.5", NULL, 0, &ms));
    assert_false(pub_http_parse_retry_after("soon", NULL, 0, &ms));
    assert_false(pub_http_parse_retry_after(NULL, NULL, 0, &ms));
    assert_int_equal(ms, -42); /* untouched */
}

static void backoff_bounds(void **state)
{
    (void)state;
    /* Ceiling doubles from the base and stops at the max; the draw stays within [0, ceiling]. */
    assert_int_equal(pub_http_backoff_ms(1, 500, 30000, UINT32_MAX), UINT32_MAX % 501);
    assert_int_equal(pub_http_backoff_ms(1, 500, 30000, 500), 500);
    assert_int_equal(pub_http_backoff_ms(1, 500, 30000, 501), 0);
    assert_int_equal(pub_http_backoff_ms(2, 500, 30000, 1000), 1000);
    assert_int_equal(pub_http_backoff_ms(3, 500, 30000, 2000), 2000);
    assert_int_equal(pub_http_backoff_ms(30, 500, 30000, 30000), 30000);
    assert_int_equal(pub_http_backoff_ms(1000, 500, 30000, 30001), 0);
    for (int attempt = 1; attempt < 40; attempt++) {
        long long ceiling = 500;
        for (int i = 1; i < attempt && ceiling < 30000; i++)
            ceiling *= 2;
        if (ceiling > 30000)
            ceiling = 30000;
        for (uint32_t r = 0; r < 100000; r += 977) {
            long long b = pub_http_backoff_ms(attempt, 500, 30000, r * 2654435761u);
            assert_true(b >= 0 && b <= ceiling);
        }
    }
}

static void base64_round_trips(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 1024);
    const unsigned char data[] = {0xfb, 0xff, 0xfe, 0x00, 0x41};
    assert_true(pub_b64_encode(&b, data, sizeof data));
    assert_string_equal(cs_buf_str(&b), "+//+AEE=");
    cs_buf_reset(&b);
    assert_true(pub_b64url_encode(&b, data, sizeof data));
    assert_string_equal(cs_buf_str(&b), "-__-AEE");
    unsigned char *out = NULL;
    size_t n = 0;
    assert_true(pub_b64url_decode("-__-AEE", 7, &out, &n));
    assert_int_equal(n, sizeof data);
    assert_memory_equal(out, data, n);
    free(out);
    assert_true(pub_b64_decode("+//+AEE=", 8, &out, &n));
    assert_int_equal(n, sizeof data);
    assert_memory_equal(out, data, n);
    free(out);
    assert_true(pub_b64_decode("", 0, &out, &n));
    assert_int_equal(n, 0);
    free(out);
    assert_false(pub_b64_decode("+//+AE E", 8, &out, &n)); /* whitespace inside */
    assert_false(pub_b64_decode("+//+AEE", 7, &out, &n));  /* no padding */
    assert_false(pub_b64_decode("+/=+AEE=", 8, &out, &n)); /* padding inside */
    assert_false(pub_b64url_decode("+//+AEE", 7, &out, &n));
    cs_buf_free(&b);
}

static void url_encoding(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 1024);
    assert_true(pub_url_encode(&b, "a b+c/d=e&f~g.h_i-j'\xc3\xa9"));
    assert_string_equal(cs_buf_str(&b), "a%20b%2Bc%2Fd%3De%26f~g.h_i-j%27%C3%A9");
    cs_buf_free(&b);
    cs_buf_init(&b, 4);
    assert_false(pub_url_encode(&b, "  ")); /* bounded */
    cs_buf_free(&b);
}

static void uuid_v4_format(void **state)
{
    (void)state;
    char a[PUB_UUID_LEN + 1], b[PUB_UUID_LEN + 1];
    assert_true(pub_uuid_v4(a));
    assert_true(pub_uuid_v4(b));
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[13], '-');
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    assert_string_not_equal(a, b);
}

static void rejects_bad_options(void **state)
{
    (void)state;
    pub_http *h = NULL;
    pub_http_opts o = {.max_inflight = 0, .timeout_ms = 1000};
    cs_err *err = pub_http_new(&o, &h);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "http.max_inflight"));
    cs_err_free(err);
    o.max_inflight = 4;
    assert_null(pub_http_new(&o, &h));
    size_t done = 99;
    assert_null(pub_http_run(h, 10, &done)); /* nothing pending: returns at once */
    assert_int_equal(done, 0);
    pub_http_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_http_dates),
        cmocka_unit_test(retry_after_seconds),
        cmocka_unit_test(retry_after_date_uses_date_header),
        cmocka_unit_test(retry_after_garbage),
        cmocka_unit_test(backoff_bounds),
        cmocka_unit_test(base64_round_trips),
        cmocka_unit_test(url_encoding),
        cmocka_unit_test(uuid_v4_format),
        cmocka_unit_test(rejects_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
