/*
 * col_pipeline against a real Kafka broker (tests/services/kafka.sh): events and checkpoint in one
 * transaction, fence first then read, no (object, version) twice across restarts, zombies cannot commit,
 * the removal sweep, the mass-removal guard, and kill -9 at named points (a child process of this binary,
 * killed by the test when it reports the point: no sleeps).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "col_checkpoint.h"
#include "col_pipeline.h"
#include "cs_event.h"
#include "cs_log.h"
#include "cs_state_reader.h"
#include "kafka_test_util.h"

#define LOAD_TIMEOUT_MS 30000
#define MAX_RECS 512
#define SOURCE "site1"

/* ---- synthetic events ------------------------------------------------------------------------------ */

/* An event of `obj` whose entryCSN encodes `step`, with one certificate value `cert` (NULL: none). */
typedef struct test_ev {
    Certsync__V1__ChangeEvent ev;
    Certsync__V1__Identity id;
    Certsync__V1__Source src;
    Certsync__V1__Version ver;
    Certsync__V1__AttributeStamp stamp;
    Certsync__V1__CertificateValue val;
    Certsync__V1__CertificateValue *vals[1];
    char obj[64];
    char csn[64];
    char cert[64];
} test_ev;

static void csn_of(int step, char *out, size_t n)
{
    snprintf(out, n, "20240101000000.%06dZ#000000#000#000000", step);
}

static void make_ev(test_ev *t, const char *obj, int step, const char *cert, bool removal)
{
    memset(t, 0, sizeof(*t));
    certsync__v1__change_event__init(&t->ev);
    certsync__v1__identity__init(&t->id);
    certsync__v1__source__init(&t->src);
    certsync__v1__version__init(&t->ver);
    certsync__v1__attribute_stamp__init(&t->stamp);
    certsync__v1__certificate_value__init(&t->val);
    snprintf(t->obj, sizeof(t->obj), "%s", obj);
    csn_of(step, t->csn, sizeof(t->csn));
    t->stamp.csn = t->csn;
    t->ver.user_certificate = &t->stamp;
    t->ver.lifecycle = &t->stamp;
    t->id.object_id = t->obj;
    t->src.source_id = (char *)(uintptr_t)SOURCE;
    t->ev.has_kind = 1;
    t->ev.kind = removal ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL
                         : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    t->ev.identity = &t->id;
    t->ev.source = &t->src;
    t->ev.version = &t->ver;
    if (cert) {
        snprintf(t->cert, sizeof(t->cert), "%s", cert);
        t->val.has_raw = 1;
        t->val.raw.data = (uint8_t *)t->cert;
        t->val.raw.len = strlen(t->cert);
        t->vals[0] = &t->val;
        t->ev.user_certificate = t->vals;
        t->ev.n_user_certificate = 1;
    }
}

static void must(cs_err *err)
{
    if (err)
        fail_msg("%s", cs_err_message(err));
}

/* ---- reading back ---------------------------------------------------------------------------------- */

typedef struct rec {
    char key[96];
    char csn[64]; /* lifecycle CSN */
    char cert[64];
    int kind;
    int reason;
    bool null_value;
} rec;

typedef struct recs {
    int n;
    rec r[MAX_RECS];
} recs;

static cs_err *collect_event(const cs_state_record *r, void *opaque)
{
    recs *s = opaque;
    if (s->n >= MAX_RECS)
        return cs_err_new(CS_ERR_INTERNAL, 0, "more than %d records", MAX_RECS);
    rec *o = &s->r[s->n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->key, sizeof(o->key), "%.*s", (int)r->key_len, (const char *)r->key);
    if (!r->value) {
        o->null_value = true;
        return NULL;
    }
    Certsync__V1__ChangeEvent *ev = NULL;
    cs_err *err = cs_event_decode(r->value, r->value_len, &ev);
    if (err)
        return err;
    o->kind = ev->kind;
    o->reason = ev->removal_reason;
    if (ev->version && ev->version->lifecycle && ev->version->lifecycle->csn)
        snprintf(o->csn, sizeof(o->csn), "%s", ev->version->lifecycle->csn);
    if (ev->n_user_certificate > 0)
        snprintf(o->cert, sizeof(o->cert), "%.*s", (int)ev->user_certificate[0]->raw.len,
                 (const char *)ev->user_certificate[0]->raw.data);
    certsync__v1__change_event__free_unpacked(ev, NULL);
    return NULL;
}

