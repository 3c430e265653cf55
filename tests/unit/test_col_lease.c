/*
 * test_col_lease: the Lease record and client-go's election rules (col_lease.h), and the option checks
 * of col_election_new_lease; no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_election.h"
#include "col_lease.h"

#define LEASE_JSON(spec)                                                                                     \
    "{\"kind\":\"Lease\",\"apiVersion\":\"coordination.k8s.io/v1\",\"metadata\":{\"name\":\"l\","            \
    "\"namespace\":\"ns\",\"resourceVersion\":\"42\",\"uid\":\"u\"},\"spec\":" spec "}"

static void parse_ok(const char *json, col_lease_record *r)
{
    cs_err *err = col_lease_parse(json, strlen(json), r);
    if (err)
        fail_msg("parse failed: %s", cs_err_message(err));
}

static void test_parse_full(void **state)
{
    (void)state;
    col_lease_record r;
    parse_ok(
        LEASE_JSON(
            "{\"holderIdentity\":\"pod-a\",\"leaseDurationSeconds\":15,"
            "\"acquireTime\":\"2024-01-02T03:04:05.000006Z\",\"renewTime\":\"2024-01-02T03:04:07.123456Z\","
            "\"leaseTransitions\":3,\"strategy\":\"OldestEmulationVersion\"}"),
        &r);
    assert_string_equal(r.holder, "pod-a");
    assert_int_equal(r.duration_s, 15);
    assert_int_equal(r.transitions, 3);
    assert_string_equal(r.resource_version, "42");
    assert_string_equal(r.renew_time, "2024-01-02T03:04:07.123456Z");
}

static void test_parse_empty_spec_is_free(void **state)
{
    (void)state;
    col_lease_record r;
    parse_ok(LEASE_JSON("{}"), &r);
    assert_string_equal(r.holder, "");
    parse_ok("{\"kind\":\"Lease\",\"metadata\":{\"resourceVersion\":\"7\"}}", &r);
    assert_string_equal(r.resource_version, "7");
}

static void expect_parse_error(const char *json, const char *needle)
{
    col_lease_record r;
    cs_err *err = col_lease_parse(json, strlen(json), &r);
    assert_non_null(err);
    if (strstr(cs_err_message(err), needle) == NULL)
        fail_msg("error \"%s\" does not name \"%s\"", cs_err_message(err), needle);
    assert_string_equal(r.holder, ""); /* nothing half-filled */
    cs_err_free(err);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    expect_parse_error("not json", "not a JSON object");
    expect_parse_error("[1]", "not a JSON object");
    expect_parse_error("{\"kind\":\"Status\",\"code\":404}", "not Lease");
    expect_parse_error("{\"kind\":\"Lease\",\"metadata\":{}}", "resourceVersion");
    expect_parse_error(LEASE_JSON("{\"holderIdentity\":5}"), "spec.holderIdentity");
    expect_parse_error(LEASE_JSON("{\"leaseDurationSeconds\":\"15\"}"), "spec.leaseDurationSeconds");
    expect_parse_error(LEASE_JSON("{\"leaseDurationSeconds\":-1}"), "spec.leaseDurationSeconds");
    expect_parse_error(LEASE_JSON("{\"leaseTransitions\":1.5}"), "spec.leaseTransitions");
    expect_parse_error(LEASE_JSON("[]"), "spec is not an object");
    /* A holder longer than the bound is refused, never truncated (it would compare equal to another). */
    char big[COL_LEASE_MAX_ID + 200];
    char json[sizeof big + 400];
    memset(big, 'x', COL_LEASE_MAX_ID + 10);
    big[COL_LEASE_MAX_ID + 10] = '\0';
    snprintf(json, sizeof json, LEASE_JSON("{\"holderIdentity\":\"%s\"}"), big);
    expect_parse_error(json, "spec.holderIdentity");
    /* Duplicate keys could hide a second holder: refused. */
    expect_parse_error(LEASE_JSON("{\"holderIdentity\":\"a\",\"holderIdentity\":\"b\"}"),
                       "not a JSON object");
}

