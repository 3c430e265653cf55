/*
 * bench_pub_events: produces COUNT change events to a Kafka topic for bench/bench_publisher.sh, one per
 * object "user<i>" of source "bench", each an upsert of the same userCertificate (DER) and
 * userSMIMECertificate (PKCS#7) at version 1. The objectGUID of user i is the 12 bytes b0..bb followed by i
 * as 4 bytes big-endian: the benchmark seeds the emulator's onPremisesImmutableId with its base64, so the
 * publisher resolves every object with one lookup. A benchmark tool, not product code: errors go to stderr
 * and exit 1.
 *
 *   bench_pub_events BOOTSTRAP TOPIC COUNT DOMAIN CERT.der SMIME.p7
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cs_err.h"
#include "cs_event.h"

/* Largest certificate file read: the emulator's own per-value limit. */
#define MAX_VALUE_BYTES 32768u
/* Highest COUNT: the 4-byte index in the GUID and a bound on the loop. */
#define MAX_COUNT 10000000L

/* Events the broker refused (delivery reports with an error); read after the final flush. */
static long g_failed;

/* Delivery report: counts failures and names the first, so a lost event fails the run. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err && g_failed++ == 0)
        fprintf(stderr, "bench_pub_events: delivery failed: %s\n", rd_kafka_err2str(m->err));
}

/* Reads the whole file at `path` (at most MAX_VALUE_BYTES) into buf; returns its size, 0 on failure. */
static size_t read_value(const char *path, unsigned char *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_pub_events: cannot open %s: %s\n", path, strerror(errno));
        return 0;
    }
    size_t n = fread(buf, 1, MAX_VALUE_BYTES, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    if (n == 0 || more) {
        fprintf(stderr, "bench_pub_events: %s is empty or larger than %u bytes\n", path, MAX_VALUE_BYTES);
        return 0;
    }
    return n;
}

/* Encodes the event of user `i` into *out (caller frees with free()); returns 0, or -1 after printing why. */
static int encode_user(long i, const char *domain, const unsigned char *der, size_t der_len,
                       const unsigned char *p7, size_t p7_len, uint8_t **out, size_t *out_len)
{
    char oid[32], upn[320], src_id[] = "bench";
    unsigned char guid[16];
    for (int b = 0; b < 12; b++)
        guid[b] = (unsigned char)(0xb0 + b);
    for (int b = 0; b < 4; b++)
        guid[12 + b] = (unsigned char)(((unsigned long)i >> (8 * (3 - b))) & 0xffu);
    snprintf(oid, sizeof oid, "user%ld", i);
    snprintf(upn, sizeof upn, "bench%ld@%s", i, domain);

    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st1 = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__AttributeStamp st2 = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue sv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue *cvp = &cv, *svp = &sv;
    src.source_id = src_id;
    id.object_id = oid;
    id.has_object_guid = 1;
    id.object_guid.data = guid;
    id.object_guid.len = sizeof guid;
    id.user_principal_name = upn;
    id.mail = upn;
    st1.has_version = st2.has_version = 1;
    st1.version = st2.version = 1;
    ver.user_certificate = &st1;
    ver.user_smime_certificate = &st2;
    ev.has_kind = 1;
    ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    /* protobuf-c's ProtobufCBinaryData holds a non-const pointer; encoding only reads it */
    cv.has_raw = sv.has_raw = 1;
    cv.raw.data = (uint8_t *)(uintptr_t)der;
    cv.raw.len = der_len;
    sv.raw.data = (uint8_t *)(uintptr_t)p7;
    sv.raw.len = p7_len;
    ev.user_certificate = &cvp;
    ev.n_user_certificate = 1;
    ev.user_smime_certificate = &svp;
    ev.n_user_smime_certificate = 1;
    cs_err *err = cs_event_encode(&ev, out, out_len);
    if (err) {
        fprintf(stderr, "bench_pub_events: encoding user%ld: %s\n", i, cs_err_message(err));
        cs_err_free(err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static unsigned char der[MAX_VALUE_BYTES], p7[MAX_VALUE_BYTES];
    char errstr[512];
    rd_kafka_t *rk = NULL;
    int rc = 1;
    if (argc != 7) {
        fprintf(stderr, "usage: bench_pub_events BOOTSTRAP TOPIC COUNT DOMAIN CERT.der SMIME.p7\n");
        return 2;
    }
    char *end = NULL;
    long count = strtol(argv[3], &end, 10);
    if (!end || *end || count < 1 || count > MAX_COUNT) {
        fprintf(stderr, "bench_pub_events: COUNT '%s' must be a whole number in 1..%ld\n", argv[3],
                MAX_COUNT);
        return 2;
    }
    size_t der_len = read_value(argv[5], der), p7_len = read_value(argv[6], p7);
    if (!der_len || !p7_len)
        return 1;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "20", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench_pub_events: producer config: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "bench_pub_events: producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    for (long i = 0; i < count; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        char key[48];
        if (encode_user(i, argv[4], der, der_len, p7, p7_len, &buf, &len) != 0)
            goto cleanup;
        snprintf(key, sizeof key, "bench/user%ld", i);
        rd_kafka_resp_err_t e;
        /* a full local queue is back-pressure, not an error: serve delivery reports and retry (bounded by
         * the flush timeout below since the broker drains the queue) */
        for (int tries = 0; tries < 1000; tries++) {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(key, strlen(key)),
                                  RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 100);
        }
        free(buf);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "bench_pub_events: producing user%ld to %s: %s\n", i, argv[2],
                    rd_kafka_err2str(e));
            goto cleanup;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 60000);
    if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench_pub_events: flush to %s: %s\n", argv[2], rd_kafka_err2str(fe));
        goto cleanup;
    }
    if (g_failed) {
        fprintf(stderr, "bench_pub_events: %ld of %ld events not delivered\n", g_failed, count);
        goto cleanup;
    }
    rc = 0;
cleanup:
    rd_kafka_destroy(rk);
    return rc;
}
