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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cs_admin.h"
#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_metrics.h"
#include "cs_readiness.h"
#include "cs_secret.h"
#include "pub_o365.h"
#include "pub_pipeline.h"

#define FAC "service"
#define START_TIMEOUT_MS 60000  /* init_transactions and topic checks */
#define ERROR_BACKOFF_MS 1000   /* after a retriable batch error, before the next turn */
#define TOKEN_RETRY_MS 5000     /* between token warm-up attempts while none was obtained */
#define MAX_LAG_PARTITIONS 1024 /* lag gauges kept (one series per partition) */
/* The readiness gauge is recounted when the state changes, and at least this often, because "expiring
 * soon" and "expired" move with time alone. */
#define READINESS_RECOUNT_MS (3600 * 1000LL)

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
    cs_counter *skipped_not_owner, *owner_writes; /* multi-site */
    cs_counter *commits, *aborts, *throttled, *token_refreshes, *token_failures, *commit_retries;
    cs_metric *http_requests; /* {api, status} */
    cs_metric *lag;           /* {partition} */
    cs_histogram *apply_seconds;
    cs_counter *policy_refusals[CS_POLICY_RULE_COUNT]; /* {rule} */
    pub_pipeline_stats last;                           /* what was already added to the counters */
    uint64_t last_refreshes;
    bool lag_shown[MAX_LAG_PARTITIONS]; /* partitions with a lag series on the page */
    bool lag_seen[MAX_LAG_PARTITIONS];  /* reported by this update */
    cs_metric *readiness;               /* certsync_smime_readiness_users{reason} */
    long long readiness_at_ms;          /* monotonic time of the last count; 0: never */
    uint64_t readiness_commits, readiness_assignments;
    size_t readiness_owned;
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
    PLAIN(
        owner_writes, "certsync_publisher_owner_writes_total",
        "Multi-site writes not caused by the recipient's own event: handovers to the next source and clears "
        "of a recipient no object maps to any more (re-map).")
    PLAIN(throttled, "certsync_publisher_throttled_total", "HTTP 429 answers received (APIs and token).")
    PLAIN(token_refreshes, "certsync_publisher_token_refreshes_total", "Access tokens fetched.")
    PLAIN(commit_retries, "certsync_publisher_commit_retries_total",
          "Commit attempts resumed because Kafka did not answer.")
    PLAIN(token_failures, "certsync_publisher_token_failures_total",
          "Token endpoint attempts that did not return a token (non-2xx or no response).")
#undef PLAIN
    if (!err) {
        err = reg_counter(m->reg, "certsync_publisher_skipped_total",
                          "Events skipped: stale (version gate) or duplicate (same content).", reason_l, &f);
        m->skipped_stale = cs_metrics_counter_with(f, "stale");
        m->skipped_duplicate = cs_metrics_counter_with(f, "duplicate");
        m->skipped_not_owner = cs_metrics_counter_with(f, "not_owner");
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
        err = cs_readiness_metrics_register(m->reg, &m->readiness);
        if (!err) {
            /* Every reason reads 0 from the first scrape, before any partition is owned. */
            cs_readiness_tally none;
            memset(&none, 0, sizeof none);
            cs_readiness_tally_publish(&none, m->readiness);
        }
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
    if (partition >= 0 && partition < MAX_LAG_PARTITIONS)
        m->lag_shown[partition] = m->lag_seen[partition] = true;
}

/* Lag of the owned partitions; the series of a partition this instance no longer owns goes away, so the page
 * does not keep its last value (that would read as a stuck partition). */
static void lag_update(svc_metrics *m, pub_pipeline *p)
{
    memset(m->lag_seen, 0, sizeof m->lag_seen);
    pub_pipeline_lag(p, on_lag, m);
    for (int32_t i = 0; i < MAX_LAG_PARTITIONS; i++) {
        /* An owned partition without cached offsets right now keeps its series. */
        if (!m->lag_shown[i] || m->lag_seen[i] || pub_pipeline_owns(p, i))
            continue;
        char part[16];
        snprintf(part, sizeof part, "%d", (int)i);
        cs_metrics_series_remove(m->lag, part);
        m->lag_shown[i] = false;
    }
}

