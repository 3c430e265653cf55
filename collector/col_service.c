/* timegm() (not in POSIX 2008) turns an entryCSN's UTC time into the lag metric. */
#define _DEFAULT_SOURCE

#include "col_service.h"
#include "cs_version.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "col_dirsync.h"
#include "col_election.h"
#include "col_event_build.h"
#include "col_group.h"
#include "col_ldap.h"
#include "col_pipeline.h"
#include "col_scope.h"
#include "col_snapshot.h"
#include "col_syncrepl.h"
#include "col_usn.h"
#include "cs_admin.h"
#include "cs_event.h"
#include "cs_kafka_producer.h"
#include "cs_log.h"
#include "cs_metrics.h"
#include "cs_secret.h"

#ifndef CS_PROGRAM_VERSION
#define CS_PROGRAM_VERSION "unknown"
#endif

#define FACILITY "service"
/* entryCSN: YYYYmmddHHMMSS.ffffffZ#cccccc#sid#mod (40 bytes); room for what gcc deems possible. */
#define CSN_LEN 160

/* Tags of the watched secret files (cs_secret.h): what a rotation renews. */
#define SECRET_LDAP 0x1u  /* ldap.password_file: the next bind; the service reconnects at once */
#define SECRET_KAFKA 0x2u /* kafka.*_file: librdkafka cannot take it live: clean exit for a restart */

/* Why a tracking step stopped: decides what the loop does next. */
typedef enum stop_cause {
    CAUSE_NONE = 0,
    CAUSE_STOP,      /* the stop flag */
    CAUSE_ONCE_DONE, /* --once caught up */
} stop_cause;

typedef struct svc {
    const col_config *cfg;
    const col_service_opts *o;
    cs_metrics *metrics;
    cs_admin *admin;
    col_pipeline *pipe;
    col_ldap *ldap;
    col_ldap_mode mode;
    char *filter;        /* the effective filter (ldap.filter and ldap.group_dn, col_scope_filter); owned */
    const char *nc_root; /* DirSync's base: the naming context of base_dns[0]; owned by ldap */
    col_source_info src;
    col_syncrepl *sync;
    col_dirsync *ds;
    col_usn *usn;
    col_election *elect;
    cs_secret_watch *secrets;
    bool rebind_due;    /* ldap.password_file changed: reconnect with the new password */
    bool kafka_rotated; /* a Kafka credential file changed: stop cleanly and exit for a restart */
    bool ever_bound;    /* a bind succeeded since start: a later invalidCredentials may be a rotation */
    char scope_sha[CS_SHA256_HEX_LEN];
    /* ldap.group_dn: the watched member set (NULL without a group; rebuilt on every connect, so a change
       whose events were aborted shows as a scope hash that differs from the committed one). */
    col_group *group;
    int64_t group_due_ms; /* next read of the group's change stamp */

    /* The position last handed to the pipeline (a syncrepl or DirSync cookie, or an encoded
       col_usn_position). */
    unsigned char *cookie;
    size_t cookie_len;
    bool snapshot_complete;
    Certsync__V1__EmitReason emit_reason; /* for upserts: snapshot, resync or change */

    /* syncrepl: removals that carry only an id wait for the cookie that covers them (its CSN is newer than
       the deleted entry's, so the removal's lifecycle stamp orders after every earlier state). */
    char **pending_rm;
    col_removal_reason *pending_why; /* per pending_rm: DELETED, or OUT_OF_SCOPE (syncrepl_removal_reason) */
    size_t n_pending_rm;
    bool sweep_due; /* a present phase ended: sweep at the next cookie */

    bool kafka_failed; /* the last error came from the pipeline, not the directory */
    bool interrupted;  /* the stop flag cut a snapshot short */
    atomic_bool live, ready;
    atomic_bool commit_pending; /* a Kafka commit is being resumed (not ready meanwhile) */

    cs_counter *m_reconnects;
    cs_counter *m_upserts, *m_removals;
    cs_metric *f_problems;
    cs_metric *f_full;
    cs_counter *m_policy[CS_POLICY_RULE_COUNT]; /* refusals the policy reports, by rule */
    cs_gauge *m_last_commit;
    cs_gauge *m_lag;
    cs_gauge *m_active; /* 1 active, 0 standby (election) */
} svc;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool stopping(const svc *s)
{
    /* A lost election lease stops production like a signal, but exits COL_SERVICE_EXIT_LEASE_LOST. */
    return *s->o->stop_flag != 0 || s->kafka_rotated || col_election_lost(s->elect);
}

/*
 * Compares the secret files (every CS_SECRET_POLL_MS, at once after SIGHUP). A new LDAP password ends the
 * tracking step with a retriable error so the loop commits, reconnects and resumes from its position with
 * the new bind at once: a wrong new password shows now, not at the next outage. A new Kafka credential
 * stops the service cleanly: librdkafka cannot change sasl.password on a live client, and a new
 * transactional producer inside the same process would need the whole pipeline rebuilt; a restart
 * resumes from the committed checkpoint, the tested exactly-once path.
 */
static cs_err *watch_secrets(svc *s)
{
    unsigned changed = cs_secret_watch_poll(s->secrets, false);
    if ((changed & SECRET_KAFKA) && !s->kafka_rotated) {
        s->kafka_rotated = true;
        cs_log(CS_LOG_WARN, FACILITY,
               "a Kafka credential file changed: librdkafka cannot change a credential on a live client, so "
               "the collector commits the open batch and exits with code %d for Kubernetes to restart it "
               "with the new credential",
               COL_SERVICE_EXIT_RESTART);
    }
    if ((changed & SECRET_LDAP) && s->ldap != NULL) {
        s->rebind_due = true;
        return cs_err_new(CS_ERR_LDAP, CS_ERR_F_RETRIABLE,
                          "ldap.password_file changed: reconnecting with the new password");
    }
    return NULL;
}

