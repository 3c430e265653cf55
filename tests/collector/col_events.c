/*
 * col_events: reads a collector events topic read_committed, for the service tests.
 *
 *   col_events BOOTSTRAP TOPIC dump            every committed record up to the end, then a summary
 *   col_events BOOTSTRAP TOPIC follow SECONDS  every committed record as it commits, for SECONDS
 *
 * One JSON line per record, flushed at once so a test can await a line instead of sleeping:
 *   {"type":"event","partition":P,"offset":O,"key":"...","kind":"upsert|removal","id":"...","dn":"...",
 *    "emit":"change|snapshot|resync","removal_reason":"deleted|out_of_scope|resync_absent",
 *    "mail":"...","user_certificate":["<sha256>",...],"user_smime_certificate":[...],"version":"<hex>",
 *    "order":"new|newer|equal|older|diverged"}
 * "order" compares the record's version with the previous record of the same key (cs_version_compare).
 * dump ends with {"type":"summary","records":N,"keys":K,"repeated_versions":R,"not_newer":B}: R counts
 * records whose (key, version) appeared before, B records whose version is not newer than the previous
 * one of the key. Errors: a line {"type":"error",...} and exit 1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cs_buf.h"
#include "cs_event.h"
#include "cs_version.h"

/* Per key: the last version and every version seen (as packed bytes), for the invariants. */
typedef struct key_state {
    char *key;
    uint8_t **versions;
    size_t *lens;
    size_t n;
} key_state;

static key_state *keys;
static size_t n_keys, cap_keys;
static uint64_t n_records, repeated, not_newer;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static key_state *key_find(const char *k)
{
    for (size_t i = 0; i < n_keys; i++)
        if (strcmp(keys[i].key, k) == 0)
            return &keys[i];
    if (n_keys == cap_keys) {
        cap_keys = cap_keys ? cap_keys * 2 : 64;
        keys = realloc(keys, cap_keys * sizeof *keys);
        if (!keys)
            abort();
    }
    keys[n_keys] = (key_state){.key = strdup(k)};
    return &keys[n_keys++];
}

static void hexs(cs_buf *b, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cs_buf_printf(b, "%02x", p[i]);
}

static void shas(cs_buf *b, const char *name, Certsync__V1__CertificateValue **v, size_t n)
{
    cs_buf_printf(b, ",\"%s\":[", name);
    for (size_t i = 0; i < n; i++) {
        cs_buf_add_str(b, i ? "," : "");
        cs_buf_add_json_string(b, v[i]->sha256 ? v[i]->sha256 : "");
    }
    cs_buf_add_str(b, "]");
}

static void str_field(cs_buf *b, const char *k, const char *v)
{
    if (!v)
        return;
    cs_buf_printf(b, ",\"%s\":", k);
    cs_buf_add_json_string(b, v);
}

