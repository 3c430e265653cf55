/*
 * pub_owner: the multi-site precedence and its decision table. Besides the single rules, a small model of
 * the publisher (per-object gate, per-recipient applied owner, an "Exchange" holding what was written and a
 * journal of writes) runs every ORDER of small event sets through pub_owner_decide() and asserts the same
 * final owner and Exchange state, no write on a replay, and no owner flip-flop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pub_owner.h"

static pub_owner_rules *rules_ab(void)
{
    const char *prio[] = {"site-a", "site-b"};
    pub_owner_rules *r = NULL;
    cs_err *err = pub_owner_rules_new(prio, 2, &r);
    assert_null(err);
    return r;
}

static void test_rank(void **state)
{
    (void)state;
    pub_owner_rules *r = rules_ab();
    assert_int_equal(pub_owner_rank(r, "site-a/1"), 0);
    assert_int_equal(pub_owner_rank(r, "site-b/1"), 1);
    assert_int_equal(pub_owner_rank(r, "site-c/1"), 2);  /* unlisted: after every listed one */
    assert_int_equal(pub_owner_rank(r, "site-ab/1"), 2); /* a prefix is not the source */
    assert_int_equal(pub_owner_rank(NULL, "site-b/1"), 0);
    pub_owner_rules_free(r);
}

static void expect_config_error(const char *const *prio, size_t n, const char *needle)
{
    pub_owner_rules *r = NULL;
    cs_err *err = pub_owner_rules_new(prio, n, &r);
    assert_non_null(err);
    assert_null(r);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    if (!strstr(cs_err_message(err), needle))
        fail_msg("'%s' does not name '%s'", cs_err_message(err), needle);
    cs_err_free(err);
}

static void test_rules_errors(void **state)
{
    (void)state;
    const char *dup[] = {"site-a", "site-b", "site-a"};
    expect_config_error(dup, 3, "twice");
    const char *empty[] = {"site-a", ""};
    expect_config_error(empty, 2, "sources.priority[1]");
    const char *slash[] = {"site/a"};
    expect_config_error(slash, 1, "site/a");
}

static void test_stamp_time(void **state)
{
    (void)state;
    Certsync__V1__AttributeStamp csn = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__AttributeStamp ad = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__Version v = CERTSYNC__V1__VERSION__INIT;
    /* 2024-01-02T03:04:05.123456Z = 1704164645 s */
    csn.csn = (char *)(uintptr_t) "20240102030405.123456Z#000000#000#000000";
    v.user_certificate = &csn;
    assert_true(pub_owner_stamp_us(&v) == 1704164645LL * 1000000 + 123456);
    ad.has_originating_time = 1;
    ad.originating_time = 1704164646;
    v.lifecycle = &ad; /* the newest stamp of the set counts */
    assert_true(pub_owner_stamp_us(&v) == 1704164646LL * 1000000);
    csn.csn = (char *)(uintptr_t) "garbage";
    v.lifecycle = NULL;
    assert_true(pub_owner_stamp_us(&v) == 0);
    assert_true(pub_owner_stamp_us(NULL) == 0);
}

/* A version whose only stamp is a lifecycle stamp at `t` seconds. */
typedef struct ver {
    Certsync__V1__AttributeStamp st;
    Certsync__V1__Version v;
} ver;

static const Certsync__V1__Version *mkver(ver *x, int64_t t)
{
    certsync__v1__attribute_stamp__init(&x->st);
    certsync__v1__version__init(&x->v);
    x->st.has_version = 1;
    x->st.version = 1;
    x->st.has_originating_time = 1;
    x->st.originating_time = t;
    x->v.lifecycle = &x->st;
    return &x->v;
}

static void test_compare(void **state)
{
    (void)state;
    pub_owner_rules *r = rules_ab();
    ver va, vb, vc, vd;
    pub_owner_claim a = {"site-a/1", mkver(&va, 10), true};
    pub_owner_claim b = {"site-b/1", mkver(&vb, 99), true};
    /* priority beats a newer stamp */
    assert_true(pub_owner_compare(r, &a, &b) < 0);
    assert_true(pub_owner_compare(r, &b, &a) > 0);
    /* an ineligible (removed / empty) owner loses to any eligible claim */
    a.eligible = false;
    assert_true(pub_owner_compare(r, &a, &b) > 0);
    a.eligible = true;
    /* a tie on priority (two unlisted sources) goes to the newest stamp */
    pub_owner_claim c = {"site-c/1", mkver(&vc, 10), true};
    pub_owner_claim d = {"site-d/1", mkver(&vd, 20), true};
    assert_true(pub_owner_compare(r, &d, &c) < 0);
    /* equal stamps: the key decides, never the arrival order */
    mkver(&vd, 10);
    assert_true(pub_owner_compare(r, &c, &d) < 0);
    assert_true(pub_owner_compare(r, &c, &c) == 0);
    pub_owner_claim all[] = {d, b, c, a};
    assert_int_equal(pub_owner_pick(r, all, 4), 3);
    assert_true(pub_owner_pick(r, all, 0) == SIZE_MAX);
    pub_owner_rules_free(r);
}

