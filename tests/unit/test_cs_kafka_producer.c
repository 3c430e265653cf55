/*
 * cs_kafka_producer against librdkafka 2.0.2's built-in mock cluster: protocol errors injected on
 * InitProducerId, AddPartitionsToTxn and EndTxn must come back as cs_err with the right flags, and the
 * state machine must refuse misuse. (The 2.0.2 mock neither stores transactional offsets nor fences
 * producers by itself: the real-broker tests in tests/integration cover those.)
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

#include "cs_kafka_producer.h"
#include "cs_log.h"

#define TOPIC "unit-topic"

/* Kafka protocol API keys (librdkafka's RD_KAFKAP_* live in a header it does not install). */
#define API_INIT_PRODUCER_ID 22
#define API_ADD_PARTITIONS_TO_TXN 24
#define API_END_TXN 26

static rd_kafka_conf_t *mock_conf(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr, sizeof(errstr)), 0);
    /* Short, so an injected retriable error turns into a timeout quickly. */
    assert_int_equal(rd_kafka_conf_set(conf, "transaction.timeout.ms", "3000", errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)), 0);
    return conf;
}

static cs_kafka_producer *new_mock_producer(rd_kafka_mock_cluster_t **mc)
{
    cs_kafka_producer *p = NULL;
    cs_err *err = cs_kafka_producer_new(mock_conf(), "unit-txn", &p);
    if (err)
        fail_msg("%s", cs_err_message(err));
    *mc = rd_kafka_handle_mock_cluster(cs_kafka_producer_rd_kafka(p));
    assert_non_null(*mc);
    assert_int_equal(rd_kafka_mock_topic_create(*mc, TOPIC, 1, 1), 0);
    return p;
}

static void must(cs_err *err)
{
    if (err)
        fail_msg("%s", cs_err_message(err));
}

static cs_err *produce_one(cs_kafka_producer *p)
{
    return cs_kafka_producer_produce(p, TOPIC, 0, "k", 1, "v", 1, NULL, 0);
}

static void missing_transactional_id_is_config_error(void **state)
{
    (void)state;
    cs_kafka_producer *p = NULL;
    cs_err *err = cs_kafka_producer_new(mock_conf(), NULL, &p);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_non_null(strstr(cs_err_message(err), "transactional.id"));
    assert_null(p);
    cs_err_free(err);
}

static void caps_queue_and_sets_idempotence(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    const rd_kafka_conf_t *conf = rd_kafka_conf(cs_kafka_producer_rd_kafka(p));
    char buf[64];
    size_t len = sizeof(buf);
    assert_int_equal(rd_kafka_conf_get(conf, "queue.buffering.max.kbytes", buf, &len), RD_KAFKA_CONF_OK);
    assert_string_equal(buf, "65536");
    len = sizeof(buf);
    assert_int_equal(rd_kafka_conf_get(conf, "enable.idempotence", buf, &len), RD_KAFKA_CONF_OK);
    assert_string_equal(buf, "true");
    assert_string_equal(cs_kafka_producer_transactional_id(p), "unit-txn");
    cs_kafka_producer_destroy(p);
}

/* cs_kafka_producer_warm: known topics succeed, and the handles it keeps are bounded. */
static void warm_fetches_and_is_bounded(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    const char *one[] = {TOPIC};
    must(cs_kafka_producer_warm(p, one, 1, 5000));
    /* The metadata is there: the first transaction's produce is partitioned without a lookup. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(cs_kafka_producer_rd_kafka(p), TOPIC, NULL);
    assert_int_equal(rd_kafka_metadata(cs_kafka_producer_rd_kafka(p), 0, rkt, &md, 5000), 0);
    assert_int_equal(md->topic_cnt, 1);
    assert_int_equal(md->topics[0].partition_cnt, 1);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    const char *many[8] = {TOPIC, TOPIC, TOPIC, TOPIC, TOPIC, TOPIC, TOPIC, TOPIC};
    cs_err *err = cs_kafka_producer_warm(p, many, 8, 5000); /* 1 + 8 > 8 */
    assert_int_equal(cs_err_code_of(err), CS_ERR_INTERNAL);
    assert_non_null(strstr(cs_err_message(err), "more than 8 topics"));
    cs_err_free(err);
    must(cs_kafka_producer_init(p, 10000));
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    must(cs_kafka_producer_commit(p));
    cs_kafka_producer_destroy(p);
}

