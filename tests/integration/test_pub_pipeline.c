/*
 * pub_pipeline against the real Kafka broker (tests/services/kafka.sh) with a recording test applier:
 * exactly one result per event with state and offsets in the same transaction, stale/duplicate skips,
 * in-batch coalescing, dead letters for undecodable records, abort and re-process, restore on restart,
 * fencing, and two members of one group through a rebalance.
 * Every test creates its own topics and group.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_event.h"
#include "cs_kafka_producer.h"
#include "cs_state_reader.h"
#include "kafka_test_util.h"
#include "pub_test_support.h"
#include "pub_pipeline.h"

#define LOAD_TIMEOUT_MS 30000
#define MAX_LOG 20000
#define MAX_KEYS 64

/* ------------------------------------------------------------------ recording applier */

typedef struct logged_write {
    char key[64];
    uint32_t version;
    int clear;
    char content[64]; /* first userCertificate value as text ("" when none) */
    int who;
} logged_write;

typedef struct recorder {
    pthread_mutex_t mu;
    logged_write log[MAX_LOG];
    size_t n;
    int who;                  /* tag of the pipeline using this applier view */
    int retry_once_key_index; /* -1: none */
    int retried;
    int quiesced;
    int delay_ms; /* each apply() call takes this long: a slow Office 365 */
    size_t calls;
} recorder;

typedef struct applier_view {
    recorder *r;
    int who;
} applier_view;