/* Waits up to `ms`, in slices so the stop flag is seen within 100 ms, keeping the batch timer served. */
static cs_err *idle_wait(svc *s, long long ms)
{
    int64_t end = now_ms() + ms;
    while (!stopping(s)) {
        int64_t left = end - now_ms();
        if (left <= 0)
            break;
        long long slice = left < 100 ? left : 100;
        long long due = s->pipe ? col_pipeline_next_due_ms(s->pipe) : -1;
        if (due >= 0 && due < slice)
            slice = due;
        struct timespec ts = {.tv_sec = (time_t)(slice / 1000), .tv_nsec = (long)(slice % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (s->pipe) {
            cs_err *err = col_pipeline_poll(s->pipe);
            if (err) {
                s->kafka_failed = true;
                return err;
            }
        }
    }
    return NULL;
}

/* ---- metrics and admin ----------------------------------------------------------------------------- */

static cs_err *check_live(void *arg)
{
    svc *s = arg;
    return atomic_load(&s->live) ? NULL : cs_err_new(CS_ERR_STATE, 0, "the service loop is not running");
}

static cs_err *check_ready(void *arg)
{
    svc *s = arg;
    if (atomic_load(&s->commit_pending))
        return cs_err_new(CS_ERR_STATE, 0, "a Kafka commit is pending: Kafka does not answer");
    return atomic_load(&s->ready)
               ? NULL
               : cs_err_new(CS_ERR_STATE, 0, "checkpoint not loaded or tracking not running");
}

/* certsync_collector_ready, computed at scrape time from the same checks as /readyz. */
static void collect_ready(void *arg, cs_metrics_sink *sink)
{
    svc *s = arg;
    const char *const values[] = {s->cfg->source_id};
    bool ready = !atomic_load(&s->commit_pending) && atomic_load(&s->ready);
    cs_metrics_sink_add(sink, values, ready ? 1 : 0);
}

static cs_err *register_one(svc *s, cs_metric_type type, const char *name, const char *help,
                            const char *const *labels, cs_metric **out)
{
    return cs_metrics_register(
        s->metrics, &(cs_metric_def){.type = type, .name = name, .help = help, .labels = labels}, out);
}

static cs_err *setup_metrics(svc *s)
{
    static const char *const l_src[] = {"source", NULL};
    static const char *const l_kind[] = {"source", "kind", NULL};
    static const char *const l_problem[] = {"source", "problem", NULL};
    static const char *const l_reason[] = {"source", "reason", NULL};
    const char *id = s->cfg->source_id;
    cs_metric *f = NULL;
    cs_err *err = NULL;

    if ((err = cs_metrics_new(&s->metrics)) ||
        (err = cs_metrics_register_process(s->metrics, CS_PROGRAM_VERSION)))
        return err;
    if ((err = cs_metrics_register(s->metrics,
                                   &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                                    .name = "certsync_collector_ready",
                                                    .help =
                                                        "1 when /readyz passes: checkpoint loaded, tracking "
                                                        "running, no Kafka commit pending.",
                                                    .labels = l_src,
                                                    .collect = collect_ready,
                                                    .collect_arg = s},
                                   &f)))
        return err;
    if ((err = register_one(s, CS_METRIC_COUNTER, "certsync_collector_directory_reconnects_total",
                            "Reconnects to the directory after a failure.", l_src, &f)))
        return err;
    s->m_reconnects = cs_metrics_counter_with(f, id);
    if ((err = register_one(s, CS_METRIC_COUNTER, "certsync_collector_directory_events_total",
                            "Changes read from the directory and handed to the pipeline, by kind.", l_kind,
                            &f)))
        return err;
    s->m_upserts = cs_metrics_counter_with(f, id, "upsert");
    s->m_removals = cs_metrics_counter_with(f, id, "removal");
    if ((err = register_one(s, CS_METRIC_COUNTER, "certsync_collector_parse_problems_total",
                            "Certificate value problems found while building events, by kind.", l_problem,
                            &s->f_problems)))
        return err;
    /* Every series exists from the start (at 0), so rate() and the alerts work before the first problem. */
    for (unsigned i = 0; i < certsync__v1__cert_problem__descriptor.n_values; i++) {
        const ProtobufCEnumValue *ev = &certsync__v1__cert_problem__descriptor.values[i];
        if (ev->value != CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_UNSPECIFIED)
            (void)cs_metrics_counter_with(s->f_problems, id, ev->name);
    }
    if ((err = register_one(s, CS_METRIC_COUNTER, "certsync_collector_full_syncs_total",
                            "Full passes over the directory (snapshot or resync), by reason.", l_reason,
                            &s->f_full)))
        return err;
    (void)cs_metrics_counter_with(s->f_full, id, "snapshot");
    (void)cs_metrics_counter_with(s->f_full, id, "resync");
    if ((err = register_one(s, CS_METRIC_GAUGE, "certsync_collector_last_commit_timestamp_seconds",
                            "Unix time of the last committed checkpoint.", l_src, &f)))
        return err;
    s->m_last_commit = cs_metrics_gauge_with(f, id);
    if ((err = register_one(
             s, CS_METRIC_GAUGE, "certsync_collector_directory_lag_seconds",
             "Seconds between a change in the directory and the collector reading it (last change).", l_src,
             &f)))
        return err;
    s->m_lag = cs_metrics_gauge_with(f, id);
    if ((err = register_one(s, CS_METRIC_GAUGE, "certsync_collector_election_active",
                            "1 when this replica won the election (or none is configured), 0 while standby.",
                            l_src, &f)))
        return err;
    s->m_active = cs_metrics_gauge_with(f, id);
    static const char *const l_rule[] = {"source", "rule", NULL};
    if ((err = register_one(
             s, CS_METRIC_COUNTER, "certsync_collector_policy_refusals_total",
             "Certificate values the policy would refuse, by failed rule (reported here, applied "
             "by the publisher; untrusted_issuer and revoked are judged only there).",
             l_rule, &f)))
        return err;
    for (unsigned r = 0; r < CS_POLICY_RULE_COUNT; r++)
        s->m_policy[r] = cs_metrics_counter_with(f, id, cs_policy_rule_name((cs_policy_rule)r));
    return NULL;
}

static void update_commit_gauge(svc *s)
{
    const Certsync__V1__CollectorCheckpoint *cp = col_pipeline_checkpoint(s->pipe);
    if (cp && cp->has_committed_at_ms)
        cs_metrics_gauge_set(s->m_last_commit, (double)cp->committed_at_ms / 1000.0);
}

static void count_problems(svc *s, Certsync__V1__CertificateValue **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < v[i]->n_problems; j++) {
            const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
                &certsync__v1__cert_problem__descriptor, (int)v[i]->problems[j]);
            cs_metrics_counter_inc(
                cs_metrics_counter_with(s->f_problems, s->cfg->source_id, ev ? ev->name : "unknown"));
        }
        for (size_t k = 0; k < v[i]->n_certificates; k++) {
            const Certsync__V1__CertificateSummary *c = v[i]->certificates[k];
            for (size_t j = 0; j < c->n_problems; j++) {
                const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
                    &certsync__v1__cert_problem__descriptor, (int)c->problems[j]);
                cs_metrics_counter_inc(
                    cs_metrics_counter_with(s->f_problems, s->cfg->source_id, ev ? ev->name : "unknown"));
            }
        }
    }
}

/* ---- positions ------------------------------------------------------------------------------------- */

static void scope_hash(const col_config *cfg, char out[CS_SHA256_HEX_LEN])
{
    cs_buf b;
    cs_buf_init(&b, 1u << 20);
    for (size_t i = 0; i < cfg->ldap_base_dn_count; i++) {
        cs_buf_add_str(&b, cfg->ldap_base_dns[i]);
        cs_buf_add_str(&b, "\n");
    }
    cs_buf_printf(&b, "filter=%s\ngroup=%s\n", cfg->ldap_filter ? cfg->ldap_filter : "",
                  cfg->ldap_group_dn ? cfg->ldap_group_dn : "");
    cs_sha256_hex(cs_buf_str(&b), strlen(cs_buf_str(&b)), out);
    cs_buf_free(&b);
}

/* The scope hash with the group's member set: a checkpoint taken with other members forces a resync. */
static void update_scope_sha(svc *s)
{
    char base[CS_SHA256_HEX_LEN], buf[2 * CS_SHA256_HEX_LEN + 16];
    scope_hash(s->cfg, base);
    if (s->group == NULL) {
        memcpy(s->scope_sha, base, sizeof base);
        return;
    }
    snprintf(buf, sizeof buf, "%s\nmembers=%s", base, col_group_members_sha256(s->group));
    cs_sha256_hex(buf, strlen(buf), s->scope_sha);
}

static Certsync__V1__TrackingMode mode_proto(col_ldap_mode m)
{
    switch (m) {
    case COL_LDAP_MODE_DIRSYNC:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_DIRSYNC;
    case COL_LDAP_MODE_USN:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_USN;
    case COL_LDAP_MODE_SYNCREPL:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_SYNCREPL;
    default:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_UNSPECIFIED;
    }
}