/* Recounts the readiness gauge when the held state changed (a commit, an assignment, a revoke) or the timer
 * ran out (pub_readiness.h: time alone moves ok -> expiring_soon -> expired). */
static void readiness_update(svc_metrics *m, pub_pipeline *p, const pub_pipeline_stats *s)
{
    size_t owned = pub_pipeline_owned_partitions(p);
    long long now = mono_ms();
    if (m->readiness_at_ms && s->commits == m->readiness_commits &&
        s->assignments == m->readiness_assignments && owned == m->readiness_owned &&
        now - m->readiness_at_ms < READINESS_RECOUNT_MS)
        return;
    cs_readiness_tally t;
    pub_pipeline_readiness(p, (int64_t)time(NULL), &t);
    cs_readiness_tally_publish(&t, m->readiness);
    m->readiness_at_ms = now;
    m->readiness_commits = s->commits;
    m->readiness_assignments = s->assignments;
    m->readiness_owned = owned;
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
    add_delta(m->skipped_not_owner, s.skipped_not_owner, &m->last.skipped_not_owner);
    add_delta(m->owner_writes, s.owner_writes, &m->last.owner_writes);
    add_delta(m->dead_lettered, s.dead_lettered, &m->last.dead_lettered);
    add_delta(m->parked, s.parked, &m->last.parked);
    add_delta(m->commits, s.commits, &m->last.commits);
    add_delta(m->aborts, s.aborts, &m->last.aborts);
    add_delta(m->commit_retries, s.commit_retries, &m->last.commit_retries);
    add_delta(m->token_refreshes, pub_o365_token_refreshes(o), &m->last_refreshes);
    for (unsigned r = 0; r < CS_POLICY_RULE_COUNT; r++)
        add_delta(m->policy_refusals[r], s.policy_refusals[r], &m->last.policy_refusals[r]);
    lag_update(m, p);
    readiness_update(m, p, &s);
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
    atomic_llong beat_ms;      /* monotonic time of the last loop turn */
    atomic_int owned;          /* events partitions owned with state restored */
    atomic_int restoring;      /* an applied-state restore is running (assign callback) */
    atomic_int commit_pending; /* a Kafka commit is being resumed */
    atomic_int have_token;     /* a token was obtained */
    atomic_int partial;        /* sources.priority set, not every events partition owned: paused */
    cs_gauge *ready;           /* certsync_publisher_ready: 1 when every readiness check passes */
    cs_gauge *pending;         /* certsync_publisher_commit_pending */
    cs_gauge *partial_gauge;   /* certsync_publisher_partial_assignment */
} svc_probe;

/* Why the instance is not ready, or NULL when it is; the same order /readyz reports. */
static const char *not_ready_reason(svc_probe *pr)
{
    if (atomic_load(&pr->restoring))
        return "restoring the applied state of newly assigned partitions";
    if (atomic_load(&pr->owned) <= 0)
        return "no events partition assigned and restored yet";
    if (atomic_load(&pr->commit_pending))
        return "a Kafka commit is pending: Kafka does not answer";
    if (!atomic_load(&pr->have_token))
        return "no access token obtained yet";
    if (atomic_load(&pr->partial))
        return "sources.priority needs one publisher instance owning every events partition";
    return NULL;
}

/* Updates the readiness gauges; called on every change the probe sees. */
static void probe_publish(svc_probe *pr)
{
    cs_metrics_gauge_set(pr->ready, not_ready_reason(pr) ? 0 : 1);
    cs_metrics_gauge_set(pr->pending, atomic_load(&pr->commit_pending) ? 1 : 0);
}

