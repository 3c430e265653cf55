#include "cs_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages are bounded so that hostile input echoed in an error cannot grow it without limit. */
#define CS_ERR_MESSAGE_MAX 4096

struct cs_err {
    cs_err_code code;
    unsigned flags;
    char *message;
};

static char oom_message[] = "out of memory";
static cs_err cs_err_oom = {CS_ERR_NOMEM, CS_ERR_F_FATAL, oom_message};

static char *vformat(const char *fmt, va_list ap)
{
    char *buf = malloc(CS_ERR_MESSAGE_MAX);
    if (!buf)
        return NULL;
    int n = vsnprintf(buf, CS_ERR_MESSAGE_MAX, fmt, ap);
    if (n < 0)
        snprintf(buf, CS_ERR_MESSAGE_MAX, "(unformattable error message)");
    char *shrunk = realloc(buf, strlen(buf) + 1);
    return shrunk ? shrunk : buf;
}

cs_err *cs_err_new(cs_err_code code, unsigned flags, const char *fmt, ...)
{
    cs_err *err = malloc(sizeof(*err));
    if (!err)
        return &cs_err_oom;
    va_list ap;
    va_start(ap, fmt);
    err->message = vformat(fmt, ap);
    va_end(ap);
    if (!err->message) {
        free(err);
        return &cs_err_oom;
    }
    err->code = code;
    err->flags = flags;
    return err;
}

cs_err *cs_err_wrap(cs_err *err, const char *fmt, ...)
{
    if (!err || err == &cs_err_oom)
        return err;
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    if (!prefix)
        return err; /* keep the original message rather than lose the error */
    size_t len = strlen(prefix) + 2 + strlen(err->message) + 1;
    if (len > CS_ERR_MESSAGE_MAX)
        len = CS_ERR_MESSAGE_MAX;
    char *joined = malloc(len);
    if (joined) {
        snprintf(joined, len, "%s: %s", prefix, err->message);
        free(err->message);
        err->message = joined;
    }
    free(prefix);
    return err;
}

cs_err_code cs_err_code_of(const cs_err *err)
{
    return err ? err->code : 0;
}

const char *cs_err_message(const cs_err *err)
{
    return err ? err->message : "success";
}

unsigned cs_err_flags(const cs_err *err)
{
    return err ? err->flags : 0;
}

bool cs_err_is_retriable(const cs_err *err)
{
    return err && (err->flags & CS_ERR_F_RETRIABLE);
}

bool cs_err_is_fatal(const cs_err *err)
{
    return err && (err->flags & CS_ERR_F_FATAL);
}

bool cs_err_txn_requires_abort(const cs_err *err)
{
    return err && (err->flags & CS_ERR_F_TXN_REQUIRES_ABORT);
}

const char *cs_err_code_name(cs_err_code code)
{
    switch (code) {
    case CS_ERR_INVALID_INPUT:
        return "invalid_input";
    case CS_ERR_CONFIG:
        return "config";
    case CS_ERR_IO:
        return "io";
    case CS_ERR_KAFKA:
        return "kafka";
    case CS_ERR_LDAP:
        return "ldap";
    case CS_ERR_HTTP:
        return "http";
    case CS_ERR_CERT:
        return "cert";
    case CS_ERR_NOMEM:
        return "nomem";
    case CS_ERR_TIMEOUT:
        return "timeout";
    case CS_ERR_STATE:
        return "state";
    case CS_ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}

void cs_err_free(cs_err *err)
{
    if (!err || err == &cs_err_oom)
        return;
    free(err->message);
    free(err);
}
