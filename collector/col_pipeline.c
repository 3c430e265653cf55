#include "col_pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "col_checkpoint.h"
#include "col_config.h"
#include "col_index.h"
#include "cs_event.h"
#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_state_reader.h"
#include "cs_version.h"

#define FACILITY "pipeline"

#define DEFAULT_INIT_TIMEOUT_MS 60000
#define DEFAULT_LOAD_TIMEOUT_MS 120000
/* Bounds of the transaction loop: retriable calls, and abort-and-redo rounds of one batch. */
#define MAX_CALL_RETRIES 20
#define MAX_TXN_ROUNDS 5
#define RETRY_BACKOFF_MS 100
#define MAX_RETRY_BACKOFF_MS 2000
/* Bound of the topic metadata lookup at open (cs_kafka_producer_warm); missing it only costs latency. */
#define WARM_TIMEOUT_MS 5000

enum { TOPIC_EVENTS = 0, TOPIC_HELD, TOPIC_CHECKPOINT };

/* One event of the open batch, kept until committed. */
typedef struct batch_ev {
    char *key;
    uint8_t *val;
    size_t len;
    uint8_t *ver; /* packed version, for the supersede check */
    size_t ver_len;
    bool removal_ish;
    bool release; /* a held event being released */
} batch_ev;

/* One record of the planned transaction; pointers into the batch or the checkpoint buffer. */
typedef struct plan_rec {
    int topic;
    const char *key;
    const uint8_t *val; /* NULL: a null record (removes the key from topics.held) */
    size_t len;
    size_t ev; /* batch index, or SIZE_MAX */
} plan_rec;

typedef struct held_ev {
    char *key;
    uint8_t *val;
    size_t len;
    uint8_t *ver;
    size_t ver_len;
} held_ev;

struct col_pipeline {
    col_pipeline_opts o;
    char *source_id;
    char *topic_events, *topic_checkpoint, *topic_held;
    char *txn_id;
    cs_kafka_producer *prod;
    col_index *idx;
    Certsync__V1__CollectorCheckpoint *committed; /* last committed (or loaded) checkpoint */
    Certsync__V1__CollectorCheckpoint *position;  /* pending position, NULL when none was set */
    bool position_dirty;
    long long pending_since_ms; /* -1: nothing pending */

    batch_ev *batch;
    size_t n_batch, cap_batch;
    plan_rec *plan;
    size_t n_plan, cap_plan;
    bool plan_built;
    int batch_max;   /* events that close a batch now (col_pipeline_set_batch_max_events) */
    uint8_t *cp_buf; /* encoded checkpoint of the planned transaction */
    size_t cp_len;
    Certsync__V1__CollectorCheckpoint *cp_planned;

    held_ev *held;
    size_t n_held, cap_held;

    uint64_t window_removals; /* committed removal-ish events in the guard window */
    bool guard_tripped;
    bool dead; /* fatal or fenced: refuse everything */
    col_pipeline_stats st;

    /* metrics (NULL without a registry) */
    cs_counter *m_produced, *m_held, *m_released, *m_dups, *m_stale, *m_committed, *m_aborted, *m_trips;
    cs_counter *m_commit_retries;
    cs_gauge *m_held_now, *m_fenced, *m_commit_pending;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void hook(col_pipeline *p, const char *point)
{
    if (p->o.hook)
        p->o.hook(p->o.hook_arg, point);
}

static cs_err *nomem(void)
{
    return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "pipeline: out of memory");
}

/* Grows an array to hold one more element, bounded by `max`. */
static cs_err *reserve(void **arr, size_t *cap, size_t n, size_t elem, size_t max, const char *what)
{
    if (n < *cap)
        return NULL;
    if (n >= max)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "pipeline: more than %zu %s", max, what);
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc > max)
        nc = max;
    void *na = realloc(*arr, nc * elem);
    if (!na)
        return nomem();
    *arr = na;
    *cap = nc;
    return NULL;
}

/* ---- metrics ---------------------------------------------------------------------------------------- */

static cs_err *setup_metrics(col_pipeline *p)
{
    cs_metrics *reg = p->o.metrics;
    static const char *const labels[] = {"source", NULL};
    const char *const vals[] = {p->source_id};
    struct {
        const char *name, *help;
        cs_counter **out;
    } counters[] = {
        {"certsync_collector_events_produced_total", "Events committed to the events topic.", &p->m_produced},
        {"certsync_collector_events_held_total", "Events held back by the mass-removal guard.", &p->m_held},
        {"certsync_collector_events_released_total", "Held events released by command.", &p->m_released},
        {"certsync_collector_duplicates_skipped_total", "Events dropped: already in Kafka.", &p->m_dups},
        {"certsync_collector_stale_skipped_total", "Events dropped: older than what is in Kafka.",
         &p->m_stale},
        {"certsync_collector_transactions_committed_total", "Kafka transactions committed.", &p->m_committed},
        {"certsync_collector_transactions_aborted_total", "Kafka transactions aborted.", &p->m_aborted},
        {"certsync_collector_mass_removal_guard_trips_total", "Times the mass-removal guard started holding.",
         &p->m_trips},
        {"certsync_collector_commit_retries_total", "Commit attempts resumed because Kafka did not answer.",
         &p->m_commit_retries},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        cs_metric *fam = NULL;
        cs_err *err = cs_metrics_register(reg,
                                          &(cs_metric_def){.type = CS_METRIC_COUNTER,
                                                           .name = counters[i].name,
                                                           .help = counters[i].help,
                                                           .labels = labels},
                                          &fam);
        if (err)
            return err;
        *counters[i].out = cs_metrics_counter_withv(fam, vals, 1);
    }
    cs_metric *fam = NULL;
    cs_err *err = cs_metrics_register(reg,
                                      &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                                       .name = "certsync_collector_held_events",
                                                       .help = "Events held now by the mass-removal guard.",
                                                       .labels = labels},
                                      &fam);
    if (err)
        return err;
    p->m_held_now = cs_metrics_gauge_withv(fam, vals, 1);
    err = cs_metrics_register(reg,
                              &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                               .name = "certsync_collector_fenced",
                                               .help = "1 when a newer instance fenced this collector.",
                                               .labels = labels},
                              &fam);
    if (err)
        return err;
    p->m_fenced = cs_metrics_gauge_withv(fam, vals, 1);
    err =
        cs_metrics_register(reg,
                            &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                             .name = "certsync_collector_commit_pending",
                                             .help = "1 while a Kafka commit is pending (Kafka unavailable).",
                                             .labels = labels},
                            &fam);
    if (err)
        return err;
    p->m_commit_pending = cs_metrics_gauge_withv(fam, vals, 1);
    return NULL;
}

