/*
 * pub_consumer against librdkafka 2.0.2's mock cluster: a restore that fails with a retriable error when the
 * partitions are assigned (the mock answers ListOffsets with "Not leader for partition", as a broker failover
 * does while the hook queries the end offset) must be retried until it succeeds, and the partitions must
 * then be consumed from their committed position (nothing fetched before the restore completed). Before the
 * fix the callback assigned nothing and the consumer idled forever.
 *
 * Pause reasons (pub_consumer.h): a partition paused from the assign hook for the multi-site guard stays
 * paused when the failed restore later succeeds (before the fix the retry's resume undid that pause, and a
 * partial owner consumed records it must not); and a pause does not outlive its assignment (librdkafka keeps
 * an application pause across unassign/assign, so a not-before pause set before a rebalance left the
 * partition paused forever once it came back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h> /* must follow rdkafka.h */

#include "pub_consumer.h"
#include "pub_owner.h"
#include "pub_pipeline.h"

#define TOPIC "unit-events"
#define N_RECORDS 5
/* Kafka protocol API key (librdkafka's RD_KAFKAP_* live in a header it does not install). */
#define API_LIST_OFFSETS 2
/* Enough failed ListOffsets requests for several failed restores, whatever librdkafka retries itself. */
#define N_INJECTED 12
#define DEADLINE_MS 40000

typedef struct hook_ctx {
    pub_consumer *c;
    int calls;
    int failures;
    int restored;
    int revokes;
    int assigns;
    int pause_ownership; /* set PUB_PAUSE_OWNERSHIP on every assigned partition, as a partial owner does */
} hook_ctx;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The pipeline's restore ends with the end-offset query (pub_consumer_lso); its error is the hook's. */
static cs_err *on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    hook_ctx *h = opaque;
    h->calls++;
    for (int i = 0; i < parts->cnt && h->pause_ownership; i++) {
        cs_err *e = pub_consumer_pause(h->c, parts->elems[i].topic, parts->elems[i].partition,
                                       PUB_PAUSE_OWNERSHIP, 1);
        if (e)
            fail_msg("pause in on_assign: %s", cs_err_message(e));
    }
    for (int i = 0; i < parts->cnt; i++) {
        int64_t lso = 0;
        cs_err *e = pub_consumer_lso(h->c, parts->elems[i].topic, parts->elems[i].partition, &lso);
        if (e) {
            h->failures++;
            return e;
        }
    }
    h->restored = 1;
    h->assigns++;
    return NULL;
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    (void)parts;
    hook_ctx *h = opaque;
    h->revokes++;
    h->restored = 0;
}

static rd_kafka_conf_t *conf_with(const char *name, const char *value, rd_kafka_conf_t *conf)
{
    char errstr[256];
    if (!conf)
        conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        fail_msg("%s=%s: %s", name, value, errstr);
    return conf;
}