static void probe_on_owned(void *ctx, size_t owned, bool restoring)
{
    svc_probe *pr = ctx;
    atomic_store(&pr->owned, (int)owned);
    atomic_store(&pr->restoring, restoring ? 1 : 0);
    probe_publish(pr);
}

static void probe_on_commit_pending(void *ctx, bool pending)
{
    svc_probe *pr = ctx;
    atomic_store(&pr->commit_pending, pending ? 1 : 0);
    probe_publish(pr);
}

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
    if (atomic_load(&pr->restoring))
        return cs_err_new(CS_ERR_STATE, 0, "restoring the applied state of newly assigned partitions");
    if (atomic_load(&pr->owned) <= 0)
        return cs_err_new(CS_ERR_STATE, 0, "no events partition assigned and restored yet");
    return NULL;
}

static cs_err *check_commit(void *arg)
{
    svc_probe *pr = arg;
    if (atomic_load(&pr->commit_pending))
        return cs_err_new(CS_ERR_STATE, 0, "a Kafka commit is pending: Kafka does not answer");
    return NULL;
}

static cs_err *check_token(void *arg)
{
    svc_probe *pr = arg;
    if (!atomic_load(&pr->have_token))
        return cs_err_new(CS_ERR_STATE, 0, "no access token obtained yet");
    return NULL;
}

static cs_err *probe_metrics(svc_probe *pr, cs_metrics *reg)
{
    cs_metric *f = NULL;
    cs_err *err = cs_metrics_register(
        reg,
        &(cs_metric_def){.type = CS_METRIC_GAUGE,
                         .name = "certsync_publisher_ready",
                         .help =
                             "1 when /readyz passes: partitions assigned and restored, no restore running, "
                             "no commit pending, a token obtained."},
        &f);
    if (err)
        return err;
    pr->ready = cs_metrics_gauge_get(f);
    err = cs_metrics_register(
        reg,
        &(cs_metric_def){.type = CS_METRIC_GAUGE,
                         .name = "certsync_publisher_commit_pending",
                         .help = "1 while a Kafka commit is pending (Kafka unavailable)."},
        &f);
    if (err)
        return err;
    pr->pending = cs_metrics_gauge_get(f);
    err = cs_metrics_register(
        reg,
        &(cs_metric_def){.type = CS_METRIC_GAUGE,
                         .name = "certsync_publisher_partial_assignment",
                         .help = "1 while sources.priority is set and this instance owns only some events "
                                 "partitions: consumption is paused (set publisher replicas to 1)."},
        &f);
    if (err)
        return err;
    pr->partial_gauge = cs_metrics_gauge_get(f);
    return NULL;
}

static cs_err *check_sources(void *arg)
{
    svc_probe *pr = arg;
    if (atomic_load(&pr->partial))
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "sources.priority needs one publisher instance owning every events partition; set "
                          "publisher replicas to 1");
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

static cs_err *timed_apply_until(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes,
                                 const pub_apply_limits *lim, size_t *n_started)
{
    timed_applier *t = ctx;
    long long t0 = mono_ms();
    cs_err *err = t->inner.apply_until(t->inner.ctx, writes, n, outcomes, lim, n_started);
    cs_metrics_histogram_observe(t->seconds, (double)(mono_ms() - t0) / 1000.0);
    return err;
}

static cs_err *timed_resolve(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes)
{
    timed_applier *t = ctx;
    return t->inner.resolve(t->inner.ctx, writes, n, outcomes);
}

static void timed_quiesce(void *ctx)
{
    timed_applier *t = ctx;
    if (t->inner.quiesce)
        t->inner.quiesce(t->inner.ctx);
}

typedef enum fault_mode {
    FAULT_KILL_BEFORE_COMMIT,
    FAULT_PAUSE_BEFORE_COMMIT,
    FAULT_KILL_MID_COMMIT,
    FAULT_KILL_IN_RESTORE,
    FAULT_KILL_IN_REVOKE,
    FAULT_RANDOM,
} fault_mode;