static void misuse_is_state_error(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_INIT);

    cs_err *err = cs_kafka_producer_begin(p); /* before init */
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    assert_non_null(strstr(cs_err_message(err), "unit-txn"));
    assert_non_null(strstr(cs_err_message(err), "state init"));
    cs_err_free(err);

    must(cs_kafka_producer_init(p, 10000));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);

    err = produce_one(p); /* outside a transaction */
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);
    err = cs_kafka_producer_commit(p);
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);
    err = cs_kafka_producer_init(p, 1000); /* twice */
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);

    must(cs_kafka_producer_begin(p));
    err = cs_kafka_producer_begin(p); /* nested */
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);
    must(produce_one(p));
    must(cs_kafka_producer_commit(p));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    assert_string_equal(cs_kafka_producer_state_name(CS_KAFKA_PRODUCER_ABORTABLE), "abortable");
    cs_kafka_producer_destroy(p);
}

static void init_fatal_error_is_fatal(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    rd_kafka_mock_push_request_errors(mc, API_INIT_PRODUCER_ID, 1,
                                      RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    cs_err *err = cs_kafka_producer_init(p, 10000);
    assert_non_null(err);
    assert_true(cs_err_is_fatal(err));
    assert_false(cs_err_is_retriable(err));
    assert_false(cs_kafka_producer_is_fenced(err));
    assert_int_equal(cs_err_code_of(err), CS_ERR_KAFKA);
    assert_non_null(strstr(cs_err_message(err), "unit-txn"));
    assert_non_null(strstr(cs_err_message(err), "init_transactions"));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_FATAL);
    cs_err_free(err);
    err = cs_kafka_producer_begin(p);
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);
    cs_kafka_producer_destroy(p);
}

static void init_timeout_is_retriable(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    /* The coordinator keeps loading: librdkafka retries internally until our timeout runs out. */
    for (int i = 0; i < 50; i++)
        rd_kafka_mock_push_request_errors(mc, API_INIT_PRODUCER_ID, 1,
                                          RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    cs_err *err = cs_kafka_producer_init(p, 500);
    assert_non_null(err);
    assert_true(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_INIT);
    cs_err_free(err);
    rd_kafka_mock_clear_request_errors(mc, API_INIT_PRODUCER_ID);
    must(cs_kafka_producer_init(p, 10000)); /* the same call succeeds later */
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    cs_kafka_producer_destroy(p);
}

static void add_partitions_abortable_error_requires_abort(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    rd_kafka_mock_push_request_errors(mc, API_ADD_PARTITIONS_TO_TXN, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    cs_err *err = cs_kafka_producer_commit(p);
    assert_non_null(err);
    assert_true(cs_err_txn_requires_abort(err));
    assert_false(cs_err_is_fatal(err));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_ABORTABLE);
    cs_err_free(err);
    /* Only abort is allowed now. */
    err = produce_one(p);
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    assert_non_null(strstr(cs_err_message(err), "abort it first"));
    cs_err_free(err);
    must(cs_kafka_producer_abort(p));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    /* And the producer is usable again. */
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    must(cs_kafka_producer_commit(p));
    cs_kafka_producer_destroy(p);
}

static void add_partitions_fenced_is_fatal_and_fenced(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    rd_kafka_mock_push_request_errors(mc, API_ADD_PARTITIONS_TO_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    cs_err *err = cs_kafka_producer_commit(p);
    assert_non_null(err);
    assert_true(cs_err_is_fatal(err));
    assert_true(cs_kafka_producer_is_fenced(err));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_FATAL);
    cs_err_free(err);
    cs_kafka_producer_destroy(p);
}

static void end_txn_fatal_error_is_fatal(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    rd_kafka_mock_push_request_errors(mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_INVALID_TXN_STATE);
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    cs_err *err = cs_kafka_producer_commit(p);
    assert_non_null(err);
    assert_true(cs_err_is_fatal(err));
    assert_false(cs_kafka_producer_is_fenced(err));
    assert_non_null(strstr(cs_err_message(err), "commit_transaction"));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_FATAL);
    cs_err_free(err);
    cs_kafka_producer_destroy(p);
}

