/*
 * pub_service: config -> admin -> pub_o365 -> pub_pipeline -> loop (see pub_service.h).
 */
#include "pub_service.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cs_admin.h"
#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_metrics.h"
#include "pub_o365.h"
#include "pub_pipeline.h"

#define FAC "service"
#define START_TIMEOUT_MS 60000  /* init_transactions and topic checks */
#define ERROR_BACKOFF_MS 1000   /* after a retriable batch error, before the next turn */
#define TOKEN_RETRY_MS 5000     /* between token warm-up attempts while none was obtained */
#define MAX_LAG_PARTITIONS 1024 /* lag gauges kept (one series per partition) */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps up to `ms`, returning early when a stop signal arrives (nanosleep is interrupted by it). */
static void nap(long long ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    if (!stop_requested)
        nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ metrics */

typedef struct svc_metrics {
    cs_metrics *reg;
    cs_counter *events, *applied, *cleared, *skipped_stale, *skipped_duplicate, *dead_lettered, *parked;
    cs_counter *commits, *aborts, *throttled, *token_refreshes, *token_failures;
    cs_metric *http_requests; /* {api, status} */
    cs_metric *lag;           /* {partition} */
    cs_histogram *apply_seconds;
    cs_counter *policy_refusals[CS_POLICY_RULE_COUNT]; /* {rule} */
    pub_pipeline_stats last;                           /* what was already added to the counters */
    uint64_t last_refreshes;
} svc_metrics;

static cs_err *reg_counter(cs_metrics *reg, const char *name, const char *help, const char *const *labels,
                           cs_metric **fam)
{
    return cs_metrics_register(
        reg, &(cs_metric_def){.type = CS_METRIC_COUNTER, .name = name, .help = help, .labels = labels}, fam);
}

static cs_err *metrics_new(svc_metrics *m, const char *version)
{
    static const char *const reason_l[] = {"reason", NULL};
    static const char *const result_l[] = {"result", NULL};
    static const char *const http_l[] = {"api", "status", NULL};
    static const char *const part_l[] = {"partition", NULL};
    static const double buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    cs_metric *f = NULL;
    cs_err *err = cs_metrics_new(&m->reg);
    if (!err)
        err = cs_metrics_register_process(m->reg, version ? version : "unknown");
#define PLAIN(field, name, help)                                                                             \
    if (!err) {                                                                                              \
        err = reg_counter(m->reg, name, help, NULL, &f);                                                     \
        m->field = cs_metrics_counter_get(f);                                                                \
    }
    PLAIN(events, "certsync_publisher_events_total", "Event records handled in committed batches.")
    PLAIN(applied, "certsync_publisher_applied_total", "Certificate writes applied to Office 365.")
    PLAIN(cleared, "certsync_publisher_cleared_total", "Removals applied (both lists emptied).")
    PLAIN(dead_lettered, "certsync_publisher_dead_lettered_total", "Records sent to the dead-letter topic.")
    PLAIN(parked, "certsync_publisher_parked_total", "Records parked in the retry topic.")
    PLAIN(throttled, "certsync_publisher_throttled_total", "HTTP 429 answers received (APIs and token).")
    PLAIN(token_refreshes, "certsync_publisher_token_refreshes_total", "Access tokens fetched.")
    PLAIN(token_failures, "certsync_publisher_token_failures_total",
          "Token endpoint attempts that did not return a token (non-2xx or no response).")
#undef PLAIN
    if (!err) {
        err = reg_counter(m->reg, "certsync_publisher_skipped_total",
                          "Events skipped: stale (version gate) or duplicate (same content).", reason_l, &f);
        m->skipped_stale = cs_metrics_counter_with(f, "stale");
        m->skipped_duplicate = cs_metrics_counter_with(f, "duplicate");
    }
    if (!err) {
        err = reg_counter(m->reg, "certsync_publisher_transactions_total",
                          "Kafka transactions: committed, or aborted (batch re-processed).", result_l, &f);
        m->commits = cs_metrics_counter_with(f, "commit");
        m->aborts = cs_metrics_counter_with(f, "abort");
    }
    if (!err)
        err = reg_counter(m->reg, "certsync_publisher_http_requests_total",
                          "HTTP attempts to Office 365 by API (o365 = Exchange and Graph, token) and status "
                          "(0: no response).",
                          http_l, &m->http_requests);
    if (!err)
        err = cs_metrics_register(m->reg,
                                  &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                                   .name = "certsync_publisher_consumer_lag",
                                                   .help = "Records of an owned events partition not yet "
                                                           "consumed.",
                                                   .labels = part_l,
                                                   .max_series = MAX_LAG_PARTITIONS},
                                  &m->lag);
    if (!err) {
        err = cs_metrics_register(m->reg,
                                  &(cs_metric_def){.type = CS_METRIC_HISTOGRAM,
                                                   .name = "certsync_publisher_apply_seconds",
                                                   .help = "Time to apply one batch's writes to Office 365.",
                                                   .buckets = buckets,
                                                   .n_buckets = sizeof(buckets) / sizeof(buckets[0])},
                                  &f);
        m->apply_seconds = cs_metrics_histogram_get(f);
    }
    if (!err) {
        static const char *const rule_l[] = {"rule", NULL};
        err =
            reg_counter(m->reg, "certsync_publisher_policy_refusals_total",
                        "Certificate values the policy refused to write, by failed rule (a value failing two "
                        "rules counts under both).",
                        rule_l, &f);
        /* Every rule's series exists from the start, so a rate() over it works before the first refusal. */
        for (unsigned r = 0; !err && r < CS_POLICY_RULE_COUNT; r++)
            m->policy_refusals[r] = cs_metrics_counter_with(f, cs_policy_rule_name((cs_policy_rule)r));
    }
    return err;
}