static cs_err *keep_cookie(svc *s, const void *ck, size_t len)
{
    unsigned char *c = malloc(len + 1);
    if (c == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory keeping a %zu-byte cookie", len);
    if (len > 0)
        memcpy(c, ck, len);
    free(s->cookie);
    s->cookie = c;
    s->cookie_len = len;
    return NULL;
}

/* Hands the current position to the pipeline: it is written with the next commit. */
static cs_err *set_position(svc *s)
{
    Certsync__V1__CollectorCheckpoint cp = CERTSYNC__V1__COLLECTOR_CHECKPOINT__INIT;
    cp.has_mode = 1;
    cp.mode = mode_proto(s->mode);
    cp.server = (char *)(uintptr_t)col_ldap_server(s->ldap);
    ProtobufCBinaryData bin = {.len = s->cookie_len, .data = s->cookie};
    Certsync__V1__UsnPosition usn = CERTSYNC__V1__USN_POSITION__INIT;
    col_usn_position pos;
    if (s->mode == COL_LDAP_MODE_USN) {
        /* The position is bound to the server that issued the USNs: its name goes into `server`. */
        cs_err *err = col_usn_position_decode(s->cookie, s->cookie_len, &pos);
        if (err)
            return cs_err_wrap(err, "setting the uSNChanged position");
        usn.has_invocation_id = usn.has_highest_committed_usn = 1;
        usn.invocation_id = (ProtobufCBinaryData){.len = sizeof pos.invocation_id, .data = pos.invocation_id};
        usn.highest_committed_usn = pos.highest_committed_usn;
        cp.usn = &usn;
        cp.server = pos.server;
    } else if (s->mode == COL_LDAP_MODE_DIRSYNC) {
        cp.has_dirsync_cookie = 1;
        cp.dirsync_cookie = bin;
    } else {
        cp.has_syncrepl_cookie = 1;
        cp.syncrepl_cookie = bin;
    }
    cp.has_snapshot_complete = 1;
    cp.snapshot_complete = s->snapshot_complete;
    cp.scope_sha256 = s->scope_sha;
    cs_err *err = col_pipeline_set_position(s->pipe, &cp);
    if (err)
        s->kafka_failed = true;
    return err;
}

/* The newest CSN in a syncrepl cookie ("rid=000,csn=A;B"), or "" when it has none. */
static void cookie_csn(const unsigned char *ck, size_t len, char out[CSN_LEN])
{
    char buf[4096];
    out[0] = '\0';
    if (ck == NULL || len == 0)
        return;
    size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    memcpy(buf, ck, n);
    buf[n] = '\0';
    const char *p = strstr(buf, "csn=");
    if (p == NULL)
        return;
    p += 4;
    while (*p) {
        size_t l = strcspn(p, ";,");
        if (l > 0 && l < CSN_LEN && strncmp(p, out, l) > 0) {
            memcpy(out, p, l);
            out[l] = '\0';
        }
        p += l;
        if (*p != ';')
            break;
        p++;
    }
}

/* A CSN for "now" in slapd's format; newer than any entryCSN made before it on a synchronised clock. */
static void now_csn(char out[CSN_LEN])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, CSN_LEN, "%04d%02d%02d%02d%02d%02d.%06ldZ#000000#000#000000", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

/* The lifecycle stamp of removals the collector infers (sweeps, id-only deletes). */
static void inferred_stamp(svc *s, const char *csn, Certsync__V1__AttributeStamp *st, char buf[CSN_LEN])
{
    certsync__v1__attribute_stamp__init(st);
    if (s->mode == COL_LDAP_MODE_SYNCREPL) {
        char now[CSN_LEN];
        now_csn(now);
        snprintf(buf, CSN_LEN, "%s", (csn && strcmp(csn, now) > 0) ? csn : now);
        st->csn = buf;
    } else {
        /* AD: the real stamp of an absent object is unknown; cs_version_next_lifecycle() turns this
           time into the smallest step past each object's last lifecycle stamp. */
        st->has_originating_time = 1;
        st->originating_time = now_ms() / 1000;
    }
}

static void set_lag_from_csn(svc *s, const char *csn)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (csn == NULL || sscanf(csn, "%4d%2d%2d%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                              &tm.tm_min, &tm.tm_sec) != 6)
        return;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    double lag = (double)now_ms() / 1000.0 - (double)timegm(&tm);
    cs_metrics_gauge_set(s->m_lag, lag < 0 ? 0 : lag);
}

static void set_lag_from_stamps(svc *s, const col_object *o)
{
    int64_t t = 0;
    for (int k = COL_STAMP_USER_CERTIFICATE; k <= COL_STAMP_LIFECYCLE; k++) {
        const col_stamp *st = col_object_stamp(o, (col_stamp_kind)k);
        if (st->present && st->originating_time > t)
            t = st->originating_time;
    }
    if (t > 0) {
        double lag = (double)now_ms() / 1000.0 - (double)t;
        cs_metrics_gauge_set(s->m_lag, lag < 0 ? 0 : lag);
    }
}

/* ---- changes into events --------------------------------------------------------------------------- */

static cs_err *submit(svc *s, const Certsync__V1__ChangeEvent *ev)
{
    cs_err *err = col_pipeline_submit(s->pipe, ev);
    if (err)
        s->kafka_failed = true;
    return err;
}

/* A lifecycle stamp set into an event by order_lifecycle(), with the storage its pointers use. */
typedef struct lifecycle_hold {
    Certsync__V1__AttributeStamp st;
    char csn[CSN_LEN];
    uint8_t invocation_id[64];
} lifecycle_hold;

/*
 * Orders scope transitions the directory does not stamp (design.md, "Versions cover the lifecycle"). Leaving
 * scope (a group or filter change) and re-entering it stamp nothing on the object: its own version equals
 * (or is older than) the one already emitted, and the index and the publisher's version gate would drop the
 * event. So when the event flips the object's state (an upsert after a removal, a removal after an upsert)
 * and its version is not newer than the last one emitted, its lifecycle stamp becomes the smallest step
 * past the last one (cs_version_next_lifecycle; OpenLDAP: the newer of the cookie's CSN and now, AD: the
 * last lifecycle version with the later of now and the last time + 1). An upsert of an object in scope
 * carries the last emitted lifecycle stamp forward when that one is newer than its own, so a certificate
 * change after a re-entry orders as newer, not as diverged. The stamp set into ev->version->lifecycle lives
 * in *h; *saved gets the event's own, which the caller puts back before freeing the event.
 */
static cs_err *order_lifecycle(svc *s, Certsync__V1__ChangeEvent *ev, lifecycle_hold *h,
                               Certsync__V1__AttributeStamp **saved)
{
    Certsync__V1__Version *last = NULL;
    bool removed = false, up = ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    cs_err *err = NULL;

    *saved = ev->version ? ev->version->lifecycle : NULL;
    if (ev->version == NULL || ev->identity == NULL || ev->identity->object_id == NULL)
        return NULL;
    if ((err = col_pipeline_lookup_version(s->pipe, ev->identity->object_id, &last, &removed)) ||
        last == NULL)
        return err;
    if (up == removed && cs_version_compare(ev->version, last) != CS_VERSION_NEWER) {
        Certsync__V1__AttributeStamp proposed;
        char csn[CSN_LEN];
        cookie_csn(s->cookie, s->cookie_len, csn);
        inferred_stamp(s, csn, &proposed, h->csn); /* proposed.csn (if any) points into h->csn */
        cs_version_next_lifecycle(last, &proposed, &h->st);
        ev->version->lifecycle = &h->st;
        cs_log_kv(CS_LOG_INFO, FACILITY,
                  up ? "object re-enters scope: lifecycle stamp past its removal"
                     : "object leaves scope: lifecycle stamp past its last state",
                  "object_id", ev->identity->object_id, NULL);
    } else if (up && !removed && last->lifecycle &&
               cs_version_stamp_compare(last->lifecycle, ev->version->lifecycle) > 0) {
        const Certsync__V1__AttributeStamp *l = last->lifecycle;
        certsync__v1__attribute_stamp__init(&h->st); /* not the unpacked base: no unknown fields */
        h->st.has_version = l->has_version;
        h->st.version = l->version;
        h->st.has_originating_time = l->has_originating_time;
        h->st.originating_time = l->originating_time;
        h->st.has_originating_invocation_id = l->has_originating_invocation_id;
        h->st.originating_invocation_id = l->originating_invocation_id;
        h->st.has_originating_usn = l->has_originating_usn;
        h->st.originating_usn = l->originating_usn;
        h->st.csn = l->csn;
        if (h->st.csn) {
            snprintf(h->csn, sizeof h->csn, "%s", h->st.csn);
            h->st.csn = h->csn;
        }
        ev->version->lifecycle = &h->st;
    }
    /* Pointers into `last` (freed below) are copied into *h. */
    if (ev->version->lifecycle == &h->st && h->st.originating_invocation_id.len > 0 &&
        h->st.originating_invocation_id.data != NULL) {
        size_t n = h->st.originating_invocation_id.len;
        if (n > sizeof h->invocation_id)
            n = sizeof h->invocation_id;
        memcpy(h->invocation_id, h->st.originating_invocation_id.data, n);
        h->st.originating_invocation_id.data = h->invocation_id;
        h->st.originating_invocation_id.len = n;
    }
    certsync__v1__version__free_unpacked(last, NULL);
    return NULL;
}

static cs_err *submit_object(svc *s, const col_change *ch)
{
    bool up = ch->kind == COL_CHANGE_UPSERT;
    col_source_info src = s->src;
    Certsync__V1__ChangeEvent *ev = NULL;
    const col_object *o = ch->object;
    cs_err *err = NULL;

    if (col_object_dn(o) != NULL)
        src.naming_context = col_ldap_naming_context_of(s->ldap, col_object_dn(o));
    err = col_event_build(
        o, &src,
        up ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL,
        ch->reason == COL_REMOVAL_OUT_OF_SCOPE ? CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_OUT_OF_SCOPE
                                               : CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_DELETED,
        up ? s->emit_reason : CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE, now_ms(), &ev);
    if (err)
        return err;
    lifecycle_hold life;
    Certsync__V1__AttributeStamp *own_life = NULL;
    if ((err = order_lifecycle(s, ev, &life, &own_life))) {
        col_event_free(ev);
        return err;
    }
    if (up) {
        count_problems(s, ev->user_certificate, ev->n_user_certificate);
        count_problems(s, ev->user_smime_certificate, ev->n_user_smime_certificate);
    }
    if (s->emit_reason == CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE) {
        if (col_object_entry_csn(o))
            set_lag_from_csn(s, col_object_entry_csn(o));
        else
            set_lag_from_stamps(s, o);
    }
    cs_metrics_counter_inc(up ? s->m_upserts : s->m_removals);
    err = submit(s, ev);
    if (ev->version)
        ev->version->lifecycle = own_life; /* `life` is on the stack: the event frees only its own */
    col_event_free(ev);
    return err;
}

/* An id-only removal: the last emitted version with the inferred lifecycle stamp. */
static cs_err *submit_id_removal(svc *s, const char *object_id, const char *csn, col_removal_reason why)
{
    Certsync__V1__Version *last = NULL;
    char buf[CSN_LEN];
    cs_err *err = col_pipeline_last_version(s->pipe, object_id, &last);
    if (err || last == NULL)
        return err; /* never emitted or already removed: nothing to take back */
    Certsync__V1__AttributeStamp st;
    Certsync__V1__AttributeStamp proposed;
    inferred_stamp(s, csn, &proposed, buf);
    cs_version_next_lifecycle(last, &proposed, &st);
    Certsync__V1__Version ver = *last;
    ver.lifecycle = &st;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    src.source_id = (char *)(uintptr_t)s->cfg->source_id;
    src.site = (char *)(uintptr_t)s->cfg->source_site;
    src.server = (char *)(uintptr_t)col_ldap_server(s->ldap);
    src.has_mode = 1;
    src.mode = mode_proto(s->mode);
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    id.object_id = (char *)(uintptr_t)object_id;
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    ev.has_kind = ev.has_removal_reason = ev.has_emit_reason = ev.has_observed_at_ms = 1;
    ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    ev.removal_reason = why == COL_REMOVAL_OUT_OF_SCOPE
                            ? CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_OUT_OF_SCOPE
                            : CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_DELETED;
    ev.emit_reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE;
    ev.observed_at_ms = now_ms();
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    cs_metrics_counter_inc(s->m_removals);
    err = submit(s, &ev);
    certsync__v1__version__free_unpacked(last, NULL);
    return err;
}

static void pending_clear(svc *s)
{
    for (size_t i = 0; i < s->n_pending_rm; i++)
        free(s->pending_rm[i]);
    free(s->pending_rm);
    free(s->pending_why);
    s->pending_rm = NULL;
    s->pending_why = NULL;
    s->n_pending_rm = 0;
    s->sweep_due = false;
}

/* Submits what waited for a cookie: id-only removals and a present-phase sweep, stamped with `csn`. */
static cs_err *settle_pending(svc *s, const char *csn)
{
    cs_err *err = NULL;
    for (size_t i = 0; err == NULL && i < s->n_pending_rm; i++)
        err = submit_id_removal(s, s->pending_rm[i], csn, s->pending_why[i]);
    if (err == NULL && s->sweep_due && col_pipeline_sweep_open(s->pipe)) {
        Certsync__V1__AttributeStamp st;
        char buf[CSN_LEN];
        size_t n = 0;
        inferred_stamp(s, csn, &st, buf);
        err = col_pipeline_sweep_end(s->pipe, NULL, &st, &n);
        if (err)
            s->kafka_failed = true;
        else
            cs_log(CS_LOG_INFO, FACILITY, "present phase ended: %zu objects absent, removed", n);
    }
    if (err == NULL)
        pending_clear(s);
    return err;
}

static cs_err *queue_id_removal(svc *s, const char *id, col_removal_reason why)
{
    if (s->n_pending_rm >= COL_SERVICE_MAX_PENDING_REMOVALS) {
        char csn[CSN_LEN];
        cookie_csn(s->cookie, s->cookie_len, csn);
        cs_err *err = settle_pending(s, csn);
        if (err)
            return err;
    }
    char **n = realloc(s->pending_rm, (s->n_pending_rm + 1) * sizeof *n);
    if (n == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory queueing a removal");
    s->pending_rm = n;
    col_removal_reason *w = realloc(s->pending_why, (s->n_pending_rm + 1) * sizeof *w);
    if (w == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory queueing a removal");
    s->pending_why = w;
    w[s->n_pending_rm] = why;
    if ((n[s->n_pending_rm] = strdup(id)) == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory queueing a removal");
    s->n_pending_rm++;
    return NULL;
}

/*
 * An AD object that changed but no longer matches ldap.filter, reported by col_dirsync / col_usn with its id
 * and DN only. Most such reports are objects that never were in scope: one index lookup each, no read. One
 * emitted and not removed is read again (any class) for its identity and stamps and leaves scope with an
 * OUT_OF_SCOPE removal, which order_lifecycle() stamps past its last state. Gone meanwhile: a removal by
 * id (its tombstone may not match the tracking filter, so it might never be reported otherwise).
 */
static cs_err *left_filter(svc *s, const col_object *o)
{
    Certsync__V1__Version *last = NULL;
    col_object *full = NULL;
    char base[COL_GUID_STR_LEN + 16];
    cs_err *err = col_pipeline_last_version(s->pipe, col_object_id(o), &last);

    if (err != NULL || last == NULL)
        return err;
    certsync__v1__version__free_unpacked(last, NULL);
    snprintf(base, sizeof base, "<GUID=%s>", col_object_id(o));
    if ((err = col_group_read_object(s->ldap, base, "(objectClass=*)", &full)))
        return err;
    if (full == NULL) {
        err = submit_id_removal(s, col_object_id(o), NULL, COL_REMOVAL_DELETED);
    } else {
        col_change out = {.kind = COL_CHANGE_REMOVAL, .object = full, .reason = COL_REMOVAL_OUT_OF_SCOPE};
        cs_log_kv(CS_LOG_INFO, FACILITY, "object no longer matches ldap.filter: out of scope", "object_id",
                  col_object_id(o), "dn", col_object_dn(full), NULL);
        err = submit_object(s, &out);
    }
    col_object_free(full);
    return err;
}

/*
 * syncrepl sends an entry that stops matching the search (an attribute change against ldap.filter, a move
 * out of the base DN) as a delete, exactly like a deletion (RFC 4533). An entry whose entryUUID still
 * exists in the naming context has left scope: OUT_OF_SCOPE. One search by entryUUID (indexed wherever
 * syncrepl runs) per delete message; ids from a syncIdSet carry no DN and stay DELETED (a refresh may list
 * thousands). A failed search keeps DELETED: the removal itself is right either way.
 */
static col_removal_reason syncrepl_removal_reason(svc *s, const col_change *ch)
{
    static const char *const attrs[] = {"1.1", NULL};
    const col_object *o = ch->object;
    const char *nc = NULL;
    char filter[COL_GUID_STR_LEN + 16];
    LDAPMessage *res = NULL;
    long long ms = col_ldap_timeout_ms(s->ldap);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    col_removal_reason why = ch->reason;
    int rc;

    if (s->mode != COL_LDAP_MODE_SYNCREPL || ch->reason != COL_REMOVAL_DELETED || col_object_dn(o) == NULL ||
        col_object_id(o) == NULL)
        return why;
    nc = col_ldap_naming_context_of(s->ldap, col_object_dn(o));
    if (nc == NULL)
        nc = s->cfg->ldap_base_dns[0];
    snprintf(filter, sizeof filter, "(entryUUID=%s)", col_object_id(o));
    rc = ldap_search_ext_s(col_ldap_handle(s->ldap), nc, LDAP_SCOPE_SUBTREE, filter, col_ldap_attrs(attrs), 0,
                           NULL, NULL, &tv, 1, &res);
    if (rc == LDAP_SUCCESS && ldap_first_entry(col_ldap_handle(s->ldap), res) != NULL)
        why = COL_REMOVAL_OUT_OF_SCOPE;
    else if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT)
        cs_log_kv(CS_LOG_WARN, FACILITY,
                  "cannot tell a syncrepl delete from leaving scope: reported as deleted", "object_id",
                  col_object_id(o), "error", ldap_err2string(rc), NULL);
    ldap_msgfree(res);
    return why;
}

static cs_err *on_change(void *ctx, const col_change *ch)
{
    svc *s = ctx;
    cs_err *err = NULL;
    const col_object *o = ch->object;

    switch (ch->kind) {
    case COL_CHANGE_UPSERT:
        if (stopping(s) && s->emit_reason != CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE) {
            s->interrupted = true;
            return cs_err_new(CS_ERR_STATE, 0, "stopping: snapshot interrupted");
        }
        if (s->group != NULL && !col_group_is_member(s->group, col_object_dn(o))) {
            /* Not a direct member (OpenLDAP has no memberOf to filter on; on AD a back link may lag): out of
               scope. A removal of an object never emitted is dropped by the pipeline. */
            col_change out = {.kind = COL_CHANGE_REMOVAL, .object = o, .reason = COL_REMOVAL_OUT_OF_SCOPE};
            return submit_object(s, &out);
        }
        return submit_object(s, ch);
    case COL_CHANGE_REMOVAL:
        if (ch->reason == COL_REMOVAL_OUT_OF_SCOPE && s->mode != COL_LDAP_MODE_SYNCREPL &&
            col_object_entry_csn(o) == NULL && !col_object_stamp(o, COL_STAMP_LIFECYCLE)->present)
            return left_filter(s, o);
        /* syncrepl sends deletes (and entries leaving scope) as a DN and syncUUID without attributes, and a
           vanished AD tombstone has no metadata either: no stamp orders the removal yet. */
        if (col_object_entry_csn(o) == NULL && !col_object_stamp(o, COL_STAMP_LIFECYCLE)->present)
            return queue_id_removal(s, col_object_id(o), syncrepl_removal_reason(s, ch));
        return submit_object(s, ch);
    case COL_CHANGE_PRESENT:
        col_pipeline_sweep_mark(s->pipe, col_object_id(o));
        return NULL;
    case COL_CHANGE_COOKIE: {
        char csn[CSN_LEN];
        cookie_csn(ch->cookie, ch->cookie_len, csn);
        if ((err = settle_pending(s, csn)))
            return err;
        if ((err = keep_cookie(s, ch->cookie, ch->cookie_len)))
            return err;
        if (s->emit_reason != CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE)
            return NULL; /* the snapshot's position is set when the snapshot completes */
        return set_position(s);
    }
    case COL_CHANGE_REFRESH_BEGIN:
        if (!col_pipeline_sweep_open(s->pipe)) {
            err = col_pipeline_sweep_begin(s->pipe);
            if (err)
                s->kafka_failed = true;
        }
        return err;
    case COL_CHANGE_REFRESH_DONE:
        if (ch->sweep)
            s->sweep_due = true;
        else if (!s->sweep_due)
            col_pipeline_sweep_cancel(s->pipe);
        return NULL;
    }
    return NULL;
}

/* ---- the full pass --------------------------------------------------------------------------------- */

/* The DirSync flags: object security (ldap.dirsync_object_security) when the account lacks the right. */
static int dirsync_flags(const svc *s)
{
    return s->cfg->ldap_dirsync_object_security ? LDAP_CONTROL_X_DIRSYNC_OBJECT_SECURITY : 0;
}

static cs_err *take_position(svc *s)
{
    cs_err *err = NULL;
    if (s->mode == COL_LDAP_MODE_SYNCREPL) {
        void *ck = NULL;
        size_t n = 0;
        err = col_syncrepl_position(s->ldap, s->cfg->ldap_base_dns[0], &ck, &n);
        if (err == NULL)
            err = keep_cookie(s, ck, n);
        free(ck);
        return err;
    }
    if (s->mode == COL_LDAP_MODE_USN) {
        unsigned char enc[COL_USN_POSITION_MAX_ENCODED];
        col_usn_free(s->usn);
        s->usn = NULL;
        err =
            col_usn_new(s->ldap, s->filter, s->cfg->ldap_base_dns, s->cfg->ldap_base_dn_count, NULL, &s->usn);
        if (err == NULL)
            err = col_usn_skip_to_end(s->usn);
        if (err == NULL)
            err = keep_cookie(s, enc, col_usn_position_encode(col_usn_get_position(s->usn), enc));
        return err;
    }
    col_dirsync_free(s->ds);
    s->ds = NULL;
    err = col_dirsync_new(s->ldap, s->nc_root, s->filter, dirsync_flags(s), NULL, 0, &s->ds);
    if (err == NULL)
        err = col_dirsync_skip_to_end(s->ds);
    if (err == NULL) {
        size_t n = 0;
        const void *ck = col_dirsync_cookie(s->ds, &n);
        err = keep_cookie(s, ck, n);
    }
    return err;
}

/* Position first, then the snapshot in a removal sweep, then the checkpoint with snapshot_complete. */
static cs_err *full_pass(svc *s, Certsync__V1__EmitReason reason)
{
    const char *why = reason == CERTSYNC__V1__EMIT_REASON__EMIT_REASON_RESYNC ? "resync" : "snapshot";
    size_t n = 0, skipped = 0, removed = 0;
    cs_err *err = NULL;
    int64_t t0 = now_ms();

    col_syncrepl_free(s->sync);
    s->sync = NULL;
    pending_clear(s);
    col_pipeline_sweep_cancel(s->pipe);
    if ((err = take_position(s)))
        return cs_err_wrap(err, "taking the position before the %s", why);
    cs_log_kv(CS_LOG_INFO, FACILITY, "full pass started: position taken", "reason", why, "mode",
              col_ldap_mode_name(s->mode), NULL);
    cs_metrics_counter_inc(cs_metrics_counter_with(s->f_full, s->cfg->source_id, why));
    s->snapshot_complete = false;
    s->emit_reason = reason;
    if ((err = set_position(s)))
        goto cleanup;
    if ((err = col_pipeline_sweep_begin(s->pipe))) {
        s->kafka_failed = true;
        goto cleanup;
    }
    if (s->cfg->batch_max_events < COL_SERVICE_FULL_PASS_BATCH_EVENTS)
        col_pipeline_set_batch_max_events(s->pipe, COL_SERVICE_FULL_PASS_BATCH_EVENTS);
    err = col_snapshot_run(s->ldap, s->cfg->ldap_base_dns, s->cfg->ldap_base_dn_count, s->filter, on_change,
                           s, &n, &skipped);
    if (err)
        goto cleanup;
    Certsync__V1__AttributeStamp st;
    char buf[CSN_LEN], csn[CSN_LEN];
    cookie_csn(s->cookie, s->cookie_len, csn);
    inferred_stamp(s, csn, &st, buf);
    if ((err = col_pipeline_sweep_end(s->pipe, NULL, &st, &removed))) {
        s->kafka_failed = true;
        goto cleanup;
    }
    s->snapshot_complete = true;
    if ((err = set_position(s)))
        goto cleanup;
    if ((err = col_pipeline_flush(s->pipe))) {
        s->kafka_failed = true;
        goto cleanup;
    }
    update_commit_gauge(s);
    cs_log(CS_LOG_INFO, FACILITY, "full pass (%s) committed: %zu objects, %zu skipped, %zu removed, %lld ms",
           why, n, skipped, removed, (long long)(now_ms() - t0));
cleanup:
    s->emit_reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE;
    col_pipeline_set_batch_max_events(s->pipe, 0); /* tracking: batch.max_events again */
    if (err)
        col_pipeline_sweep_cancel(s->pipe);
    return err;
}

/* ---- incremental tracking -------------------------------------------------------------------------- */

static long long step_wait(const svc *s)
{
    long long due = col_pipeline_next_due_ms(s->pipe);
    if (due >= 0 && due < COL_SERVICE_STEP_WAIT_MS)
        return due;
    return COL_SERVICE_STEP_WAIT_MS;
}

/* True when `dn` lies under one of ldap.base_dns. */
static bool under_base(const svc *s, const char *dn)
{
    for (size_t i = 0; i < s->cfg->ldap_base_dn_count; i++)
        if (col_ldap_dn_is_under(dn, s->cfg->ldap_base_dns[i]))
            return true;
    return false;
}

/*
 * ldap.group_dn: reads the group's change stamp every ldap.poll_interval and, when members joined or left,
 * emits an upsert for each joined member that is under the base DNs and matches the filter (entering
 * scope) and an OUT_OF_SCOPE removal for each member that left (order_lifecycle() stamps both past the last
 * emitted state), then hands the position on with the new scope hash, so the events and the member set
 * that explains them are committed together.
 */
static cs_err *watch_group(svc *s)
{
    const char *const *dns = NULL;
    bool changed = false;
    cs_err *err = NULL;
    size_t n;

    if (s->group == NULL || now_ms() < s->group_due_ms)
        return NULL;
    s->group_due_ms = now_ms() + s->cfg->ldap_poll_interval_ms;
    if ((err = col_group_refresh(s->group, s->ldap, false, &changed)) || !changed)
        return err;
    n = col_group_joined(s->group, &dns);
    for (size_t i = 0; err == NULL && i < n; i++) {
        col_object *o = NULL;
        if (!under_base(s, dns[i]))
            continue;
        err = col_group_read_object(s->ldap, dns[i], s->filter, &o);
        if (err == NULL && o != NULL) {
            col_change ch = {.kind = COL_CHANGE_UPSERT, .object = o};
            err = submit_object(s, &ch);
        }
        col_object_free(o);
    }
    size_t n_left = col_group_left(s->group, &dns);
    for (size_t i = 0; err == NULL && i < n_left; i++) {
        col_object *o = NULL;
        /* Any object class: the removal needs only the id; one never emitted is dropped. */
        err = col_group_read_object(s->ldap, dns[i], "(objectClass=*)", &o);
        if (err == NULL && o != NULL) {
            col_change ch = {.kind = COL_CHANGE_REMOVAL, .object = o, .reason = COL_REMOVAL_OUT_OF_SCOPE};
            err = submit_object(s, &ch);
        }
        col_object_free(o);
    }
    if (err)
        return err;
    cs_log(CS_LOG_INFO, FACILITY, "group %s changed: %zu joined, %zu left, %zu members, %zu nested groups",
           s->cfg->ldap_group_dn, n, n_left, col_group_count(s->group), col_group_nested_count(s->group));
    update_scope_sha(s);
    return s->cookie != NULL ? set_position(s) : NULL;
}

static cs_err *track_syncrepl(svc *s, stop_cause *cause)
{
    cs_err *err = NULL;
    int64_t last_change = now_ms();

    while (!stopping(s)) {
        size_t n = 0;
        bool ended = false;
        if ((err = watch_secrets(s)))
            return err;
        if (s->sync == NULL) {
            if ((err = col_syncrepl_start_scoped(s->ldap, s->cfg->ldap_base_dns, s->cfg->ldap_base_dn_count,
                                                 s->filter, s->cookie, s->cookie_len, &s->sync)))
                return err;
            atomic_store(&s->ready, true);
        }
        /* Wait for the first message only, then take what is already there: col_syncrepl_step waits up to
           wait_ms for EACH message, so one long step would hold a single change back from the batch timer
           for a whole wait (measured: p50 ~240 ms from ldapmodify to commit). */
        /* --once after the refresh: the refresh's messages all came before its end (one connection, in
           order), so only what is already here is taken; waiting for more would only wait for the persist
           phase (measured: a fixed 200 ms on every --once). */
        bool drain = s->o->once && s->sync != NULL && col_syncrepl_refreshed(s->sync) && s->n_pending_rm == 0;
        if ((err = col_syncrepl_step(s->sync, drain ? 0 : step_wait(s), 1, on_change, s, &n, &ended)))
            return err;
        if (n > 0 && !ended) {
            size_t more = 0;
            err = col_syncrepl_step(s->sync, 0, COL_SERVICE_STEP_MESSAGES, on_change, s, &more, &ended);
            n += more;
            if (err)
                return err;
        }
        if (n > 0)
            last_change = now_ms();
        if ((err = watch_group(s)))
            return err;
        if ((err = col_pipeline_poll(s->pipe))) {
            s->kafka_failed = true;
            return err;
        }
        update_commit_gauge(s);
        if (ended) {
            col_syncrepl_free(s->sync);
            s->sync = NULL;
        }
        /* --once: caught up when the refresh is over and nothing more is already here (after a step
           that waited: nothing arrived for a step's wait). */
        if (s->o->once && s->sync && col_syncrepl_refreshed(s->sync) && n == 0 && s->n_pending_rm == 0 &&
            (drain || now_ms() - last_change >= COL_SERVICE_STEP_WAIT_MS)) {
            *cause = CAUSE_ONCE_DONE;
            return NULL;
        }
    }
    *cause = CAUSE_STOP;
    return NULL;
}

static cs_err *track_dirsync(svc *s, stop_cause *cause)
{
    cs_err *err = NULL;
    while (!stopping(s)) {
        size_t n = 0;
        if (s->ds == NULL && (err = col_dirsync_new(s->ldap, s->nc_root, s->filter, dirsync_flags(s),
                                                    s->cookie, s->cookie_len, &s->ds)))
            return err;
        atomic_store(&s->ready, true);
        if ((err = watch_group(s)))
            return err;
        if ((err = col_dirsync_poll(s->ds, s->cfg->ldap_base_dns, s->cfg->ldap_base_dn_count, on_change, s,
                                    &n)))
            return err;
        if ((err = col_pipeline_poll(s->pipe))) {
            s->kafka_failed = true;
            return err;
        }
        update_commit_gauge(s);
        if (s->o->once) {
            *cause = CAUSE_ONCE_DONE;
            return NULL;
        }
        if ((err = idle_wait(s, s->cfg->ldap_poll_interval_ms)) || (err = watch_secrets(s)))
            return err;
    }
    *cause = CAUSE_STOP;
    return NULL;
}

/* uSNChanged polling: like DirSync, but a position that cannot be resumed (another server, another
   invocationId, a USN that went backwards) is a CS_ERR_STATE: the loop runs a resync with a removal sweep. */
static cs_err *track_usn(svc *s, stop_cause *cause)
{
    cs_err *err = NULL;
    while (!stopping(s)) {
        size_t n = 0;
        bool resync = false;
        if (s->usn == NULL) {
            col_usn_position from;
            if ((err = col_usn_position_decode(s->cookie, s->cookie_len, &from))) {
                /* Never guess a position: an unreadable one means a resync (CS_ERR_STATE). */
                cs_err *e = cs_err_new(CS_ERR_STATE, 0, "the uSNChanged position cannot be read: %s",
                                       cs_err_message(err));
                cs_err_free(err);
                return e;
            }
            if ((err = col_usn_new(s->ldap, s->filter, s->cfg->ldap_base_dns, s->cfg->ldap_base_dn_count,
                                   &from, &s->usn)))
                return err;
        }
        atomic_store(&s->ready, true);
        if ((err = watch_group(s)))
            return err;
        if ((err = col_usn_poll(s->usn, on_change, s, &n, &resync))) {
            if (resync) {
                /* The handle's position is the stale one: the resync takes a new one. */
                col_usn_free(s->usn);
                s->usn = NULL;
            }
            return err;
        }
        if ((err = col_pipeline_poll(s->pipe))) {
            s->kafka_failed = true;
            return err;
        }
        update_commit_gauge(s);
        if (s->o->once) {
            *cause = CAUSE_ONCE_DONE;
            return NULL;
        }
        if ((err = idle_wait(s, s->cfg->ldap_poll_interval_ms)) || (err = watch_secrets(s)))
            return err;
    }
    *cause = CAUSE_STOP;
    return NULL;
}

/* ---- connection ------------------------------------------------------------------------------------ */

static void disconnect(svc *s)
{
    col_syncrepl_free(s->sync);
    s->sync = NULL;
    col_dirsync_free(s->ds);
    s->ds = NULL;
    col_usn_free(s->usn);
    s->usn = NULL;
    col_ldap_free(s->ldap);
    s->ldap = NULL;
    free(s->filter);
    s->filter = NULL;
    col_group_free(s->group);
    s->group = NULL;
    pending_clear(s);
    col_pipeline_sweep_cancel(s->pipe);
    atomic_store(&s->ready, false);
}

static cs_err *connect_dir(svc *s)
{
    /* The password as last read from ldap.password_file (rotations included), not the one read at load. */
    const char *pw = s->cfg->ldap_password ? cs_secret_watch_value(s->secrets, "ldap.password_file") : NULL;
    cs_err *err = col_ldap_connect_as(s->cfg, pw ? pw : s->cfg->ldap_password, &s->ldap);
    if (err == NULL) {
        s->ever_bound = true;
        s->rebind_due = false;
    }
    if (err == NULL)
        err = col_ldap_pick_mode(s->ldap, s->cfg->ldap_mode, &s->mode);
    /* Every base DN in a naming context (col_scope.h). */
    if (err == NULL)
        err = col_scope_check(s->ldap, s->cfg);
    free(s->filter);
    s->filter = NULL;
    /* memberOf narrows the server's answers on AD only; OpenLDAP may lack it (col_group_is_member there). */
    if (err == NULL)
        err = col_scope_filter(col_config_filter(s->cfg, col_ldap_kind(s->ldap) == COL_DIR_AD),
                               col_ldap_kind(s->ldap) == COL_DIR_AD ? s->cfg->ldap_group_dn : NULL,
                               s->cfg->ldap_group_nested, &s->filter);
    /* The member set is read again on every connect: the scope hash then tells need_full_pass() whether
       the members differ from those of the committed checkpoint (changed while down, or aborted). */
    col_group_free(s->group);
    s->group = NULL;
    if (err == NULL && s->cfg->ldap_group_dn != NULL && s->cfg->ldap_group_dn[0] != '\0') {
        bool changed = false;
        err = col_group_new(s->cfg->ldap_group_dn, s->cfg->ldap_group_nested, &s->group);
        if (err == NULL)
            err = col_group_refresh(s->group, s->ldap, true, &changed);
        s->group_due_ms = now_ms() + s->cfg->ldap_poll_interval_ms;
    }
    update_scope_sha(s);
    if (err)
        return err;
    s->nc_root = col_ldap_naming_context_of(s->ldap, s->cfg->ldap_base_dns[0]);
    if (s->nc_root == NULL)
        s->nc_root = col_ldap_default_naming_context(s->ldap);
    s->src = (col_source_info){.source_id = s->cfg->source_id,
                               .site = s->cfg->source_site,
                               .server = col_ldap_server(s->ldap),
                               .directory = col_ldap_kind(s->ldap),
                               .mode = s->mode,
                               .policy = s->cfg->policy,
                               .policy_refusals = s->m_policy};
    if (!s->cfg->ldap_tls_verify)
        cs_log_kv(CS_LOG_WARN, FACILITY,
                  "ldap.tls.verify is false: the directory's certificate is NOT checked (tests only)", "url",
                  s->cfg->ldap_url, NULL);
    cs_log_kv(CS_LOG_INFO, FACILITY, "directory connected", "server", col_ldap_server(s->ldap), "kind",
              col_ldap_kind_name(col_ldap_kind(s->ldap)), "mode", col_ldap_mode_name(s->mode), NULL);
    return NULL;
}

/* Does the committed checkpoint let tracking resume? Sets *reason for a full pass when it does not. */
static bool need_full_pass(svc *s, Certsync__V1__EmitReason *reason)
{
    const Certsync__V1__CollectorCheckpoint *cp = col_pipeline_checkpoint(s->pipe);
    const ProtobufCBinaryData *ck = NULL;

    *reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_SNAPSHOT;
    if (cp == NULL || !cp->snapshot_complete)
        return true;
    ck = s->mode == COL_LDAP_MODE_DIRSYNC ? &cp->dirsync_cookie : &cp->syncrepl_cookie;
    if (cp->mode != mode_proto(s->mode) || (s->mode != COL_LDAP_MODE_USN && ck->len == 0) ||
        !cp->scope_sha256 || strcmp(cp->scope_sha256, s->scope_sha) != 0) {
        cs_log_kv(CS_LOG_WARN, FACILITY,
                  "the checkpoint's mode or scope differs from the config: full resync", NULL);
        *reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_RESYNC;
        return true;
    }
    /* Server failover (design.md): USNs are local to one DC, so a position from another server (or one
       without its server) cannot be resumed here. A changed invocationId on the same server is found by
       the first poll (col_usn_poll reads the rootDSE) and leads to the same resync. */
    if (s->mode == COL_LDAP_MODE_USN &&
        (cp->usn == NULL || !cp->usn->has_highest_committed_usn || cp->usn->invocation_id.len != 16 ||
         cp->server == NULL || strcmp(cp->server, col_ldap_server(s->ldap)) != 0)) {
        cs_log_kv(CS_LOG_WARN, FACILITY,
                  "the uSNChanged checkpoint is bound to another server: full resync with a removal sweep",
                  "checkpoint_server", cp->server ? cp->server : "(none)", "server", col_ldap_server(s->ldap),
                  NULL);
        *reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_RESYNC;
        return true;
    }
    return false;
}

static void on_commit_pending(void *arg, bool pending)
{
    svc *s = arg;
    atomic_store(&s->commit_pending, pending);
}

/* The exit for a stop that came while a commit was pending (Kafka unavailable); logs why. */
static int exit_commit_pending(svc *s, const cs_err *err)
{
    cs_log_kv(CS_LOG_WARN, FACILITY,
              "stopped while a Kafka commit was pending: nothing new committed; the next start resumes from "
              "the committed checkpoint; exiting with code 4",
              "source", s->cfg->source_id, "error", cs_err_message(err), NULL);
    return COL_SERVICE_EXIT_COMMIT_PENDING;
}

/* Retries the pending commit of a retriable Kafka failure with backoff; fenced or fatal ends the service. */
static int kafka_recover(svc *s, cs_err *err, long long *backoff)
{
    if (cs_kafka_producer_is_commit_pending(err))
        return exit_commit_pending(s, err);
    if (col_pipeline_is_fenced(s->pipe) || (cs_err_flags(err) & CS_KAFKA_ERR_F_FENCED)) {
        cs_log_kv(CS_LOG_ERROR, FACILITY,
                  "fenced: a newer collector with the same source.id took over; exiting with code 3",
                  "source", s->cfg->source_id, "error", cs_err_message(err), NULL);
        return COL_SERVICE_EXIT_FENCED;
    }
    if (!cs_err_is_retriable(err) || cs_err_is_fatal(err)) {
        cs_log_kv(CS_LOG_ERROR, FACILITY, "Kafka error: stopping", "error", cs_err_message(err), NULL);
        return COL_SERVICE_EXIT_FAIL;
    }
    cs_log_kv(CS_LOG_WARN, FACILITY, "Kafka unavailable: keeping the position and retrying", "error",
              cs_err_message(err), NULL);
    while (!stopping(s)) {
        cs_err_free(idle_wait(s, *backoff));
        *backoff = *backoff * 2 > COL_SERVICE_BACKOFF_MAX_MS ? COL_SERVICE_BACKOFF_MAX_MS : *backoff * 2;
        cs_err *e = col_pipeline_flush(s->pipe);
        if (e == NULL)
            return -1;
        if (col_pipeline_is_fenced(s->pipe) || !cs_err_is_retriable(e)) {
            int rc = kafka_recover(s, e, backoff);
            cs_err_free(e);
            return rc;
        }
        cs_log_kv(CS_LOG_WARN, FACILITY, "Kafka still unavailable", "error", cs_err_message(e), NULL);
        cs_err_free(e);
    }
    return -1;
}

/* Resumes from the committed checkpoint (after a Kafka failure the tracker may be ahead of it). */
static cs_err *resume_from_committed(svc *s)
{
    const Certsync__V1__CollectorCheckpoint *cp = col_pipeline_checkpoint(s->pipe);
    if (cp == NULL)
        return NULL;
    const ProtobufCBinaryData *ck = cp->has_dirsync_cookie ? &cp->dirsync_cookie : &cp->syncrepl_cookie;
    s->snapshot_complete = cp->snapshot_complete;
    if (cp->usn != NULL) {
        /* Rebuild col_usn's encoding from UsnPosition + server; a malformed one is caught by track_usn. */
        col_usn_position pos;
        unsigned char enc[COL_USN_POSITION_MAX_ENCODED];
        memset(&pos, 0, sizeof pos);
        snprintf(pos.server, sizeof pos.server, "%s", cp->server ? cp->server : "");
        if (cp->usn->invocation_id.len == sizeof pos.invocation_id)
            memcpy(pos.invocation_id, cp->usn->invocation_id.data, sizeof pos.invocation_id);
        pos.highest_committed_usn = cp->usn->highest_committed_usn;
        col_usn_free(s->usn);
        s->usn = NULL;
        return keep_cookie(s, enc, col_usn_position_encode(&pos, enc));
    }
    return keep_cookie(s, ck->data, ck->len);
}

static bool stopping_by_signal(const svc *s)
{
    return *s->o->stop_flag != 0;
}

/* ---- the loop -------------------------------------------------------------------------------------- */

static int release_held(svc *s)
{
    size_t n = 0;
    size_t before = col_pipeline_held_count(s->pipe);
    cs_err *err = col_pipeline_release_held(s->pipe, s->o->release_key, &n);
    if (err) {
        cs_log_kv(CS_LOG_ERROR, FACILITY, "releasing held events failed", "error", cs_err_message(err), NULL);
        cs_err_free(err);
        return COL_SERVICE_EXIT_FAIL;
    }
    cs_log(CS_LOG_INFO, FACILITY, "released %zu of %zu held events (%s)", n, before,
           s->o->release_key ? s->o->release_key : "all");
    return COL_SERVICE_EXIT_OK;
}

static int loop(svc *s)
{
    long long backoff = COL_SERVICE_BACKOFF_MIN_MS;
    bool force_resync = false;
    cs_err *err = NULL;
    int rc = -1;

    while (rc < 0 && !stopping(s)) {
        stop_cause cause = CAUSE_NONE;
        Certsync__V1__EmitReason reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_SNAPSHOT;

        s->kafka_failed = false;
        if (s->ldap == NULL) {
            err = connect_dir(s);
            if (err == NULL)
                backoff = COL_SERVICE_BACKOFF_MIN_MS;
        }
        if (err == NULL && (force_resync || need_full_pass(s, &reason))) {
            if (force_resync)
                reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_RESYNC;
            force_resync = false;
            err = full_pass(s, reason);
        } else if (err == NULL && s->cookie == NULL) {
            err = resume_from_committed(s);
            if (err == NULL)
                cs_log(CS_LOG_INFO, FACILITY, "resuming from the checkpoint: no snapshot");
        }
        if (err == NULL)
            err = s->mode == COL_LDAP_MODE_DIRSYNC ? track_dirsync(s, &cause)
                  : s->mode == COL_LDAP_MODE_USN   ? track_usn(s, &cause)
                                                   : track_syncrepl(s, &cause);
        if (err == NULL) {
            if (cause == CAUSE_ONCE_DONE || cause == CAUSE_STOP)
                rc = COL_SERVICE_EXIT_OK;
            continue;
        }
        if (cs_kafka_producer_is_commit_pending(err)) {
            rc = exit_commit_pending(s, err);
        } else if (s->interrupted && stopping(s)) {
            rc = COL_SERVICE_EXIT_OK;
        } else if (s->kafka_failed || col_pipeline_is_fenced(s->pipe)) {
            rc = kafka_recover(s, err, &backoff);
            if (rc < 0) {
                /* Committed now: drop the directory side and resume from what Kafka has. */
                disconnect(s);
                cs_err_free(resume_from_committed(s));
            }
        } else if (cs_err_code_of(err) == CS_ERR_STATE) {
            cs_log_kv(CS_LOG_WARN, FACILITY,
                      "the position cannot be resumed: full resync with a removal sweep", "error",
                      cs_err_message(err), NULL);
            force_resync = true;
        } else if (s->ldap == NULL && (cs_err_flags(err) & COL_LDAP_ERR_F_BAD_CREDENTIALS) &&
                   (cs_secret_watch_poll(s->secrets, true) & SECRET_LDAP)) {
            /* The file changed since the last read (a rotation landed between two polls): bind again now. */
            cs_log(CS_LOG_WARN, FACILITY,
                   "bind refused with invalidCredentials; ldap.password_file changed: binding again with the "
                   "new password");
        } else if (s->ldap == NULL && (cs_err_flags(err) & COL_LDAP_ERR_F_BAD_CREDENTIALS) && s->ever_bound &&
                   !s->kafka_rotated) {
            /* The directory's password changed first and the mounted Secret follows within a minute or so:
               wait for the file (read every attempt) instead of stopping a service that worked. */
            cs_log(
                CS_LOG_WARN, FACILITY,
                "bind refused with invalidCredentials after a rotation: retrying in %lld ms and re-reading "
                "ldap.password_file; update the file (the Kubernetes Secret) to the directory's new "
                "password: %s",
                backoff, cs_err_message(err));
            cs_err_free(idle_wait(s, backoff));
            backoff = backoff * 2 > COL_SERVICE_BACKOFF_MAX_MS ? COL_SERVICE_BACKOFF_MAX_MS : backoff * 2;
            cs_secret_watch_poll(s->secrets, true);
        } else if (cs_err_is_retriable(err)) {
            bool rotated = s->rebind_due;
            s->rebind_due = false;
            if (rotated) {
                cs_log(CS_LOG_INFO, FACILITY,
                       "reconnecting to the directory with the new ldap.password_file");
            } else {
                cs_log(CS_LOG_WARN, FACILITY, "directory unavailable: reconnecting in %lld ms: %s", backoff,
                       cs_err_message(err));
                cs_metrics_counter_inc(s->m_reconnects);
            }
            disconnect(s);
            /* Commit what was read before the failure, with the position that covers it. */
            cs_err *e = col_pipeline_flush(s->pipe);
            if (e) {
                s->kafka_failed = true;
                rc = kafka_recover(s, e, &backoff);
                cs_err_free(e);
            }
            if (rc < 0 && !rotated) {
                cs_err_free(idle_wait(s, backoff));
                backoff = backoff * 2 > COL_SERVICE_BACKOFF_MAX_MS ? COL_SERVICE_BACKOFF_MAX_MS : backoff * 2;
                cs_secret_watch_poll(s->secrets,
                                     false); /* a Kafka rotation is seen while the directory is down */
            }
        } else {
            cs_log_kv(CS_LOG_ERROR, FACILITY, "stopping", "error", cs_err_message(err), NULL);
            rc = COL_SERVICE_EXIT_FAIL;
        }
        cs_err_free(err);
        err = NULL;
    }
    if ((rc < 0 || rc == COL_SERVICE_EXIT_OK) && s->kafka_rotated && !stopping_by_signal(s)) {
        cs_log(CS_LOG_WARN, FACILITY,
               "restart required: a Kafka credential file changed; exiting with code %d after the last "
               "commit (Kubernetes restarts the container, which resumes from the checkpoint)",
               COL_SERVICE_EXIT_RESTART);
        return COL_SERVICE_EXIT_RESTART;
    }
    return rc < 0 ? COL_SERVICE_EXIT_OK : rc;
}

int col_service_run(const col_config *cfg, const col_service_opts *opts)
{
    svc s;
    rd_kafka_conf_t *conf = NULL;
    cs_err *err = NULL;
    int rc = COL_SERVICE_EXIT_FAIL;
    long long backoff = COL_SERVICE_BACKOFF_MIN_MS;

    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    s.o = opts;
    s.emit_reason = CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE;
    atomic_init(&s.live, false);
    atomic_init(&s.ready, false);
    atomic_init(&s.commit_pending, false);
    scope_hash(cfg, s.scope_sha);

    if ((err = setup_metrics(&s)))
        goto cleanup;
    if ((err = cs_secret_watch_new(&s.secrets)) ||
        (cfg->ldap_password != NULL &&
         (err = cs_secret_watch_add(s.secrets, "ldap.password_file",
                                    cs_config_get_string(cfg->raw, "ldap.password_file"), SECRET_LDAP))) ||
        (err = cs_secret_watch_add_kafka(s.secrets, cfg->raw, SECRET_KAFKA)))
        goto cleanup;
    if (!opts->release_held) {
        if ((err = cs_admin_new(s.metrics, &s.admin)) ||
            (err = cs_admin_add_check(s.admin, CS_ADMIN_LIVENESS, "loop", check_live, &s)) ||
            (err = cs_admin_add_check(s.admin, CS_ADMIN_READINESS, "tracking", check_ready, &s)) ||
            (err = cs_admin_start(s.admin, cfg->admin_listen)))
            goto cleanup;
        cs_log(CS_LOG_INFO, FACILITY, "admin endpoint listening on port %u",
               (unsigned)cs_admin_port(s.admin));
    }
    atomic_store(&s.live, true);

    /* Elect before init_transactions: a standby that never touches Kafka cannot fence the active one
       (design.md "Active/passive without ping-pong"). --release-held is a one-off command run next to the
       active and does not take part. */
    if (!opts->release_held) {
        bool elected = false;
        if ((err = col_election_from_config(cfg, &s.elect)))
            goto cleanup;
        cs_metrics_gauge_set(s.m_active, col_election_enabled(s.elect) ? 0 : 1);
        if ((err = col_election_acquire(s.elect, opts->stop_flag, &elected)))
            goto cleanup;
        if (!elected) {
            rc = COL_SERVICE_EXIT_OK; /* stopped while standby */
            goto cleanup;
        }
        cs_metrics_gauge_set(s.m_active, 1);
    }

    col_pipeline_opts po = {
        .source_id = cfg->source_id,
        .transactional_id = cfg->transactional_id,
        .topic_events = cfg->topic_events,
        .topic_checkpoint = cfg->topic_checkpoint,
        .topic_held = cfg->topic_held,
        .batch_max_events = cfg->batch_max_events,
        .batch_max_wait_ms = cfg->batch_max_wait_ms,
        .mass_removal_threshold = cfg->guard_mass_removal_threshold,
        .metrics = s.metrics,
        .stop_flag = opts->stop_flag,
        .on_commit_pending = on_commit_pending,
        .pending_arg = &s,
    };
    while (!stopping(&s)) {
        if ((err = col_config_kafka_conf(cfg, &conf)))
            goto cleanup;
        err = col_pipeline_open(&po, conf, &s.pipe); /* takes conf */
        conf = NULL;
        if (err == NULL || !cs_err_is_retriable(err))
            break;
        cs_log_kv(CS_LOG_WARN, FACILITY, "Kafka not reachable at start: retrying", "error",
                  cs_err_message(err), NULL);
        cs_err_free(err);
        err = NULL;
        cs_err_free(idle_wait(&s, backoff));
        backoff = backoff * 2 > COL_SERVICE_BACKOFF_MAX_MS ? COL_SERVICE_BACKOFF_MAX_MS : backoff * 2;
    }
    if (err)
        goto cleanup;
    if (s.pipe == NULL) {
        rc = COL_SERVICE_EXIT_OK; /* stopped while waiting for Kafka */
        goto cleanup;
    }
    const Certsync__V1__CollectorCheckpoint *cp = col_pipeline_checkpoint(s.pipe);
    cs_log(CS_LOG_INFO, FACILITY, "checkpoint loaded: %s (sequence %llu, snapshot %s), %zu events held",
           cp ? "found" : "none, first start", cp ? (unsigned long long)cp->sequence : 0ULL,
           cp && cp->snapshot_complete ? "complete" : "not complete", col_pipeline_held_count(s.pipe));

    rc = opts->release_held ? release_held(&s) : loop(&s);

cleanup:
    if (err) {
        cs_log_kv(CS_LOG_ERROR, FACILITY, "cannot start", "error", cs_err_message(err), NULL);
        cs_err_free(err);
        err = NULL;
    }
    atomic_store(&s.ready, false);
    if (col_election_lost(s.elect))
        rc = COL_SERVICE_EXIT_LEASE_LOST;
    if (s.pipe) {
        /* Lost lease: abort, never commit: a standby may own the lease (and the transactional.id) soon. */
        bool commit = rc != COL_SERVICE_EXIT_FENCED && rc != COL_SERVICE_EXIT_LEASE_LOST;
        err = col_pipeline_close(s.pipe, commit);
        s.pipe = NULL;
        if (err) {
            if (cs_kafka_producer_is_commit_pending(err))
                rc = exit_commit_pending(&s, err);
            else
                cs_log_kv(CS_LOG_ERROR, FACILITY, "the last commit failed", "error", cs_err_message(err),
                          NULL);
            if (rc == COL_SERVICE_EXIT_OK)
                rc = (cs_err_flags(err) & CS_KAFKA_ERR_F_FENCED) ? COL_SERVICE_EXIT_FENCED
                                                                 : COL_SERVICE_EXIT_FAIL;
            cs_err_free(err);
        } else if (rc == COL_SERVICE_EXIT_OK) {
            cs_log(CS_LOG_INFO, FACILITY, "stopped: the open batch is committed");
        }
    }
    atomic_store(&s.live, false);
    cs_admin_stop(s.admin);
    col_syncrepl_free(s.sync);
    col_dirsync_free(s.ds);
    col_usn_free(s.usn);
    col_ldap_free(s.ldap);
    free(s.filter);
    col_group_free(s.group);
    pending_clear(&s);
    free(s.cookie);
    /* Last: the next replica's init_transactions comes after this one's final commit. */
    col_election_free(s.elect);
    cs_secret_watch_free(s.secrets);
    cs_metrics_free(s.metrics);
    return rc;
}
