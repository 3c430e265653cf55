#include "cs_kafka_producer.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_log.h"

#define FACILITY "kafka"

/* send_offsets_to_transaction: retriable failures (coordinator moving, loading) are retried this often. */
#define SEND_OFFSETS_MAX_ATTEMPTS 10
#define SEND_OFFSETS_BACKOFF_MS 200

/* destroy() aborts an open transaction with this bound: shutdown must not hang on a dead cluster. */
#define DESTROY_ABORT_TIMEOUT_MS 30000
#define DESTROY_FLUSH_TIMEOUT_MS 10000
/* Before a voluntary abort (see cs_kafka_producer_abort). */
#define ABORT_FLUSH_TIMEOUT_MS 10000
/* Bound of one commit or abort call when transaction.timeout.ms cannot be read: librdkafka's default. */
#define TXN_CALL_TIMEOUT_DEFAULT_MS 60000

/* librdkafka's default queue.buffering.max.kbytes (1 GiB), which we replace. */
#define RDKAFKA_DEFAULT_QUEUE_KBYTES "1048576"

#define MAX_HEADERS 64
/* Topics whose metadata cs_kafka_producer_warm keeps (a producer writes a handful). */
#define MAX_WARM_TOPICS 8

struct cs_kafka_producer {
    rd_kafka_t *rk;
    char *txn_id;
    cs_kafka_producer_state state;
    /* Bound of one commit/abort call: transaction.timeout.ms. librdkafka 2.0.2 does NOT bound a -1 commit or
     * abort (both pass "no cap"), and an EndTxn error storm then blocks the caller for as long as it lasts. */
    int txn_call_timeout_ms;
    /* Delivery reports of the current transaction, reset by begin. */
    uint64_t dr_ok;
    uint64_t dr_failed;
    rd_kafka_resp_err_t first_dr_err;
    char first_dr_topic[256];
    /* Handles kept by cs_kafka_producer_warm: librdkafka keeps their metadata fresh while they live. */
    rd_kafka_topic_t *warm[MAX_WARM_TOPICS];
    size_t n_warm;
};

const char *cs_kafka_producer_state_name(cs_kafka_producer_state state)
{
    switch (state) {
    case CS_KAFKA_PRODUCER_INIT:
        return "init";
    case CS_KAFKA_PRODUCER_READY:
        return "ready";
    case CS_KAFKA_PRODUCER_IN_TXN:
        return "in_txn";
    case CS_KAFKA_PRODUCER_COMMITTING:
        return "committing";
    case CS_KAFKA_PRODUCER_ABORTABLE:
        return "abortable";
    case CS_KAFKA_PRODUCER_ABORTING:
        return "aborting";
    case CS_KAFKA_PRODUCER_FATAL:
        return "fatal";
    }
    return "unknown";
}

/* The legal edges of the state machine. Staying in the same state is always allowed (a retry). */
static bool transition_allowed(cs_kafka_producer_state from, cs_kafka_producer_state to)
{
    if (from == CS_KAFKA_PRODUCER_FATAL)
        return false;
    if (from == to || to == CS_KAFKA_PRODUCER_FATAL)
        return true;
    switch (from) {
    case CS_KAFKA_PRODUCER_INIT:
        return to == CS_KAFKA_PRODUCER_READY;
    case CS_KAFKA_PRODUCER_READY:
        return to == CS_KAFKA_PRODUCER_IN_TXN;
    case CS_KAFKA_PRODUCER_IN_TXN:
        return to == CS_KAFKA_PRODUCER_COMMITTING || to == CS_KAFKA_PRODUCER_ABORTABLE ||
               to == CS_KAFKA_PRODUCER_ABORTING;
    case CS_KAFKA_PRODUCER_COMMITTING:
        /* Not ABORTING: after a retriable commit failure librdkafka refuses abort_transaction (__CONFLICT
         * while the commit goes on in the background, __STATE once it began) until commit is called again. */
        return to == CS_KAFKA_PRODUCER_READY || to == CS_KAFKA_PRODUCER_ABORTABLE;
    case CS_KAFKA_PRODUCER_ABORTABLE:
        return to == CS_KAFKA_PRODUCER_ABORTING;
    case CS_KAFKA_PRODUCER_ABORTING:
        return to == CS_KAFKA_PRODUCER_READY;
    case CS_KAFKA_PRODUCER_FATAL:
        return false;
    }
    return false;
}