static void read_topic(const char *topic, recs *s)
{
    memset(s, 0, sizeof(*s));
    kt_wait_stable(topic, 1);
    must(cs_state_reader_load(kt_conf(), topic, NULL, 0, LOAD_TIMEOUT_MS, collect_event, s, NULL));
}

typedef struct cps {
    int n;
    uint64_t last_seq;
    uint64_t last_emitted;
    char last_cookie[64];
} cps;

static cs_err *collect_cp(const cs_state_record *r, void *opaque)
{
    cps *c = opaque;
    Certsync__V1__CollectorCheckpoint *cp = NULL;
    cs_err *err = col_checkpoint_decode(r->value, r->value_len, &cp);
    if (err)
        return err;
    c->n++;
    c->last_seq = cp->sequence;
    c->last_emitted = cp->events_emitted;
    snprintf(c->last_cookie, sizeof(c->last_cookie), "%.*s", (int)cp->syncrepl_cookie.len,
             (const char *)cp->syncrepl_cookie.data);
    col_checkpoint_free(cp);
    return NULL;
}

static void read_cps(const char *topic, cps *c)
{
    memset(c, 0, sizeof(*c));
    kt_wait_stable(topic, 1);
    must(cs_state_reader_load(kt_conf(), topic, NULL, 0, LOAD_TIMEOUT_MS, collect_cp, c, NULL));
}

/* ---- fixtures -------------------------------------------------------------------------------------- */

typedef struct topics {
    char *events, *checkpoint, *held, *txn_id;
} topics;

static void make_topics(topics *t)
{
    t->events = kt_unique_name("it-col-events");
    t->checkpoint = kt_unique_name("it-col-cp");
    t->held = kt_unique_name("it-col-held");
    t->txn_id = kt_unique_name("certsync-collector-it");
    kt_create_topic(t->events, 1, 1, 1);
    kt_create_topic(t->checkpoint, 1, 1, 1);
    kt_create_topic(t->held, 1, 1, 1);
}

static void free_topics(topics *t)
{
    free(t->events);
    free(t->checkpoint);
    free(t->held);
    free(t->txn_id);
}

static col_pipeline_opts opts_for(const topics *t, int batch, int threshold)
{
    col_pipeline_opts o = {0};
    o.source_id = SOURCE;
    o.transactional_id = t->txn_id;
    o.topic_events = t->events;
    o.topic_checkpoint = t->checkpoint;
    o.topic_held = t->held;
    o.batch_max_events = batch;
    o.batch_max_wait_ms = 60000;
    o.mass_removal_threshold = threshold;
    o.init_timeout_ms = 30000;
    o.load_timeout_ms = LOAD_TIMEOUT_MS;
    return o;
}

static rd_kafka_conf_t *pipeline_conf(void)
{
    char errstr[128];
    rd_kafka_conf_t *conf = kt_conf();
    /* Short, so a killed child's open transaction cannot hold the LSO long if fencing were broken. */
    if (rd_kafka_conf_set(conf, "transaction.timeout.ms", "20000", errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        fail_msg("%s", errstr);
    return conf;
}

static col_pipeline *open_pipeline(const col_pipeline_opts *o)
{
    col_pipeline *p = NULL;
    must(col_pipeline_open(o, pipeline_conf(), &p));
    return p;
}

static void set_cookie(col_pipeline *p, const char *cookie)
{
    Certsync__V1__CollectorCheckpoint cp = CERTSYNC__V1__COLLECTOR_CHECKPOINT__INIT;
    cp.has_mode = 1;
    cp.mode = CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_SYNCREPL;
    cp.has_syncrepl_cookie = 1;
    cp.syncrepl_cookie.data = (uint8_t *)(uintptr_t)cookie;
    cp.syncrepl_cookie.len = strlen(cookie);
    must(col_pipeline_set_position(p, &cp));
}

static void submit(col_pipeline *p, const char *obj, int step, const char *cert, bool removal)
{
    test_ev t;
    make_ev(&t, obj, step, cert, removal);
    must(col_pipeline_submit(p, &t.ev));
}

/* No (key, version) twice, and versions of one key only go up, in topic order. */
static void assert_invariants(const recs *s)
{
    for (int i = 0; i < s->n; i++) {
        for (int j = i + 1; j < s->n; j++) {
            if (strcmp(s->r[i].key, s->r[j].key) != 0)
                continue;
            if (strcmp(s->r[i].csn, s->r[j].csn) >= 0)
                fail_msg("%s: version %s at record %d then %s at record %d (twice or backwards)", s->r[i].key,
                         s->r[i].csn, i, s->r[j].csn, j);
        }
    }
}

/* The last record of `key`; fails the test when there is none (never NULL). */
static const rec *last_of(const recs *s, const char *key)
{
    static const rec none;
    const rec *last = NULL;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->r[i].key, key) == 0)
            last = &s->r[i];
    if (!last) {
        fail_msg("no record of %s", key);
        return &none;
    }
    return last;
}

