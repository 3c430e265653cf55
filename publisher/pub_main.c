/*
 * certsync-publisher: Kafka to Office 365.
 *
 * For now: parse the command line, load and check the config (--check-config stops there), then say
 * that the service loop is not built yet. The publisher issue grows the loop here.
 */
#include <stdio.h>

#include "pub_config.h"
#include "cs_cli.h"
#include "cs_log.h"

#ifndef CS_PROGRAM_VERSION
#define CS_PROGRAM_VERSION "unknown"
#endif

int main(int argc, char **argv)
{
    const cs_cli_spec cli = {
        .program = "certsync-publisher",
        .summary = "applies certificate changes from Kafka to Office 365 (Exchange Online)",
        .version = CS_PROGRAM_VERSION,
        .config = pub_config_spec(),
    };
    cs_cli_args args;
    pub_config *cfg = NULL;
    int rc = cs_cli_parse(&cli, argc, argv, &args);
    if (rc >= 0)
        return rc;

    cs_err *err = pub_config_load(args.config_path, &cfg);
    rc = cs_cli_report_load(&args, err, cfg ? cfg->raw : NULL);
    if (rc >= 0)
        goto cleanup;

    cs_log_set_level(cfg->log_level);
    cs_log_kv(CS_LOG_ERROR, "main", "the publisher service loop is not implemented yet", "config",
              args.config_path, "instance_id", cfg->instance_id, NULL);
    rc = CS_CLI_EXIT_FAIL;
cleanup:
    pub_config_free(cfg);
    return rc;
}