/* The one place the state changes (after librdkafka's rd_kafka_txn_set_state): checks and logs A -> B. */
static void set_state(cs_kafka_producer *p, cs_kafka_producer_state to)
{
    if (p->state == to)
        return;
    if (!transition_allowed(p->state, to)) {
        /* A bug in this file; refuse rather than corrupt the machine. */
        cs_log_kv(CS_LOG_ERROR, FACILITY, "illegal producer state transition", "transactional_id", p->txn_id,
                  "from", cs_kafka_producer_state_name(p->state), "to", cs_kafka_producer_state_name(to),
                  NULL);
        return;
    }
    cs_log(CS_LOG_DEBUG, FACILITY, "producer %s: state %s -> %s", p->txn_id,
           cs_kafka_producer_state_name(p->state), cs_kafka_producer_state_name(to));
    p->state = to;
}

/* Rejects a call that the current state does not allow. `allowed` is a bit set of states. */
static cs_err *require_state(const cs_kafka_producer *p, const char *op, unsigned allowed)
{
    if (allowed & (1u << p->state))
        return NULL;
    return cs_err_new(CS_ERR_STATE, 0,
                      "kafka producer %s: %s is not allowed in state %s (call order: init, begin, produce/"
                      "send_offsets, commit or abort%s)",
                      p->txn_id, op, cs_kafka_producer_state_name(p->state),
                      p->state == CS_KAFKA_PRODUCER_FATAL ? "; the producer is fatally failed: destroy it"
                      : p->state == CS_KAFKA_PRODUCER_ABORTABLE ? "; the transaction failed: abort it first"
                      : p->state == CS_KAFKA_PRODUCER_COMMITTING
                          ? "; a commit is pending: call commit again until it succeeds or fails for good"
                      : p->state == CS_KAFKA_PRODUCER_ABORTING ? "; an abort is pending: call abort again"
                                                               : "");
}

#define ST(s) (1u << (s))

static bool is_fenced_code(rd_kafka_resp_err_t code)
{
    return code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

unsigned cs_kafka_error_flags(const rd_kafka_error_t *error)
{
    unsigned flags = 0;
    if (!error)
        return 0;
    if (rd_kafka_error_is_retriable(error))
        flags |= CS_ERR_F_RETRIABLE;
    if (rd_kafka_error_txn_requires_abort(error))
        flags |= CS_ERR_F_TXN_REQUIRES_ABORT;
    if (rd_kafka_error_is_fatal(error))
        flags |= CS_ERR_F_FATAL;
    /* librdkafka 2.0.2 returns some errors with no class at all: nothing says retrying is safe. */
    if (flags == 0)
        flags = CS_ERR_F_FATAL;
    if (is_fenced_code(rd_kafka_error_code(error)))
        flags |= CS_ERR_F_FATAL | CS_KAFKA_ERR_F_FENCED;
    return flags;
}

bool cs_kafka_producer_is_fenced(const cs_err *err)
{
    return (cs_err_flags(err) & CS_KAFKA_ERR_F_FENCED) != 0;
}

/*
 * Turns a librdkafka error into a cs_err and moves the state machine: fatal -> FATAL, requires abort ->
 * ABORTABLE, retriable -> unchanged. Takes ownership of `error`.
 */
static cs_err *from_rd_error(cs_kafka_producer *p, rd_kafka_error_t *error, const char *op)
{
    unsigned flags = cs_kafka_error_flags(error);
    char fatal_buf[512] = "";
    if (flags & CS_ERR_F_FATAL) {
        /* The fatal cause may be older than this call's error (e.g. fenced while idle). */
        char reason[400];
        rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(p->rk, reason, sizeof(reason));
        if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(fatal_buf, sizeof(fatal_buf), "; producer fatal error %s: %s", rd_kafka_err2name(fatal),
                     reason);
            if (is_fenced_code(fatal))
                flags |= CS_KAFKA_ERR_F_FENCED;
        }
    }
    const char *advice = (flags & CS_KAFKA_ERR_F_FENCED)
                             ? "another producer with this transactional.id took over: stop this instance"
                         : (flags & CS_ERR_F_FATAL) ? "the producer is unusable: destroy it and restart"
                         : (flags & CS_ERR_F_TXN_REQUIRES_ABORT) ? "abort the transaction and redo it"
                                                                 : "retry the same call";
    cs_err *err = cs_err_new(CS_ERR_KAFKA, flags, "kafka producer %s: %s failed: %s: %s%s (%s)", p->txn_id,
                             op, rd_kafka_error_name(error), rd_kafka_error_string(error), fatal_buf, advice);
    rd_kafka_error_destroy(error);
    if (flags & CS_ERR_F_FATAL)
        set_state(p, CS_KAFKA_PRODUCER_FATAL);
    else if (flags & CS_ERR_F_TXN_REQUIRES_ABORT)
        set_state(p, CS_KAFKA_PRODUCER_ABORTABLE);
    cs_log_kv(CS_LOG_WARN, FACILITY, cs_err_message(err), "transactional_id", p->txn_id, "state",
              cs_kafka_producer_state_name(p->state), NULL);
    return err;
}

