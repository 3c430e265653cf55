#include "cs_state_reader.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_log.h"

#define FACILITY "kafka"

/* Poll granularity: also how often the deadline is checked. */
#define POLL_MS 100
/* librdkafka's default consumer fetch queue (64 MiB per client) is more than a start-up load needs. */
#define RDKAFKA_DEFAULT_QUEUED_KBYTES "65536"
#define QUEUED_KBYTES "16384"
/* A state topic has tens of partitions; this bounds the per-partition bookkeeping. */
#define MAX_PARTITIONS 10000

typedef struct part_state {
    int32_t id;
    int64_t low;
    int64_t end;      /* LSO when the load started: read [low, end) */
    int64_t position; /* next offset expected */
    bool done;
} part_state;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t r = deadline - now_ms();
    return r < 0 ? 0 : (int)r;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    cs_log_level l = level <= 3   ? CS_LOG_ERROR
                     : level == 4 ? CS_LOG_WARN
                     : level <= 6 ? CS_LOG_INFO
                                  : CS_LOG_DEBUG;
    cs_log_kv(l, FACILITY, buf, "rdkafka_facility", fac, "client", rd_kafka_name(rk), NULL);
}

static cs_err *conf_set(rd_kafka_conf_t *conf, const char *topic, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return cs_err_new(CS_ERR_CONFIG, 0, "state reader for topic %s: setting %s=%s failed: %s", topic,
                          name, value, errstr);
    return NULL;
}

/*
 * An authorization failure, worded as one: which resource lacks which permission, and the fix. NULL when
 * `e` is no authorization error. `group` is the consumer's group.id.
 */
static cs_err *auth_error(rd_kafka_resp_err_t e, const char *topic, const char *group)
{
    if (e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "state reader: not authorized to read topic %s (%s): the Kafka principal of this "
                          "service needs the DESCRIBE and READ permissions on topic %s; add those ACLs "
                          "(e.g. kafka-acls.sh --add --allow-principal User:<user> --operation Describe "
                          "--operation Read --topic %s)",
                          topic, rd_kafka_err2name(e), topic, topic);
    if (e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "state reader: not authorized for consumer group %s while reading topic %s (%s): "
                          "the Kafka principal of this service needs the DESCRIBE and READ permissions on "
                          "group %s; add those ACLs, or set kafka.group.id to a group it may use",
                          group, topic, rd_kafka_err2name(e), group);
    return NULL;
}

/* Fills `parts` (capacity `cap`) from the topic's metadata, filtered by `want`. */
static cs_err *list_partitions(rd_kafka_t *rk, const char *topic, const char *group, const int32_t *want,
                               size_t n_want, int64_t deadline, part_state *parts, size_t cap, size_t *n_out)
{
    cs_err *err = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    *n_out = 0;
    if (!rkt)
        return cs_err_new(CS_ERR_CONFIG, 0, "state reader: invalid topic name '%s'", topic);
    rd_kafka_resp_err_t rerr = rd_kafka_metadata(rk, 0, rkt, &md, remaining_ms(deadline));
    if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = auth_error(rerr, topic, group);
        if (!err)
            err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE,
                             "state reader: metadata for topic %s failed: %s", topic, rd_kafka_err2str(rerr));
        goto cleanup;
    }
    /* Before "does not exist": a topic we may not describe comes back without partitions too. */
    if (md->topic_cnt == 1 && (err = auth_error(md->topics[0].err, topic, group)))
        goto cleanup;
    if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        md->topics[0].partition_cnt == 0) {
        err = cs_err_new(
            CS_ERR_CONFIG, 0,
            "state reader: topic %s does not exist: create it before starting (compacted, with its "
            "final partition count; tests: tests/services/kafka.sh topic DIR %s --partitions N "
            "--compact)",
            topic, topic);
        goto cleanup;
    }
    if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "state reader: metadata for topic %s: %s", topic,
                         rd_kafka_err2str(md->topics[0].err));
        goto cleanup;
    }
    const rd_kafka_metadata_topic_t *t = &md->topics[0];
    if (want) {
        if (n_want > cap) {
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0,
                             "state reader: %zu partitions of %s requested, at most %zu", n_want, topic, cap);
            goto cleanup;
        }
        for (size_t i = 0; i < n_want; i++) {
            bool found = false;
            for (int j = 0; j < t->partition_cnt && !found; j++)
                found = t->partitions[j].id == want[i];
            if (!found) {
                err = cs_err_new(CS_ERR_CONFIG, 0,
                                 "state reader: topic %s has no partition %" PRId32
                                 " (it has %d): the topic was "
                                 "created with fewer partitions than the events topic, recreate it",
                                 topic, want[i], t->partition_cnt);
                goto cleanup;
            }
            parts[(*n_out)++].id = want[i];
        }
    } else {
        if ((size_t)t->partition_cnt > cap) {
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "state reader: topic %s has %d partitions, at most %zu",
                             topic, t->partition_cnt, cap);
            goto cleanup;
        }
        for (int j = 0; j < t->partition_cnt; j++)
            parts[(*n_out)++].id = t->partitions[j].id;
    }

