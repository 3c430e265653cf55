/*
 * The publisher's multi-site step (pub_ownership) through the real pipeline and Kafka broker, with a test
 * applier whose resolve step maps each object key to a recipient the test chooses:
 *   - re-map: an object that now resolves to another recipient writes the new one AND clears the old one,
 *     once (a restart does not clear again);
 *   - precedence: with sources.priority [a, b], b's change to a person a has is SKIPPED_NOT_OWNER (no
 *     write), a's change writes once, a's certificates removed hands the recipient to b with one write;
 *   - partial assignment: with sources.priority set, two members sharing the events partitions pause and
 *     write nothing.
 * Every test creates its own topics and group.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_event.h"
#include "cs_state_reader.h"
#include "kafka_test_util.h"
#include "pub_owner.h"
#include "pub_pipeline.h"
#include "pub_state.h"
#include "pub_test_support.h"

#define LOAD_TIMEOUT_MS 30000
#define MAX_LOG 256
#define MAX_MAP 16

/* ------------------------------------------------------------------ mapping applier */

typedef struct logged {
    char key[64];
    char rcpt[64];
    int clear;
    char content[64]; /* first userCertificate value as text ("" when none) */
} logged;

typedef struct mapper {
    struct {
        char key[64];
        char rcpt[64];
    } map[MAX_MAP];
    size_t n_map;
    logged log[MAX_LOG];
    size_t n;
    size_t resolves;
    /* The next fail_count extra writes (pre-resolved: handovers, clears) to fail_rcpt end as fail_status
     * instead of being written (fail_extra). */
    char fail_rcpt[64];
    pub_apply_status fail_status;
    int fail_count;
    /* apply_until: with a start deadline, the next call starts only this many writes (the deadline
     * "passes" after them); 0: all. */
    size_t start_limit;
    /* apply_until: the next call makes its first write, then waits (bounded) until pub_apply_limits.stop says
     * the assignment is lost, and starts nothing more (as pub_o365 does); stop_seen: it did. */
    int hold_until_lost;
    int stop_seen;
} mapper;

static void map_set(mapper *m, const char *key, const char *rcpt)
{
    for (size_t i = 0; i < m->n_map; i++) {
        if (strcmp(m->map[i].key, key) == 0) {
            snprintf(m->map[i].rcpt, sizeof m->map[i].rcpt, "%s", rcpt);
            return;
        }
    }
    assert_true(m->n_map < MAX_MAP);
    snprintf(m->map[m->n_map].key, sizeof m->map[0].key, "%s", key);
    snprintf(m->map[m->n_map].rcpt, sizeof m->map[0].rcpt, "%s", rcpt);
    m->n_map++;
}

static const char *map_get(const mapper *m, const char *key)
{
    for (size_t i = 0; i < m->n_map; i++)
        if (strcmp(m->map[i].key, key) == 0)
            return m->map[i].rcpt;
    return NULL;
}

static void fill_recipient(pub_apply_outcome *o, const char *rcpt)
{
    snprintf(o->recipient_id, sizeof o->recipient_id, "%s", rcpt);
    snprintf(o->recipient_identity, sizeof o->recipient_identity, "%s", rcpt);
    snprintf(o->recipient_type, sizeof o->recipient_type, "UserMailbox");
}

static cs_err *map_resolve(void *ctx, const pub_write *w, size_t n, pub_apply_outcome *out)
{
    mapper *m = ctx;
    for (size_t i = 0; i < n; i++) {
        const char *r = map_get(m, w[i].object_key);
        m->resolves++;
        if (r && !w[i].recipient)
            fill_recipient(&out[i], r);
    }
    return NULL;
}