/* ---- tests ----------------------------------------------------------------------------------------- */

/* Events and the checkpoint that covers them commit together; sequence + 1 per commit. */
static void events_and_checkpoint_together(void **state)
{
    (void)state;
    topics t;
    make_topics(&t);
    col_pipeline_opts o = opts_for(&t, 100, 0);
    col_pipeline *p = open_pipeline(&o);
    assert_null(col_pipeline_checkpoint(p)); /* first start */

    submit(p, "o1", 1, "o1-a", false);
    submit(p, "o2", 2, "o2-a", false);
    submit(p, "o1", 3, "o1-b", false);
    set_cookie(p, "cookie-3");
    /* Not committed yet: the batch is open, nothing is readable. */
    recs s;
    read_topic(t.events, &s);
    assert_int_equal(s.n, 0);
    must(col_pipeline_flush(p));
    read_topic(t.events, &s);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.r[0].key, SOURCE "/o1");
    assert_string_equal(s.r[2].cert, "o1-b");
    cps c;
    read_cps(t.checkpoint, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal((int)c.last_seq, 1);
    assert_int_equal((int)c.last_emitted, 3);
    assert_string_equal(c.last_cookie, "cookie-3");

    /* A position change alone commits a checkpoint; the batch closes at batch_max_events by itself. */
    set_cookie(p, "cookie-4");
    must(col_pipeline_flush(p));
    read_cps(t.checkpoint, &c);
    assert_int_equal((int)c.last_seq, 2);
    assert_string_equal(c.last_cookie, "cookie-4");

    col_pipeline_stats st;
    col_pipeline_get_stats(p, &st);
    assert_int_equal((int)st.txn_committed, 2);
    assert_int_equal((int)st.events_produced, 3);
    must(col_pipeline_close(p, true));
    free_topics(&t);
}

typedef struct zombie_ctx {
    const col_pipeline_opts *o;
    col_pipeline *newer;
    int fired;
} zombie_ctx;

/* At the old instance's "before_commit", a new instance with the same transactional.id opens. */
static void open_newer_before_commit(void *arg, const char *point)
{
    zombie_ctx *z = arg;
    if (strcmp(point, "before_commit") != 0 || z->fired++)
        return;
    z->newer = open_pipeline(z->o);
}

/* A zombie cannot commit after the new instance's init: its produced batch is aborted (neither events nor
 * checkpoint appear), and the new instance read the checkpoint after fencing. */
