/*
 * cs_buf: a bounded growable byte buffer (after curl's dynbuf).
 *
 * Every buffer has a maximum size set at init; an append that would pass it
 * fails and leaves the buffer as it was, so data from the network can never
 * grow a buffer without limit. The contents are always NUL-terminated.
 * The struct is public so buffers can live on the stack; touch it only
 * through these functions.
 */
#ifndef CS_BUF_H
#define CS_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cs_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* largest len allowed */
} cs_buf;

/* Prepares an empty buffer that may hold at most `max` bytes. Allocates nothing yet. */
void cs_buf_init(cs_buf *b, size_t max);

/* Appends bytes. Returns false (buffer unchanged) when over the maximum or out of memory. */
bool cs_buf_add(cs_buf *b, const void *data, size_t len);
bool cs_buf_add_str(cs_buf *b, const char *s);
bool cs_buf_printf(cs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends `s` as a quoted JSON string, escaping quotes, backslashes and control bytes. */
bool cs_buf_add_json_string(cs_buf *b, const char *s);

/* The contents ("" when empty; never NULL) and their length. */
const char *cs_buf_str(const cs_buf *b);
size_t cs_buf_len(const cs_buf *b);

/* Empties the buffer, keeping its memory. */
void cs_buf_reset(cs_buf *b);

/* Hands the contents to the caller (free with free()) and empties the buffer. NULL only when out of memory.
 */
char *cs_buf_take(cs_buf *b);

/* Frees the memory; the buffer may be reused after cs_buf_init. */
void cs_buf_free(cs_buf *b);

#endif
