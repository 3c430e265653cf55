/*
 * pub_replay: forced re-application of the retained events, and the engine redrive shares (pub_replay.h).
 */
#include "pub_replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_event.h"
#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_state_reader.h"
#include "cs_version.h"
#include "pub_cmd.h"
#include "pub_decide.h"
#include "pub_inspect.h"
#include "pub_state.h"

#define MAX_BATCH 500          /* objects per batch and transaction, whatever batch.max_events says */
#define KAFKA_TIMEOUT_MS 60000 /* init_transactions, state reads */
#define HOLD_WAIT_MS 60000
#define COMMIT_RETRIES 5

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ applied state */

static cs_err *restore_record(const cs_state_record *r, void *opaque)
{
    cs_err *err = pub_state_put(opaque, r->partition, r->key, r->key_len, r->value, r->value_len);
    /* A foreign or damaged record only loses that entry, as in the pipeline. */
    cs_err_free(err);
    return NULL;
}

/* The applied state of the partitions of set->v[from..to). Caller frees *out with pub_state_free(). */
static cs_err *load_state(const pub_config *cfg, const pub_latest *set, size_t from, size_t to,
                          pub_state **out)
{
    int32_t parts[MAX_BATCH];
    size_t n = 0;
    rd_kafka_conf_t *conf = NULL;
    for (size_t i = from; i < to; i++) {
        size_t j = 0;
        while (j < n && parts[j] != set->v[i].partition)
            j++;
        if (j == n)
            parts[n++] = set->v[i].partition;
    }
    cs_err *err = pub_state_new(out);
    if (!err)
        err = pub_config_kafka_conf(cfg, &conf);
    if (!err)
        err = cs_state_reader_load(conf, cfg->topic_state, parts, n, KAFKA_TIMEOUT_MS, restore_record, *out,
                                   NULL);
    if (err) {
        pub_state_free(*out);
        *out = NULL;
        return cs_err_wrap(err, "reading the applied state from %s", cfg->topic_state);
    }
    return NULL;
}

/* ------------------------------------------------------------------ producing */

static cs_err *produce_pb(cs_kafka_producer *p, const char *topic, int32_t partition, const char *key,
                          const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_TXN_REQUIRES_ABORT, "out of memory encoding for %s", topic);
    protobuf_c_message_pack(msg, buf);
    cs_err *err = cs_kafka_producer_produce(p, topic, partition, key, strlen(key), buf, len, NULL, 0);
    free(buf);
    return err;
}

/* One object of a batch: the event, the decision, the outcome. */
typedef struct job {
    const pub_latest_entry *e;
    pub_decision *dec;
    int write_idx; /* -1: nothing written */
    Certsync__V1__Outcome outcome;
    const char *label; /* report: applied, cleared, skipped_newer, ... */
    char detail[600];
} job;

static void recipient_of(const job *j, const pub_apply_outcome *o, Certsync__V1__Recipient *r)
{
    certsync__v1__recipient__init(r);
    r->external_directory_object_id = (char *)(uintptr_t)(o->recipient_id[0] ? o->recipient_id : j->e->key);
    if (o->recipient_identity[0])
        r->identity = (char *)(uintptr_t)o->recipient_identity;
    if (o->recipient_type[0])
        r->recipient_type_details = (char *)(uintptr_t)o->recipient_type;
    if (o->primary_smtp_address[0])
        r->primary_smtp_address = (char *)(uintptr_t)o->primary_smtp_address;
    if (o->resolved_by[0])
        r->resolved_by = (char *)(uintptr_t)o->resolved_by;
}