static void zombie_cannot_commit(void **state)
{
    (void)state;
    topics t;
    make_topics(&t);
    col_pipeline_opts o = opts_for(&t, 100, 0);
    col_pipeline *old = open_pipeline(&o);
    submit(old, "o1", 1, "o1-a", false);
    set_cookie(old, "c1");
    must(col_pipeline_flush(old));

    zombie_ctx z = {&o, NULL, 0};
    col_pipeline_opts zo = o;
    zo.hook = open_newer_before_commit;
    zo.hook_arg = &z;
    /* The old instance gets the hook only now: reopen it with the hook (it fences the first one). */
    must(col_pipeline_close(old, false));
    old = open_pipeline(&zo);
    assert_int_equal((int)col_pipeline_checkpoint(old)->sequence, 1);
    submit(old, "o1", 2, "o1-zombie", false);
    set_cookie(old, "c2-zombie");
    cs_err *err = col_pipeline_flush(old);
    assert_non_null(err);
    assert_true(col_pipeline_is_fenced(old));
    cs_err_free(err);
    /* Fenced means dead: nothing more is accepted. */
    test_ev te;
    make_ev(&te, "o9", 9, "x", false);
    err = col_pipeline_submit(old, &te.ev);
    assert_non_null(err);
    cs_err_free(err);
    assert_non_null(z.newer);
    assert_int_equal((int)col_pipeline_checkpoint(z.newer)->sequence, 1);

    recs s;
    read_topic(t.events, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.r[0].cert, "o1-a");
    cps c;
    read_cps(t.checkpoint, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last_cookie, "c1");

    /* The newer instance commits; its sequence continues. */
    submit(z.newer, "o1", 3, "o1-c", false);
    set_cookie(z.newer, "c3");
    must(col_pipeline_flush(z.newer));
    read_cps(t.checkpoint, &c);
    assert_int_equal((int)c.last_seq, 2);
    assert_string_equal(c.last_cookie, "c3");
    must(col_pipeline_close(z.newer, true));
    cs_err_free(col_pipeline_close(old, true));
    free_topics(&t);
}

/* A restart rebuilds the index: what is already in the topic is not emitted again. */
static void restart_does_not_reemit(void **state)
{
    (void)state;
    topics t;
    make_topics(&t);
    col_pipeline_opts o = opts_for(&t, 2, 0);
    col_pipeline *p = open_pipeline(&o);
    submit(p, "o1", 1, "o1-a", false);
    submit(p, "o2", 2, "o2-a", false); /* batch full: committed here */
    submit(p, "o3", 3, "o3-a", false);
    set_cookie(p, "after-3");
    must(col_pipeline_close(p, true));

    p = open_pipeline(&o);
    const Certsync__V1__CollectorCheckpoint *cp = col_pipeline_checkpoint(p);
    assert_non_null(cp);
    assert_int_equal((int)cp->sequence, 2);
    /* A snapshot that overlaps: the same three states again, one stale state, one real change. */
    submit(p, "o1", 1, "o1-a", false);
    submit(p, "o2", 2, "o2-a", false);
    submit(p, "o3", 3, "o3-a", false);
    submit(p, "o1", 0, "o1-ancient", false);
    submit(p, "o2", 4, "o2-b", false);
    must(col_pipeline_flush(p));
    col_pipeline_stats st;
    col_pipeline_get_stats(p, &st);
    assert_int_equal((int)st.duplicates_skipped, 3);
    assert_int_equal((int)st.stale_skipped, 1);
    assert_int_equal((int)st.events_produced, 1);
    must(col_pipeline_close(p, true));

    recs s;
    read_topic(t.events, &s);
    assert_int_equal(s.n, 4);
    assert_invariants(&s);
    assert_string_equal(last_of(&s, SOURCE "/o2")->cert, "o2-b");
    free_topics(&t);
}

static Certsync__V1__AttributeStamp stamp_at(int step, char *buf, size_t n)
{
    Certsync__V1__AttributeStamp s = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    csn_of(step, buf, n);
    s.csn = buf;
    return s;
}