static cs_err *map_apply(void *ctx, const pub_write *w, size_t n, pub_apply_outcome *out)
{
    mapper *m = ctx;
    for (size_t i = 0; i < n; i++) {
        const char *r =
            w[i].recipient ? w[i].recipient->external_directory_object_id : map_get(m, w[i].object_key);
        assert_non_null(r);
        if (w[i].recipient && m->fail_count > 0 && strcmp(r, m->fail_rcpt) == 0) {
            m->fail_count--;
            out[i].status = m->fail_status;
            out[i].reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_WRITE_SCOPE;
            snprintf(out[i].detail, sizeof out[i].detail, "injected failure writing %s", r);
            continue;
        }
        assert_true(m->n < MAX_LOG);
        logged *l = &m->log[m->n++];
        snprintf(l->key, sizeof l->key, "%s", w[i].object_key);
        snprintf(l->rcpt, sizeof l->rcpt, "%s", r);
        l->clear = w[i].clear || (w[i].n_user_certificate == 0 && w[i].n_user_smime_certificate == 0);
        if (w[i].n_user_certificate > 0)
            snprintf(l->content, sizeof l->content, "%.*s", (int)w[i].user_certificate[0].len,
                     (const char *)w[i].user_certificate[0].data);
        out[i].status = w[i].clear ? PUB_APPLY_CLEARED : PUB_APPLY_APPLIED;
        fill_recipient(&out[i], r);
        snprintf(out[i].cmdlet, sizeof out[i].cmdlet, "Set-Mailbox");
        out[i].attempts = 1;
    }
    return NULL;
}

/* Makes the next `count` extra writes to `rcpt` end as `st` (not written). */
static void fail_extra(mapper *m, const char *rcpt, pub_apply_status st, int count)
{
    snprintf(m->fail_rcpt, sizeof m->fail_rcpt, "%s", rcpt);
    m->fail_status = st;
    m->fail_count = count;
}

/* pub_applier.apply_until: as map_apply, but a start deadline lets only m->start_limit writes start. */
static cs_err *map_apply_until(void *ctx, const pub_write *w, size_t n, pub_apply_outcome *out,
                               const pub_apply_limits *lim, size_t *n_started)
{
    mapper *m = ctx;
    size_t k = n;
    if (m->hold_until_lost && n > 1) {
        m->hold_until_lost = 0;
        cs_err *err = map_apply(ctx, w, 1, out);
        /* The pipeline does not poll while it applies: max.poll.interval.ms runs out and librdkafka's group
         * thread declares the assignment lost, which lim->stop reports (awaited, bounded: 30 s). */
        long long end = pts_mono_ms() + 30000;
        while (!err && lim && lim->stop && !lim->stop(lim->stop_ctx) && pts_mono_ms() < end)
            pts_nap_ms(20);
        m->stop_seen = !err && lim && lim->stop && lim->stop(lim->stop_ctx);
        *n_started = 1;
        return err;
    }
    if (lim && lim->start_until_ms > 0 && m->start_limit > 0 && m->start_limit < n) {
        k = m->start_limit;
        m->start_limit = 0; /* once: the next batches have time */
    }
    *n_started = k;
    return map_apply(ctx, w, k, out);
}

/* Writes to `rcpt` so far. */
static size_t writes_to(const mapper *m, const char *rcpt)
{
    size_t c = 0;
    for (size_t i = 0; i < m->n; i++)
        c += strcmp(m->log[i].rcpt, rcpt) == 0;
    return c;
}

/* The last write to `rcpt`, or NULL. */
static const logged *last_to(const mapper *m, const char *rcpt)
{
    for (size_t i = m->n; i > 0; i--)
        if (strcmp(m->log[i - 1].rcpt, rcpt) == 0)
            return &m->log[i - 1];
    return NULL;
}

/* The content of the last write to `rcpt` ("" when none), and whether it was a clear (-1 when none). */
static const char *last_content(const mapper *m, const char *rcpt)
{
    const logged *l = last_to(m, rcpt);
    return l ? l->content : "";
}

static int last_clear(const mapper *m, const char *rcpt)
{
    const logged *l = last_to(m, rcpt);
    return l ? l->clear : -1;
}

/* ------------------------------------------------------------------ events, pipeline */

/* Produces "<src>/<obj>" at `v` to partition `part`: one fake userCertificate `content`, none when NULL, a
 * removal when `removal`. */
