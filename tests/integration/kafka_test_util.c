#include "kafka_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char bootstrap[1024];
static int nodes;

static void load_env(void)
{
    if (bootstrap[0])
        return;
    const char *path = getenv("CS_KAFKA_ENV");
    if (!path)
        fail_msg(
            "CS_KAFKA_ENV is not set: run through ctest (fixture kafka) or set it to <dir>/env written by "
            "tests/services/kafka.sh start <dir>");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open CS_KAFKA_ENV=%s: start Kafka with tests/services/kafka.sh start", path);
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "KAFKA_BOOTSTRAP=", 16) == 0)
            snprintf(bootstrap, sizeof(bootstrap), "%s", line + 16);
        else if (strncmp(line, "KAFKA_NODES=", 12) == 0)
            nodes = atoi(line + 12);
    }
    fclose(f);
    if (!bootstrap[0])
        fail_msg("%s has no KAFKA_BOOTSTRAP line", path);
}

const char *kt_bootstrap(void)
{
    load_env();
    return bootstrap;
}

int kt_nodes(void)
{
    load_env();
    return nodes;
}

char *kt_unique_name(const char *prefix)
{
    static unsigned counter;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s-%ld-%u-%ld", prefix, (long)getpid(), ++counter, (long)time(NULL));
    char *s = strdup(buf);
    assert_non_null(s);
    return s;
}

rd_kafka_conf_t *kt_conf(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", kt_bootstrap(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        fail_msg("bootstrap.servers: %s", errstr);
    /* librdkafka's own logs stay quiet unless a test fails and someone sets debug. */
    rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
    return conf;
}

void kt_create_topic(const char *name, int partitions, int replication, int compact)
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kt_conf(), errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, replication, errstr, sizeof(errstr));
    assert_non_null(nt);
    if (compact)
        assert_int_equal(rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact"), 0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    if (rd_kafka_event_error(ev))
        fail_msg("CreateTopics %s: %s", name, rd_kafka_event_error_string(ev));
    size_t n;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    assert_int_equal(n, 1);
    if (rd_kafka_topic_result_error(res[0]))
        fail_msg("creating topic %s: %s", name, rd_kafka_topic_result_error_string(res[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);

    /* Wait until every partition has a leader: a producer started at once would otherwise see
     * UNKNOWN_TOPIC for a moment. Bounded at 30 s. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
    int ok = 0;
    for (int i = 0; i < 300 && !ok; i++) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const rd_kafka_metadata_topic_t *t = &md->topics[0];
            ok = t->err == 0 && t->partition_cnt == partitions;
            for (int p = 0; ok && p < t->partition_cnt; p++)
                ok = t->partitions[p].leader >= 0 && t->partitions[p].err == 0;
            rd_kafka_metadata_destroy(md);
        }
        if (!ok)
            sleep_ms(100); /* metadata has no change notification to wait on */
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    if (!ok)
        fail_msg("topic %s has no leaders after 30 s", name);
}

int kt_broker_count(void)
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kt_conf(), errstr, sizeof(errstr));
    assert_non_null(rk);
    const struct rd_kafka_metadata *md = NULL;
    assert_int_equal(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int n = md->broker_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return n;
}

static rd_kafka_t *consumer_with_isolation(const char *level)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    if (rd_kafka_conf_set(conf, "isolation.level", level, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        fail_msg("isolation.level: %s", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

void kt_wait_stable(const char *topic, int partitions)
{
    rd_kafka_t *uncommitted = consumer_with_isolation("read_uncommitted");
    rd_kafka_t *committed = consumer_with_isolation("read_committed");
    int stable = 0;
    for (int i = 0; i < 300 && !stable; i++) {
        stable = 1;
        for (int p = 0; p < partitions && stable; p++) {
            int64_t lo, hwm = -1, lso = -2;
            if (rd_kafka_query_watermark_offsets(uncommitted, topic, p, &lo, &hwm, 5000) ||
                rd_kafka_query_watermark_offsets(committed, topic, p, &lo, &lso, 5000))
                stable = 0;
            else
                stable = hwm == lso;
        }
        if (!stable)
            sleep_ms(100); /* markers are written asynchronously; nothing to wait on but the offsets */
    }
    rd_kafka_destroy(uncommitted);
    rd_kafka_destroy(committed);
    if (!stable)
        fail_msg("topic %s: transaction markers not all written after 30 s", topic);
}

int64_t kt_wait_committed_offset(rd_kafka_t *consumer, const char *topic, int32_t partition, int64_t want)
{
    int64_t got = RD_KAFKA_OFFSET_INVALID;
    for (int i = 0; i < 100; i++) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, partition);
        if (rd_kafka_committed(consumer, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            got = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (got == want)
            break;
        sleep_ms(100); /* offsets of a committed transaction become visible once its markers are written */
    }
    return got;
}