static cs_err *rec_apply(void *ctx, const pub_write *w, size_t n, pub_apply_outcome *out)
{
    applier_view *v = ctx;
    recorder *r = v->r;
    if (r->delay_ms > 0) {
        struct timespec ts = {.tv_sec = r->delay_ms / 1000, .tv_nsec = (long)(r->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&r->mu);
    r->calls++;
    for (size_t i = 0; i < n; i++) {
        if (r->retry_once_key_index >= 0 && !r->retried) {
            char want[32];
            snprintf(want, sizeof(want), "src/obj%d", r->retry_once_key_index);
            if (strcmp(w[i].object_key, want) == 0) {
                r->retried = 1;
                out[i].status = PUB_APPLY_RETRY_LATER;
                out[i].retry_after_ms = 300;
                snprintf(out[i].detail, sizeof(out[i].detail), "throttled (test)");
                continue;
            }
        }
        if (r->n < MAX_LOG) {
            logged_write *l = &r->log[r->n++];
            snprintf(l->key, sizeof(l->key), "%s", w[i].object_key);
            l->version = w[i].event->version->user_certificate->version;
            l->clear = w[i].clear;
            l->who = v->who;
            if (w[i].n_user_certificate > 0)
                snprintf(l->content, sizeof(l->content), "%.*s", (int)w[i].user_certificate[0].len,
                         (const char *)w[i].user_certificate[0].data);
        }
        out[i].status = w[i].clear ? PUB_APPLY_CLEARED : PUB_APPLY_APPLIED;
        snprintf(out[i].recipient_id, sizeof(out[i].recipient_id), "r-%s", w[i].object_key);
        snprintf(out[i].cmdlet, sizeof(out[i].cmdlet), "Set-Mailbox");
        out[i].attempts = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void rec_quiesce(void *ctx)
{
    applier_view *v = ctx;
    pthread_mutex_lock(&v->r->mu);
    v->r->quiesced++;
    pthread_mutex_unlock(&v->r->mu);
}

static size_t writes_of(recorder *r, const char *key)
{
    size_t c = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        c += strcmp(r->log[i].key, key) == 0;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* ------------------------------------------------------------------ topics, events */

typedef pts_topics env; /* per-test topics, group and plain producer for events (no instance id) */

static void env_new(env *e, int parts)
{
    pts_topics_new(e, "pub", parts, 1, 0);
}

static void produce_raw(env *e, int32_t part, const char *key, const void *val, size_t len)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        e->prod, RD_KAFKA_V_TOPIC(e->events), RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)(uintptr_t)val, len), RD_KAFKA_V_HEADER("origin", "test", 4),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Produces object `k` at version `v` with content `content` (one fake userCertificate value) to partition
 * k % parts; returns after delivery. */
static void produce_event(env *e, int k, uint32_t v, const char *content, int removal)
{
    char oid[32], key[48];
    snprintf(oid, sizeof(oid), "obj%d", k);
    snprintf(key, sizeof(key), "src/obj%d", k);
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue *cvp = &cv;
    char src_id[] = "src";
    src.source_id = src_id;
    id.object_id = oid;
    st.has_version = 1;
    st.version = v;
    ver.user_certificate = &st;
    ev.has_kind = 1;
    ev.kind = removal ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL
                      : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    if (content && !removal) {
        cv.has_raw = 1;
        cv.raw.data = (uint8_t *)(uintptr_t)content;
        cv.raw.len = strlen(content);
        ev.user_certificate = &cvp;
        ev.n_user_certificate = 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_null(cs_event_encode(&ev, &buf, &len));
    produce_raw(e, k % e->parts, key, buf, len);
    free(buf);
}

static void flush(env *e)
{
    assert_int_equal(rd_kafka_flush(e->prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* ------------------------------------------------------------------ pipelines */

typedef struct fault {
    int fail_next; /* number of commits to fail */
} fault;

static int fault_cb(void *ctx)
{
    fault *f = ctx;
    if (f->fail_next > 0) {
        f->fail_next--;
        return 1;
    }
    return 0;
}

/* batch_max_apply_time_ms and apply_chunk of the next new_pipeline() (0: unbounded). */
static int64_t g_apply_time_ms;
static int g_apply_chunk;

static pub_pipeline *new_pipeline(env *e, const char *txn_id, applier_view *view, fault *f)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", e->group, errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "transactional.id", txn_id, errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "transaction.timeout.ms", "20000", errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "heartbeat.interval.ms", "500", errstr, sizeof(errstr)), 0);
    pub_pipeline_opts o = {.topic_events = e->events,
                           .topic_state = e->state,
                           .topic_results = e->results,
                           .topic_dlq = e->dlq,
                           .topic_retry = e->retry,
                           .instance_id = txn_id,
                           .batch_max_events = 100,
                           .batch_max_wait_ms = 300,
                           .restore_timeout_ms = 30000,
                           .batch_max_apply_time_ms = g_apply_time_ms,
                           .apply_chunk = g_apply_chunk,
                           .fault_before_commit = f ? fault_cb : NULL,
                           .fault_ctx = f};
    pub_applier a = {.apply = rec_apply, .quiesce = rec_quiesce, .ctx = view};
    pub_pipeline *p = NULL;
    cs_err *err = pub_pipeline_new(conf, &o, &a, &p);
    if (!err)
        err = pub_pipeline_start(p, 30000);
    if (err)
        fail_msg("%s", cs_err_message(err));
    return p;
}

/* Runs batches until `want` records are committed in total (bounded: 60 s). Retriable errors are retried. */
static void run_until(pub_pipeline *p, uint64_t want)
{
    time_t end = time(NULL) + 60;
    pub_pipeline_stats s;
    for (;;) {
        pub_pipeline_get_stats(p, &s);
        if (s.events >= want)
            break;
        if (time(NULL) > end)
            fail_msg("only %" PRIu64 " of %" PRIu64 " records committed in 60 s", s.events, want);
        cs_err *err = pub_pipeline_run_once(p, NULL);
        if (err) {
            if (cs_err_is_fatal(err))
                fail_msg("%s", cs_err_message(err));
            cs_err_free(err);
        }
    }
}

/* ------------------------------------------------------------------ reading back */

typedef struct results {
    size_t n;
    struct {
        char key[64];
        int32_t partition;
        int64_t offset;
        Certsync__V1__Outcome outcome;
        char detail[160];
    } r[MAX_LOG];
} results;

static cs_err *collect_result(const cs_state_record *rec, void *opaque)
{
    results *rs = opaque;
    Certsync__V1__PublishResult *r = certsync__v1__publish_result__unpack(NULL, rec->value_len, rec->value);
    assert_non_null(r);
    assert_true(rs->n < MAX_LOG);
    snprintf(rs->r[rs->n].key, sizeof(rs->r[0].key), "%s", r->object_key ? r->object_key : "");
    rs->r[rs->n].partition = r->event_partition;
    rs->r[rs->n].offset = r->event_offset;
    rs->r[rs->n].outcome = r->outcome;
    snprintf(rs->r[rs->n].detail, sizeof(rs->r[0].detail), "%s", r->detail ? r->detail : "");
    rs->n++;
    certsync__v1__publish_result__free_unpacked(r, NULL);
    return NULL;
}

static results *read_results(env *e)
{
    results *rs = calloc(1, sizeof(*rs));
    assert_non_null(rs);
    kt_wait_stable(e->results, 1);
    cs_err *err =
        cs_state_reader_load(kt_conf(), e->results, NULL, 0, LOAD_TIMEOUT_MS, collect_result, rs, NULL);
    if (err)
        fail_msg("%s", cs_err_message(err));
    return rs;
}

static size_t count_outcome(const results *rs, Certsync__V1__Outcome o)
{
    size_t c = 0;
    for (size_t i = 0; i < rs->n; i++)
        c += rs->r[i].outcome == o;
    return c;
}

/* Exactly one result per (partition, offset) of the events topic for offsets [0, end[p]). Retry-topic
 * records also produce results; they are told apart by their detail/outcome and excluded by the caller. */
static void assert_one_result_per_event(const results *rs, env *e, const int64_t *end)
{
    for (int p = 0; p < e->parts; p++)
        for (int64_t o = 0; o < end[p]; o++) {
            int c = 0;
            for (size_t i = 0; i < rs->n; i++)
                c += rs->r[i].partition == p && rs->r[i].offset == o;
            if (c != 1)
                fail_msg("events[%d]@%" PRId64 " has %d results, want 1", p, o, c);
        }
}

static void high_watermarks(env *e, int64_t *end)
{
    for (int p = 0; p < e->parts; p++) {
        int64_t lo = 0;
        assert_int_equal(rd_kafka_query_watermark_offsets(e->prod, e->events, p, &lo, &end[p], 10000), 0);
    }
}

typedef struct states {
    int n_obj, n_rcpt;
    int bad_partition;
} states;

static cs_err *collect_state(const cs_state_record *rec, void *opaque)
{
    states *s = opaque;
    Certsync__V1__AppliedStateRecord *r =
        certsync__v1__applied_state_record__unpack(NULL, rec->value_len, rec->value);
    assert_non_null(r);
    if (r->state_case == CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT) {
        s->n_obj++;
        if (r->object->event_partition != rec->partition)
            s->bad_partition++;
    } else {
        s->n_rcpt++;
    }
    certsync__v1__applied_state_record__free_unpacked(r, NULL);
    return NULL;
}

static rd_kafka_t *group_reader(env *e)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", e->group, errstr, sizeof(errstr)), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

static recorder *recorder_new(void)
{
    recorder *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    pthread_mutex_init(&r->mu, NULL);
    r->retry_once_key_index = -1;
    return r;
}

static void recorder_free(recorder *r)
{
    pthread_mutex_destroy(&r->mu);
    free(r);
}

typedef struct dl_seen {
    int n;
    int unused;
    Certsync__V1__DeadLetter *last;
} dl_seen;

static cs_err *collect_dl(const cs_state_record *rec, void *opaque)
{
    dl_seen *d = opaque;
    if (d->last)
        certsync__v1__dead_letter__free_unpacked(d->last, NULL);
    d->last = certsync__v1__dead_letter__unpack(NULL, rec->value_len, rec->value);
    assert_non_null(d->last);
    d->n++;
    return NULL;
}

/* ------------------------------------------------------------------ tests */

/*
 * 10 objects -> 10 results, obj/ and rcpt/ state for each on the event's partition, group offsets at the end.
 * Then: an equal version (stale), a newer version with the same content (duplicate), v2+v3 of one key in one
 * batch (only v3 written), an undecodable record followed by a good one on the same partition.
 */
static void exactly_once_gate_coalesce_dead_letter(void **state)
{
    (void)state;
    env e;
    env_new(&e, 2);
    recorder *r = recorder_new();
    applier_view v = {r, 1};
    char *txn = kt_unique_name("pub-txn");
    for (int k = 0; k < 10; k++) {
        char c[32];
        snprintf(c, sizeof(c), "cert-%d-v1", k);
        produce_event(&e, k, 1, c, 0);
    }
    flush(&e);
    pub_pipeline *p = new_pipeline(&e, txn, &v, NULL);
    run_until(p, 10);
    assert_int_equal(r->n, 10);

    int64_t end[2];
    high_watermarks(&e, end);
    rd_kafka_t *g = group_reader(&e);
    for (int part = 0; part < 2; part++)
        assert_int_equal(kt_wait_committed_offset(g, e.events, part, end[part]), end[part]);
    kt_wait_stable(e.state, 2);
    states st = {0};
    assert_null(cs_state_reader_load(kt_conf(), e.state, NULL, 0, LOAD_TIMEOUT_MS, collect_state, &st, NULL));
    assert_int_equal(st.n_obj, 10);
    assert_int_equal(st.n_rcpt, 10);
    assert_int_equal(st.bad_partition, 0);

    /* Round 2. obj0: v1 again (equal -> stale). obj1: v2, same content (duplicate). obj2: v2 then v3 in one batch.
     * Partition 0 (even keys): garbage, then obj4 v2 (the partition continues). */
    produce_event(&e, 0, 1, "cert-0-v1", 0);
    produce_event(&e, 1, 2, "cert-1-v1", 0);
    produce_event(&e, 2, 2, "cert-2-v2", 0);
    produce_event(&e, 2, 3, "cert-2-v3", 0);
    static const unsigned char garbage[] = {0xff, 0x00, 0x13, 0x37, 0xde, 0xad};
    produce_raw(&e, 0, "foreign/key", garbage, sizeof(garbage));
    produce_event(&e, 4, 2, "cert-4-v2", 0);
    flush(&e);
    run_until(p, 16);

    assert_int_equal(writes_of(r, "src/obj0"), 1);
    assert_int_equal(writes_of(r, "src/obj1"), 1);
    assert_int_equal(writes_of(r, "src/obj2"), 2);
    assert_int_equal(writes_of(r, "src/obj4"), 2);
    int saw_v3 = 0, saw_v2_of_2 = 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->log[i].key, "src/obj2") == 0) {
            saw_v3 += r->log[i].version == 3 && strcmp(r->log[i].content, "cert-2-v3") == 0;
            saw_v2_of_2 += r->log[i].version == 2;
        }
    assert_int_equal(saw_v3, 1);
    assert_int_equal(saw_v2_of_2, 0);

    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.applied, 12);
    assert_int_equal(s.skipped_stale, 2); /* obj0 equal, obj2 v2 superseded */
    assert_int_equal(s.skipped_duplicate, 1);
    assert_int_equal(s.dead_lettered, 1);

    high_watermarks(&e, end);
    for (int part = 0; part < 2; part++)
        assert_int_equal(kt_wait_committed_offset(g, e.events, part, end[part]), end[part]);
    results *rs = read_results(&e);
    assert_int_equal(rs->n, 16);
    assert_one_result_per_event(rs, &e, end);
    assert_int_equal(count_outcome(rs, CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_DUPLICATE), 1);
    assert_int_equal(count_outcome(rs, CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED), 1);
    int superseded = 0;
    for (size_t i = 0; i < rs->n; i++)
        superseded += strstr(rs->r[i].detail, "superseded") != NULL;
    assert_int_equal(superseded, 1);
    free(rs);

    /* The dead letter carries the original bytes, key, header and position. */
    dl_seen ds = {0, 0, NULL};
    kt_wait_stable(e.dlq, 1);
    assert_null(cs_state_reader_load(kt_conf(), e.dlq, NULL, 0, LOAD_TIMEOUT_MS, collect_dl, &ds, NULL));
    assert_int_equal(ds.n, 1);
    assert_non_null(ds.last);
    assert_int_equal(ds.last->reason, CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNDECODABLE);
    assert_int_equal(ds.last->original_value.len, sizeof(garbage));
    assert_memory_equal(ds.last->original_value.data, garbage, sizeof(garbage));
    assert_int_equal(ds.last->original_key.len, strlen("foreign/key"));
    assert_memory_equal(ds.last->original_key.data, "foreign/key", strlen("foreign/key"));
    assert_string_equal(ds.last->source_topic, e.events);
    assert_int_equal(ds.last->source_partition, 0);
    assert_int_equal(ds.last->n_original_headers, 1);
    assert_string_equal(ds.last->original_headers[0]->key, "origin");
    assert_non_null(strstr(ds.last->detail, "ChangeEvent"));
    certsync__v1__dead_letter__free_unpacked(ds.last, NULL);
    pub_pipeline_destroy(p);
    rd_kafka_destroy(g);
    recorder_free(r);
    free(txn);
    pts_topics_free(&e);
}

/* A transaction that must abort is re-processed: every write repeats identically, one result per event. */
static void abort_reprocesses_identically(void **state)
{
    (void)state;
    env e;
    env_new(&e, 2);
    recorder *r = recorder_new();
    applier_view v = {r, 1};
    fault f = {.fail_next = 1};
    char *txn = kt_unique_name("pub-txn");
    for (int k = 0; k < 6; k++) {
        char c[32];
        snprintf(c, sizeof(c), "cert-%d-v1", k);
        produce_event(&e, k, 1, c, 0);
    }
    flush(&e);
    pub_pipeline *p = new_pipeline(&e, txn, &v, &f);
    run_until(p, 6);
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.aborts, 1);
    assert_int_equal(s.applied, 6);
    assert_int_equal(r->n, 12);
    for (int k = 0; k < 6; k++) {
        char key[32];
        snprintf(key, sizeof(key), "src/obj%d", k);
        const logged_write *first = NULL;
        for (size_t i = 0; i < r->n; i++) {
            if (strcmp(r->log[i].key, key) != 0)
                continue;
            if (!first) {
                first = &r->log[i];
                continue;
            }
            assert_int_equal(r->log[i].version, first->version);
            assert_string_equal(r->log[i].content, first->content);
        }
        assert_int_equal(writes_of(r, key), 2);
    }
    int64_t end[2];
    high_watermarks(&e, end);
    results *rs = read_results(&e);
    assert_int_equal(rs->n, 6);
    assert_one_result_per_event(rs, &e, end);
    free(rs);
    pub_pipeline_destroy(p);
    recorder_free(r);
    free(txn);
    pts_topics_free(&e);
}

/*
 * Issue 5: a slow applier (250 ms per call of 2 writes) and batch_max_apply_time 300 ms: each batch applies two
 * calls, commits those records and seeks each partition back to its first unstarted write. Every event gets
 * exactly one result, every object is written once, with its newest version (coalesced in the first batch).
 */
static void apply_time_cut_commits_prefix(void **state)
{
    (void)state;
    env e;
    env_new(&e, 2);
    recorder *r = recorder_new();
    r->delay_ms = 250;
    applier_view v = {r, 1};
    char *txn = kt_unique_name("pub-txn");
    for (int k = 0; k < 16; k++) {
        char c[32];
        snprintf(c, sizeof(c), "cert-%d-v1", k);
        produce_event(&e, k, 1, c, 0);
    }
    produce_event(&e, 15, 2, "cert-15-v2", 0); /* supersedes version 1 in the same batch */
    flush(&e);
    g_apply_time_ms = 300;
    g_apply_chunk = 2;
    pub_pipeline *p = new_pipeline(&e, txn, &v, NULL);
    g_apply_time_ms = 0;
    g_apply_chunk = 0;
    run_until(p, 17);
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.aborts, 0);
    assert_int_equal(s.applied, 16);
    assert_true(s.apply_time_cuts >= 3); /* 16 writes, at most 4 per batch */
    assert_true(s.commits >= 4);
    assert_int_equal(r->n, 16);
    for (int k = 0; k < 16; k++) {
        char key[32];
        snprintf(key, sizeof(key), "src/obj%d", k);
        assert_int_equal(writes_of(r, key), 1);
    }
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->log[i].key, "src/obj15") == 0)
            assert_string_equal(r->log[i].content, "cert-15-v2");
    int64_t end[2];
    high_watermarks(&e, end);
    results *rs = read_results(&e);
    assert_int_equal(rs->n, 17);
    assert_one_result_per_event(rs, &e, end);
    free(rs);
    pub_pipeline_destroy(p);
    recorder_free(r);
    free(txn);
    pts_topics_free(&e);
}

