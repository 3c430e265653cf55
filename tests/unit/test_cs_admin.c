#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cs_admin.h"
#include "cs_log.h"

/* ---- a small HTTP client over libcurl ---- */

typedef struct reply {
    CURLcode rc;
    long status;
    char content_type[128];
    char allow[64];
    cs_buf body;
} reply;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    reply *r = arg;
    return cs_buf_add(&r->body, data, size * n) ? size * n : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    reply *r = arg;
    size_t len = size * n;
    if (len > 6 && strncasecmp(data, "Allow:", 6) == 0) {
        size_t v = 6;
        while (v < len && data[v] == ' ')
            v++;
        size_t end = len;
        while (end > v && (data[end - 1] == '\r' || data[end - 1] == '\n'))
            end--;
        if (end - v < sizeof(r->allow)) {
            memcpy(r->allow, data + v, end - v);
            r->allow[end - v] = '\0';
        }
    }
    return len;
}

/* Runs one request on `h` (a fresh handle when NULL). Caller frees r->body with cs_buf_free. */
static void http_on(CURL *h, uint16_t port, const char *method, const char *path, reply *r)
{
    char url[128];
    bool own = !h;
    memset(r, 0, sizeof(*r));
    cs_buf_init(&r->body, 1 << 20);
    if (own)
        h = curl_easy_init();
    assert_non_null(h);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    r->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    if (ct)
        snprintf(r->content_type, sizeof(r->content_type), "%s", ct);
    if (own)
        curl_easy_cleanup(h);
}

static void http(uint16_t port, const char *method, const char *path, reply *r)
{
    http_on(NULL, port, method, path, r);
}

/* Expects a complete answer with this status, content type and body. */
static void expect(uint16_t port, const char *method, const char *path, long status, const char *content_type,
                   const char *body)
{
    reply r;
    http(port, method, path, &r);
    if (r.rc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(r.rc));
    assert_int_equal(r.status, status);
    assert_string_equal(r.content_type, content_type);
    if (body)
        assert_string_equal(cs_buf_str(&r.body), body);
    cs_buf_free(&r.body);
}

/* ---- checks ---- */

static cs_err *always_ok(void *arg)
{
    (void)arg;
    return NULL;
}

static cs_err *flag_check(void *arg)
{
    atomic_bool *healthy = arg;
    if (atomic_load(healthy))
        return NULL;
    return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "broker 127.0.0.1:9092 \"down\"\nfor 12 s");
}

static cs_admin *start_admin(cs_metrics *metrics)
{
    cs_admin *a = NULL;
    assert_null(cs_admin_new(metrics, &a));
    cs_err *err = cs_admin_start(a, "127.0.0.1:0");
    if (err)
        fail_msg("start: %s", cs_err_message(err));
    assert_true(cs_admin_port(a) > 0);
    return a;
}

/* ---- tests ---- */

static void probes_report_each_check(void **state)
{
    (void)state;
    atomic_bool kafka_ok = true;
    cs_admin *a = NULL;
    assert_null(cs_admin_new(NULL, &a));
    assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS, "loop", always_ok, NULL));
    assert_null(cs_admin_add_check(a, CS_ADMIN_READINESS, "kafka", flag_check, &kafka_ok));
    assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS | CS_ADMIN_READINESS, "config", always_ok, NULL));
    assert_null(cs_admin_start(a, "127.0.0.1:0"));
    uint16_t port = cs_admin_port(a);

    expect(port, "GET", "/healthz", 200, "application/json",
           "{\"status\":\"ok\",\"checks\":{\"loop\":\"ok\",\"config\":\"ok\"}}\n");
    expect(port, "GET", "/readyz", 200, "application/json",
           "{\"status\":\"ok\",\"checks\":{\"kafka\":\"ok\",\"config\":\"ok\"}}\n");

    atomic_store(&kafka_ok, false);
    expect(port, "GET", "/readyz", 503, "application/json",
           "{\"status\":\"fail\",\"checks\":{\"kafka\":\"broker 127.0.0.1:9092 \\\"down\\\"\\nfor 12 "
           "s\",\"config\":\"ok\"}}\n");
    /* Liveness does not depend on the readiness check. */
    expect(port, "GET", "/healthz", 200, "application/json", NULL);
    expect(port, "HEAD", "/readyz", 503, "application/json", "");

    atomic_store(&kafka_ok, true);
    expect(port, "GET", "/readyz", 200, "application/json", NULL);
    /* A check added while running counts from the next request on. */
    assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS, "late", flag_check, &(atomic_bool){false}));
    expect(port, "GET", "/healthz", 503, "application/json", NULL);
    cs_admin_stop(a);
}

