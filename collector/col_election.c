/*
 * col_election: active/passive election in front of Kafka (see col_election.h).
 */
#include "col_election.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "col_kube.h"
#include "col_lease.h"
#include "cs_log.h"

#define FAC "election"

typedef enum election_mode {
    ELECTION_NONE = 0,
    ELECTION_LOCKFILE,
    ELECTION_LEASE,
} election_mode;

struct col_election {
    election_mode mode;
    char *path;
    int fd;
    bool held;

    /* kubernetes-lease */
    col_kube *kube;
    char ns[COL_LEASE_MAX_NAME + 1];
    char name[COL_LEASE_MAX_NAME + 1];
    char identity[COL_LEASE_MAX_ID];
    char path_one[1536]; /* .../leases/<name> */
    char path_all[1024]; /* .../leases (POST) */
    long long duration_ms, deadline_ms, retry_ms;
    col_lease_observer obs;
    int64_t last_renew_ms; /* monotonic: when the last successful renewal was SENT */
    pthread_t renewer;
    bool renewer_started;
    pthread_mutex_t mu; /* guards quit; cv wakes the renewer */
    pthread_cond_t cv;
    bool sync_ready;
    bool quit;
    atomic_bool lost;
};

cs_err *col_election_new(const char *mode, const char *lock_file, col_election **out)
{
    col_election *e = NULL;
    cs_err *err = NULL;

    *out = NULL;
    if (mode != NULL && strcmp(mode, "kubernetes-lease") == 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.mode: kubernetes-lease needs its election.kubernetes.* settings: use "
                          "col_election_from_config() or col_election_new_lease()");
    if (mode != NULL && strcmp(mode, "none") != 0 && strcmp(mode, "lockfile") != 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.mode: \"%s\" is not one of none, lockfile, kubernetes-lease", mode);
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the election");
    e->fd = -1;
    atomic_init(&e->lost, false);
    if (mode == NULL || strcmp(mode, "none") == 0)
        goto done;
    e->mode = ELECTION_LOCKFILE;
    if (lock_file == NULL || lock_file[0] == '\0') {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "election.mode: lockfile needs election.lock_file: a path on a volume every replica "
                         "of this source.id shares");
        goto cleanup;
    }
    if ((e->path = strdup(lock_file)) == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the election");
        goto cleanup;
    }
    e->fd = open(lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (e->fd < 0) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "election.lock_file %s: cannot open it read-write: %s; point it at a writable "
                         "shared volume",
                         lock_file, strerror(errno));
        goto cleanup;
    }
done:
    *out = e;
    e = NULL;
cleanup:
    col_election_free(e);
    return err;
}

bool col_election_enabled(const col_election *e)
{
    return e != NULL && e->mode != ELECTION_NONE;
}

/* One non-blocking attempt. *busy: another process holds it. */
static cs_err *try_lock(col_election *e, bool *got)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET; /* l_start = l_len = 0: the whole file, however long it grows */
    *got = false;
    if (fcntl(e->fd, F_SETLK, &fl) == 0) {
        *got = true;
        return NULL;
    }
    if (errno == EACCES || errno == EAGAIN || errno == EINTR)
        return NULL;
    return cs_err_new(CS_ERR_IO, CS_ERR_F_RETRIABLE,
                      "election.lock_file %s: locking failed: %s; the file system must support POSIX locks "
                      "(fcntl)",
                      e->path, strerror(errno));
}

/* What the active replica wrote into the lock file, for the standby's log line. */
static void read_holder(const col_election *e, char out[COL_ELECTION_MAX_HOLDER])
{
    ssize_t n = pread(e->fd, out, COL_ELECTION_MAX_HOLDER - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    if (out[0] == '\0')
        snprintf(out, COL_ELECTION_MAX_HOLDER, "unknown");
}

/* Records who holds the lock; best effort (the lock, not the text, is what elects). */
static void write_holder(const col_election *e)
{
    char host[128] = "";
    char line[COL_ELECTION_MAX_HOLDER];
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "unknown-host");
    int n = snprintf(line, sizeof line, "%s pid %ld\n", host, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    if (ftruncate(e->fd, 0) != 0 || pwrite(e->fd, line, (size_t)n, 0) != (ssize_t)n)
        cs_log(CS_LOG_WARN, FAC, "election.lock_file %s: could not record the holder: %s", e->path,
               strerror(errno));
}

/* ---- kubernetes-lease ------------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wall_micro(char out[COL_LEASE_TIME_LEN])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    col_lease_microtime(&ts, out);
}

/* A DNS-1123 subdomain (what Kubernetes accepts as a Lease or namespace name): safe in a URL path. */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > COL_LEASE_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '.') && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

