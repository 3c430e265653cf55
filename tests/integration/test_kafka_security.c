/*
 * Kafka transport security and least privilege (issue 6) against the real broker of
 * `tests/services/kafka.sh start DIR --secure` (fixture kafka_secure): SASL_SSL with SCRAM-SHA-512 and the
 * ACLs of tests/services/kafka/KafkaSecureSetup.java.
 *
 * Every client here is configured with the librdkafka properties a service's kafka.* passthrough sets
 * (security.protocol, ssl.ca.location, sasl.mechanisms, sasl.username, sasl.password), and every negative
 * test asserts librdkafka's error code, never log text. The topics are the design's fixed names because the
 * ACLs name them; each test makes its records unique by key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cs_kafka_producer.h"
#include "cs_state_reader.h"
#include "kafka_test_util.h"

#define T_EVENTS "certsync.changes.v1"
#define T_COL_STATE "certsync.collector-state.v1"
#define T_HELD "certsync.held.v1"
#define T_PUB_STATE "certsync.publisher-state.v1"
#define T_RESULTS "certsync.results.v1"
#define T_DLQ "certsync.dlq.v1"
#define T_RETRY "certsync.retry.v1"
#define PUB_GROUP "certsync-publisher"

#define ENV_VALUE_MAX 1024
#define MAX_ERRS 64

/* ---- the env file of kafka.sh start --secure ---- */

/* The value of `key` in $CS_KAFKA_ENV, copied to a static buffer (one per call site is enough: callers copy). */
static const char *env_get(const char *key)
{
    static char value[ENV_VALUE_MAX];
    const char *path = getenv("CS_KAFKA_ENV");
    if (!path)
        fail_msg("CS_KAFKA_ENV is not set: run through ctest (fixture kafka_secure) or set it to <dir>/env "
                 "written by tests/services/kafka.sh start <dir> --secure");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open CS_KAFKA_ENV=%s: start Kafka with tests/services/kafka.sh start DIR --secure",
                 path);
    char line[ENV_VALUE_MAX + 128];
    size_t klen = strlen(key);
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            snprintf(value, sizeof(value), "%s", line + klen + 1);
            found = true;
        }
    }
    fclose(f);
    if (!found)
        fail_msg("%s has no %s line: was the broker started with kafka.sh start DIR --secure?", path, key);
    return value;
}

/* The password in the file named by KAFKA_<USER>_PASSWORD_FILE, trailing newline trimmed. */
static void password_of(const char *user_upper, char *out, size_t out_size)
{
    char key[64];
    snprintf(key, sizeof(key), "KAFKA_%s_PASSWORD_FILE", user_upper);
    const char *path = env_get(key);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (%s)", path, key);
    if (!fgets(out, (int)out_size, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    assert_true(out[0] != '\0');
}

/* ---- client configuration ---- */

/* Errors librdkafka reported through error_cb, for assertions on codes. */
typedef struct errs {
    rd_kafka_resp_err_t codes[MAX_ERRS];
    int n;
} errs;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)reason;
    errs *e = opaque;
    if (e && e->n < MAX_ERRS)
        e->codes[e->n++] = (rd_kafka_resp_err_t)err;
}

static bool errs_has(const errs *e, rd_kafka_resp_err_t code)
{
    for (int i = 0; i < e->n; i++)
        if (e->codes[i] == code)
            return true;
    return false;
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        fail_msg("%s: %s", name, errstr);
}

/* Client options for one connection attempt; NULL fields take the secure defaults from the env file. */
typedef struct client_opts {
    const char *protocol; /* security.protocol (default SASL_SSL) */
    const char *ca_file;  /* ssl.ca.location (default KAFKA_CA_FILE) */
    const char *password; /* sasl.password (default: the user's password file) */
} client_opts;

/* A conf for `user` ("admin", "collector", "publisher") as a service's kafka.* passthrough would build it.
 * `e` (may be NULL) collects error_cb codes. Caller owns the conf. */
