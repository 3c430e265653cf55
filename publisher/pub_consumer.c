/*
 * pub_consumer: group consumer with an eager assignor and state-restoring rebalance hooks (see pub_consumer.h).
 */
#include "pub_consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_log.h"

#define FAC "consumer"
#define MAX_TOPICS 8
#define QUERY_TIMEOUT_MS 10000
/* A restore that failed with a retriable error (a broker died: "Not leader for partition" until the new
 * leader is known) is tried again from poll, every RESTORE_RETRY_MS, at most RESTORE_MAX_RETRIES times. */
#define RESTORE_RETRY_MS 1000
#define RESTORE_MAX_RETRIES 120
/* Partitions holding a pause reason at once: both subscribed topics of the largest partition count the
 * pipeline tracks (pub_pipeline.c MAX_PARTS), twice over. */
#define PAUSE_MAX 4096

/* One paused partition and why (pub_pause_reason bits, never 0 while listed). */
typedef struct pause_entry {
    char *topic;
    int32_t partition;
    unsigned reasons;
    int64_t rewound_to; /* offset a stray record made us seek back to (pub_consumer_poll), -1: none */
} pause_entry;

struct pub_consumer {
    rd_kafka_t *rk;
    pub_consumer_hooks hooks;
    cs_err *assign_err; /* from on_assign, returned by the next poll */
    /* Partitions the group gave us whose restore failed retriably: assigned (the eager protocol wants the
     * callback's assign, and the group counts them as ours either way) but paused, so nothing of them is
     * fetched and their position stays at the committed offset until the restore, retried from poll,
     * succeeds and resumes them. */
    rd_kafka_topic_partition_list_t *pending;
    long long pending_next_ms;
    int pending_tries;
    int closed;
    pause_entry *pauses; /* partitions with at least one pause reason */
    size_t n_pauses, cap_pauses;
    int in_assign; /* inside the assign branch before rd_kafka_assign: pauses are applied after it */
};

static cs_err *set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return cs_err_new(CS_ERR_CONFIG, 0, "consumer setting %s=%s refused by librdkafka: %s", name, value,
                          errstr);
    return NULL;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drop_pending(pub_consumer *c)
{
    if (c->pending)
        rd_kafka_topic_partition_list_destroy(c->pending);
    c->pending = NULL;
    c->pending_tries = 0;
}

static pause_entry *pause_find(const pub_consumer *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->n_pauses; i++)
        if (c->pauses[i].partition == partition && strcmp(c->pauses[i].topic, topic) == 0)
            return &c->pauses[i];
    return NULL;
}

static void pause_remove(pub_consumer *c, pause_entry *e)
{
    free(e->topic);
    *e = c->pauses[--c->n_pauses];
}

/* Pauses (pause != 0) or resumes one partition in librdkafka. */
static rd_kafka_resp_err_t rk_pause_one(rd_kafka_t *rk, const char *topic, int32_t partition, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_resp_err_t e = pause ? rd_kafka_pause_partitions(rk, l) : rd_kafka_resume_partitions(rk, l);
    if (!e)
        e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    return e;
}

/* Pauses every partition of `parts` that holds a reason (right after an assign). */
static rd_kafka_resp_err_t apply_pauses(pub_consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t first = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < parts->cnt; i++) {
        if (!pause_find(c, parts->elems[i].topic, parts->elems[i].partition))
            continue;
        rd_kafka_resp_err_t e = rk_pause_one(c->rk, parts->elems[i].topic, parts->elems[i].partition, 1);
        if (e && !first)
            first = e;
    }
    return first;
}

/* Resumes every partition holding a reason and forgets all reasons (a revoke: librdkafka would keep an
 * application pause on the partition into a later assignment). */
static void clear_pauses(pub_consumer *c)
{
    for (size_t i = 0; i < c->n_pauses; i++) {
        rd_kafka_resp_err_t e = rk_pause_one(c->rk, c->pauses[i].topic, c->pauses[i].partition, 0);
        if (e)
            cs_log_warn(FAC, "resuming %s[%d] on revoke: %s", c->pauses[i].topic, (int)c->pauses[i].partition,
                        rd_kafka_err2str(e));
        free(c->pauses[i].topic);
    }
    c->n_pauses = 0;
}

/* Sets or clears `reason` of one partition in the table; *was and *now get the reasons before and after.
 * NULL, or an error when the table is full or out of memory (nothing changed then). */