static void produce(pts_topics *e, int32_t part, const char *src, const char *obj, uint32_t v,
                    const char *content, int removal)
{
    char key[128];
    snprintf(key, sizeof key, "%s/%s", src, obj);
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Source s = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue *cvp = &cv;
    s.source_id = (char *)(uintptr_t)src;
    id.object_id = (char *)(uintptr_t)obj;
    st.has_version = 1;
    st.version = v;
    ver.user_certificate = &st;
    ev.has_kind = 1;
    ev.kind = removal ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL
                      : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev.source = &s;
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
    rd_kafka_resp_err_t err = rd_kafka_producev(
        e->prod, RD_KAFKA_V_TOPIC(e->events), RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    free(buf);
    assert_int_equal(rd_kafka_flush(e->prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* batch_max_apply_time_ms of the next new_pipeline(); non-zero also gives the applier apply_until. */
static int64_t g_apply_time_ms;
/* kafka max.poll.interval.ms of the next new_pipeline() (NULL: librdkafka's default). */
static const char *g_max_poll_ms;

static pub_pipeline *new_pipeline(pts_topics *e, const char *txn, mapper *m, const pub_owner_rules *rules)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", e->group, errstr, sizeof errstr), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "transactional.id", txn, errstr, sizeof errstr), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "transaction.timeout.ms", "20000", errstr, sizeof errstr), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errstr, sizeof errstr), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "heartbeat.interval.ms", "500", errstr, sizeof errstr), 0);
    if (g_max_poll_ms)
        assert_int_equal(
            rd_kafka_conf_set(conf, "max.poll.interval.ms", g_max_poll_ms, errstr, sizeof errstr), 0);
    pub_pipeline_opts o = {.topic_events = e->events,
                           .topic_state = e->state,
                           .topic_results = e->results,
                           .topic_dlq = e->dlq,
                           .topic_retry = e->retry,
                           .instance_id = txn,
                           .batch_max_events = 100,
                           .batch_max_wait_ms = 300,
                           .restore_timeout_ms = 30000,
                           .batch_max_apply_time_ms = g_apply_time_ms,
                           .owner_rules = rules};
    pub_applier a = {.apply = map_apply,
                     .resolve = map_resolve,
                     .apply_until = g_apply_time_ms > 0 ? map_apply_until : NULL,
                     .ctx = m};
    pub_pipeline *p = NULL;
    cs_err *err = pub_pipeline_new(conf, &o, &a, &p);
    if (!err)
        err = pub_pipeline_start(p, 30000);
    if (err)
        fail_msg("%s", cs_err_message(err));
    return p;
}

/* Runs batches until `want` records are committed in total (bounded: 60 s). */
static void run_until(pub_pipeline *p, uint64_t want)
{
    time_t end = time(NULL) + 60;
    pub_pipeline_stats s;
    for (;;) {
        pub_pipeline_get_stats(p, &s);
        if (s.events >= want)
            return;
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

/* Runs until caught up with the end of every owned events partition (bounded: 60 s). */
static void run_caught_up(pub_pipeline *p)
{
    time_t end = time(NULL) + 60;
    for (;;) {
        cs_err *err = pub_pipeline_run_once(p, NULL);
        if (err) {
            if (cs_err_is_fatal(err))
                fail_msg("%s", cs_err_message(err));
            cs_err_free(err);
        } else if (pub_pipeline_caught_up(p)) {
            return;
        }
        if (time(NULL) > end)
            fail_msg("not caught up in 60 s");
    }
}

/* The results topic's outcomes for `key`, in order, into out[0..cap); returns the count. */
typedef struct outcomes {
    const char *key;
    Certsync__V1__Outcome o[64];
    size_t n;
} outcomes;

static cs_err *collect_outcome(const cs_state_record *rec, void *opaque)
{
    outcomes *os = opaque;
    Certsync__V1__PublishResult *r = certsync__v1__publish_result__unpack(NULL, rec->value_len, rec->value);
    assert_non_null(r);
    if (r->object_key && strcmp(r->object_key, os->key) == 0 && os->n < 64)
        os->o[os->n++] = r->outcome;
    certsync__v1__publish_result__free_unpacked(r, NULL);
    return NULL;
}

static void read_outcomes(pts_topics *e, outcomes *os)
{
    os->n = 0;
    kt_wait_stable(e->results, 1);
    assert_null(
        cs_state_reader_load(kt_conf(), e->results, NULL, 0, LOAD_TIMEOUT_MS, collect_outcome, os, NULL));
}

/* ------------------------------------------------------------------ tests */

/* One source, no sources.priority: obj1 moves from alice to bob -> bob written, alice cleared, once. */
static void remap_clears_old_recipient(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-remap", 1, 1, 0);
    mapper *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *txn = kt_unique_name("pubms-txn");
    map_set(m, "src/obj1", "alice");
    map_set(m, "src/obj2", "carol");
    produce(&e, 0, "src", "obj1", 1, "cert-1-v1", 0);
    produce(&e, 0, "src", "obj2", 1, "cert-2-v1", 0);
    pub_pipeline *p = new_pipeline(&e, txn, m, NULL);
    run_until(p, 2);
    assert_int_equal(m->n, 2);
    assert_int_equal(writes_to(m, "alice"), 1);
    assert_string_equal(last_content(m, "alice"), "cert-1-v1");

    /* The directory object now matches bob (e.g. its mail changed): one write to bob, one clear of alice. */
    map_set(m, "src/obj1", "bob");
    produce(&e, 0, "src", "obj1", 2, "cert-1-v2", 0);
    run_until(p, 3);
    assert_int_equal(writes_to(m, "bob"), 1);
    assert_string_equal(last_content(m, "bob"), "cert-1-v2");
    assert_int_equal(writes_to(m, "alice"), 2);
    assert_int_equal(last_clear(m, "alice"), 1);
    assert_int_equal(writes_to(m, "carol"), 1); /* untouched */
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.owner_writes, 1);
    assert_int_equal(s.applied, 3);
    pub_pipeline_destroy(p);

    /* Restart: the restored state knows alice was cleared; a newer obj1 event writes bob only. */
    p = new_pipeline(&e, txn, m, NULL);
    produce(&e, 0, "src", "obj1", 3, "cert-1-v3", 0);
    run_until(p, 1);
    assert_int_equal(writes_to(m, "alice"), 2);
    assert_int_equal(writes_to(m, "bob"), 2);
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.owner_writes, 0);
    pub_pipeline_destroy(p);
    free(m);
    free(txn);
    pts_topics_free(&e);
}

/* Dead letters in `e`'s DLQ topic for `key`: their count, the reason of the last. */
typedef struct dead_letters {
    const char *key;
    size_t n;
    Certsync__V1__DeadLetterReason reason;
} dead_letters;

static cs_err *collect_dead_letter(const cs_state_record *rec, void *opaque)
{
    dead_letters *d = opaque;
    Certsync__V1__DeadLetter *dl = certsync__v1__dead_letter__unpack(NULL, rec->value_len, rec->value);
    assert_non_null(dl);
    if (dl->has_original_key && dl->original_key.len == strlen(d->key) &&
        memcmp(dl->original_key.data, d->key, dl->original_key.len) == 0) {
        d->n++;
        d->reason = dl->reason;
    }
    certsync__v1__dead_letter__free_unpacked(dl, NULL);
    return NULL;
}

/*
 * Issue 5: the extra write of a re-map (the clear of the recipient an object moved away from) is not only
 * logged when it fails. Retriable (throttled, outage): the record that led to it is parked, comes back from
 * the retry topic and the clear is written then. Permanent (write scope): a dead letter with that record.
 */
static void remap_clear_failures_retried_or_dead_lettered(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-remapfail", 1, 1, 0);
    mapper *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *txn = kt_unique_name("pubms-txn");
    map_set(m, "src/obj1", "alice");
    map_set(m, "src/obj2", "carol");
    produce(&e, 0, "src", "obj1", 1, "cert-1-v1", 0);
    produce(&e, 0, "src", "obj2", 1, "cert-2-v1", 0);
    pub_pipeline *p = new_pipeline(&e, txn, m, NULL);
    run_until(p, 2);
    assert_int_equal(writes_to(m, "alice"), 1);

    /* obj1 moves to bob; the clear of alice fails once, retriably: obj1 is parked, then retried. */
    map_set(m, "src/obj1", "bob");
    fail_extra(m, "alice", PUB_APPLY_RETRY_LATER, 1);
    produce(&e, 0, "src", "obj1", 2, "cert-1-v2", 0);
    run_until(p, 4); /* the event, then its parked copy from the retry topic */
    assert_int_equal(m->fail_count, 0);
    assert_int_equal(last_clear(m, "alice"), 1);
    assert_int_equal(writes_to(m, "alice"), 2);
    assert_string_equal(last_content(m, "bob"), "cert-1-v2");
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.parked, 1);
    assert_int_equal(s.owner_writes, 1);
    outcomes os = {.key = "src/obj1"};
    read_outcomes(&e, &os);
    assert_int_equal(os.n, 3);
    assert_int_equal(os.o[1], CERTSYNC__V1__OUTCOME__OUTCOME_PARKED);
    assert_int_equal(os.o[2], CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED);

    /* obj2 moves to dave; the clear of carol fails permanently: dead-lettered, obj2 itself applied. */
    map_set(m, "src/obj2", "dave");
    fail_extra(m, "carol", PUB_APPLY_PERMANENT, 1);
    produce(&e, 0, "src", "obj2", 2, "cert-2-v2", 0);
    run_until(p, 5);
    assert_int_equal(writes_to(m, "carol"), 1); /* never cleared */
    assert_string_equal(last_content(m, "dave"), "cert-2-v2");
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.dead_lettered, 1);
    assert_int_equal(s.owner_writes, 1);
    dead_letters d = {.key = "src/obj2"};
    kt_wait_stable(e.dlq, 1);
    assert_null(
        cs_state_reader_load(kt_conf(), e.dlq, NULL, 0, LOAD_TIMEOUT_MS, collect_dead_letter, &d, NULL));
    assert_int_equal(d.n, 1);
    assert_int_equal(d.reason, CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_WRITE_SCOPE);
    pub_pipeline_destroy(p);
    free(m);
    free(txn);
    pts_topics_free(&e);
}

/*
 * Issue 5: batch.max_apply_time with sources.priority. The multi-site plan belongs to the whole batch, so
 * when the deadline passes the writes not started are parked (as if throttled), nothing is deferred, and they
 * are written when they come back from the retry topic.
 */
static void apply_time_with_priority_parks_unstarted(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-applytime", 1, 1, 0);
    mapper *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *txn = kt_unique_name("pubms-txn");
    const char *prio[] = {"a", "b"};
    pub_owner_rules *rules = NULL;
    assert_null(pub_owner_rules_new(prio, 2, &rules));
    map_set(m, "a/x", "xena");
    map_set(m, "a/y", "yara");
    map_set(m, "a/z", "zoe");
    produce(&e, 0, "a", "x", 1, "x-v1", 0);
    produce(&e, 0, "a", "y", 1, "y-v1", 0);
    produce(&e, 0, "a", "z", 1, "z-v1", 0);
    m->start_limit = 1;
    g_apply_time_ms = 60000;
    pub_pipeline *p = new_pipeline(&e, txn, m, rules);
    g_apply_time_ms = 0;
    run_until(p, 5); /* three events, then the two parked ones again */
    assert_int_equal(writes_to(m, "xena"), 1);
    assert_int_equal(writes_to(m, "yara"), 1);
    assert_int_equal(writes_to(m, "zoe"), 1);
    assert_string_equal(last_content(m, "yara"), "y-v1");
    assert_string_equal(last_content(m, "zoe"), "z-v1");
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.parked, 2);
    assert_int_equal(s.applied, 3);
    assert_int_equal(s.apply_time_cuts, 0); /* parked, not deferred: the plan was committed whole */
    pub_pipeline_destroy(p);
    pub_owner_rules_free(rules);
    free(m);
    free(txn);
    pts_topics_free(&e);
}