static void test_render_roundtrip(void **state)
{
    (void)state;
    col_lease_record in = {.holder = "pod-\"b\"",
                           .duration_s = 15,
                           .transitions = 2,
                           .acquire_time = "2024-01-02T03:04:05.000006Z",
                           .renew_time = "2024-01-02T03:04:06.000007Z",
                           .resource_version = "99"};
    char *json = NULL;
    col_lease_record out;
    assert_null(col_lease_render("ns", "lease-1", &in, &json));
    assert_non_null(strstr(json, "\"apiVersion\":\"coordination.k8s.io/v1\""));
    assert_non_null(strstr(json, "\"name\":\"lease-1\""));
    assert_non_null(strstr(json, "\"namespace\":\"ns\""));
    parse_ok(json, &out);
    assert_memory_equal(&in, &out, sizeof in);
    free(json);

    /* A create carries no resourceVersion; a release writes holderIdentity "" explicitly. */
    col_lease_record rel;
    col_lease_release_record(&in, "2024-01-02T03:04:09.000000Z", &rel);
    assert_null(col_lease_render("ns", "lease-1", &rel, &json));
    assert_non_null(strstr(json, "\"holderIdentity\":\"\""));
    assert_non_null(strstr(json, "\"leaseDurationSeconds\":1"));
    assert_non_null(strstr(json, "\"resourceVersion\":\"99\""));
    assert_non_null(strstr(json, "\"leaseTransitions\":2"));
    free(json);
    in.resource_version[0] = '\0';
    assert_null(col_lease_render("ns", "lease-1", &in, &json));
    assert_null(strstr(json, "resourceVersion"));
    free(json);
}

static col_lease_record rec(const char *holder, long long dur, const char *renew)
{
    col_lease_record r;
    memset(&r, 0, sizeof r);
    snprintf(r.holder, sizeof r.holder, "%s", holder);
    r.duration_s = dur;
    snprintf(r.renew_time, sizeof r.renew_time, "%s", renew);
    snprintf(r.resource_version, sizeof r.resource_version, "1");
    return r;
}

static void test_decide_missing_or_empty(void **state)
{
    (void)state;
    col_lease_observer obs = {0};
    assert_int_equal(col_lease_decide(&obs, NULL, "me", 0), COL_LEASE_TAKE);
    col_lease_record r = rec("", 15, "t1");
    assert_int_equal(col_lease_decide(&obs, &r, "me", 0), COL_LEASE_TAKE);
    r = rec("me", 15, "t1");
    assert_int_equal(col_lease_decide(&obs, &r, "me", 0), COL_LEASE_RENEW);
}

/* The expiry clock is the local time the record last CHANGED, not its renewTime (skew-safe). */
static void test_decide_expiry_by_local_observation(void **state)
{
    (void)state;
    col_lease_observer obs = {0};
    /* A renewTime far in the past (a skewed clock) does not matter: first seen now. */
    col_lease_record r = rec("other", 15, "1999-01-01T00:00:00.000000Z");
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1000000), COL_LEASE_WAIT);
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1000000 + 14999), COL_LEASE_WAIT);
    /* The holder renews (the record changes): the clock restarts. */
    r = rec("other", 15, "1999-01-01T00:00:02.000000Z");
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1000000 + 14999), COL_LEASE_WAIT);
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1000000 + 14999 + 14999), COL_LEASE_WAIT);
    /* No change for leaseDurationSeconds: expired. */
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1000000 + 14999 + 15000), COL_LEASE_TAKE);
    /* A new resourceVersion with the same spec is not a renewal, but its rv is what we write at. */
    snprintf(r.resource_version, sizeof r.resource_version, "2");
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1000000 + 14999 + 15001), COL_LEASE_TAKE);
    assert_string_equal(obs.rec.resource_version, "2");
}

/* The record's own leaseDurationSeconds counts (a release writes 1), as in client-go. */
static void test_decide_uses_record_duration(void **state)
{
    (void)state;
    col_lease_observer obs = {0};
    col_lease_record r = rec("other", 1, "t");
    assert_int_equal(col_lease_decide(&obs, &r, "me", 500), COL_LEASE_WAIT);
    assert_int_equal(col_lease_decide(&obs, &r, "me", 1500), COL_LEASE_TAKE);
}

