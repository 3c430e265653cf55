#include "cs_cli.h"

#include <stdio.h>
#include <string.h>

#include "cs_log.h"

static void usage(const cs_cli_spec *spec, FILE *out)
{
    fprintf(out,
            "%s %s: %s\n\n"
            "Usage: %s --config FILE [--check-config]\n"
            "       %s --help | --help-config | --version\n\n"
            "  --config FILE    YAML config file (required to run)\n"
            "  --check-config   load and check FILE, its secret files and kafka.* properties, print\n"
            "                   \"config ok: FILE\" and exit 0, or print every error and exit 2\n"
            "  --help-config    list every config key with its type, default, range and meaning\n"
            "  --help           this text\n"
            "  --version        print the version\n",
            spec->program, spec->version, spec->summary, spec->program, spec->program);
    for (size_t i = 0; spec->flags && i < CS_CLI_MAX_FLAGS && spec->flags[i].name; i++)
        fprintf(out, "  %-16s %s\n", spec->flags[i].name, spec->flags[i].help ? spec->flags[i].help : "");
    if (!spec->commands || !spec->commands[0].name)
        return;
    fprintf(out, "\nCommands: %s --config FILE <command> [arguments]\n", spec->program);
    for (size_t i = 0; i < CS_CLI_MAX_COMMANDS && spec->commands[i].name; i++) {
        const cs_cli_command *c = &spec->commands[i];
        fprintf(out, "  %s%s%s\n", c->name, c->synopsis && *c->synopsis ? " " : "",
                c->synopsis ? c->synopsis : "");
        /* Each help line indented, so multi-line help reads as one block. */
        for (const char *p = c->help ? c->help : ""; *p;) {
            size_t len = strcspn(p, "\n");
            fprintf(out, "      %.*s\n", (int)len, p);
            p += len + (p[len] == '\n');
        }
    }
}

static int find_command(const cs_cli_spec *spec, const char *name)
{
    for (size_t i = 0; spec->commands && i < CS_CLI_MAX_COMMANDS && spec->commands[i].name; i++)
        if (strcmp(spec->commands[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int find_flag(const cs_cli_spec *spec, const char *name)
{
    for (size_t i = 0; spec->flags && i < CS_CLI_MAX_FLAGS && spec->flags[i].name; i++)
        if (strcmp(spec->flags[i].name, name) == 0)
            return (int)i;
    return -1;
}

int cs_cli_parse(const cs_cli_spec *spec, int argc, char **argv, cs_cli_args *args)
{
    memset(args, 0, sizeof(*args));
    args->command = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = a[0] == '-' ? find_flag(spec, a) : -1;
        if (a[0] != '-' && spec->commands) {
            k = find_command(spec, a);
            if (k < 0) {
                fprintf(stderr, "%s: unknown command \"%s\" (try --help for the list)\n", spec->program, a);
                return CS_CLI_EXIT_FAIL;
            }
            /* Everything after the command is the command's own. */
            args->command = k;
            args->command_argc = argc - i - 1;
            args->command_argv = argv + i + 1;
            break;
        }
        if (k >= 0) {
            args->flag_set[k] = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(spec, stdout);
            return CS_CLI_EXIT_OK;
        } else if (strcmp(a, "--help-config") == 0) {
            return cs_config_render_help(spec->config, stdout) ? CS_CLI_EXIT_OK : CS_CLI_EXIT_FAIL;
        } else if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", spec->program, spec->version);
            return CS_CLI_EXIT_OK;
        } else if (strcmp(a, "--check-config") == 0) {
            args->check_config = true;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a file name (try --help)\n", spec->program, a);
                return CS_CLI_EXIT_FAIL;
            }
            args->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            args->config_path = a + 9;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\" (try --help)\n", spec->program, a);
            return CS_CLI_EXIT_FAIL;
        }
    }
    if (!args->config_path || !*args->config_path) {
        fprintf(stderr, "%s: --config FILE is required (try --help, or --help-config for the keys)\n",
                spec->program);
        return CS_CLI_EXIT_FAIL;
    }
    return -1;
}

/* Writes each line of `text` (errors hold one problem per line) to stderr or as a JSON log line. */
static void each_line(const char *text, bool to_stderr, cs_log_level level)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        int len = (int)(nl ? (size_t)(nl - p) : strlen(p));
        if (to_stderr)
            fprintf(stderr, "%.*s\n", len, p);
        else
            cs_log(level, "config", "%.*s", len, p);
        p += len + (nl ? 1 : 0);
    }
}

int cs_cli_report_load(const cs_cli_args *args, cs_err *err, const cs_config *warnings)
{
    for (size_t i = 0; warnings && i < cs_config_warning_count(warnings); i++) {
        if (args->check_config)
            fprintf(stderr, "warning: %s\n", cs_config_warning_at(warnings, i));
        else
            cs_log_warn("config", "%s", cs_config_warning_at(warnings, i));
    }
    if (err) {
        each_line(cs_err_message(err), args->check_config, CS_LOG_ERROR);
        cs_err_free(err);
        return CS_CLI_EXIT_FAIL;
    }
    if (args->check_config) {
        printf("config ok: %s\n", args->config_path);
        return fflush(stdout) == 0 ? CS_CLI_EXIT_OK : CS_CLI_EXIT_FAIL;
    }
    return -1;
}