static void add_delta(cs_counter *c, uint64_t now, uint64_t *last)
{
    if (now > *last)
        cs_metrics_counter_add(c, (double)(now - *last));
    *last = now;
}

static void on_lag(void *ctx, int32_t partition, int64_t lag)
{
    svc_metrics *m = ctx;
    char p[16];
    snprintf(p, sizeof p, "%d", (int)partition);
    cs_metrics_gauge_set(cs_metrics_gauge_with(m->lag, p), (double)lag);
}

static void metrics_update(svc_metrics *m, pub_pipeline *p, pub_o365 *o)
{
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    add_delta(m->events, s.events, &m->last.events);
    add_delta(m->applied, s.applied, &m->last.applied);
    add_delta(m->cleared, s.cleared, &m->last.cleared);
    add_delta(m->skipped_stale, s.skipped_stale, &m->last.skipped_stale);
    add_delta(m->skipped_duplicate, s.skipped_duplicate, &m->last.skipped_duplicate);
    add_delta(m->dead_lettered, s.dead_lettered, &m->last.dead_lettered);
    add_delta(m->parked, s.parked, &m->last.parked);
    add_delta(m->commits, s.commits, &m->last.commits);
    add_delta(m->aborts, s.aborts, &m->last.aborts);
    add_delta(m->token_refreshes, pub_o365_token_refreshes(o), &m->last_refreshes);
    for (unsigned r = 0; r < CS_POLICY_RULE_COUNT; r++)
        add_delta(m->policy_refusals[r], s.policy_refusals[r], &m->last.policy_refusals[r]);
    pub_pipeline_lag(p, on_lag, m);
}

static void observe(svc_metrics *m, const char *api, long status)
{
    char st[16];
    snprintf(st, sizeof st, "%ld", status);
    cs_metrics_counter_inc(cs_metrics_counter_with(m->http_requests, api, st));
    if (status == 429)
        cs_metrics_counter_inc(m->throttled);
}

static void observe_api(void *ctx, long status)
{
    observe(ctx, "o365", status);
}

static void observe_token(void *ctx, long status)
{
    svc_metrics *m = ctx;
    observe(m, "token", status);
    if (status < 200 || status >= 300)
        cs_metrics_counter_inc(m->token_failures);
}

/* ------------------------------------------------------------------ probes */

typedef struct svc_probe {
    atomic_llong beat_ms;  /* monotonic time of the last loop turn */
    atomic_int owned;      /* events partitions owned with state restored */
    atomic_int have_token; /* a token was obtained */
} svc_probe;

static cs_err *check_loop(void *arg)
{
    svc_probe *pr = arg;
    long long age = mono_ms() - atomic_load(&pr->beat_ms);
    if (age > PUB_SERVICE_STALL_MS)
        return cs_err_new(CS_ERR_TIMEOUT, 0, "batch loop has not turned for %lld ms", age);
    return NULL;
}

static cs_err *check_kafka(void *arg)
{
    svc_probe *pr = arg;
    if (atomic_load(&pr->owned) <= 0)
        return cs_err_new(CS_ERR_STATE, 0, "no events partition assigned and restored yet");
    return NULL;
}

static cs_err *check_token(void *arg)
{
    svc_probe *pr = arg;
    if (!atomic_load(&pr->have_token))
        return cs_err_new(CS_ERR_STATE, 0, "no access token obtained yet");
    return NULL;
}

/* ------------------------------------------------------------------ applier timing, fault hook */