static void no_checks_is_ok(void **state)
{
    (void)state;
    cs_admin *a = start_admin(NULL);
    expect(cs_admin_port(a), "GET", "/healthz", 200, "application/json",
           "{\"status\":\"ok\",\"checks\":{}}\n");
    expect(cs_admin_port(a), "GET", "/readyz", 200, "application/json",
           "{\"status\":\"ok\",\"checks\":{}}\n");
    /* Without a registry there is no /metrics. */
    expect(cs_admin_port(a), "GET", "/metrics", 404, "application/json",
           "{\"error\":\"not found\",\"path\":\"/metrics\"}\n");
    cs_admin_stop(a);
}

static void serves_metrics(void **state)
{
    (void)state;
    cs_metrics *reg = NULL;
    cs_metric *fam = NULL;
    assert_null(cs_metrics_new(&reg));
    assert_null(cs_metrics_register(
        reg, &(cs_metric_def){.type = CS_METRIC_COUNTER, .name = "certsync_events_total", .help = "Events."},
        &fam));
    cs_metrics_counter_add(cs_metrics_counter_get(fam), 42);
    cs_admin *a = start_admin(reg);

    cs_buf want;
    cs_buf_init(&want, 1 << 20);
    assert_null(cs_metrics_render(reg, &want));
    assert_non_null(strstr(cs_buf_str(&want), "certsync_events_total 42\n"));
    expect(cs_admin_port(a), "GET", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8",
           cs_buf_str(&want));
    expect(cs_admin_port(a), "HEAD", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8", "");
    /* A query string does not change the path. */
    expect(cs_admin_port(a), "GET", "/metrics?x=1", 200, "text/plain; version=0.0.4; charset=utf-8",
           cs_buf_str(&want));
    cs_buf_free(&want);
    cs_admin_stop(a);
    cs_metrics_free(reg);
}

/* Each check's verdict is on /metrics as certsync_probe_check_passing, 1 or 0, per probe it answers. */
static void metrics_carry_check_verdicts(void **state)
{
    (void)state;
    atomic_bool kafka_ok = true;
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_admin *a = NULL;
    assert_null(cs_admin_new(reg, &a));
    assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS, "loop", always_ok, NULL));
    assert_null(cs_admin_add_check(a, CS_ADMIN_READINESS, "kafka", flag_check, &kafka_ok));
    assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS | CS_ADMIN_READINESS, "a\"b", always_ok, NULL));
    assert_null(cs_admin_start(a, "127.0.0.1:0"));

    cs_buf reg_only;
    cs_buf_init(&reg_only, 1 << 20);
    assert_null(cs_metrics_render(reg, &reg_only));
/* A literal, so the printf format is checked. */
#define CHECKS_OK                                                                                            \
    "# HELP certsync_probe_check_passing 1 while the named liveness or readiness check passes, 0 while it "  \
    "fails (the reason is on /healthz or /readyz).\n"                                                        \
    "# TYPE certsync_probe_check_passing gauge\n"                                                            \
    "certsync_probe_check_passing{probe=\"liveness\",check=\"loop\"} 1\n"                                    \
    "certsync_probe_check_passing{probe=\"liveness\",check=\"a\\\"b\"} 1\n"                                  \
    "certsync_probe_check_passing{probe=\"readiness\",check=\"kafka\"} %d\n"                                 \
    "certsync_probe_check_passing{probe=\"readiness\",check=\"a\\\"b\"} 1\n"
    cs_buf want;
    cs_buf_init(&want, 1 << 20);
    assert_true(cs_buf_printf(&want, "%s", cs_buf_str(&reg_only)));
    assert_true(cs_buf_printf(&want, CHECKS_OK, 1));
    expect(cs_admin_port(a), "GET", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8",
           cs_buf_str(&want));
    atomic_store(&kafka_ok, false);
    cs_buf_reset(&want);
    assert_true(cs_buf_printf(&want, "%s", cs_buf_str(&reg_only)));
    assert_true(cs_buf_printf(&want, CHECKS_OK, 0));
    expect(cs_admin_port(a), "GET", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8",
           cs_buf_str(&want));
    cs_buf_free(&want);
    cs_buf_free(&reg_only);
    cs_admin_stop(a);
    cs_metrics_free(reg);