/* sources.priority [a, b], the same person as a/x and b/x (both resolve to dora). */
static void precedence_and_handover(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-prio", 1, 1, 0);
    mapper *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *txn = kt_unique_name("pubms-txn");
    const char *prio[] = {"a", "b"};
    pub_owner_rules *rules = NULL;
    assert_null(pub_owner_rules_new(prio, 2, &rules));
    map_set(m, "a/x", "dora");
    map_set(m, "b/x", "dora");
    /* b first (its collector started earlier), then a: a takes over, b never comes back by itself. */
    produce(&e, 0, "b", "x", 1, "b-v1", 0);
    pub_pipeline *p = new_pipeline(&e, txn, m, rules);
    run_until(p, 1);
    produce(&e, 0, "a", "x", 1, "a-v1", 0);
    run_until(p, 2);
    assert_int_equal(writes_to(m, "dora"), 2);
    assert_string_equal(last_content(m, "dora"), "a-v1");

    /* A change in the non-owner: no write, SKIPPED_NOT_OWNER. */
    produce(&e, 0, "b", "x", 2, "b-v2", 0);
    run_until(p, 3);
    assert_int_equal(writes_to(m, "dora"), 2);
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.skipped_not_owner, 1);
    outcomes ob = {.key = "b/x"};
    read_outcomes(&e, &ob);
    assert_int_equal(ob.n, 2);
    assert_int_equal(ob.o[1], CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_NOT_OWNER);

    /* A change in the owner: exactly one write. */
    produce(&e, 0, "a", "x", 2, "a-v2", 0);
    run_until(p, 4);
    assert_int_equal(writes_to(m, "dora"), 3);
    assert_string_equal(last_content(m, "dora"), "a-v2");
    pub_pipeline_destroy(p);

    /* Restart, then the owner's certificates go: b takes over with its newest certificates, in one write
     * (from the event its restored state keeps). */
    p = new_pipeline(&e, txn, m, rules);
    produce(&e, 0, "a", "x", 3, NULL, 0);
    run_until(p, 1);
    assert_int_equal(writes_to(m, "dora"), 4);
    assert_string_equal(last_content(m, "dora"), "b-v2");
    assert_int_equal(last_clear(m, "dora"), 0);
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.owner_writes, 1);
    assert_int_equal(s.skipped_not_owner, 1); /* a's certificate-less event did not clear dora */

    /* b's certificates go too: nobody is left, one clear. */
    produce(&e, 0, "b", "x", 3, NULL, 1);
    run_until(p, 2);
    assert_int_equal(writes_to(m, "dora"), 5);
    assert_int_equal(last_clear(m, "dora"), 1);
    pub_pipeline_destroy(p);
    pub_owner_rules_free(rules);
    free(m);
    free(txn);
    pts_topics_free(&e);
}