/* A new instance restores the applied state on assignment and does not re-write what was committed. */
static void restart_restores_state(void **state)
{
    (void)state;
    env e;
    env_new(&e, 2);
    recorder *r1 = recorder_new(), *r2 = recorder_new();
    applier_view v1 = {r1, 1}, v2 = {r2, 2};
    char *txn1 = kt_unique_name("pub-txn"), *txn2 = kt_unique_name("pub-txn");
    for (int k = 0; k < 6; k++) {
        char c[32];
        snprintf(c, sizeof(c), "cert-%d-v1", k);
        produce_event(&e, k, 1, c, 0);
    }
    flush(&e);
    pub_pipeline *p = new_pipeline(&e, txn1, &v1, NULL);
    run_until(p, 6);
    assert_int_equal(r1->n, 6);
    pub_pipeline_destroy(p);

    /* The same states delivered again (a collector resync), and one real change. */
    for (int k = 0; k < 6; k++) {
        char c[32];
        snprintf(c, sizeof(c), "cert-%d-v1", k);
        produce_event(&e, k, 1, c, 0);
    }
    produce_event(&e, 0, 2, "cert-0-v2", 0);
    flush(&e);
    p = new_pipeline(&e, txn2, &v2, NULL);
    run_until(p, 7);
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.events, 7); /* started at the committed offsets */
    assert_int_equal(s.restored_records, 12);
    assert_int_equal(s.skipped_stale, 6);
    assert_int_equal(r2->n, 1);
    assert_string_equal(r2->log[0].key, "src/obj0");
    assert_int_equal(r2->log[0].version, 2);
    assert_true(pub_pipeline_state_count(p) >= 12);
    int64_t end[2];
    high_watermarks(&e, end);
    results *rs = read_results(&e);
    assert_int_equal(rs->n, 13);
    assert_one_result_per_event(rs, &e, end);
    free(rs);
    pub_pipeline_destroy(p);
    recorder_free(r1);
    recorder_free(r2);
    free(txn1);
    free(txn2);
    pts_topics_free(&e);
}

