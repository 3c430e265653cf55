/*
 * cs_cli: the command line both services share.
 *
 *   certsync-<service> --config FILE [--check-config] [<flag>...] [<command> [<command args>...]]
 *   certsync-<service> --help | --help-config | --version
 *
 * A service may declare boolean flags of its own (e.g. --once) and commands (e.g. replay): both are listed
 * in --help. Parsing stops at the command; its own arguments are left for the service to parse.
 *
 * Kept apart from the services' main() so each main stays a few lines long.
 */
#ifndef CS_CLI_H
#define CS_CLI_H

#include <stdbool.h>

#include "cs_config.h"

/* Exit codes: 0 success (and --help / --version), 2 anything that stops the service. */
#define CS_CLI_EXIT_OK 0
#define CS_CLI_EXIT_FAIL 2

/* At most this many service flags and commands. */
#define CS_CLI_MAX_FLAGS 8
#define CS_CLI_MAX_COMMANDS 16

/* A service-specific boolean option ("--once") with its one-line help. */
typedef struct cs_cli_flag {
    const char *name;
    const char *help;
} cs_cli_flag;

/* A command: its name, its synopsis ("[--dry-run]") and help (may span lines, each indented by the caller). */
typedef struct cs_cli_command {
    const char *name;
    const char *synopsis;
    const char *help;
} cs_cli_command;

typedef struct cs_cli_spec {
    const char *program; /* "certsync-collector" */
    const char *summary; /* one line saying what the service does */
    const char *version;
    const cs_config_spec *config;   /* for --help-config */
    const cs_cli_flag *flags;       /* NULL or terminated by {NULL}; at most CS_CLI_MAX_FLAGS */
    const cs_cli_command *commands; /* NULL or terminated by {NULL}; at most CS_CLI_MAX_COMMANDS */
} cs_cli_spec;

typedef struct cs_cli_args {
    const char *config_path; /* points into argv */
    bool check_config;
    bool flag_set[CS_CLI_MAX_FLAGS]; /* by index into spec->flags */
    int command;                     /* index into spec->commands, -1 when none was given */
    int command_argc;                /* the command's own arguments (after its name) */
    char **command_argv;             /* points into argv; NULL-terminated when argv is */
} cs_cli_args;

/*
 * Parses argv. Returns -1 when the service should carry on with *args filled in; otherwise the
 * process exit code: --help, --help-config and --version print to stdout and give 0; a usage
 * error prints to stderr and gives 2.
 */
int cs_cli_parse(const cs_cli_spec *spec, int argc, char **argv, cs_cli_args *args);

/*
 * Reports the outcome of loading the config and returns the exit code to use when it failed, or -1
 * when it loaded and the service should continue.
 *  - With --check-config: warnings and errors go to stderr one per line; success prints
 *    "config ok: FILE" to stdout and returns 0, failure returns 2.
 *  - Without: warnings and errors are JSON log lines (facility "config"); failure returns 2.
 * `warnings` may be NULL. Takes ownership of `err`.
 */
int cs_cli_report_load(const cs_cli_args *args, cs_err *err, const cs_config *warnings);

#endif