/* An error detected here (not an rd_kafka_error_t): same state rules as from_rd_error. */
static cs_err *fail(cs_kafka_producer *p, unsigned flags, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static cs_err *fail(cs_kafka_producer *p, unsigned flags, const char *op, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cs_err *err = cs_err_new(CS_ERR_KAFKA, flags, "kafka producer %s: %s: %s", p->txn_id, op, msg);
    if (flags & CS_ERR_F_FATAL)
        set_state(p, CS_KAFKA_PRODUCER_FATAL);
    else if (flags & CS_ERR_F_TXN_REQUIRES_ABORT)
        set_state(p, CS_KAFKA_PRODUCER_ABORTABLE);
    cs_log_kv(CS_LOG_WARN, FACILITY, cs_err_message(err), "transactional_id", p->txn_id, "state",
              cs_kafka_producer_state_name(p->state), NULL);
    return err;
}

/* Delivery report: counts failures of the current transaction (served from rd_kafka_poll/flush). */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    cs_kafka_producer *p = opaque;
    if (!p)
        return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->dr_ok++;
        return;
    }
    if (p->dr_failed++ == 0) {
        p->first_dr_err = m->err;
        snprintf(p->first_dr_topic, sizeof(p->first_dr_topic), "%s", rd_kafka_topic_name(m->rkt));
    }
    /* abort_transaction purges what was not sent yet: expected there, so not worth a warning. */
    bool purged = m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
    cs_log(purged ? CS_LOG_DEBUG : CS_LOG_WARN, FACILITY,
           "producer %s: delivery to %s [%" PRId32 "] failed: %s", p->txn_id, rd_kafka_topic_name(m->rkt),
           m->partition, rd_kafka_err2str(m->err));
}