/* cs_state_reader callback: the records into a pub_state, as the pipeline's restore does. */
static cs_err *load_state(const cs_state_record *r, void *opaque)
{
    cs_err *err = pub_state_put(opaque, r->partition, r->key, r->key_len, r->value, r->value_len);
    if (err)
        fail_msg("state record: %s", cs_err_message(err));
    return NULL;
}

/* The state topic's partitions `parts` (NULL: all) as a pub_state. Caller frees with pub_state_free(). */
static pub_state *read_state(const pts_topics *e, const int32_t *parts, size_t n)
{
    pub_state *st = NULL;
    assert_null(pub_state_new(&st));
    assert_null(cs_state_reader_load(kt_conf(), e->state, parts, n, LOAD_TIMEOUT_MS, load_state, st, NULL));
    return st;
}

/*
 * Awaits (bounded: 15 s) that the state topic's partitions `parts` (NULL: all) name `owner` as rcpt/`rcpt`'s
 * owner (NULL: no record). Awaited, not read once: the commit returns before the coordinator has written the
 * transaction's markers, and a read_committed reader sees the records only after them.
 */
static void await_owner(const pts_topics *e, const int32_t *parts, size_t n, const char *rcpt,
                        const char *owner)
{
    long long end = pts_mono_ms() + 15000;
    char seen[128] = "";
    for (;;) {
        pub_state *st = read_state(e, parts, n);
        const Certsync__V1__RecipientState *rs = pub_state_recipient(st, rcpt);
        const char *have = rs ? (rs->owner_object_key ? rs->owner_object_key : "?") : NULL;
        bool ok = owner ? have && strcmp(have, owner) == 0 : !have;
        snprintf(seen, sizeof seen, "%s", have ? have : "no record");
        pub_state_free(st);
        if (ok)
            return;
        if (pts_mono_ms() > end)
            fail_msg("state partition(s) %s: rcpt/%s names %s, want %s", parts ? "given" : "all", rcpt, seen,
                     owner ? owner : "no record (a tombstone)");
        pts_nap_ms(100);
    }
}