#undef CHECKS_OK
}

static void unknown_path_is_404(void **state)
{
    (void)state;
    cs_admin *a = start_admin(NULL);
    expect(cs_admin_port(a), "GET", "/", 404, "application/json",
           "{\"error\":\"not found\",\"path\":\"/\"}\n");
    expect(cs_admin_port(a), "GET", "/healthz/x", 404, "application/json",
           "{\"error\":\"not found\",\"path\":\"/healthz/x\"}\n");
    expect(cs_admin_port(a), "POST", "/nope", 404, "application/json",
           "{\"error\":\"not found\",\"path\":\"/nope\"}\n");
    cs_admin_stop(a);
}

static void other_methods_are_405(void **state)
{
    (void)state;
    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS"};
    const char *paths[] = {"/healthz", "/readyz"};
    cs_admin *a = start_admin(NULL);
    for (size_t i = 0; i < 4; i++) {
        for (size_t j = 0; j < 2; j++) {
            reply r;
            http(cs_admin_port(a), methods[i], paths[j], &r);
            assert_int_equal(r.rc, CURLE_OK);
            assert_int_equal(r.status, 405);
            assert_string_equal(r.allow, "GET, HEAD");
            assert_string_equal(r.content_type, "application/json");
            assert_non_null(strstr(cs_buf_str(&r.body), "\"error\":\"method not allowed\""));
            cs_buf_free(&r.body);
        }
    }
    /* GET answers carry no Allow header. */
    reply r;
    http(cs_admin_port(a), "GET", "/healthz", &r);
    assert_string_equal(r.allow, "");
    cs_buf_free(&r.body);
    cs_admin_stop(a);
}

static void port_in_use_names_address_and_key(void **state)
{
    (void)state;
    cs_admin *first = start_admin(NULL);
    char listen[64], addr[128];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)cs_admin_port(first));
    cs_admin *second = NULL;
    assert_null(cs_admin_new(NULL, &second));
    cs_err *err = cs_admin_start(second, listen);
    assert_non_null(err);
    const char *msg = cs_err_message(err);
    snprintf(addr, sizeof(addr), "cannot listen on %s", listen);
    if (!strstr(msg, addr) || !strstr(msg, "admin.listen") || !strstr(msg, "in use"))
        fail_msg("unhelpful message: %s", msg);
    assert_int_equal(cs_admin_port(second), 0);
    cs_err_free(err);
    cs_admin_stop(second); /* frees an endpoint that never started */
    /* The first one still answers. */
    expect(cs_admin_port(first), "GET", "/healthz", 200, "application/json", NULL);
    cs_admin_stop(first);
}

static void bad_listen_values_are_config_errors(void **state)
{
    (void)state;
    const char *bad[] = {"localhost", "127.0.0.1:99999", "127.0.0.1:", ":abc", "::1:80",
                         "[::1",      "[::1]80",         "",           NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cs_admin *a = NULL;
        assert_null(cs_admin_new(NULL, &a));
        cs_err *err = cs_admin_start(a, bad[i]);
        if (!err)
            fail_msg("\"%s\" was accepted", bad[i] ? bad[i] : "(null)");
        assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
        assert_non_null(strstr(cs_err_message(err), "admin.listen"));
        assert_non_null(strstr(cs_err_message(err), bad[i] ? bad[i] : "(null)"));
        cs_err_free(err);
        cs_admin_stop(a);
    }
}

static void ipv6_loopback(void **state)
{
    (void)state;
    cs_admin *a = NULL;
    assert_null(cs_admin_new(NULL, &a));
    cs_err *err = cs_admin_start(a, "[::1]:0");
    if (err) { /* a host without IPv6 on loopback: nothing to test here */
        cs_err_free(err);
        cs_admin_stop(a);
        skip();
    }
    CURL *h = curl_easy_init();
    char url[64];
    snprintf(url, sizeof(url), "http://[::1]:%u/healthz", (unsigned)cs_admin_port(a));
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    curl_easy_cleanup(h);
    cs_admin_stop(a);
}

