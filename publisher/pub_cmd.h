/*
 * pub_cmd: what the publisher's commands (replay, redrive, preflight, readiness) share: argument parsing
 * helpers, the Office 365 client set-up, and the report output.
 *
 * Commands log JSON lines to stderr (cs_log_set_output) so stdout carries only the report: a table or CSV a
 * person or a script reads. Exit codes: PUB_CMD_EXIT_OK, PUB_CMD_EXIT_PROBLEMS (the command ran and found or
 * left something to fix: listed in the report), PUB_CMD_EXIT_FAIL (could not run: bad arguments, config,
 * Kafka or credentials).
 */
#ifndef PUB_CMD_H
#define PUB_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "cs_err.h"
#include "pub_config.h"
#include "pub_o365.h"

#define PUB_CMD_EXIT_OK 0
#define PUB_CMD_EXIT_PROBLEMS 1
#define PUB_CMD_EXIT_FAIL 2

/*
 * Parses an ISO 8601 UTC or offset time ("2024-05-01T10:00:00Z", "2024-05-01T12:00:00.5+02:00",
 * "2024-05-01" = midnight UTC) into unix milliseconds. CS_ERR_INVALID_INPUT names the text and the form.
 */
cs_err *pub_cmd_parse_time(const char *text, int64_t *out_ms);

/* Builds the Office 365 client from `cfg` and obtains a token (credential problems show now).
 * Caller frees *out with pub_o365_free(). */
cs_err *pub_cmd_o365(const pub_config *cfg, pub_o365 **out);

/* Prints "<program> <command>: <message>" to stderr for a usage error and returns PUB_CMD_EXIT_FAIL. */
int pub_cmd_usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs `err` (and frees it) as the reason the command failed; returns PUB_CMD_EXIT_FAIL. */
int pub_cmd_fail(const char *command, cs_err *err);

#endif
