/*
 * cs_err: errors as values.
 *
 * A call that can fail returns `cs_err *`: NULL means success. An error carries
 * a code, a human-readable message that names the input and the fix, and
 * flags that tell the caller what to do next (retry, abort the transaction,
 * give up). Modelled on librdkafka's rd_kafka_error_t.
 */
#ifndef CS_ERR_H
#define CS_ERR_H

#include <stdbool.h>

typedef enum cs_err_code {
    CS_ERR_INVALID_INPUT = 1, /* bad data from outside: a message, a certificate, a request */
    CS_ERR_CONFIG,            /* bad configuration: file, key, value, secret */
    CS_ERR_IO,                /* file or socket error */
    CS_ERR_KAFKA,             /* librdkafka reported an error */
    CS_ERR_LDAP,              /* libldap reported an error */
    CS_ERR_HTTP,              /* libcurl or an HTTP status */
    CS_ERR_CERT,              /* a certificate could not be parsed */
    CS_ERR_NOMEM,             /* allocation failed */
    CS_ERR_TIMEOUT,           /* a bounded wait ran out */
    CS_ERR_STATE,             /* the call is not allowed in the current state */
    CS_ERR_INTERNAL,          /* a bug: should never happen */
} cs_err_code;

/* Flags: what the caller may do about it. */
#define CS_ERR_F_RETRIABLE 0x1          /* the same call may succeed later */
#define CS_ERR_F_FATAL 0x2              /* the object (e.g. producer) is unusable: restart */
#define CS_ERR_F_TXN_REQUIRES_ABORT 0x4 /* abort the open transaction, then retry it */

typedef struct cs_err cs_err;

/*
 * Creates an error with a printf-style message. Never returns NULL: when
 * memory runs out it returns a shared static "out of memory" error, which
 * cs_err_free() ignores. Caller frees with cs_err_free().
 */
cs_err *cs_err_new(cs_err_code code, unsigned flags, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prefixes context to an existing error's message ("loading x: <old message>")
 * and returns it. Takes ownership of `err`; NULL in, NULL out, so it can wrap
 * any call: `return cs_err_wrap(f(), "reading %s", path);`.
 */
cs_err *cs_err_wrap(cs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

cs_err_code cs_err_code_of(const cs_err *err);
const char *cs_err_message(const cs_err *err);
unsigned cs_err_flags(const cs_err *err);
bool cs_err_is_retriable(const cs_err *err);
bool cs_err_is_fatal(const cs_err *err);
bool cs_err_txn_requires_abort(const cs_err *err);

/* Short stable name of a code, e.g. "config", for logs and metrics labels. */
const char *cs_err_code_name(cs_err_code code);

/* Frees an error; NULL is allowed. */
void cs_err_free(cs_err *err);

#endif