/* librdkafka's own log lines (syslog levels) through cs_log. Called from librdkafka's threads. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    cs_log_level l = level <= 3   ? CS_LOG_ERROR
                     : level == 4 ? CS_LOG_WARN
                     : level <= 6 ? CS_LOG_INFO
                                  : CS_LOG_DEBUG;
    cs_log_kv(l, FACILITY, buf, "rdkafka_facility", fac, "client", rd_kafka_name(rk), NULL);
}

/* Asynchronous errors (brokers down, fatal errors); the API calls report the fatal ones again. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    const cs_kafka_producer *p = opaque;
    const char *id = p ? p->txn_id : "?";
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        cs_log_kv(CS_LOG_ERROR, FACILITY, "kafka producer fatal error", "transactional_id", id, "error",
                  rd_kafka_err2name(orig), "reason", buf, NULL);
        return;
    }
    cs_log_kv(CS_LOG_WARN, FACILITY, "kafka client error", "transactional_id", id, "error",
              rd_kafka_err2name((rd_kafka_resp_err_t)err), "reason", reason, NULL);
}

static cs_err *conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return cs_err_new(CS_ERR_CONFIG, 0, "kafka producer: setting %s=%s failed: %s", name, value, errstr);
    return NULL;
}

cs_err *cs_kafka_producer_new(rd_kafka_conf_t *conf, const char *transactional_id, cs_kafka_producer **out)
{
    cs_err *err = NULL;
    cs_kafka_producer *p = NULL;
    char buf[512];
    size_t len = sizeof(buf);

    *out = NULL;
    if (!conf)
        return cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "kafka producer: conf is NULL");
    p = calloc(1, sizeof(*p));
    if (!p) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "kafka producer: out of memory");
        goto cleanup;
    }
    if (transactional_id) {
        if (transactional_id[0] == '\0') {
            err = cs_err_new(CS_ERR_CONFIG, 0,
                             "kafka producer: transactional.id is empty: give each instance a "
                             "stable id (e.g. certsync-collector-<source id>)");
            goto cleanup;
        }
        if ((err = conf_set(conf, "transactional.id", transactional_id)))
            goto cleanup;
    }
    len = sizeof(buf);
    if (rd_kafka_conf_get(conf, "transactional.id", buf, &len) != RD_KAFKA_CONF_OK || buf[0] == '\0') {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "kafka producer: no transactional.id: pass one or set kafka.transactional.id");
        goto cleanup;
    }
    p->txn_id = strdup(buf);
    if (!p->txn_id) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "kafka producer: out of memory");
        goto cleanup;
    }
    p->txn_call_timeout_ms = TXN_CALL_TIMEOUT_DEFAULT_MS;
    len = sizeof(buf);
    if (rd_kafka_conf_get(conf, "transaction.timeout.ms", buf, &len) == RD_KAFKA_CONF_OK) {
        char *end = NULL;
        long v = strtol(buf, &end, 10);
        if (end != buf && *end == '\0' && v > 0 && v <= INT32_MAX)
            p->txn_call_timeout_ms = (int)v;
    }
    /* A transactional producer is idempotent; say so explicitly so a conflicting setting fails here. */
    if ((err = conf_set(conf, "enable.idempotence", "true")))
        goto cleanup;
    len = sizeof(buf);
    if (rd_kafka_conf_get(conf, "queue.buffering.max.kbytes", buf, &len) == RD_KAFKA_CONF_OK &&
        strcmp(buf, RDKAFKA_DEFAULT_QUEUE_KBYTES) == 0) {
        char cap[32];
        snprintf(cap, sizeof(cap), "%d", CS_KAFKA_PRODUCER_QUEUE_KBYTES_DEFAULT);
        if ((err = conf_set(conf, "queue.buffering.max.kbytes", cap)))
            goto cleanup;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);

    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, buf, sizeof(buf));
    if (!p->rk) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL, "kafka producer %s: creating the client failed: %s",
                         p->txn_id, buf);
        goto cleanup;
    }
    conf = NULL; /* rd_kafka_new took it */
    p->state = CS_KAFKA_PRODUCER_INIT;
    cs_log_kv(CS_LOG_INFO, FACILITY, "kafka producer created", "transactional_id", p->txn_id, "client",
              rd_kafka_name(p->rk), NULL);
    *out = p;
    p = NULL;

cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (p) {
        free(p->txn_id);
        free(p);
    }
    return err;
}

cs_err *cs_kafka_producer_init(cs_kafka_producer *p, int timeout_ms)
{
    cs_err *err = require_state(p, "init", ST(CS_KAFKA_PRODUCER_INIT));
    if (err)
        return err;
    rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, timeout_ms);
    if (e)
        return from_rd_error(p, e, "init_transactions");
    set_state(p, CS_KAFKA_PRODUCER_READY);
    return NULL;
}

cs_err *cs_kafka_producer_begin(cs_kafka_producer *p)
{
    cs_err *err = require_state(p, "begin", ST(CS_KAFKA_PRODUCER_READY));
    if (err)
        return err;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
    if (e)
        return from_rd_error(p, e, "begin_transaction");
    p->dr_ok = 0;
    p->dr_failed = 0;
    p->first_dr_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    p->first_dr_topic[0] = '\0';
    set_state(p, CS_KAFKA_PRODUCER_IN_TXN);
    return NULL;
}