cleanup:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return err;
}

static part_state *find_part(part_state *parts, size_t n, int32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (parts[i].id == id)
            return &parts[i];
    return NULL;
}

/* Errors that waiting cannot fix. Others (a broker reconnecting) are retried until the deadline. */
static bool is_permanent(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED || e == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
           e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR__SSL;
}

cs_err *cs_state_reader_load(rd_kafka_conf_t *conf, const char *topic, const int32_t *partitions,
                             size_t n_partitions, int timeout_ms, cs_state_record_cb cb, void *opaque,
                             uint64_t *n_records)
{
    cs_err *err = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    part_state *parts = NULL;
    size_t n_parts = 0, n_done = 0;
    uint64_t records = 0;
    char buf[512], group[256] = "";
    size_t len;
    int64_t t0 = now_ms();
    int64_t deadline = t0 + (timeout_ms > 0 ? timeout_ms : 0);

    if (n_records)
        *n_records = 0;
    if (!conf)
        return cs_err_new(CS_ERR_INTERNAL, 0, "state reader: conf is NULL");
    if (!topic || !*topic || !cb || timeout_ms <= 0) {
        err = cs_err_new(CS_ERR_INTERNAL, 0,
                         "state reader: needs a topic, a callback and a timeout > 0 (got %d)", timeout_ms);
        goto cleanup;
    }
    if ((err = conf_set(conf, topic, "isolation.level", "read_committed")) ||
        (err = conf_set(conf, topic, "enable.partition.eof", "true")) ||
        (err = conf_set(conf, topic, "enable.auto.commit", "false")) ||
        (err = conf_set(conf, topic, "enable.auto.offset.store", "false")) ||
        (err = conf_set(conf, topic, "auto.offset.reset", "earliest")))
        goto cleanup;
    /* rd_kafka_consumer_poll() needs a group handle even for assign(): a group.id that nothing ever
     * joins (assign, not subscribe) or commits to (auto commit off). */
    len = sizeof(buf);
    if ((rd_kafka_conf_get(conf, "group.id", buf, &len) != RD_KAFKA_CONF_OK || buf[0] == '\0') &&
        (err = conf_set(conf, topic, "group.id", "certsync-state-reader-no-commits")))
        goto cleanup;
    len = sizeof(group);
    if (rd_kafka_conf_get(conf, "group.id", group, &len) != RD_KAFKA_CONF_OK)
        group[0] = '\0';
    len = sizeof(buf);
    if (rd_kafka_conf_get(conf, "queued.max.messages.kbytes", buf, &len) == RD_KAFKA_CONF_OK &&
        strcmp(buf, RDKAFKA_DEFAULT_QUEUED_KBYTES) == 0 &&
        (err = conf_set(conf, topic, "queued.max.messages.kbytes", QUEUED_KBYTES)))
        goto cleanup;
    rd_kafka_conf_set_log_cb(conf, log_cb);

    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, buf, sizeof(buf));
    if (!rk) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "state reader for topic %s: creating the consumer failed: %s",
                         topic, buf);
        goto cleanup;
    }
    conf = NULL; /* owned by rk now */

    size_t cap = partitions ? n_partitions : MAX_PARTITIONS;
    if (cap == 0)
        goto cleanup; /* an empty filter: nothing assigned, nothing to load */
    if (cap > MAX_PARTITIONS)
        cap = MAX_PARTITIONS + 1; /* list_partitions reports the excess */
    parts = calloc(cap, sizeof(*parts));
    if (!parts) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "state reader: out of memory");
        goto cleanup;
    }
    if ((err = list_partitions(rk, topic, group, partitions, n_partitions, deadline, parts,
                               cap > MAX_PARTITIONS ? MAX_PARTITIONS : cap, &n_parts)))
        goto cleanup;

    assignment = rd_kafka_topic_partition_list_new((int)n_parts);
    for (size_t i = 0; i < n_parts; i++) {
        part_state *ps = &parts[i];
        rd_kafka_resp_err_t rerr =
            rd_kafka_query_watermark_offsets(rk, topic, ps->id, &ps->low, &ps->end, remaining_ms(deadline));
        if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if ((err = auth_error(rerr, topic, group)))
                goto cleanup;
            err = cs_err_new(rerr == RD_KAFKA_RESP_ERR__TIMED_OUT ? CS_ERR_TIMEOUT : CS_ERR_KAFKA,
                             CS_ERR_F_RETRIABLE, "state reader: end offsets of %s [%" PRId32 "] failed: %s",
                             topic, ps->id, rd_kafka_err2str(rerr));
            goto cleanup;
        }
        ps->position = ps->low;
        if (ps->end <= ps->low) {
            ps->done = true; /* empty, or nothing stable yet */
            n_done++;
            continue;
        }
        rd_kafka_topic_partition_list_add(assignment, topic, ps->id)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    if (n_done < n_parts) {
        rd_kafka_resp_err_t rerr = rd_kafka_assign(rk, assignment);
        if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            err = cs_err_new(CS_ERR_KAFKA, 0, "state reader: assigning %s failed: %s", topic,
                             rd_kafka_err2str(rerr));
            goto cleanup;
        }
    }

    while (n_done < n_parts) {
        int left = remaining_ms(deadline);
        if (left == 0) {
            const part_state *ps = NULL;
            for (size_t i = 0; i < n_parts && !ps; i++)
                if (!parts[i].done)
                    ps = &parts[i];
            err = cs_err_new(CS_ERR_TIMEOUT, CS_ERR_F_RETRIABLE,
                             "state reader: loading %s timed out after %d ms: partition %" PRId32
                             " at offset %" PRId64 " of end %" PRId64
                             " (%zu of %zu partitions done); check the "
                             "brokers or raise the load timeout",
                             topic, timeout_ms, ps ? ps->id : -1, ps ? ps->position : -1, ps ? ps->end : -1,
                             n_done, n_parts);
            goto cleanup;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left < POLL_MS ? left : POLL_MS);
        if (!m)
            continue;
        part_state *ps = m->rkt && strcmp(rd_kafka_topic_name(m->rkt), topic) == 0
                             ? find_part(parts, n_parts, m->partition)
                             : NULL;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* EOF at the LSO: the rest are aborted records, control markers, or not yet stable. */
            if (ps && !ps->done && m->offset >= ps->end) {
                ps->done = true;
                ps->position = m->offset;
                n_done++;
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (is_permanent(m->err)) {
                err = auth_error(m->err, topic, group);
                if (!err)
                    err = cs_err_new(CS_ERR_KAFKA, 0, "state reader: consuming %s [%" PRId32 "] failed: %s",
                                     topic, m->partition, rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto cleanup;
            }
            cs_log_kv(CS_LOG_WARN, FACILITY, "state reader: transient consumer error", "topic", topic,
                      "error", rd_kafka_message_errstr(m), NULL);
        } else if (ps && !ps->done && m->offset >= ps->end) {
            /* Written after the load started, past a tail of control markers or aborted records that are
             * never delivered: this partition is complete. Without this the load would wait for an EOF
             * that a steadily written partition may not reach before the deadline. */
            ps->done = true;
            ps->position = m->offset;
            n_done++;
        } else if (ps && !ps->done) {
            rd_kafka_timestamp_type_t tstype;
            cs_state_record rec = {
                .topic = topic,
                .partition = m->partition,
                .offset = m->offset,
                .timestamp_ms = rd_kafka_message_timestamp(m, &tstype),
                .key = m->key,
                .key_len = m->key_len,
                .value = m->payload,
                .value_len = m->len,
            };
            ps->position = m->offset + 1;
            records++;
            cs_err *cerr = cb(&rec, opaque);
            if (cerr) {
                err = cs_err_wrap(cerr, "state reader: record %s [%" PRId32 "] offset %" PRId64, topic,
                                  m->partition, m->offset);
                rd_kafka_message_destroy(m);
                goto cleanup;
            }
            if (ps->position >= ps->end) {
                ps->done = true;
                n_done++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    cs_log(CS_LOG_INFO, FACILITY,
           "state reader: loaded %" PRIu64 " records from %zu partitions of %s in %" PRId64 " ms", records,
           n_parts, topic, now_ms() - t0);

cleanup:
    if (n_records)
        *n_records = records;
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(parts);
    return err;
}
