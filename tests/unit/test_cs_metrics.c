#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_metrics.h"

/* Every registry starts with its own dropped-series counter. */
#define DROPPED_HEAD                                                                                         \
    "# HELP certsync_metrics_series_dropped_total Metric series refused (series limit reached or bad label " \
    "values); "                                                                                              \
    "their updates were discarded.\n"                                                                        \
    "# TYPE certsync_metrics_series_dropped_total counter\n"
#define DROPPED(n) DROPPED_HEAD "certsync_metrics_series_dropped_total " #n "\n"

static const char *const no_labels[] = {NULL};
static const char *const source_dc[] = {"source", "dc", NULL};

/* Renders the registry; caller frees. */
static char *render(cs_metrics *reg)
{
    cs_buf b;
    cs_buf_init(&b, 1 << 20);
    cs_err *err = cs_metrics_render(reg, &b);
    if (err)
        fail_msg("render failed: %s", cs_err_message(err));
    char *s = cs_buf_take(&b);
    assert_non_null(s);
    return s;
}

static cs_metric *must_register(cs_metrics *reg, cs_metric_def def)
{
    cs_metric *fam = NULL;
    cs_err *err = cs_metrics_register(reg, &def, &fam);
    if (err)
        fail_msg("register failed: %s", cs_err_message(err));
    assert_non_null(fam);
    return fam;
}

static void counter_without_labels(void **state)
{
    (void)state;
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *fam = must_register(reg, (cs_metric_def){.type = CS_METRIC_COUNTER,
                                                        .name = "certsync_events_total",
                                                        .help = "Events produced.",
                                                        .labels = no_labels});
    cs_counter *c = cs_metrics_counter_get(fam);
    assert_non_null(c);
    assert_ptr_equal(c, cs_metrics_counter_get(fam));
    cs_metrics_counter_inc(c);
    cs_metrics_counter_inc(c);
    cs_metrics_counter_add(c, 0.5);
    cs_metrics_counter_add(c, -4); /* ignored: counters only go up */
    cs_metrics_counter_add(c, NAN);
    assert_true(cs_metrics_counter_value(c) == 2.5);
    char *out = render(reg);
    assert_string_equal(out, "# HELP certsync_events_total Events produced.\n"
                             "# TYPE certsync_events_total counter\n"
                             "certsync_events_total 2.5\n" DROPPED(0));
    free(out);
    cs_metrics_free(reg);
}

static void labelled_series_in_creation_order(void **state)
{
    (void)state;
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *changes = must_register(reg, (cs_metric_def){.type = CS_METRIC_COUNTER,
                                                            .name = "certsync_ldap_changes_total",
                                                            .help = "Changes read.",
                                                            .labels = source_dc});
    cs_metric *lag = must_register(reg, (cs_metric_def){.type = CS_METRIC_GAUGE,
                                                        .name = "certsync_lag_seconds",
                                                        .help = "Lag.",
                                                        .labels = source_dc});
    /* A labelled family with no series renders nothing. */
    must_register(
        reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "unused", .help = "x", .labels = source_dc});

    cs_counter *b = cs_metrics_counter_with(changes, "dirsync", "dc2");
    cs_counter *a = cs_metrics_counter_with(changes, "dirsync", "dc1");
    assert_ptr_equal(b, cs_metrics_counter_with(changes, "dirsync", "dc2"));
    assert_ptr_not_equal(a, b);
    cs_metrics_counter_add(a, 3);
    cs_metrics_counter_add(b, 7);
    cs_gauge *g = cs_metrics_gauge_with(lag, "syncrepl", "ldap1");
    cs_metrics_gauge_set(g, 10);
    cs_metrics_gauge_add(g, -12.25);
    char *out = render(reg);
    assert_string_equal(out, "# HELP certsync_ldap_changes_total Changes read.\n"
                             "# TYPE certsync_ldap_changes_total counter\n"
                             "certsync_ldap_changes_total{source=\"dirsync\",dc=\"dc2\"} 7\n"
                             "certsync_ldap_changes_total{source=\"dirsync\",dc=\"dc1\"} 3\n"
                             "# HELP certsync_lag_seconds Lag.\n"
                             "# TYPE certsync_lag_seconds gauge\n"
                             "certsync_lag_seconds{source=\"syncrepl\",dc=\"ldap1\"} -2.25\n" DROPPED(0));
    free(out);
    cs_metrics_free(reg);
}

