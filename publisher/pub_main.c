/*
 * certsync-publisher: Kafka to Office 365.
 *
 *   certsync-publisher --config FILE [--once]     run the service (pub_service.h: exit codes)
 *   certsync-publisher --config FILE --check-config | --help | --help-config | --version
 *
 * --once consumes until caught up with the end of topics.events, commits and exits 0 (tests, replays).
 * It is taken out of argv here; everything else is cs_cli's.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cs_cli.h"
#include "cs_log.h"
#include "pub_config.h"
#include "pub_service.h"

#ifndef CS_PROGRAM_VERSION
#define CS_PROGRAM_VERSION "unknown"
#endif

#define MAX_ARGS 64

int main(int argc, char **argv)
{
    const cs_cli_spec cli = {
        .program = "certsync-publisher",
        .summary = "applies certificate changes from Kafka to Office 365 (Exchange Online); "
                   "--once: stop when caught up with the events topic",
        .version = CS_PROGRAM_VERSION,
        .config = pub_config_spec(),
    };
    cs_cli_args args;
    pub_config *cfg = NULL;
    char *rest[MAX_ARGS + 1];
    int n = 0;
    bool once = false;
    if (argc > MAX_ARGS) {
        fprintf(stderr, "certsync-publisher: too many arguments (%d): see --help\n", argc);
        return CS_CLI_EXIT_FAIL;
    }
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--once") == 0)
            once = true;
        else
            rest[n++] = argv[i];
    }
    rest[n] = NULL;
    int rc = cs_cli_parse(&cli, n, rest, &args);
    if (rc >= 0)
        return rc;

    cs_err *err = pub_config_load(args.config_path, &cfg);
    rc = cs_cli_report_load(&args, err, cfg ? cfg->raw : NULL);
    if (rc >= 0)
        goto cleanup;

    cs_log_set_level(cfg->log_level);
    pub_service_opts so = {.once = once, .version = CS_PROGRAM_VERSION};
    rc = pub_service_run(cfg, &so);
cleanup:
    pub_config_free(cfg);
    return rc;
}
