/*
 * pub_consumer against librdkafka 2.0.2's mock cluster: a restore that fails with a retriable error when the
 * partitions are assigned (the mock answers ListOffsets with "Not leader for partition", as a broker failover
 * does while the hook queries the end offset) must be retried until it succeeds, and the partitions must
 * then be consumed from their committed position (nothing fetched before the restore completed). Before the
 * fix the callback assigned nothing and the consumer idled forever.
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
    for (int i = 0; i < parts->cnt; i++) {
        int64_t lso = 0;
        cs_err *e = pub_consumer_lso(h->c, parts->elems[i].topic, parts->elems[i].partition, &lso);
        if (e) {
            h->failures++;
            return e;
        }
    }
    h->restored = 1;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retriable_restore_failure_is_retried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