/* Objects absent from a full resync become RESYNC_ABSENT removals; present ones are untouched. */
static void removal_sweep(void **state)
{
    (void)state;
    topics t;
    make_topics(&t);
    col_pipeline_opts o = opts_for(&t, 100, 0);
    col_pipeline *p = open_pipeline(&o);
    submit(p, "a", 1, "a1", false);
    submit(p, "b", 2, "b1", false);
    submit(p, "c", 3, "c1", false);
    must(col_pipeline_flush(p));

    must(col_pipeline_sweep_begin(p));
    submit(p, "b", 2, "b1", false); /* seen, unchanged */
    char csn[64];
    Certsync__V1__AttributeStamp life = stamp_at(10, csn, sizeof(csn));
    size_t n = 0;
    must(col_pipeline_sweep_end(p, NULL, &life, &n));
    assert_int_equal(n, 2);
    set_cookie(p, "resync-done");
    must(col_pipeline_flush(p));
    /* A second sweep that sees nothing removes only b: a and c are removed already. */
    must(col_pipeline_sweep_begin(p));
    life = stamp_at(11, csn, sizeof(csn));
    must(col_pipeline_sweep_end(p, NULL, &life, &n));
    assert_int_equal(n, 1);
    must(col_pipeline_close(p, true));

    recs s;
    read_topic(t.events, &s);
    assert_int_equal(s.n, 6);
    assert_invariants(&s);
    const rec *a = last_of(&s, SOURCE "/a");
    assert_int_equal(a->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL);
    assert_int_equal(a->reason, CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_RESYNC_ABSENT);
    assert_int_equal(last_of(&s, SOURCE "/c")->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL);
    assert_int_equal(last_of(&s, SOURCE "/b")->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL);
    free_topics(&t);
}

/* Over the threshold, removals go to the held topic with the checkpoint; everything else flows; a newer
 * event supersedes a held one; held events survive a restart and leave only by release. */
static void mass_removal_guard(void **state)
{
    (void)state;
    topics t;
    make_topics(&t);
    cs_metrics *reg = NULL;
    must(cs_metrics_new(&reg));
    col_pipeline_opts o = opts_for(&t, 100, 2);
    o.metrics = reg;
    col_pipeline *p = open_pipeline(&o);
    const char *objs[] = {"u1", "u2", "u3", "u4", "u5"};
    for (int i = 0; i < 5; i++) {
        char cert[16];
        snprintf(cert, sizeof(cert), "%s-c", objs[i]);
        submit(p, objs[i], i + 1, cert, false);
    }
    must(col_pipeline_flush(p));

    /* A resync sees only u5: four removals > threshold 2: all held. */
    must(col_pipeline_sweep_begin(p));
    submit(p, "u5", 5, "u5-c", false);
    char csn[64];
    Certsync__V1__AttributeStamp life = stamp_at(20, csn, sizeof(csn));
    must(col_pipeline_sweep_end(p, NULL, &life, NULL));
    submit(p, "u6", 21, "u6-c", false); /* other traffic keeps flowing */
    set_cookie(p, "after-resync");
    must(col_pipeline_flush(p));
    assert_int_equal((int)col_pipeline_held_count(p), 4);
    col_pipeline_stats st;
    col_pipeline_get_stats(p, &st);
    assert_int_equal((int)st.events_held, 4);
    assert_int_equal((int)st.guard_trips, 1);

    recs s, h;
    read_topic(t.events, &s);
    assert_int_equal(s.n, 6); /* 5 upserts + u6, no removals */
    for (int i = 0; i < s.n; i++)
        assert_int_equal(s.r[i].kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT);
    read_topic(t.held, &h);
    assert_int_equal(h.n, 4);
    cps c;
    read_cps(t.checkpoint, &c);
    assert_string_equal(c.last_cookie, "after-resync");

    cs_buf page;
    cs_buf_init(&page, 1 << 20);
    must(cs_metrics_render(reg, &page));
    assert_non_null(strstr(cs_buf_str(&page), "certsync_collector_held_events{source=\"" SOURCE "\"} 4"));
    cs_buf_free(&page);

    /* u1 comes back with a newer change: the held removal of u1 is superseded. */
    submit(p, "u1", 30, "u1-new", false);
    must(col_pipeline_flush(p));
    assert_int_equal((int)col_pipeline_held_count(p), 3);
    must(col_pipeline_close(p, true));

    /* Held events survive a restart; then the explicit release moves them to the events topic. */
    o.metrics = NULL; /* families register once per registry */
    p = open_pipeline(&o);
    assert_int_equal((int)col_pipeline_held_count(p), 3);
    /* The same removals again are duplicates of what is held, not new holds. */
    must(col_pipeline_sweep_begin(p));
    submit(p, "u1", 30, "u1-new", false);
    submit(p, "u5", 5, "u5-c", false);
    submit(p, "u6", 21, "u6-c", false);
    must(col_pipeline_sweep_end(p, NULL, &life, NULL));
    must(col_pipeline_flush(p));
    col_pipeline_get_stats(p, &st);
    assert_int_equal((int)st.events_held, 0);
    assert_int_equal((int)col_pipeline_held_count(p), 3);
    size_t n = 0;
    must(col_pipeline_release_held(p, SOURCE "/u2", &n));
    assert_int_equal(n, 1);
    must(col_pipeline_release_held(p, NULL, &n));
    assert_int_equal(n, 2);
    assert_int_equal((int)col_pipeline_held_count(p), 0);
    must(col_pipeline_close(p, true));

    read_topic(t.events, &s);
    assert_invariants(&s);
    assert_int_equal(last_of(&s, SOURCE "/u1")->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT);
    assert_string_equal(last_of(&s, SOURCE "/u1")->cert, "u1-new");
    for (int i = 1; i < 4; i++) {
        char key[32];
        snprintf(key, sizeof(key), SOURCE "/%s", objs[i]);
        assert_int_equal(last_of(&s, key)->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL);
    }
    assert_int_equal(last_of(&s, SOURCE "/u5")->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT);
    read_topic(t.held, &h);
    /* Every held key ends in a null record: nothing is held any more. */
    for (int i = 0; i < 4; i++) {
        char key[32];
        snprintf(key, sizeof(key), SOURCE "/%s", objs[i]);
        assert_true(last_of(&h, key)->null_value);
    }
    p = open_pipeline(&o);
    assert_int_equal((int)col_pipeline_held_count(p), 0);
    must(col_pipeline_close(p, true));
    cs_metrics_free(reg);
    free_topics(&t);
}