/* A second instance with the same transactional.id fences the first: its commit fails, it never commits again. */
static void same_transactional_id_fences(void **state)
{
    (void)state;
    env e;
    env_new(&e, 1);
    recorder *r = recorder_new();
    applier_view v = {r, 1}, v2 = {r, 2};
    char *txn = kt_unique_name("pub-txn");
    for (int k = 0; k < 4; k++)
        produce_event(&e, k, 1, "cert-v1", 0);
    flush(&e);
    pub_pipeline *a = new_pipeline(&e, txn, &v, NULL);
    run_until(a, 4);

    /* The newer instance (another group, so it does not take A's partition) runs init_transactions. */
    char *own_group = e.group;
    e.group = kt_unique_name("pub-group-b");
    pub_pipeline *b = new_pipeline(&e, txn, &v2, NULL);
    free(e.group);
    e.group = own_group;

    produce_event(&e, 4, 1, "cert-v1", 0);
    produce_event(&e, 5, 1, "cert-v1", 0);
    flush(&e);
    cs_err *err = NULL;
    time_t end = time(NULL) + 60;
    while (!err && time(NULL) < end)
        err = pub_pipeline_run_once(a, NULL);
    assert_non_null(err);
    assert_true(cs_err_is_fatal(err));
    assert_true(cs_kafka_producer_is_fenced(err));
    cs_err_free(err);
    err = pub_pipeline_run_once(a, NULL);
    assert_non_null(err);
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);
    pub_pipeline_stats s;
    pub_pipeline_get_stats(a, &s);
    assert_int_equal(s.events, 4);
    results *rs = read_results(&e);
    assert_int_equal(rs->n, 4); /* nothing of the fenced batch was committed */
    free(rs);
    pub_pipeline_destroy(a);
    pub_pipeline_destroy(b);
    recorder_free(r);
    free(txn);
    pts_topics_free(&e);
}

