/*
 * cs_config: a YAML config file loaded against one table per service.
 *
 * Each service describes its keys once, in a static table of cs_config_row
 * (name, type, default, range or allowed values, description, required). The
 * table is the single source of truth: the loader checks a file against it,
 * cs_config_render_help() turns it into the --help-config text.
 *
 * File rules:
 *  - UTF-8, at most CS_CONFIG_FILE_MAX bytes, one YAML document whose top level is a map.
 *  - Nested maps flatten to dotted keys: "ldap:\n  url: x" is "ldap.url"; both spellings may be mixed,
 *    but a key set twice (in any spelling) is an error.
 *  - Unknown keys, bad values, maps or lists where a single value belongs (and the reverse), duplicates and
 *    missing required keys are errors naming file:line, the key, what is allowed and the fix. All errors
 *    of a file are reported together, one per line, in one cs_err.
 *  - A key with no value ("key:" or "key: ~") is an error: remove the line to get the default.
 *  - Paths (CS_CONFIG_FILE, CS_CONFIG_SECRET) that are relative resolve against the directory of the
 *    config file, not the working directory, so a config and its secrets can move together; absolute
 *    paths (e.g. /run/secrets/...) are used as they are.
 *  - Secret files are read at load: a trailing newline is trimmed, the size is bounded by
 *    CS_CONFIG_SECRET_MAX, and their contents never appear in errors, logs or help.
 *  - A prefix row (e.g. "kafka.") accepts every key below it; the keys are kept in file order with their
 *    line and checked at load with rd_kafka_conf_set(), so a property librdkafka rejects is a load error.
 *  - kafka.* credentials are never written inline: a secret-looking key (kafka.sasl.password,
 *    kafka.ssl.key.password, kafka.sasl.oauthbearer.client.secret, kafka.ssl.key.pem, ...; paths such as
 *    *.location and public certificates excepted) is a load error. kafka.X_file names a secret file
 *    (resolved and read like CS_CONFIG_SECRET) whose contents are applied as librdkafka's X, e.g.
 *    kafka.sasl.password_file -> sasl.password.
 */
#ifndef CS_CONFIG_H
#define CS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "cs_err.h"

#define CS_CONFIG_FILE_MAX (1024 * 1024) /* a config file is small; anything bigger is a mistake */
#define CS_CONFIG_SECRET_MAX (64 * 1024) /* enough for a 16k-bit RSA key in PEM */
#define CS_CONFIG_LIST_MAX 256           /* items in one list value */

typedef enum cs_config_type {
    CS_CONFIG_STRING = 1, /* any UTF-8 text; `check` may restrict it */
    CS_CONFIG_INT,        /* decimal integer in min..max */
    CS_CONFIG_BOOL,       /* true or false, nothing else */
    CS_CONFIG_DURATION,   /* integer + unit ms|s|m|h ("250ms", "2s"), stored in ms, min..max in ms */
    CS_CONFIG_ENUM,       /* one of `allowed` */
    CS_CONFIG_LIST,       /* YAML sequence of strings; each one of `allowed` when given; no duplicates */
    CS_CONFIG_FILE,       /* path to a readable file (not secret, e.g. a CA bundle); resolved as above */
    CS_CONFIG_SECRET,     /* path to a file whose contents are the secret; read at load */
    CS_CONFIG_LISTEN,     /* host:port listen address, [v6]:port allowed, port 0..65535 */
    CS_CONFIG_PREFIX,     /* passthrough: `name` is the prefix with its dot, e.g. "kafka." */
} cs_config_type;

/*
 * One row of a service's table. Tables are static arrays ended by a row whose name is NULL.
 * `def` is the default written as it would be in the file (lists: items separated by commas);
 * NULL means "no default" (the key is unset unless required). `check` (optional, strings only)
 * returns NULL when the value is fine or a static text saying what is allowed.
 */
typedef struct cs_config_row {
    const char *name;
    cs_config_type type;
    const char *def;
    long long min, max;         /* CS_CONFIG_INT; CS_CONFIG_DURATION in ms */
    const char *const *allowed; /* NULL-terminated; CS_CONFIG_ENUM (required) and CS_CONFIG_LIST (optional) */
    bool required;
    const char *desc; /* one or two sentences; shown by --help-config and in "missing" errors */
    const char *(*check)(const char *value);
    const char *def_doc; /* optional text shown as the default in help when `def` cannot say it */
} cs_config_row;

typedef struct cs_config cs_config;

/*
 * A service's whole description: its rows and an optional finalize step that runs after every key was
 * read (also when some keys had errors: use cs_config_key_ok() to skip checks on broken keys) and adds
 * cross-field errors and warnings with cs_config_add_error() / cs_config_add_warning().
 */
typedef struct cs_config_spec {
    const char *service; /* e.g. "certsync-collector", for help text */
    const cs_config_row *rows;
    void (*finalize)(cs_config *cfg);
} cs_config_spec;

/*
 * Loads and checks `path` against `spec`. On success *out is the loaded config (caller frees with
 * cs_config_free()). On failure *out is NULL and the error (code CS_ERR_CONFIG, or CS_ERR_IO when the
 * file cannot be read) lists every problem found, one per line, each starting "<path>:<line>: ".
 * `spec` must outlive the config.
 */