static cs_err *pause_update(pub_consumer *c, const char *topic, int32_t partition, unsigned reason, int pause,
                            unsigned *was, unsigned *now)
{
    pause_entry *e = pause_find(c, topic, partition);
    *was = e ? e->reasons : 0;
    *now = pause ? *was | reason : *was & ~reason;
    if (*now == *was)
        return NULL;
    if (!e) {
        if (c->n_pauses == c->cap_pauses) {
            size_t cap = c->cap_pauses ? c->cap_pauses * 2 : 16;
            pause_entry *grown = cap <= PAUSE_MAX ? realloc(c->pauses, cap * sizeof(*grown)) : NULL;
            if (!grown)
                return cs_err_new(CS_ERR_NOMEM, 0,
                                  "pausing %s[%d]: more than %d paused partitions or out of memory", topic,
                                  (int)partition, PAUSE_MAX);
            c->pauses = grown;
            c->cap_pauses = cap;
        }
        char *t = strdup(topic);
        if (!t)
            return cs_err_new(CS_ERR_NOMEM, 0, "pausing %s[%d]: out of memory", topic, (int)partition);
        e = &c->pauses[c->n_pauses++];
        e->topic = t;
        e->partition = partition;
        e->rewound_to = -1;
    }
    e->reasons = *now;
    if (*now == 0)
        pause_remove(c, e);
    return NULL;
}

/* Keeps the first error for the next poll; frees later ones. */
static void keep_err(pub_consumer *c, cs_err *e)
{
    if (!c->assign_err)
        c->assign_err = e;
    else
        cs_err_free(e);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    pub_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        cs_log_info(FAC, "assigned %d partition(s)", parts->cnt);
        drop_pending(c);
        c->in_assign = 1; /* pauses the hook sets are applied after the assign below */
        cs_err *e = c->hooks.on_assign ? c->hooks.on_assign(c->hooks.opaque, parts) : NULL;
        c->in_assign = 0;
        if (e && !cs_err_is_retriable(e)) {
            /* Nothing to wait for: the service stops (fatal) rather than process without state. */
            cs_log_error(FAC, "restoring state for the assigned partitions failed: %s", cs_err_message(e));
            keep_err(c, cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "%s", cs_err_message(e)));
            cs_err_free(e);
            rd_kafka_assign(rk, NULL);
            clear_pauses(c);
            return;
        }
        rd_kafka_resp_err_t ae = rd_kafka_assign(rk, parts);
        if (ae) {
            cs_err_free(e);
            keep_err(c, cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "assign failed: %s", rd_kafka_err2str(ae)));
            clear_pauses(c);
            return;
        }
        if (e) {
            /* Retriable (a leader moving): keep the partitions, paused, and retry from poll. Records
             * fetched between the assign and the pause are discarded by librdkafka (the pause bumps the
             * partition's op version), so the position stays at the committed offset. */
            cs_log_warn(FAC, "restoring state for the assigned partitions failed, retrying every %d ms: %s",
                        RESTORE_RETRY_MS, cs_err_message(e));
            cs_err_free(e);
            c->pending = rd_kafka_topic_partition_list_copy(parts);
            c->pending_next_ms = mono_ms() + RESTORE_RETRY_MS;
            for (int i = 0; i < parts->cnt; i++) {
                unsigned was = 0, now = 0;
                cs_err *pe = pause_update(c, parts->elems[i].topic, parts->elems[i].partition,
                                          PUB_PAUSE_RESTORE, 1, &was, &now);
                if (pe)
                    keep_err(c, cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "%s", cs_err_message(pe)));
                cs_err_free(pe);
            }
        }
        /* Every reason set so far for these partitions (the restore's, the hook's) takes effect now. */
        ae = apply_pauses(c, parts);
        if (ae)
            keep_err(c, cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "pausing assigned partitions failed: %s",
                                   rd_kafka_err2str(ae)));
        return;
    }
    /*
     * Revoke (or a lost assignment, which librdkafka also reports as an error here): the hook first, so no
     * transaction is open when the partitions go. No write of ours is in flight here: this callback runs
     * only from rd_kafka_consumer_poll() / rd_kafka_consumer_close(), which the pipeline never calls while
     * a batch is being applied (pub_consumer.h, "Revoke versus HTTP"); the hook's quiesce is the safety
     * net. Then every pause of ours is lifted and forgotten, so none outlives the assignment (librdkafka
     * keeps an application pause across unassign and a later assign of the same partition).
     */
    cs_log_info(FAC, "revoking %d partition(s) (%s)", parts ? parts->cnt : 0, rd_kafka_err2name(err));
    drop_pending(c);
    if (c->hooks.on_revoke && parts)
        c->hooks.on_revoke(c->hooks.opaque, parts);
    rd_kafka_assign(rk, NULL);
    clear_pauses(c);
}

