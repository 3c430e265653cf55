/*
 * cs_kafka_producer + cs_state_reader against a real Kafka broker (tests/services/kafka.sh), which also
 * checks that librdkafka 2.0.2 works with the Kafka 4.x broker we run: transactions, read_committed,
 * consumer groups, send_offsets_to_transaction, fencing.
 * Every test creates its own topics, so tests can share one broker.
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

#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_state_reader.h"
#include "kafka_test_util.h"

#define LOAD_TIMEOUT_MS 30000
#define MAX_SEEN 64

/* What the reader returned, as "key=value" strings. */
typedef struct seen {
    int n;
    char rec[MAX_SEEN][128];
    int64_t last_offset;
} seen;

static cs_err *collect(const cs_state_record *r, void *opaque)
{
    seen *s = opaque;
    if (s->n >= MAX_SEEN)
        return cs_err_new(CS_ERR_INTERNAL, 0, "more than %d records", MAX_SEEN);
    snprintf(s->rec[s->n++], sizeof(s->rec[0]), "%.*s=%.*s", (int)r->key_len, (const char *)r->key,
             (int)r->value_len, (const char *)r->value);
    assert_true(r->timestamp_ms > 0);
    s->last_offset = r->offset;
    return NULL;
}

static void load(const char *topic, seen *s)
{
    memset(s, 0, sizeof(*s));
    uint64_t n = 0;
    cs_err *err = cs_state_reader_load(kt_conf(), topic, NULL, 0, LOAD_TIMEOUT_MS, collect, s, &n);
    if (err)
        fail_msg("load %s: %s", topic, cs_err_message(err));
    assert_int_equal((int)n, s->n);
}

static cs_kafka_producer *new_producer(const char *txn_id)
{
    cs_kafka_producer *p = NULL;
    char errstr[128];
    rd_kafka_conf_t *conf = kt_conf();
    /* Short so a test that leaves a transaction open cannot hold a partition for a minute. */
    assert_int_equal(rd_kafka_conf_set(conf, "transaction.timeout.ms", "20000", errstr, sizeof(errstr)), 0);
    cs_err *err = cs_kafka_producer_new(conf, txn_id, &p);
    if (err)
        fail_msg("%s", cs_err_message(err));
    err = cs_kafka_producer_init(p, 30000);
    if (err)
        fail_msg("%s", cs_err_message(err));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);
    return p;
}

static void must(cs_err *err)
{
    if (err)
        fail_msg("%s", cs_err_message(err));
}

static void produce_kv(cs_kafka_producer *p, const char *topic, int32_t part, const char *k, const char *v)
{
    cs_kafka_header h = {"source", "test", 4};
    must(cs_kafka_producer_produce(p, topic, part, k, strlen(k), v, strlen(v), &h, 1));
}

/* (a) Only the committed transaction's records are read back. */
static void commit_and_abort_read_committed(void **state)
{
    (void)state;
    char *topic = kt_unique_name("it-commit-abort");
    char *id = kt_unique_name("txn-a");
    kt_create_topic(topic, 2, kt_nodes() >= 3 ? 3 : 1, 1);
    cs_kafka_producer *p = new_producer(id);

    must(cs_kafka_producer_begin(p));
    produce_kv(p, topic, 0, "k1", "committed-1");
    produce_kv(p, topic, 1, "k2", "committed-2");
    must(cs_kafka_producer_commit(p));
    assert_int_equal(cs_kafka_producer_get_state(p), CS_KAFKA_PRODUCER_READY);

    must(cs_kafka_producer_begin(p));
    produce_kv(p, topic, 0, "k3", "aborted-3");
    produce_kv(p, topic, 1, "k4", "aborted-4");
    must(cs_kafka_producer_abort(p));

    must(cs_kafka_producer_begin(p));
    produce_kv(p, topic, 0, "k5", "committed-5");
    must(cs_kafka_producer_commit(p));
    kt_wait_stable(topic, 2);

    seen s;
    load(topic, &s);
    assert_int_equal(s.n, 3);
    int found1 = 0, found2 = 0, found5 = 0;
    for (int i = 0; i < s.n; i++) {
        assert_null(strstr(s.rec[i], "aborted"));
        found1 += strcmp(s.rec[i], "k1=committed-1") == 0;
        found2 += strcmp(s.rec[i], "k2=committed-2") == 0;
        found5 += strcmp(s.rec[i], "k5=committed-5") == 0;
    }
    assert_int_equal(found1 + found2 + found5, 3);

    /* The partition filter: partition 1 holds only k2. */
    seen s1 = {0};
    int32_t only1 = 1;
    must(cs_state_reader_load(kt_conf(), topic, &only1, 1, LOAD_TIMEOUT_MS, collect, &s1, NULL));
    assert_int_equal(s1.n, 1);
    assert_string_equal(s1.rec[0], "k2=committed-2");

    cs_kafka_producer_destroy(p);
    free(topic);
    free(id);
}