/* ---- held events ----------------------------------------------------------------------------------- */

static held_ev *held_find(const col_pipeline *p, const char *key)
{
    for (size_t i = 0; i < p->n_held; i++)
        if (strcmp(p->held[i].key, key) == 0)
            return &p->held[i];
    return NULL;
}

static void held_remove(col_pipeline *p, const char *key)
{
    held_ev *h = held_find(p, key);
    if (!h)
        return;
    free(h->key);
    free(h->val);
    free(h->ver);
    *h = p->held[--p->n_held];
}

/* Inserts or replaces; copies everything. */
static cs_err *held_put(col_pipeline *p, const char *key, const uint8_t *val, size_t len, const uint8_t *ver,
                        size_t ver_len)
{
    held_ev *h = held_find(p, key);
    if (!h) {
        cs_err *err = reserve((void **)&p->held, &p->cap_held, p->n_held, sizeof(held_ev),
                              COL_PIPELINE_MAX_HELD, "held events: release them (col_pipeline_release_held)");
        if (err)
            return err;
        h = &p->held[p->n_held];
        memset(h, 0, sizeof(*h));
        if (!(h->key = strdup(key)))
            return nomem();
        p->n_held++;
    }
    uint8_t *v = malloc(len + 1), *vv = malloc(ver_len + 1);
    if (!v || !vv) {
        free(v);
        free(vv);
        return nomem();
    }
    memcpy(v, val, len);
    memcpy(vv, ver, ver_len);
    free(h->val);
    free(h->ver);
    h->val = v;
    h->len = len;
    h->ver = vv;
    h->ver_len = ver_len;
    return NULL;
}

static cs_err *pack_version(const Certsync__V1__Version *v, uint8_t **out, size_t *len)
{
    *len = certsync__v1__version__get_packed_size(v);
    *out = malloc(*len + 1);
    if (!*out)
        return nomem();
    certsync__v1__version__pack(v, *out);
    return NULL;
}

/* Compares two packed versions. */
static cs_version_order compare_packed(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    Certsync__V1__Version *va = certsync__v1__version__unpack(NULL, a_len, a);
    Certsync__V1__Version *vb = certsync__v1__version__unpack(NULL, b_len, b);
    /* Both were packed by us; a failure would be a bug: treat as newer so nothing is hidden. */
    cs_version_order o = (va && vb) ? cs_version_compare(va, vb) : CS_VERSION_NEWER;
    if (va)
        certsync__v1__version__free_unpacked(va, NULL);
    if (vb)
        certsync__v1__version__free_unpacked(vb, NULL);
    return o;
}

typedef struct held_load {
    col_pipeline *p;
    cs_err *err;
} held_load;

static cs_err *on_held_record(const cs_state_record *r, void *opaque)
{
    held_load *hl = opaque;
    col_pipeline *p = hl->p;
    size_t plen = strlen(p->source_id);
    if (!r->key || r->key_len <= plen + 1 || r->key_len > COL_INDEX_MAX_KEY_BYTES ||
        memcmp(r->key, p->source_id, plen) != 0 || ((const char *)r->key)[plen] != '/' ||
        memchr(r->key, '\0', r->key_len))
        return NULL;
    char key[COL_INDEX_MAX_KEY_BYTES + 1];
    memcpy(key, r->key, r->key_len);
    key[r->key_len] = '\0';
    if (!r->value) {
        held_remove(p, key);
        return NULL;
    }
    Certsync__V1__ChangeEvent *ev = NULL;
    cs_err *err = cs_event_decode(r->value, r->value_len, &ev);
    if (err)
        return cs_err_wrap(err, "held event %s", key);
    uint8_t *ver = NULL;
    size_t ver_len = 0;
    if (!ev->version)
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "held event %s has no version", key);
    if (!err)
        err = pack_version(ev->version, &ver, &ver_len);
    if (!err)
        err = held_put(p, key, r->value, r->value_len, ver, ver_len);
    free(ver);
    certsync__v1__change_event__free_unpacked(ev, NULL);
    return err;
}

/* After the index is loaded: a held event newer than the index's state becomes the index's state (held),
 * one that is not was superseded before a crash could write its null record: forget it. */
static cs_err *merge_held_into_index(col_pipeline *p)
{
    for (size_t i = 0; i < p->n_held;) {
        held_ev *h = &p->held[i];
        col_index_entry e;
        bool keep = true;
        if (col_index_lookup(p->idx, h->key, &e))
            keep = compare_packed(h->ver, h->ver_len, e.version, e.version_len) != CS_VERSION_OLDER &&
                   !(compare_packed(h->ver, h->ver_len, e.version, e.version_len) == CS_VERSION_EQUAL &&
                     !e.held);
        if (!keep) {
            cs_log_kv(CS_LOG_INFO, FACILITY, "held event superseded by a newer event in the events topic",
                      "key", h->key, NULL);
            held_remove(p, h->key);
            continue;
        }
        cs_err *err = col_index_apply_record(p->idx, h->key, strlen(h->key), h->val, h->len, true);
        if (err)
            return err;
        i++;
    }
    return NULL;
}

