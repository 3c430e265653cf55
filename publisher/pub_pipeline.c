/*
 * pub_pipeline: poll -> decode -> coalesce -> decide -> apply -> one transaction (see pub_pipeline.h).
 */
#include "pub_pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_event.h"
#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_state_reader.h"
#include "cs_version.h"
#include "pub_consumer.h"
#include "pub_decide.h"
#include "pub_ownership.h"
#include "pub_readiness.h"
#include "pub_state.h"

#define FAC "pipeline"
#define MAX_PARTS 1024   /* partitions tracked per topic (read-ahead, pauses) */
#define MAX_KEY_LEN 1024 /* longer record keys are cut for results (the dead letter keeps the original) */
#define COMMIT_RETRIES 5 /* retriable abort failures retried before stopping */
#define SEND_OFFSETS_TIMEOUT_MS 30000
#define HDR_ATTEMPT "certsync-attempt"
#define HDR_NOT_BEFORE "certsync-not-before-ms"
#define APPLY_CHUNK_DEFAULT 32

/* One record of the batch. */
typedef struct item {
    rd_kafka_message_t *msg;
    Certsync__V1__ChangeEvent *ev; /* NULL when undecodable */
    char *decode_error;            /* why undecodable */
    char key[MAX_KEY_LEN + 1];
    int from_retry;
    int attempt;
    int superseded_by; /* index of the item that won the key, or -1 */
    pub_decision *dec;
    int write_idx; /* index into the writes array, or -1 */
    int plan_idx;  /* index of its write in the multi-site plan, or -1 */
    int deferred;  /* at or after its partition's first unstarted write (apply time ran out): next batch */
    /* 1 + index of a multi-site extra write (a handover or a clear) this item's write led to and that failed
     * retriably: the item is parked instead of recorded, so it comes back and the plan is made again. */
    int park_extra;
    /* Multi-site: its write would put on the recipient exactly what a replica of it (the same object through
     * another source) already wrote there: recorded as SKIPPED_DUPLICATE, nothing written. */
    int replica_duplicate;
} item;

/* A state record produced in the open transaction, applied to memory after the commit. */
typedef struct pending_state {
    int32_t partition;
    char *key;
    uint8_t *value;
    size_t value_len;
} pending_state;

typedef struct part_mark {
    int32_t partition;
    int64_t until; /* read-ahead: target LSO; pause: resume time (ms) */
    int active;
} part_mark;

struct pub_pipeline {
    pub_pipeline_opts opts;
    pub_applier applier;
    rd_kafka_conf_t *base_conf; /* copied for the state reader */
    pub_consumer *consumer;
    cs_kafka_producer *producer;
    pub_state *state;
    cs_policy *own_policy; /* the default policy readiness is judged by when opts.policy is NULL */
    cs_err *stopped;       /* the fatal error that stopped the pipeline */
    item *items;
    size_t n_items, cap_items;
    part_mark read_ahead[MAX_PARTS];
    part_mark paused[MAX_PARTS];
    part_mark owned[MAX_PARTS]; /* assigned events partitions (state restored); until: 1 when at EOF */
    pending_state *pending;
    size_t n_pending, cap_pending;
    pub_pipeline_stats stats;
    pub_pipeline_stats batch_stats;
    pub_ownership *plan;  /* this batch's multi-site step (NULL: none) */
    size_t extra_base;    /* outcomes[extra_base + j] is the plan's extra write j */
    int n_events_parts;   /* partition count of topics.events (pub_pipeline_start) */
    bool partial;         /* sources.priority set and not every events partition owned: paused */
    uint64_t partial_gen; /* the assignment (stats.assignments) the pause was applied for */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void item_clear(item *it)
{
    if (it->msg)
        rd_kafka_message_destroy(it->msg);
    if (it->ev)
        certsync__v1__change_event__free_unpacked(it->ev, NULL);
    free(it->decode_error);
    pub_decision_free(it->dec);
    memset(it, 0, sizeof(*it));
}

static void batch_clear(pub_pipeline *p)
{
    for (size_t i = 0; i < p->n_items; i++)
        item_clear(&p->items[i]);
    p->n_items = 0;
    for (size_t i = 0; i < p->n_pending; i++) {
        free(p->pending[i].key);
        free(p->pending[i].value);
    }
    p->n_pending = 0;
    memset(&p->batch_stats, 0, sizeof(p->batch_stats));
    pub_ownership_free(p->plan);
    p->plan = NULL;
    p->extra_base = 0;
}

/* ------------------------------------------------------------------ rebalance hooks */

typedef struct restore_ctx {
    pub_pipeline *p;
    uint64_t skipped;
} restore_ctx;

static cs_err *restore_record(const cs_state_record *r, void *opaque)
{
    restore_ctx *rc = opaque;
    if (rc->p->opts.fault_point)
        rc->p->opts.fault_point(rc->p->opts.fault_ctx, "restore");
    cs_err *err = pub_state_put(rc->p->state, r->partition, r->key, r->key_len, r->value, r->value_len);
    if (err) {
        /* A foreign or damaged record must not stop the publisher: it only loses that entry. */
        cs_log_warn(FAC, "skipping state record %s[%d]@%" PRId64 ": %s", r->topic, (int)r->partition,
                    r->offset, cs_err_message(err));
        cs_err_free(err);
        rc->skipped++;
    }
    return NULL;
}

static void tell_owned(pub_pipeline *p, bool restoring)
{
    if (p->opts.on_owned)
        p->opts.on_owned(p->opts.pending_ctx, pub_pipeline_owned_partitions(p), restoring);
}

static cs_err *on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    pub_pipeline *p = opaque;
    cs_err *err = NULL;
    int32_t ids[MAX_PARTS];
    size_t n = 0;
    p->stats.assignments++;
    for (int i = 0; i < parts->cnt && n < MAX_PARTS; i++)
        if (strcmp(parts->elems[i].topic, p->opts.topic_events) == 0)
            ids[n++] = parts->elems[i].partition;
    if (n == 0)
        return NULL;
    /* sources.priority with only some events partitions (pub_pipeline.h): pause all of them, retry topic
     * too, from the assign on, so no record is consumed before partial_guard() sees it; this pause (its
     * own reason) also outlasts a restore that succeeds only on a retry. The eager assignor makes every
     * assignment whole, so the reason goes with the revoke that precedes a full one. */
    if (pub_owner_rules_count(p->opts.owner_rules) > 0 && p->n_events_parts > 0 &&
        n < (size_t)p->n_events_parts) {
        for (int i = 0; i < parts->cnt; i++) {
            err = pub_consumer_pause(p->consumer, parts->elems[i].topic, parts->elems[i].partition,
                                     PUB_PAUSE_OWNERSHIP, 1);
            if (err)
                return err;
        }
    }
    for (size_t i = 0; i < n; i++)
        pub_state_drop_partition(p->state, ids[i]);
    tell_owned(p, true);
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(p->base_conf);
    restore_ctx rc = {.p = p, .skipped = 0};
    uint64_t loaded = 0;
    int64_t t0 = mono_ms();
    err = cs_state_reader_load(conf, p->opts.topic_state, ids, n, p->opts.restore_timeout_ms, restore_record,
                               &rc, &loaded);
    if (err)
        return cs_err_wrap(err, "restoring applied state from %s", p->opts.topic_state);
    p->stats.restored_records += loaded;
    cs_log_info(FAC,
                "restored %" PRIu64 " applied-state records (%" PRIu64
                " skipped) for %zu partition(s) in %lld ms",
                loaded, rc.skipped, n, (long long)(mono_ms() - t0));
    /* Read ahead: remember each partition's last stable offset now; the next batches extend until it. */
    for (size_t i = 0; i < n; i++) {
        int64_t lso = 0;
        err = pub_consumer_lso(p->consumer, p->opts.topic_events, ids[i], &lso);
        if (err)
            return err;
        part_mark *m = &p->read_ahead[(size_t)ids[i] % MAX_PARTS];
        m->partition = ids[i];
        m->until = lso;
        m->active = lso > 0;
    }
    /* Only now, with the state restored, does the partition count as owned (readiness, --once). */
    for (size_t i = 0; i < n; i++) {
        part_mark *o = &p->owned[(size_t)ids[i] % MAX_PARTS];
        o->partition = ids[i];
        o->until = 0;
        o->active = 1;
    }
    tell_owned(p, false);
    return NULL;
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    pub_pipeline *p = opaque;
    if (p->opts.fault_point)
        p->opts.fault_point(p->opts.fault_ctx, "revoke");
    /* 1. No write of ours may land after the new owner's. Nothing is in flight here: this callback runs only
     * from the consumer's poll, never during apply (pub_consumer.h "Revoke versus HTTP"); quiesce cancels
     * whatever is, as a safety net. */
    if (p->applier.quiesce)
        p->applier.quiesce(p->applier.ctx);
    /* 2. Abort an open transaction (the batch loop never polls with one open; this is the safety net). */
    cs_kafka_producer_state st = cs_kafka_producer_get_state(p->producer);
    if (st == CS_KAFKA_PRODUCER_COMMITTING) {
        /* Only after a stop during a pending commit: librdkafka refuses an abort then; the coordinator
         * completes or expires that transaction, and the new owner starts from what is committed. */
        cs_log_warn(FAC, "revoked while a commit was pending: leaving it to the coordinator");
    } else if (st == CS_KAFKA_PRODUCER_IN_TXN || st == CS_KAFKA_PRODUCER_ABORTABLE ||
               st == CS_KAFKA_PRODUCER_ABORTING) {
        cs_err *e = cs_kafka_producer_abort(p->producer);
        if (e) {
            cs_log_error(FAC, "aborting on revoke: %s", cs_err_message(e));
            cs_err_free(e);
        }
    }
    /* 3. Forget the state and the polled records of the revoked partitions; with the eager assignor that is
     * everything, and a re-assignment starts again from the committed offsets. */
    for (int i = 0; i < parts->cnt; i++) {
        const char *t = parts->elems[i].topic;
        int32_t part = parts->elems[i].partition;
        if (strcmp(t, p->opts.topic_events) == 0) {
            pub_state_drop_partition(p->state, part);
            p->read_ahead[(size_t)part % MAX_PARTS].active = 0;
            p->owned[(size_t)part % MAX_PARTS].active = 0;
        } else {
            p->paused[(size_t)part % MAX_PARTS].active = 0;
        }
        size_t w = 0;
        for (size_t j = 0; j < p->n_items; j++) {
            item *it = &p->items[j];
            if (it->msg->partition == part && strcmp(rd_kafka_topic_name(it->msg->rkt), t) == 0) {
                item_clear(it);
                continue;
            }
            if (w != j) {
                p->items[w] = *it;
                memset(it, 0, sizeof(*it));
            }
            w++;
        }
        p->n_items = w;
    }
    tell_owned(p, false);
}

