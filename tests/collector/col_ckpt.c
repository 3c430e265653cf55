/*
 * col_ckpt: reads (and, for failover tests, rewrites) a collector's committed checkpoint.
 *
 *   col_ckpt BOOTSTRAP TOPIC SOURCE show
 *       prints {"mode":N,"server":"...","invocation_id":"<hex>","usn":N,"snapshot_complete":B,"sequence":N}
 *   col_ckpt BOOTSTRAP TOPIC SOURCE set-invocation HEX32
 *       writes the newest checkpoint again with usn.invocation_id replaced: what a collector would find
 *       after its DC was restored from backup (a new invocationId). Written without a transaction, so a
 *       read_committed load sees it as the newest record of the key. Run it only while no collector of
 *       SOURCE runs.
 *   col_ckpt BOOTSTRAP TOPIC SOURCE set-server NAME
 *       the same with the checkpoint's server replaced: what a collector finds after a failover to another
 *       DC (the position is bound to the server that issued its USNs).
 * Errors: a line on stderr and exit 1.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "col_checkpoint.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "col_ckpt: %s: %s\n", what, why);
    return 1;
}

/* The newest checkpoint record of `source` in `topic` (read_committed), or NULL; caller frees. */
static Certsync__V1__CollectorCheckpoint *load(const char *bootstrap, const char *topic, const char *source)
{
    char errstr[512];
    rd_kafka_t *rk = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    Certsync__V1__CollectorCheckpoint *cp = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", "col-ckpt", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        fail("config", errstr);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fail("consumer", errstr);
        return NULL;
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        fail(topic, e ? rd_kafka_err2str(e) : "topic has no metadata");
        goto cleanup;
    }
    int np = md->topics[0].partition_cnt, eof = 0;
    parts = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts)) {
        fail(topic, "assign failed");
        goto cleanup;
    }
    for (int64_t end = now_ms() + 30000; now_ms() < end && eof < np;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err == 0 && m->key_len == strlen(source) && memcmp(m->key, source, m->key_len) == 0 &&
                   m->len > 0) {
            Certsync__V1__CollectorCheckpoint *n = NULL;
            cs_err *err = col_checkpoint_decode(m->payload, m->len, &n);
            if (err == NULL) {
                col_checkpoint_free(cp);
                cp = n;
            }
            cs_err_free(err);
        }
        rd_kafka_message_destroy(m);
    }
    if (eof < np) {
        fail(topic, "did not reach the end of every partition in 30 s");
        col_checkpoint_free(cp);
        cp = NULL;
    }
cleanup:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return cp;
}

static int store(const char *bootstrap, const char *topic, const char *source,
                 const Certsync__V1__CollectorCheckpoint *cp)
{
    char errstr[512];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = 1;
    cs_err *err = col_checkpoint_encode(cp, &buf, &len);
    if (err) {
        fail("encode", cs_err_message(err));
        cs_err_free(err);
        return 1;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        free(buf);
        return fail("config", errstr);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        free(buf);
        return fail("producer", errstr);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(source, strlen(source)), RD_KAFKA_V_VALUE(buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e)
        fail("produce", rd_kafka_err2str(e));
    else if ((e = rd_kafka_flush(rk, 30000)) != 0 || rd_kafka_outq_len(rk) > 0)
        fail("flush", e ? rd_kafka_err2str(e) : "not delivered in 30 s");
    else
        rc = 0;
    rd_kafka_destroy(rk);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 1;
    bool set_inv = argc == 6 && strcmp(argv[4], "set-invocation") == 0 && strlen(argv[5]) == 32;
    bool set_server = argc == 6 && strcmp(argv[4], "set-server") == 0;
    if (argc < 5 || (strcmp(argv[4], "show") != 0 && !set_inv && !set_server)) {
        fprintf(stderr,
                "usage: col_ckpt BOOTSTRAP TOPIC SOURCE show | set-invocation HEX32 | set-server NAME\n");
        return 2;
    }
    Certsync__V1__CollectorCheckpoint *cp = load(argv[1], argv[2], argv[3]);
    if (cp == NULL)
        return fail(argv[3], "no checkpoint");
    if (strcmp(argv[4], "show") == 0) {
        printf("{\"mode\":%d,\"server\":\"%s\",\"invocation_id\":\"", (int)cp->mode,
               cp->server ? cp->server : "");
        for (size_t i = 0; cp->usn && i < cp->usn->invocation_id.len; i++)
            printf("%02x", cp->usn->invocation_id.data[i]);
        printf("\",\"usn\":%" PRId64 ",\"snapshot_complete\":%s,\"sequence\":%" PRIu64 "}\n",
               cp->usn ? cp->usn->highest_committed_usn : -1, cp->snapshot_complete ? "true" : "false",
               cp->sequence);
        rc = 0;
    } else if (set_server) {
        free(cp->server);
        cp->server = strdup(argv[5]);
        rc = cp->server ? store(argv[1], argv[2], argv[3], cp) : fail("set-server", "out of memory");
    } else if (cp->usn == NULL || cp->usn->invocation_id.len != 16) {
        rc = fail(argv[3], "the checkpoint has no uSNChanged position");
    } else {
        for (int i = 0; i < 16; i++) {
            unsigned v = 0;
            if (sscanf(argv[5] + 2 * i, "%2x", &v) != 1) {
                col_checkpoint_free(cp);
                return fail(argv[5], "not 32 hex digits");
            }
            cp->usn->invocation_id.data[i] = (uint8_t)v;
        }
        rc = store(argv[1], argv[2], argv[3], cp);
    }
    col_checkpoint_free(cp);
    return rc;
}