static void histogram_buckets_are_cumulative(void **state)
{
    (void)state;
    static const double bounds[] = {0.1, 1, 2.5};
    static const char *const op[] = {"op", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *plain = must_register(reg, (cs_metric_def){.type = CS_METRIC_HISTOGRAM,
                                                          .name = "certsync_batch_seconds",
                                                          .help = "Batch time.",
                                                          .buckets = bounds,
                                                          .n_buckets = 3});
    cs_metric *lab = must_register(reg, (cs_metric_def){.type = CS_METRIC_HISTOGRAM,
                                                        .name = "certsync_call_seconds",
                                                        .help = "Call time.",
                                                        .labels = op,
                                                        .buckets = bounds,
                                                        .n_buckets = 3});
    cs_histogram *h = cs_metrics_histogram_get(plain);
    cs_metrics_histogram_observe(h, 0.0625);
    cs_metrics_histogram_observe(h, 0.5);
    cs_metrics_histogram_observe(h, 1); /* on the bound: le is "less or equal" */
    cs_metrics_histogram_observe(h, 3);
    cs_metrics_histogram_observe(h, NAN); /* ignored */
    cs_metrics_histogram_observe(cs_metrics_histogram_with(lab, "bind"), 0.25);
    char *out = render(reg);
    assert_string_equal(out, "# HELP certsync_batch_seconds Batch time.\n"
                             "# TYPE certsync_batch_seconds histogram\n"
                             "certsync_batch_seconds_bucket{le=\"0.1\"} 1\n"
                             "certsync_batch_seconds_bucket{le=\"1\"} 3\n"
                             "certsync_batch_seconds_bucket{le=\"2.5\"} 3\n"
                             "certsync_batch_seconds_bucket{le=\"+Inf\"} 4\n"
                             "certsync_batch_seconds_sum 4.5625\n"
                             "certsync_batch_seconds_count 4\n"
                             "# HELP certsync_call_seconds Call time.\n"
                             "# TYPE certsync_call_seconds histogram\n"
                             "certsync_call_seconds_bucket{op=\"bind\",le=\"0.1\"} 0\n"
                             "certsync_call_seconds_bucket{op=\"bind\",le=\"1\"} 1\n"
                             "certsync_call_seconds_bucket{op=\"bind\",le=\"2.5\"} 1\n"
                             "certsync_call_seconds_bucket{op=\"bind\",le=\"+Inf\"} 1\n"
                             "certsync_call_seconds_sum{op=\"bind\"} 0.25\n"
                             "certsync_call_seconds_count{op=\"bind\"} 1\n" DROPPED(0));
    free(out);
    cs_metrics_free(reg);
}

static void escapes_help_and_label_values(void **state)
{
    (void)state;
    static const char *const dn[] = {"dn", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *fam = must_register(reg, (cs_metric_def){.type = CS_METRIC_GAUGE,
                                                        .name = "certsync_held:objects",
                                                        .help = "Held \"objects\"\nby C:\\path.",
                                                        .labels = dn});
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "cn=a\\b \"q\"\nx"), 1);
    char *out = render(reg);
    assert_string_equal(out, "# HELP certsync_held:objects Held \"objects\"\\nby C:\\\\path.\n"
                             "# TYPE certsync_held:objects gauge\n"
                             "certsync_held:objects{dn=\"cn=a\\\\b \\\"q\\\"\\nx\"} 1\n" DROPPED(0));
    free(out);
    cs_metrics_free(reg);
}

static void formats_special_values(void **state)
{
    (void)state;
    static const char *const k[] = {"k", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *fam =
        must_register(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .labels = k});
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "nan"), NAN);
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "inf"), INFINITY);
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "ninf"), -INFINITY);
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "small"), 1e-7);
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "big"), 1e20);
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "tenth"), 0.1);
    cs_metrics_gauge_set(cs_metrics_gauge_with(fam, "int"), 1700000000);
    char *out = render(reg);
    assert_string_equal(out, "# HELP g h\n# TYPE g gauge\n"
                             "g{k=\"nan\"} NaN\n"
                             "g{k=\"inf\"} +Inf\n"
                             "g{k=\"ninf\"} -Inf\n"
                             "g{k=\"small\"} 1e-07\n"
                             "g{k=\"big\"} 1e+20\n"
                             "g{k=\"tenth\"} 0.1\n"
                             "g{k=\"int\"} 1700000000\n" DROPPED(0));
    free(out);
    cs_metrics_free(reg);
}