/* ------------------------------------------------------------------ lifecycle */

cs_err *pub_pipeline_new(rd_kafka_conf_t *conf, const pub_pipeline_opts *opts, const pub_applier *applier,
                         pub_pipeline **out)
{
    cs_err *err = NULL;
    pub_pipeline *p = NULL;
    *out = NULL;
    if (!opts || !opts->topic_events || !opts->topic_state || !opts->topic_results || !opts->topic_dlq ||
        !opts->topic_retry || opts->batch_max_events <= 0 || opts->batch_max_wait_ms <= 0 || !applier ||
        !applier->apply) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "publisher pipeline: topics.events/state/results/dlq/retry, batch.max_events > 0, "
                         "batch.max_wait > 0 and an applier are required");
        goto cleanup;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory creating the pipeline");
        goto cleanup;
    }
    p->opts = *opts;
    if (p->opts.read_ahead_max_events <= 0)
        p->opts.read_ahead_max_events = 10 * opts->batch_max_events;
    if (p->opts.restore_timeout_ms <= 0)
        p->opts.restore_timeout_ms = 60000;
    if (!p->opts.instance_id)
        p->opts.instance_id = "";
    p->applier = *applier;
    err = pub_state_new(&p->state);
    if (!err && !p->opts.policy)
        err = cs_policy_new(NULL, &p->own_policy);
    if (err)
        goto cleanup;
    p->base_conf = rd_kafka_conf_dup(conf);
    pub_consumer_hooks hooks = {.on_assign = on_assign, .on_revoke = on_revoke, .opaque = p};
    err = pub_consumer_new(rd_kafka_conf_dup(conf), &hooks, &p->consumer);
    if (err)
        goto cleanup;
    err = cs_kafka_producer_new(conf, NULL, &p->producer);
    conf = NULL;
    if (err)
        goto cleanup;
    *out = p;
    p = NULL;
cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    pub_pipeline_destroy(p);
    return err;
}

/* Partition count of `topic` from broker metadata. */
static cs_err *partition_count(rd_kafka_t *rk, const char *topic, int *out)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    cs_err *err = NULL;
    if (e)
        err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "reading metadata of %s: %s", topic,
                         rd_kafka_err2str(e));
    else if (md->topic_cnt != 1 || md->topics[0].err)
        err = cs_err_new(CS_ERR_CONFIG, 0, "topic %s is not available (%s): create it", topic,
                         md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
    else
        *out = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return err;
}

cs_err *pub_pipeline_start(pub_pipeline *p, int timeout_ms)
{
    cs_err *err = cs_kafka_producer_init(p->producer, timeout_ms);
    if (err)
        return cs_err_wrap(err, "fencing earlier instances (init_transactions)");
    int n_events = 0, n_state = 0, n_retry = 0;
    rd_kafka_t *rk = pub_consumer_rd_kafka(p->consumer);
    err = partition_count(rk, p->opts.topic_events, &n_events);
    if (!err)
        err = partition_count(rk, p->opts.topic_state, &n_state);
    if (!err)
        err = partition_count(rk, p->opts.topic_retry, &n_retry);
    if (err)
        return err;
    p->n_events_parts = n_events;
    if (n_state != n_events || n_retry != n_events)
        return cs_err_new(
            CS_ERR_CONFIG, 0,
            "topics.state %s (%d partitions) and topics.retry %s (%d) must have as many partitions "
            "as topics.events %s (%d): state and parked records go to the event's partition number",
            p->opts.topic_state, n_state, p->opts.topic_retry, n_retry, p->opts.topic_events, n_events);
    const char *topics[2] = {p->opts.topic_events, p->opts.topic_retry};
    return pub_consumer_subscribe(p->consumer, topics, 2);
}

void pub_pipeline_destroy(pub_pipeline *p)
{
    if (!p)
        return;
    /* Close the consumer first: its revoke hook quiesces the applier and aborts through the producer. */
    pub_consumer_destroy(p->consumer);
    p->consumer = NULL;
    batch_clear(p);
    free(p->items);
    free(p->pending);
    cs_kafka_producer_destroy(p->producer);
    if (p->base_conf)
        rd_kafka_conf_destroy(p->base_conf);
    pub_state_free(p->state);
    cs_policy_free(p->own_policy);
    cs_err_free(p->stopped);
    free(p);
}

void pub_pipeline_get_stats(const pub_pipeline *p, pub_pipeline_stats *out)
{
    *out = p->stats;
}

size_t pub_pipeline_state_count(const pub_pipeline *p)
{
    return pub_state_count(p->state);
}

size_t pub_pipeline_owned_partitions(const pub_pipeline *p)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_PARTS; i++)
        n += p->owned[i].active != 0;
    return n;
}

bool pub_pipeline_caught_up(const pub_pipeline *p)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_PARTS; i++) {
        if (!p->owned[i].active)
            continue;
        if (!p->owned[i].until)
            return false;
        n++;
    }
    return n > 0;
}

bool pub_pipeline_owns(const pub_pipeline *p, int32_t partition)
{
    const part_mark *o = &p->owned[(size_t)partition % MAX_PARTS];
    return partition >= 0 && o->active && o->partition == partition;
}

void pub_pipeline_readiness(const pub_pipeline *p, int64_t now, cs_readiness_tally *out)
{
    pub_readiness_tally_state(p->state, now, p->opts.readiness_expiring_soon_days, out);
}

void pub_pipeline_lag(pub_pipeline *p, pub_pipeline_lag_fn fn, void *ctx)
{
    rd_kafka_t *rk = pub_consumer_rd_kafka(p->consumer);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < MAX_PARTS; i++)
        if (p->owned[i].active)
            rd_kafka_topic_partition_list_add(l, p->opts.topic_events, p->owned[i].partition);
    if (l->cnt > 0 && rd_kafka_position(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++) {
            int64_t lo = 0, hi = 0;
            /* Cached watermarks only: never a broker round trip from here. */
            if (rd_kafka_get_watermark_offsets(rk, l->elems[i].topic, l->elems[i].partition, &lo, &hi))
                continue;
            int64_t pos = l->elems[i].offset >= 0 ? l->elems[i].offset : lo;
            /* At the end the lag is 0 (a transaction's commit marker counts as one offset). */
            int64_t lag = p->owned[(size_t)l->elems[i].partition % MAX_PARTS].until ? 0 : hi - pos;
            fn(ctx, l->elems[i].partition, lag < 0 ? 0 : lag);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ------------------------------------------------------------------ collecting a batch */

static int read_ahead_pending(const pub_pipeline *p)
{
    for (size_t i = 0; i < MAX_PARTS; i++)
        if (p->read_ahead[i].active)
            return 1;
    return 0;
}

static int64_t header_int(const rd_kafka_message_t *m, const char *name, int64_t dflt)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    char buf[32];
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n) || !v || n == 0 ||
        n >= sizeof(buf))
        return dflt;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Resumes parked retry partitions whose not-before time has come. */
static void resume_due(pub_pipeline *p)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < MAX_PARTS; i++) {
        part_mark *m = &p->paused[i];
        if (m->active && m->until <= now) {
            cs_err *e =
                pub_consumer_pause(p->consumer, p->opts.topic_retry, m->partition, PUB_PAUSE_NOT_BEFORE, 0);
            if (e) {
                cs_log_warn(FAC, "%s", cs_err_message(e));
                cs_err_free(e);
            }
            m->active = 0;
        }
    }
}

/* Takes over `m` as a new batch item. */
static cs_err *add_item(pub_pipeline *p, rd_kafka_message_t *m, int from_retry)
{
    if (p->n_items == p->cap_items) {
        size_t cap = p->cap_items ? p->cap_items * 2 : 64;
        item *grown = realloc(p->items, cap * sizeof(*grown));
        if (!grown) {
            rd_kafka_message_destroy(m);
            return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "out of memory holding a batch of %zu",
                              p->n_items);
        }
        p->items = grown;
        p->cap_items = cap;
    }
    item *it = &p->items[p->n_items++];
    memset(it, 0, sizeof(*it));
    it->msg = m;
    it->from_retry = from_retry;
    it->attempt = from_retry ? (int)header_int(m, HDR_ATTEMPT, 1) + 1 : 1;
    it->superseded_by = -1;
    it->write_idx = -1;
    it->plan_idx = -1;
    size_t kl = m->key_len > MAX_KEY_LEN ? MAX_KEY_LEN : m->key_len;
    if (m->key)
        memcpy(it->key, m->key, kl);
    it->key[kl] = '\0';
    return NULL;
}