static void retriable_restore_failure_is_retried(void **state)
{
    (void)state;
    char errstr[256];
    /* The producer's handle owns the mock cluster; the consumer joins it through its bootstrap address. */
    rd_kafka_conf_t *pconf = conf_with("test.mock.num.brokers", "1", NULL);
    conf_with("log_level", "0", pconf);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof(errstr));
    assert_non_null(prod);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(prod);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, TOPIC, 1, 1), 0);
    for (int i = 0; i < N_RECORDS; i++) {
        char v[16];
        snprintf(v, sizeof(v), "r%d", i);
        assert_int_equal(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
                                           RD_KAFKA_V_VALUE(v, strlen(v)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(prod, 10000), 0);
    rd_kafka_resp_err_t errs[N_INJECTED];
    for (int i = 0; i < N_INJECTED; i++)
        errs[i] = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
    rd_kafka_mock_push_request_errors_array(mc, API_LIST_OFFSETS, N_INJECTED, errs);

    rd_kafka_conf_t *conf = conf_with("bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), NULL);
    conf_with("group.id", "unit-restore", conf);
    conf_with("log_level", "0", conf);
    hook_ctx h = {0};
    pub_consumer_hooks hooks = {.on_assign = on_assign, .on_revoke = on_revoke, .opaque = &h};
    cs_err *err = pub_consumer_new(conf, &hooks, &h.c);
    if (err)
        fail_msg("%s", cs_err_message(err));
    const char *topics[] = {TOPIC};
    assert_null(pub_consumer_subscribe(h.c, topics, 1));

    int got = 0;
    long long deadline = mono_ms() + DEADLINE_MS;
    while (got < N_RECORDS && mono_ms() < deadline) {
        rd_kafka_message_t *m = NULL;
        err = pub_consumer_poll(h.c, 100, &m);
        if (err) {
            /* A retriable error is only a report; a fatal one means the restore was given up. */
            if (cs_err_is_fatal(err))
                fail_msg("poll: %s", cs_err_message(err));
            cs_err_free(err);
        }
        if (!m)
            continue;
        if (!m->err) {
            if (!h.restored)
                fail_msg("record at offset %lld fetched before the restore succeeded", (long long)m->offset);
            /* The position did not move while the partition waited: consumption starts at offset 0. */
            assert_int_equal(m->offset, got);
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    if (got < N_RECORDS)
        fail_msg("consumed %d of %d records in %d ms (restore calls %d, failures %d, restored %d): the "
                 "partition was never consumed after the failed restore",
                 got, N_RECORDS, DEADLINE_MS, h.calls, h.failures, h.restored);
    /* The failure really happened and the restore was retried, not skipped. */
    assert_true(h.failures >= 1);
    assert_true(h.calls >= h.failures + 1);
    assert_int_equal(h.restored, 1);
    pub_consumer_destroy(h.c);
    rd_kafka_destroy(prod);
}

/* A mock cluster (owned by the returned producer) with `n_topics` one-partition topics names[i], each holding
 * N_RECORDS records. */
static rd_kafka_t *mock_with_records(const char *const *names, int n_topics, rd_kafka_mock_cluster_t **mc)
{
    char errstr[256];
    rd_kafka_conf_t *pconf = conf_with("test.mock.num.brokers", "1", NULL);
    conf_with("log_level", "0", pconf);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof(errstr));
    assert_non_null(prod);
    *mc = rd_kafka_handle_mock_cluster(prod);
    assert_non_null(*mc);
    for (int t = 0; t < n_topics; t++) {
        assert_int_equal(rd_kafka_mock_topic_create(*mc, names[t], 1, 1), 0);
        for (int i = 0; i < N_RECORDS; i++) {
            char v[16];
            snprintf(v, sizeof(v), "r%d", i);
            assert_int_equal(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(names[t]), RD_KAFKA_V_PARTITION(0),
                                               RD_KAFKA_V_VALUE(v, strlen(v)),
                                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                             0);
        }
    }
    assert_int_equal(rd_kafka_flush(prod, 10000), 0);
    return prod;
}

static pub_consumer *consumer_on(rd_kafka_mock_cluster_t *mc, const char *group, hook_ctx *h)
{
    rd_kafka_conf_t *conf = conf_with("bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), NULL);
    conf_with("group.id", group, conf);
    conf_with("log_level", "0", conf);
    /* The mock coordinator waits for a member that rejoins after a subscription change up to its session
     * timeout: keep that short. */
    conf_with("session.timeout.ms", "6000", conf);
    conf_with("heartbeat.interval.ms", "500", conf);
    pub_consumer_hooks hooks = {.on_assign = on_assign, .on_revoke = on_revoke, .opaque = h};
    cs_err *err = pub_consumer_new(conf, &hooks, &h->c);
    if (err)
        fail_msg("%s", cs_err_message(err));
    return h->c;
}

/* Polls once; fails on a fatal error. Returns the message (data records and EOF events) or NULL. */
static rd_kafka_message_t *poll_once(pub_consumer *c)
{
    rd_kafka_message_t *m = NULL;
    cs_err *err = pub_consumer_poll(c, 100, &m);
    if (err) {
        if (cs_err_is_fatal(err))
            fail_msg("poll: %s", cs_err_message(err));
        cs_err_free(err);
    }
    return m;
}

/*
 * The hook pauses every partition for the multi-site guard and its restore fails retriably at first. Once the
 * retried restore succeeds, the partition must STAY paused (the restore's reason is gone, the ownership one
 * is not): nothing is fetched while polling on for QUIET_MS. Clearing the ownership reason then resumes it,
 * and it is consumed from its committed position.
 */
#define QUIET_MS 2500
static void ownership_pause_survives_restore_retry(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *names[] = {TOPIC};
    rd_kafka_t *prod = mock_with_records(names, 1, &mc);
    rd_kafka_resp_err_t errs[N_INJECTED];
    for (int i = 0; i < N_INJECTED; i++)
        errs[i] = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
    rd_kafka_mock_push_request_errors_array(mc, API_LIST_OFFSETS, N_INJECTED, errs);
    hook_ctx h = {.pause_ownership = 1};
    pub_consumer *c = consumer_on(mc, "unit-pause-reasons", &h);
    assert_null(pub_consumer_subscribe(c, names, 1));

    long long deadline = mono_ms() + DEADLINE_MS;
    while (!h.restored && mono_ms() < deadline) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err)
            fail_msg("record at offset %lld fetched %s", (long long)m->offset,
                     h.restored ? "right after the restore retry succeeded although the partition is paused "
                                  "for ownership: the retry's resume undid another reason's pause"
                                : "before the restore succeeded");
        if (m)
            rd_kafka_message_destroy(m);
    }
    if (!h.restored)
        fail_msg("the restore never succeeded (calls %d, failures %d)", h.calls, h.failures);
    assert_true(h.failures >= 1); /* the retry path really ran */
    assert_int_equal(pub_consumer_paused(c, TOPIC, 0), PUB_PAUSE_OWNERSHIP);
    long long quiet_end = mono_ms() + QUIET_MS;
    while (mono_ms() < quiet_end) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err)
            fail_msg("record at offset %lld fetched although the partition is paused for ownership: the "
                     "restore retry's resume undid another reason's pause",
                     (long long)m->offset);
        if (m)
            rd_kafka_message_destroy(m);
    }
    assert_null(pub_consumer_pause(c, TOPIC, 0, PUB_PAUSE_OWNERSHIP, 0));
    assert_int_equal(pub_consumer_paused(c, TOPIC, 0), 0);
    int got = 0;
    deadline = mono_ms() + DEADLINE_MS;
    while (got < N_RECORDS && mono_ms() < deadline) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err) {
            assert_int_equal(m->offset, got);
            got++;
        }
        if (m)
            rd_kafka_message_destroy(m);
    }
    if (got < N_RECORDS)
        fail_msg("consumed %d of %d records after the last reason was cleared", got, N_RECORDS);
    pub_consumer_destroy(c);
    rd_kafka_destroy(prod);
}