cs_err *cs_kafka_producer_produce(cs_kafka_producer *p, const char *topic, int32_t partition, const void *key,
                                  size_t key_len, const void *value, size_t value_len,
                                  const cs_kafka_header *headers, size_t n_headers)
{
    cs_err *err = require_state(p, "produce", ST(CS_KAFKA_PRODUCER_IN_TXN));
    rd_kafka_headers_t *hdrs = NULL;
    if (err)
        return err;
    if (!topic || !*topic)
        return cs_err_new(CS_ERR_INTERNAL, 0, "kafka producer %s: produce without a topic name", p->txn_id);
    if (n_headers > MAX_HEADERS)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "kafka producer %s: %zu headers for topic %s, at most %d",
                          p->txn_id, n_headers, topic, MAX_HEADERS);
    if (n_headers > 0) {
        hdrs = rd_kafka_headers_new(n_headers);
        for (size_t i = 0; i < n_headers; i++)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value, (ssize_t)headers[i].value_len);
    }
    /* F_COPY: the caller's buffers may be reused as soon as we return. */
    rd_kafka_resp_err_t rerr = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY((void *)(uintptr_t)key, key_len),
        RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* The message owns the headers now. Serve delivery reports as we go so the queue drains. */
        rd_kafka_poll(p->rk, 0);
        return NULL;
    }
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    unsigned flags;
    if (rerr == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(p->rk, 100); /* let deliveries free space before the caller retries */
        flags = CS_ERR_F_RETRIABLE;
    } else if (rerr == RD_KAFKA_RESP_ERR__FATAL) {
        /* Fenced while the batch was open (a newer instance's init_transactions): say so, the caller
         * exits "fenced" rather than "failed". */
        rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(p->rk, NULL, 0);
        flags = CS_ERR_F_FATAL | (is_fenced_code(fatal) ? CS_KAFKA_ERR_F_FENCED : 0u);
    } else {
        /* The message is not in the transaction, so the batch is incomplete: abort and redo it. */
        flags = CS_ERR_F_TXN_REQUIRES_ABORT;
    }
    return fail(p, flags, "produce", "producing to %s [%" PRId32 "] failed: %s: %s", topic, partition,
                rd_kafka_err2name(rerr), rd_kafka_err2str(rerr));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

