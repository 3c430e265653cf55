/*
 * pub_service: the running publisher. Joins the Office 365 side (pub_o365) and the Kafka side
 * (pub_pipeline) behind the admin endpoint, and runs the batch loop until told to stop.
 *
 *   config -> metrics + admin endpoint (admin.listen: /healthz, /readyz, /metrics)
 *          -> pub_o365 (the applier) -> token warm-up -> pub_pipeline (fences, subscribes)
 *          -> loop pub_pipeline_run_once() until SIGTERM/SIGINT, --once caught up, or a fatal error
 *          -> pub_pipeline_destroy() (revoke: quiesce the applier, abort; close the consumer) -> exit.
 *
 * Probes: /healthz fails when the loop has not turned for PUB_SERVICE_STALL_MS; /readyz passes once this
 * instance owns an events partition with its applied state restored ("kafka") and a token was obtained
 * ("token").
 *
 * Signals: SIGTERM and SIGINT only set a flag; the loop finishes (commits) or aborts the batch in hand and
 * then shuts down in order. SIGPIPE is ignored (a scraper that hangs up must not kill the service).
 *
 * Test-only fault hook, read from the environment at start (documented so replays of a crash are easy):
 *   CERTSYNC_PUB_FAULT=kill_before_commit   after the Office 365 writes of a batch and everything of its
 *                                           transaction is produced, before the commit: SIGKILL ourselves.
 *   CERTSYNC_PUB_FAULT_SKIP=N               let the first N batches through (default 0).
 */
#ifndef PUB_SERVICE_H
#define PUB_SERVICE_H

#include <stdbool.h>

#include "pub_config.h"

/* Exit codes of the service (main returns them). 2 is cs_cli's CS_CLI_EXIT_FAIL. */
#define PUB_SERVICE_EXIT_OK 0      /* stopped by SIGTERM/SIGINT, or --once caught up */
#define PUB_SERVICE_EXIT_RUNTIME 1 /* a fatal error while running (Kafka, Office 365 credentials) */
#define PUB_SERVICE_EXIT_STARTUP 2 /* could not start: admin.listen, topics, credentials, Kafka config */
#define PUB_SERVICE_EXIT_FENCED 3  /* a newer instance with the same publisher.instance_id took over */

/* /healthz fails when one loop turn takes longer than this. */
#define PUB_SERVICE_STALL_MS 300000

typedef struct pub_service_opts {
    bool once;           /* consume until caught up with the end of topics.events, commit, exit 0 */
    const char *version; /* for certsync_build_info */
} pub_service_opts;

/*
 * Runs the publisher with `cfg` (borrowed) until it stops; returns one of the PUB_SERVICE_EXIT_* codes.
 * Installs SIGTERM/SIGINT handlers for the duration of the call. Logs why it stopped.
 */
int pub_service_run(const pub_config *cfg, const pub_service_opts *opts);

#endif