static void test_decide_table(void **state)
{
    (void)state;
    pub_owner_rules *r = rules_ab();
    ver va, vb;
    pub_owner_claim c[] = {{"site-b/1", mkver(&vb, 20), true}, {"site-a/1", mkver(&va, 10), true}};
    /* first write: the owner writes */
    pub_owner_verdict v = pub_owner_decide(r, c, 2, NULL, false, "site-b/1");
    assert_int_equal(v.owner, 1);
    assert_int_equal(v.action, PUB_OWNER_WRITE);
    /* a non-owner's change: nothing */
    v = pub_owner_decide(r, c, 2, "site-a/1", true, "site-b/1");
    assert_int_equal(v.action, PUB_OWNER_KEEP);
    assert_false(v.owner_changed);
    /* the owner's change: one write */
    v = pub_owner_decide(r, c, 2, "site-a/1", true, "site-a/1");
    assert_int_equal(v.action, PUB_OWNER_WRITE);
    /* the higher-priority source takes over from the one that wrote */
    v = pub_owner_decide(r, c, 2, "site-b/1", true, "site-a/1");
    assert_int_equal(v.action, PUB_OWNER_WRITE);
    assert_true(v.owner_changed);
    /* the owner removed: ownership passes to site-b, which writes (its content comes from its last event) */
    c[1].eligible = false;
    v = pub_owner_decide(r, c, 2, "site-a/1", true, "site-a/1");
    assert_int_equal(v.owner, 0);
    assert_int_equal(v.action, PUB_OWNER_WRITE);
    /* both gone: the recipient is cleared once, then left alone */
    c[0].eligible = false;
    v = pub_owner_decide(r, c, 2, "site-b/1", true, "site-b/1");
    assert_int_equal(v.action, PUB_OWNER_CLEAR);
    v = pub_owner_decide(r, c, 2, "site-a/1", false, "site-b/1");
    assert_int_equal(v.action, PUB_OWNER_KEEP);
    /* re-mapped away: no claim left on the old recipient, which still holds certificates */
    v = pub_owner_decide(r, c, 0, "site-a/1", true, NULL);
    assert_int_equal(v.action, PUB_OWNER_CLEAR);
    assert_true(v.owner == SIZE_MAX);
    pub_owner_rules_free(r);
}

/* ------------------------------------------------------------------ the order model */

#define MAX_OBJ 8
#define MAX_RCPT 4
#define MAX_JOURNAL 64

typedef struct mev {
    const char *key;
    const char *rcpt; /* what the event's identity resolves to */
    int64_t t;        /* version (one lifecycle stamp at t) */
    bool eligible;    /* upsert with certificates */
    const char *content;
} mev;

typedef struct mobj {
    const char *key;
    const char *rcpt;
    int64_t t;
    bool eligible;
    const char *content;
    ver v;
} mobj;

typedef struct mrcpt {
    const char *id;
    const char *owner; /* applied RecipientState owner */
    bool eligible;     /* what was written were certificates (not a clear) */
    const char *exchange;
    const char *journal_owner[MAX_JOURNAL];
    size_t n_journal;
} mrcpt;

typedef struct model {
    const pub_owner_rules *rules;
    mobj objs[MAX_OBJ];
    size_t n_objs;
    mrcpt rcpts[MAX_RCPT];
    size_t n_rcpts;
    size_t writes, not_owner;
} model;

static mrcpt *model_rcpt(model *m, const char *id)
{
    for (size_t i = 0; i < m->n_rcpts; i++)
        if (strcmp(m->rcpts[i].id, id) == 0)
            return &m->rcpts[i];
    assert_true(m->n_rcpts < MAX_RCPT);
    mrcpt *r = &m->rcpts[m->n_rcpts++];
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->exchange = "";
    return r;
}