static cs_err *collect(pub_pipeline *p)
{
    cs_err *err = NULL;
    int64_t start = mono_ms();
    for (;;) {
        resume_due(p);
        int ra = read_ahead_pending(p);
        size_t cap = ra ? (size_t)p->opts.read_ahead_max_events : (size_t)p->opts.batch_max_events;
        int64_t wait = ra ? p->opts.restore_timeout_ms : p->opts.batch_max_wait_ms;
        int64_t left = wait - (mono_ms() - start);
        if (p->n_items >= cap || left <= 0)
            break;
        rd_kafka_message_t *m = NULL;
        err = pub_consumer_poll(p->consumer, (int)(left > 100 ? 100 : left), &m);
        if (err)
            return err;
        if (!m) {
            /* Idle and nothing pending from an assignment: hand over what we have. */
            if (p->n_items > 0 && !read_ahead_pending(p) && mono_ms() - start >= p->opts.batch_max_wait_ms)
                break;
            continue;
        }
        const char *topic = rd_kafka_topic_name(m->rkt);
        int is_events = strcmp(topic, p->opts.topic_events) == 0;
        part_mark *ram = &p->read_ahead[(size_t)m->partition % MAX_PARTS];
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (is_events) {
                ram->active = 0;
                p->owned[(size_t)m->partition % MAX_PARTS].until = 1;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (is_events && ram->active && m->offset + 1 >= ram->until)
            ram->active = 0;
        if (is_events)
            p->owned[(size_t)m->partition % MAX_PARTS].until = 0;
        if (!is_events) {
            int64_t not_before = header_int(m, HDR_NOT_BEFORE, 0);
            if (not_before > now_ms()) {
                /* Not yet: stop fetching this retry partition and come back to this record later. */
                part_mark *pm = &p->paused[(size_t)m->partition % MAX_PARTS];
                pm->partition = m->partition;
                pm->until = not_before;
                pm->active = 1;
                err = pub_consumer_pause(p->consumer, topic, m->partition, PUB_PAUSE_NOT_BEFORE, 1);
                if (!err)
                    err = pub_consumer_seek(p->consumer, topic, m->partition, m->offset);
                rd_kafka_message_destroy(m);
                if (err)
                    return err;
                continue;
            }
        }
        err = add_item(p, m, !is_events);
        if (err)
            return err;
    }
    return NULL;
}

/* ------------------------------------------------------------------ deciding */

static void decode_and_coalesce(pub_pipeline *p)
{
    for (size_t i = 0; i < p->n_items; i++) {
        item *it = &p->items[i];
        cs_err *e = cs_event_decode(it->msg->payload, it->msg->len, &it->ev);
        if (!e && it->msg->key_len == 0) {
            certsync__v1__change_event__free_unpacked(it->ev, NULL);
            it->ev = NULL;
            e = cs_err_new(CS_ERR_INVALID_INPUT, 0,
                           "the record has no key (expected <source_id>/<object_id>)");
        }
        if (e) {
            const char *msg = cs_err_message(e);
            size_t n = strlen(msg) + 1;
            it->decode_error = malloc(n);
            if (it->decode_error)
                memcpy(it->decode_error, msg, n);
            cs_err_free(e);
            continue;
        }
        /* Coalesce: earlier items of the same key lose to this one unless they are strictly newer. */
        for (size_t j = 0; j < i; j++) {
            item *o = &p->items[j];
            if (!o->ev || o->superseded_by >= 0 || strcmp(o->key, it->key) != 0)
                continue;
            if (cs_version_compare(o->ev->version, it->ev->version) == CS_VERSION_NEWER)
                it->superseded_by = (int)j;
            else
                o->superseded_by = (int)i;
            break;
        }
    }
}

/* ------------------------------------------------------------------ producing */

static cs_err *produce_pb(pub_pipeline *p, const char *topic, int32_t partition, const char *key,
                          size_t key_len, const ProtobufCMessage *msg, const cs_kafka_header *h, size_t nh,
                          pending_state *keep)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_TXN_REQUIRES_ABORT, "out of memory encoding a record for %s",
                          topic);
    protobuf_c_message_pack(msg, buf);
    cs_err *err = cs_kafka_producer_produce(p->producer, topic, partition, key, key_len, buf, len, h, nh);
    if (err || !keep) {
        free(buf);
        return err;
    }
    keep->value = buf;
    keep->value_len = len;
    return NULL;
}

static cs_err *add_pending(pub_pipeline *p, int32_t partition, const char *prefix, const char *id,
                           pending_state **out)
{
    if (p->n_pending == p->cap_pending) {
        size_t cap = p->cap_pending ? p->cap_pending * 2 : 64;
        pending_state *grown = realloc(p->pending, cap * sizeof(*grown));
        if (!grown)
            return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_TXN_REQUIRES_ABORT, "out of memory");
        p->pending = grown;
        p->cap_pending = cap;
    }
    pending_state *ps = &p->pending[p->n_pending];
    memset(ps, 0, sizeof(*ps));
    size_t a = strlen(prefix), b = strlen(id);
    ps->key = malloc(a + b + 1);
    if (!ps->key)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_TXN_REQUIRES_ABORT, "out of memory");
    memcpy(ps->key, prefix, a);
    memcpy(ps->key + a, id, b + 1);
    ps->partition = partition;
    p->n_pending++;
    *out = ps;
    return NULL;
}

/* obj/<key> with the event's version; `rcpt` is the recipient it maps to (may be NULL). */
static cs_err *produce_object_state(pub_pipeline *p, const item *it, Certsync__V1__Recipient *rcpt)
{
    pending_state *ps = NULL;
    cs_err *err = add_pending(p, it->msg->partition, PUB_STATE_OBJ_PREFIX, it->key, &ps);
    if (err)
        return err;
    Certsync__V1__ObjectState os = CERTSYNC__V1__OBJECT_STATE__INIT;
    os.object_key = (char *)(uintptr_t)it->key;
    os.version = it->ev->version;
    os.recipient = rcpt;
    os.has_removed = 1;
    os.removed = it->ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    os.has_event_partition = 1;
    os.event_partition = it->msg->partition;
    os.has_event_offset = 1;
    os.event_offset = it->msg->offset;
    os.has_updated_at_ms = 1;
    os.updated_at_ms = now_ms();
    /* Its claim on the recipient (multi-site): certificate values, and the event itself while it has some,
     * so a handover can write it later (pub_ownership.h). */
    os.has_certificate_values = 1;
    os.certificate_values =
        os.removed ? 0 : (uint32_t)(it->ev->n_user_certificate + it->ev->n_user_smime_certificate);
    if (os.certificate_values > 0) {
        os.has_event = 1;
        os.event.data = it->msg->payload;
        os.event.len = it->msg->len;
    }
    /* Its S/MIME readiness (pub_readiness.h), kept with the state it describes; "" for a multi-site non-owner,
     * whose values are not what Exchange holds. A failed judgement (out of memory) only leaves it out. */
    cs_readiness *verdict = NULL;
    bool non_owner = p->plan && it->plan_idx >= 0 && pub_ownership_skipped(p->plan, (size_t)it->plan_idx);
    if (non_owner) {
        os.readiness = (char *)(uintptr_t) "";
    } else {
        cs_err *je =
            pub_readiness_judge_event(p->opts.policy ? p->opts.policy : p->own_policy, it->ev, it->key,
                                      now_ms() / 1000, p->opts.readiness_expiring_soon_days, &verdict);
        if (je) {
            cs_log_warn(FAC, "%s", cs_err_message(je));
            cs_err_free(je);
        } else {
            os.readiness = (char *)(uintptr_t)cs_readiness_reason_name(cs_readiness_get_reason(verdict));
            os.has_readiness_not_after = 1;
            os.readiness_not_after = cs_readiness_not_after(verdict);
        }
    }
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT;
    rec.object = &os;
    err = produce_pb(p, p->opts.topic_state, it->msg->partition, ps->key, strlen(ps->key), &rec.base, NULL, 0,
                     ps);
    cs_readiness_free(verdict);
    return err;
}

/* A tombstone for state key `key` in `partition` of the state topic, in the open transaction (and in memory
 * after the commit, like every pending record), unless one is already pending there. */
static cs_err *produce_tombstone(pub_pipeline *p, int32_t partition, const char *key)
{
    for (size_t i = 0; i < p->n_pending; i++)
        if (!p->pending[i].value && p->pending[i].partition == partition &&
            strcmp(p->pending[i].key, key) == 0)
            return NULL;
    pending_state *ps = NULL;
    cs_err *err = add_pending(p, partition, "", key, &ps);
    if (err)
        return err;
    return cs_kafka_producer_produce(p->producer, p->opts.topic_state, partition, key, strlen(key), NULL, 0,
                                     NULL, 0);
}

/*
 * A recipient whose owner moved to an object of another events partition (multi-site handover) gets its
 * RecipientState in the new partition: the old partition's record is tombstoned in the same transaction, so
 * compaction removes it and an instance restoring only the old partition never sees the old owner's state.
 * (Records already out there without a tombstone are handled on restore: pub_state_put keeps the newer
 * written_at_ms.) The old partitions are the stored record's and any earlier record of this transaction.
 */
static cs_err *tombstone_moved_recipient(pub_pipeline *p, int32_t partition, const char *key)
{
    cs_err *err = NULL;
    int32_t old = 0;
    if (pub_state_partition_of(p->state, key, &old) && old != partition)
        err = produce_tombstone(p, old, key);
    size_t n = p->n_pending; /* produce_tombstone appends tombstones, which this loop need not visit */
    for (size_t i = 0; !err && i < n; i++)
        if (p->pending[i].value && p->pending[i].partition != partition &&
            strcmp(p->pending[i].key, key) == 0)
            err = produce_tombstone(p, p->pending[i].partition, key);
    return err;
}