/* (b) A topic whose last record is an abort marker (and an empty topic) finishes loading. */
static void abort_marker_last_finishes(void **state)
{
    (void)state;
    char *topic = kt_unique_name("it-abort-last");
    char *empty = kt_unique_name("it-empty");
    char *id = kt_unique_name("txn-b");
    kt_create_topic(topic, 1, kt_nodes() >= 3 ? 3 : 1, 1);
    kt_create_topic(empty, 3, kt_nodes() >= 3 ? 3 : 1, 1);
    cs_kafka_producer *p = new_producer(id);

    must(cs_kafka_producer_begin(p));
    produce_kv(p, topic, 0, "k1", "v1");
    must(cs_kafka_producer_commit(p));
    must(cs_kafka_producer_begin(p));
    produce_kv(p, topic, 0, "k2", "aborted");
    produce_kv(p, topic, 0, "k3", "aborted");
    must(cs_kafka_producer_abort(p));
    kt_wait_stable(topic, 1);

    seen s;
    load(topic, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rec[0], "k1=v1");

    load(empty, &s);
    assert_int_equal(s.n, 0);

    cs_kafka_producer_destroy(p);
    free(topic);
    free(empty);
    free(id);
}

/* (c) A transaction still open by another producer: the load stops at the LSO instead of waiting. */
static void open_transaction_stops_at_lso(void **state)
{
    (void)state;
    char *topic = kt_unique_name("it-open-txn");
    char *id1 = kt_unique_name("txn-c1");
    char *id2 = kt_unique_name("txn-c2");
    kt_create_topic(topic, 1, kt_nodes() >= 3 ? 3 : 1, 1);
    cs_kafka_producer *done = new_producer(id1);
    cs_kafka_producer *open = new_producer(id2);

    must(cs_kafka_producer_begin(done));
    produce_kv(done, topic, 0, "k1", "v1");
    produce_kv(done, topic, 0, "k2", "v2");
    must(cs_kafka_producer_commit(done));
    kt_wait_stable(topic, 1); /* the commit marker of k1 k2 is at offset 2, before the open transaction */

    must(cs_kafka_producer_begin(open));
    produce_kv(open, topic, 0, "k3", "uncommitted");
    /* Make sure the open transaction's record is on the broker, holding the LSO. */
    assert_int_equal(rd_kafka_flush(cs_kafka_producer_rd_kafka(open), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    /* A later committed transaction lies beyond the LSO and must not be waited for either. */
    must(cs_kafka_producer_begin(done));
    produce_kv(done, topic, 0, "k4", "after-open");
    must(cs_kafka_producer_commit(done));

    /* The high watermark (read_uncommitted) is past the open record: the test really has one open.
     * And librdkafka 2.0.2 answers the LSO for a read_committed handle (what cs_state_reader relies on). */
    int64_t lo = 0, hi = 0, lso = 0;
    char errstr[128];
    rd_kafka_conf_t *pc = kt_conf();
    assert_int_equal(rd_kafka_conf_set(pc, "isolation.level", "read_uncommitted", errstr, sizeof(errstr)), 0);
    rd_kafka_t *peek = rd_kafka_new(RD_KAFKA_CONSUMER, pc, errstr, sizeof(errstr));
    assert_non_null(peek);
    assert_int_equal(rd_kafka_query_watermark_offsets(peek, topic, 0, &lo, &hi, 10000), 0);
    rd_kafka_destroy(peek);
    pc = kt_conf();
    assert_int_equal(rd_kafka_conf_set(pc, "isolation.level", "read_committed", errstr, sizeof(errstr)), 0);
    peek = rd_kafka_new(RD_KAFKA_CONSUMER, pc, errstr, sizeof(errstr));
    assert_non_null(peek);
    assert_int_equal(rd_kafka_query_watermark_offsets(peek, topic, 0, &lo, &lso, 10000), 0);
    rd_kafka_destroy(peek);
    assert_true(hi >= 5);     /* k1 k2 marker | k3 (open) | k4 (its marker follows asynchronously) */
    assert_int_equal(lso, 3); /* the first offset of the open transaction */

    int64_t t0 = (int64_t)time(NULL);
    seen s;
    load(topic, &s);
    assert_true((int64_t)time(NULL) - t0 < 10); /* did not wait for the 20 s transaction timeout */
    assert_int_equal(s.n, 2);
    assert_string_equal(s.rec[0], "k1=v1");
    assert_string_equal(s.rec[1], "k2=v2");

    /* Once the open transaction commits, everything is visible. */
    must(cs_kafka_producer_commit(open));
    kt_wait_stable(topic, 1);
    load(topic, &s);
    assert_int_equal(s.n, 4);

    cs_kafka_producer_destroy(open);
    cs_kafka_producer_destroy(done);
    free(topic);
    free(id1);
    free(id2);
}

/* (d) A second producer with the same transactional.id fences the first. */
static void second_producer_fences_first(void **state)
{
    (void)state;
    char *topic = kt_unique_name("it-fence");
    char *id = kt_unique_name("txn-d");
    kt_create_topic(topic, 1, kt_nodes() >= 3 ? 3 : 1, 1);
    cs_kafka_producer *old = new_producer(id);
    must(cs_kafka_producer_begin(old));
    produce_kv(old, topic, 0, "k", "from-zombie");

    cs_kafka_producer *newer = new_producer(id); /* init_transactions fences `old` */

    cs_err *err = cs_kafka_producer_commit(old);
    assert_non_null(err);
    cs_log_info("test", "zombie commit failed as expected: %s", cs_err_message(err));
    assert_true(cs_kafka_producer_is_fenced(err));
    assert_true(cs_err_is_fatal(err));
    assert_non_null(strstr(cs_err_message(err), id));
    assert_int_equal(cs_kafka_producer_get_state(old), CS_KAFKA_PRODUCER_FATAL);
    cs_err_free(err);
    /* Misuse after a fatal error is refused by the state machine. */
    err = cs_kafka_producer_begin(old);
    assert_int_equal(cs_err_code_of(err), CS_ERR_STATE);
    cs_err_free(err);

    must(cs_kafka_producer_begin(newer));
    produce_kv(newer, topic, 0, "k", "from-newer");
    must(cs_kafka_producer_commit(newer));
    kt_wait_stable(topic, 1);

    seen s;
    load(topic, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rec[0], "k=from-newer");

    cs_kafka_producer_destroy(old);
    cs_kafka_producer_destroy(newer);
    free(topic);
    free(id);
}

static rd_kafka_topic_partition_list_t *committed_offsets(rd_kafka_t *consumer, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0);
    assert_int_equal(rd_kafka_committed(consumer, l, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    return l;
}

/* (e) send_offsets_to_transaction with a real consumer group: offsets commit with the transaction only. */
static void send_offsets_commits_group_offsets(void **state)
{
    (void)state;
    char *in = kt_unique_name("it-in");
    char *out = kt_unique_name("it-out");
    char *group = kt_unique_name("it-group");
    char *id = kt_unique_name("txn-e");
    char errstr[256];
    kt_create_topic(in, 1, kt_nodes() >= 3 ? 3 : 1, 0);
    kt_create_topic(out, 1, kt_nodes() >= 3 ? 3 : 1, 0);
    cs_kafka_producer *p = new_producer(id);

    must(cs_kafka_producer_begin(p));
    for (int i = 0; i < 3; i++) {
        char v[16];
        snprintf(v, sizeof(v), "in-%d", i);
        produce_kv(p, in, 0, "k", v);
    }
    must(cs_kafka_producer_commit(p));
    kt_wait_stable(in, 1);

    rd_kafka_conf_t *cc = kt_conf();
    assert_int_equal(rd_kafka_conf_set(cc, "group.id", group, errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(cc, "isolation.level", "read_committed", errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(cc, "enable.auto.commit", "false", errstr, sizeof(errstr)), 0);
    assert_int_equal(rd_kafka_conf_set(cc, "auto.offset.reset", "earliest", errstr, sizeof(errstr)), 0);
    /* Eager assignor: librdkafka 2.0.2 has cooperative-rebalance bugs (services.md). */
    assert_int_equal(rd_kafka_conf_set(cc, "partition.assignment.strategy", "range", errstr, sizeof(errstr)),
                     0);
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof(errstr));
    assert_non_null(consumer);
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(consumer, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);

    int got = 0;
    int64_t last = -1;
    for (int i = 0; i < 300 && got < 3; i++) { /* bounded: 300 x 100 ms */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (!m)
            continue;
        if (!m->err) {
            got++;
            last = m->offset;
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(got, 3);
    assert_int_equal(last, 2); /* data at 0..2, commit marker at 3 */

    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, in, 0)->offset = 1;
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(consumer);
    assert_non_null(cgmd);

    /* An aborted transaction does not commit its offsets. */
    must(cs_kafka_producer_begin(p));
    produce_kv(p, out, 0, "k", "aborted-result");
    must(cs_kafka_producer_send_offsets(p, offs, cgmd, 30000));
    must(cs_kafka_producer_abort(p));
    kt_wait_stable(out, 1); /* the abort is complete, markers included */
    rd_kafka_topic_partition_list_t *c = committed_offsets(consumer, in);
    assert_true(c->elems[0].offset < 0); /* RD_KAFKA_OFFSET_INVALID: nothing committed */
    rd_kafka_topic_partition_list_destroy(c);

    /* A committed one does. */
    offs->elems[0].offset = last + 1;
    must(cs_kafka_producer_begin(p));
    produce_kv(p, out, 0, "k", "result");
    must(cs_kafka_producer_send_offsets(p, offs, cgmd, 30000));
    must(cs_kafka_producer_commit(p));
    assert_int_equal(kt_wait_committed_offset(consumer, in, 0, last + 1), last + 1);
    kt_wait_stable(out, 1);

    seen s;
    load(out, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rec[0], "k=result");

    rd_kafka_consumer_group_metadata_destroy(cgmd);
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    cs_kafka_producer_destroy(p);
    free(in);
    free(out);
    free(group);
    free(id);
}

/* A missing topic is a clear error that names the topic and the fix, not a hang. */
static void missing_topic_is_clear_error(void **state)
{
    (void)state;
    seen s = {0};
    cs_err *err = cs_state_reader_load(kt_conf(), "it-does-not-exist-xyz", NULL, 0, 10000, collect, &s, NULL);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_non_null(strstr(cs_err_message(err), "it-does-not-exist-xyz"));
    assert_non_null(strstr(cs_err_message(err), "create it"));
    cs_err_free(err);

    char *topic = kt_unique_name("it-badpart");
    kt_create_topic(topic, 1, kt_nodes() >= 3 ? 3 : 1, 1);
    int32_t part = 7;
    err = cs_state_reader_load(kt_conf(), topic, &part, 1, 10000, collect, &s, NULL);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_non_null(strstr(cs_err_message(err), "no partition 7"));
    cs_err_free(err);
    free(topic);
}

int main(void)
{
    cs_log_set_level(CS_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commit_and_abort_read_committed),    cmocka_unit_test(abort_marker_last_finishes),
        cmocka_unit_test(open_transaction_stops_at_lso),      cmocka_unit_test(second_producer_fences_first),
        cmocka_unit_test(send_offsets_commits_group_offsets), cmocka_unit_test(missing_topic_is_clear_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