/* The records of one written object: obj/<key>, rcpt/<id> (to the event's partition), and its result. */
static cs_err *produce_written(const pub_config *cfg, cs_kafka_producer *p, const job *j,
                               const pub_apply_outcome *o)
{
    const pub_latest_entry *e = j->e;
    Certsync__V1__Recipient rcpt;
    recipient_of(j, o, &rcpt);
    char key[PUB_STATE_KEY_MAX + 8];
    Certsync__V1__ObjectState os = CERTSYNC__V1__OBJECT_STATE__INIT;
    os.object_key = e->key;
    os.version = e->event->version;
    os.recipient = &rcpt;
    os.has_removed = 1;
    os.removed = e->event->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    os.has_event_partition = os.has_event_offset = os.has_updated_at_ms = 1;
    os.event_partition = e->partition;
    os.event_offset = e->offset;
    os.updated_at_ms = now_ms();
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT;
    rec.object = &os;
    snprintf(key, sizeof key, "%s%s", PUB_STATE_OBJ_PREFIX, e->key);
    cs_err *err = produce_pb(p, cfg->topic_state, e->partition, key, &rec.base);
    if (err)
        return err;

    size_t n_uc = 0, n_sm = 0;
    pub_decision_values(j->dec, CS_CERT_ATTR_USER_CERTIFICATE, &n_uc);
    pub_decision_values(j->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n_sm);
    Certsync__V1__RecipientState rs = CERTSYNC__V1__RECIPIENT_STATE__INIT;
    rs.recipient = &rcpt;
    rs.owner_object_key = e->key;
    rs.version = e->event->version;
    rs.written_sha256 = (char *)(uintptr_t)pub_decision_sha256(j->dec);
    rs.has_user_certificate_count = rs.has_user_smime_certificate_count = rs.has_written_at_ms = 1;
    rs.user_certificate_count = (uint32_t)n_uc;
    rs.user_smime_certificate_count = (uint32_t)n_sm;
    rs.written_at_ms = now_ms();
    rs.client_request_id = o->client_request_id[0] ? (char *)(uintptr_t)o->client_request_id : NULL;
    Certsync__V1__AppliedStateRecord rrec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    rrec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT;
    rrec.recipient = &rs;
    snprintf(key, sizeof key, "%s%s", PUB_STATE_RCPT_PREFIX, pub_state_recipient_id(&rcpt));
    return produce_pb(p, cfg->topic_state, e->partition, key, &rrec.base);
}

static cs_err *produce_result(const pub_config *cfg, cs_kafka_producer *p, const job *j,
                              const pub_apply_outcome *o)
{
    Certsync__V1__PublishResult r = CERTSYNC__V1__PUBLISH_RESULT__INIT;
    Certsync__V1__Recipient rcpt;
    r.object_key = j->e->key;
    r.version = j->e->event->version;
    r.has_outcome = 1;
    r.outcome = j->outcome;
    if (o && (j->outcome == CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED ||
              j->outcome == CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED)) {
        recipient_of(j, o, &rcpt);
        r.recipient = &rcpt;
        r.cmdlet = o->cmdlet[0] ? (char *)(uintptr_t)o->cmdlet : NULL;
        r.client_request_id = o->client_request_id[0] ? (char *)(uintptr_t)o->client_request_id : NULL;
        size_t n_uc = 0, n_sm = 0;
        pub_decision_values(j->dec, CS_CERT_ATTR_USER_CERTIFICATE, &n_uc);
        pub_decision_values(j->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n_sm);
        r.has_user_certificate_count = r.has_user_smime_certificate_count = 1;
        r.user_certificate_count = (uint32_t)n_uc;
        r.user_smime_certificate_count = (uint32_t)n_sm;
    }
    if (j->dec) {
        size_t nd = 0;
        Certsync__V1__DroppedValue *const *d = pub_decision_dropped(j->dec, &nd);
        r.n_dropped = nd;
        r.dropped = (Certsync__V1__DroppedValue **)(uintptr_t)d;
    }
    r.has_event_partition = r.has_event_offset = r.has_completed_at_ms = 1;
    r.event_partition = j->e->partition;
    r.event_offset = j->e->offset;
    r.completed_at_ms = now_ms();
    r.detail = (char *)(uintptr_t)j->detail;
    return produce_pb(p, cfg->topic_results, RD_KAFKA_PARTITION_UA, j->e->key, &r.base);
}

/* ------------------------------------------------------------------ the engine */

static void hold(const char *path)
{
    char ready[1024];
    snprintf(ready, sizeof ready, "%s.ready", path);
    FILE *f = fopen(ready, "w");
    if (f)
        fclose(f);
    cs_log_kv(CS_LOG_WARN, "replay", "test hook: holding before the first batch", "path", path, NULL);
    struct stat st;
    for (long waited = 0; waited < HOLD_WAIT_MS && stat(path, &st) != 0; waited += 20)
        nap_ms(20);
}