/* Registers `def` and expects an error whose message holds both `name` and `rule`. */
static void expect_rejected(cs_metrics *reg, cs_metric_def def, const char *name, const char *rule)
{
    static int dummy;
    cs_metric *fam = (cs_metric *)(void *)&dummy; /* must be reset to NULL */
    cs_err *err = cs_metrics_register(reg, &def, &fam);
    assert_non_null(err);
    assert_null(fam);
    const char *msg = cs_err_message(err);
    if (!strstr(msg, name) || !strstr(msg, rule))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", msg, name, rule);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    cs_err_free(err);
}

static void rejects_bad_names(void **state)
{
    (void)state;
    static const double bad_bounds[] = {1, 1};
    static const char *const dunder[] = {"__name", NULL};
    static const char *const dash[] = {"a-b", NULL};
    static const char *const digit[] = {"1a", NULL};
    static const char *const twice[] = {"dc", "dc", NULL};
    static const char *const le[] = {"le", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    must_register(reg,
                  (cs_metric_def){.type = CS_METRIC_HISTOGRAM, .name = "certsync_rtt_seconds", .help = "h"});

    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "1abc", .help = "h"}, "\"1abc\"",
                    "[a-zA-Z_:][a-zA-Z0-9_:]*");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "a-b", .help = "h"}, "\"a-b\"",
                    "[a-zA-Z_:][a-zA-Z0-9_:]*");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "", .help = "h"}, "\"\"",
                    "must match");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = NULL, .help = "h"}, "(null)",
                    "must match");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_COUNTER, .name = "certsync_events", .help = "h"},
                    "\"certsync_events\"", "must end in _total");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = ""}, "\"g\"",
                    "help text");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .labels = dunder},
                    "\"__name\"", "starts with __");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .labels = dash},
                    "\"a-b\"", "[a-zA-Z_][a-zA-Z0-9_]*");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .labels = digit},
                    "\"1a\"", "[a-zA-Z_][a-zA-Z0-9_]*");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .labels = twice},
                    "\"g\"", "\"dc\" is listed twice");
    expect_rejected(reg, (cs_metric_def){.type = CS_METRIC_HISTOGRAM, .name = "h", .help = "h", .labels = le},
                    "\"h\"", "reserved for histogram buckets");
    expect_rejected(
        reg,
        (cs_metric_def){
            .type = CS_METRIC_HISTOGRAM, .name = "h", .help = "h", .buckets = bad_bounds, .n_buckets = 2},
        "\"h\"", "strictly increasing");
    expect_rejected(reg,
                    (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "certsync_rtt_seconds", .help = "h"},
                    "\"certsync_rtt_seconds\"", "already registered");
    expect_rejected(
        reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "certsync_rtt_seconds_count", .help = "h"},
        "\"certsync_rtt_seconds_count\"", "already registered (by \"certsync_rtt_seconds\")");
    expect_rejected(reg,
                    (cs_metric_def){.type = CS_METRIC_COUNTER,
                                    .name = "certsync_metrics_series_dropped_total",
                                    .help = "h"},
                    "certsync_metrics_series_dropped_total", "already registered");
    expect_rejected(reg,
                    (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .max_series = 2000000},
                    "\"g\"", "max_series");
    cs_metrics_free(reg);
}

