/*
 * cs_admin: /healthz, /readyz and /metrics on libmicrohttpd 0.9.75.
 *
 * MHD binds the socket itself (MHD_OPTION_SOCK_ADDR) and answers from one
 * internal polling thread; MHD_stop_daemon() closes every connection and joins
 * that thread, so stopping frees everything safely. When MHD cannot start,
 * we bind the same address once more ourselves, only to learn errno and give a
 * precise error (MHD's own reason is kept in the message as well).
 */
#include "cs_admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cs_buf.h"
#include "cs_log.h"

#define MAX_CHECK_NAME 64
#define MAX_REASON 512             /* bytes of a check's reason shown on a probe */
#define MAX_PROBE_BODY (64 * 1024) /* a probe answer, with every reason at its maximum, fits easily */
#define MAX_METRICS_BODY (16 * 1024 * 1024)
#define MAX_LISTEN 300 /* bytes of an admin.listen value */
#define LISTEN_KEY "admin.listen"

typedef struct check {
    unsigned probes;
    char name[MAX_CHECK_NAME + 1];
    cs_admin_check_fn fn;
    void *arg;
} check;

struct cs_admin {
    cs_metrics *metrics;
    pthread_mutex_t lock; /* guards checks; held while a probe runs them */
    check checks[CS_ADMIN_MAX_CHECKS];
    size_t n_checks;
    struct MHD_Daemon *daemon;
    uint16_t port;
    char address[MAX_LISTEN + 16]; /* host (bounded by MAX_LISTEN) with brackets and port */
    pthread_mutex_t log_lock;      /* guards last_mhd_error: MHD may log from its thread */
    char last_mhd_error[256];
};

/* ---- responses ---- */

/* Plain static text for when even the error body cannot be allocated. */
static char oom_body[] = "{\"status\":\"fail\",\"error\":\"out of memory\"}";