static void end_txn_fenced_is_fenced(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    rd_kafka_mock_push_request_errors(mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH);
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    cs_err *err = cs_kafka_producer_commit(p);
    assert_non_null(err);
    assert_true(cs_kafka_producer_is_fenced(err));
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);
    cs_kafka_producer_destroy(p);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* transaction.timeout.ms of mock_conf(): the bound of one commit or abort call. */
#define MOCK_TXN_TIMEOUT_MS 3000
/* EndTxn errors injected: librdkafka retries each after retry.backoff.ms (100 ms), so the storm lasts
 * far longer than one bounded call (an unbounded commit would block until it ends, then succeed). */
#define STORM_ERRORS 150

static void push_end_txn_storm(rd_kafka_mock_cluster_t *mc)
{
    for (int i = 0; i < STORM_ERRORS; i++)
        rd_kafka_mock_push_request_errors(mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS);
}

/*
 * A coordinator that keeps answering EndTxn with COORDINATOR_LOAD_IN_PROGRESS: commit must come back
 * within transaction.timeout.ms as a retriable timeout (not block until the storm ends), the producer
 * must refuse an abort meanwhile (librdkafka does too: the commit goes on in the background), and the
 * same commit call must succeed once the errors stop.
 */
static void end_txn_storm_commit_times_out_then_resumes(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    push_end_txn_storm(mc);
    long long t0 = mono_ms();
    cs_err *err = cs_kafka_producer_commit(p);
    long long took = mono_ms() - t0;
    if (!err)
        fail_msg("commit succeeded after %lld ms during an EndTxn error storm: it was not bounded", took);
    assert_true(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    assert_false(cs_err_txn_requires_abort(err));
    assert_int_equal(cs_err_code_of(err), CS_ERR_TIMEOUT);
    assert_non_null(strstr(cs_err_message(err), "commit"));
    assert_true(took < MOCK_TXN_TIMEOUT_MS + 2000);
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_COMMITTING);
    cs_err_free(err);

    /* librdkafka refuses an abort while the timed-out commit is pending (retriable __CONFLICT)... */
    rd_kafka_error_t *re = rd_kafka_abort_transaction(cs_kafka_producer_rd_kafka(p), 100);
    assert_non_null(re);
    assert_int_equal(rd_kafka_error_code(re), RD_KAFKA_RESP_ERR__CONFLICT);
    rd_kafka_error_destroy(re);
    /* ... so the producer's state machine does not offer it either. */
    err = cs_kafka_producer_abort(p);
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    assert_non_null(strstr(cs_err_message(err), "commit"));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_COMMITTING);
    cs_err_free(err);

    /* The errors stop: the same call resumes and completes the commit. */
    rd_kafka_mock_clear_request_errors(mc, API_END_TXN);
    t0 = mono_ms();
    must(cs_kafka_producer_commit(p));
    assert_true(mono_ms() - t0 < MOCK_TXN_TIMEOUT_MS + 2000);
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    /* And the producer goes on normally. */
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    must(cs_kafka_producer_commit(p));
    cs_kafka_producer_destroy(p);
}