/* Decides one object; fills j->dec, j->label, j->outcome, j->detail. */
static cs_err *decide(const pub_config *cfg, const pub_state *state, const pub_replay_opts *opts, job *j,
                      int64_t now)
{
    pub_applied_view view;
    bool known = pub_state_view(state, j->e->key, &view);
    if (opts->force && known && view.version &&
        cs_version_compare(j->e->event->version, view.version) == CS_VERSION_OLDER) {
        j->label = "skipped_newer";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE;
        snprintf(j->detail, sizeof j->detail,
                 "%s: a newer version is applied (written by the live publisher after offset %" PRId64
                 "): not overwritten",
                 opts->command, j->e->offset);
        return NULL;
    }
    /* Forced: decide as if nothing were applied, so neither the gate nor the duplicate check stops it. */
    cs_err *err = pub_decide_with_policy(j->e->event, opts->force || !known ? NULL : &view, cfg->policy,
                                         now / 1000, &j->dec);
    if (err)
        return err;
    snprintf(j->detail, sizeof j->detail, "%s: %s", opts->command, pub_decision_detail(j->dec));
    switch (pub_decision_get_kind(j->dec)) {
    case PUB_DECISION_WRITE:
        j->label = "applied";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED;
        break;
    case PUB_DECISION_CLEAR:
        j->label = "cleared";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED;
        break;
    case PUB_DECISION_SKIP_STALE:
        j->label = "skipped_stale";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE;
        break;
    case PUB_DECISION_SKIP_DUPLICATE:
        j->label = "skipped_duplicate";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_DUPLICATE;
        break;
    case PUB_DECISION_DEAD_LETTER:
        j->label = "nothing_valid";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED;
        break;
    }
    return NULL;
}

static void count(pub_replay_counts *c, const job *j)
{
    if (strcmp(j->label, "applied") == 0)
        c->written++;
    else if (strcmp(j->label, "cleared") == 0)
        c->cleared++;
    else if (strcmp(j->label, "skipped_newer") == 0)
        c->skipped_newer++;
    else if (strcmp(j->label, "skipped_stale") == 0)
        c->skipped_stale++;
    else if (strcmp(j->label, "skipped_duplicate") == 0)
        c->skipped_duplicate++;
    else if (strcmp(j->label, "nothing_valid") == 0)
        c->nothing_valid++;
    else
        c->failed++;
}

static void report_line(FILE *out, const char *outcome, const char *object, const char *recipient,
                        const char *detail)
{
    fprintf(out, "%-18s %-40s %-40s %s\n", outcome, object, recipient && *recipient ? recipient : "-",
            detail ? detail : "");
}