/* ---- open ------------------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static cs_err *check_opts(const col_pipeline_opts *o)
{
    if (!o->source_id || !o->source_id[0] || strchr(o->source_id, '/'))
        return cs_err_new(CS_ERR_CONFIG, 0, "pipeline: source.id \"%s\" must be set and contain no '/'",
                          o->source_id ? o->source_id : "");
    if (!o->topic_events || !o->topic_checkpoint || !o->topic_held || !o->topic_events[0] ||
        !o->topic_checkpoint[0] || !o->topic_held[0])
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "pipeline: topics.events, topics.checkpoint and topics.held are required");
    if (strcmp(o->topic_events, o->topic_held) == 0 || strcmp(o->topic_events, o->topic_checkpoint) == 0 ||
        strcmp(o->topic_held, o->topic_checkpoint) == 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "pipeline: topics.events, topics.checkpoint and topics.held must differ");
    if (o->batch_max_events <= 0 || o->batch_max_wait_ms <= 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "pipeline: batch.max_events (%d) and batch.max_wait (%lld ms) must be > 0",
                          o->batch_max_events, o->batch_max_wait_ms);
    if (o->mass_removal_threshold < 0)
        return cs_err_new(CS_ERR_CONFIG, 0, "pipeline: guard.mass_removal_threshold %d is negative",
                          o->mass_removal_threshold);
    return NULL;
}

static cs_err *dup_conf(rd_kafka_conf_t *conf, rd_kafka_conf_t **out)
{
    *out = rd_kafka_conf_dup(conf);
    return *out ? NULL : nomem();
}

static void pipeline_free(col_pipeline *p);

cs_err *col_pipeline_open(const col_pipeline_opts *opts, rd_kafka_conf_t *conf, col_pipeline **out)
{
    cs_err *err = NULL;
    col_pipeline *p = NULL;
    rd_kafka_conf_t *c_cp = NULL, *c_held = NULL, *c_ev = NULL;
    uint64_t n_ev = 0, n_held = 0;

    *out = NULL;
    if (!conf)
        return cs_err_new(CS_ERR_INTERNAL, 0, "pipeline: conf is NULL");
    if ((err = check_opts(opts)))
        goto cleanup;
    p = calloc(1, sizeof(*p));
    if (!p) {
        err = nomem();
        goto cleanup;
    }
    p->o = *opts;
    p->pending_since_ms = -1;
    p->batch_max = opts->batch_max_events;
    p->source_id = strdup(opts->source_id);
    p->topic_events = strdup(opts->topic_events);
    p->topic_checkpoint = strdup(opts->topic_checkpoint);
    p->topic_held = strdup(opts->topic_held);
    if (opts->transactional_id) {
        p->txn_id = dup_or_null(opts->transactional_id);
    } else {
        size_t n = strlen(COL_CONFIG_TXN_ID_PREFIX) + strlen(opts->source_id) + 1;
        if ((p->txn_id = malloc(n)))
            snprintf(p->txn_id, n, "%s%s", COL_CONFIG_TXN_ID_PREFIX, opts->source_id);
    }
    if (!p->source_id || !p->topic_events || !p->topic_checkpoint || !p->topic_held || !p->txn_id) {
        err = nomem();
        goto cleanup;
    }
    p->o.source_id = p->source_id;
    p->o.transactional_id = p->txn_id;
    p->o.topic_events = p->topic_events;
    p->o.topic_checkpoint = p->topic_checkpoint;
    p->o.topic_held = p->topic_held;
    if (!p->o.init_timeout_ms)
        p->o.init_timeout_ms = DEFAULT_INIT_TIMEOUT_MS;
    if (!p->o.load_timeout_ms)
        p->o.load_timeout_ms = DEFAULT_LOAD_TIMEOUT_MS;
    if (p->o.metrics && (err = setup_metrics(p)))
        goto cleanup;
    if ((err = dup_conf(conf, &c_cp)) || (err = dup_conf(conf, &c_held)) || (err = dup_conf(conf, &c_ev)))
        goto cleanup;
    err = cs_kafka_producer_new(conf, p->txn_id, &p->prod);
    conf = NULL;
    if (err)
        goto cleanup;

    /* Fence first: a zombie with our transactional.id is aborted and can no longer commit. */
    for (int attempt = 1;; attempt++) {
        err = cs_kafka_producer_init(p->prod, p->o.init_timeout_ms);
        if (!err)
            break;
        if (!cs_err_is_retriable(err) || attempt >= MAX_CALL_RETRIES)
            goto cleanup;
        cs_log_kv(CS_LOG_WARN, FACILITY, "init_transactions failed, retrying", "error", cs_err_message(err),
                  NULL);
        cs_err_free(err);
        err = NULL;
        sleep_ms(RETRY_BACKOFF_MS * attempt);
    }

    /* Then read, up to the LSO, what committed before the fence. */
    hook(p, "checkpoint_load");
    err = col_checkpoint_load(c_cp, p->topic_checkpoint, p->source_id, p->prod, p->o.load_timeout_ms,
                              &p->committed);
    c_cp = NULL;
    if (err)
        goto cleanup;
    held_load hl = {p, NULL};
    err = cs_state_reader_load(c_held, p->topic_held, NULL, 0, p->o.load_timeout_ms, on_held_record, &hl,
                               &n_held);
    c_held = NULL;
    if (err) {
        err = cs_err_wrap(err, "loading held events of source %s", p->source_id);
        goto cleanup;
    }
    if ((err = col_index_new(p->source_id, &p->idx)))
        goto cleanup;
    err = col_index_load(p->idx, c_ev, p->topic_events, false, p->o.load_timeout_ms, &n_ev);
    c_ev = NULL;
    if (err)
        goto cleanup;
    if ((err = merge_held_into_index(p)))
        goto cleanup;
    /* Without this the first transaction waits up to a second for librdkafka to look up its topics. */
    const char *topics[] = {p->topic_events, p->topic_checkpoint, p->topic_held};
    if ((err = cs_kafka_producer_warm(p->prod, topics, sizeof(topics) / sizeof(topics[0]), WARM_TIMEOUT_MS)))
        goto cleanup;
    cs_metrics_gauge_set(p->m_held_now, (double)p->n_held);
    cs_log(CS_LOG_INFO, FACILITY,
           "source %s: pipeline open (transactional.id %s): checkpoint sequence %" PRIu64
           ", %zu objects indexed "
           "from %" PRIu64 " records, %zu events held",
           p->source_id, p->txn_id, p->committed ? p->committed->sequence : 0, col_index_count(p->idx), n_ev,
           p->n_held);
    *out = p;
    p = NULL;

cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (c_cp)
        rd_kafka_conf_destroy(c_cp);
    if (c_held)
        rd_kafka_conf_destroy(c_held);
    if (c_ev)
        rd_kafka_conf_destroy(c_ev);
    if (p)
        pipeline_free(p);
    return err;
}

const Certsync__V1__CollectorCheckpoint *col_pipeline_checkpoint(const col_pipeline *p)
{
    return p->committed;
}

/* ---- the batch ------------------------------------------------------------------------------------- */

static cs_err *refuse_if_dead(const col_pipeline *p)
{
    if (!p->dead)
        return NULL;
    return cs_err_new(CS_ERR_STATE, CS_ERR_F_FATAL | (p->st.fenced ? CS_KAFKA_ERR_F_FENCED : 0u),
                      "pipeline of source %s is %s: stop this instance%s", p->source_id,
                      p->st.fenced ? "fenced by a newer instance" : "failed fatally",
                      p->st.fenced ? "" : " and restart it");
}

static void mark_pending(col_pipeline *p)
{
    if (p->pending_since_ms < 0)
        p->pending_since_ms = now_ms();
}

/* Appends one event to the batch, taking key, val and ver (malloc'd; freed here when it fails). */
static cs_err *batch_push(col_pipeline *p, char *key, uint8_t *val, size_t len, uint8_t *ver, size_t ver_len,
                          bool removal_ish, bool release)
{
    /* A release batch can exceed batch_max_events; the bound is the held cap. */
    cs_err *err = reserve((void **)&p->batch, &p->cap_batch, p->n_batch, sizeof(batch_ev),
                          (size_t)p->o.batch_max_events + COL_PIPELINE_MAX_HELD, "events in one batch");
    if (err) {
        free(key);
        free(val);
        free(ver);
        return err;
    }
    p->batch[p->n_batch++] = (batch_ev){.key = key,
                                        .val = val,
                                        .len = len,
                                        .ver = ver,
                                        .ver_len = ver_len,
                                        .removal_ish = removal_ish,
                                        .release = release};
    p->plan_built = false;
    mark_pending(p);
    return NULL;
}

/* Appends copies of an event (a held one, which stays held until the release commits) to the batch. */
static cs_err *batch_append(col_pipeline *p, const char *key, const uint8_t *val, size_t len,
                            const uint8_t *ver, size_t ver_len, bool removal_ish, bool release)
{
    char *k = strdup(key);
    uint8_t *v = malloc(len + 1);
    uint8_t *vv = malloc(ver_len + 1);
    if (!k || !v || !vv) {
        free(k);
        free(v);
        free(vv);
        return nomem();
    }
    memcpy(v, val, len);
    memcpy(vv, ver, ver_len);
    return batch_push(p, k, v, len, vv, ver_len, removal_ish, release);
}

static void batch_clear(col_pipeline *p)
{
    for (size_t i = 0; i < p->n_batch; i++) {
        free(p->batch[i].key);
        free(p->batch[i].val);
        free(p->batch[i].ver);
    }
    p->n_batch = 0;
    p->n_plan = 0;
    p->plan_built = false;
    free(p->cp_buf);
    p->cp_buf = NULL;
    col_checkpoint_free(p->cp_planned);
    p->cp_planned = NULL;
}

/* The event's content hash: the one col_event_build set (computed from the same values), else computed. */
static cs_err *content_sha(const Certsync__V1__ChangeEvent *ev, char sha[CS_SHA256_HEX_LEN])
{
    const char *h = ev->content_sha256;
    if (h != NULL && strlen(h) == CS_SHA256_HEX_LEN - 1 &&
        strspn(h, "0123456789abcdef") == CS_SHA256_HEX_LEN - 1) {
        memcpy(sha, h, CS_SHA256_HEX_LEN);
        return NULL;
    }
    return cs_event_content_sha256(ev, sha);
}

cs_err *col_pipeline_submit(col_pipeline *p, const Certsync__V1__ChangeEvent *ev)
{
    cs_err *err = NULL;
    char *key = NULL;
    uint8_t *val = NULL, *ver = NULL;
    size_t len = 0, ver_len = 0;
    char sha[CS_SHA256_HEX_LEN];
    col_index_verdict verdict;
    col_index_entry prev;

    if ((err = refuse_if_dead(p)))
        return err;
    if (!ev || !ev->identity || !ev->identity->object_id || !ev->identity->object_id[0])
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "pipeline %s: event without identity.object_id",
                          p->source_id);
    if (ev->source && ev->source->source_id && strcmp(ev->source->source_id, p->source_id) != 0)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "pipeline %s: event of object %s names source %s",
                          p->source_id, ev->identity->object_id, ev->source->source_id);
    if (ev->kind != CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT &&
        ev->kind != CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "pipeline %s: event of object %s has no kind",
                          p->source_id, ev->identity->object_id);
    if ((err = cs_event_key(p->source_id, ev->identity->object_id, &key)))
        goto cleanup;
    if ((err = content_sha(ev, sha)))
        goto cleanup;
    bool removal = ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    if (!removal && col_index_sweep_open(p->idx))
        col_index_sweep_mark(p->idx, key);
    if ((err = col_index_judge(p->idx, key, ev, sha, &verdict)))
        goto cleanup;
    if (verdict == COL_INDEX_UNKNOWN_REMOVAL) {
        cs_log_kv(CS_LOG_DEBUG, FACILITY, "removal dropped: the object was never emitted", "key", key, NULL);
        goto cleanup;
    }
    if (verdict == COL_INDEX_DUPLICATE) {
        p->st.duplicates_skipped++;
        cs_metrics_counter_inc(p->m_dups);
        goto cleanup;
    }
    if (verdict == COL_INDEX_STALE) {
        p->st.stale_skipped++;
        cs_metrics_counter_inc(p->m_stale);
        cs_log_kv(CS_LOG_WARN, FACILITY, "event dropped: not newer than the state already in Kafka", "key",
                  key, NULL);
        goto cleanup;
    }
    if (verdict == COL_INDEX_DIVERGED) {
        p->st.diverged++;
        cs_log_kv(CS_LOG_WARN, FACILITY,
                  "event version diverged from the state in Kafka (two histories): emitted", "key", key,
                  NULL);
    }
    bool removal_ish = false;
    if (col_index_lookup(p->idx, key, &prev) && !prev.removed)
        removal_ish = removal || (prev.has_certificates && strcmp(sha, col_index_empty_sha256()) == 0);

    /* Encode with the content hash filled in, so consumers need not recompute it. */
    Certsync__V1__ChangeEvent copy = *ev;
    copy.content_sha256 = sha;
    if ((err = cs_event_encode(&copy, &val, &len)))
        goto cleanup;
    if ((err = pack_version(ev->version, &ver, &ver_len)))
        goto cleanup;
    /* The batch takes the buffers as they are; the index copies the packed version (no second pack).
     * Batch first, as before: an event the index records must be in the batch, or a retry would be
     * judged a duplicate and lost. */
    err = batch_push(p, key, val, len, ver, ver_len, removal_ish, false);
    key = NULL; /* the batch's now, or freed by batch_push */
    val = NULL;
    ver = NULL;
    if (err)
        goto cleanup;
    const batch_ev *b = &p->batch[p->n_batch - 1];
    if ((err = col_index_put_packed(p->idx, b->key, b->ver, b->ver_len, removal, sha, false)))
        goto cleanup;
    if (p->n_batch >= (size_t)p->batch_max)
        err = col_pipeline_flush(p);

