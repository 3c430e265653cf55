/*
 * cs_admin: the admin HTTP endpoint both services run (libmicrohttpd).
 *
 *   GET /healthz  liveness: 200 {"status":"ok","checks":{...}}
 *                 or 503 {"status":"fail","checks":{"kafka":"<reason>"}}
 *   GET /readyz   readiness: same shape, from the readiness checks
 *   GET /metrics  the cs_metrics registry, text format 0.0.4, then (when any
 *                 check is registered) each check's verdict as
 *                 certsync_probe_check_passing{probe="readiness",check="kafka"} 1|0
 *
 * HEAD is answered like GET without a body; other methods get 405 with
 * "Allow: GET, HEAD"; other paths 404, both with a JSON body. The server runs
 * one internal thread with a bounded number of connections and an idle
 * timeout, so a stuck or slow client cannot hold it forever.
 *
 *   cs_admin *admin = NULL;
 *   err = cs_admin_new(metrics, &admin);
 *   err = cs_admin_add_check(admin, CS_ADMIN_READINESS, "kafka", kafka_ready, producer);
 *   err = cs_admin_start(admin, cfg->admin_listen);      ("127.0.0.1:9090")
 *   ...
 *   cs_admin_stop(admin);                                (stops and frees)
 */
#ifndef CS_ADMIN_H
#define CS_ADMIN_H

#include <stdint.h>

#include "cs_err.h"
#include "cs_metrics.h"

#define CS_ADMIN_MAX_CHECKS 32       /* checks per endpoint */
#define CS_ADMIN_CONNECTION_LIMIT 32 /* concurrent connections */
#define CS_ADMIN_TIMEOUT_SECONDS 10  /* idle connections are closed after this */

/* The gauge /metrics adds with one series per (probe, check): 1 passing, 0 failing. */
#define CS_ADMIN_CHECK_METRIC "certsync_probe_check_passing"

typedef struct cs_admin cs_admin;

/* Which probe(s) a check answers; OR them to register one check for both. */
#define CS_ADMIN_LIVENESS 0x1
#define CS_ADMIN_READINESS 0x2

/*
 * A check: NULL means passing; an error means failing, and its message is
 * the reason shown on the probe (the admin endpoint frees it). Runs on the
 * server thread, once per probe request, so it must be quick and thread-safe
 * (typically it reads an atomic flag or a timestamp the service keeps).
 */
typedef cs_err *(*cs_admin_check_fn)(void *arg);

/*
 * Creates a stopped endpoint serving `metrics` (may be NULL: /metrics then
 * answers 404). The registry must outlive the endpoint. Caller frees with
 * cs_admin_stop().
 */
cs_err *cs_admin_new(cs_metrics *metrics, cs_admin **out);

/*
 * Adds a named check to the liveness and/or readiness probe. Names are 1 to
 * 64 bytes and unique per probe; at most CS_ADMIN_MAX_CHECKS. Allowed before
 * and after start.
 */
cs_err *cs_admin_add_check(cs_admin *admin, unsigned probes, const char *name, cs_admin_check_fn fn,
                           void *arg);

/*
 * Starts serving on `listen` ("host:port", "[v6addr]:port"; port 0 picks a
 * free port, see cs_admin_port()). A port in use or a bad address returns an
 * error naming the address and the admin.listen key.
 */
cs_err *cs_admin_start(cs_admin *admin, const char *listen);

/* The bound TCP port, 0 when not started. */
uint16_t cs_admin_port(const cs_admin *admin);

/*
 * Stops the server (closing open connections and waiting for a request being
 * answered to finish) and frees the endpoint. NULL is allowed; works whether
 * or not it was started. Call it from the thread that owns the endpoint, never
 * from a check.
 */
void cs_admin_stop(cs_admin *admin);

#endif