/* ---- kill -9 at named points ----------------------------------------------------------------------- */

#define FEED_STEPS 24
#define FEED_OBJECTS 4
#define FEED_OVERLAP 3 /* a restart replays this many steps before its checkpoint, like a snapshot overlap */

typedef struct kill_ctx {
    const char *point;
    int nth;
    int hits;
    int fd;
} kill_ctx;

/* In the child: at the named point, tell the parent and wait to be killed. */
static void report_and_wait(void *arg, const char *point)
{
    kill_ctx *k = arg;
    if (!k->point || strcmp(point, k->point) != 0 || ++k->hits != k->nth)
        return;
    char c = 'K';
    if (write(k->fd, &c, 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

/* The child: feed steps from the checkpoint (minus an overlap) to the end. */
static int child_main(void)
{
    topics t = {getenv("COL_IT_EVENTS"), getenv("COL_IT_CP"), getenv("COL_IT_HELD"), getenv("COL_IT_TXN")};
    kill_ctx k = {getenv("COL_IT_KILL_POINT"),
                  atoi(getenv("COL_IT_KILL_NTH") ? getenv("COL_IT_KILL_NTH") : "0"), 0,
                  atoi(getenv("COL_IT_FD") ? getenv("COL_IT_FD") : "-1")};
    col_pipeline_opts o = opts_for(&t, 5, 0);
    o.hook = report_and_wait;
    o.hook_arg = &k;
    col_pipeline *p = NULL;
    cs_err *err = col_pipeline_open(&o, pipeline_conf(), &p);
    int start = 0;
    if (!err && col_pipeline_checkpoint(p)) {
        const Certsync__V1__CollectorCheckpoint *cp = col_pipeline_checkpoint(p);
        start = atoi((const char *)cp->syncrepl_cookie.data + strlen("step=")) + 1 - FEED_OVERLAP;
        if (start < 0)
            start = 0;
    }
    for (int step = start; !err && step < FEED_STEPS; step++) {
        char obj[16], cert[32], cookie[32];
        snprintf(obj, sizeof(obj), "obj%d", step % FEED_OBJECTS);
        snprintf(cert, sizeof(cert), "obj%d-step%d", step % FEED_OBJECTS, step);
        snprintf(cookie, sizeof(cookie), "step=%d", step);
        test_ev te;
        make_ev(&te, obj, step, cert, false);
        err = col_pipeline_submit(p, &te.ev);
        if (!err) {
            Certsync__V1__CollectorCheckpoint cp = CERTSYNC__V1__COLLECTOR_CHECKPOINT__INIT;
            cp.has_syncrepl_cookie = 1;
            cp.syncrepl_cookie.data = (uint8_t *)cookie;
            cp.syncrepl_cookie.len = strlen(cookie) + 1; /* with the NUL, so atoi above stops */
            err = col_pipeline_set_position(p, &cp);
        }
    }
    if (!err)
        err = col_pipeline_close(p, true);
    else
        cs_err_free(col_pipeline_close(p, false));
    if (err) {
        fprintf(stderr, "child: %s\n", cs_err_message(err));
        cs_err_free(err);
        return 1;
    }
    return 0;
}

/* Runs this binary as a child feeding the pipeline; kills it with SIGKILL when it reports `point` for the
 * `nth` time (point NULL: let it finish). Returns the wait status. */
static int run_child(const topics *t, const char *point, int nth)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char fd[16], n[16];
        snprintf(fd, sizeof(fd), "%d", fds[1]);
        snprintf(n, sizeof(n), "%d", nth);
        close(fds[0]);
        setenv("COL_IT_CHILD", "1", 1);
        setenv("COL_IT_EVENTS", t->events, 1);
        setenv("COL_IT_CP", t->checkpoint, 1);
        setenv("COL_IT_HELD", t->held, 1);
        setenv("COL_IT_TXN", t->txn_id, 1);
        setenv("COL_IT_FD", fd, 1);
        setenv("COL_IT_KILL_NTH", n, 1);
        if (point)
            setenv("COL_IT_KILL_POINT", point, 1);
        else
            unsetenv("COL_IT_KILL_POINT");
        execl("/proc/self/exe", "test_col_pipeline", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char c = 0;
    ssize_t r;
    do {
        r = read(fds[0], &c, 1); /* blocks until the child reports its point, or EOF when it exits */
    } while (r < 0 && errno == EINTR);
    if (r == 1) {
        assert_int_equal(kill(pid, SIGKILL), 0);
        fprintf(stderr, "killed child %ld at %s #%d\n", (long)pid, point, nth);
    }
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (point && r == 1)
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return status;
}

static void check_feed_invariants(const topics *t)
{
    recs s;
    read_topic(t->events, &s);
    assert_invariants(&s);
    for (int o = 0; o < FEED_OBJECTS; o++) {
        char key[32], want[32];
        snprintf(key, sizeof(key), SOURCE "/obj%d", o);
        int last_step = FEED_STEPS - FEED_OBJECTS + o;
        snprintf(want, sizeof(want), "obj%d-step%d", o, last_step);
        const rec *r = last_of(&s, key);
        assert_string_equal(r->cert, want);
    }
    /* Every step's state reached the topic exactly once (no change lost, none twice). */
    assert_int_equal(s.n, FEED_STEPS);
    cps c;
    read_cps(t->checkpoint, &c);
    char want_cookie[32];
    snprintf(want_cookie, sizeof(want_cookie), "step=%d", FEED_STEPS - 1);
    assert_string_equal(c.last_cookie, want_cookie);
}

static void kill_at(const char *point, int nth)
{
    topics t;
    make_topics(&t);
    run_child(&t, point, nth);
    /* A second kill at another point of the restarted instance, then a clean run to the end. */
    run_child(&t, "before_commit", 1);
    int status = run_child(&t, NULL, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_feed_invariants(&t);
    free_topics(&t);
}

static void kill_between_produce_and_commit(void **state)
{
    (void)state;
    kill_at("before_commit", 2);
}

static void kill_right_after_commit(void **state)
{
    (void)state;
    kill_at("after_commit", 3);
}

static void kill_during_checkpoint_load(void **state)
{
    (void)state;
    kill_at("checkpoint_load", 1);
}

int main(void)
{
    if (getenv("COL_IT_CHILD"))
        return child_main();
    cs_log_set_level(CS_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_and_checkpoint_together),
        cmocka_unit_test(zombie_cannot_commit),
        cmocka_unit_test(restart_does_not_reemit),
        cmocka_unit_test(removal_sweep),
        cmocka_unit_test(mass_removal_guard),
        cmocka_unit_test(kill_between_produce_and_commit),
        cmocka_unit_test(kill_right_after_commit),
        cmocka_unit_test(kill_during_checkpoint_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