typedef struct timed_applier {
    pub_applier inner;
    cs_histogram *seconds;
} timed_applier;

static cs_err *timed_apply(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes)
{
    timed_applier *t = ctx;
    long long t0 = mono_ms();
    cs_err *err = t->inner.apply(t->inner.ctx, writes, n, outcomes);
    cs_metrics_histogram_observe(t->seconds, (double)(mono_ms() - t0) / 1000.0);
    return err;
}

static void timed_quiesce(void *ctx)
{
    timed_applier *t = ctx;
    if (t->inner.quiesce)
        t->inner.quiesce(t->inner.ctx);
}

typedef struct fault_hook {
    long skip;
} fault_hook;

static int kill_before_commit(void *ctx)
{
    fault_hook *f = ctx;
    if (f->skip > 0) {
        f->skip--;
        return 0;
    }
    cs_log_kv(CS_LOG_WARN, FAC, "fault injection: SIGKILL before the commit", "point", "kill_before_commit",
              NULL);
    fflush(stdout);
    kill(getpid(), SIGKILL);
    return 1; /* not reached */
}

/* ------------------------------------------------------------------ run */

static void install_signals(struct sigaction *old_term, struct sigaction *old_int, struct sigaction *old_pipe)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, old_term);
    sigaction(SIGINT, &sa, old_int);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, old_pipe);
}

/* Logs `err` (and frees it) and returns the exit code it means. */
static int exit_for(cs_err *err, const char *what, int code)
{
    if (cs_kafka_producer_is_fenced(err)) {
        cs_log_kv(CS_LOG_WARN, FAC, "fenced: a newer instance with the same publisher.instance_id took over",
                  "error", cs_err_message(err), NULL);
        code = PUB_SERVICE_EXIT_FENCED;
    } else {
        cs_log_kv(CS_LOG_ERROR, FAC, what, "error", cs_err_message(err), NULL);
    }
    cs_err_free(err);
    return code;
}