/* The same storm during an abort: a bounded, retriable timeout, then the same call completes the abort. */
static void end_txn_storm_abort_times_out_then_resumes(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    push_end_txn_storm(mc);
    long long t0 = mono_ms();
    cs_err *err = cs_kafka_producer_abort(p);
    long long took = mono_ms() - t0;
    if (!err)
        fail_msg("abort succeeded after %lld ms during an EndTxn error storm: it was not bounded", took);
    assert_true(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    assert_int_equal(cs_err_code_of(err), CS_ERR_TIMEOUT);
    assert_true(took < MOCK_TXN_TIMEOUT_MS + 2000); /* one bound for the flush before it and the abort */
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_ABORTING);
    cs_err_free(err);
    err = cs_kafka_producer_commit(p); /* no way back to a commit */
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);
    rd_kafka_mock_clear_request_errors(mc, API_END_TXN);
    must(cs_kafka_producer_abort(p));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    must(cs_kafka_producer_commit(p));
    cs_kafka_producer_destroy(p);
}

/* Drives cs_kafka_producer_commit_resume() from its callbacks: counts attempts, ends an outage or raises
 * the stop flag after a given number of them, and records what readiness would see. */
typedef struct resume_ctl {
    rd_kafka_mock_cluster_t *mc;
    int checks;          /* should_stop calls so far (one per failed attempt) */
    int heal_after;      /* end the outage (broker up, EndTxn errors cleared) at this check; 0: never */
    int stop_after;      /* raise the stop flag at this check; 0: never */
    int pending_now;     /* last on_pending value */
    int pending_reports; /* on_pending(true) calls */
} resume_ctl;

static bool ctl_should_stop(void *arg)
{
    resume_ctl *c = arg;
    c->checks++;
    if (c->heal_after > 0 && c->checks == c->heal_after) {
        rd_kafka_mock_broker_set_up(c->mc, 1);
        rd_kafka_mock_clear_request_errors(c->mc, API_END_TXN);
    }
    return c->stop_after > 0 && c->checks >= c->stop_after;
}

static void ctl_on_pending(void *arg, bool pending, const cs_err *why)
{
    resume_ctl *c = arg;
    c->pending_now = pending;
    if (pending) {
        c->pending_reports++;
        assert_non_null(why);
    }
}

/* A commit that keeps timing out (EndTxn storm) is resumed, not aborted, and completes once the coordinator
 * answers: one transaction, committed, with "pending" reported while it was not. */
static void commit_resume_retriable_then_success(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    push_end_txn_storm(mc);
    resume_ctl c = {.mc = mc, .heal_after = 3};
    cs_kafka_commit_opts o = {
        .call_timeout_ms = 300, .should_stop = ctl_should_stop, .on_pending = ctl_on_pending, .arg = &c};
    unsigned attempts = 0;
    must(cs_kafka_producer_commit_resume(p, &o, &attempts));
    assert_true(attempts >= 4); /* three failed attempts before the storm ended, then the one that worked */
    assert_int_equal(c.checks, (int)attempts - 1);
    assert_true(c.pending_reports >= 3);
    assert_int_equal(c.pending_now, 0); /* no longer pending once committed */
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    must(cs_kafka_producer_commit_resume(p, NULL, NULL));
    cs_kafka_producer_destroy(p);
}

/* The broker goes away mid-commit and comes back: the commit waits for it rather than giving up. */
static void commit_resume_broker_down_then_up(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    assert_int_equal(rd_kafka_mock_broker_set_down(mc, 1), 0);
    /* Up again well within transaction.timeout.ms (3 s), after which librdkafka would fail the message. */
    resume_ctl c = {.mc = mc, .heal_after = 2};
    cs_kafka_commit_opts o = {
        .call_timeout_ms = 300, .should_stop = ctl_should_stop, .on_pending = ctl_on_pending, .arg = &c};
    unsigned attempts = 0;
    must(cs_kafka_producer_commit_resume(p, &o, &attempts));
    assert_true(attempts >= 3);
    assert_int_equal(c.pending_now, 0);
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    cs_kafka_producer_destroy(p);
}