/* One batch: decide, apply, one transaction. */
static cs_err *run_batch(const pub_config *cfg, pub_o365 *o, cs_kafka_producer *prod, const pub_latest *set,
                         size_t from, size_t to, const pub_replay_opts *opts, pub_replay_counts *counts,
                         FILE *report)
{
    cs_err *err = NULL;
    pub_state *state = NULL;
    size_t n = to - from, n_writes = 0;
    job *jobs = calloc(n, sizeof(*jobs));
    pub_write *writes = calloc(n, sizeof(*writes));
    pub_apply_outcome *outs = calloc(n, sizeof(*outs));
    if (!jobs || !writes || !outs) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory for a batch of %zu", n);
        goto cleanup;
    }
    /* Re-read per batch: what the live publisher applied since the last batch counts (no regression). */
    err = load_state(cfg, set, from, to, &state);
    if (err)
        goto cleanup;
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        job *j = &jobs[i];
        j->e = &set->v[from + i];
        j->write_idx = -1;
        err = decide(cfg, state, opts, j, now);
        if (err)
            goto cleanup;
        if (j->outcome != CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED &&
            j->outcome != CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED)
            continue;
        pub_write *w = &writes[n_writes];
        w->object_key = j->e->key;
        w->event = j->e->event;
        w->clear = pub_decision_get_kind(j->dec) == PUB_DECISION_CLEAR;
        w->user_certificate =
            pub_decision_values(j->dec, CS_CERT_ATTR_USER_CERTIFICATE, &w->n_user_certificate);
        w->user_smime_certificate =
            pub_decision_values(j->dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &w->n_user_smime_certificate);
        w->written_sha256 = pub_decision_sha256(j->dec);
        w->partition = j->e->partition;
        w->offset = j->e->offset;
        /* Past the not-found retry window: a replay or redrive reports "not found" now, it does not park. */
        w->attempt = cfg->not_found_attempts > PUB_O365_NOT_FOUND_ATTEMPTS ? cfg->not_found_attempts
                                                                           : PUB_O365_NOT_FOUND_ATTEMPTS;
        j->write_idx = (int)n_writes++;
    }
    if (opts->dry_run) {
        for (size_t i = 0; i < n; i++) {
            char label[40];
            snprintf(label, sizeof label, "%s%s", jobs[i].write_idx >= 0 ? "would_" : "", jobs[i].label);
            report_line(report, label, jobs[i].e->key, NULL, jobs[i].detail);
            count(counts, &jobs[i]);
        }
        goto cleanup;
    }
    if (n_writes > 0) {
        pub_applier a = pub_o365_applier(o);
        err = a.apply(a.ctx, writes, n_writes, outs);
        if (err)
            goto cleanup;
    }
    /* Outcomes of the writes: anything but written is a failure the report lists (no parking, no DLQ). */
    for (size_t i = 0; i < n; i++) {
        job *j = &jobs[i];
        if (j->write_idx < 0)
            continue;
        const pub_apply_outcome *oc = &outs[j->write_idx];
        if (oc->status == PUB_APPLY_APPLIED || oc->status == PUB_APPLY_CLEARED)
            continue;
        j->label =
            oc->status == PUB_APPLY_PERMANENT
                ? pub_latest_reason_name(
                      oc->reason ? oc->reason : CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED)
                : "retry_later";
        j->outcome = CERTSYNC__V1__OUTCOME__OUTCOME_UNSPECIFIED;
        snprintf(j->detail, sizeof j->detail, "%s: not written: %s", opts->command, oc->detail);
        j->write_idx = -2; /* failed: a result, no state */
    }
    err = cs_kafka_producer_begin(prod);
    for (size_t i = 0; !err && i < n; i++) {
        job *j = &jobs[i];
        const pub_apply_outcome *oc = j->write_idx >= 0 ? &outs[j->write_idx] : NULL;
        if (oc)
            err = produce_written(cfg, prod, j, oc);
        if (!err && j->outcome != CERTSYNC__V1__OUTCOME__OUTCOME_UNSPECIFIED)
            err = produce_result(cfg, prod, j, oc);
    }
    for (int attempt = 0; !err; attempt++) {
        err = cs_kafka_producer_commit(prod);
        if (!err || !cs_err_is_retriable(err) || attempt + 1 >= COMMIT_RETRIES)
            break;
        cs_err_free(err);
        err = NULL;
    }
    if (err) {
        cs_err *ae = cs_kafka_producer_abort(prod);
        cs_err_free(ae);
        err = cs_err_wrap(err, "committing the %s batch (its writes are idempotent: run it again)",
                          opts->command);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        const job *j = &jobs[i];
        const pub_apply_outcome *oc = j->write_idx >= 0 ? &outs[j->write_idx] : NULL;
        report_line(report, j->label, j->e->key, oc ? oc->primary_smtp_address : NULL, j->detail);
        count(counts, j);
    }
cleanup:
    if (jobs)
        for (size_t i = 0; i < n; i++)
            pub_decision_free(jobs[i].dec);
    free(jobs);
    free(writes);
    free(outs);
    pub_state_free(state);
    return err;
}

cs_err *pub_replay_apply(const pub_config *cfg, pub_o365 *o, const pub_latest *set,
                         const pub_replay_opts *opts, pub_replay_counts *counts, FILE *report)
{
    cs_err *err = NULL;
    cs_kafka_producer *prod = NULL;
    rd_kafka_conf_t *conf = NULL;
    memset(counts, 0, sizeof(*counts));
    counts->objects = set->n;
    if (!opts->dry_run) {
        char txn[200];
        snprintf(txn, sizeof txn, "%s-%s", cfg->transactional_id, opts->command);
        err = pub_config_kafka_conf(cfg, &conf);
        if (!err) {
            err = cs_kafka_producer_new(conf, txn, &prod);
            conf = NULL;
        }
        /* Fences an earlier run of the same command that died mid-transaction. */
        if (!err)
            err = cs_kafka_producer_init(prod, KAFKA_TIMEOUT_MS);
        if (err) {
            err = cs_err_wrap(err, "starting the %s producer (transactional.id %s)", opts->command, txn);
            goto cleanup;
        }
    }
    if (opts->hold_path && *opts->hold_path)
        hold(opts->hold_path);
    size_t batch = cfg->batch_max_events > 0 && cfg->batch_max_events < MAX_BATCH
                       ? (size_t)cfg->batch_max_events
                       : MAX_BATCH;
    report_line(report, "OUTCOME", "OBJECT", "RECIPIENT", "DETAIL");
    for (size_t at = 0; at < set->n && !err; at += batch) {
        size_t to = set->n - at < batch ? set->n : at + batch;
        err = run_batch(cfg, o, prod, set, at, to, opts, counts, report);
    }
cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    cs_kafka_producer_destroy(prod);
    return err;
}