cs_err *cs_kafka_producer_send_offsets(cs_kafka_producer *p, const rd_kafka_topic_partition_list_t *offsets,
                                       const rd_kafka_consumer_group_metadata_t *cgmd, int timeout_ms)
{
    cs_err *err = require_state(p, "send_offsets", ST(CS_KAFKA_PRODUCER_IN_TXN));
    if (err)
        return err;
    if (!offsets || !cgmd)
        return cs_err_new(CS_ERR_INTERNAL, 0,
                          "kafka producer %s: send_offsets needs offsets and group metadata", p->txn_id);
    /* librdkafka 2.0.2: a retriable error here must be retried with the same arguments (services.md). */
    for (int attempt = 1;; attempt++) {
        rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(p->rk, offsets, cgmd, timeout_ms);
        if (!e)
            return NULL;
        if (rd_kafka_error_is_retriable(e) && attempt < SEND_OFFSETS_MAX_ATTEMPTS) {
            cs_log_kv(CS_LOG_WARN, FACILITY, "send_offsets_to_transaction failed, retrying",
                      "transactional_id", p->txn_id, "error", rd_kafka_error_string(e), NULL);
            rd_kafka_error_destroy(e);
            sleep_ms(SEND_OFFSETS_BACKOFF_MS * attempt);
            continue;
        }
        return from_rd_error(p, e, "send_offsets_to_transaction");
    }
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is left of a call's bound, at least 1 ms (0 would make librdkafka return without trying). */
static int remaining_ms(long long deadline)
{
    long long left = deadline - mono_ms();
    return left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/*
 * A commit/abort error: a retriable __TIMED_OUT means our bound ran out while librdkafka goes on in the
 * background, and the same call resumes it (rdkafka.h: "may be retried"); it becomes CS_ERR_TIMEOUT so
 * callers can tell it from a broker error. Anything else as from_rd_error. Takes ownership of `e`.
 */
static cs_err *txn_call_error(cs_kafka_producer *p, rd_kafka_error_t *e, const char *op, const char *again)
{
    if (rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR__TIMED_OUT || !rd_kafka_error_is_retriable(e) ||
        rd_kafka_error_is_fatal(e) || rd_kafka_error_txn_requires_abort(e))
        return from_rd_error(p, e, op);
    cs_err *err =
        cs_err_new(CS_ERR_TIMEOUT, CS_ERR_F_RETRIABLE,
                   "kafka producer %s: %s did not finish within %d ms (transaction.timeout.ms): %s; "
                   "it goes on in the background: call %s again to resume it",
                   p->txn_id, op, p->txn_call_timeout_ms, rd_kafka_error_string(e), again);
    rd_kafka_error_destroy(e);
    cs_log_kv(CS_LOG_WARN, FACILITY, cs_err_message(err), "transactional_id", p->txn_id, "state",
              cs_kafka_producer_state_name(p->state), NULL);
    return err;
}

cs_err *cs_kafka_producer_commit(cs_kafka_producer *p)
{
    cs_err *err = require_state(p, "commit", ST(CS_KAFKA_PRODUCER_IN_TXN) | ST(CS_KAFKA_PRODUCER_COMMITTING));
    if (err)
        return err;
    set_state(p, CS_KAFKA_PRODUCER_COMMITTING);
    long long deadline = mono_ms() + p->txn_call_timeout_ms;
    /* Serve every delivery report of this transaction before deciding to commit; commit_transaction
     * flushes too, but would not tell us which message failed. */
    rd_kafka_resp_err_t ferr = rd_kafka_flush(p->rk, p->txn_call_timeout_ms);
    /* A fatal error (e.g. fenced) explains failed deliveries better than they do themselves. */
    char reason[400];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(p->rk, reason, sizeof(reason));
    if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR)
        return fail(p, CS_ERR_F_FATAL | (is_fenced_code(fatal) ? CS_KAFKA_ERR_F_FENCED : 0u), "commit",
                    "producer fatal error %s: %s (%s)", rd_kafka_err2name(fatal), reason,
                    is_fenced_code(fatal)
                        ? "another producer with this transactional.id took over: stop this instance"
                        : "the producer is unusable: destroy it and restart");
    if (p->dr_failed > 0)
        return fail(
            p, CS_ERR_F_TXN_REQUIRES_ABORT, "commit",
            "%" PRIu64 " of %" PRIu64 " messages of this transaction were not delivered (first: topic %s: "
            "%s); abort the transaction and redo it",
            p->dr_failed, p->dr_failed + p->dr_ok, p->first_dr_topic, rd_kafka_err2str(p->first_dr_err));
    if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = cs_err_new(CS_ERR_TIMEOUT, CS_ERR_F_RETRIABLE,
                         "kafka producer %s: commit: %d messages still not delivered after %d ms "
                         "(transaction.timeout.ms): %s; call commit again",
                         p->txn_id, rd_kafka_outq_len(p->rk), p->txn_call_timeout_ms, rd_kafka_err2str(ferr));
        cs_log_kv(CS_LOG_WARN, FACILITY, cs_err_message(err), "transactional_id", p->txn_id, NULL);
        return err;
    }
    rd_kafka_error_t *e = rd_kafka_commit_transaction(p->rk, remaining_ms(deadline));
    if (e)
        return txn_call_error(p, e, "commit_transaction", "commit");
    set_state(p, CS_KAFKA_PRODUCER_READY);
    return NULL;
}

bool cs_kafka_producer_is_commit_pending(const cs_err *err)
{
    return (cs_err_flags(err) & CS_KAFKA_ERR_F_COMMIT_PENDING) != 0;
}

/* Sleeps up to `ms` in short steps, returning early when the caller's stop flag is raised. */
static void nap_unless_stopped(const cs_kafka_commit_opts *o, int ms)
{
    for (int slept = 0; slept < ms; slept += 50) {
        if (o && o->should_stop && o->should_stop(o->arg))
            return;
        sleep_ms(50);
    }
}