/*
 * Queues `body` (taken, emptied) with `status` and `content_type`.
 * MHD answers HEAD itself: headers, Content-Length, no body.
 */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *content_type,
                               cs_buf *body, bool add_allow)
{
    struct MHD_Response *resp = NULL;
    size_t len = cs_buf_len(body);
    char *data = cs_buf_take(body);
    if (data) {
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            free(data);
    }
    if (!resp) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        content_type = "application/json";
        resp = MHD_create_response_from_buffer(strlen(oom_body), oom_body, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO; /* MHD closes the connection */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (add_allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Appends `s` cut to MAX_REASON bytes at a UTF-8 character boundary, as a JSON string. */
static bool add_reason(cs_buf *b, const char *s)
{
    char cut[MAX_REASON + 1];
    size_t n = strlen(s);
    if (n > MAX_REASON) {
        n = MAX_REASON;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) /* do not split a multi-byte character */
            n--;
    }
    memcpy(cut, s, n);
    cut[n] = '\0';
    return cs_buf_add_json_string(b, cut);
}

/* Runs every check of `probe` and answers 200 or 503 with each check's verdict. */
static enum MHD_Result answer_probe(cs_admin *a, struct MHD_Connection *conn, unsigned probe)
{
    cs_buf checks, body;
    bool ok = true, healthy = true;
    cs_buf_init(&checks, MAX_PROBE_BODY);
    cs_buf_init(&body, MAX_PROBE_BODY);

    pthread_mutex_lock(&a->lock);
    ok = cs_buf_add(&checks, "{", 1);
    bool first = true;
    for (size_t i = 0; ok && i < a->n_checks; i++) {
        const check *c = &a->checks[i];
        if (!(c->probes & probe))
            continue;
        cs_err *err = c->fn(c->arg);
        if (err)
            healthy = false;
        ok = (first || cs_buf_add(&checks, ",", 1)) && cs_buf_add_json_string(&checks, c->name) &&
             cs_buf_add(&checks, ":", 1) &&
             (err ? add_reason(&checks, cs_err_message(err)) : cs_buf_add_str(&checks, "\"ok\""));
        first = false;
        cs_err_free(err);
    }
    pthread_mutex_unlock(&a->lock);
    ok = ok && cs_buf_add(&checks, "}", 1) &&
         cs_buf_printf(&body, "{\"status\":\"%s\",\"checks\":%s}\n", healthy ? "ok" : "fail",
                       cs_buf_str(&checks));
    cs_buf_free(&checks);
    if (!ok) { /* cannot happen within the bounds above; fail closed rather than claim health */
        cs_buf_reset(&body);
        cs_buf_add_str(&body, "{\"status\":\"fail\",\"error\":\"probe answer too large\"}\n");
        healthy = false;
    }
    enum MHD_Result ret =
        respond(conn, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", &body, false);
    cs_buf_free(&body);
    return ret;
}

/* Appends `s` as a Prometheus label value (backslash, double quote and newline escaped). */
static bool add_label_value(cs_buf *b, const char *s)
{
    bool ok = cs_buf_add(b, "\"", 1);
    for (; ok && *s; s++) {
        if (*s == '\\' || *s == '"')
            ok = cs_buf_add(b, "\\", 1) && cs_buf_add(b, s, 1);
        else if (*s == '\n')
            ok = cs_buf_add_str(b, "\\n");
        else
            ok = cs_buf_add(b, s, 1);
    }
    return ok && cs_buf_add(b, "\"", 1);
}

/*
 * Appends certsync_probe_check_passing{probe,check}: each check's verdict as a gauge, so readiness and
 * liveness can be graphed and alerted on by check (the reasons stay on the probes: unbounded text is no
 * label). Rendered here rather than registered in the registry because the registry outlives the endpoint.
 * Nothing is appended when no check is registered.
 */
static bool add_check_metrics(cs_admin *a, cs_buf *b)
{
    static const struct {
        unsigned probe;
        const char *name;
    } probes[] = {{CS_ADMIN_LIVENESS, "liveness"}, {CS_ADMIN_READINESS, "readiness"}};
    bool ok = true;
    pthread_mutex_lock(&a->lock);
    if (a->n_checks > 0)
        ok =
            cs_buf_add_str(b, "# HELP " CS_ADMIN_CHECK_METRIC
                              " 1 while the named liveness or readiness check passes, 0 while it fails (the "
                              "reason is on /healthz or /readyz).\n# TYPE " CS_ADMIN_CHECK_METRIC " gauge\n");
    for (size_t p = 0; ok && p < sizeof(probes) / sizeof(probes[0]); p++) {
        for (size_t i = 0; ok && i < a->n_checks; i++) {
            const check *c = &a->checks[i];
            if (!(c->probes & probes[p].probe))
                continue;
            cs_err *err = c->fn(c->arg);
            ok = cs_buf_printf(b, "%s{probe=\"%s\",check=", CS_ADMIN_CHECK_METRIC, probes[p].name) &&
                 add_label_value(b, c->name) && cs_buf_printf(b, "} %d\n", err ? 0 : 1);
            cs_err_free(err);
        }
    }
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static enum MHD_Result answer_metrics(cs_admin *a, struct MHD_Connection *conn)
{
    cs_buf body;
    cs_buf_init(&body, MAX_METRICS_BODY);
    cs_err *err = cs_metrics_render(a->metrics, &body);
    if (!err && !add_check_metrics(a, &body))
        err = cs_err_new(CS_ERR_INTERNAL, 0, "/metrics: the probe check lines do not fit in %d bytes",
                         MAX_METRICS_BODY);
    enum MHD_Result ret;
    if (err) {
        cs_log_kv(CS_LOG_ERROR, "admin", "cannot render /metrics", "error", cs_err_message(err), NULL);
        cs_buf_reset(&body);
        cs_buf_add_str(&body, "{\"status\":\"fail\",\"error\":");
        add_reason(&body, cs_err_message(err));
        cs_buf_add_str(&body, "}\n");
        cs_err_free(err);
        ret = respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json", &body, false);
    } else {
        ret = respond(conn, MHD_HTTP_OK, CS_METRICS_CONTENT_TYPE, &body, false);
    }
    cs_buf_free(&body);
    return ret;
}

static enum MHD_Result answer_error(struct MHD_Connection *conn, unsigned status, const char *error,
                                    const char *url)
{
    cs_buf body;
    cs_buf_init(&body, 4096);
    if (!(cs_buf_printf(&body, "{\"error\":\"%s\",\"path\":", error) && add_reason(&body, url) &&
          cs_buf_add_str(&body, "}\n"))) {
        cs_buf_reset(&body);
        cs_buf_printf(&body, "{\"error\":\"%s\"}\n", error);
    }
    enum MHD_Result ret =
        respond(conn, status, "application/json", &body, status == MHD_HTTP_METHOD_NOT_ALLOWED);
    cs_buf_free(&body);
    return ret;
}

/* MHD's access handler: every request, first call (headers read). Bodies are never needed. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    cs_admin *a = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;

    unsigned probe = 0;
    bool metrics = false;
    if (strcmp(url, "/healthz") == 0)
        probe = CS_ADMIN_LIVENESS;
    else if (strcmp(url, "/readyz") == 0)
        probe = CS_ADMIN_READINESS;
    else if (strcmp(url, "/metrics") == 0 && a->metrics)
        metrics = true;
    else
        return answer_error(conn, MHD_HTTP_NOT_FOUND, "not found", url);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return answer_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", url);
    return metrics ? answer_metrics(a, conn) : answer_probe(a, conn, probe);
}

/* MHD's error messages go to our JSON log; the latest is kept for a failed start. */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    cs_admin *a = cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    pthread_mutex_lock(&a->log_lock);
    memcpy(a->last_mhd_error, msg, n + 1);
    pthread_mutex_unlock(&a->log_lock);
    cs_log_kv(CS_LOG_WARN, "admin", "libmicrohttpd", "detail", msg, NULL);
}

/* ---- listen address ---- */

/* Splits "host:port" or "[v6]:port" into host (may be empty: all interfaces) and port digits. */
static cs_err *parse_listen(const char *listen, char *host, size_t host_size, char *port, size_t port_size)
{
    const char *colon = NULL, *h = listen;
    size_t hl = 0;
    if (!listen || !listen[0] || strlen(listen) > MAX_LISTEN)
        goto bad;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            goto bad;
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || memchr(listen, ':', (size_t)(colon - listen))) /* bare IPv6 needs brackets */
            goto bad;
        hl = (size_t)(colon - listen);
    }
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5 || hl >= host_size || pl >= port_size)
        goto bad;
    unsigned long v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9')
            goto bad;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v > 65535)
        goto bad;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return NULL;
