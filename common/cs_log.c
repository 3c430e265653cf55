#include "cs_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_buf.h"

/* One line may not exceed this; longer messages are cut, never split. */
#define CS_LOG_LINE_MAX 16384

static _Atomic int log_level = CS_LOG_INFO;
static FILE *_Atomic log_out = NULL;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cs_log_set_level(cs_log_level level)
{
    atomic_store(&log_level, (int)level);
}

cs_log_level cs_log_get_level(void)
{
    return (cs_log_level)atomic_load(&log_level);
}

cs_err *cs_log_level_parse(const char *name, cs_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (cs_log_level)i;
            return NULL;
        }
    }
    return cs_err_new(CS_ERR_CONFIG, 0, "unknown log level \"%s\": use debug, info, warn or error", name);
}

const char *cs_log_level_name(cs_log_level level)
{
    if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
        return level_names[level];
    return "unknown";
}

void cs_log_set_output(FILE *out)
{
    atomic_store(&log_out, out);
}

static void begin_line(cs_buf *b, cs_log_level level, const char *facility, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    cs_buf_printf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"facility\":", stamp, ts.tv_nsec / 1000000L,
                  cs_log_level_name(level));
    cs_buf_add_json_string(b, facility ? facility : "");
    cs_buf_add_str(b, ",\"msg\":");
    if (!cs_buf_add_json_string(b, msg))
        cs_buf_add_str(b, "\"(message too long)\"");
}

static void end_line(cs_buf *b)
{
    FILE *out = atomic_load(&log_out);
    if (!out)
        out = stdout;
    /* Reserve room for the closing brace: a line is cut, never left unterminated. */
    b->max += 2;
    cs_buf_add_str(b, "}\n");
    flockfile(out);
    fwrite(cs_buf_str(b), 1, cs_buf_len(b), out);
    fflush(out);
    funlockfile(out);
    cs_buf_free(b);
}

void cs_log(cs_log_level level, const char *facility, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level))
        return;
    char msg[CS_LOG_LINE_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cs_buf b;
    cs_buf_init(&b, CS_LOG_LINE_MAX);
    begin_line(&b, level, facility, msg);
    end_line(&b);
}

void cs_log_kv(cs_log_level level, const char *facility, const char *msg, ...)
{
    if ((int)level < atomic_load(&log_level))
        return;
    cs_buf b;
    cs_buf_init(&b, CS_LOG_LINE_MAX);
    begin_line(&b, level, facility, msg);
    va_list ap;
    va_start(ap, msg);
    for (const char *key = va_arg(ap, const char *); key; key = va_arg(ap, const char *)) {
        const char *value = va_arg(ap, const char *);
        size_t mark = cs_buf_len(&b);
        bool ok = cs_buf_add_str(&b, ",") && cs_buf_add_json_string(&b, key) && cs_buf_add_str(&b, ":") &&
                  (value ? cs_buf_add_json_string(&b, value) : cs_buf_add_str(&b, "null"));
        if (!ok) { /* drop a field that does not fit rather than break the JSON */
            b.len = mark;
            if (b.data)
                b.data[mark] = '\0';
        }
    }
    va_end(ap);
    end_line(&b);
}