/* Reasons combine: a partition paused for two reasons resumes only when both are cleared. */
static void resume_only_when_no_reason_left(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *names[] = {TOPIC};
    rd_kafka_t *prod = mock_with_records(names, 1, &mc);
    hook_ctx h = {.pause_ownership = 1};
    pub_consumer *c = consumer_on(mc, "unit-pause-two", &h);
    assert_null(pub_consumer_subscribe(c, names, 1));
    long long deadline = mono_ms() + DEADLINE_MS;
    while (!h.restored && mono_ms() < deadline) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err)
            fail_msg("record fetched although paused from the assign hook");
        if (m)
            rd_kafka_message_destroy(m);
    }
    assert_true(h.restored);
    assert_null(pub_consumer_pause(c, TOPIC, 0, PUB_PAUSE_NOT_BEFORE, 1));
    assert_int_equal(pub_consumer_paused(c, TOPIC, 0), PUB_PAUSE_OWNERSHIP | PUB_PAUSE_NOT_BEFORE);
    assert_null(pub_consumer_pause(c, TOPIC, 0, PUB_PAUSE_OWNERSHIP, 0)); /* the not-before wait remains */
    long long quiet_end = mono_ms() + QUIET_MS;
    while (mono_ms() < quiet_end) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err)
            fail_msg("record at offset %lld fetched while a not-before pause remains", (long long)m->offset);
        if (m)
            rd_kafka_message_destroy(m);
    }
    assert_null(pub_consumer_pause(c, TOPIC, 0, PUB_PAUSE_NOT_BEFORE, 0));
    int got = 0;
    deadline = mono_ms() + DEADLINE_MS;
    while (got < N_RECORDS && mono_ms() < deadline) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err)
            got++;
        if (m)
            rd_kafka_message_destroy(m);
    }
    assert_int_equal(got, N_RECORDS);
    pub_consumer_destroy(c);
    rd_kafka_destroy(prod);
}