cleanup:
    free(key);
    free(val);
    free(ver);
    return err;
}

cs_err *col_pipeline_set_position(col_pipeline *p, const Certsync__V1__CollectorCheckpoint *position)
{
    cs_err *err = refuse_if_dead(p);
    if (err)
        return err;
    Certsync__V1__CollectorCheckpoint copy = *position;
    copy.source_id = p->source_id; /* decode insists on one */
    Certsync__V1__CollectorCheckpoint *cp = NULL;
    if ((err = col_checkpoint_copy(&copy, &cp)))
        return cs_err_wrap(err, "pipeline %s: position", p->source_id);
    col_checkpoint_free(p->position);
    p->position = cp;
    p->position_dirty = true;
    p->plan_built = false;
    mark_pending(p);
    return NULL;
}

/* ---- the transaction ------------------------------------------------------------------------------- */

static cs_err *plan_add(col_pipeline *p, int topic, const char *key, const uint8_t *val, size_t len,
                        size_t ev)
{
    cs_err *err = reserve((void **)&p->plan, &p->cap_plan, p->n_plan, sizeof(plan_rec),
                          2 * ((size_t)p->o.batch_max_events + COL_PIPELINE_MAX_HELD) + 1,
                          "records in one transaction");
    if (err)
        return err;
    p->plan[p->n_plan++] = (plan_rec){topic, key, val, len, ev};
    return NULL;
}

/* Is `key` held once the plan's records so far are applied? *ver gets the held version. */
static bool staged_held(const col_pipeline *p, const char *key, const uint8_t **ver, size_t *ver_len)
{
    for (size_t i = p->n_plan; i-- > 0;) {
        const plan_rec *r = &p->plan[i];
        if (r->topic != TOPIC_HELD || strcmp(r->key, key) != 0)
            continue;
        if (!r->val)
            return false;
        *ver = p->batch[r->ev].ver;
        *ver_len = p->batch[r->ev].ver_len;
        return true;
    }
    const held_ev *h = held_find(p, key);
    if (!h)
        return false;
    *ver = h->ver;
    *ver_len = h->ver_len;
    return true;
}

/* Decides once per batch where each record goes; the same plan is produced again after an abort. */
static cs_err *build_plan(col_pipeline *p)
{
    cs_err *err = NULL;
    size_t removals = 0, emitted = 0;

    p->n_plan = 0;
    for (size_t i = 0; i < p->n_batch; i++)
        removals += p->batch[i].removal_ish;
    bool hold = p->guard_tripped || (p->o.mass_removal_threshold > 0 && removals > 0 &&
                                     p->window_removals + removals > (uint64_t)p->o.mass_removal_threshold);
    if (hold && removals > 0 && !p->guard_tripped) {
        p->guard_tripped = true;
        p->st.guard_trips++;
        cs_metrics_counter_inc(p->m_trips);
        cs_log(CS_LOG_WARN, FACILITY,
               "source %s: mass-removal guard: %" PRIu64 " removals in this window exceed the threshold %d: "
               "holding removals in %s until released (certsync-collector release-held)",
               p->source_id, p->window_removals + removals, p->o.mass_removal_threshold, p->topic_held);
    }
    for (size_t i = 0; i < p->n_batch; i++) {
        const batch_ev *b = &p->batch[i];
        const uint8_t *hv = NULL;
        size_t hv_len = 0;
        if (b->release) {
            if ((err = plan_add(p, TOPIC_EVENTS, b->key, b->val, b->len, i)) ||
                (err = plan_add(p, TOPIC_HELD, b->key, NULL, 0, i)))
                return err;
            emitted++;
            continue;
        }
        if (b->removal_ish && hold) {
            if ((err = plan_add(p, TOPIC_HELD, b->key, b->val, b->len, i)))
                return err;
            continue;
        }
        if (staged_held(p, b->key, &hv, &hv_len)) {
            cs_version_order o = compare_packed(b->ver, b->ver_len, hv, hv_len);
            if (o == CS_VERSION_NEWER || o == CS_VERSION_DIVERGED) {
                if ((err = plan_add(p, TOPIC_HELD, b->key, NULL, 0, i)))
                    return err;
            }
        }
        if ((err = plan_add(p, TOPIC_EVENTS, b->key, b->val, b->len, i)))
            return err;
        emitted++;
    }

    /* The checkpoint that covers this batch: the latest position, else the last committed one. */
    Certsync__V1__CollectorCheckpoint base = CERTSYNC__V1__COLLECTOR_CHECKPOINT__INIT;
    if (p->position)
        base = *p->position;
    else if (p->committed)
        base = *p->committed;
    base.source_id = p->source_id;
    base.has_sequence = 1;
    base.sequence = (p->committed ? p->committed->sequence : 0) + 1;
    base.has_committed_at_ms = 1;
    base.committed_at_ms = wall_ms();
    base.has_events_emitted = 1;
    base.events_emitted = emitted;
    free(p->cp_buf);
    p->cp_buf = NULL;
    col_checkpoint_free(p->cp_planned);
    p->cp_planned = NULL;
    if ((err = col_checkpoint_encode(&base, &p->cp_buf, &p->cp_len)) ||
        (err = col_checkpoint_decode(p->cp_buf, p->cp_len, &p->cp_planned)))
        return err;
    if ((err = plan_add(p, TOPIC_CHECKPOINT, p->source_id, p->cp_buf, p->cp_len, SIZE_MAX)))
        return err;
    p->plan_built = true;
    return NULL;
}