typedef struct fault_hook {
    fault_mode mode;
    long skip;
    const char *dir;   /* pause_before_commit: where the marker and go files live */
    long delay_us;     /* kill_mid_commit: SIGKILL this long after the commit starts */
    uint64_t rng;      /* random: splitmix64 state, from the seed */
    fault_mode target; /* random: the point drawn (FAULT_RANDOM: none, the test's own kill ends us) */
} fault_hook;

/* splitmix64: a tiny deterministic generator, so one seed replays the same choices. */
static uint64_t fault_next(fault_hook *f)
{
    uint64_t z = (f->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A uniform draw in [0, 1). */
static double fault_draw(fault_hook *f)
{
    return (double)(fault_next(f) >> 11) / 9007199254740992.0;
}

/* Logs the point (flushed: the test reads which point fired) and SIGKILLs this process. */
static void fault_kill(const char *point)
{
    cs_log_kv(CS_LOG_WARN, FAC, "fault injection: SIGKILL", "point", point, NULL);
    fflush(stdout);
    kill(getpid(), SIGKILL);
}

static void fault_alarm(int sig)
{
    (void)sig;
    kill(getpid(), SIGKILL); /* async-signal-safe */
}

/* Arms a SIGKILL `us` microseconds from now (at least 1) and returns: the commit then runs and is cut at a
 * random moment, e.g. with the EndTxn request on the wire. */
static void fault_kill_later(const char *point, long us)
{
    char d[32];
    snprintf(d, sizeof d, "%ld", us);
    cs_log_kv(CS_LOG_WARN, FAC, "fault injection: SIGKILL during the commit", "point", point, "delay_us", d,
              NULL);
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fault_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = us / 1000000;
    it.it_value.tv_usec = us < 1 ? 1 : us % 1000000;
    setitimer(ITIMER_REAL, &it, NULL);
}

/* Whether this visit of a fault point fires: the first `skip` visits pass. */
static bool fault_due(fault_hook *f)
{
    if (f->skip > 0) {
        f->skip--;
        return false;
    }
    return true;
}

/* pause_before_commit (tests only): every batch, once all of its transaction is produced, creates
 * <dir>/before_commit and waits (bounded) until the test creates <dir>/go, so a test can make Kafka
 * unavailable exactly before the commit. */
static int pause_before_commit(void *ctx)
{
    fault_hook *f = ctx;
    char marker[512], go[512];
    snprintf(marker, sizeof marker, "%s/before_commit", f->dir);
    snprintf(go, sizeof go, "%s/go", f->dir);
    FILE *m = fopen(marker, "w");
    if (m)
        fclose(m);
    cs_log_kv(CS_LOG_WARN, FAC, "fault injection: waiting for the test before the commit", "point",
              "pause_before_commit", "marker", marker, NULL);
    for (int i = 0; i < 1200 && access(go, F_OK) != 0 && !stop_requested; i++)
        nap(50);
    return 0; /* go on with the commit */
}

/* The before-commit point (offsets sent, everything produced): kill now, or arm a kill during the commit. */
static int fault_before_commit(void *ctx)
{
    fault_hook *f = ctx;
    switch (f->mode) {
    case FAULT_KILL_BEFORE_COMMIT:
        if (fault_due(f))
            fault_kill("kill_before_commit");
        break;
    case FAULT_KILL_MID_COMMIT:
        if (fault_due(f))
            fault_kill_later("kill_mid_commit", f->delay_us);
        break;
    case FAULT_RANDOM:
        if (f->target == FAULT_KILL_BEFORE_COMMIT && fault_due(f))
            fault_kill("kill_before_commit");
        else if (f->target == FAULT_KILL_MID_COMMIT && fault_due(f))
            fault_kill_later("kill_mid_commit", f->delay_us);
        break;
    default:
        break;
    }
    return 0;
}

/* The pipeline's named points "restore" and "revoke". */
static void fault_point(void *ctx, const char *point)
{
    fault_hook *f = ctx;
    bool restore = strcmp(point, "restore") == 0;
    fault_mode m = f->mode == FAULT_RANDOM ? f->target : f->mode;
    if ((restore && m == FAULT_KILL_IN_RESTORE) || (!restore && m == FAULT_KILL_IN_REVOKE)) {
        if (fault_due(f))
            fault_kill(restore ? "kill_in_restore" : "kill_in_revoke");
    }
}

/* Reads CERTSYNC_PUB_FAULT* into *f and hooks it into *po; false (logged) for a value that names no point. */
static bool fault_arm(fault_hook *f, pub_pipeline_opts *po)
{
    const char *name = getenv("CERTSYNC_PUB_FAULT");
    if (!name || !name[0])
        return true;
    const char *skip = getenv("CERTSYNC_PUB_FAULT_SKIP");
    const char *delay = getenv("CERTSYNC_PUB_FAULT_DELAY_US");
    f->skip = skip ? strtol(skip, NULL, 10) : 0;
    f->delay_us = delay ? strtol(delay, NULL, 10) : 2000;
    f->dir = getenv("CERTSYNC_PUB_FAULT_DIR");
    unsigned long long seed = 0;
    double prob = 0;
    int used = 0;
    if (strcmp(name, "kill_before_commit") == 0) {
        f->mode = FAULT_KILL_BEFORE_COMMIT;
    } else if (strcmp(name, "pause_before_commit") == 0 && f->dir && f->dir[0]) {
        f->mode = FAULT_PAUSE_BEFORE_COMMIT;
    } else if (strcmp(name, "kill_mid_commit") == 0) {
        f->mode = FAULT_KILL_MID_COMMIT;
    } else if (strcmp(name, "kill_in_restore") == 0) {
        f->mode = FAULT_KILL_IN_RESTORE;
    } else if (strcmp(name, "kill_in_revoke") == 0) {
        f->mode = FAULT_KILL_IN_REVOKE;
    } else if (sscanf(name, "random:%llu:%lf%n", &seed, &prob, &used) == 2 && name[used] == '\0' &&
               prob >= 0 && prob <= 1) {
        /* One draw per process: whether it kills itself, at which point, after how many visits. */
        static const fault_mode points[] = {FAULT_KILL_BEFORE_COMMIT, FAULT_KILL_MID_COMMIT,
                                            FAULT_KILL_IN_RESTORE, FAULT_KILL_IN_REVOKE};
        f->mode = FAULT_RANDOM;
        f->rng = seed;
        f->target = FAULT_RANDOM;
        if (fault_draw(f) < prob) {
            f->target = points[fault_next(f) % 4];
            f->skip = (long)(fault_next(f) % 3);
            f->delay_us = (long)(fault_next(f) % 20000);
        }
    } else {
        cs_log_kv(CS_LOG_ERROR, FAC,
                  "unknown CERTSYNC_PUB_FAULT: the fault points are kill_before_commit, kill_mid_commit, "
                  "kill_in_restore, kill_in_revoke, random:<seed>:<probability 0..1> and pause_before_commit "
                  "(with CERTSYNC_PUB_FAULT_DIR) (unset it)",
                  "value", name, NULL);
        return false;
    }
    po->fault_before_commit =
        f->mode == FAULT_PAUSE_BEFORE_COMMIT ? pause_before_commit : fault_before_commit;
    po->fault_point = fault_point;
    po->fault_ctx = f;
    cs_log_kv(CS_LOG_WARN, FAC, "fault injection armed (tests only)", "point", name, NULL);
    return true;
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
    cs_secret_install_sighup(); /* SIGHUP: compare the secret files now (cs_secret.h) */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, old_pipe);
}

/* Tags of the watched secret files (cs_secret.h). */
#define SECRET_O365 0x1u  /* client secret, or certificate + key: the next token request */
#define SECRET_KAFKA 0x2u /* kafka.*_file: librdkafka cannot take it live: clean exit for a restart */

/* Watches the credential files the config names. */
static cs_err *watch_secrets(const pub_config *cfg, cs_secret_watch *w)
{
    cs_err *err = NULL;
    if (cfg->o365_auth == PUB_AUTH_SECRET && cfg->o365_client_secret)
        err = cs_secret_watch_add(w, "o365.client_secret_file",
                                  cs_config_get_string(cfg->raw, "o365.client_secret_file"), SECRET_O365);
    if (!err && cfg->o365_auth != PUB_AUTH_SECRET && cfg->o365_private_key && cfg->o365_certificate_file) {
        err = cs_secret_watch_add(w, "o365.private_key_file",
                                  cs_config_get_string(cfg->raw, "o365.private_key_file"), SECRET_O365);
        /* Not secret, but it rotates with the key: watched so the pair is swapped together. */
        if (!err)
            err = cs_secret_watch_add(w, "o365.certificate_file", cfg->o365_certificate_file, SECRET_O365);
    }
    if (!err)
        err = cs_secret_watch_add_kafka(w, cfg->raw, SECRET_KAFKA);
    return err;
}

/* Hands a rotated Office 365 credential to the token provider; false when it was refused (the old one stays). */
static bool renew_o365_credential(const pub_config *cfg, cs_secret_watch *w, pub_o365 *o365)
{
    cs_err *err = pub_token_provider_set_credentials(
        pub_o365_tokens(o365), cs_secret_watch_value(w, "o365.client_secret_file"),
        cfg->o365_certificate_file, cs_secret_watch_value(w, "o365.private_key_file"));
    if (err) {
        cs_log_kv(CS_LOG_WARN, FAC, "the rotated Office 365 credential is unusable: keeping the previous one",
                  "error", cs_err_message(err), NULL);
        cs_err_free(err);
        return false;
    }
    cs_log_kv(CS_LOG_INFO, FAC,
              "Office 365 credential replaced: cached tokens dropped, the next token request uses it", "auth",
              cfg->o365_auth == PUB_AUTH_SECRET ? "secret" : "certificate", NULL);
    return true;
}

/* Logs `err` (and frees it) and returns the exit code it means. */
static int exit_for(cs_err *err, const char *what, int code)
{
    if (cs_kafka_producer_is_commit_pending(err)) {
        cs_log_kv(CS_LOG_WARN, FAC,
                  "stopped while a Kafka commit was pending: nothing new committed; the next start resumes "
                  "from the committed offsets; exiting with code 4",
                  "error", cs_err_message(err), NULL);
        code = PUB_SERVICE_EXIT_COMMIT_PENDING;
    } else if (cs_kafka_producer_is_fenced(err)) {
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
    cs_secret_watch *secrets = NULL;
    rd_kafka_conf_t *conf = NULL;
    timed_applier timed;
    fault_hook fault = {0};
    struct sigaction old_term, old_int, old_pipe;
    memset(&m, 0, sizeof m);
    memset(&timed, 0, sizeof timed);
    atomic_init(&probe.beat_ms, mono_ms());
    atomic_init(&probe.owned, 0);
    atomic_init(&probe.have_token, 0);
    atomic_init(&probe.partial, 0);
    probe.partial_gauge = NULL;
    atomic_init(&probe.restoring, 0);
    atomic_init(&probe.commit_pending, 0);
    probe.ready = NULL;
    probe.pending = NULL;
    stop_requested = 0;
    install_signals(&old_term, &old_int, &old_pipe);

    err = metrics_new(&m, opts->version);
    if (!err)
        err = probe_metrics(&probe, m.reg);
    if (!err)
        err = cs_admin_new(m.reg, &admin);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_LIVENESS, "loop", check_loop, &probe);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_READINESS, "kafka", check_kafka, &probe);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_READINESS, "commit", check_commit, &probe);
    if (!err)
        err = cs_admin_add_check(admin, CS_ADMIN_READINESS, "sources", check_sources, &probe);
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

    err = cs_secret_watch_new(&secrets);
    if (!err)
        err = watch_secrets(cfg, secrets);
    if (err) {
        rc = exit_for(err, "reading the secret files failed", PUB_SERVICE_EXIT_STARTUP);
        goto cleanup;
    }

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
    pub_applier applier = {.apply = timed_apply,
                           .quiesce = timed_quiesce,
                           .resolve = timed.inner.resolve ? timed_resolve : NULL,
                           .apply_until = timed.inner.apply_until ? timed_apply_until : NULL,
                           .ctx = &timed};
    pub_pipeline_opts po = {
        .topic_events = cfg->topic_events,
        .topic_state = cfg->topic_state,
        .topic_results = cfg->topic_results,
        .topic_dlq = cfg->topic_dlq,
        .topic_retry = cfg->topic_retry,
        .instance_id = cfg->instance_id,
        .batch_max_events = cfg->batch_max_events,
        .batch_max_wait_ms = cfg->batch_max_wait_ms,
        .batch_max_apply_time_ms = cfg->batch_max_apply_time_ms,
        .batch_cancel_grace_ms = cfg->batch_cancel_grace_ms,
        /* Only for an applier without apply_until (pub_o365 has it and keeps its requests flowing across
         * what were chunk boundaries): a few rounds of the concurrency per call. */
        .apply_chunk = 4 * cfg->http_max_inflight,
        .policy = cfg->policy,
        .stop_flag = &stop_requested,
        .on_commit_pending = probe_on_commit_pending,
        .on_owned = probe_on_owned,
        .owner_rules = cfg->owner_rules,
        .readiness_expiring_soon_days = cfg->readiness_expiring_soon_days,
        .pending_ctx = &probe,
    };
    if (!fault_arm(&fault, &po))
        goto cleanup;
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
        unsigned rotated = cs_secret_watch_poll(secrets, false);
        if ((rotated & SECRET_O365) && renew_o365_credential(cfg, secrets, o365))
            next_token_try = 0;
        if (rotated & SECRET_KAFKA) {
            cs_log_kv(
                CS_LOG_WARN, FAC,
                "restart required: a Kafka credential file changed and librdkafka cannot change a "
                "credential on a live client; stopping cleanly (the open transaction is aborted, nothing "
                "is lost) and exiting with code 5 for Kubernetes to restart the publisher with it",
                NULL);
            rc = PUB_SERVICE_EXIT_RESTART;
            break;
        }
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
        atomic_store(&probe.partial, pub_pipeline_partial_assignment(pipe) ? 1 : 0);
        cs_metrics_gauge_set(probe.partial_gauge, atomic_load(&probe.partial) ? 1 : 0);
        probe_publish(&probe);
        metrics_update(&m, pipe, o365);
        /* A credential refused after a rotation at Entra: re-read the files now; a changed one is retried
           at once instead of stopping. */
        if (err && cs_err_is_fatal(err) && !cs_kafka_producer_is_fenced(err) &&
            (cs_secret_watch_poll(secrets, true) & SECRET_O365) &&
            renew_o365_credential(cfg, secrets, o365)) {
            cs_log_kv(CS_LOG_WARN, FAC, "a request failed with the old credential: retrying with the new one",
                      "error", cs_err_message(err), NULL);
            cs_err_free(err);
            err = NULL;
            continue;
        }
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
    cs_secret_watch_free(secrets);
    cs_admin_stop(admin);
    cs_metrics_free(m.reg);
    if (rc == PUB_SERVICE_EXIT_OK)
        cs_log_kv(CS_LOG_INFO, FAC, "stopped", NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc;
}