int pub_service_run(const pub_config *cfg, const pub_service_opts *opts)
{
    int rc = PUB_SERVICE_EXIT_STARTUP;
    cs_err *err = NULL;
    svc_metrics m;
    svc_probe probe;
    cs_admin *admin = NULL;
    pub_o365 *o365 = NULL;
    pub_pipeline *pipe = NULL;
    rd_kafka_conf_t *conf = NULL;
    timed_applier timed;
    fault_hook fault = {0};
    struct sigaction old_term, old_int, old_pipe;
    memset(&m, 0, sizeof m);
    memset(&timed, 0, sizeof timed);
    atomic_init(&probe.beat_ms, mono_ms());
    atomic_init(&probe.owned, 0);
    atomic_init(&probe.have_token, 0);
    stop_requested = 0;
    install_signals(&old_term, &old_int, &old_pipe);

    err = metrics_new(&m, opts->version);
    if (!err)
        err = cs_admin_new(m.reg, &admin);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_LIVENESS, "loop", check_loop, &probe);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_READINESS, "kafka", check_kafka, &probe);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_READINESS, "token", check_token, &probe);
    if (!err)
        err = cs_admin_start(admin, cfg->admin_listen);
    if (err) {
        rc = exit_for(err, "starting the admin endpoint failed", PUB_SERVICE_EXIT_STARTUP);
        goto cleanup;
    }
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)cs_admin_port(admin));
    cs_log_kv(CS_LOG_INFO, FAC, "admin endpoint listening", "listen", cfg->admin_listen, "port", port, NULL);

    pub_o365_opts oo = {.exchange_resource = cfg->o365_exchange_resource,
                        .graph_resource = cfg->o365_graph_resource,
                        .observe_api = observe_api,
                        .observe_token = observe_token,
                        .observe_ctx = &m};
    err = pub_o365_new(cfg, &oo, &o365);
    if (err) {
        rc = exit_for(err, "setting up the Office 365 client failed", PUB_SERVICE_EXIT_STARTUP);
        goto cleanup;
    }
    /* Bad credentials show now, with the fix named; an outage only delays readiness. */
    long long next_token_try = 0;
    err = pub_o365_warm_up(o365);
    if (err && cs_err_is_fatal(err)) {
        rc = exit_for(err, "obtaining an access token failed", PUB_SERVICE_EXIT_STARTUP);
        goto cleanup;
    }
    if (err) {
        cs_log_kv(CS_LOG_WARN, FAC, "no access token yet, retrying", "error", cs_err_message(err), NULL);
        cs_err_free(err);
        err = NULL;
        next_token_try = mono_ms() + TOKEN_RETRY_MS;
    } else {
        atomic_store(&probe.have_token, 1);
    }

    timed.inner = pub_o365_applier(o365);
    timed.seconds = m.apply_seconds;
    pub_applier applier = {.apply = timed_apply, .quiesce = timed_quiesce, .ctx = &timed};
    pub_pipeline_opts po = {
        .topic_events = cfg->topic_events,
        .topic_state = cfg->topic_state,
        .topic_results = cfg->topic_results,
        .topic_dlq = cfg->topic_dlq,
        .topic_retry = cfg->topic_retry,
        .instance_id = cfg->instance_id,
        .batch_max_events = cfg->batch_max_events,
        .batch_max_wait_ms = cfg->batch_max_wait_ms,
        .policy = cfg->policy,
    };
    const char *fault_name = getenv("CERTSYNC_PUB_FAULT");
    if (fault_name && fault_name[0]) {
        if (strcmp(fault_name, "kill_before_commit") != 0) {
            cs_log_kv(CS_LOG_ERROR, FAC,
                      "unknown CERTSYNC_PUB_FAULT: the only fault point is kill_before_commit (unset it)",
                      "value", fault_name, NULL);
            goto cleanup;
        }
        const char *skip = getenv("CERTSYNC_PUB_FAULT_SKIP");
        fault.skip = skip ? strtol(skip, NULL, 10) : 0;
        po.fault_before_commit = kill_before_commit;
        po.fault_ctx = &fault;
        cs_log_kv(CS_LOG_WARN, FAC, "fault injection armed (tests only)", "point", fault_name, NULL);
    }
    err = pub_config_kafka_conf(cfg, &conf);
    if (!err) {
        err = pub_pipeline_new(conf, &po, &applier, &pipe);
        conf = NULL;
    }
    if (!err)
        err = pub_pipeline_start(pipe, START_TIMEOUT_MS);
    if (err) {
        rc = exit_for(err, "starting the Kafka pipeline failed", PUB_SERVICE_EXIT_STARTUP);
        goto cleanup;
    }
    cs_log_kv(CS_LOG_INFO, FAC, "publisher running", "instance_id", cfg->instance_id, "events",
              cfg->topic_events, "mode", opts->once ? "once" : "service", NULL);

    rc = PUB_SERVICE_EXIT_OK;
    while (!stop_requested) {
        if (!atomic_load(&probe.have_token) && mono_ms() >= next_token_try) {
            err = pub_o365_warm_up(o365);
            if (!err) {
                atomic_store(&probe.have_token, 1);
            } else {
                cs_log_kv(CS_LOG_WARN, FAC, "no access token yet, retrying", "error", cs_err_message(err),
                          NULL);
                cs_err_free(err);
                err = NULL;
                next_token_try = mono_ms() + TOKEN_RETRY_MS;
            }
        }
        size_t n = 0;
        err = pub_pipeline_run_once(pipe, &n);
        atomic_store(&probe.beat_ms, mono_ms());
        atomic_store(&probe.owned, (int)pub_pipeline_owned_partitions(pipe));
        metrics_update(&m, pipe, o365);
        if (err) {
            if (cs_err_is_fatal(err) || cs_kafka_producer_is_fenced(err)) {
                rc = exit_for(err, "stopping on a fatal error", PUB_SERVICE_EXIT_RUNTIME);
                err = NULL;
                break;
            }
            cs_log_kv(CS_LOG_WARN, FAC, "batch not committed, trying again", "error", cs_err_message(err),
                      NULL);
            cs_err_free(err);
            err = NULL;
            nap(ERROR_BACKOFF_MS);
            continue;
        }
        /* A token fetched for a write counts too (the warm-up may have hit an outage). */
        if (pub_o365_token_refreshes(o365) > 0)
            atomic_store(&probe.have_token, 1);
        if (opts->once && pub_pipeline_caught_up(pipe)) {
            cs_log_kv(CS_LOG_INFO, FAC, "caught up with the end of the events topic (--once)", NULL);
            break;
        }
    }
    if (stop_requested)
        cs_log_kv(CS_LOG_INFO, FAC, "stop signal received, shutting down", NULL);

cleanup:
    /* Order matters: the pipeline's revoke hook quiesces the applier, so pub_o365 outlives it. */
    pub_pipeline_destroy(pipe);
    if (conf)
        rd_kafka_conf_destroy(conf);
    pub_o365_free(o365);
    cs_admin_stop(admin);
    cs_metrics_free(m.reg);
    if (rc == PUB_SERVICE_EXIT_OK)
        cs_log_kv(CS_LOG_INFO, FAC, "stopped", NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc;
}