/*
 * A pause does not outlive its assignment: the consumer reads TOPIC and TOPIC2, pauses TOPIC[0] (a not-before
 * wait), then changes its subscription to TOPIC alone, which revokes everything and assigns TOPIC[0] again.
 * The re-assigned partition must be consumed; before the fix librdkafka's kept application pause left it
 * paused for good, with no reason left to resume it.
 */
#define TOPIC2 "unit-retry"
static void pause_does_not_outlive_assignment(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *names[] = {TOPIC, TOPIC2};
    rd_kafka_t *prod = mock_with_records(names, 2, &mc);
    hook_ctx h = {0};
    pub_consumer *c = consumer_on(mc, "unit-pause-revoke", &h);
    assert_null(pub_consumer_subscribe(c, names, 2));
    long long deadline = mono_ms() + DEADLINE_MS;
    while (h.assigns < 1 && mono_ms() < deadline) {
        rd_kafka_message_t *m = poll_once(c);
        if (m)
            rd_kafka_message_destroy(m);
    }
    assert_int_equal(h.assigns, 1);
    assert_null(pub_consumer_pause(c, TOPIC, 0, PUB_PAUSE_NOT_BEFORE, 1));
    assert_null(pub_consumer_subscribe(c, names, 1)); /* rebalance: revoke both, assign TOPIC[0] */
    int got = 0;
    deadline = mono_ms() + DEADLINE_MS;
    while (got < N_RECORDS && mono_ms() < deadline) {
        rd_kafka_message_t *m = poll_once(c);
        if (m && !m->err && h.assigns >= 2 && strcmp(rd_kafka_topic_name(m->rkt), TOPIC) == 0)
            got++;
        if (m)
            rd_kafka_message_destroy(m);
    }
    if (got < N_RECORDS)
        fail_msg("after the re-assignment %d of %d records of %s were consumed (assigns %d, revokes %d): the "
                 "pause set in the earlier assignment outlived it",
                 got, N_RECORDS, TOPIC, h.assigns, h.revokes);
    assert_true(h.revokes >= 1);
    assert_int_equal(pub_consumer_paused(c, TOPIC, 0), 0);
    pub_consumer_destroy(c);
    rd_kafka_destroy(prod);
}

/* The pipeline's applier for the test below: never reached (every record there is undecodable), counts. */
static cs_err *count_apply(void *ctx, const pub_write *w, size_t n, pub_apply_outcome *out)
{
    (void)w;
    (void)out;
    *(size_t *)ctx += n;
    return NULL;
}

static void set_or_fail(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    conf_with(name, value, conf);
}

/*
 * The pipeline with sources.priority (one instance must own every events partition) gets only one of two
 * events partitions, and its state restore fails retriably first (ListOffsets "Not leader for partition").
 * Records wait in both partitions. Nothing may be consumed: the assignment is partial. Before the fix the
 * partial guard paused only at the start of the next batch, so the batch that saw the assignment, and the
 * restore retry's resume, let the assigned partition's records through (dead-lettered here, as they are
 * undecodable: counted in the committed events).
 */