/*
 * The owner of recipient dora moves from b/x (events partition 1) to a/x (partition 0): the handover writes
 * rcpt/dora to state partition 0 and a tombstone for it to partition 1 in the same transaction, so the old
 * owner's record is gone from partition 1 (compaction, or an instance restoring only partition 1), and a
 * restore of both partitions in any order names a/x. Then back to b/x: partition 0 is tombstoned.
 */
static void handover_tombstones_the_old_partition(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-move", 2, 1, 0);
    mapper *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *txn = kt_unique_name("pubms-txn");
    const char *prio[] = {"a", "b"};
    pub_owner_rules *rules = NULL;
    assert_null(pub_owner_rules_new(prio, 2, &rules));
    map_set(m, "a/x", "dora");
    map_set(m, "b/x", "dora");
    produce(&e, 1, "b", "x", 1, "b-v1", 0);
    pub_pipeline *p = new_pipeline(&e, txn, m, rules);
    run_until(p, 1);
    int32_t p0 = 0, p1 = 1;
    await_owner(&e, &p1, 1, "dora", "b/x");

    produce(&e, 0, "a", "x", 1, "a-v1", 0); /* a takes over */
    run_until(p, 2);
    assert_string_equal(last_content(m, "dora"), "a-v1");
    await_owner(&e, &p0, 1, "dora", "a/x");
    await_owner(&e, &p1, 1, "dora", NULL); /* the old owner's record is tombstoned */
    await_owner(&e, NULL, 0, "dora", "a/x");
    pub_state *st = read_state(&e, &p1, 1);
    assert_non_null(pub_state_object(st, "b/x")); /* b's own ObjectState stays */
    pub_state_free(st);

    /* a's certificates go: b takes over again, and partition 0 is the one tombstoned. */
    produce(&e, 0, "a", "x", 2, NULL, 0);
    run_until(p, 3);
    assert_string_equal(last_content(m, "dora"), "b-v1");
    await_owner(&e, &p1, 1, "dora", "b/x");
    await_owner(&e, &p0, 1, "dora", NULL);
    await_owner(&e, NULL, 0, "dora", "b/x");
    pub_pipeline_destroy(p);

    /* A restart restores both partitions: b's change is stale against what it wrote, nothing is written. */
    size_t before = writes_to(m, "dora");
    p = new_pipeline(&e, txn, m, rules);
    produce(&e, 1, "b", "x", 1, "b-v1", 0);
    run_until(p, 1);
    assert_int_equal(writes_to(m, "dora"), before);
    pub_pipeline_destroy(p);
    pub_owner_rules_free(rules);
    free(m);
    free(txn);
    pts_topics_free(&e);
}