bad:
    return cs_err_new(CS_ERR_CONFIG, 0,
                      "%s \"%s\": expected host:port with a port from 0 to 65535, e.g. \"127.0.0.1:9090\", "
                      "\"0.0.0.0:9090\" or \"[::1]:9090\" (port 0 picks a free port)",
                      LISTEN_KEY, listen ? listen : "(null)");
}

/* Binds a throwaway socket to learn why MHD could not: the errno, or 0 when it binds fine now. */
static int probe_bind(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM, 0);
    if (fd < 0)
        return errno;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)); /* same as MHD does */
    int e = bind(fd, sa, len) == 0 ? 0 : errno;
    close(fd);
    return e;
}

static uint16_t bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port)
        return info->port;
    /* Older builds without port detection: ask the socket. */
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* ---- public ---- */

cs_err *cs_admin_new(cs_metrics *metrics, cs_admin **out)
{
    *out = NULL;
    cs_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return cs_err_new(CS_ERR_NOMEM, 0, "admin endpoint: out of memory");
    if (pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a);
        return cs_err_new(CS_ERR_INTERNAL, 0, "admin endpoint: cannot create a mutex");
    }
    if (pthread_mutex_init(&a->log_lock, NULL) != 0) {
        pthread_mutex_destroy(&a->lock);
        free(a);
        return cs_err_new(CS_ERR_INTERNAL, 0, "admin endpoint: cannot create a mutex");
    }
    a->metrics = metrics;
    *out = a;
    return NULL;
}