/* rcpt/<id>: `w` (a batch item's write or an extra one) was written to `rcpt`. */
static cs_err *produce_recipient_state(pub_pipeline *p, const pub_write *w, Certsync__V1__Recipient *rcpt,
                                       const pub_apply_outcome *o)
{
    pending_state *ps = NULL;
    const char *rid = pub_state_recipient_id(rcpt);
    char key[PUB_STATE_KEY_MAX + 1];
    if (rid && snprintf(key, sizeof key, "%s%s", PUB_STATE_RCPT_PREFIX, rid) < (int)sizeof key) {
        cs_err *terr = tombstone_moved_recipient(p, w->partition, key);
        if (terr)
            return terr;
    }
    cs_err *err = add_pending(p, w->partition, PUB_STATE_RCPT_PREFIX, rid, &ps);
    if (err)
        return err;
    size_t n_uc = w->clear ? 0 : w->n_user_certificate, n_sm = w->clear ? 0 : w->n_user_smime_certificate;
    Certsync__V1__RecipientState rs = CERTSYNC__V1__RECIPIENT_STATE__INIT;
    rs.recipient = rcpt;
    rs.owner_object_key = (char *)(uintptr_t)w->object_key;
    rs.version = w->event ? w->event->version : NULL;
    rs.written_sha256 = (char *)(uintptr_t)(w->written_sha256 ? w->written_sha256 : "");
    rs.has_user_certificate_count = rs.has_user_smime_certificate_count = 1;
    rs.user_certificate_count = (uint32_t)n_uc;
    rs.user_smime_certificate_count = (uint32_t)n_sm;
    rs.has_written_at_ms = 1;
    rs.written_at_ms = now_ms();
    rs.client_request_id = o->client_request_id[0] ? (char *)(uintptr_t)o->client_request_id : NULL;
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT;
    rec.recipient = &rs;
    return produce_pb(p, p->opts.topic_state, w->partition, ps->key, strlen(ps->key), &rec.base, NULL, 0, ps);
}

static cs_err *produce_dead_letter(pub_pipeline *p, const item *it, Certsync__V1__DeadLetterReason reason,
                                   const char *detail, const pub_apply_outcome *o)
{
    Certsync__V1__DeadLetter dl = CERTSYNC__V1__DEAD_LETTER__INIT;
    Certsync__V1__Header hdrs[64];
    Certsync__V1__Header *hp[64];
    rd_kafka_headers_t *h = NULL;
    dl.has_reason = 1;
    dl.reason = reason;
    dl.detail = (char *)(uintptr_t)detail;
    dl.source_topic = (char *)(uintptr_t)rd_kafka_topic_name(it->msg->rkt);
    dl.has_source_partition = dl.has_source_offset = 1;
    dl.source_partition = it->msg->partition;
    dl.source_offset = it->msg->offset;
    dl.has_original_key = dl.has_original_value = 1;
    dl.original_key.data = it->msg->key;
    dl.original_key.len = it->msg->key_len;
    dl.original_value.data = it->msg->payload;
    dl.original_value.len = it->msg->len;
    if (!rd_kafka_message_headers(it->msg, &h)) {
        const char *name = NULL;
        const void *v = NULL;
        size_t vn = 0;
        /* Bounded: at most 64 headers are kept; a record with more is unusual enough to lose the rest. */
        for (size_t i = 0; i < 64 && !rd_kafka_header_get_all(h, i, &name, &v, &vn); i++) {
            certsync__v1__header__init(&hdrs[i]);
            hdrs[i].key = (char *)(uintptr_t)name;
            hdrs[i].has_value = v != NULL;
            hdrs[i].value.data = (uint8_t *)(uintptr_t)v;
            hdrs[i].value.len = vn;
            hp[i] = &hdrs[i];
            dl.n_original_headers = i + 1;
        }
        dl.original_headers = hp;
    }
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(it->msg, &tt);
    dl.has_original_timestamp_ms = ts >= 0;
    dl.original_timestamp_ms = ts;
    dl.has_dead_lettered_at_ms = 1;
    dl.dead_lettered_at_ms = now_ms();
    dl.has_attempts = 1;
    dl.attempts = o && o->attempts ? o->attempts : it->attempt;
    if (o && o->http_status) {
        dl.has_http_status = 1;
        dl.http_status = o->http_status;
    }
    if (o && o->client_request_id[0])
        dl.client_request_id = (char *)(uintptr_t)o->client_request_id;
    dl.publisher_instance = (char *)(uintptr_t)p->opts.instance_id;
    return produce_pb(p, p->opts.topic_dlq, RD_KAFKA_PARTITION_UA, it->msg->key, it->msg->key_len, &dl.base,
                      NULL, 0, NULL);
}

static cs_err *produce_parked(pub_pipeline *p, const item *it, const pub_apply_outcome *o)
{
    char attempt[24], not_before[24];
    snprintf(attempt, sizeof(attempt), "%d", it->attempt);
    snprintf(not_before, sizeof(not_before), "%" PRId64,
             now_ms() + (o->retry_after_ms > 0 ? o->retry_after_ms : 1000));
    cs_kafka_header h[2] = {{HDR_ATTEMPT, attempt, strlen(attempt)},
                            {HDR_NOT_BEFORE, not_before, strlen(not_before)}};
    return cs_kafka_producer_produce(p->producer, p->opts.topic_retry, it->msg->partition, it->msg->key,
                                     it->msg->key_len, it->msg->payload, it->msg->len, h, 2);
}

static cs_err *produce_result(pub_pipeline *p, const item *it, Certsync__V1__Outcome outcome,
                              const char *detail, Certsync__V1__Recipient *rcpt, const pub_apply_outcome *o)
{
    Certsync__V1__PublishResult r = CERTSYNC__V1__PUBLISH_RESULT__INIT;
    r.object_key = (char *)(uintptr_t)it->key;
    r.version = it->ev ? it->ev->version : NULL;
    r.has_outcome = 1;
    r.outcome = outcome;
    r.recipient = rcpt;
    if (o && o->cmdlet[0])
        r.cmdlet = (char *)(uintptr_t)o->cmdlet;
    if (it->dec && (outcome == CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED ||
                    outcome == CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED)) {
        size_t n_uc = 0, n_sm = 0;
        pub_decision_values(it->dec, CS_CERT_ATTR_USER_CERTIFICATE, &n_uc);
        pub_decision_values(it->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n_sm);
        r.has_user_certificate_count = r.has_user_smime_certificate_count = 1;
        r.user_certificate_count = (uint32_t)n_uc;
        r.user_smime_certificate_count = (uint32_t)n_sm;
    }
    if (it->dec) {
        size_t nd = 0;
        Certsync__V1__DroppedValue *const *d = pub_decision_dropped(it->dec, &nd);
        r.n_dropped = nd;
        r.dropped = (Certsync__V1__DroppedValue **)(uintptr_t)d;
    }
    if (o && o->client_request_id[0])
        r.client_request_id = (char *)(uintptr_t)o->client_request_id;
    r.has_attempts = 1;
    r.attempts = o && o->attempts ? o->attempts : it->attempt;
    r.has_event_partition = r.has_event_offset = 1;
    r.event_partition = it->msg->partition;
    r.event_offset = it->msg->offset;
    r.has_completed_at_ms = 1;
    r.completed_at_ms = now_ms();
    if (it->ev && it->ev->has_observed_at_ms) {
        r.has_latency_ms = 1;
        r.latency_ms = r.completed_at_ms - it->ev->observed_at_ms;
    }
    r.detail = (char *)(uintptr_t)detail;
    return produce_pb(p, p->opts.topic_results, RD_KAFKA_PARTITION_UA, it->key, strlen(it->key), &r.base,
                      NULL, 0, NULL);
}

/* Fills `rcpt` (backed by `o`) for a write's outcome; the object key stands in when the applier gave no id. */
static void recipient_of(const item *it, const pub_apply_outcome *o, Certsync__V1__Recipient *rcpt)
{
    certsync__v1__recipient__init(rcpt);
    rcpt->external_directory_object_id = (char *)(uintptr_t)(o->recipient_id[0] ? o->recipient_id : it->key);
    if (o->recipient_identity[0])
        rcpt->identity = (char *)(uintptr_t)o->recipient_identity;
    if (o->recipient_type[0])
        rcpt->recipient_type_details = (char *)(uintptr_t)o->recipient_type;
    if (o->primary_smtp_address[0])
        rcpt->primary_smtp_address = (char *)(uintptr_t)o->primary_smtp_address;
    if (o->resolved_by[0])
        rcpt->resolved_by = (char *)(uintptr_t)o->resolved_by;
}