/* A RETRY_LATER outcome parks the event in the retry topic; it comes back after its not-before time. */
static void retry_later_parks_and_returns(void **state)
{
    (void)state;
    env e;
    env_new(&e, 2);
    recorder *r = recorder_new();
    r->retry_once_key_index = 3;
    applier_view v = {r, 1};
    char *txn = kt_unique_name("pub-txn");
    for (int k = 0; k < 5; k++)
        produce_event(&e, k, 1, "cert-v1", 0);
    flush(&e);
    pub_pipeline *p = new_pipeline(&e, txn, &v, NULL);
    run_until(p, 6); /* 5 events + the parked record coming back */
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.parked, 1);
    assert_int_equal(s.applied, 5);
    assert_int_equal(writes_of(r, "src/obj3"), 1);
    results *rs = read_results(&e);
    assert_int_equal(rs->n, 6);
    assert_int_equal(count_outcome(rs, CERTSYNC__V1__OUTCOME__OUTCOME_PARKED), 1);
    assert_int_equal(count_outcome(rs, CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED), 5);
    free(rs);
    pub_pipeline_destroy(p);
    recorder_free(r);
    free(txn);
    pts_topics_free(&e);
}

/* ---- two members of one group, a rebalance mid-stream */

typedef struct member {
    pub_pipeline *p;
    volatile int stop; /* set by the main thread; the worker polls it between batches */
    char error[512];
    pthread_mutex_t *mu;
} member;