/* Stop requested during an endless outage: the loop ends promptly with a "commit pending" error (fatal for the
 * caller's loop, not requiring an abort), the producer stays COMMITTING (no abort, no new transaction), and
 * destroy does not hang. */
static void commit_resume_stop_during_outage(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_t *mc;
    cs_kafka_producer *p = new_mock_producer(&mc);
    must(cs_kafka_producer_init(p, 10000));
    must(cs_kafka_producer_begin(p));
    must(produce_one(p));
    assert_int_equal(rd_kafka_mock_broker_set_down(mc, 1), 0);
    resume_ctl c = {.mc = mc, .stop_after = 2};
    cs_kafka_commit_opts o = {
        .call_timeout_ms = 300, .should_stop = ctl_should_stop, .on_pending = ctl_on_pending, .arg = &c};
    unsigned attempts = 0;
    long long t0 = mono_ms();
    cs_err *err = cs_kafka_producer_commit_resume(p, &o, &attempts);
    long long took = mono_ms() - t0;
    assert_non_null(err);
    assert_true(cs_kafka_producer_is_commit_pending(err));
    assert_true(cs_err_is_fatal(err));
    assert_false(cs_err_txn_requires_abort(err));
    assert_false(cs_kafka_producer_is_fenced(err));
    assert_non_null(strstr(cs_err_message(err), "stop requested while a commit was pending"));
    assert_int_equal(attempts, 2);
    assert_true(took < 2 * 300 + 1500); /* two bounded attempts, not transaction.timeout.ms each */
    assert_int_equal(c.pending_now, 0); /* given up: reported as no longer pending */
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_COMMITTING);
    cs_err_free(err);
    err = cs_kafka_producer_begin(p); /* nothing new may start on top of the pending commit */
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);
    t0 = mono_ms();
    cs_kafka_producer_destroy(p);
    assert_true(mono_ms() - t0 < 15000);
}

/* The mapping itself, on error objects built by hand: no flag at all means fatal (services.md). */
static void error_flags_mapping(void **state)
{
    (void)state;
    rd_kafka_error_t *e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE, "plain");
    assert_int_equal(cs_kafka_error_flags(e), CS_ERR_F_FATAL);
    rd_kafka_error_destroy(e);
    e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__FENCED, "fenced");
    assert_int_equal(cs_kafka_error_flags(e), CS_ERR_F_FATAL | CS_KAFKA_ERR_F_FENCED);
    rd_kafka_error_destroy(e);
    assert_int_equal(cs_kafka_error_flags(NULL), 0);
}

int main(void)
{
    cs_log_set_level(CS_LOG_ERROR); /* the injected errors are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(missing_transactional_id_is_config_error),
        cmocka_unit_test(caps_queue_and_sets_idempotence),
        cmocka_unit_test(misuse_is_state_error),
        cmocka_unit_test(warm_fetches_and_is_bounded),
        cmocka_unit_test(init_fatal_error_is_fatal),
        cmocka_unit_test(init_timeout_is_retriable),
        cmocka_unit_test(add_partitions_abortable_error_requires_abort),
        cmocka_unit_test(add_partitions_fenced_is_fatal_and_fenced),
        cmocka_unit_test(end_txn_fatal_error_is_fatal),
        cmocka_unit_test(end_txn_fenced_is_fenced),
        cmocka_unit_test(end_txn_storm_commit_times_out_then_resumes),
        cmocka_unit_test(end_txn_storm_abort_times_out_then_resumes),
        cmocka_unit_test(commit_resume_retriable_then_success),
        cmocka_unit_test(commit_resume_broker_down_then_up),
        cmocka_unit_test(commit_resume_stop_during_outage),
        cmocka_unit_test(error_flags_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
