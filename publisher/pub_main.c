/*
 * certsync-publisher: Kafka to Office 365.
 *
 *   certsync-publisher --config FILE [--once]                  run the service (pub_service.h: exit codes)
 *   certsync-publisher --config FILE replay|redrive|preflight|readiness ...   a command (pub_cmd.h: exit codes)
 *   certsync-publisher --config FILE --check-config | --help | --help-config | --version
 *
 * --once consumes until caught up with the end of topics.events, commits and exits 0 (tests, one-shot runs).
 * Commands log to stderr, so stdout carries only their report.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cs_cli.h"
#include "cs_log.h"
#include "pub_config.h"
#include "pub_preflight.h"
#include "pub_readiness_cmd.h"
#include "pub_redrive.h"
#include "pub_replay.h"
#include "pub_service.h"

#ifndef CS_PROGRAM_VERSION
#define CS_PROGRAM_VERSION "unknown"
#endif

enum { CMD_REPLAY, CMD_REDRIVE, CMD_PREFLIGHT, CMD_READINESS };

static const cs_cli_flag flags[] = {
    {"--once", "run the service until caught up with the events topic, commit and exit 0"},
    {NULL, NULL},
};

/* Order matches the enum above. */
static const cs_cli_command commands[] = {
    {"replay", "[--from-beginning | --from-time ISO8601] [--dry-run]",
     "re-apply the newest event of every object in the events topic, up to its end now, even where the\n"
     "applied state says done (a restored or emptied tenant); never over a newer applied version.\n"
     "--from-time: only events at or after the time (YYYY-MM-DDThh:mm:ssZ). --dry-run: read what\n"
     "Exchange holds and print per object what would change (write/clear/none/not_found), write nothing.\n"
     "Exit 0 done (dry run: nothing to change), 1 some objects failed or differ, 2 could not run."},
    {"redrive", "[--reason R]... [--dry-run]",
     "apply the dead letters again through the version gate (e.g. after a missing recipient appeared or\n"
     "write scope was fixed). R: recipient_not_found, write_scope, nothing_valid, rejected (default: all\n"
     "but undecodable). --dry-run: print the decisions, write nothing. Exit 1 when some fail again."},
    {"preflight", "",
     "count writable, unwritable (write scope) and unknown (not found) recipients of the objects in the\n"
     "events topic, with the fix for each class; read-only. Exit 1 when any is not writable."},
    {"readiness", "[--csv]",
     "per user, what Outlook will find after sync and why encryption would fail (expired, expiring_soon,\n"
     "address_mismatch, no_usable_certificate, over_15_values, ok): a table or CSV on stdout.\n"
     "Exit 1 when any user is not ok."},
    {NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    const cs_cli_spec cli = {
        .program = "certsync-publisher",
        .summary = "applies certificate changes from Kafka to Office 365 (Exchange Online)",
        .version = CS_PROGRAM_VERSION,
        .config = pub_config_spec(),
        .flags = flags,
        .commands = commands,
    };
    cs_cli_args args;
    pub_config *cfg = NULL;
    int rc = cs_cli_parse(&cli, argc, argv, &args);
    if (rc >= 0) {
        /* cs_cli prints the generic help; the service's exit codes are ours to add. */
        for (int i = 1; rc == CS_CLI_EXIT_OK && i < argc; i++)
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                fputs("\n" PUB_SERVICE_EXIT_HELP, stdout);
                break;
            }
        return rc;
    }
    if (args.command >= 0 && (args.check_config || args.flag_set[0])) {
        fprintf(stderr,
                "certsync-publisher: --check-config and --once do not go with the %s command (try --help)\n",
                commands[args.command].name);
        return CS_CLI_EXIT_FAIL;
    }
    /* Commands keep stdout for their report. */
    if (args.command >= 0)
        cs_log_set_output(stderr);

    cs_err *err = pub_config_load(args.config_path, &cfg);
    rc = cs_cli_report_load(&args, err, cfg ? cfg->raw : NULL);
    if (rc >= 0)
        goto cleanup;

    cs_log_set_level(cfg->log_level);
    switch (args.command) {
    case CMD_REPLAY:
        rc = pub_replay_command(cfg, args.command_argc, args.command_argv);
        break;
    case CMD_REDRIVE:
        rc = pub_redrive_command(cfg, args.command_argc, args.command_argv);
        break;
    case CMD_PREFLIGHT:
        rc = pub_preflight_command(cfg, args.command_argc, args.command_argv);
        break;
    case CMD_READINESS:
        rc = pub_readiness_command(cfg, args.command_argc, args.command_argv);
        break;
    default: {
        pub_service_opts so = {.once = args.flag_set[0], .version = CS_PROGRAM_VERSION};
        rc = pub_service_run(cfg, &so);
        break;
    }
    }
cleanup:
    fflush(stdout);
    pub_config_free(cfg);
    return rc;
}