static void *member_run(void *arg)
{
    member *m = arg;
    for (;;) {
        pthread_mutex_lock(m->mu);
        int stop = m->stop;
        pthread_mutex_unlock(m->mu);
        if (stop)
            break;
        cs_err *err = pub_pipeline_run_once(m->p, NULL);
        if (err) {
            if (cs_err_is_fatal(err)) {
                snprintf(m->error, sizeof(m->error), "%s", cs_err_message(err));
                cs_err_free(err);
                break;
            }
            cs_err_free(err);
        }
    }
    pub_pipeline_destroy(m->p); /* leaves the group: the other member gets its partitions */
    m->p = NULL;
    return NULL;
}

static void member_stop(member *m, pthread_t t)
{
    pthread_mutex_lock(m->mu);
    m->stop = 1;
    pthread_mutex_unlock(m->mu);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (m->error[0])
        fail_msg("member failed: %s", m->error);
}

static size_t writes_by(recorder *r, int who)
{
    size_t c = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        c += r->log[i].who == who;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* Waits (bounded) until the applier log holds at least `n` writes by `who` (0: anyone). */
static void wait_writes(recorder *r, int who, size_t n)
{
    for (int i = 0; i < 600; i++) {
        size_t c = who ? writes_by(r, who) : (pthread_mutex_lock(&r->mu), r->n);
        if (!who)
            pthread_mutex_unlock(&r->mu);
        if (c >= n)
            return;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("fewer than %zu writes by %d in 60 s", n, who);
}

static void produce_round(env *e, int keys, uint32_t round)
{
    for (int k = 0; k < keys; k++) {
        char c[32];
        snprintf(c, sizeof(c), "cert-%d-v%u", k, round);
        produce_event(e, k, round, c, 0);
    }
    flush(e);
}

static void two_members_rebalance(void **state)
{
    (void)state;
    enum { KEYS = 16, ROUNDS = 30 };
    env e;
    env_new(&e, 4);
    recorder *r = recorder_new();
    applier_view va = {r, 1}, vb = {r, 2};
    char *ta = kt_unique_name("pub-txn-a"), *tb = kt_unique_name("pub-txn-b");
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    member ma = {.mu = &mu}, mb = {.mu = &mu};
    pthread_t tha, thb;

    ma.p = new_pipeline(&e, ta, &va, NULL);
    assert_int_equal(pthread_create(&tha, NULL, member_run, &ma), 0);
    for (uint32_t round = 1; round <= 10; round++)
        produce_round(&e, KEYS, round);
    wait_writes(r, 1, KEYS);

    /* B joins mid-stream: eager rebalance, A gives up half of the partitions. */
    mb.p = new_pipeline(&e, tb, &vb, NULL);
    assert_int_equal(pthread_create(&thb, NULL, member_run, &mb), 0);
    for (uint32_t round = 11; round <= 20; round++) {
        produce_round(&e, KEYS, round);
        struct timespec ts = {0, 100 * 1000 * 1000}; /* pace the stream so the rebalance falls inside it */
        nanosleep(&ts, NULL);
    }
    wait_writes(r, 2, 1);
    /* B leaves mid-stream: another rebalance, A takes everything back. */
    member_stop(&mb, thb);
    for (uint32_t round = 21; round <= ROUNDS; round++)
        produce_round(&e, KEYS, round);

    /* Wait until every event has its result (bounded). */
    int64_t end[4];
    high_watermarks(&e, end);
    int64_t total = end[0] + end[1] + end[2] + end[3];
    assert_int_equal(total, KEYS * ROUNDS);
    results *rs = NULL;
    for (int i = 0; i < 120; i++) {
        free(rs);
        rs = read_results(&e);
        if ((int64_t)rs->n >= total)
            break;
    }
    member_stop(&ma, tha);
    assert_int_equal((int64_t)rs->n, total);
    assert_one_result_per_event(rs, &e, end);
    free(rs);

    /* Nothing older over newer, and every key ends at its newest version. */
    assert_true(writes_by(r, 2) > 0);
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "src/obj%d", k);
        uint32_t last = 0;
        for (size_t i = 0; i < r->n; i++) {
            if (strcmp(r->log[i].key, key) != 0)
                continue;
            if (r->log[i].version < last)
                fail_msg("%s: v%u written after v%u (by member %d)", key, r->log[i].version, last,
                         r->log[i].who);
            last = r->log[i].version;
        }
        assert_int_equal(last, ROUNDS);
    }
    recorder_free(r);
    free(ta);
    free(tb);
    pts_topics_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exactly_once_gate_coalesce_dead_letter),
        cmocka_unit_test(abort_reprocesses_identically),
        cmocka_unit_test(apply_time_cut_commits_prefix),
        cmocka_unit_test(restart_restores_state),
        cmocka_unit_test(same_transactional_id_fences),
        cmocka_unit_test(retry_later_parks_and_returns),
        cmocka_unit_test(two_members_rebalance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