cs_err *cs_config_load(const cs_config_spec *spec, const char *path, cs_config **out);

/* Frees a config, wiping secret contents first. NULL is allowed. */
void cs_config_free(cs_config *cfg);

/* The path the config was loaded from, as given to cs_config_load(). */
const char *cs_config_path(const cs_config *cfg);

/*
 * Typed accessors. `key` must be a row of the spec with the matching type; anything else is a bug in
 * the caller and aborts. Strings point into the config and live as long as it.
 *  - get_string: CS_CONFIG_STRING, CS_CONFIG_ENUM, CS_CONFIG_LISTEN (as written), CS_CONFIG_FILE (the
 *    resolved path), CS_CONFIG_SECRET (the resolved path, not the contents). NULL when unset.
 *  - get_int: CS_CONFIG_INT; get_duration_ms: CS_CONFIG_DURATION; get_bool: CS_CONFIG_BOOL.
 *  - get_list: CS_CONFIG_LIST; returns the item count and sets *items (NULL-terminated array).
 *  - get_secret: CS_CONFIG_SECRET contents (NUL-terminated, trailing newline trimmed) or NULL when unset.
 *    Never log or print it.
 *  - get_listen: CS_CONFIG_LISTEN split into host (brackets removed) and port.
 */
const char *cs_config_get_string(const cs_config *cfg, const char *key);
long long cs_config_get_int(const cs_config *cfg, const char *key);
long long cs_config_get_duration_ms(const cs_config *cfg, const char *key);
bool cs_config_get_bool(const cs_config *cfg, const char *key);
size_t cs_config_get_list(const cs_config *cfg, const char *key, const char *const **items);
const char *cs_config_get_secret(const cs_config *cfg, const char *key);
void cs_config_get_listen(const cs_config *cfg, const char *key, const char **host, int *port);

/*
 * CS_CONFIG_ENUM `key` as the index of its value in the row's `allowed` list, so a service casts it to
 * its own enum whose order matches that list. Aborts like the other accessors on a caller bug.
 */
int cs_config_get_enum_index(const cs_config *cfg, const char *key);

/* Index of `value` in the NULL-terminated `allowed` (e.g. an item of a CS_CONFIG_LIST with `allowed`,
 * which the loader already checked); 0 when it is not there. */
int cs_config_enum_index(const char *const *allowed, const char *value);

/* True when the file set `key` (not only the default). Works for prefix keys too ("kafka.acks"). */
bool cs_config_is_set(const cs_config *cfg, const char *key);

/* Passthrough keys under `prefix` ("kafka."), in file order; i < count. Name is without the prefix. For a
 * kafka.X_file key the value is the resolved path, never the secret. */
size_t cs_config_prefix_count(const cs_config *cfg, const char *prefix);
void cs_config_prefix_at(const cs_config *cfg, const char *prefix, size_t i, const char **name,
                         const char **value, int *line);

/*
 * Applies every "kafka.*" key, in file order, to `conf` with rd_kafka_conf_set() (kafka.X_file as X with
 * the file's contents; librdkafka keeps its own copy, which it does not wipe). The loader already did
 * this once on a scratch conf, so a failure here is rare; the error names file:line, the key and
 * librdkafka's text. The caller keeps ownership of `conf`.
 */
cs_err *cs_config_apply_kafka(const cs_config *cfg, rd_kafka_conf_t *conf);

/* For finalize steps: records an error (or a warning) about `key`, prefixed with file:line of the key
 * (just the file when the key came from the default). A NULL key means the file as a whole. */
void cs_config_add_error(cs_config *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cs_config_add_warning(cs_config *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* For finalize steps: false when `key` already has an error (so a cross-field check can stay quiet). */
bool cs_config_key_ok(const cs_config *cfg, const char *key);

/* Warnings recorded by finalize, each "<path>:<line>: <text>"; i < count. */
size_t cs_config_warning_count(const cs_config *cfg);
const char *cs_config_warning_at(const cs_config *cfg, size_t i);

/*
 * Writes the table as documentation: for every row its name, type, default, range or allowed values,
 * whether it is required, and its description. Secrets are shown as "<file>". Returns false on a write
 * error.
 */
bool cs_config_render_help(const cs_config_spec *spec, FILE *out);

/*
 * Reads a secret file with the loader's rules (regular file, at most CS_CONFIG_SECRET_MAX bytes, trailing
 * newlines trimmed, not empty, no NUL byte), for re-reading a rotated secret (cs_secret.h). On success
 * *out is the contents (caller wipes and frees), *out_len its length. On failure returns false and
 * fills `why` with the reason, never the contents.
 */
bool cs_config_read_secret_file(const char *path, char **out, size_t *out_len, char *why, size_t why_size);

/* Ready-made `check` functions for rows. */
const char *cs_config_check_topic(const char *value);     /* a legal Kafka topic name */
const char *cs_config_check_id(const char *value);        /* 1..100 of [A-Za-z0-9._-], for transactional.id */
const char *cs_config_check_https_url(const char *value); /* https://host[...] */
const char *cs_config_check_ldap_url(const char *value);  /* ldap://host[:port] or ldaps://host[:port] */
const char *cs_config_check_ldap_filter(const char *value); /* parenthesised, balanced */

#endif