cs_err *pub_consumer_new(rd_kafka_conf_t *conf, const pub_consumer_hooks *hooks, pub_consumer **out)
{
    cs_err *err = NULL;
    pub_consumer *c = NULL;
    char errstr[512];
    char value[256];
    size_t vlen = sizeof(value);
    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (!c) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory creating the consumer");
        goto cleanup;
    }
    if (hooks)
        c->hooks = *hooks;
    vlen = sizeof(value);
    if (rd_kafka_conf_get(conf, "group.id", value, &vlen) != RD_KAFKA_CONF_OK || vlen <= 1) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "the publisher's consumer needs a group.id (kafka.group.id)");
        goto cleanup;
    }
    vlen = sizeof(value);
    if (rd_kafka_conf_get(conf, "partition.assignment.strategy", value, &vlen) == RD_KAFKA_CONF_OK &&
        strstr(value, "cooperative")) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "kafka.partition.assignment.strategy=%s is cooperative: librdkafka 2.0.2 has "
                         "cooperative-rebalance bugs; use range or roundrobin",
                         value);
        goto cleanup;
    }
    if (strcmp(value, "roundrobin") != 0)
        err = set(conf, "partition.assignment.strategy", "range");
    if (!err)
        err = set(conf, "isolation.level", "read_committed");
    if (!err)
        err = set(conf, "enable.auto.commit", "false");
    if (!err)
        err = set(conf, "enable.auto.offset.store", "false");
    if (!err)
        err = set(conf, "enable.partition.eof", "true");
    if (!err)
        err = set(conf, "auto.offset.reset", "earliest");
    if (err)
        goto cleanup;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    conf = NULL; /* rd_kafka_new took it on success; on failure it is freed below */
    if (!c->rk) {
        err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "creating the consumer failed: %s", errstr);
        goto cleanup;
    }
    rd_kafka_poll_set_consumer(c->rk);
    *out = c;
    c = NULL;
cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(c);
    return err;
}

cs_err *pub_consumer_subscribe(pub_consumer *c, const char *const *topics, size_t n)
{
    if (n == 0 || n > MAX_TOPICS)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "subscribe: %zu topics (1..%d)", n, MAX_TOPICS);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "subscribing to %s failed: %s", topics[0],
                          rd_kafka_err2str(e));
    return NULL;
}

/* Retries the restore of c->pending when due; resumes the partitions once it succeeds. Returns a fatal error
 * after RESTORE_MAX_RETRIES failures or a non-retriable one (the service exits and a restart rejoins). */
static cs_err *retry_pending(pub_consumer *c)
{
    if (!c->pending || mono_ms() < c->pending_next_ms)
        return NULL;
    cs_err *e = c->hooks.on_assign ? c->hooks.on_assign(c->hooks.opaque, c->pending) : NULL;
    if (e) {
        c->pending_tries++;
        if (!cs_err_is_retriable(e) || c->pending_tries >= RESTORE_MAX_RETRIES) {
            cs_err *f =
                cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL,
                           "restoring the state of %d assigned partition(s) failed %d times, last: %s; "
                           "check the brokers (the events and state topics' leaders)",
                           c->pending->cnt, c->pending_tries + 1, cs_err_message(e));
            cs_err_free(e);
            drop_pending(c);
            return f;
        }
        cs_log_warn(FAC, "restoring state for the assigned partitions failed again (try %d of %d): %s",
                    c->pending_tries + 1, RESTORE_MAX_RETRIES, cs_err_message(e));
        cs_err_free(e);
        c->pending_next_ms = mono_ms() + RESTORE_RETRY_MS;
        return NULL;
    }
    /* Only the restore's own reason goes: a partition the hook paused for another reason (the multi-site
     * guard) stays paused. */
    cs_log_info(FAC, "restored state for %d assigned partition(s) on try %d", c->pending->cnt,
                c->pending_tries + 2);
    cs_err *err = NULL;
    for (int i = 0; i < c->pending->cnt && !err; i++)
        err = pub_consumer_pause(c, c->pending->elems[i].topic, c->pending->elems[i].partition,
                                 PUB_PAUSE_RESTORE, 0);
    drop_pending(c);
    if (err)
        return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "resuming the restored partitions failed: %s",
                          cs_err_message(err));
    return NULL;
}

