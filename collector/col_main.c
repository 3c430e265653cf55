/*
 * certsync-collector: directory changes to Kafka.
 *
 * For now: parse the command line, load and check the config (--check-config stops there), then say
 * that the service loop is not built yet. The collector issue grows the loop here.
 */
#include <stdio.h>

#include "col_config.h"
#include "cs_cli.h"
#include "cs_log.h"

#ifndef CS_PROGRAM_VERSION
#define CS_PROGRAM_VERSION "unknown"
#endif

int main(int argc, char **argv)
{
    const cs_cli_spec cli = {
        .program = "certsync-collector",
        .summary = "sends certificate changes from an LDAP / Active Directory to Kafka",
        .version = CS_PROGRAM_VERSION,
        .config = col_config_spec(),
    };
    cs_cli_args args;
    col_config *cfg = NULL;
    int rc = cs_cli_parse(&cli, argc, argv, &args);
    if (rc >= 0)
        return rc;

    cs_err *err = col_config_load(args.config_path, &cfg);
    rc = cs_cli_report_load(&args, err, cfg ? cfg->raw : NULL);
    if (rc >= 0)
        goto cleanup;

    cs_log_set_level(cfg->log_level);
    cs_log_kv(CS_LOG_ERROR, "main", "the collector service loop is not implemented yet", "config",
              args.config_path, "source_id", cfg->source_id, NULL);
    rc = CS_CLI_EXIT_FAIL;
cleanup:
    col_config_free(cfg);
    return rc;
}