/*
 * The instance loses the group while applying (max.poll.interval.ms runs out in the middle of a batch): no
 * further write starts once librdkafka says the assignment is lost, nothing of the batch is committed (the
 * batch is rewound, retriable error), and the next polls rejoin and apply the whole batch.
 */
static void lost_assignment_stops_the_batch(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-lost", 1, 1, 0);
    mapper *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *txn = kt_unique_name("pubms-txn");
    map_set(m, "a/x", "dora");
    map_set(m, "a/y", "emil");
    map_set(m, "a/z", "fred");
    produce(&e, 0, "a", "x", 1, "x1", 0);
    produce(&e, 0, "a", "y", 1, "y1", 0);
    produce(&e, 0, "a", "z", 1, "z1", 0);
    g_apply_time_ms = 60000; /* gives the applier apply_until */
    g_max_poll_ms = "6000";  /* the smallest librdkafka allows with session.timeout.ms 6000 */
    m->hold_until_lost = 1;
    pub_pipeline *p = new_pipeline(&e, txn, m, NULL);
    g_apply_time_ms = 0;
    g_max_poll_ms = NULL;
    cs_err *err = NULL;
    long long end = pts_mono_ms() + 60000;
    while (!err && m->hold_until_lost && pts_mono_ms() < end)
        err = pub_pipeline_run_once(p, NULL); /* until the batch with all three is being applied */
    if (!err)
        fail_msg("the batch did not fail after the assignment was lost (stop seen: %d)", m->stop_seen);
    assert_true(m->stop_seen);
    assert_true(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    assert_non_null(strstr(cs_err_message(err), "assignment was lost"));
    cs_err_free(err);
    assert_int_equal(m->n, 1); /* only the write started before the loss */
    pub_pipeline_stats s;
    pub_pipeline_get_stats(p, &s);
    assert_int_equal(s.events, 0);
    assert_int_equal(s.commits, 0);
    run_until(p, 3); /* rejoin, restore, the whole batch again */
    assert_int_equal(writes_to(m, "dora"), 2);
    assert_int_equal(writes_to(m, "emil"), 1);
    assert_int_equal(writes_to(m, "fred"), 1);
    pub_pipeline_destroy(p);
    free(m);
    free(txn);
    pts_topics_free(&e);
}

/* sources.priority set and two members share two events partitions: each pauses, nothing is written. */
static void partial_assignment_pauses(void **state)
{
    (void)state;
    pts_topics e;
    pts_topics_new(&e, "pubms-part", 2, 1, 0);
    mapper *ma = calloc(1, sizeof *ma), *mb = calloc(1, sizeof *mb);
    assert_non_null(ma);
    assert_non_null(mb);
    char *ta = kt_unique_name("pubms-txn-a"), *tb = kt_unique_name("pubms-txn-b");
    const char *prio[] = {"a"};
    pub_owner_rules *rules = NULL;
    assert_null(pub_owner_rules_new(prio, 1, &rules));
    map_set(ma, "a/x", "erin");
    map_set(ma, "a/y", "frank");
    map_set(mb, "a/x", "erin");
    map_set(mb, "a/y", "frank");
    pub_pipeline *pa = new_pipeline(&e, ta, ma, rules);
    run_caught_up(pa); /* alone: owns both partitions, consumes */
    assert_false(pub_pipeline_partial_assignment(pa));
    pub_pipeline *pb = new_pipeline(&e, tb, mb, rules);
    /* Both poll until the rebalance gives each one partition (bounded: 60 s). */
    time_t end = time(NULL) + 60;
    while (!(pub_pipeline_partial_assignment(pa) && pub_pipeline_partial_assignment(pb))) {
        if (time(NULL) > end)
            fail_msg("the two members did not both report a partial assignment in 60 s");
        cs_err *err = pub_pipeline_run_once(pa, NULL);
        cs_err_free(err);
        err = pub_pipeline_run_once(pb, NULL);
        cs_err_free(err);
    }
    produce(&e, 0, "a", "x", 1, "a-v1", 0);
    produce(&e, 1, "a", "y", 1, "a-v1", 0);
    for (int i = 0; i < 10; i++) {
        cs_err_free(pub_pipeline_run_once(pa, NULL));
        cs_err_free(pub_pipeline_run_once(pb, NULL));
    }
    pub_pipeline_stats sa, sb;
    pub_pipeline_get_stats(pa, &sa);
    pub_pipeline_get_stats(pb, &sb);
    assert_int_equal(sa.events + sb.events, 0);
    assert_int_equal(ma->n + mb->n, 0);
    /* B leaves: A owns everything again, resumes and handles both events. */
    pub_pipeline_destroy(pb);
    run_until(pa, 2);
    assert_false(pub_pipeline_partial_assignment(pa));
    assert_int_equal(ma->n, 2);
    pub_pipeline_destroy(pa);
    pub_owner_rules_free(rules);
    free(ma);
    free(mb);
    free(ta);
    free(tb);
    pts_topics_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(remap_clears_old_recipient),
        cmocka_unit_test(remap_clear_failures_retried_or_dead_lettered),
        cmocka_unit_test(precedence_and_handover),
        cmocka_unit_test(apply_time_with_priority_parks_unstarted),
        cmocka_unit_test(partial_assignment_pauses),
        cmocka_unit_test(handover_tombstones_the_old_partition),
        cmocka_unit_test(lost_assignment_stops_the_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
