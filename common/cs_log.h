/*
 * cs_log: one JSON object per line on stdout, what Kubernetes log pipelines expect.
 *
 *   {"ts":"2026-11-28T15:42:05.123Z","level":"warn","facility":"kafka","msg":"...","key":"value"}
 *
 * Level-gated; thread-safe (each line is written with one locked write).
 */
#ifndef CS_LOG_H
#define CS_LOG_H

#include <stdio.h>

#include "cs_err.h"

typedef enum cs_log_level {
    CS_LOG_DEBUG = 0,
    CS_LOG_INFO,
    CS_LOG_WARN,
    CS_LOG_ERROR,
} cs_log_level;

/* Lines below `level` are dropped. Default: info. */
void cs_log_set_level(cs_log_level level);
cs_log_level cs_log_get_level(void);

/* Parses "debug", "info", "warn" or "error". */
cs_err *cs_log_level_parse(const char *name, cs_log_level *out);
const char *cs_log_level_name(cs_log_level level);

/* Where lines go (default stdout). Tests point it at a temporary file. NULL restores stdout. */
void cs_log_set_output(FILE *out);

/* Logs a printf-formatted message. */
void cs_log(cs_log_level level, const char *facility, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Logs a fixed message with extra string fields given as key, value pairs and
 * ended by NULL: cs_log_kv(CS_LOG_WARN, "cert", "unparseable value", "dn", dn, NULL).
 * A NULL value is written as JSON null.
 */
void cs_log_kv(cs_log_level level, const char *facility, const char *msg, ...) __attribute__((sentinel));

#define cs_log_debug(fac, ...) cs_log(CS_LOG_DEBUG, fac, __VA_ARGS__)
#define cs_log_info(fac, ...) cs_log(CS_LOG_INFO, fac, __VA_ARGS__)
#define cs_log_warn(fac, ...) cs_log(CS_LOG_WARN, fac, __VA_ARGS__)
#define cs_log_error(fac, ...) cs_log(CS_LOG_ERROR, fac, __VA_ARGS__)

#endif
