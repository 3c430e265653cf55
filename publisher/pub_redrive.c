/*
 * pub_redrive: dead letters back through the version gate (see pub_redrive.h).
 */
#include "pub_redrive.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cs_log.h"
#include "pub_cmd.h"
#include "pub_latest.h"
#include "pub_replay.h"

int pub_redrive_command(const pub_config *cfg, int argc, char **argv)
{
    bool dry_run = false;
    uint32_t reasons = 0;
    int rc = PUB_CMD_EXIT_FAIL;
    pub_latest *set = NULL;
    pub_o365 *o = NULL;
    cs_err *err = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = true;
        } else if (strcmp(argv[i], "--reason") == 0) {
            Certsync__V1__DeadLetterReason r;
            if (i + 1 >= argc)
                return pub_cmd_usage("redrive", "--reason needs a value");
            if (!pub_latest_reason_parse(argv[++i], &r))
                return pub_cmd_usage("redrive",
                                     "--reason \"%s\" is not one of recipient_not_found, write_scope, "
                                     "nothing_valid, rejected, undecodable",
                                     argv[i]);
            reasons |= 1u << (unsigned)r;
        } else {
            return pub_cmd_usage("redrive", "unknown argument \"%s\"", argv[i]);
        }
    }
    if (!reasons)
        reasons = ~(1u << CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNDECODABLE);
    err = pub_latest_read_dead_letters(cfg, reasons, &set);
    if (!err && !dry_run)
        err = pub_cmd_o365(cfg, &o);
    if (err) {
        rc = pub_cmd_fail("redrive", err);
        goto cleanup;
    }
    cs_log_info("redrive",
                "read %s to its last stable offset: %" PRIu64
                " dead letters, %zu objects to redrive, %" PRIu64 " left out by --reason, %" PRIu64
                " without a decodable event",
                cfg->topic_dlq, set->records, set->n, set->filtered, set->undecodable);
    pub_replay_opts opts = {.command = "redrive", .force = false, .dry_run = dry_run};
    pub_replay_counts c;
    err = pub_replay_apply(cfg, o, set, &opts, &c, stdout);
    if (err) {
        rc = pub_cmd_fail("redrive", err);
        goto cleanup;
    }
    printf("redrive%s: %" PRIu64 " objects: %" PRIu64 " written, %" PRIu64 " cleared, %" PRIu64
           " skipped (stale), %" PRIu64 " skipped (duplicate), %" PRIu64 " nothing valid, %" PRIu64
           " failed%s\n",
           dry_run ? " --dry-run" : "", c.objects, c.written, c.cleared, c.skipped_stale, c.skipped_duplicate,
           c.nothing_valid, c.failed, dry_run ? "; nothing was written" : "");
    rc = c.failed || c.nothing_valid ? PUB_CMD_EXIT_PROBLEMS : PUB_CMD_EXIT_OK;
cleanup:
    pub_o365_free(o);
    pub_latest_free(set);
    return rc;
}