/* Produces everything for one item and counts it in batch_stats. */
static cs_err *produce_item(pub_pipeline *p, const item *it, const pub_apply_outcome *outcomes)
{
    pub_pipeline_stats *bs = &p->batch_stats;
    cs_err *err = NULL;
    bs->events++;
    if (!it->ev) {
        const char *why = it->decode_error ? it->decode_error : "undecodable";
        char detail[640];
        snprintf(detail, sizeof(detail), "not a certsync.v1.ChangeEvent: %s", why);
        bs->dead_lettered++;
        err = produce_dead_letter(p, it, CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNDECODABLE,
                                  detail, NULL);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED, detail, NULL, NULL);
        return err;
    }
    if (it->superseded_by >= 0) {
        const item *w = &p->items[it->superseded_by];
        char detail[160];
        snprintf(detail, sizeof(detail), "superseded in batch by %s[%d]@%" PRId64,
                 rd_kafka_topic_name(w->msg->rkt), (int)w->msg->partition, w->msg->offset);
        bs->skipped_stale++;
        return produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE, detail, NULL, NULL);
    }
    pub_decision_kind kind = pub_decision_get_kind(it->dec);
    const char *detail = pub_decision_detail(it->dec);
    switch (kind) {
    case PUB_DECISION_SKIP_STALE: {
        bs->skipped_stale++;
        /* Newer than the object's own state but stale against a replica's write (pub_state_view): its claim
         * still moves on to what this source reports now, so a later handover never writes an older state. */
        const Certsync__V1__ObjectState *os = pub_state_object(p->state, it->key);
        if (os && it->ev->version &&
            (!os->version || cs_version_compare(it->ev->version, os->version) == CS_VERSION_NEWER))
            err = produce_object_state(p, it, os->recipient);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE, detail, NULL, NULL);
        return err;
    }
    case PUB_DECISION_SKIP_DUPLICATE: {
        bs->skipped_duplicate++;
        /* The version advances; the recipient stays what it was. */
        const Certsync__V1__ObjectState *os = pub_state_object(p->state, it->key);
        err = produce_object_state(p, it, os ? os->recipient : NULL);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_DUPLICATE, detail,
                                 os ? os->recipient : NULL, NULL);
        return err;
    }
    case PUB_DECISION_DEAD_LETTER:
        bs->dead_lettered++;
        err = produce_dead_letter(p, it, pub_decision_dead_letter_reason(it->dec), detail, NULL);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED, detail, NULL, NULL);
        return err;
    case PUB_DECISION_WRITE:
    case PUB_DECISION_CLEAR:
        break;
    }
    if (it->park_extra > 0) {
        /* Its own write may have landed; recording nothing (no state) and parking it makes the next attempt
         * decide and plan again, and write the failed extra (handover or clear) then. */
        const pub_apply_outcome *xo = &outcomes[p->extra_base + (size_t)(it->park_extra - 1)];
        char why[720];
        snprintf(why, sizeof why, "multi-site %.120s failed, retried with this event: %.480s",
                 pub_ownership_extra_detail(p->plan, (size_t)(it->park_extra - 1)), xo->detail);
        bs->parked++;
        err = produce_parked(p, it, xo);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_PARKED, why, NULL, xo);
        return err;
    }
    if (it->replica_duplicate) {
        /* A replica's write already holds this content: nothing is written, but the object takes the recipient
         * over on paper (its RecipientState names it, same hash), so the owner rule sees no owner change that
         * a handover would "repair" with an identical write, and its claim is recorded. */
        Certsync__V1__Recipient *r = pub_ownership_recipient(p->plan, (size_t)it->plan_idx);
        const Certsync__V1__RecipientState *prev = pub_state_recipient(p->state, pub_state_recipient_id(r));
        char why[640];
        snprintf(why, sizeof why, "the same content was written by a replica of this object (%.500s)",
                 prev && prev->owner_object_key ? prev->owner_object_key : "?");
        pub_write rw = {.object_key = it->key,
                        .event = it->ev,
                        .clear = kind == PUB_DECISION_CLEAR,
                        .written_sha256 = pub_decision_sha256(it->dec),
                        .partition = it->msg->partition};
        rw.user_certificate =
            pub_decision_values(it->dec, CS_CERT_ATTR_USER_CERTIFICATE, &rw.n_user_certificate);
        rw.user_smime_certificate =
            pub_decision_values(it->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &rw.n_user_smime_certificate);
        pub_apply_outcome none;
        memset(&none, 0, sizeof none);
        bs->skipped_duplicate++;
        err = produce_object_state(p, it, r);
        if (!err)
            err = produce_recipient_state(p, &rw, r, &none);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_DUPLICATE, why, r, NULL);
        return err;
    }
    if (p->plan && it->plan_idx >= 0 && pub_ownership_skipped(p->plan, (size_t)it->plan_idx)) {
        /* Not the owner: nothing written, but its claim (recipient, certificates, event) is recorded. */
        Certsync__V1__Recipient *r = pub_ownership_recipient(p->plan, (size_t)it->plan_idx);
        bs->skipped_not_owner++;
        err = produce_object_state(p, it, r);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_NOT_OWNER,
                                 pub_ownership_detail(p->plan, (size_t)it->plan_idx), r, NULL);
        return err;
    }
    const pub_apply_outcome *o = &outcomes[it->write_idx];
    pub_write w = {.object_key = it->key,
                   .event = it->ev,
                   .clear = kind == PUB_DECISION_CLEAR,
                   .written_sha256 = pub_decision_sha256(it->dec),
                   .partition = it->msg->partition};
    w.user_certificate = pub_decision_values(it->dec, CS_CERT_ATTR_USER_CERTIFICATE, &w.n_user_certificate);
    w.user_smime_certificate =
        pub_decision_values(it->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &w.n_user_smime_certificate);
    Certsync__V1__Recipient rcpt;
    recipient_of(it, o, &rcpt);
    switch (o->status) {
    case PUB_APPLY_APPLIED:
    case PUB_APPLY_CLEARED:
        if (o->status == PUB_APPLY_APPLIED)
            bs->applied++;
        else
            bs->cleared++;
        err = produce_object_state(p, it, &rcpt);
        if (!err)
            err = produce_recipient_state(p, &w, &rcpt, o);
        if (!err)
            err = produce_result(p, it,
                                 o->status == PUB_APPLY_APPLIED ? CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED
                                                                : CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED,
                                 detail, &rcpt, o);
        return err;
    case PUB_APPLY_RETRY_LATER:
        bs->parked++;
        err = produce_parked(p, it, o);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_PARKED, o->detail, NULL, o);
        return err;
    case PUB_APPLY_PERMANENT:
    default:
        bs->dead_lettered++;
        err = produce_dead_letter(
            p, it, o->reason ? o->reason : CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED,
            o->detail[0] ? o->detail : "the applier gave up", o);
        if (!err)
            err = produce_result(p, it, CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED, o->detail, NULL, o);
        return err;
    }
}

/* The batch item whose event led to extra write `j`, or NULL. */
static item *extra_cause(pub_pipeline *p, size_t j)
{
    const Certsync__V1__ChangeEvent *ev = pub_ownership_extra_cause(p->plan, j);
    for (size_t i = 0; ev && i < p->n_items; i++)
        if (p->items[i].ev == ev && !p->items[i].deferred)
            return &p->items[i];
    return NULL;
}

/*
 * Before the transaction: an extra write (handover, clear) that failed retriably (throttled, outage,
 * cancelled at the deadline, not started) must not be dropped: the item whose write led to it is parked
 * instead of recorded (produce_item), so its event comes back through topics.retry and the plan, with the
 * extra, is made again. A cause that is itself parked already comes back anyway; one dead-lettered cannot.
 */
static void park_failed_extras(pub_pipeline *p, const pub_apply_outcome *outcomes)
{
    for (size_t j = 0; p->plan && j < pub_ownership_extra_count(p->plan); j++) {
        const pub_apply_outcome *o = &outcomes[p->extra_base + j];
        if (o->status != PUB_APPLY_RETRY_LATER && o->status != 0)
            continue;
        item *it = extra_cause(p, j);
        const pub_apply_outcome *own = it && it->write_idx >= 0 ? &outcomes[it->write_idx] : NULL;
        if (it && own && own->status == PUB_APPLY_PERMANENT) {
            cs_log_kv(CS_LOG_ERROR, FAC,
                      "multi-site write failed and its cause is dead-lettered: the recipient keeps its old "
                      "certificates until one of its objects changes",
                      "key", it->key, "what", pub_ownership_extra_detail(p->plan, j), "error", o->detail,
                      NULL);
            continue;
        }
        if (it && it->park_extra == 0)
            it->park_extra = (int)j + 1;
        else if (!it)
            cs_log_kv(CS_LOG_ERROR, FAC, "multi-site write failed and no batch record led to it: not retried",
                      "what", pub_ownership_extra_detail(p->plan, j), "error", o->detail, NULL);
    }
}

/* The multi-site step's extra writes (handovers, clears): a written one records its recipient's new state;
 * a permanent failure goes to the dead-letter topic with the record that led to it; a retriable one is
 * retried with that record (park_failed_extras). */
static cs_err *produce_extras(pub_pipeline *p, const pub_apply_outcome *outcomes)
{
    cs_err *err = NULL;
    for (size_t j = 0; !err && p->plan && j < pub_ownership_extra_count(p->plan); j++) {
        const pub_write *w = pub_ownership_extra(p->plan, j);
        const pub_apply_outcome *o = &outcomes[p->extra_base + j];
        if (o->status == PUB_APPLY_PERMANENT) {
            item *it = extra_cause(p, j);
            char detail[700];
            snprintf(detail, sizeof detail, "multi-site %.120s of recipient %.120s failed: %.400s",
                     pub_ownership_extra_detail(p->plan, j), pub_state_recipient_id(w->recipient), o->detail);
            cs_log_kv(CS_LOG_WARN, FAC, "multi-site write failed permanently: dead-lettered", "key",
                      w->object_key, "what", pub_ownership_extra_detail(p->plan, j), "error", o->detail,
                      NULL);
            if (it) {
                p->batch_stats.dead_lettered++;
                err = produce_dead_letter(
                    p, it,
                    o->reason ? o->reason : CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED,
                    detail, o);
            }
            continue;
        }
        if (o->status != PUB_APPLY_APPLIED && o->status != PUB_APPLY_CLEARED) {
            cs_log_kv(CS_LOG_WARN, FAC, "multi-site write failed: retried with the event that led to it",
                      "key", w->object_key, "what", pub_ownership_extra_detail(p->plan, j), "error",
                      o->detail, NULL);
            continue;
        }
        /* The recipient the applier wrote, as pre-resolved (its answer fills in what it learned). */
        Certsync__V1__Recipient rcpt = *w->recipient;
        if (o->recipient_id[0])
            rcpt.external_directory_object_id = (char *)(uintptr_t)o->recipient_id;
        p->batch_stats.owner_writes++;
        cs_log_kv(CS_LOG_INFO, FAC, "multi-site write", "key", w->object_key, "recipient",
                  pub_state_recipient_id(&rcpt), "what", pub_ownership_extra_detail(p->plan, j), NULL);
        err = produce_recipient_state(p, w, &rcpt, o);
    }
    return err;
}

