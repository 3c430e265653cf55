#include "cs_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cs_buf_init(cs_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static bool ensure(cs_buf *b, size_t extra)
{
    if (extra > b->max - b->len)
        return false;
    size_t need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

bool cs_buf_add(cs_buf *b, const void *data, size_t len)
{
    if (!ensure(b, len))
        return false;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return true;
}

bool cs_buf_add_str(cs_buf *b, const char *s)
{
    return cs_buf_add(b, s, strlen(s));
}

bool cs_buf_printf(cs_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !ensure(b, (size_t)n))
        return false;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

bool cs_buf_add_json_string(cs_buf *b, const char *s)
{
    size_t start = b->len;
    bool ok = cs_buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; ok && *p; p++) {
        switch (*p) {
        case '"':
            ok = cs_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            ok = cs_buf_add(b, "\\\\", 2);
            break;
        case '\n':
            ok = cs_buf_add(b, "\\n", 2);
            break;
        case '\r':
            ok = cs_buf_add(b, "\\r", 2);
            break;
        case '\t':
            ok = cs_buf_add(b, "\\t", 2);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                ok = cs_buf_printf(b, "\\u%04x", *p);
            else
                ok = cs_buf_add(b, p, 1);
        }
    }
    ok = ok && cs_buf_add(b, "\"", 1);
    if (!ok && b->data) { /* all or nothing */
        b->len = start;
        b->data[start] = '\0';
    }
    return ok;
}

const char *cs_buf_str(const cs_buf *b)
{
    return b->data ? b->data : "";
}

size_t cs_buf_len(const cs_buf *b)
{
    return b->len;
}

void cs_buf_reset(cs_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *cs_buf_take(cs_buf *b)
{
    char *p = b->data ? b->data : strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void cs_buf_free(cs_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