static const char *topic_name(const col_pipeline *p, int t)
{
    return t == TOPIC_EVENTS ? p->topic_events : t == TOPIC_HELD ? p->topic_held : p->topic_checkpoint;
}

/* Marks the pipeline dead on a fatal error; true when the caller must give up. */
static bool is_final(col_pipeline *p, const cs_err *err)
{
    if (!cs_err_is_fatal(err) && cs_err_is_retriable(err))
        return false;
    if (!cs_err_is_fatal(err) && cs_err_txn_requires_abort(err))
        return false;
    p->dead = true;
    if (cs_kafka_producer_is_fenced(err)) {
        p->st.fenced = true;
        cs_metrics_gauge_set(p->m_fenced, 1);
        cs_log_kv(CS_LOG_WARN, FACILITY,
                  "fenced by a newer instance with the same transactional.id: stopping", "source",
                  p->source_id, "transactional_id", p->txn_id, NULL);
    }
    return true;
}

static long long backoff(int attempt)
{
    long long ms = (long long)RETRY_BACKOFF_MS * attempt;
    return ms > MAX_RETRY_BACKOFF_MS ? MAX_RETRY_BACKOFF_MS : ms;
}

/* Aborts (retrying a retriable abort). */
static cs_err *do_abort(col_pipeline *p)
{
    for (int attempt = 1;; attempt++) {
        cs_err *err = cs_kafka_producer_abort(p->prod);
        if (!err) {
            p->st.txn_aborted++;
            cs_metrics_counter_inc(p->m_aborted);
            return NULL;
        }
        if (is_final(p, err) || attempt >= MAX_CALL_RETRIES)
            return err;
        cs_err_free(err);
        sleep_ms(backoff(attempt));
    }
}

static bool commit_should_stop(void *arg)
{
    const col_pipeline *p = arg;
    return p->o.stop_flag && *p->o.stop_flag != 0;
}

static void commit_on_pending(void *arg, bool pending, const cs_err *why)
{
    col_pipeline *p = arg;
    (void)why; /* the producer logged it */
    cs_metrics_gauge_set(p->m_commit_pending, pending ? 1 : 0);
    if (p->o.on_commit_pending)
        p->o.on_commit_pending(p->o.pending_arg, pending);
}

/* One round: begin, produce the plan, commit. */
static cs_err *txn_round(col_pipeline *p)
{
    cs_err *err = NULL;
    for (int attempt = 1;; attempt++) {
        err = cs_kafka_producer_begin(p->prod);
        if (!err)
            break;
        if (is_final(p, err) || !cs_err_is_retriable(err) || attempt >= MAX_CALL_RETRIES)
            return err;
        cs_err_free(err);
        sleep_ms(backoff(attempt));
    }
    for (size_t i = 0; i < p->n_plan; i++) {
        const plan_rec *r = &p->plan[i];
        for (int attempt = 1;; attempt++) {
            err = cs_kafka_producer_produce(p->prod, topic_name(p, r->topic), RD_KAFKA_PARTITION_UA, r->key,
                                            strlen(r->key), r->val, r->len, NULL, 0);
            if (!err)
                break;
            /* Queue full: librdkafka has already served deliveries for 100 ms; try again. */
            if (is_final(p, err) || !cs_err_is_retriable(err) || attempt >= MAX_CALL_RETRIES)
                return err;
            cs_err_free(err);
        }
    }
    hook(p, "before_commit");
    /* A pending commit is resumed, never abandoned for an abort, until it completes or we are told to stop. */
    cs_kafka_commit_opts co = {.call_timeout_ms = p->o.commit_call_timeout_ms,
                               .should_stop = commit_should_stop,
                               .on_pending = commit_on_pending,
                               .arg = p};
    unsigned attempts = 0;
    err = cs_kafka_producer_commit_resume(p->prod, &co, &attempts);
    if (attempts > 1) {
        p->st.commit_retries += attempts - 1;
        cs_metrics_counter_add(p->m_commit_retries, (double)(attempts - 1));
    }
    if (err && cs_kafka_producer_is_commit_pending(err))
        cs_log_kv(
            CS_LOG_WARN, FACILITY,
            "stop requested while Kafka did not answer the commit: exiting without committing; the next "
            "start resumes from the committed checkpoint",
            "source", p->source_id, "transactional_id", p->txn_id, NULL);
    if (err)
        is_final(p, err);
    return err;
}

