/*
 * certsync-collector: directory changes to Kafka.
 *
 * Parses the command line (the shared options of cs_cli plus the collector's --once and --release-held),
 * loads and checks the config (--check-config stops there), installs SIGTERM/SIGINT handlers that only set
 * a flag, and runs the service loop (col_service). Exit codes: see col_service.h and --help.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "col_config.h"
#include "col_service.h"
#include "cs_secret.h"
#include "cs_cli.h"
#include "cs_log.h"

#ifndef CS_PROGRAM_VERSION
#define CS_PROGRAM_VERSION "unknown"
#endif

/* Most arguments accepted: the command line is short; this bounds the filtered copy. */
#define MAX_ARGS 64

static volatile sig_atomic_t stop_flag;

/* Only sets the flag: the loop commits the open batch and returns. */
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void collector_help(void)
{
    printf(
        "\nCollector options:\n"
        "  --once                one pass: snapshot if needed, then changes until caught up; commit, exit 0\n"
        "  --release-held [KEY]  release events held by the mass-removal guard (KEY = "
        "\"<source>/<object>\";\n"
        "                        without KEY, all of them) into the events topic, then exit\n\n"
        "Exit codes:\n"
        "  0  stopped by SIGTERM/SIGINT (open batch committed), --once done, --release-held done\n"
        "  2  configuration, directory or Kafka error, or a missing directory right (DirSync without\n"
        "     Replicating Directory Changes: the message names the fix)\n"
        "  3  fenced: a newer collector with the same source.id took over (do not restart in a loop)\n"
        "  4  stopped while a Kafka commit was pending (Kafka unavailable): nothing new committed, nothing\n"
        "     lost; the next start resumes from the committed checkpoint\n"
        "  5  a Kafka credential file (kafka.*_file) changed: the open batch is committed; librdkafka "
        "cannot\n"
        "     change a credential on a live client, so restart to use it (Kubernetes does)\n"
        "  6  lease lost: the Kubernetes election lease could not be renewed for renew_deadline; the open\n"
        "     transaction was aborted; restart (Kubernetes does) to come back as a standby\n\n"
        "Secrets: ldap.password_file and kafka.*_file are compared every few seconds and on SIGHUP; a new\n"
        "LDAP password is used at once (the collector reconnects and resumes from its position).\n"
        "Replicas: with election.mode: lockfile or kubernetes-lease a replica that loses the election\n"
        "waits as a standby "
        "(live, not ready, Kafka untouched) and takes over when the active one dies; --release-held\n"
        "does not take part in the election.\n");
}

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
    col_service_opts opts = {.stop_flag = &stop_flag};
    char *rest[MAX_ARGS + 1];
    int n_rest = 0;
    bool help = false;

    if (argc > MAX_ARGS) {
        fprintf(stderr, "certsync-collector: too many arguments (at most %d; try --help)\n", MAX_ARGS);
        return CS_CLI_EXIT_FAIL;
    }
    /* Take the collector's own options out; cs_cli parses the rest. */
    rest[n_rest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0) {
            opts.once = true;
        } else if (strcmp(argv[i], "--release-held") == 0) {
            opts.release_held = true;
            if (i + 1 < argc && strncmp(argv[i + 1], "-", 1) != 0)
                opts.release_key = argv[++i];
        } else {
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
                help = true;
            rest[n_rest++] = argv[i];
        }
    }
    rest[n_rest] = NULL;
    int rc = cs_cli_parse(&cli, n_rest, rest, &args);
    if (rc >= 0) {
        if (help && rc == CS_CLI_EXIT_OK)
            collector_help();
        return rc;
    }
    if (opts.once && opts.release_held) {
        fprintf(stderr,
                "certsync-collector: --once and --release-held cannot be combined; run them one after "
                "the other\n");
        return CS_CLI_EXIT_FAIL;
    }

    cs_err *err = col_config_load(args.config_path, &cfg);
    rc = cs_cli_report_load(&args, err, cfg ? cfg->raw : NULL);
    if (rc >= 0)
        goto cleanup;

    cs_log_set_level(cfg->log_level);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    cs_secret_install_sighup(); /* SIGHUP: compare the secret files now (cs_secret.h) */
    signal(SIGPIPE, SIG_IGN);   /* a closed socket is an error value, not a dead process */

    cs_log_kv(CS_LOG_INFO, "main", "starting", "version", CS_PROGRAM_VERSION, "config", args.config_path,
              "source_id", cfg->source_id, NULL);
    rc = col_service_run(cfg, &opts);
    cs_log(CS_LOG_INFO, "main", "exiting with code %d", rc);
cleanup:
    col_config_free(cfg);
    return rc;
}