/* ------------------------------------------------------------------ dry run: reconciliation */

static const char *count_pair(size_t a, size_t b, char *buf, size_t cap)
{
    snprintf(buf, cap, "%zu/%zu", a, b);
    return buf;
}

/* Compares what the replay would write with what Exchange holds; prints the report; returns the exit code. */
static int reconcile(const pub_config *cfg, pub_o365 *o, const pub_latest *set, FILE *out)
{
    cs_err *err = NULL;
    int rc = PUB_CMD_EXIT_OK;
    size_t n = set->n;
    const Certsync__V1__ChangeEvent **evs = calloc(n ? n : 1, sizeof(*evs));
    pub_inspect_result *res = calloc(n ? n : 1, sizeof(*res));
    uint64_t by_action[6] = {0};
    static const char *const actions[6] = {"write", "clear", "none", "not_found", "error", "skip"};
    if (!evs || !res) {
        rc = pub_cmd_fail("replay", cs_err_new(CS_ERR_NOMEM, 0, "out of memory for %zu objects", n));
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        evs[i] = set->v[i].event;
    err = pub_inspect_run(o, evs, n, res);
    if (err) {
        rc = pub_cmd_fail("replay", err);
        goto cleanup;
    }
    fprintf(out, "%-40s %-40s %-10s %-10s %-10s %s\n", "OBJECT", "RECIPIENT", "DIRECTORY", "EXCHANGE",
            "ACTION", "DETAIL");
    int64_t now = now_ms() / 1000;
    for (size_t i = 0; i < n; i++) {
        const pub_latest_entry *e = &set->v[i];
        const pub_inspect_result *r = &res[i];
        pub_decision *dec = NULL;
        int action = 4;
        char dir[32] = "-", exo[32] = "-", detail[800] = "";
        err = pub_decide_with_policy(e->event, NULL, cfg->policy, now, &dec);
        if (err) {
            rc = pub_cmd_fail("replay", err);
            goto cleanup;
        }
        pub_decision_kind kind = pub_decision_get_kind(dec);
        size_t n_uc = 0, n_sm = 0;
        const ProtobufCBinaryData *uc = pub_decision_values(dec, CS_CERT_ATTR_USER_CERTIFICATE, &n_uc);
        const ProtobufCBinaryData *sm = pub_decision_values(dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &n_sm);
        count_pair(n_uc, n_sm, dir, sizeof dir);
        if (r->status == PUB_INSPECT_FOUND)
            count_pair(r->n_user_certificate, r->n_user_smime_certificate, exo, sizeof exo);
        if (kind == PUB_DECISION_DEAD_LETTER) {
            action = 5;
            snprintf(detail, sizeof detail, "%s", pub_decision_detail(dec));
        } else if (r->status == PUB_INSPECT_NOT_FOUND) {
            action = 3;
            snprintf(detail, sizeof detail,
                     "%s: the recipient does not exist (yet): run an Entra Connect sync cycle, or check "
                     "resolve.order",
                     r->detail);
        } else if (r->status != PUB_INSPECT_FOUND) {
            action = 4;
            snprintf(detail, sizeof detail, "%s", r->detail);
        } else {
            char du[65], ds[65];
            pub_inspect_digest(uc, n_uc, du);
            pub_inspect_digest(sm, n_sm, ds);
            bool same = strcmp(du, r->user_certificate_digest) == 0 &&
                        strcmp(ds, r->user_smime_certificate_digest) == 0;
            action = same ? 2 : kind == PUB_DECISION_CLEAR || (n_uc == 0 && n_sm == 0) ? 1 : 0;
            if (!same && r->is_dir_synced && !r->is_exchange_cloud_managed && n_uc + n_sm > 0)
                snprintf(detail, sizeof detail,
                         "write scope: the recipient is directory-synced and not cloud-managed, the write "
                         "will be refused (see preflight)");
            else if (!same)
                snprintf(detail, sizeof detail, "Exchange differs from the directory's latest state");
        }
        by_action[action]++;
        if (action != 2)
            rc = PUB_CMD_EXIT_PROBLEMS;
        fprintf(out, "%-40s %-40s %-10s %-10s %-10s %s\n", e->key,
                r->rcpt.primary_smtp_address[0] ? r->rcpt.primary_smtp_address : "-", dir, exo,
                actions[action], detail);
        pub_decision_free(dec);
    }
    fprintf(out,
            "replay --dry-run: %zu objects: %" PRIu64 " write, %" PRIu64 " clear, %" PRIu64 " none, %" PRIu64
            " not_found, %" PRIu64 " error, %" PRIu64 " skip; nothing was written\n",
            n, by_action[0], by_action[1], by_action[2], by_action[3], by_action[4], by_action[5]);
cleanup:
    free(evs);
    free(res);
    return rc;
}

/* ------------------------------------------------------------------ the command */

int pub_replay_command(const pub_config *cfg, int argc, char **argv)
{
    bool dry_run = false, from_beginning = false;
    const char *from_time = NULL;
    int64_t from_ms = 0;
    int rc = PUB_CMD_EXIT_FAIL;
    pub_latest *set = NULL;
    pub_o365 *o = NULL;
    cs_err *err = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = true;
        } else if (strcmp(argv[i], "--from-beginning") == 0) {
            from_beginning = true;
        } else if (strcmp(argv[i], "--from-time") == 0 || strcmp(argv[i], "--from") == 0) {
            if (i + 1 >= argc)
                return pub_cmd_usage("replay", "%s needs a value", argv[i]);
            const char *v = argv[++i];
            /* --from earliest|<time> as the issue spells it. */
            if (strcmp(v, "earliest") == 0 || strcmp(v, "beginning") == 0)
                from_beginning = true;
            else
                from_time = v;
        } else {
            return pub_cmd_usage("replay", "unknown argument \"%s\"", argv[i]);
        }
    }
    if (from_beginning && from_time)
        return pub_cmd_usage("replay", "--from-beginning and --from-time exclude each other");
    if (from_time) {
        err = pub_cmd_parse_time(from_time, &from_ms);
        if (err) {
            rc = pub_cmd_usage("replay", "--from-time: %s", cs_err_message(err));
            cs_err_free(err);
            return rc;
        }
    }
    err = pub_latest_read_events(cfg, from_ms, &set);
    if (!err)
        err = pub_cmd_o365(cfg, &o);
    if (err) {
        rc = pub_cmd_fail("replay", err);
        goto cleanup;
    }
    cs_log_info("replay",
                "read %s to its last stable offset: %" PRIu64 " records, %zu objects, %" PRIu64
                " undecodable, %" PRIu64 " before --from-time",
                cfg->topic_events, set->records, set->n, set->undecodable, set->filtered);
    if (dry_run) {
        rc = reconcile(cfg, o, set, stdout);
        goto cleanup;
    }
    pub_replay_opts opts = {
        .command = "replay", .force = true, .hold_path = getenv("CERTSYNC_PUB_REPLAY_HOLD")};
    pub_replay_counts c;
    err = pub_replay_apply(cfg, o, set, &opts, &c, stdout);
    if (err) {
        rc = pub_cmd_fail("replay", err);
        goto cleanup;
    }
    printf("replay: %" PRIu64 " objects: %" PRIu64 " written, %" PRIu64 " cleared, %" PRIu64
           " skipped (newer applied), %" PRIu64 " nothing valid, %" PRIu64 " failed\n",
           c.objects, c.written, c.cleared, c.skipped_newer, c.nothing_valid, c.failed);
    rc = c.failed ? PUB_CMD_EXIT_PROBLEMS : PUB_CMD_EXIT_OK;
cleanup:
    pub_o365_free(o);
    pub_latest_free(set);
    return rc;
}