static rd_kafka_conf_t *user_conf(const char *user, const client_opts *o, errs *e)
{
    char upper[32], key[64], pw[256];
    size_t i;
    for (i = 0; user[i] && i + 1 < sizeof(upper); i++)
        upper[i] = (char)(user[i] >= 'a' && user[i] <= 'z' ? user[i] - 'a' + 'A' : user[i]);
    upper[i] = '\0';

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", env_get("KAFKA_BOOTSTRAP"));
    set(conf, "security.protocol", o && o->protocol ? o->protocol : env_get("KAFKA_SECURITY_PROTOCOL"));
    set(conf, "ssl.ca.location", o && o->ca_file ? o->ca_file : env_get("KAFKA_CA_FILE"));
    set(conf, "sasl.mechanisms", env_get("KAFKA_SASL_MECHANISM"));
    snprintf(key, sizeof(key), "KAFKA_%s_USERNAME", upper);
    set(conf, "sasl.username", env_get(key));
    if (o && o->password)
        snprintf(pw, sizeof(pw), "%s", o->password);
    else
        password_of(upper, pw, sizeof(pw));
    set(conf, "sasl.password", pw);
    /* The negative tests expect connection errors: keep librdkafka's own log lines for real trouble. */
    set(conf, "log_level", "2");
    if (e) {
        rd_kafka_conf_set_error_cb(conf, on_error);
        rd_kafka_conf_set_opaque(conf, e);
    }
    return conf;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("rd_kafka_new: %s", errstr);
    return rk;
}

/* The error of `topic` in a metadata response for it, as `user` sees it. */
static rd_kafka_resp_err_t topic_metadata_err(const char *user, const char *topic)
{
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, user_conf(user, NULL, NULL));
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 15000);
    if (err)
        fail_msg("metadata for %s as %s: %s", topic, user, rd_kafka_err2str(err));
    assert_int_equal(md->topic_cnt, 1);
    err = md->topics[0].err;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return err;
}

/* Waits (bounded, 30 s) until `user` sees read_committed LSO == high watermark on partition 0 of `topic`:
 * commit returns before the coordinator has written its markers (as kt_wait_stable, with credentials). */
static void wait_stable(const char *user, const char *topic)
{
    rd_kafka_conf_t *conf = user_conf(user, NULL, NULL);
    set(conf, "isolation.level", "read_committed");
    rd_kafka_t *committed = new_client(RD_KAFKA_CONSUMER, conf);
    conf = user_conf(user, NULL, NULL);
    set(conf, "isolation.level", "read_uncommitted");
    rd_kafka_t *uncommitted = new_client(RD_KAFKA_CONSUMER, conf);
    bool stable = false;
    for (int i = 0; i < 300 && !stable; i++) {
        int64_t lo, hwm = -1, lso = -2;
        stable = !rd_kafka_query_watermark_offsets(uncommitted, topic, 0, &lo, &hwm, 5000) &&
                 !rd_kafka_query_watermark_offsets(committed, topic, 0, &lo, &lso, 5000) && hwm == lso;
        if (!stable)
            rd_kafka_poll(committed, 100); /* markers are written asynchronously: nothing else to wait on */
    }
    rd_kafka_destroy(committed);
    rd_kafka_destroy(uncommitted);
    if (!stable)
        fail_msg("%s: transaction markers not all written after 30 s", topic);
}

/* ---- fixture: the design's topics, created by the admin super user ---- */