static void series_cap_drops_and_counts(void **state)
{
    (void)state;
    static const char *const user[] = {"user", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *fam = must_register(reg, (cs_metric_def){.type = CS_METRIC_COUNTER,
                                                        .name = "per_user_total",
                                                        .help = "h",
                                                        .labels = user,
                                                        .max_series = 2});
    cs_counter *a = cs_metrics_counter_with(fam, "a");
    cs_counter *b = cs_metrics_counter_with(fam, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_null(cs_metrics_counter_with(fam, "c"));
    assert_null(cs_metrics_counter_with(fam, "d"));
    assert_ptr_equal(a, cs_metrics_counter_with(fam, "a"));    /* existing series still found */
    cs_metrics_counter_inc(cs_metrics_counter_with(fam, "c")); /* goes nowhere, no crash */
    /* Wrong use is refused and counted too. */
    assert_null(cs_metrics_counter_withv(fam, NULL, 0));
    assert_null(cs_metrics_gauge_with(fam, "a")); /* wrong type: not counted, a bug in the caller */
    const char *const null_value[] = {NULL};
    assert_null(cs_metrics_counter_withv(fam, null_value, 1));
    cs_metrics_counter_inc(a);
    char *out = render(reg);
    assert_string_equal(out, "# HELP per_user_total h\n# TYPE per_user_total counter\n"
                             "per_user_total{user=\"a\"} 1\n"
                             "per_user_total{user=\"b\"} 0\n" DROPPED(5));
    free(out);
    cs_metrics_free(reg);
}

static void many_series_grow_the_table(void **state)
{
    (void)state;
    static const char *const id[] = {"id", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *fam =
        must_register(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h", .labels = id});
    cs_gauge *handles[3000];
    for (int i = 0; i < 3000; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        handles[i] = cs_metrics_gauge_with(fam, v);
        assert_non_null(handles[i]);
        cs_metrics_gauge_set(handles[i], i);
    }
    for (int i = 0; i < 3000; i += 7) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        assert_ptr_equal(handles[i], cs_metrics_gauge_with(fam, v));
    }
    char *out = render(reg);
    assert_non_null(strstr(out, "g{id=\"0\"} 0\ng{id=\"1\"} 1\n"));
    assert_non_null(strstr(out, "g{id=\"2999\"} 2999\n"));
    free(out);
    cs_metrics_free(reg);
}

#define THREADS 8
#define PER_THREAD 50000

typedef struct shared {
    cs_counter *c;
    cs_gauge *g;
    cs_histogram *h;
} shared;

static void *hammer(void *arg)
{
    shared *s = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        cs_metrics_counter_inc(s->c);
        cs_metrics_gauge_add(s->g, 1);
        cs_metrics_histogram_observe(s->h, 1);
    }
    return NULL;
}

static void concurrent_updates_are_exact(void **state)
{
    (void)state;
    static const double bounds[] = {0.5, 2};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    shared s = {
        .c = cs_metrics_counter_get(
            must_register(reg, (cs_metric_def){.type = CS_METRIC_COUNTER, .name = "c_total", .help = "h"})),
        .g = cs_metrics_gauge_get(
            must_register(reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "g", .help = "h"})),
        .h = cs_metrics_histogram_get(must_register(
            reg,
            (cs_metric_def){
                .type = CS_METRIC_HISTOGRAM, .name = "h", .help = "h", .buckets = bounds, .n_buckets = 2})),
    };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &s), 0);
    /* Scrapes while the updates run must not disturb them. */
    for (int i = 0; i < 5; i++)
        free(render(reg));
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    char *out = render(reg);
    assert_non_null(strstr(out, "\nc_total 400000\n"));
    assert_non_null(strstr(out, "\ng 400000\n"));
    assert_non_null(
        strstr(out, "\nh_bucket{le=\"0.5\"} 0\nh_bucket{le=\"2\"} 400000\nh_bucket{le=\"+Inf\"} 400000\n"
                    "h_sum 400000\nh_count 400000\n"));
    free(out);
    cs_metrics_free(reg);
}

static void collect_two(void *arg, cs_metrics_sink *sink)
{
    int *calls = arg;
    (*calls)++;
    cs_metrics_sink_add(sink, (const char *const[]){"certsync.events.v1", "0"}, 12);
    cs_metrics_sink_add(sink, (const char *const[]){"certsync.events.v1", "1"}, 0);
    cs_metrics_sink_add(sink, (const char *const[]){"over", "cap"}, 5); /* max_series is 2 */
}

static void collect_none(void *arg, cs_metrics_sink *sink)
{
    (void)arg;
    (void)sink;
}

static void collected_gauges_at_scrape_time(void **state)
{
    (void)state;
    static const char *const tp[] = {"topic", "partition", NULL};
    int calls = 0;
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    must_register(reg, (cs_metric_def){.type = CS_METRIC_GAUGE,
                                       .name = "certsync_consumer_lag",
                                       .help = "Records behind.",
                                       .labels = tp,
                                       .max_series = 2,
                                       .collect = collect_two,
                                       .collect_arg = &calls});
    assert_null(cs_metrics_register(
        reg, &(cs_metric_def){.type = CS_METRIC_GAUGE, .name = "empty", .help = "h", .collect = collect_none},
        NULL));
    assert_int_equal(calls, 0);
    char *out = render(reg);
    assert_int_equal(calls, 1);
    assert_string_equal(out,
                        "# HELP certsync_consumer_lag Records behind.\n"
                        "# TYPE certsync_consumer_lag gauge\n"
                        "certsync_consumer_lag{topic=\"certsync.events.v1\",partition=\"0\"} 12\n"
                        "certsync_consumer_lag{topic=\"certsync.events.v1\",partition=\"1\"} 0\n" DROPPED(1));
    free(out);
    cs_metrics_free(reg);
}