/* Applies a committed plan to the in-memory state. */
static void after_commit(col_pipeline *p)
{
    uint64_t produced = 0, held = 0, released = 0, superseded = 0, removals = 0;
    for (size_t i = 0; i < p->n_plan; i++) {
        const plan_rec *r = &p->plan[i];
        if (r->topic == TOPIC_EVENTS) {
            produced++;
            if (p->batch[r->ev].release)
                released++;
            else
                removals += p->batch[r->ev].removal_ish;
        } else if (r->topic == TOPIC_HELD && r->val) {
            const batch_ev *b = &p->batch[r->ev];
            cs_err *err = held_put(p, b->key, b->val, b->len, b->ver, b->ver_len);
            if (err) {
                /* It is in the held topic, only our copy failed: a restart reloads it. */
                cs_log_kv(CS_LOG_ERROR, FACILITY, "keeping a held event in memory failed", "error",
                          cs_err_message(err), NULL);
                cs_err_free(err);
            }
            col_index_set_held(p->idx, b->key, true);
            held++;
            removals++;
        } else if (r->topic == TOPIC_HELD) {
            held_remove(p, r->key);
            col_index_set_held(p->idx, r->key, false);
            if (!p->batch[r->ev].release)
                superseded++;
        }
    }
    p->window_removals += removals;
    p->st.events_produced += produced;
    p->st.events_held += held;
    p->st.events_released += released;
    p->st.held_superseded += superseded;
    p->st.txn_committed++;
    cs_metrics_counter_add(p->m_produced, (double)produced);
    cs_metrics_counter_add(p->m_held, (double)held);
    cs_metrics_counter_add(p->m_released, (double)released);
    cs_metrics_counter_inc(p->m_committed);
    cs_metrics_gauge_set(p->m_held_now, (double)p->n_held);
    if (held > 0)
        cs_log(CS_LOG_WARN, FACILITY, "source %s: %" PRIu64 " removal events held (%zu held in all)",
               p->source_id, held, p->n_held);
    col_checkpoint_free(p->committed);
    p->committed = p->cp_planned;
    p->cp_planned = NULL;
    p->position_dirty = false;
    p->pending_since_ms = -1;
    batch_clear(p);
}

cs_err *col_pipeline_flush(col_pipeline *p)
{
    cs_err *err = refuse_if_dead(p);
    if (err)
        return err;
    if (p->n_batch == 0 && !p->position_dirty)
        return NULL;
    if (!p->plan_built && (err = build_plan(p)))
        return err;
    for (int round = 1;; round++) {
        err = txn_round(p);
        if (!err)
            break;
        if (p->dead)
            return err;
        cs_kafka_producer_state st = cs_kafka_producer_get_state(p->prod);
        if (st != CS_KAFKA_PRODUCER_READY) {
            /* requires abort, or a retriable failure ran out of attempts: abort, then redo the same batch */
            cs_log_kv(CS_LOG_WARN, FACILITY, "transaction failed: aborting and producing the batch again",
                      "error", cs_err_message(err), NULL);
            cs_err *aerr = do_abort(p);
            if (aerr) {
                cs_err_free(err);
                return aerr;
            }
        }
        if (round >= MAX_TXN_ROUNDS)
            return cs_err_wrap(err,
                               "pipeline %s: %d transaction attempts failed; the batch is kept, flush again",
                               p->source_id, round);
        cs_err_free(err);
        sleep_ms(backoff(round));
    }
    hook(p, "after_commit");
    after_commit(p);
    return NULL;
}

void col_pipeline_set_batch_max_events(col_pipeline *p, int max_events)
{
    /* Bounded like batch.max_events (col_config: at most 100000): the batch is held in memory. */
    p->batch_max = max_events <= 0 ? p->o.batch_max_events : max_events > 100000 ? 100000 : max_events;
}

long long col_pipeline_next_due_ms(const col_pipeline *p)
{
    if (p->pending_since_ms < 0)
        return -1;
    long long left = p->pending_since_ms + p->o.batch_max_wait_ms - now_ms();
    return left < 0 ? 0 : left;
}

cs_err *col_pipeline_poll(col_pipeline *p)
{
    if (col_pipeline_next_due_ms(p) == 0)
        return col_pipeline_flush(p);
    return refuse_if_dead(p);
}

/* ---- sweep, guard, release ------------------------------------------------------------------------- */

void col_pipeline_guard_window_reset(col_pipeline *p)
{
    p->window_removals = 0;
    p->guard_tripped = false;
}

cs_err *col_pipeline_sweep_begin(col_pipeline *p)
{
    cs_err *err = refuse_if_dead(p);
    if (err)
        return err;
    col_pipeline_guard_window_reset(p);
    return col_index_sweep_begin(p->idx);
}

cs_err *col_pipeline_sweep_end(col_pipeline *p, const Certsync__V1__Source *source,
                               const Certsync__V1__AttributeStamp *lifecycle, size_t *n_removed)
{
    cs_err *err = NULL;
    char **keys = NULL;
    size_t n = 0, submitted = 0;

    if (n_removed)
        *n_removed = 0;
    if ((err = refuse_if_dead(p)))
        return err;
    if (!lifecycle)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "pipeline %s: sweep_end needs a lifecycle stamp",
                          p->source_id);
    if ((err = col_index_sweep_end(p->idx, &keys, &n)))
        return err;
    if (p->o.mass_removal_threshold > 0 && p->window_removals + n > (uint64_t)p->o.mass_removal_threshold &&
        !p->guard_tripped) {
        /* Known up front: hold the whole sweep, not only what is past the threshold. */
        p->guard_tripped = true;
        p->st.guard_trips++;
        cs_metrics_counter_inc(p->m_trips);
        cs_log(
            CS_LOG_WARN, FACILITY,
            "source %s: mass-removal guard: the resync would remove %zu objects, threshold %d: holding them "
            "in %s until released",
            p->source_id, n, p->o.mass_removal_threshold, p->topic_held);
    }
    size_t plen = strlen(p->source_id) + 1;
    for (size_t i = 0; i < n; i++) {
        col_index_entry e;
        if (!col_index_lookup(p->idx, keys[i], &e))
            continue;
        Certsync__V1__Version *v = certsync__v1__version__unpack(NULL, e.version_len, e.version);
        if (!v) {
            err = cs_err_new(CS_ERR_INTERNAL, 0, "index entry %s: version does not unpack", keys[i]);
            goto cleanup;
        }
        Certsync__V1__Version ver = *v;
        Certsync__V1__AttributeStamp life;
        cs_version_next_lifecycle(v, lifecycle, &life);
        ver.lifecycle = &life;
        Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
        if (source)
            src = *source;
        src.source_id = p->source_id;
        Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
        id.object_id = keys[i] + plen;
        Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
        ev.has_kind = 1;
        ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
        ev.source = &src;
        ev.identity = &id;
        ev.version = &ver;
        ev.has_removal_reason = 1;
        ev.removal_reason = CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_RESYNC_ABSENT;
        ev.has_emit_reason = 1;
        ev.emit_reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_RESYNC;
        ev.has_observed_at_ms = 1;
        ev.observed_at_ms = wall_ms();
        uint64_t before = p->st.stale_skipped + p->st.duplicates_skipped;
        err = col_pipeline_submit(p, &ev);
        certsync__v1__version__free_unpacked(v, NULL);
        if (err)
            goto cleanup;
        if (p->st.stale_skipped + p->st.duplicates_skipped == before)
            submitted++;
    }
    cs_log(CS_LOG_INFO, FACILITY,
           "source %s: removal sweep: %zu objects absent from the resync, %zu removals", p->source_id, n,
           submitted);
    if (n_removed)
        *n_removed = submitted;

