/*
 * cs_secret: secret files watched for rotation, so a new password, client secret or key is used for the
 * next connection or token without a restart.
 *
 * Kubernetes updates a mounted Secret by writing a new directory and swapping the `..data` symlink, so
 * the file's path stays the same while the file it resolves to changes. The watch stat()s every file
 * (following symlinks) every CS_SECRET_POLL_MS and after SIGHUP; when the identity (device, inode, size,
 * mtime) changed it re-reads the contents with the loader's rules (cs_config_read_secret_file) and reports
 * the file as changed only when the contents differ. Every reload logs one line naming the config key and
 * the file, never the value. A file that cannot be read (mid-swap, deleted) keeps its previous value and
 * logs one warning per distinct failure.
 *
 * Each file carries a caller-chosen tag bit; cs_secret_watch_poll() returns the OR of the tags of the
 * files whose contents changed, so a service knows what to renew (LDAP bind, token, Kafka client).
 * Not thread-safe: one thread polls and reads values.
 */
#ifndef CS_SECRET_H
#define CS_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "cs_config.h"
#include "cs_err.h"

#define CS_SECRET_POLL_MS 5000 /* files are compared at most this often (and at once after SIGHUP) */
#define CS_SECRET_MAX_FILES 32 /* a service has a handful of secret files */

typedef struct cs_secret_watch cs_secret_watch;

/* Creates an empty watch. Caller frees with cs_secret_watch_free(). */
cs_err *cs_secret_watch_new(cs_secret_watch **out);

/* Frees the watch, wiping every value. NULL is allowed. */
void cs_secret_watch_free(cs_secret_watch *w);

/*
 * Watches `path` (a resolved path, as cs_config_get_string() gives for a CS_CONFIG_SECRET key) under the
 * name `key` (the config key, for logs and cs_secret_watch_value), reporting `tag` when it changes. The
 * contents are read now; an unreadable file is an error naming the key and the file (CS_ERR_CONFIG).
 * Adding the same key twice, or more than CS_SECRET_MAX_FILES files, is an error.
 */
cs_err *cs_secret_watch_add(cs_secret_watch *w, const char *key, const char *path, unsigned tag);

/* Watches every kafka.X_file key of `cfg` (the Kafka credentials) with `tag`. */
cs_err *cs_secret_watch_add_kafka(cs_secret_watch *w, const cs_config *cfg, unsigned tag);

/*
 * Compares the files when CS_SECRET_POLL_MS passed since the last comparison, when SIGHUP arrived since
 * (cs_secret_request_reload) or when `force` is true (e.g. a bind just failed with invalid credentials);
 * otherwise returns 0 at once. Returns the OR of the tags of the files whose contents changed.
 */
unsigned cs_secret_watch_poll(cs_secret_watch *w, bool force);

/*
 * The current contents of `key` (NUL-terminated, trailing newline trimmed), or NULL when the key is not
 * watched. Valid until the next cs_secret_watch_poll() that reports the key's tag. Never log it.
 */
const char *cs_secret_watch_value(const cs_secret_watch *w, const char *key);

/* How many times `key`'s contents changed since it was added (0 when never or not watched). */
unsigned cs_secret_watch_generation(const cs_secret_watch *w, const char *key);

/* Asks every watch to compare its files at the next poll. Async-signal-safe: only sets a flag. */
void cs_secret_request_reload(void);

/* Installs a SIGHUP handler that calls cs_secret_request_reload() (and nothing else). */
void cs_secret_install_sighup(void);

#endif