#define EV "unit-pipe-events"
static void partial_owner_consumes_nothing_after_restore_retry(void **state)
{
    (void)state;
    char errstr[256];
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *names[] = {EV};
    rd_kafka_conf_t *pconf = conf_with("test.mock.num.brokers", "1", NULL);
    conf_with("log_level", "0", pconf);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof(errstr));
    assert_non_null(prod);
    mc = rd_kafka_handle_mock_cluster(prod);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, EV, 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "unit-pipe-state", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "unit-pipe-retry", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "unit-pipe-results", 1, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "unit-pipe-dlq", 1, 1), 0);
    char key[] = "k", junk[] = "\xff\xfe"; /* undecodable: dead-lettered if ever consumed */
    for (int32_t part = 0; part < 2; part++)
        for (int i = 0; i < N_RECORDS; i++)
            assert_int_equal(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(EV), RD_KAFKA_V_PARTITION(part),
                                               RD_KAFKA_V_KEY(key, 1), RD_KAFKA_V_VALUE(junk, 2),
                                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                             0);
    assert_int_equal(rd_kafka_flush(prod, 10000), 0);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mc);

    /* The other member: joins first and takes both events partitions; it keeps polling so rebalances end. */
    rd_kafka_conf_t *oconf = conf_with("bootstrap.servers", boot, NULL);
    set_or_fail(oconf, "group.id", "unit-pipe-group");
    set_or_fail(oconf, "log_level", "0");
    set_or_fail(oconf, "enable.auto.commit", "false");
    set_or_fail(oconf, "session.timeout.ms", "6000");
    set_or_fail(oconf, "heartbeat.interval.ms", "500");
    set_or_fail(oconf, "partition.assignment.strategy", "range");
    set_or_fail(oconf, "enable.partition.eof", "true");
    rd_kafka_t *other = rd_kafka_new(RD_KAFKA_CONSUMER, oconf, errstr, sizeof(errstr));
    assert_non_null(other);
    rd_kafka_poll_set_consumer(other);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, EV, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(other, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    long long deadline = mono_ms() + DEADLINE_MS;
    int eofs = 0;
    while (eofs < 2 && mono_ms() < deadline) { /* assigned and its offset lookups done */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(other, 100);
        if (m) {
            eofs += m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
            rd_kafka_message_destroy(m);
        }
    }
    assert_int_equal(eofs, 2);
    (void)names;

    /* The pipeline joins; its restore's ListOffsets fail at first. */
    rd_kafka_resp_err_t errs[N_INJECTED];
    for (int i = 0; i < N_INJECTED; i++)
        errs[i] = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
    rd_kafka_mock_push_request_errors_array(mc, API_LIST_OFFSETS, N_INJECTED, errs);
    rd_kafka_conf_t *conf = conf_with("bootstrap.servers", boot, NULL);
    set_or_fail(conf, "group.id", "unit-pipe-group");
    set_or_fail(conf, "transactional.id", "unit-pipe-txn");
    set_or_fail(conf, "log_level", "0");
    set_or_fail(conf, "session.timeout.ms", "6000");
    set_or_fail(conf, "heartbeat.interval.ms", "500");
    const char *prio[] = {"a"};
    pub_owner_rules *rules = NULL;
    assert_null(pub_owner_rules_new(prio, 1, &rules));
    size_t applied = 0;
    pub_pipeline_opts o = {.topic_events = EV,
                           .topic_state = "unit-pipe-state",
                           .topic_results = "unit-pipe-results",
                           .topic_dlq = "unit-pipe-dlq",
                           .topic_retry = "unit-pipe-retry",
                           .instance_id = "unit-pipe",
                           .batch_max_events = 100,
                           .batch_max_wait_ms = 200,
                           .restore_timeout_ms = 3000,
                           .owner_rules = rules};
    pub_applier a = {.apply = count_apply, .ctx = &applied};
    pub_pipeline *p = NULL;
    cs_err *err = pub_pipeline_new(conf, &o, &a, &p);
    if (!err)
        err = pub_pipeline_start(p, 30000);
    if (err)
        fail_msg("%s", cs_err_message(err));
    /* Both poll until the pipeline owns one events partition with its state restored, then a few more
     * batches: each would have consumed that partition's records. */
    int after = 0;
    deadline = mono_ms() + DEADLINE_MS;
    while (after < 6 && mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(other, 50);
        if (m)
            rd_kafka_message_destroy(m);
        err = pub_pipeline_run_once(p, NULL);
        if (err) {
            if (cs_err_is_fatal(err))
                fail_msg("pipeline: %s", cs_err_message(err));
            cs_err_free(err);
        }
        if (pub_pipeline_owned_partitions(p) == 1)
            after++;
    }
    pub_pipeline_stats st;
    pub_pipeline_get_stats(p, &st);
    if (after < 6)
        fail_msg("the pipeline never owned one of the two events partitions (owned %zu, assignments %llu)",
                 pub_pipeline_owned_partitions(p), (unsigned long long)st.assignments);
    assert_true(pub_pipeline_partial_assignment(p));
    if (st.events != 0 || applied != 0)
        fail_msg("a partial owner (sources.priority) consumed %llu records (%zu applied): it must pause",
                 (unsigned long long)st.events, applied);
    pub_pipeline_destroy(p);
    pub_owner_rules_free(rules);
    rd_kafka_consumer_close(other);
    rd_kafka_destroy(other);
    rd_kafka_destroy(prod);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retriable_restore_failure_is_retried),
        cmocka_unit_test(ownership_pause_survives_restore_retry),
        cmocka_unit_test(resume_only_when_no_reason_left),
        cmocka_unit_test(pause_does_not_outlive_assignment),
        cmocka_unit_test(partial_owner_consumes_nothing_after_restore_retry),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]); /* one test by name, for debugging */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