static void record(const rd_kafka_message_t *m)
{
    cs_buf b;
    char key[1024];
    Certsync__V1__ChangeEvent *ev = NULL;
    cs_err *err = NULL;
    size_t kl = m->key_len < sizeof key - 1 ? m->key_len : sizeof key - 1;

    memcpy(key, m->key ? m->key : "", m->key ? kl : 0);
    key[m->key ? kl : 0] = '\0';
    cs_buf_init(&b, 4u << 20);
    cs_buf_printf(&b, "{\"type\":\"event\",\"partition\":%" PRId32 ",\"offset\":%" PRId64, m->partition,
                  m->offset);
    str_field(&b, "key", key);
    n_records++;
    if (m->payload == NULL) {
        cs_buf_add_str(&b, ",\"kind\":\"tombstone\"}");
        goto out;
    }
    err = cs_event_decode(m->payload, m->len, &ev);
    if (err) {
        str_field(&b, "decode_error", cs_err_message(err));
        cs_buf_add_str(&b, "}");
        cs_err_free(err);
        goto out;
    }
    cs_buf_printf(&b, ",\"kind\":\"%s\"",
                  ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL ? "removal" : "upsert");
    if (ev->identity) {
        str_field(&b, "id", ev->identity->object_id);
        str_field(&b, "dn", ev->identity->dn);
        str_field(&b, "mail", ev->identity->mail);
    }
    const char *emit[] = {"unspecified", "change", "snapshot", "resync"};
    const char *rr[] = {"", "deleted", "out_of_scope", "resync_absent"};
    cs_buf_printf(&b, ",\"emit\":\"%s\"", ev->emit_reason <= 3 ? emit[ev->emit_reason] : "?");
    if (ev->has_removal_reason && ev->removal_reason <= 3)
        cs_buf_printf(&b, ",\"removal_reason\":\"%s\"", rr[ev->removal_reason]);
    shas(&b, "user_certificate", ev->user_certificate, ev->n_user_certificate);
    shas(&b, "user_smime_certificate", ev->user_smime_certificate, ev->n_user_smime_certificate);
    size_t vl = ev->version ? certsync__v1__version__get_packed_size(ev->version) : 0;
    uint8_t *vp = malloc(vl + 1);
    if (ev->version)
        certsync__v1__version__pack(ev->version, vp);
    cs_buf_add_str(&b, ",\"version\":\"");
    hexs(&b, vp, vl);
    cs_buf_add_str(&b, "\"");
    key_state *ks = key_find(key);
    const char *order = "new";
    if (ks->n > 0) {
        size_t i = ks->n - 1;
        Certsync__V1__Version *prev = certsync__v1__version__unpack(NULL, ks->lens[i], ks->versions[i]);
        cs_version_order o = cs_version_compare(ev->version, prev);
        order = cs_version_order_name(o);
        if (o != CS_VERSION_NEWER)
            not_newer++;
        certsync__v1__version__free_unpacked(prev, NULL);
    }
    for (size_t i = 0; i < ks->n; i++)
        if (ks->lens[i] == vl && memcmp(ks->versions[i], vp, vl) == 0) {
            repeated++;
            break;
        }
    ks->versions = realloc(ks->versions, (ks->n + 1) * sizeof *ks->versions);
    ks->lens = realloc(ks->lens, (ks->n + 1) * sizeof *ks->lens);
    if (!ks->versions || !ks->lens)
        abort();
    ks->versions[ks->n] = vp;
    ks->lens[ks->n] = vl;
    ks->n++;
    cs_buf_printf(&b, ",\"order\":\"%s\"}", order);
out:
    printf("%s\n", cs_buf_str(&b));
    fflush(stdout);
    certsync__v1__change_event__free_unpacked(ev, NULL);
    cs_buf_free(&b);
}

static int fail(const char *what, const char *why)
{
    printf("{\"type\":\"error\",\"message\":\"%s: %s\"}\n", what, why);
    return 1;
}

int main(int argc, char **argv)
{
    char errstr[512];
    rd_kafka_t *rk = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int rc = 1;

    if (argc < 4 || (strcmp(argv[3], "dump") != 0 && strcmp(argv[3], "follow") != 0)) {
        fprintf(stderr, "usage: col_events BOOTSTRAP TOPIC dump | follow SECONDS\n");
        return 2;
    }
    bool follow = strcmp(argv[3], "follow") == 0;
    int64_t end = now_ms() + (follow && argc > 4 ? atoll(argv[4]) : 60) * 1000;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", "col-events-reader", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return fail("config", errstr);
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk)
        return fail("consumer", errstr);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, argv[2], NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        fail(argv[2], e ? rd_kafka_err2str(e) : "topic has no metadata");
        goto cleanup;
    }
    int np = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np; i++)
        rd_kafka_topic_partition_list_add(parts, argv[2], md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts)) {
        fail(argv[2], "assign failed");
        goto cleanup;
    }
    int eof = 0;
    while (now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err) {
            fprintf(stderr, "col_events: %s\n", rd_kafka_message_errstr(m));
        } else {
            record(m);
        }
        rd_kafka_message_destroy(m);
        if (!follow && eof >= np)
            break;
    }
    if (!follow && eof < np) {
        fail(argv[2], "did not reach the end of every partition in 60 s");
        goto cleanup;
    }
    if (!follow)
        printf("{\"type\":\"summary\",\"records\":%" PRIu64 ",\"keys\":%zu,\"repeated_versions\":%" PRIu64
               ",\"not_newer\":%" PRIu64 "}\n",
               n_records, n_keys, repeated, not_newer);
    rc = 0;
cleanup:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}
