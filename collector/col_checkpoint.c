#include "col_checkpoint.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cs_log.h"
#include "cs_state_reader.h"

#define FACILITY "checkpoint"

cs_err *col_checkpoint_encode(const Certsync__V1__CollectorCheckpoint *cp, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t len = certsync__v1__collector_checkpoint__get_packed_size(cp);
    if (len > COL_CHECKPOINT_MAX_BYTES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "checkpoint of source %s is %zu bytes, at most %u: a cookie this large is not a "
                          "directory position",
                          cp->source_id ? cp->source_id : "?", len, COL_CHECKPOINT_MAX_BYTES);
    /* +1: protobuf-c packs nothing for an empty message and malloc(0) may return NULL. */
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "encoding a checkpoint: out of memory");
    certsync__v1__collector_checkpoint__pack(cp, buf);
    *out = buf;
    *out_len = len;
    return NULL;
}

cs_err *col_checkpoint_decode(const void *data, size_t len, Certsync__V1__CollectorCheckpoint **out)
{
    *out = NULL;
    if (len > COL_CHECKPOINT_MAX_BYTES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "checkpoint record is %zu bytes, at most %u", len,
                          COL_CHECKPOINT_MAX_BYTES);
    Certsync__V1__CollectorCheckpoint *cp = certsync__v1__collector_checkpoint__unpack(NULL, len, data);
    if (!cp)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "checkpoint record (%zu bytes) is not a certsync.v1.CollectorCheckpoint: the "
                          "checkpoint topic holds foreign data; point topics.checkpoint at the right topic",
                          len);
    if (!cp->source_id || !cp->source_id[0]) {
        certsync__v1__collector_checkpoint__free_unpacked(cp, NULL);
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "checkpoint record has no source_id");
    }
    *out = cp;
    return NULL;
}

cs_err *col_checkpoint_copy(const Certsync__V1__CollectorCheckpoint *cp,
                            Certsync__V1__CollectorCheckpoint **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    cs_err *err = col_checkpoint_encode(cp, &buf, &len);
    if (!err)
        err = col_checkpoint_decode(buf, len, out);
    free(buf);
    return err;
}

void col_checkpoint_free(Certsync__V1__CollectorCheckpoint *cp)
{
    if (cp)
        certsync__v1__collector_checkpoint__free_unpacked(cp, NULL);
}

typedef struct load_ctx {
    const char *source_id;
    size_t source_len;
    Certsync__V1__CollectorCheckpoint *latest;
} load_ctx;

static cs_err *on_record(const cs_state_record *r, void *opaque)
{
    load_ctx *ctx = opaque;
    /* Other sources share the topic; only our key matters. */
    if (!r->key || r->key_len != ctx->source_len || memcmp(r->key, ctx->source_id, r->key_len) != 0)
        return NULL;
    if (!r->value) {
        /* A tombstone: someone deleted the position on purpose (reset): start over. */
        col_checkpoint_free(ctx->latest);
        ctx->latest = NULL;
        return NULL;
    }
    Certsync__V1__CollectorCheckpoint *cp = NULL;
    cs_err *err = col_checkpoint_decode(r->value, r->value_len, &cp);
    if (err)
        return err;
    if (strcmp(cp->source_id, ctx->source_id) != 0) {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0,
                         "checkpoint under key %s names source %s: the topic was written by something "
                         "else; delete the record or use another topic",
                         ctx->source_id, cp->source_id);
        col_checkpoint_free(cp);
        return err;
    }
    /* Records of one key come in offset order (one partition): the last one wins, as compaction keeps. */
    col_checkpoint_free(ctx->latest);
    ctx->latest = cp;
    return NULL;
}

cs_err *col_checkpoint_load(rd_kafka_conf_t *conf, const char *topic, const char *source_id,
                            const cs_kafka_producer *fenced_by, int timeout_ms,
                            Certsync__V1__CollectorCheckpoint **out)
{
    cs_err *err = NULL;
    load_ctx ctx = {source_id, source_id ? strlen(source_id) : 0, NULL};
    uint64_t n = 0;

    *out = NULL;
    if (!topic || !source_id || !source_id[0]) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "checkpoint load needs a topic and a source id");
        goto cleanup;
    }
    if (!fenced_by) {
        err = cs_err_new(CS_ERR_STATE, 0,
                         "loading the checkpoint of source %s without a producer: call init_transactions "
                         "first so a zombie's late commit cannot move the position (fence first, then read)",
                         source_id);
        goto cleanup;
    }
    cs_kafka_producer_state st = cs_kafka_producer_get_state(fenced_by);
    if (st == CS_KAFKA_PRODUCER_INIT || st == CS_KAFKA_PRODUCER_FATAL) {
        err = cs_err_new(CS_ERR_STATE, 0,
                         "loading the checkpoint of source %s with producer %s in state %s: "
                         "init_transactions must succeed first (fence first, then read)",
                         source_id, cs_kafka_producer_transactional_id(fenced_by),
                         cs_kafka_producer_state_name(st));
        goto cleanup;
    }
    err = cs_state_reader_load(conf, topic, NULL, 0, timeout_ms, on_record, &ctx, &n);
    conf = NULL;
    if (err) {
        err = cs_err_wrap(err, "loading the checkpoint of source %s from %s", source_id, topic);
        goto cleanup;
    }
    cs_log(CS_LOG_INFO, FACILITY, "source %s: checkpoint %s (sequence %" PRIu64 ", %" PRIu64 " records read)",
           source_id, ctx.latest ? "loaded" : "absent: first start",
           ctx.latest && ctx.latest->has_sequence ? ctx.latest->sequence : 0, n);
    *out = ctx.latest;
    ctx.latest = NULL;

cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    col_checkpoint_free(ctx.latest);
    return err;
}