cs_err *cs_admin_add_check(cs_admin *a, unsigned probes, const char *name, cs_admin_check_fn fn, void *arg)
{
    cs_err *err = NULL;
    if (!a || !fn || !name || !name[0] || strlen(name) > MAX_CHECK_NAME)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "admin check \"%s\": needs a name of 1 to %d bytes and a function",
                          name ? name : "(null)", MAX_CHECK_NAME);
    if (!probes || (probes & ~(unsigned)(CS_ADMIN_LIVENESS | CS_ADMIN_READINESS)))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "admin check \"%s\": probes must be CS_ADMIN_LIVENESS and/or CS_ADMIN_READINESS",
                          name);
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->n_checks; i++) {
        if ((a->checks[i].probes & probes) && strcmp(a->checks[i].name, name) == 0) {
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "admin check \"%s\": already registered for that probe",
                             name);
            goto cleanup;
        }
    }
    if (a->n_checks >= CS_ADMIN_MAX_CHECKS) {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "admin check \"%s\": at most %d checks", name,
                         CS_ADMIN_MAX_CHECKS);
        goto cleanup;
    }
    check *c = &a->checks[a->n_checks++];
    c->probes = probes;
    memcpy(c->name, name, strlen(name) + 1);
    c->fn = fn;
    c->arg = arg;
cleanup:
    pthread_mutex_unlock(&a->lock);
    return err;
}

cs_err *cs_admin_start(cs_admin *a, const char *listen)
{
    cs_err *err = NULL;
    struct addrinfo *res = NULL;
    char host[MAX_LISTEN + 1], port[8];

    if (!a)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "admin endpoint: start needs an endpoint from cs_admin_new()");
    if (a->daemon)
        return cs_err_new(CS_ERR_STATE, 0, "admin endpoint: already listening on %s", a->address);
    err = parse_listen(listen, host, sizeof(host), port, sizeof(port));
    if (err)
        goto cleanup;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "%s \"%s\": cannot resolve host \"%s\": %s; give an IP address or a resolvable name",
                         LISTEN_KEY, listen, host, gai_strerror(gai));
        goto cleanup;
    }
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    a->last_mhd_error[0] = '\0';
    /* The port argument is ignored with MHD_OPTION_SOCK_ADDR but shows in MHD's own messages. */
    a->daemon = MHD_start_daemon(flags, (uint16_t)strtoul(port, NULL, 10), NULL, NULL, handle, a,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a, MHD_OPTION_SOCK_ADDR, res->ai_addr,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CS_ADMIN_CONNECTION_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CS_ADMIN_TIMEOUT_SECONDS,
                                 MHD_OPTION_END);
    if (!a->daemon) {
        int e = probe_bind(res->ai_addr, res->ai_addrlen);
        pthread_mutex_lock(&a->log_lock);
        if (e == EADDRINUSE)
            err = cs_err_new(
                CS_ERR_IO, 0,
                "admin endpoint: cannot listen on %s: %s (something else listens there); stop it, or set %s "
                "to a free address (\"127.0.0.1:0\" picks any free port)",
                listen, strerror(e), LISTEN_KEY);
        else
            err = cs_err_new(CS_ERR_IO, 0,
                             "admin endpoint: cannot listen on %s: %s; check %s (libmicrohttpd: %s)", listen,
                             e ? strerror(e) : "libmicrohttpd failed to start", LISTEN_KEY,
                             a->last_mhd_error[0] ? a->last_mhd_error : "no message");
        pthread_mutex_unlock(&a->log_lock);
        goto cleanup;
    }
    a->port = bound_port(a->daemon);
    if (host[0] && strchr(host, ':'))
        snprintf(a->address, sizeof(a->address), "[%s]:%u", host, (unsigned)a->port);
    else
        snprintf(a->address, sizeof(a->address), "%s:%u", host[0] ? host : "*", (unsigned)a->port);
    cs_log_kv(CS_LOG_INFO, "admin", "admin endpoint listening", "address", a->address, NULL);
cleanup:
    if (res)
        freeaddrinfo(res);
    return err;
}

uint16_t cs_admin_port(const cs_admin *a)
{
    return a ? a->port : 0;
}

void cs_admin_stop(cs_admin *a)
{
    if (!a)
        return;
    if (a->daemon) {
        MHD_stop_daemon(a->daemon); /* closes connections, joins the server thread */
        a->daemon = NULL;
        cs_log_kv(CS_LOG_INFO, "admin", "admin endpoint stopped", "address", a->address, NULL);
    }
    pthread_mutex_destroy(&a->log_lock);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