static void model_settle(model *m, const char *rid, const char *changed_key)
{
    pub_owner_claim claims[MAX_OBJ];
    const mobj *who[MAX_OBJ];
    size_t n = 0;
    for (size_t i = 0; i < m->n_objs; i++) {
        if (strcmp(m->objs[i].rcpt, rid) != 0)
            continue;
        claims[n] = (pub_owner_claim){m->objs[i].key, &m->objs[i].v.v, m->objs[i].eligible};
        who[n++] = &m->objs[i];
    }
    mrcpt *r = model_rcpt(m, rid);
    pub_owner_verdict v = pub_owner_decide(m->rules, claims, n, r->owner, r->eligible, changed_key);
    switch (v.action) {
    case PUB_OWNER_WRITE:
        r->exchange = who[v.owner]->content;
        r->owner = who[v.owner]->key;
        r->eligible = true;
        assert_true(r->n_journal < MAX_JOURNAL);
        r->journal_owner[r->n_journal++] = r->owner;
        m->writes++;
        break;
    case PUB_OWNER_CLEAR:
        r->exchange = "";
        r->owner = v.owner == SIZE_MAX ? NULL : who[v.owner]->key;
        r->eligible = false;
        assert_true(r->n_journal < MAX_JOURNAL);
        r->journal_owner[r->n_journal++] = "(clear)";
        m->writes++;
        break;
    case PUB_OWNER_KEEP:
        if (changed_key && v.owner != SIZE_MAX && strcmp(who[v.owner]->key, changed_key) != 0)
            m->not_owner++;
        break;
    }
}

/* The publisher's handling of one event: gate, claim update, then the old and the new recipient settle. */
static void model_event(model *m, const mev *e)
{
    mobj *o = NULL;
    for (size_t i = 0; i < m->n_objs; i++)
        if (strcmp(m->objs[i].key, e->key) == 0)
            o = &m->objs[i];
    if (o && e->t <= o->t)
        return; /* the version gate: stale or a replay */
    const char *old_rcpt = o ? o->rcpt : NULL;
    if (!o) {
        assert_true(m->n_objs < MAX_OBJ);
        o = &m->objs[m->n_objs++];
    }
    o->key = e->key;
    o->rcpt = e->rcpt;
    o->t = e->t;
    o->eligible = e->eligible;
    o->content = e->content;
    mkver(&o->v, e->t);
    /* Re-map: the old recipient loses the claim (and is handed over or cleared), in the same step. */
    if (old_rcpt && strcmp(old_rcpt, e->rcpt) != 0)
        model_settle(m, old_rcpt, NULL);
    model_settle(m, e->rcpt, e->key);
}

static bool next_perm(size_t *a, size_t n)
{
    if (n < 2)
        return false;
    size_t i = n - 1;
    while (i > 0 && a[i - 1] >= a[i])
        i--;
    if (i == 0)
        return false;
    size_t j = n - 1;
    while (a[j] <= a[i - 1])
        j--;
    size_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
    for (size_t l = i, r = n - 1; l < r; l++, r--) {
        t = a[l];
        a[l] = a[r];
        a[r] = t;
    }
    return true;
}

typedef struct expect {
    const char *rcpt;
    const char *exchange;
    const char *owner; /* NULL: none */
} expect;

/*
 * Runs every order of `ev[0..n)`, then the same order again (a replay after a restart of the consumer):
 * the final Exchange state and owner of each expected recipient are the same for every order, the replay
 * writes nothing, and, when `monotone`, the journal of writes never goes back to a worse-ranked owner.
 */
static void run_all_orders(const mev *ev, size_t n, const expect *want, size_t n_want, bool monotone)
{
    pub_owner_rules *rules = rules_ab();
    size_t idx[8];
    size_t orders = 0;
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    do {
        model m;
        memset(&m, 0, sizeof(m));
        m.rules = rules;
        for (size_t i = 0; i < n; i++)
            model_event(&m, &ev[idx[i]]);
        size_t writes = m.writes;
        for (size_t i = 0; i < n; i++)
            model_event(&m, &ev[idx[i]]);
        assert_int_equal(m.writes, writes); /* replay: the gate skips everything */
        for (size_t w = 0; w < n_want; w++) {
            mrcpt *r = model_rcpt(&m, want[w].rcpt);
            if (strcmp(r->exchange, want[w].exchange) != 0 ||
                (want[w].owner == NULL) != (r->owner == NULL || !r->eligible) ||
                (want[w].owner && strcmp(want[w].owner, r->owner) != 0))
                fail_msg("order #%zu: %s holds '%s' owned by %s, want '%s' owned by %s", orders, r->id,
                         r->exchange, r->owner ? r->owner : "(none)", want[w].exchange,
                         want[w].owner ? want[w].owner : "(none)");
            for (size_t j = 1; monotone && j < r->n_journal; j++)
                if (pub_owner_rank(rules, r->journal_owner[j]) >
                    pub_owner_rank(rules, r->journal_owner[j - 1]))
                    fail_msg("order #%zu: %s flip-flopped from %s back to %s", orders, r->id,
                             r->journal_owner[j - 1], r->journal_owner[j]);
        }
        orders++;
    } while (next_perm(idx, n));
    pub_owner_rules_free(rules);
}