static int create_topics(void **state)
{
    (void)state;
    static const char *const topics[] = {T_EVENTS,  T_COL_STATE, T_HELD, T_PUB_STATE,
                                         T_RESULTS, T_DLQ,       T_RETRY};
    const size_t n = sizeof(topics) / sizeof(topics[0]);
    char errstr[512];
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, user_conf("admin", NULL, NULL));
    rd_kafka_NewTopic_t *nt[sizeof(topics) / sizeof(topics[0])];
    for (size_t i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], 1, 1, errstr, sizeof(errstr));
        assert_non_null(nt[i]);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    assert_non_null(ev);
    if (rd_kafka_event_error(ev))
        fail_msg("CreateTopics as admin: %s", rd_kafka_event_error_string(ev));
    size_t got = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &got);
    assert_int_equal(got, n);
    for (size_t i = 0; i < got; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        /* Already there when the test binary runs twice against one broker. */
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            fail_msg("creating %s as admin: %s", rd_kafka_topic_result_name(res[i]),
                     rd_kafka_topic_result_error_string(res[i]));
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    for (size_t i = 0; i < n; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    rd_kafka_destroy(rk);

    /* The admin writes one record to the publisher's state, so a collector that could read it would get
     * data (the negative test below must be able to fail). acks=all and a flush: it is on disk after. */
    rd_kafka_conf_t *conf = user_conf("admin", NULL, NULL);
    set(conf, "acks", "all");
    rk = new_client(RD_KAFKA_PRODUCER, conf);
    char seed_value[] = "publisher-only"; /* producev takes a non-const value pointer */
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(T_PUB_STATE), RD_KAFKA_V_KEY("seed", 4),
                                       RD_KAFKA_V_VALUE(seed_value, sizeof(seed_value) - 1), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- collector principal ---- */

typedef struct find_key {
    const char *key;
    int found;
} find_key;

static cs_err *count_key(const cs_state_record *r, void *opaque)
{
    find_key *f = opaque;
    if (r->key && r->key_len == strlen(f->key) && memcmp(r->key, f->key, r->key_len) == 0)
        f->found++;
    return NULL;
}

static void assert_ok(cs_err *err, const char *what)
{
    if (err) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s: %s", what, cs_err_message(err));
        cs_err_free(err);
        fail_msg("%s", msg);
    }
}

/* The collector commits one transaction to its three topics with a certsync-collector-* id and reads each
 * back, read_committed, with the state reader the services use. */
static void test_collector_txn_to_its_topics(void **state)
{
    (void)state;
    char *txn_id = kt_unique_name("certsync-collector-sec");
    char *key = kt_unique_name("obj");
    cs_kafka_producer *p = NULL;
    assert_ok(cs_kafka_producer_new(user_conf("collector", NULL, NULL), txn_id, &p), "producer_new");
    assert_ok(cs_kafka_producer_init(p, 60000), "init_transactions as collector");
    assert_ok(cs_kafka_producer_begin(p), "begin");
    static const char *const topics[] = {T_EVENTS, T_COL_STATE, T_HELD};
    for (size_t i = 0; i < 3; i++)
        assert_ok(
            cs_kafka_producer_produce(p, topics[i], RD_KAFKA_PARTITION_UA, key, strlen(key), "v", 1, NULL, 0),
            "produce");
    assert_ok(cs_kafka_producer_commit(p), "commit as collector");
    cs_kafka_producer_destroy(p);

    for (size_t i = 0; i < 3; i++) {
        wait_stable("collector", topics[i]);
        find_key f = {key, 0};
        assert_ok(cs_state_reader_load(user_conf("collector", NULL, NULL), topics[i], NULL, 0, 30000,
                                       count_key, &f, NULL),
                  topics[i]);
        if (f.found != 1)
            fail_msg("%s: the collector read its key %d times back, want 1", topics[i], f.found);
    }
    free(key);
    free(txn_id);
}

/* The collector may not even learn that the publisher's state topic exists: its metadata answer is
 * TOPIC_AUTHORIZATION_FAILED (the publisher, for contrast, sees the topic), and the services' state reader
 * fails without handing over a record. */
static void test_collector_cannot_read_publisher_state(void **state)
{
    (void)state;
    assert_int_equal(topic_metadata_err("publisher", T_PUB_STATE), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(topic_metadata_err("collector", T_PUB_STATE),
                     RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

    /* The services' own state reader, as the collector: it must fail and hand over no record (the admin
     * seeded one). */
    find_key f = {"seed", 0};
    cs_err *err = cs_state_reader_load(user_conf("collector", NULL, NULL), T_PUB_STATE, NULL, 0, 20000,
                                       count_key, &f, NULL);
    /* An authorization failure, worded as one (not "does not exist"), naming the missing permission. */
    assert_non_null(err);
    if (!strstr(cs_err_message(err), "not authorized to read topic") ||
        !strstr(cs_err_message(err), "DESCRIBE and READ") || !strstr(cs_err_message(err), T_PUB_STATE) ||
        strstr(cs_err_message(err), "does not exist"))
        fail_msg("state reader error does not name the missing permission: %s", cs_err_message(err));
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_false(cs_err_is_retriable(err));
    cs_err_free(err);
    assert_int_equal(f.found, 0);
}

/* The collector's principal may not register a publisher transactional id. */
static void test_collector_cannot_use_publisher_txn_id(void **state)
{
    (void)state;
    char *txn_id = kt_unique_name("certsync-publisher-stolen");
    rd_kafka_conf_t *conf = user_conf("collector", NULL, NULL);
    set(conf, "transactional.id", txn_id);
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, conf);
    rd_kafka_error_t *error = rd_kafka_init_transactions(rk, 30000);
    assert_non_null(error);
    assert_int_equal(rd_kafka_error_code(error), RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    rd_kafka_error_destroy(error);
    rd_kafka_destroy(rk);
    free(txn_id);
}

/* ---- publisher principal ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    *(rd_kafka_resp_err_t *)m->_private = m->err;
}

/* The publisher's principal produces to the events topic: the broker refuses the write. */
static void test_publisher_cannot_write_events(void **state)
{
    (void)state;
    rd_kafka_conf_t *conf = user_conf("publisher", NULL, NULL);
    set(conf, "acks", "all");
    set(conf, "message.timeout.ms", "30000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, conf);
    rd_kafka_resp_err_t dr = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    char forged[] = "x"; /* producev takes a non-const value pointer */
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(T_EVENTS), RD_KAFKA_V_KEY("forged", 6),
                                       RD_KAFKA_V_VALUE(forged, 1), RD_KAFKA_V_OPAQUE(&dr), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_flush(rk, 35000);
    rd_kafka_destroy(rk);
    assert_int_equal(dr, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

/* The publisher consumes the collector's events in group certsync-publisher and, in one transaction with a
 * certsync-publisher-* id, writes a result and commits the consumer offsets. */
static void test_publisher_consumes_and_commits_in_txn(void **state)
{
    (void)state;
    /* The collector writes three events to consume. */
    char *key = kt_unique_name("event");
    char *col_txn = kt_unique_name("certsync-collector-sec");
    cs_kafka_producer *p = NULL;
    assert_ok(cs_kafka_producer_new(user_conf("collector", NULL, NULL), col_txn, &p),
              "collector producer_new");
    assert_ok(cs_kafka_producer_init(p, 60000), "collector init");
    assert_ok(cs_kafka_producer_begin(p), "collector begin");
    for (int i = 0; i < 3; i++)
        assert_ok(cs_kafka_producer_produce(p, T_EVENTS, 0, key, strlen(key), "e", 1, NULL, 0),
                  "produce event");
    assert_ok(cs_kafka_producer_commit(p), "collector commit");
    cs_kafka_producer_destroy(p);
    p = NULL;

    /* The publisher's transactional producer first (init fences zombies before reading, as the service). */
    char *pub_txn = kt_unique_name("certsync-publisher-sec");
    assert_ok(cs_kafka_producer_new(user_conf("publisher", NULL, NULL), pub_txn, &p),
              "publisher producer_new");
    assert_ok(cs_kafka_producer_init(p, 60000), "publisher init");

    rd_kafka_conf_t *conf = user_conf("publisher", NULL, NULL);
    set(conf, "group.id", PUB_GROUP);
    set(conf, "enable.auto.commit", "false");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "isolation.level", "read_committed");
    rd_kafka_t *c = new_client(RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, T_EVENTS, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);

    /* Consume until our three events (earlier runs left others before them). Bounded: 60 s. */
    int mine = 0;
    int64_t last = -1;
    for (int i = 0; i < 600 && mine < 3; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fail_msg("publisher consuming %s: %s", T_EVENTS, rd_kafka_message_errstr(m));
        if (!m->err && m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0) {
            mine++;
            last = m->offset;
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(mine, 3);

    assert_ok(cs_kafka_producer_begin(p), "publisher begin");
    assert_ok(
        cs_kafka_producer_produce(p, T_RESULTS, RD_KAFKA_PARTITION_UA, key, strlen(key), "ok", 2, NULL, 0),
        "produce result");
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, T_EVENTS, 0)->offset = last + 1;
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(c);
    assert_ok(cs_kafka_producer_send_offsets(p, offs, cgmd, 30000), "send_offsets as publisher");
    assert_ok(cs_kafka_producer_commit(p), "publisher commit");
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    rd_kafka_topic_partition_list_destroy(offs);
    cs_kafka_producer_destroy(p);

    assert_int_equal(kt_wait_committed_offset(c, T_EVENTS, 0, last + 1), last + 1);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(pub_txn);
    free(col_txn);
    free(key);
}

/* The publisher's principal may join only its own group. */
static void test_publisher_other_group_denied(void **state)
{
    (void)state;
    rd_kafka_conf_t *conf = user_conf("publisher", NULL, NULL);
    set(conf, "group.id", "certsync-not-the-publisher");
    rd_kafka_t *c = new_client(RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, T_EVENTS, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);
    rd_kafka_resp_err_t got = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < 300 && got == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (!m->err)
            fail_msg("the publisher consumed %s in a group it has no ACL for", T_EVENTS);
        got = m->err;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    assert_int_equal(got, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
}

/* ---- transport ---- */

/* Polls a client (bounded, 30 s) until error_cb reported `want`; its metadata request must fail. */
static void expect_connect_error(const client_opts *o, rd_kafka_resp_err_t want, rd_kafka_resp_err_t alt)
{
    errs e = {.n = 0};
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, user_conf("collector", o, &e));
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 5000);
    if (!err) {
        rd_kafka_metadata_destroy(md);
        fail_msg("metadata succeeded although the connection must be refused");
    }
    for (int i = 0; i < 300 && !errs_has(&e, want) && !(alt && errs_has(&e, alt)); i++)
        rd_kafka_poll(rk, 100);
    rd_kafka_destroy(rk);
    if (!errs_has(&e, want) && !(alt && errs_has(&e, alt)))
        fail_msg("want error %s, got %d other error(s), first %s", rd_kafka_err2name(want), e.n,
                 e.n ? rd_kafka_err2name(e.codes[0]) : "none");
    /* A TLS or plaintext failure is never reported as a successful login that was then refused. */
    if (want != RD_KAFKA_RESP_ERR__AUTHENTICATION)
        assert_false(errs_has(&e, RD_KAFKA_RESP_ERR__AUTHENTICATION));
}

static void test_wrong_password_fails_authentication(void **state)
{
    (void)state;
    client_opts o = {.password = "not-the-password"};
    expect_connect_error(&o, RD_KAFKA_RESP_ERR__AUTHENTICATION, RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void test_untrusted_ca_fails_tls(void **state)
{
    (void)state;
    char other[ENV_VALUE_MAX];
    snprintf(other, sizeof(other), "%s", env_get("KAFKA_OTHER_CA_FILE"));
    client_opts o = {.ca_file = other};
    expect_connect_error(&o, RD_KAFKA_RESP_ERR__SSL, RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void test_plaintext_to_sasl_ssl_port_fails(void **state)
{
    (void)state;
    /* The broker closes a connection whose first bytes are not a TLS record: librdkafka sees the transport
     * fail (and then all brokers down). */
    client_opts o = {.protocol = "plaintext"};
    expect_connect_error(&o, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collector_txn_to_its_topics),
        cmocka_unit_test(test_collector_cannot_read_publisher_state),
        cmocka_unit_test(test_collector_cannot_use_publisher_txn_id),
        cmocka_unit_test(test_publisher_cannot_write_events),
        cmocka_unit_test(test_publisher_consumes_and_commits_in_txn),
        cmocka_unit_test(test_publisher_other_group_denied),
        cmocka_unit_test(test_wrong_password_fails_authentication),
        cmocka_unit_test(test_untrusted_ca_fails_tls),
        cmocka_unit_test(test_plaintext_to_sasl_ssl_port_fails),
    };
    return cmocka_run_group_tests(tests, create_topics, NULL);
}