cs_err *col_election_new_lease(const col_election_lease_opts *o, col_election **out)
{
    col_election *e = NULL;
    cs_err *err = NULL;
    col_kube_opts ko = {.api_url = o->api_url, .token_file = o->token_file, .ca_file = o->ca_file};

    *out = NULL;
    if (o->lease_duration_ms % 1000 != 0 || o->lease_duration_ms < 1000)
        return cs_err_new(
            CS_ERR_CONFIG, 0,
            "election.kubernetes.lease_duration %lld ms: the Lease holds whole seconds; use e.g. 15s",
            o->lease_duration_ms);
    if (!(o->lease_duration_ms > o->renew_deadline_ms && o->renew_deadline_ms > o->retry_period_ms &&
          o->retry_period_ms > 0))
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.kubernetes: need lease_duration (%lld ms) > renew_deadline (%lld ms) > "
                          "retry_period (%lld ms): the active replica must give up before a standby may take "
                          "over (defaults 15s, 10s, 2s)",
                          o->lease_duration_ms, o->renew_deadline_ms, o->retry_period_ms);
    if (o->lease_name == NULL || !dns_name_ok(o->lease_name))
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.kubernetes.lease_name \"%s\": not a Kubernetes object name (lower-case "
                          "letters, digits, - and ., at most 253)",
                          o->lease_name ? o->lease_name : "");
    if (o->identity == NULL || o->identity[0] == '\0' || strlen(o->identity) >= COL_LEASE_MAX_ID)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.kubernetes.identity: empty or longer than %d bytes; set it or POD_NAME",
                          COL_LEASE_MAX_ID - 1);
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the election");
    e->fd = -1;
    e->mode = ELECTION_LEASE;
    atomic_init(&e->lost, false);
    snprintf(e->name, sizeof e->name, "%s", o->lease_name);
    snprintf(e->identity, sizeof e->identity, "%s", o->identity);
    e->duration_ms = o->lease_duration_ms;
    e->deadline_ms = o->renew_deadline_ms;
    e->retry_ms = o->retry_period_ms;
    if (o->ns != NULL)
        snprintf(e->ns, sizeof e->ns, "%s", o->ns);
    else if ((err = col_kube_read_namespace(NULL, e->ns, sizeof e->ns)))
        goto cleanup;
    if (!dns_name_ok(e->ns)) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "election.kubernetes.namespace \"%s\": not a Kubernetes namespace name", e->ns);
        goto cleanup;
    }
    snprintf(e->path_all, sizeof e->path_all, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", e->ns);
    snprintf(e->path_one, sizeof e->path_one, "%s/%s", e->path_all, e->name);
    if (pthread_mutex_init(&e->mu, NULL) != 0) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "cannot create the election's mutex");
        goto cleanup;
    }
    pthread_condattr_t ca;
    bool cv_ok = pthread_condattr_init(&ca) == 0;
    /* The renewer's waits use the monotonic clock: a wall clock step must not stretch a renewal. */
    cv_ok =
        cv_ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&e->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!cv_ok) {
        pthread_mutex_destroy(&e->mu);
        err = cs_err_new(CS_ERR_INTERNAL, 0, "cannot create the election's condition variable");
        goto cleanup;
    }
    e->sync_ready = true;
    if ((err = col_kube_new(&ko, &e->kube)))
        goto cleanup;
    *out = e;
    e = NULL;
cleanup:
    col_election_free(e);
    return err;
}