static void test_next_take_and_renew(void **state)
{
    (void)state;
    col_lease_record cur = rec("other", 15, "t0");
    snprintf(cur.acquire_time, sizeof cur.acquire_time, "a0");
    cur.transitions = 4;
    col_lease_record n;
    col_lease_next(&cur, COL_LEASE_TAKE, "me", 3, "t1", &n);
    assert_string_equal(n.holder, "me");
    assert_int_equal(n.duration_s, 3);
    assert_int_equal(n.transitions, 5);
    assert_string_equal(n.acquire_time, "t1");
    assert_string_equal(n.renew_time, "t1");
    assert_string_equal(n.resource_version, "1");

    col_lease_record mine = n;
    col_lease_next(&mine, COL_LEASE_RENEW, "me", 3, "t2", &n);
    assert_int_equal(n.transitions, 5);
    assert_string_equal(n.acquire_time, "t1");
    assert_string_equal(n.renew_time, "t2");

    col_lease_next(NULL, COL_LEASE_TAKE, "me", 15, "t3", &n);
    assert_int_equal(n.transitions, 0);
    assert_string_equal(n.resource_version, "");
    assert_string_equal(n.acquire_time, "t3");
}

static void test_microtime(void **state)
{
    (void)state;
    char out[COL_LEASE_TIME_LEN];
    struct timespec ts = {.tv_sec = 1700000000, .tv_nsec = 123456789};
    col_lease_microtime(&ts, out);
    assert_string_equal(out, "2023-11-14T22:13:20.123456Z");
    ts.tv_nsec = 999;
    col_lease_microtime(&ts, out);
    assert_string_equal(out, "2023-11-14T22:13:20.000000Z");
}

static void test_status_text(void **state)
{
    (void)state;
    char out[256];
    const char *st =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"leases.coordination.k8s.io \\\"x\\\" is forbidden\",\"reason\":\"Forbidden\","
        "\"code\":403}";
    col_lease_status_text(st, strlen(st), out, sizeof out);
    assert_string_equal(out, "Forbidden: leases.coordination.k8s.io \"x\" is forbidden");
    col_lease_status_text("<html>", 6, out, sizeof out);
    assert_non_null(strstr(out, "not a Kubernetes Status"));
    col_lease_status_text(NULL, 0, out, sizeof out);
    assert_non_null(strstr(out, "not a Kubernetes Status"));
}

static void expect_opts_error(const col_election_lease_opts *o, const char *needle)
{
    col_election *e = NULL;
    cs_err *err = col_election_new_lease(o, &e);
    assert_non_null(err);
    assert_null(e);
    if (strstr(cs_err_message(err), needle) == NULL)
        fail_msg("error \"%s\" does not name \"%s\"", cs_err_message(err), needle);
    cs_err_free(err);
}

static void test_lease_opts_checked(void **state)
{
    (void)state;
    col_election_lease_opts o = {.api_url = "https://127.0.0.1:1",
                                 .token_file = "/nonexistent/token",
                                 .ns = "ns",
                                 .lease_name = "certsync-collector-x",
                                 .identity = "pod-a",
                                 .lease_duration_ms = 15000,
                                 .renew_deadline_ms = 10000,
                                 .retry_period_ms = 2000};
    col_election_lease_opts b = o;
    b.renew_deadline_ms = 15000;
    expect_opts_error(&b, "lease_duration");
    b = o;
    b.lease_duration_ms = 15500;
    expect_opts_error(&b, "whole seconds");
    b = o;
    b.lease_name = "Bad_Name";
    expect_opts_error(&b, "lease_name");
    b = o;
    b.ns = "a/b";
    expect_opts_error(&b, "namespace");
    b = o;
    b.identity = "";
    expect_opts_error(&b, "identity");
    b = o;
    b.api_url = "http://127.0.0.1:1";
    expect_opts_error(&b, "https://");
    expect_opts_error(&o, "/nonexistent/token");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_empty_spec_is_free),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_render_roundtrip),
        cmocka_unit_test(test_decide_missing_or_empty),
        cmocka_unit_test(test_decide_expiry_by_local_observation),
        cmocka_unit_test(test_decide_uses_record_duration),
        cmocka_unit_test(test_next_take_and_renew),
        cmocka_unit_test(test_microtime),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_lease_opts_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