cs_err *cs_kafka_producer_commit_resume(cs_kafka_producer *p, const cs_kafka_commit_opts *o,
                                        unsigned *attempts)
{
    cs_err *err = NULL;
    bool pending = false;
    int saved = p->txn_call_timeout_ms;
    int call = o && o->call_timeout_ms > 0 ? o->call_timeout_ms : CS_KAFKA_COMMIT_CALL_TIMEOUT_MS_DEFAULT;
    /* Shorter attempts, same total: the stop flag is looked at between them. Never longer than
     * transaction.timeout.ms, which already bounds one call. */
    if (call < p->txn_call_timeout_ms)
        p->txn_call_timeout_ms = call;
    unsigned n = 0;
    /* Unbounded on purpose: a pending commit may only be resumed, never abandoned for an abort (librdkafka
     * refuses one) or for a new transaction; the bound is the caller's stop flag (see the header). */
    for (int backoff = 100;; backoff = backoff * 2 > CS_KAFKA_COMMIT_BACKOFF_MAX_MS
                                           ? CS_KAFKA_COMMIT_BACKOFF_MAX_MS
                                           : backoff * 2) {
        long long t0 = mono_ms();
        n++;
        err = cs_kafka_producer_commit(p);
        if (!err || cs_err_is_fatal(err) || cs_err_txn_requires_abort(err) || !cs_err_is_retriable(err))
            break;
        if (!pending) {
            pending = true;
            cs_log_kv(CS_LOG_WARN, FACILITY, "commit pending: resuming it until Kafka answers",
                      "transactional_id", p->txn_id, "error", cs_err_message(err), NULL);
        }
        if (o && o->on_pending)
            o->on_pending(o->arg, true, err);
        /* An attempt that failed at once (a broker error, not our bound) waits a little before the next. */
        if (mono_ms() - t0 < 50)
            nap_unless_stopped(o, backoff);
        if (o && o->should_stop && o->should_stop(o->arg)) {
            cs_err *stop =
                cs_err_new(CS_ERR_STATE, CS_ERR_F_FATAL | CS_KAFKA_ERR_F_COMMIT_PENDING,
                           "kafka producer %s: stop requested while a commit was pending after %u "
                           "attempt(s) (last: %s); nothing new was committed: the coordinator completes "
                           "or expires that transaction, and the next start resumes from what is "
                           "committed",
                           p->txn_id, n, cs_err_message(err));
            cs_err_free(err);
            err = stop;
            char nbuf[16];
            snprintf(nbuf, sizeof nbuf, "%u", n);
            cs_log_kv(CS_LOG_WARN, FACILITY,
                      "stop requested while a commit was pending: giving up the commit", "transactional_id",
                      p->txn_id, "attempts", nbuf, NULL);
            break;
        }
        cs_err_free(err);
        err = NULL;
    }
    p->txn_call_timeout_ms = saved;
    if (pending) {
        if (!err)
            cs_log_kv(CS_LOG_INFO, FACILITY, "pending commit completed", "transactional_id", p->txn_id, NULL);
        if (o && o->on_pending)
            o->on_pending(o->arg, false, err);
    }
    if (attempts)
        *attempts = n;
    return err;
}

cs_err *cs_kafka_producer_abort(cs_kafka_producer *p)
{
    cs_err *err = require_state(p, "abort",
                                ST(CS_KAFKA_PRODUCER_IN_TXN) | ST(CS_KAFKA_PRODUCER_ABORTABLE) |
                                    ST(CS_KAFKA_PRODUCER_ABORTING));
    if (err)
        return err;
    long long deadline = mono_ms() + p->txn_call_timeout_ms;
    if (p->state == CS_KAFKA_PRODUCER_IN_TXN) {
        /* A voluntary abort right after produce can race librdkafka's AddPartitionsToTxn: EndTxn reaches
         * the coordinator first and the broker answers INVALID_TXN_STATE, which is fatal (seen here with
         * librdkafka 2.0.2 under ASan timing; librdkafka issue #4849, open). Letting the messages reach
         * the broker first closes that window; bounded, as the abort may be due to a slow cluster. */
        rd_kafka_flush(p->rk, p->txn_call_timeout_ms < ABORT_FLUSH_TIMEOUT_MS ? p->txn_call_timeout_ms
                                                                              : ABORT_FLUSH_TIMEOUT_MS);
    }
    set_state(p, CS_KAFKA_PRODUCER_ABORTING);
    rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, remaining_ms(deadline));
    if (e) {
        /* From ABORTING only a fatal error moves on; requires-abort means "abort again". */
        unsigned flags = cs_kafka_error_flags(e);
        if (!(flags & CS_ERR_F_FATAL) && (flags & CS_ERR_F_TXN_REQUIRES_ABORT)) {
            cs_err *ret = cs_err_new(CS_ERR_KAFKA, CS_ERR_F_RETRIABLE,
                                     "kafka producer %s: abort_transaction failed: %s: %s (retry the abort)",
                                     p->txn_id, rd_kafka_error_name(e), rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return ret;
        }
        return txn_call_error(p, e, "abort_transaction", "abort");
    }
    set_state(p, CS_KAFKA_PRODUCER_READY);
    return NULL;
}

