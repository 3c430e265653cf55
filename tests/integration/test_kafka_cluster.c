/*
 * The 3-node KRaft cluster from `kafka.sh start DIR --nodes 3`: all brokers are in the metadata, and a
 * transaction round trip works on a topic with replication factor 3 (min.insync.replicas 2).
 * Failover tests (kill a node by KAFKA_NODE<i>_PID) build on this fixture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_state_reader.h"
#include "kafka_test_util.h"

static void three_brokers_in_metadata(void **state)
{
    (void)state;
    assert_int_equal(kt_nodes(), 3);
    assert_int_equal(kt_broker_count(), 3);
}

static cs_err *count(const cs_state_record *r, void *opaque)
{
    int *n = opaque;
    if (r->value_len == 2 && memcmp(r->value, "v1", 2) == 0)
        (*n)++;
    return NULL;
}

static void transaction_round_trip_rf3(void **state)
{
    (void)state;
    char *topic = kt_unique_name("it-rf3");
    char *id = kt_unique_name("txn-rf3");
    kt_create_topic(topic, 3, 3, 1);

    cs_kafka_producer *p = NULL;
    cs_err *err = cs_kafka_producer_new(kt_conf(), id, &p);
    if (!err)
        err = cs_kafka_producer_init(p, 60000);
    if (!err)
        err = cs_kafka_producer_begin(p);
    for (int i = 0; !err && i < 3; i++)
        err = cs_kafka_producer_produce(p, topic, i, "k", 1, "v1", 2, NULL, 0);
    if (!err)
        err = cs_kafka_producer_commit(p);
    if (err)
        fail_msg("%s", cs_err_message(err));
    kt_wait_stable(topic, 3);

    int n = 0;
    uint64_t total = 0;
    err = cs_state_reader_load(kt_conf(), topic, NULL, 0, 30000, count, &n, &total);
    if (err)
        fail_msg("%s", cs_err_message(err));
    assert_int_equal(n, 3);
    assert_int_equal((int)total, 3);
    cs_kafka_producer_destroy(p);
    free(topic);
    free(id);
}

int main(void)
{
    cs_log_set_level(CS_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(three_brokers_in_metadata),
        cmocka_unit_test(transaction_round_trip_rf3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