typedef enum offsets_of {
    OFFSETS_COMMIT,   /* last offset + 1 of the records not deferred */
    OFFSETS_FIRST,    /* first offset of every record (a rewind of the whole batch) */
    OFFSETS_DEFERRED, /* first offset of the deferred records (where the next batch resumes) */
} offsets_of;

/* Offsets per (topic, partition) of the batch, as `which` says. Caller frees with
 * rd_kafka_topic_partition_list_destroy(). */
static rd_kafka_topic_partition_list_t *batch_offsets(const pub_pipeline *p, offsets_of which)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    int first = which != OFFSETS_COMMIT;
    for (size_t i = 0; i < p->n_items; i++) {
        if (which != OFFSETS_FIRST && p->items[i].deferred != (which == OFFSETS_DEFERRED))
            continue;
        const rd_kafka_message_t *m = p->items[i].msg;
        const char *t = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, t, m->partition);
        int64_t want = first ? m->offset : m->offset + 1;
        if (!tp)
            rd_kafka_topic_partition_list_add(l, t, m->partition)->offset = want;
        else if (first ? want < tp->offset : want > tp->offset)
            tp->offset = want;
    }
    return l;
}

/* Seeks every partition of the batch back to its first record (`which` OFFSETS_FIRST), or to its first
 * deferred one (OFFSETS_DEFERRED), so the next batch processes them again. */
