/*
 * pub_latest: read a topic to its LSO, keep the newest event per key (see pub_latest.h).
 */
#include "pub_latest.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cs_event.h"
#include "cs_state_reader.h"
#include "cs_version.h"

typedef struct reader {
    pub_latest *l;
    size_t cap;
    int dead_letters;
    int64_t from_ms;
    uint32_t reasons;
} reader;

static const char *const reason_names[] = {"unspecified", "undecodable",   "recipient_not_found",
                                           "write_scope", "nothing_valid", "rejected"};
#define N_REASONS (sizeof(reason_names) / sizeof(reason_names[0]))

const char *pub_latest_reason_name(Certsync__V1__DeadLetterReason r)
{
    return (size_t)r < N_REASONS ? reason_names[r] : "unspecified";
}

int pub_latest_reason_parse(const char *name, Certsync__V1__DeadLetterReason *out)
{
    for (size_t i = 1; i < N_REASONS; i++) {
        if (strcasecmp(name, reason_names[i]) == 0) {
            *out = (Certsync__V1__DeadLetterReason)i;
            return 1;
        }
    }
    return 0;
}

static cs_err *add(reader *rd, const void *key, size_t key_len, int32_t partition, int64_t offset, int64_t ts,
                   Certsync__V1__ChangeEvent *ev, Certsync__V1__DeadLetterReason reason, int64_t order)
{
    pub_latest *l = rd->l;
    if (l->n == rd->cap) {
        if (rd->cap >= PUB_LATEST_MAX_RECORDS) {
            certsync__v1__change_event__free_unpacked(ev, NULL);
            return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                              "more than %d records to hold: the topic is larger than a tool run is built "
                              "for; narrow it (replay --from-time, redrive --reason)",
                              PUB_LATEST_MAX_RECORDS);
        }
        size_t cap = rd->cap ? rd->cap * 2 : 256;
        pub_latest_entry *g = realloc(l->v, cap * sizeof(*g));
        if (!g) {
            certsync__v1__change_event__free_unpacked(ev, NULL);
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory holding %zu records", l->n);
        }
        l->v = g;
        rd->cap = cap;
    }
    pub_latest_entry *e = &l->v[l->n];
    memset(e, 0, sizeof(*e));
    e->key = malloc(key_len + 1);
    if (!e->key) {
        certsync__v1__change_event__free_unpacked(ev, NULL);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
    memcpy(e->key, key, key_len);
    e->key[key_len] = '\0';
    e->partition = partition;
    e->offset = offset;
    e->timestamp_ms = ts;
    e->event = ev;
    e->reason = reason;
    e->order = order;
    l->n++;
    return NULL;
}

static cs_err *on_record(const cs_state_record *r, void *opaque)
{
    reader *rd = opaque;
    pub_latest *l = rd->l;
    l->records++;
    if (r->partition >= 0 && r->partition < 64 && r->offset > l->last_offset[r->partition])
        l->last_offset[r->partition] = r->offset;
    if (!r->value || !r->key || r->key_len == 0) {
        l->undecodable++;
        return NULL;
    }
    Certsync__V1__ChangeEvent *ev = NULL;
    if (!rd->dead_letters) {
        if (rd->from_ms > 0 && r->timestamp_ms >= 0 && r->timestamp_ms < rd->from_ms) {
            l->filtered++;
            return NULL;
        }
        cs_err *e = cs_event_decode(r->value, r->value_len, &ev);
        if (e) {
            cs_err_free(e);
            l->undecodable++;
            return NULL;
        }
        return add(rd, r->key, r->key_len, r->partition, r->offset, r->timestamp_ms, ev,
                   CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNSPECIFIED, r->offset);
    }
    Certsync__V1__DeadLetter *dl = certsync__v1__dead_letter__unpack(NULL, r->value_len, r->value);
    if (!dl) {
        l->undecodable++;
        return NULL;
    }
    cs_err *err = NULL;
    unsigned reason = dl->has_reason ? (unsigned)dl->reason : 0;
    if (reason >= 32 || !(rd->reasons & (1u << reason))) {
        l->filtered++;
    } else if (!dl->has_original_key || dl->original_key.len == 0 || !dl->has_original_value) {
        l->undecodable++;
    } else {
        cs_err *e = cs_event_decode(dl->original_value.data, dl->original_value.len, &ev);
        if (e) {
            cs_err_free(e);
            l->undecodable++;
        } else {
            err = add(rd, dl->original_key.data, dl->original_key.len,
                      dl->has_source_partition ? dl->source_partition : 0,
                      dl->has_source_offset ? dl->source_offset : -1,
                      dl->has_original_timestamp_ms ? dl->original_timestamp_ms : -1, ev, dl->reason,
                      dl->has_dead_lettered_at_ms ? dl->dead_lettered_at_ms : r->offset);
        }
    }
    certsync__v1__dead_letter__free_unpacked(dl, NULL);
    return err;
}

static int by_key_then_order(const void *a, const void *b)
{
    const pub_latest_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void entry_clear(pub_latest_entry *e)
{
    free(e->key);
    if (e->event)
        certsync__v1__change_event__free_unpacked(e->event, NULL);
    memset(e, 0, sizeof(*e));
}

/* One entry per key: a later record wins unless the earlier one is strictly newer (pipeline rule). */
static void coalesce(pub_latest *l)
{
    if (l->n == 0)
        return;
    qsort(l->v, l->n, sizeof(*l->v), by_key_then_order);
    size_t w = 0;
    for (size_t i = 1; i < l->n; i++) {
        pub_latest_entry *win = &l->v[w], *e = &l->v[i];
        if (strcmp(win->key, e->key) != 0) {
            l->v[++w] = *e;
            if (w != i)
                memset(e, 0, sizeof(*e));
            continue;
        }
        if (cs_version_compare(win->event->version, e->event->version) == CS_VERSION_NEWER) {
            entry_clear(e);
        } else {
            entry_clear(win);
            *win = *e;
            memset(e, 0, sizeof(*e));
        }
    }
    l->n = w + 1;
}

static cs_err *read_topic(const pub_config *cfg, const char *topic, reader *rd, pub_latest **out)
{
    cs_err *err = NULL;
    rd_kafka_conf_t *conf = NULL;
    *out = NULL;
    rd->l = calloc(1, sizeof(*rd->l));
    if (!rd->l)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    for (size_t i = 0; i < 64; i++)
        rd->l->last_offset[i] = -1;
    err = pub_config_kafka_conf(cfg, &conf);
    if (!err)
        err = cs_state_reader_load(conf, topic, NULL, 0, PUB_LATEST_TIMEOUT_MS, on_record, rd, NULL);
    if (err) {
        err = cs_err_wrap(err, "reading %s", topic);
        pub_latest_free(rd->l);
        rd->l = NULL;
        return err;
    }
    coalesce(rd->l);
    *out = rd->l;
    return NULL;
}

cs_err *pub_latest_read_events(const pub_config *cfg, int64_t from_ms, pub_latest **out)
{
    reader rd = {.from_ms = from_ms};
    return read_topic(cfg, cfg->topic_events, &rd, out);
}

cs_err *pub_latest_read_dead_letters(const pub_config *cfg, uint32_t reasons, pub_latest **out)
{
    reader rd = {.dead_letters = 1, .reasons = reasons};
    return read_topic(cfg, cfg->topic_dlq, &rd, out);
}

void pub_latest_free(pub_latest *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        entry_clear(&l->v[i]);
    free(l->v);
    free(l);
}
