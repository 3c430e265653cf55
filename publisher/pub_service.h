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
 * instance owns an events partition with its applied state restored and no restore is running ("kafka"),
 * no Kafka commit is pending ("commit"), and a token was obtained ("token"). The gauge
 * certsync_publisher_ready mirrors /readyz (1 ready), certsync_publisher_commit_pending is 1 while a commit
 * is being resumed; a stop then exits with PUB_SERVICE_EXIT_COMMIT_PENDING.
 *
 * Signals: SIGTERM and SIGINT only set a flag; the loop finishes (commits) or aborts the batch in hand and
 * then shuts down in order. SIGPIPE is ignored (a scraper that hangs up must not kill the service).
 *
 * Test-only fault hook, read from the environment at start (documented so replays of a crash are easy):
 *   CERTSYNC_PUB_FAULT=kill_before_commit   after the Office 365 writes of a batch and everything of its
 *                                           transaction is produced, before the commit: SIGKILL ourselves.
 *   CERTSYNC_PUB_FAULT_SKIP=N               let the first N batches through (default 0).
 *   CERTSYNC_PUB_FAULT=pause_before_commit  with CERTSYNC_PUB_FAULT_DIR=D: at the same point of every batch,
 *                                           create D/before_commit and wait (at most 60 s) for D/go.
 *   CERTSYNC_PUB_FAULT=kill_mid_commit      at the same point, arm a SIGKILL CERTSYNC_PUB_FAULT_DELAY_US
 *                                           (default 2000) later and start the commit: killed with the
 *                                           commit request on the wire (or just after it completed).
 *   CERTSYNC_PUB_FAULT=kill_in_restore      SIGKILL in the assign callback while reading the applied-state
 *                                           topic (at a state record: needs one to exist).
 *   CERTSYNC_PUB_FAULT=kill_in_revoke       SIGKILL on entering the revoke callback (a rebalance or the
 *                                           close at shutdown), before the applier is quiesced.
 *   CERTSYNC_PUB_FAULT=random:S:P           seed S, probability P (0..1): draws once whether this process
 *                                           kills itself (P), then one of the four kill points above, a
 *                                           number of visits to let through (0-2) and a mid-commit delay
 *                                           (0-20 ms). Each kill logs "fault injection: SIGKILL" and the point.
 * CERTSYNC_PUB_FAULT_SKIP applies to every named kill point (visits let through).
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
#define PUB_SERVICE_EXIT_RESTART 5 /* a Kafka credential file changed: stopped cleanly, restart to use it */
/* Stopped (SIGTERM/SIGINT) while a Kafka commit was pending because Kafka did not answer: nothing new was
 * committed and nothing is lost; the next start resumes from the committed offsets. */
#define PUB_SERVICE_EXIT_COMMIT_PENDING 4

/* The exit codes above as --help text (pub_main prints it). */
#define PUB_SERVICE_EXIT_HELP                                                                                \
    "Exit codes of the service:\n"                                                                           \
    "  0  stopped by SIGTERM/SIGINT (batch in hand committed), or --once caught up\n"                        \
    "  1  a fatal error while running (Kafka, Office 365 credentials)\n"                                     \
    "  2  could not start: admin.listen, topics, credentials, Kafka config\n"                                \
    "  3  fenced: a newer instance with the same publisher.instance_id took over (do not restart in a "      \
    "loop)\n"                                                                                                \
    "  4  stopped while a Kafka commit was pending (Kafka unavailable): nothing new committed, nothing\n"    \
    "     lost; the next start resumes from the committed offsets\n"

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