static void seek_back(pub_pipeline *p, offsets_of which)
{
    rd_kafka_topic_partition_list_t *l = batch_offsets(p, which);
    /* The rewound records come again: no partition is at its end any more. */
    for (size_t i = 0; i < MAX_PARTS; i++)
        p->owned[i].until = 0;
    for (int i = 0; i < l->cnt; i++) {
        cs_err *e =
            pub_consumer_seek(p->consumer, l->elems[i].topic, l->elems[i].partition, l->elems[i].offset);
        if (e) {
            /* Not assigned any more: the new owner starts from the committed offset anyway. */
            cs_log_warn(FAC, "rewinding: %s", cs_err_message(e));
            cs_err_free(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void rewind_batch(pub_pipeline *p)
{
    seek_back(p, OFFSETS_FIRST);
}

/* Stops the pipeline for good on a fatal error; returns a copy-free wrapper the caller owns. */
static cs_err *stop_with(pub_pipeline *p, cs_err *err)
{
    if (cs_kafka_producer_is_fenced(err))
        cs_log_warn(FAC, "fenced by a newer instance with our transactional.id: stopping without committing");
    else
        cs_log_error(FAC, "stopping: %s", cs_err_message(err));
    p->stopped = cs_err_new(cs_err_code_of(err), cs_err_flags(err) | CS_ERR_F_FATAL, "pipeline stopped: %s",
                            cs_err_message(err));
    return err;
}

static bool commit_should_stop(void *arg)
{
    const pub_pipeline *p = arg;
    return p->opts.stop_flag && *p->opts.stop_flag != 0;
}

static void commit_on_pending(void *arg, bool pending, const cs_err *why)
{
    pub_pipeline *p = arg;
    (void)why; /* the producer logged it */
    if (p->opts.on_commit_pending)
        p->opts.on_commit_pending(p->opts.pending_ctx, pending);
}

static cs_err *transact(pub_pipeline *p, const pub_apply_outcome *outcomes)
{
    cs_err *err = NULL;
    rd_kafka_topic_partition_list_t *offs = NULL;
    rd_kafka_consumer_group_metadata_t *cgmd = NULL;
    err = cs_kafka_producer_begin(p->producer);
    for (size_t i = 0; !err && i < p->n_items; i++)
        if (!p->items[i].deferred)
            err = produce_item(p, &p->items[i], outcomes);
    if (!err)
        err = produce_extras(p, outcomes);
    if (!err) {
        offs = batch_offsets(p, OFFSETS_COMMIT);
        /* Fresh group metadata every transaction: a rebalance changes the generation (KIP-447). */
        cgmd = pub_consumer_group_metadata(p->consumer);
        err = cgmd ? cs_kafka_producer_send_offsets(p->producer, offs, cgmd, SEND_OFFSETS_TIMEOUT_MS)
                   : cs_err_new(CS_ERR_NOMEM, CS_ERR_F_TXN_REQUIRES_ABORT, "no consumer group metadata");
    }
    if (!err && p->opts.fault_before_commit && p->opts.fault_before_commit(p->opts.fault_ctx))
        err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_TXN_REQUIRES_ABORT, "injected fault before commit");
    if (!err) {
        /* A pending commit is resumed, never abandoned for an abort, until it completes or we must stop. */
        cs_kafka_commit_opts co = {.call_timeout_ms = p->opts.commit_call_timeout_ms,
                                   .should_stop = commit_should_stop,
                                   .on_pending = commit_on_pending,
                                   .arg = p};
        unsigned attempts = 0;
        err = cs_kafka_producer_commit_resume(p->producer, &co, &attempts);
        if (attempts > 1)
            p->stats.commit_retries += attempts - 1;
    }
    if (offs)
        rd_kafka_topic_partition_list_destroy(offs);
    if (cgmd)
        rd_kafka_consumer_group_metadata_destroy(cgmd);
    return err;
}

/* Pauses (pause != 0) or resumes the owned events partitions and their retry partitions. */
static void pause_owned(pub_pipeline *p, int pause)
{
    for (size_t i = 0; i < MAX_PARTS; i++) {
        if (!p->owned[i].active)
            continue;
        cs_err *e = pub_consumer_pause(p->consumer, p->opts.topic_events, p->owned[i].partition,
                                       PUB_PAUSE_OWNERSHIP, pause);
        /* A retry partition waiting for its not-before time stays paused: that is its own reason. */
        if (!e)
            e = pub_consumer_pause(p->consumer, p->opts.topic_retry, p->owned[i].partition,
                                   PUB_PAUSE_OWNERSHIP, pause);
        if (e) {
            cs_log_warn(FAC, "%s", cs_err_message(e));
            cs_err_free(e);
        }
    }
}

/*
 * sources.priority decides between keys that may sit on different partitions, so it is only correct when
 * this instance holds them all (pub_pipeline.h). True while it does not: the partitions are paused, nothing
 * is decided or written, and the consumer is only polled to take part in rebalances.
 */
static bool partial_guard(pub_pipeline *p, cs_err **err)
{
    size_t owned = pub_pipeline_owned_partitions(p);
    if (owned == 0)
        return false; /* between assignments: p->partial stays, so a later full one resumes */
    bool partial = pub_owner_rules_count(p->opts.owner_rules) > 0 && owned > 0 && p->n_events_parts > 0 &&
                   owned < (size_t)p->n_events_parts;
    if (partial && (!p->partial || p->partial_gen != p->stats.assignments)) {
        if (!p->partial)
            cs_log_error(
                FAC,
                "sources.priority needs one publisher instance owning all %d partitions; set publisher "
                "replicas to 1 (this instance owns %zu of %s: consumption paused, not ready)",
                p->n_events_parts, owned, p->opts.topic_events);
        pause_owned(p, 1);
        p->partial_gen = p->stats.assignments;
    } else if (!partial && p->partial) {
        cs_log_info(FAC, "this instance owns every partition of %s again: consuming", p->opts.topic_events);
        pause_owned(p, 0);
    }
    p->partial = partial;
    if (!partial)
        return false;
    rd_kafka_message_t *m = NULL;
    *err = pub_consumer_poll(p->consumer, 200, &m);
    if (m) {
        /* Fetched before the pause: put it back, it is read again once the instance owns everything. */
        if (!m->err) {
            cs_err *e = pub_consumer_seek(p->consumer, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
            if (e) {
                cs_log_warn(FAC, "%s", cs_err_message(e));
                cs_err_free(e);
            }
        }
        rd_kafka_message_destroy(m);
    }
    return true;
}

bool pub_pipeline_partial_assignment(const pub_pipeline *p)
{
    return p->partial;
}

/*
 * The multi-site step (pub_ownership.h) before applying, when sources.priority is set and the applier can
 * resolve: resolves the batch's writes (a slow lookup holds the batch: the price of deciding before writing),
 * plans ownership, drops the writes of non-owners from `writes` (their items keep plan_idx) and appends the
 * extra writes; `outcomes` (zeroed, room for 3 x items) is used for the lookups and zeroed again after.
 */
/*
 * True when `w` (its object the owner of `rcpt`) would write exactly what the recipient already holds from a
 * replica of that object (pub_state_same_object: one object seen through two DCs). The version gate cannot see
 * it for an object's FIRST event (no ObjectState yet, pub_state_view), e.g. the initial sync when the lower-
 * ranked DC's snapshot came first: without this the owner change would rewrite identical certificates.
 */
static bool replica_wrote_it(const pub_pipeline *p, const pub_write *w, const Certsync__V1__Recipient *rcpt)
{
    const Certsync__V1__RecipientState *rs = pub_state_recipient(p->state, pub_state_recipient_id(rcpt));
    return rs && rs->owner_object_key && rs->written_sha256 && w->written_sha256 &&
           pub_state_same_object(rs->owner_object_key, w->object_key) &&
           strcmp(rs->written_sha256, w->written_sha256) == 0;
}

static cs_err *multi_site_step(pub_pipeline *p, pub_write *writes, size_t *n_writes,
                               pub_apply_outcome *outcomes)
{
    size_t n = *n_writes;
    if (!p->applier.resolve || n == 0 || pub_owner_rules_count(p->opts.owner_rules) == 0)
        return NULL;
    cs_err *err = p->applier.resolve(p->applier.ctx, writes, n, outcomes);
    if (!err) {
        pub_ownership_in in = {.state = p->state,
                               .rules = p->opts.owner_rules,
                               .policy = p->opts.policy,
                               .now = now_ms() / 1000,
                               .writes = writes,
                               .n = n,
                               .resolved = outcomes};
        err = pub_ownership_plan(&in, &p->plan);
    }
    memset(outcomes, 0, n * sizeof(*outcomes));
    if (err)
        return cs_err_wrap(err, "multi-site step for %zu writes (the batch will be re-delivered)", n);
    size_t kept = 0;
    for (size_t i = 0; i < p->n_items; i++) {
        item *it = &p->items[i];
        if (it->write_idx < 0)
            continue;
        size_t w = (size_t)it->write_idx;
        it->plan_idx = (int)w;
        if (pub_ownership_skipped(p->plan, w)) {
            it->write_idx = -1;
            continue;
        }
        if (replica_wrote_it(p, &writes[w], pub_ownership_recipient(p->plan, w))) {
            it->write_idx = -1;
            it->replica_duplicate = 1;
            continue;
        }
        writes[kept] = writes[w]; /* w >= kept: items are visited in write order */
        it->write_idx = (int)kept++;
    }
    p->extra_base = kept;
    for (size_t j = 0; j < pub_ownership_extra_count(p->plan); j++)
        writes[kept++] = *pub_ownership_extra(p->plan, j);
    *n_writes = kept;
    return NULL;
}

/*
 * pub_apply_limits.stop: true once librdkafka considers the group assignment lost (max.poll.interval.ms
 * exceeded while applying, session timed out, fenced generation). rd_kafka_assignment_lost() reads an atomic
 * flag that the group thread sets the moment it decides the loss and that only rd_kafka_assign()/unassign()
 * in the rebalance callback resets; that callback runs from the next poll, which the batch loop does not do
 * while applying. So from here the flag is true from the loss until our own revoke handling: another member
 * may own the partitions meanwhile, and no write of ours may start (design.md "Fencing does not stop HTTP").
 */
static bool assignment_lost(void *ctx)
{
    pub_pipeline *p = ctx;
    return rd_kafka_assignment_lost(pub_consumer_rd_kafka(p->consumer)) == 1;
}

/*
 * Without sources.priority every object writes its own recipient as before, so nothing waits for a lookup;
 * after applying, a write that landed on another recipient than its ObjectState records (a re-map) settles
 * the old one (pub_ownership remap_only: cleared, or handed to another object that maps to it), with a second
 * apply for those extra writes, appended after the `n` writes (room for 3 x items).
 */
static cs_err *remap_step(pub_pipeline *p, pub_write *writes, size_t n, pub_apply_outcome *outcomes)
{
    if (p->plan || n == 0)
        return NULL; /* decided before applying (multi_site_step), or nothing written */
    pub_apply_outcome *written = calloc(n, sizeof(*written));
    if (!written)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_RETRIABLE, "out of memory checking %zu writes for re-maps",
                          n);
    for (size_t i = 0; i < n; i++) {
        /* Only a write that landed moves its object: a parked or failed one keeps its old recipient. */
        if (outcomes[i].status != PUB_APPLY_APPLIED && outcomes[i].status != PUB_APPLY_CLEARED)
            continue;
        memcpy(written[i].recipient_id, outcomes[i].recipient_id, sizeof(written[i].recipient_id));
        memcpy(written[i].recipient_identity, outcomes[i].recipient_identity,
               sizeof(written[i].recipient_identity));
        memcpy(written[i].recipient_type, outcomes[i].recipient_type, sizeof(written[i].recipient_type));
    }
    pub_ownership_in in = {.state = p->state,
                           .rules = p->opts.owner_rules,
                           .policy = p->opts.policy,
                           .now = now_ms() / 1000,
                           .writes = writes,
                           .n = n,
                           .resolved = written,
                           .remap_only = true};
    cs_err *err = pub_ownership_plan(&in, &p->plan);
    free(written);
    if (err)
        return cs_err_wrap(err, "checking %zu writes for re-maps (the batch will be re-delivered)", n);
    size_t ne = pub_ownership_extra_count(p->plan);
    if (ne == 0)
        return NULL;
    p->extra_base = n;
    for (size_t j = 0; j < ne; j++)
        writes[n + j] = *pub_ownership_extra(p->plan, j);
    if (p->applier.apply_until) {
        /* A hung clear is cancelled after the grace too (then retried with its cause: park_failed_extras). */
        pub_apply_limits lim = {.stop = assignment_lost, .stop_ctx = p};
        size_t started = 0;
        if (p->opts.batch_max_apply_time_ms > 0 && p->opts.batch_cancel_grace_ms > 0)
            lim.cancel_at_ms = mono_ms() + p->opts.batch_cancel_grace_ms;
        err = p->applier.apply_until(p->applier.ctx, writes + n, ne, outcomes + n, &lim, &started);
    } else {
        err = p->applier.apply(p->applier.ctx, writes + n, ne, outcomes + n);
    }
    if (err)
        return cs_err_wrap(err, "clearing %zu re-mapped recipients (the batch will be re-delivered)", ne);
    return NULL;
}

/*
 * Applies writes[0..n) and starts no write once batch_max_apply_time has passed since the first (design.md:
 * stop writing well before max.poll.interval.ms). With the applier's apply_until, the writes in flight then
 * get batch_cancel_grace_ms more and whatever is unfinished after it is cancelled (reported RETRY_LATER,
 * `cancelled`: parked, so neither its state nor its offset's successors wait for it); without, apply() is
 * called apply_chunk at a time and the running chunk finishes. *n_done receives the writes applied (a prefix
 * of `writes`). With a multi-site plan the plan belongs to the whole batch: the writes not started are
 * reported RETRY_LATER (parked, as if throttled) and *n_done is n, so nothing is deferred.
 */
static cs_err *apply_bounded(pub_pipeline *p, pub_write *writes, size_t n, pub_apply_outcome *outcomes,
                             size_t *n_done)
{
    *n_done = 0;
    int64_t limit = p->opts.batch_max_apply_time_ms;
    if (p->applier.apply_until) {
        pub_apply_limits lim = {.stop = assignment_lost, .stop_ctx = p};
        if (limit > 0) {
            int64_t t0 = mono_ms();
            lim.start_until_ms = t0 + limit;
            if (p->opts.batch_cancel_grace_ms > 0)
                lim.cancel_at_ms = t0 + limit + p->opts.batch_cancel_grace_ms;
        }
        size_t started = 0, cancelled = 0;
        cs_err *err = p->applier.apply_until(p->applier.ctx, writes, n, outcomes, &lim, &started);
        if (err)
            return err;
        for (size_t i = 0; i < started; i++)
            cancelled += outcomes[i].cancelled != 0;
        if (cancelled > 0)
            cs_log_warn(FAC,
                        "batch.max_apply_time (%" PRId64 " ms) + batch.cancel_grace (%" PRId64
                        " ms) ran out with %zu writes unfinished: cancelled, not recorded as applied, parked "
                        "for a retry",
                        limit, p->opts.batch_cancel_grace_ms, cancelled);
        if (p->plan && started < n) {
            for (size_t i = started; i < n; i++) {
                pub_apply_outcome *o = &outcomes[i];
                o->status = PUB_APPLY_RETRY_LATER;
                o->retry_after_ms = 1000;
                snprintf(o->detail, sizeof o->detail,
                         "batch.max_apply_time ran out before this write started");
            }
            cs_log_warn(FAC,
                        "batch.max_apply_time (%" PRId64
                        " ms) ran out after %zu of %zu writes: the multi-site "
                        "plan is committed whole, the %zu writes not started are parked for a retry",
                        limit, started, n, n - started);
            started = n;
        }
        *n_done = started;
        return NULL;
    }
    if (limit <= 0 || p->plan) {
        cs_err *err = p->applier.apply(p->applier.ctx, writes, n, outcomes);
        if (!err)
            *n_done = n;
        return err;
    }
    size_t chunk = p->opts.apply_chunk > 0 ? (size_t)p->opts.apply_chunk : APPLY_CHUNK_DEFAULT;
    int64_t deadline = mono_ms() + limit;
    size_t done = 0;
    while (done < n && (done == 0 || mono_ms() < deadline) && !assignment_lost(p)) {
        size_t k = n - done < chunk ? n - done : chunk;
        cs_err *err = p->applier.apply(p->applier.ctx, writes + done, k, outcomes + done);
        if (err)
            return err;
        done += k;
    }
    *n_done = done;
    return NULL;
}

/*
 * The apply phase stopped after writes[0..n_done): defers, per partition, every record from the lowest offset
 * with an unstarted write on (design.md: commit up to the lowest unfinished offset per partition). Writes are in
 * record order, so within a partition every started write lies before that offset.
 */
static void defer_unstarted(pub_pipeline *p, size_t n_done)
{
    rd_kafka_topic_partition_list_t *cut = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < p->n_items; i++) {
        const item *it = &p->items[i];
        if (it->write_idx < 0 || (size_t)it->write_idx < n_done)
            continue;
        const char *t = rd_kafka_topic_name(it->msg->rkt);
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(cut, t, it->msg->partition);
        if (!tp)
            rd_kafka_topic_partition_list_add(cut, t, it->msg->partition)->offset = it->msg->offset;
        else if (it->msg->offset < tp->offset)
            tp->offset = it->msg->offset;
    }
    size_t deferred = 0;
    for (size_t i = 0; i < p->n_items; i++) {
        item *it = &p->items[i];
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(cut, rd_kafka_topic_name(it->msg->rkt), it->msg->partition);
        if (tp && it->msg->offset >= tp->offset) {
            it->deferred = 1;
            deferred++;
        }
    }
    rd_kafka_topic_partition_list_destroy(cut);
    cs_log_warn(FAC,
                "batch.max_apply_time (%" PRId64 " ms) ran out after %zu writes: committing %zu records, the "
                "other %zu are consumed again in the next batch",
                p->opts.batch_max_apply_time_ms, n_done, p->n_items - deferred, deferred);
}

/*
 * The group assignment was lost while applying (assignment_lost): the writes stopped starting; nothing of the
 * batch may be committed (its offsets would go to a generation that is gone, its state to partitions another
 * member may be restoring). No transaction is open before transact(); one is aborted all the same if it is.
 * Rewinds and returns a retriable error: the next poll runs the revoke (pub_consumer: a lost assignment is
 * revoked like any other) and the re-join; the writes made are made again from the committed offsets (the
 * same full state; the version gate decides). A failed abort stops the pipeline (fatal).
 */
static cs_err *give_up_lost_batch(pub_pipeline *p)
{
    cs_log_warn(FAC, "the group assignment was lost while applying: not committing, %zu records rewound",
                p->n_items);
    cs_kafka_producer_state st = cs_kafka_producer_get_state(p->producer);
    if (st == CS_KAFKA_PRODUCER_IN_TXN || st == CS_KAFKA_PRODUCER_ABORTABLE) {
        cs_err *ae = cs_kafka_producer_abort(p->producer);
        if (ae)
            return stop_with(p, cs_err_wrap(ae, "aborting after the group assignment was lost"));
    }
    p->stats.aborts++;
    rewind_batch(p);
    return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE,
                      "the consumer group assignment was lost while applying a batch (kafka "
                      "max.poll.interval.ms exceeded or session lost): rewound, the next poll rejoins");
}

cs_err *pub_pipeline_run_once(pub_pipeline *p, size_t *n_records)
{
    cs_err *err = NULL;
    pub_write *writes = NULL;
    pub_apply_outcome *outcomes = NULL;
    if (n_records)
        *n_records = 0;
    if (p->stopped)
        return cs_err_new(cs_err_code_of(p->stopped), cs_err_flags(p->stopped), "%s",
                          cs_err_message(p->stopped));
    batch_clear(p);
    bool paused = partial_guard(p, &err);
    if (!err && !paused)
        err = collect(p);
    if (err) {
        if (cs_err_is_fatal(err)) {
            err = stop_with(p, err);
            goto cleanup;
        }
        /* The records polled so far are dropped: move back so they are not skipped. */
        rewind_batch(p);
        goto cleanup;
    }
    if (p->n_items == 0)
        goto cleanup;
    decode_and_coalesce(p);

    /* Decide every winner against the applied state. */
    int64_t now = now_ms() / 1000;
    size_t n_writes = 0;
    /* Room for the multi-site step's extra writes too: at most two per write (pub_ownership.h). */
    writes = calloc(3 * p->n_items, sizeof(*writes));
    outcomes = calloc(3 * p->n_items, sizeof(*outcomes));
    if (!writes || !outcomes) {
        err =
            cs_err_new(CS_ERR_NOMEM, CS_ERR_F_RETRIABLE, "out of memory deciding a batch of %zu", p->n_items);
        rewind_batch(p);
        goto cleanup;
    }
    for (size_t i = 0; i < p->n_items; i++) {
        item *it = &p->items[i];
        if (!it->ev || it->superseded_by >= 0)
            continue;
        pub_applied_view view;
        bool known = pub_state_view(p->state, it->key, &view);
        err = pub_decide_with_policy(it->ev, known ? &view : NULL, p->opts.policy, now, &it->dec);
        if (err) {
            rewind_batch(p);
            goto cleanup;
        }
        pub_decision_kind kind = pub_decision_get_kind(it->dec);
        if (kind != PUB_DECISION_WRITE && kind != PUB_DECISION_CLEAR)
            continue;
        pub_write *w = &writes[n_writes];
        w->object_key = it->key;
        w->event = it->ev;
        w->clear = kind == PUB_DECISION_CLEAR;
        w->user_certificate =
            pub_decision_values(it->dec, CS_CERT_ATTR_USER_CERTIFICATE, &w->n_user_certificate);
        w->user_smime_certificate =
            pub_decision_values(it->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &w->n_user_smime_certificate);
        w->written_sha256 = pub_decision_sha256(it->dec);
        w->partition = it->msg->partition;
        w->offset = it->msg->offset;
        w->attempt = it->attempt;
        it->write_idx = (int)n_writes++;
    }
    err = multi_site_step(p, writes, &n_writes, outcomes);
    if (err) {
        rewind_batch(p);
        goto cleanup;
    }
    size_t n_done = 0;
    if (n_writes > 0) {
        err = apply_bounded(p, writes, n_writes, outcomes, &n_done);
        if (err) {
            err = cs_err_wrap(err, "applying %zu writes (the batch will be re-delivered)", n_writes);
            rewind_batch(p);
            goto cleanup;
        }
    }
    if (assignment_lost(p)) {
        err = give_up_lost_batch(p);
        goto cleanup;
    }
    if (n_done < n_writes)
        defer_unstarted(p, n_done);
    /* Only the writes made: the extras go after them (a deferred record's slot is not read again). */
    err = remap_step(p, writes, n_done, outcomes);
    if (err) {
        rewind_batch(p);
        goto cleanup;
    }

    if (assignment_lost(p)) { /* while the re-maps were cleared */
        err = give_up_lost_batch(p);
        goto cleanup;
    }
    park_failed_extras(p, outcomes);
    err = transact(p, outcomes);
    if (err) {
        if (cs_err_is_fatal(err) || cs_kafka_producer_get_state(p->producer) == CS_KAFKA_PRODUCER_FATAL) {
            err = stop_with(p, err);
            goto cleanup;
        }
        /* Requires abort (or retries ran out): abort, rewind, and let the caller run the batch again. */
        cs_log_warn(FAC, "transaction failed, aborting and re-processing %zu records: %s", p->n_items,
                    cs_err_message(err));
        cs_err *ae = cs_kafka_producer_abort(p->producer);
        for (int i = 0; ae && cs_err_is_retriable(ae) && i < COMMIT_RETRIES; i++) {
            cs_err_free(ae);
            ae = cs_kafka_producer_abort(p->producer);
        }
        if (ae) {
            cs_err_free(err);
            err = stop_with(p, cs_err_wrap(ae, "aborting the failed transaction"));
            goto cleanup;
        }
        p->stats.aborts++;
        rewind_batch(p);
        cs_err *retry = cs_err_new(cs_err_code_of(err), CS_ERR_F_RETRIABLE, "batch aborted and rewound: %s",
                                   cs_err_message(err));
        cs_err_free(err);
        err = retry;
        goto cleanup;
    }

    /* Committed: now, and only now, the in-memory state and the counters move. */
    for (size_t i = 0; i < p->n_pending; i++) {
        pending_state *ps = &p->pending[i];
        cs_err *e =
            pub_state_put(p->state, ps->partition, ps->key, strlen(ps->key), ps->value, ps->value_len);
        if (e) {
            cs_log_error(FAC, "%s", cs_err_message(e));
            cs_err_free(e);
        }
    }
    p->stats.events += p->batch_stats.events;
    p->stats.applied += p->batch_stats.applied;
    p->stats.cleared += p->batch_stats.cleared;
    p->stats.skipped_stale += p->batch_stats.skipped_stale;
    p->stats.skipped_duplicate += p->batch_stats.skipped_duplicate;
    p->stats.skipped_not_owner += p->batch_stats.skipped_not_owner;
    p->stats.owner_writes += p->batch_stats.owner_writes;
    p->stats.dead_lettered += p->batch_stats.dead_lettered;
    p->stats.parked += p->batch_stats.parked;
    p->stats.commits++;
    size_t committed = 0;
    for (size_t i = 0; i < p->n_items; i++)
        committed += !p->items[i].deferred;
    if (committed < p->n_items) {
        p->stats.apply_time_cuts++;
        seek_back(p, OFFSETS_DEFERRED);
    }
    /* Policy refusals: logged and counted once the batch is committed (a rewound batch is decided again). */
    for (size_t i = 0; i < p->n_items; i++) {
        const item *it = &p->items[i];
        for (size_t r = 0; it->dec && !it->deferred && r < pub_decision_refusal_count(it->dec); r++) {
            cs_policy_rules rules = pub_decision_refusal_rules(it->dec, r);
            cs_log_kv(CS_LOG_WARN, "policy", pub_decision_refusal_message(it->dec, r), "key", it->key, NULL);
            for (unsigned k = 0; k < CS_POLICY_RULE_COUNT; k++)
                if (rules & CS_POLICY_RULE_BIT(k))
                    p->stats.policy_refusals[k]++;
        }
    }
    if (n_records)
        *n_records = committed;
cleanup:
    free(writes);
    free(outcomes);
    batch_clear(p);
    return err;
}