cs_err *pub_consumer_poll(pub_consumer *c, int timeout_ms, rd_kafka_message_t **out)
{
    *out = NULL;
    cs_err *re = retry_pending(c);
    if (re)
        return re;
    if (c->assign_err) {
        cs_err *e = c->assign_err;
        c->assign_err = NULL;
        return cs_err_wrap(e, "partitions assigned without their applied state");
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (c->assign_err) {
        if (m)
            rd_kafka_message_destroy(m);
        cs_err *e = c->assign_err;
        c->assign_err = NULL;
        return cs_err_wrap(e, "partitions assigned without their applied state");
    }
    if (!m)
        return NULL;
    if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        char fatal[256];
        if (m->err == RD_KAFKA_RESP_ERR__FATAL &&
            rd_kafka_fatal_error(c->rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_message_destroy(m);
            return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_FATAL, "consumer fatal error: %s", fatal);
        }
        cs_log_warn(FAC, "consumer error (librdkafka recovers): %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return NULL;
    }
    if (!m->err && m->rkt) {
        /* A record of a partition we hold paused must never reach the pipeline. librdkafka can still hand
         * one over when the pause raced the fetch start of a fresh assignment (a pause in the rebalance
         * callback, before the asynchronous assign took effect: librdkafka issue 2190). Put it back: pause
         * again, seek to the earliest such offset, and deliver nothing; after the resume it is fetched again. */
        const char *topic = rd_kafka_topic_name(m->rkt);
        pause_entry *pe = pause_find(c, topic, m->partition);
        if (pe) {
            int64_t offset = m->offset;
            int32_t partition = m->partition;
            rd_kafka_message_destroy(m);
            if (pe->rewound_to >= 0 && offset >= pe->rewound_to)
                return NULL; /* a later record of the same stray fetch: the seek below already covers it */
            pe->rewound_to = offset;
            cs_log_warn(FAC,
                        "record %s[%d]@%lld arrived although the partition is paused: rewound, not delivered",
                        topic, (int)partition, (long long)offset);
            rd_kafka_resp_err_t pe_err = rk_pause_one(c->rk, topic, partition, 1);
            if (pe_err)
                return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "pausing %s[%d] again failed: %s", topic,
                                  (int)partition, rd_kafka_err2str(pe_err));
            return pub_consumer_seek(c, topic, partition, offset);
        }
    }
    *out = m;
    return NULL;
}

rd_kafka_consumer_group_metadata_t *pub_consumer_group_metadata(pub_consumer *c)
{
    return rd_kafka_consumer_group_metadata(c->rk);
}

cs_err *pub_consumer_seek(pub_consumer *c, const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, QUERY_TIMEOUT_MS);
    cs_err *err = NULL;
    if (e) {
        err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "seeking %s[%d] to %lld failed: %s", topic,
                         (int)partition, (long long)offset, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else if (l->elems[0].err) {
        err = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "seeking %s[%d] to %lld failed: %s", topic,
                         (int)partition, (long long)offset, rd_kafka_err2str(l->elems[0].err));
    }
    rd_kafka_topic_partition_list_destroy(l);
    return err;
}

cs_err *pub_consumer_lso(pub_consumer *c, const char *topic, int32_t partition, int64_t *out)
{
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(c->rk, topic, partition, &lo, &hi, QUERY_TIMEOUT_MS);
    if (e)
        return cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE, "querying the end of %s[%d] failed: %s", topic,
                          (int)partition, rd_kafka_err2str(e));
    *out = hi;
    return NULL;
}

cs_err *pub_consumer_pause(pub_consumer *c, const char *topic, int32_t partition, pub_pause_reason reason,
                           int pause)
{
    unsigned was = 0, now = 0;
    cs_err *err = pause_update(c, topic, partition, (unsigned)reason, pause, &was, &now);
    if (err || c->in_assign || (was != 0) == (now != 0))
        return err; /* in on_assign: applied after the assign; otherwise nothing changes for librdkafka */
    rd_kafka_resp_err_t e = rk_pause_one(c->rk, topic, partition, now != 0);
    if (e)
        return cs_err_new(CS_ERR_KAFKA, 0, "%s %s[%d] failed: %s", now ? "pausing" : "resuming", topic,
                          (int)partition, rd_kafka_err2str(e));
    return NULL;
}

unsigned pub_consumer_paused(const pub_consumer *c, const char *topic, int32_t partition)
{
    const pause_entry *e = pause_find(c, topic, partition);
    return e ? e->reasons : 0;
}

void pub_consumer_destroy(pub_consumer *c)
{
    if (!c)
        return;
    if (c->rk) {
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
        if (e)
            cs_log_warn(FAC, "closing the consumer: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
    }
    cs_err_free(c->assign_err);
    drop_pending(c);
    for (size_t i = 0; i < c->n_pauses; i++)
        free(c->pauses[i].topic);
    free(c->pauses);
    free(c);
}

rd_kafka_t *pub_consumer_rd_kafka(pub_consumer *c)
{
    return c->rk;
}