static void process_metrics(void **state)
{
    (void)state;
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    assert_null(cs_metrics_register_process(reg, "1.2.3"));
    char *out = render(reg);
    assert_non_null(
        strstr(out, "# TYPE certsync_build_info gauge\ncertsync_build_info{version=\"1.2.3\"} 1\n"));
    assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "));
    const char *rss = strstr(out, "\nprocess_resident_memory_bytes ");
    assert_non_null(rss);
    assert_true(strtod(rss + strlen("\nprocess_resident_memory_bytes "), NULL) > 1e5);
    const char *start = strstr(out, "\nprocess_start_time_seconds ");
    assert_non_null(start);
    double t = strtod(start + strlen("\nprocess_start_time_seconds "), NULL);
    double now = (double)time(NULL);
    assert_true(t > now - 3600 && t <= now + 2);
    free(out);
    cs_metrics_free(reg);
}

static void render_past_buffer_max_fails(void **state)
{
    (void)state;
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_buf b;
    cs_buf_init(&b, 64);
    cs_err *err = cs_metrics_render(reg, &b);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "64 bytes"));
    cs_err_free(err);
    cs_buf_free(&b);
    cs_metrics_free(reg);
}

static void null_handles_are_ignored(void **state)
{
    (void)state;
    cs_metrics_counter_inc(NULL);
    cs_metrics_counter_add(NULL, 1);
    cs_metrics_gauge_set(NULL, 1);
    cs_metrics_gauge_add(NULL, 1);
    cs_metrics_histogram_observe(NULL, 1);
    assert_null(cs_metrics_counter_with(NULL, "x"));
    assert_true(cs_metrics_counter_value(NULL) == 0);
    cs_metrics_free(NULL);
}

/* A removed series leaves the page (its header too when it was the last), cached handles stay usable, and
 * asking for it again shows it from zero. */
static void removed_series_leave_the_page(void **state)
{
    (void)state;
    static const char *const part_l[] = {"partition", NULL};
    cs_metrics *reg = NULL;
    assert_null(cs_metrics_new(&reg));
    cs_metric *fam = must_register(
        reg, (cs_metric_def){.type = CS_METRIC_GAUGE, .name = "lag", .help = "Lag.", .labels = part_l});
    cs_gauge *g0 = cs_metrics_gauge_with(fam, "0");
    cs_gauge *g1 = cs_metrics_gauge_with(fam, "1");
    cs_metrics_gauge_set(g0, 5);
    cs_metrics_gauge_set(g1, 7);
    assert_true(cs_metrics_series_remove(fam, "1"));
    assert_false(cs_metrics_series_remove(fam, "1")); /* already removed */
    assert_false(cs_metrics_series_remove(fam, "9")); /* never existed */
    char *page = render(reg);
    assert_string_equal(page, "# HELP lag Lag.\n# TYPE lag gauge\nlag{partition=\"0\"} 5\n" DROPPED(0));
    free(page);
    cs_metrics_gauge_set(g1, 3); /* a stale cached handle: harmless, not shown */
    assert_true(cs_metrics_series_remove(fam, "0"));
    page = render(reg);
    assert_string_equal(page, DROPPED(0));
    free(page);
    assert_ptr_equal(cs_metrics_gauge_with(fam, "1"), g1); /* shown again, from zero */
    assert_true(cs_metrics_gauge_value(g1) == 0.0);
    page = render(reg);
    assert_string_equal(page, "# HELP lag Lag.\n# TYPE lag gauge\nlag{partition=\"1\"} 0\n" DROPPED(0));
    free(page);
    assert_false(cs_metrics_series_removev(NULL, NULL, 0));
    assert_false(cs_metrics_series_remove(fam, "1", "extra")); /* wrong label count */
    cs_metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counter_without_labels),
        cmocka_unit_test(labelled_series_in_creation_order),
        cmocka_unit_test(histogram_buckets_are_cumulative),
        cmocka_unit_test(escapes_help_and_label_values),
        cmocka_unit_test(formats_special_values),
        cmocka_unit_test(rejects_bad_names),
        cmocka_unit_test(series_cap_drops_and_counts),
        cmocka_unit_test(many_series_grow_the_table),
        cmocka_unit_test(concurrent_updates_are_exact),
        cmocka_unit_test(collected_gauges_at_scrape_time),
        cmocka_unit_test(process_metrics),
        cmocka_unit_test(render_past_buffer_max_fails),
        cmocka_unit_test(null_handles_are_ignored),
        cmocka_unit_test(removed_series_leave_the_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