static void add_check_rejects_bad_input(void **state)
{
    (void)state;
    cs_admin *a = NULL;
    assert_null(cs_admin_new(NULL, &a));
    assert_null(cs_admin_add_check(a, CS_ADMIN_READINESS, "kafka", always_ok, NULL));
    cs_err *err = cs_admin_add_check(a, CS_ADMIN_READINESS | CS_ADMIN_LIVENESS, "kafka", always_ok, NULL);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "\"kafka\": already registered"));
    cs_err_free(err);
    assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS, "kafka", always_ok, NULL)); /* other probe: fine */
    err = cs_admin_add_check(a, CS_ADMIN_LIVENESS, "", always_ok, NULL);
    assert_non_null(err);
    cs_err_free(err);
    err = cs_admin_add_check(a, 0x8, "x", always_ok, NULL);
    assert_non_null(strstr(cs_err_message(err), "probes"));
    cs_err_free(err);
    err = cs_admin_add_check(a, CS_ADMIN_LIVENESS, "x", NULL, NULL);
    assert_non_null(err);
    cs_err_free(err);
    for (int i = 2; i < CS_ADMIN_MAX_CHECKS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        assert_null(cs_admin_add_check(a, CS_ADMIN_LIVENESS, name, always_ok, NULL));
    }
    err = cs_admin_add_check(a, CS_ADMIN_LIVENESS, "one_too_many", always_ok, NULL);
    assert_non_null(strstr(cs_err_message(err), "at most 32"));
    cs_err_free(err);
    cs_admin_stop(a);
}

/* ---- stop while a request is being answered ---- */

typedef struct slow {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool entered;
    uint16_t port;
    reply r;
} slow;

/* Tells the test it is running, then takes a while, like a check waiting on a broker. */
static cs_err *slow_check(void *arg)
{
    slow *s = arg;
    pthread_mutex_lock(&s->m);
    s->entered = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->m);
    nanosleep(&(struct timespec){.tv_nsec = 150 * 1000 * 1000}, NULL);
    return NULL;
}

static void *client(void *arg)
{
    slow *s = arg;
    http(s->port, "GET", "/readyz", &s->r);
    return NULL;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stop_with_requests_in_flight(void **state)
{
    (void)state;
    slow s = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cs_admin *a = start_admin(NULL);
    assert_null(cs_admin_add_check(a, CS_ADMIN_READINESS, "slow", slow_check, &s));
    s.port = cs_admin_port(a);

    /* An idle keep-alive connection stays open across the stop. */
    CURL *idle = curl_easy_init();
    reply r;
    http_on(idle, s.port, "GET", "/healthz", &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    cs_buf_free(&r.body);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, &s), 0);
    pthread_mutex_lock(&s.m);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    while (!s.entered) {
        if (pthread_cond_timedwait(&s.cv, &s.m, &deadline) != 0)
            break;
    }
    bool entered = s.entered;
    pthread_mutex_unlock(&s.m);
    assert_true(entered);

    double t0 = now_seconds();
    cs_admin_stop(a); /* waits for the check, closes both connections */
    double took = now_seconds() - t0;
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(took < 2.0);
    /* The in-flight request either got its answer or a closed connection: never a hang. */
    assert_true((s.r.rc == CURLE_OK && s.r.status == 200) || s.r.rc == CURLE_GOT_NOTHING ||
                s.r.rc == CURLE_RECV_ERROR);
    cs_buf_free(&s.r.body);

    /* Nothing listens any more, on the idle handle nor a new one. */
    http_on(idle, s.port, "GET", "/healthz", &r);
    assert_int_equal(r.rc, CURLE_COULDNT_CONNECT);
    cs_buf_free(&r.body);
    curl_easy_cleanup(idle);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.m);
}

static int setup(void **state)
{
    (void)state;
    cs_log_set_level(CS_LOG_ERROR); /* start/stop lines would only clutter the test output */
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probes_report_each_check),
        cmocka_unit_test(no_checks_is_ok),
        cmocka_unit_test(serves_metrics),
        cmocka_unit_test(metrics_carry_check_verdicts),
        cmocka_unit_test(unknown_path_is_404),
        cmocka_unit_test(other_methods_are_405),
        cmocka_unit_test(port_in_use_names_address_and_key),
        cmocka_unit_test(bad_listen_values_are_config_errors),
        cmocka_unit_test(ipv6_loopback),
        cmocka_unit_test(add_check_rejects_bad_input),
        cmocka_unit_test(stop_with_requests_in_flight),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