cs_err *cs_kafka_producer_warm(cs_kafka_producer *p, const char *const *topics, size_t n, int timeout_ms)
{
    if (p->n_warm + n > MAX_WARM_TOPICS)
        return cs_err_new(CS_ERR_INTERNAL, 0, "kafka producer %s: more than %d topics to warm up", p->txn_id,
                          MAX_WARM_TOPICS);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topics[i], NULL);
        if (!rkt)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0, "kafka producer %s: topic \"%s\": %s", p->txn_id,
                              topics[i], rd_kafka_err2str(rd_kafka_last_error()));
        p->warm[p->n_warm++] = rkt;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t rerr = rd_kafka_metadata(p->rk, 0, rkt, &md, timeout_ms);
        if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Not fatal: the first produce asks again (only slower). */
            cs_log_kv(CS_LOG_WARN, FACILITY, "topic metadata not fetched ahead of the first transaction",
                      "transactional_id", p->txn_id, "topic", topics[i], "error", rd_kafka_err2str(rerr),
                      NULL);
            continue;
        }
        rd_kafka_metadata_destroy(md);
    }
    return NULL;
}

void cs_kafka_producer_destroy(cs_kafka_producer *p)
{
    if (!p)
        return;
    if (p->rk) {
        switch (p->state) {
        case CS_KAFKA_PRODUCER_COMMITTING:
            /* A commit given up while pending (cs_kafka_producer_commit_resume stopped): librdkafka refuses an
             * abort once EndTxn is on its way, and before that an abort would wait for the same unreachable
             * broker. The coordinator completes or expires the transaction; the next instance's
             * init_transactions fences and aborts it at once. */
            cs_log_kv(CS_LOG_WARN, FACILITY, "destroying with a commit pending: left to the coordinator",
                      "transactional_id", p->txn_id, NULL);
            break;
        case CS_KAFKA_PRODUCER_IN_TXN:
        case CS_KAFKA_PRODUCER_ABORTABLE:
        case CS_KAFKA_PRODUCER_ABORTING: {
            /* Leave no open transaction behind: it would hold the LSO of every partition it touched
             * until transaction.timeout.ms. Bounded: shutdown must not hang on a dead cluster. */
            if (p->state == CS_KAFKA_PRODUCER_IN_TXN)
                rd_kafka_flush(p->rk, ABORT_FLUSH_TIMEOUT_MS); /* see cs_kafka_producer_abort */
            rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, DESTROY_ABORT_TIMEOUT_MS);
            if (e) {
                cs_log_kv(CS_LOG_WARN, FACILITY, "aborting the open transaction on destroy failed",
                          "transactional_id", p->txn_id, "error", rd_kafka_error_string(e), NULL);
                rd_kafka_error_destroy(e);
            }
            break;
        }
        case CS_KAFKA_PRODUCER_READY:
        case CS_KAFKA_PRODUCER_INIT:
            rd_kafka_flush(p->rk, DESTROY_FLUSH_TIMEOUT_MS);
            break;
        case CS_KAFKA_PRODUCER_FATAL:
            break;
        }
        for (size_t i = 0; i < p->n_warm; i++)
            rd_kafka_topic_destroy(p->warm[i]);
        rd_kafka_destroy(p->rk);
    }
    cs_log_kv(CS_LOG_INFO, FACILITY, "kafka producer destroyed", "transactional_id", p->txn_id, NULL);
    free(p->txn_id);
    free(p);
}

cs_kafka_producer_state cs_kafka_producer_get_state(const cs_kafka_producer *p)
{
    return p->state;
}

const char *cs_kafka_producer_transactional_id(const cs_kafka_producer *p)
{
    return p->txn_id;
}

rd_kafka_t *cs_kafka_producer_rd_kafka(cs_kafka_producer *p)
{
    return p->rk;
}