static void test_orders_priority(void **state)
{
    (void)state;
    const mev ev[] = {
        {"site-b/bob", "R", 20, true, "b20"}, {"site-a/bob", "R", 10, true, "a10"},
        {"site-b/bob", "R", 30, true, "b30"}, /* a non-owner's change */
        {"site-a/bob", "R", 40, true, "a40"}, /* the owner's change */
        {"site-c/bob", "R", 50, true, "c50"}, /* an unlisted source, newest of all */
    };
    const expect want[] = {{"R", "a40", "site-a/bob"}};
    run_all_orders(ev, 5, want, 1, true);
}

static void test_orders_owner_removed(void **state)
{
    (void)state;
    const mev ev[] = {
        {"site-a/bob", "R", 10, true, "a10"},
        {"site-b/bob", "R", 20, true, "b20"},
        {"site-a/bob", "R", 30, false, ""}, /* deleted / out of scope in the priority source */
        {"site-c/bob", "R", 40, false, ""}, /* present, but without certificates */
    };
    const expect want[] = {{"R", "b20", "site-b/bob"}};
    run_all_orders(ev, 4, want, 1, false);
}

static void test_orders_all_removed(void **state)
{
    (void)state;
    const mev ev[] = {
        {"site-a/bob", "R", 10, true, "a10"},
        {"site-b/bob", "R", 20, true, "b20"},
        {"site-a/bob", "R", 30, false, ""},
        {"site-b/bob", "R", 35, false, ""},
    };
    const expect want[] = {{"R", "", NULL}};
    run_all_orders(ev, 4, want, 1, false);
}

static void test_orders_tie_newest_stamp(void **state)
{
    (void)state;
    /* two unlisted sources rank equal: the newest stamp owns, in every order */
    const mev ev[] = {
        {"site-c/bob", "R", 10, true, "c10"},
        {"site-d/bob", "R", 20, true, "d20"},
        {"site-c/bob", "R", 25, true, "c25"},
        {"site-d/bob", "R", 30, true, "d30"}, /* newest, and the later key: the stamp decides, not the key */
    };
    const expect want[] = {{"R", "d30", "site-d/bob"}};
    run_all_orders(ev, 4, want, 1, false);
}

static void test_orders_remap(void **state)
{
    (void)state;
    /* site-a's object changes its mail: it now resolves to R2. R1 passes to site-b; R2 gets site-a's state. */
    const mev ev[] = {
        {"site-a/bob", "R1", 10, true, "a10"},
        {"site-b/bob", "R1", 20, true, "b20"},
        {"site-a/bob", "R2", 30, true, "a30"},
        {"site-b/eve", "R2", 15, true, "e15"},
    };
    const expect want[] = {{"R1", "b20", "site-b/bob"}, {"R2", "a30", "site-a/bob"}};
    run_all_orders(ev, 4, want, 2, false);
    /* alone on the old recipient: re-mapping clears it */
    const mev alone[] = {
        {"site-a/bob", "R1", 10, true, "a10"},
        {"site-a/bob", "R2", 30, true, "a30"},
    };
    const expect want2[] = {{"R1", "", NULL}, {"R2", "a30", "site-a/bob"}};
    run_all_orders(alone, 2, want2, 2, false);
}

static void test_non_owner_counted(void **state)
{
    (void)state;
    pub_owner_rules *rules = rules_ab();
    model m;
    memset(&m, 0, sizeof(m));
    m.rules = rules;
    const mev ev[] = {{"site-a/bob", "R", 10, true, "a10"},
                      {"site-b/bob", "R", 20, true, "b20"},
                      {"site-b/bob", "R", 30, true, "b30"}};
    for (size_t i = 0; i < 3; i++)
        model_event(&m, &ev[i]);
    assert_int_equal(m.writes, 1);
    assert_int_equal(m.not_owner, 2);
    pub_owner_rules_free(rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_rules_errors),
        cmocka_unit_test(test_stamp_time),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_decide_table),
        cmocka_unit_test(test_orders_priority),
        cmocka_unit_test(test_orders_owner_removed),
        cmocka_unit_test(test_orders_all_removed),
        cmocka_unit_test(test_orders_tie_newest_stamp),
        cmocka_unit_test(test_orders_remap),
        cmocka_unit_test(test_non_owner_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