cleanup:
    col_index_keys_free(keys, n);
    return err;
}

cs_err *col_pipeline_release_held(col_pipeline *p, const char *key, size_t *n_released)
{
    cs_err *err = NULL;
    size_t n = 0;
    if (n_released)
        *n_released = 0;
    if ((err = col_pipeline_flush(p)))
        return err;
    for (size_t i = 0; i < p->n_held; i++) {
        const held_ev *h = &p->held[i];
        if (key && strcmp(h->key, key) != 0)
            continue;
        if ((err = batch_append(p, h->key, h->val, h->len, h->ver, h->ver_len, false, true)))
            return err;
        n++;
    }
    if (n == 0)
        return key ? cs_err_new(CS_ERR_INVALID_INPUT, 0, "pipeline %s: no held event for %s", p->source_id,
                                key)
                   : NULL;
    cs_log(CS_LOG_WARN, FACILITY, "source %s: releasing %zu held events by command", p->source_id, n);
    if ((err = col_pipeline_flush(p)))
        return err;
    if (n_released)
        *n_released = n;
    return NULL;
}

size_t col_pipeline_held_count(const col_pipeline *p)
{
    return p->n_held;
}

void col_pipeline_get_stats(const col_pipeline *p, col_pipeline_stats *out)
{
    *out = p->st;
}

bool col_pipeline_is_fenced(const col_pipeline *p)
{
    return p->st.fenced;
}

static void pipeline_free(col_pipeline *p)
{
    batch_clear(p);
    free(p->batch);
    free(p->plan);
    for (size_t i = 0; i < p->n_held; i++) {
        free(p->held[i].key);
        free(p->held[i].val);
        free(p->held[i].ver);
    }
    free(p->held);
    cs_kafka_producer_destroy(p->prod);
    col_index_free(p->idx);
    col_checkpoint_free(p->committed);
    col_checkpoint_free(p->position);
    free(p->source_id);
    free(p->topic_events);
    free(p->topic_checkpoint);
    free(p->topic_held);
    free(p->txn_id);
    free(p);
}

cs_err *col_pipeline_close(col_pipeline *p, bool commit)
{
    cs_err *err = NULL;
    if (!p)
        return NULL;
    if (commit && !p->dead)
        err = col_pipeline_flush(p);
    else if (p->n_batch > 0 || p->position_dirty)
        cs_log(CS_LOG_INFO, FACILITY,
               "source %s: closing without commit: %zu events dropped (re-read on start)", p->source_id,
               p->n_batch);
    pipeline_free(p);
    return err;
}

/* ---- for trackers that name objects by id only (syncrepl delete / present) --------------------------- */

cs_err *col_pipeline_last_version(const col_pipeline *p, const char *object_id, Certsync__V1__Version **out)
{
    char *key = NULL;
    col_index_entry e;
    cs_err *err = NULL;

    *out = NULL;
    if ((err = cs_event_key(p->source_id, object_id, &key)))
        return err;
    if (col_index_lookup(p->idx, key, &e) && !e.removed) {
        *out = certsync__v1__version__unpack(NULL, e.version_len, e.version);
        if (*out == NULL)
            err = cs_err_new(CS_ERR_INTERNAL, 0, "index entry %s: version does not unpack", key);
    }
    free(key);
    return err;
}

cs_err *col_pipeline_lookup_version(const col_pipeline *p, const char *object_id, Certsync__V1__Version **out,
                                    bool *removed)
{
    char *key = NULL;
    col_index_entry e;
    cs_err *err = NULL;

    *out = NULL;
    *removed = false;
    if ((err = cs_event_key(p->source_id, object_id, &key)))
        return err;
    if (col_index_lookup(p->idx, key, &e)) {
        *removed = e.removed;
        *out = certsync__v1__version__unpack(NULL, e.version_len, e.version);
        if (*out == NULL)
            err = cs_err_new(CS_ERR_INTERNAL, 0, "index entry %s: version does not unpack", key);
    }
    free(key);
    return err;
}

void col_pipeline_sweep_mark(col_pipeline *p, const char *object_id)
{
    char *key = NULL;
    cs_err *err = NULL;

    if (!col_index_sweep_open(p->idx))
        return;
    err = cs_event_key(p->source_id, object_id, &key);
    if (err == NULL)
        col_index_sweep_mark(p->idx, key);
    cs_err_free(err); /* an id that makes no key was never emitted: nothing to mark */
    free(key);
}

bool col_pipeline_sweep_open(const col_pipeline *p)
{
    return col_index_sweep_open(p->idx);
}

void col_pipeline_sweep_cancel(col_pipeline *p)
{
    char **keys = NULL;
    size_t n = 0;

    if (!col_index_sweep_open(p->idx))
        return;
    cs_err_free(col_index_sweep_end(p->idx, &keys, &n));
    col_index_keys_free(keys, n);
}
