/*
 * pub_cmd: shared helpers of the publisher's commands (see pub_cmd.h).
 */
#include "pub_cmd.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cs_log.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil): POSIX has no timegm. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

cs_err *pub_cmd_parse_time(const char *text, int64_t *out_ms)
{
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, n = 0;
    const char *p = text;
    if (!text || sscanf(p, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        goto bad;
    p += n;
    int64_t ms = 0, off_min = 0;
    if (*p == 'T' || *p == ' ') {
        if (sscanf(p + 1, "%2d:%2d:%2d%n", &h, &mi, &s, &n) != 3 || n != 8)
            goto bad;
        p += 1 + n;
        if (*p == '.') {
            int64_t scale = 100;
            for (p++; *p >= '0' && *p <= '9'; p++) {
                ms += (*p - '0') * scale;
                scale /= 10;
            }
        }
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh = 0, om = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59)
                goto bad;
            off_min = (*p == '-' ? -1 : 1) * (oh * 60 + om);
            p += 1 + n;
        } else {
            goto bad; /* a time without a zone is ambiguous: refuse rather than guess */
        }
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        goto bad;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out_ms = ((days * 86400 + h * 3600 + mi * 60 + s) - off_min * 60) * 1000 + ms;
    return NULL;
bad:
    return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                      "\"%s\" is not an ISO 8601 time: use YYYY-MM-DDThh:mm:ssZ (or +hh:mm), or YYYY-MM-DD",
                      text ? text : "(null)");
}

cs_err *pub_cmd_o365(const pub_config *cfg, pub_o365 **out)
{
    pub_o365_opts oo = {.exchange_resource = cfg->o365_exchange_resource,
                        .graph_resource = cfg->o365_graph_resource};
    cs_err *err = pub_o365_new(cfg, &oo, out);
    if (!err)
        err = pub_o365_warm_up(*out);
    if (err) {
        pub_o365_free(*out);
        *out = NULL;
        return cs_err_wrap(err, "setting up the Office 365 client");
    }
    return NULL;
}

int pub_cmd_usage(const char *command, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "certsync-publisher %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    return PUB_CMD_EXIT_FAIL;
}

int pub_cmd_fail(const char *command, cs_err *err)
{
    cs_log_kv(CS_LOG_ERROR, command, "command failed", "error", cs_err_message(err), NULL);
    fprintf(stderr, "certsync-publisher %s: %s\n", command, cs_err_message(err));
    cs_err_free(err);
    return PUB_CMD_EXIT_FAIL;
}