cs_err *col_election_from_config(const col_config *cfg, col_election **out)
{
    const cs_config *c = cfg->raw;
    const char *mode = cs_config_get_string(c, "election.mode");
    char name[COL_LEASE_MAX_NAME + 2];
    char host[COL_LEASE_MAX_ID];
    const char *identity = NULL;

    if (mode == NULL || strcmp(mode, "kubernetes-lease") != 0)
        return col_election_new(mode, cs_config_get_string(c, "election.lock_file"), out);
    const char *lease_name = cs_config_get_string(c, "election.kubernetes.lease_name");
    if (lease_name == NULL) {
        /* source.id allows '_' and upper case; a Lease name does not. */
        int n = snprintf(name, sizeof name, "certsync-collector-%s", cfg->source_id);
        for (int i = 0; i < n && name[i]; i++)
            name[i] = name[i] == '_'                       ? '-'
                      : (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a')
                                                           : name[i];
        lease_name = name;
    }
    identity = cs_config_get_string(c, "election.kubernetes.identity");
    if (identity == NULL)
        identity = getenv("POD_NAME");
    if (identity == NULL || identity[0] == '\0') {
        if (gethostname(host, sizeof host - 1) != 0)
            host[0] = '\0';
        host[sizeof host - 1] = '\0';
        identity = host;
    }
    col_election_lease_opts o = {
        .api_url = cs_config_get_string(c, "election.kubernetes.api_url"),
        .token_file = cs_config_get_string(c, "election.kubernetes.token_file"),
        .ca_file = cs_config_get_string(c, "election.kubernetes.ca_file"),
        .ns = cs_config_get_string(c, "election.kubernetes.namespace"),
        .lease_name = lease_name,
        .identity = identity,
        .lease_duration_ms = cs_config_get_duration_ms(c, "election.kubernetes.lease_duration"),
        .renew_deadline_ms = cs_config_get_duration_ms(c, "election.kubernetes.renew_deadline"),
        .retry_period_ms = cs_config_get_duration_ms(c, "election.kubernetes.retry_period"),
    };
    return col_election_new_lease(&o, out);
}

bool col_election_lost(const col_election *e)
{
    return e != NULL && atomic_load(&e->lost);
}

typedef enum lease_outcome {
    LEASE_OURS = 0, /* written with this identity */
    LEASE_OTHER,    /* another identity holds it (not expired) */
    LEASE_RACE,     /* 409: someone wrote between our read and write; retry at the next period */
} lease_outcome;

/* An API answer that is not the one wanted, as a retriable error with the Status reason and message. */
static cs_err *api_error(const col_election *e, const char *method, long status, const char *body, size_t len)
{
    char text[512];
    col_lease_status_text(body, len, text, sizeof text);
    const char *hint = status == 401   ? "; the service account token is not accepted"
                       : status == 403 ? "; the collector's Role must allow get, create and update on leases"
                       : status == 404 ? "; is the namespace right?"
                                       : "";
    return cs_err_new(CS_ERR_HTTP, CS_ERR_F_RETRIABLE, "%s lease %s/%s at %s: HTTP %ld: %s%s", method, e->ns,
                      e->name, col_kube_url(e->kube), status, text, hint);
}

/*
 * One round of client-go's tryAcquireOrRenew: GET, decide, then POST (missing) or PUT (with the read
 * resourceVersion). *holder gets the current holder for logs. `holding`: this replica is active, so only
 * a renewal is acceptable (anything else means the lease was lost: LEASE_OTHER).
 */
static cs_err *lease_round(col_election *e, long timeout_ms, bool holding, lease_outcome *res,
                           char holder[COL_LEASE_MAX_ID])
{
    char *body = NULL;
    char *resp = NULL;
    size_t resp_len = 0;
    long status = 0;
    col_lease_record cur;
    col_lease_record next;
    col_lease_action act;
    char now[COL_LEASE_TIME_LEN];
    cs_err *err = NULL;
    bool exists = false;

    *res = LEASE_RACE;
    holder[0] = '\0';
    if ((err = col_kube_request(e->kube, "GET", e->path_one, NULL, timeout_ms, &status, &resp, &resp_len)))
        goto cleanup;
    if (status == 200) {
        if ((err = col_lease_parse(resp, resp_len, &cur)))
            goto cleanup;
        exists = true;
    } else if (status != 404) {
        err = api_error(e, "GET", status, resp, resp_len);
        goto cleanup;
    }
    act = col_lease_decide(&e->obs, exists ? &cur : NULL, e->identity, mono_ms());
    if (exists)
        snprintf(holder, COL_LEASE_MAX_ID, "%s", cur.holder);
    if (act == COL_LEASE_WAIT || (holding && act != COL_LEASE_RENEW)) {
        *res = LEASE_OTHER;
        goto cleanup;
    }
    wall_micro(now);
    col_lease_next(exists ? &cur : NULL, act, e->identity, e->duration_ms / 1000, now, &next);
    if ((err = col_lease_render(e->ns, e->name, &next, &body)))
        goto cleanup;
    free(resp);
    resp = NULL;
    if ((err = col_kube_request(e->kube, exists ? "PUT" : "POST", exists ? e->path_one : e->path_all, body,
                                timeout_ms, &status, &resp, &resp_len)))
        goto cleanup;
    if (status == 409) {
        /* Conflict (stale resourceVersion) or AlreadyExists: another replica won this round. */
        char text[512];
        col_lease_status_text(resp, resp_len, text, sizeof text);
        cs_log_kv(CS_LOG_DEBUG, FAC, "lease write lost a race", "lease", e->name, "status", text, NULL);
        goto cleanup;
    }
    if (status != 200 && status != 201) {
        err = api_error(e, exists ? "PUT" : "POST", status, resp, resp_len);
        goto cleanup;
    }
    if ((err = col_lease_parse(resp, resp_len, &cur)))
        goto cleanup;
    /* What we wrote is the newest record we saw: observed now (client-go does the same). */
    e->obs.have = true;
    e->obs.rec = cur;
    e->obs.observed_ms = mono_ms();
    snprintf(holder, COL_LEASE_MAX_ID, "%s", cur.holder);
    *res = strcmp(cur.holder, e->identity) == 0 ? LEASE_OURS : LEASE_OTHER;
cleanup:
    free(body);
    free(resp);
    return err;
}

/* Waits on the renewer's condition variable until `until_ms` (monotonic) or quit. Returns quit. mu held. */
static bool wait_until(col_election *e, int64_t until_ms)
{
    while (!e->quit) {
        int64_t now = mono_ms();
        if (now >= until_ms)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (until_ms - now) * 1000000LL;
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    return e->quit;
}

/* The active replica's renewer (client-go renew()): see col_election.h. */
static void *renewer_main(void *arg)
{
    col_election *e = arg;
    char holder[COL_LEASE_MAX_ID];
    char reason[768] = "";

    pthread_mutex_lock(&e->mu);
    while (!wait_until(e, mono_ms() + e->retry_ms)) {
        pthread_mutex_unlock(&e->mu);
        int64_t sent = mono_ms();
        long left = (long)(e->last_renew_ms + e->deadline_ms - sent);
        lease_outcome res = LEASE_RACE;
        cs_err *err = lease_round(e, left > 100 ? left : 100, true, &res, holder);
        if (err == NULL && res == LEASE_OURS) {
            e->last_renew_ms = sent;
        } else if (err == NULL && res == LEASE_OTHER) {
            snprintf(reason, sizeof reason, "the lease is held by \"%s\"", holder[0] ? holder : "(nobody)");
        } else {
            cs_log_kv(CS_LOG_WARN, FAC, "lease renewal failed; retrying", "lease", e->name, "error",
                      err ? cs_err_message(err) : "409 conflict", NULL);
            if (mono_ms() - e->last_renew_ms >= e->deadline_ms)
                snprintf(reason, sizeof reason, "no renewal succeeded for renew_deadline (%lld ms): %s",
                         e->deadline_ms, err ? cs_err_message(err) : "409 conflict");
        }
        cs_err_free(err);
        pthread_mutex_lock(&e->mu);
        if (reason[0])
            break;
    }
    if (reason[0] && !e->quit) {
        atomic_store(&e->lost, true);
        cs_log_kv(
            CS_LOG_ERROR, FAC,
            "lease lost: stopping production and exiting with code 6 so this replica restarts as standby",
            "lease", e->name, "identity", e->identity, "reason", reason, NULL);
        /* Watchdog: a standby may take over lease_duration after our last renewal; we are at least
           renew_deadline past it. Give the service half of the rest to abort and exit, then end it. */
        if (!wait_until(e, mono_ms() + (e->duration_ms - e->deadline_ms) / 2)) {
            cs_log_kv(CS_LOG_ERROR, FAC, "lease lost and the service did not stop in time: exiting now",
                      "lease", e->name, NULL);
            fflush(NULL);
            _exit(COL_ELECTION_EXIT_LOST);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static cs_err *lease_acquire(col_election *e, volatile sig_atomic_t *stop, bool *elected)
{
    bool logged_standby = false;
    char last_err[512] = "";
    char holder[COL_LEASE_MAX_ID];

    while (*stop == 0) {
        lease_outcome res = LEASE_RACE;
        int64_t sent = mono_ms();
        cs_err *err = lease_round(e, (long)e->deadline_ms, false, &res, holder);
        if (err) {
            /* The API may be briefly away (upgrade): keep trying, but say so once per new message. */
            if (strncmp(last_err, cs_err_message(err), sizeof last_err - 1) != 0) {
                cs_log_kv(CS_LOG_WARN, FAC, "standby: cannot read or write the election lease; retrying",
                          "lease", e->name, "error", cs_err_message(err), NULL);
                snprintf(last_err, sizeof last_err, "%s", cs_err_message(err));
            }
            cs_err_free(err);
        } else if (res == LEASE_OURS) {
            e->held = true;
            e->last_renew_ms = sent;
            if (pthread_create(&e->renewer, NULL, renewer_main, e) != 0) {
                /* Without a renewer the lease would silently expire under us: do not become active. */
                return cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "cannot start the lease renewer thread");
            }
            e->renewer_started = true;
            cs_log_kv(CS_LOG_INFO, FAC, "elected: this replica is active", "lease", e->name, "namespace",
                      e->ns, "identity", e->identity, NULL);
            *elected = true;
            return NULL;
        } else if (res == LEASE_OTHER && !logged_standby) {
            cs_log_kv(CS_LOG_INFO, FAC, "standby: another replica holds the election lease; waiting", "lease",
                      e->name, "namespace", e->ns, "active", holder, NULL);
            logged_standby = true;
        }
        /* Poll again after retry_period, seeing the stop flag within 100 ms. */
        int64_t until = sent + e->retry_ms;
        while (*stop == 0 && mono_ms() < until) {
            int64_t left = until - mono_ms();
            long slice = left < 100 ? (long)left : 100;
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (slice > 0 ? slice : 1) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* client-go ReleaseOnCancel: only when this replica still holds it (checked on a fresh read). */
static void lease_release(col_election *e)
{
    char *body = NULL;
    char *resp = NULL;
    size_t resp_len = 0;
    long status = 0;
    col_lease_record cur;
    col_lease_record rel;
    char now[COL_LEASE_TIME_LEN];
    cs_err *err = NULL;
    long timeout = e->deadline_ms < COL_ELECTION_RELEASE_TIMEOUT_MS ? (long)e->deadline_ms
                                                                    : COL_ELECTION_RELEASE_TIMEOUT_MS;

    if ((err = col_kube_request(e->kube, "GET", e->path_one, NULL, timeout, &status, &resp, &resp_len)))
        goto cleanup;
    if (status != 200) {
        err = api_error(e, "GET", status, resp, resp_len);
        goto cleanup;
    }
    if ((err = col_lease_parse(resp, resp_len, &cur)))
        goto cleanup;
    if (strcmp(cur.holder, e->identity) != 0) {
        cs_log_kv(CS_LOG_WARN, FAC, "not releasing the lease: another replica holds it already", "lease",
                  e->name, "active", cur.holder, NULL);
        goto cleanup;
    }
    wall_micro(now);
    col_lease_release_record(&cur, now, &rel);
    if ((err = col_lease_render(e->ns, e->name, &rel, &body)))
        goto cleanup;
    free(resp);
    resp = NULL;
    if ((err = col_kube_request(e->kube, "PUT", e->path_one, body, timeout, &status, &resp, &resp_len)))
        goto cleanup;
    if (status != 200) {
        err = api_error(e, "PUT", status, resp, resp_len);
        goto cleanup;
    }
    cs_log_kv(CS_LOG_INFO, FAC, "released the election lease: a standby can take over now", "lease", e->name,
              NULL);
cleanup:
    if (err) {
        cs_log_kv(CS_LOG_WARN, FAC, "releasing the lease failed: a standby takes over when it expires",
                  "lease", e->name, "error", cs_err_message(err), NULL);
        cs_err_free(err);
    }
    free(body);
    free(resp);
}

/* ---- both ------------------------------------------------------------------------------------------ */

cs_err *col_election_acquire(col_election *e, volatile sig_atomic_t *stop, bool *elected)
{
    bool logged = false;
    cs_err *err = NULL;

    *elected = false;
    if (e->mode == ELECTION_NONE || e->held) {
        *elected = true;
        return NULL;
    }
    if (e->mode == ELECTION_LEASE)
        return lease_acquire(e, stop, elected);
    while (*stop == 0) {
        bool got = false;
        if ((err = try_lock(e, &got)))
            return err;
        if (got) {
            e->held = true;
            write_holder(e);
            cs_log_kv(CS_LOG_INFO, FAC, "elected: this replica is active", "lock_file", e->path, NULL);
            *elected = true;
            return NULL;
        }
        if (!logged) {
            char holder[COL_ELECTION_MAX_HOLDER];
            read_holder(e, holder);
            cs_log_kv(CS_LOG_INFO, FAC, "standby: another replica holds the election lock; waiting",
                      "lock_file", e->path, "active", holder, NULL);
            logged = true;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = COL_ELECTION_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void col_election_free(col_election *e)
{
    if (e == NULL)
        return;
    if (e->renewer_started) {
        pthread_mutex_lock(&e->mu);
        e->quit = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->renewer, NULL);
    }
    if (e->mode == ELECTION_LEASE && e->held && !atomic_load(&e->lost))
        lease_release(e);
    col_kube_free(e->kube);
    if (e->sync_ready) {
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
    }
    if (e->fd >= 0) {
        if (e->held && ftruncate(e->fd, 0) != 0)
            cs_log(CS_LOG_DEBUG, FAC, "clearing the holder of %s failed: %s", e->path, strerror(errno));
        close(e->fd); /* drops the record lock */
    }
    free(e->path);
    free(e);
}
