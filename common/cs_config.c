/*
 * cs_config: YAML config loading against a service table. See cs_config.h for the file rules.
 *
 * The file is read with libyaml's event parser (not its document loader) so every key and value keeps
 * its line number, and so aliases and deep nesting can be refused before they cost anything. Problems
 * are collected in a list rather than returned at the first one: a user fixing a file wants all of them.
 */
#include "cs_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "cs_buf.h"

#define KEY_MAX 256   /* longest dotted key */
#define DEPTH_MAX 16  /* map nesting */
#define KEYS_MAX 4096 /* keys in one file */
#define PROPS_MAX 512 /* passthrough properties */
#define WARNINGS_MAX 64
#define ERRORS_MAX 100
#define ERRORS_TEXT_MAX 3600 /* leaves room in a cs_err (4096) for the "N more" line */
#define ERROR_LINE_MAX 1024
#define SHOW_MAX 80 /* characters of a bad value echoed in an error */

typedef struct cs_config_value {
    bool set; /* from the file */
    bool bad; /* the file's value had an error */
    int line;
    char *str; /* string, enum, listen (as written), file and secret (resolved path) */
    long long num;
    char **items; /* list, NULL-terminated */
    size_t n_items;
    char *secret;
    size_t secret_len;
    char *host;
} cs_config_value;

typedef struct cs_config_prop {
    char *key; /* full key, prefix included */
    char *value;
    int line;
    /* kafka.X_file: value is the resolved path, secret the file's contents, applied as librdkafka's X */
    char *target;
    char *secret;
    size_t secret_len;
} cs_config_prop;

typedef struct cs_config_seen {
    char *key;
    int line;
} cs_config_seen;

typedef struct cs_config_error {
    int line;   /* 0: about the file as a whole (listed last) */
    size_t seq; /* order of discovery, to keep the sort stable */
    char *text;
} cs_config_error;

struct cs_config {
    const cs_config_spec *spec;
    size_t n_rows;
    char *path;
    char *dir;               /* directory of the config file, NULL when it is the working directory */
    cs_config_value *values; /* parallel to spec->rows */
    cs_config_prop *props;
    size_t n_props;
    cs_config_seen *seen;
    size_t n_seen;
    bool too_many_keys;
    cs_config_error errors[ERRORS_MAX]; /* sorted by line when reported */
    size_t n_errors;
    size_t n_errors_hidden;
    char *warnings[WARNINGS_MAX];
    size_t n_warnings;
};

/* ---- error collection ---- */

/* Stores one error; `text` is everything after "path:line: ". */
static void store_err(cs_config *c, int line, const char *text)
{
    char msg[ERROR_LINE_MAX];
    /* A very long path or text is cut at ERROR_LINE_MAX; the return value is checked only to say so. */
    int n = line > 0 ? snprintf(msg, sizeof(msg), "%s:%d: %s", c->path, line, text)
                     : snprintf(msg, sizeof(msg), "%s: %s", c->path, text);
    if (n < 0)
        snprintf(msg, sizeof(msg), "(unformattable error)");
    char *copy = c->n_errors < ERRORS_MAX ? strdup(msg) : NULL;
    if (!copy) {
        c->n_errors_hidden++;
        return;
    }
    c->errors[c->n_errors].line = line;
    c->errors[c->n_errors].seq = c->n_errors;
    c->errors[c->n_errors].text = copy;
    c->n_errors++;
}

static void add_errv(cs_config *c, int line, const char *fmt, va_list ap)
{
    char text[ERROR_LINE_MAX];
    vsnprintf(text, sizeof(text), fmt, ap);
    store_err(c, line, text);
}

static void add_err(cs_config *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_err(cs_config *c, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_errv(c, line, fmt, ap);
    va_end(ap);
}

/* Copies `s` for an error message: bounded, control bytes shown as '?', so a hostile file cannot
 * forge extra error lines or flood the terminal. */
static const char *show(const char *s, char buf[SHOW_MAX + 4])
{
    size_t i = 0;
    for (; s[i] && i < SHOW_MAX; i++)
        buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* ---- table lookups ---- */

static const cs_config_row *row_at(const cs_config *c, size_t i)
{
    return &c->spec->rows[i];
}

/* Index of the non-prefix row named `key`, or -1. */
static long find_row(const cs_config *c, const char *key)
{
    for (size_t i = 0; i < c->n_rows; i++)
        if (row_at(c, i)->type != CS_CONFIG_PREFIX && strcmp(row_at(c, i)->name, key) == 0)
            return (long)i;
    return -1;
}

/* The prefix row `key` falls under ("kafka.x" under "kafka."), or NULL. */
static const cs_config_row *find_prefix(const cs_config *c, const char *key)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        const cs_config_row *r = row_at(c, i);
        size_t n = strlen(r->name);
        if (r->type == CS_CONFIG_PREFIX && strncmp(key, r->name, n) == 0 && key[n] != '\0')
            return r;
    }
    return NULL;
}

/* The first row inside section `key` ("ldap" -> "ldap.url"), or NULL when `key` is no section. */
static const cs_config_row *find_section_member(const cs_config *c, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < c->n_rows; i++) {
        const cs_config_row *r = row_at(c, i);
        if (strncmp(r->name, key, n) == 0 && r->name[n] == '.')
            return r;
    }
    return NULL;
}

static const char *type_name(cs_config_type t)
{
    switch (t) {
    case CS_CONFIG_STRING:
        return "string";
    case CS_CONFIG_INT:
        return "int";
    case CS_CONFIG_BOOL:
        return "bool";
    case CS_CONFIG_DURATION:
        return "duration";
    case CS_CONFIG_ENUM:
        return "enum";
    case CS_CONFIG_LIST:
        return "list";
    case CS_CONFIG_FILE:
        return "file";
    case CS_CONFIG_SECRET:
        return "secret file";
    case CS_CONFIG_LISTEN:
        return "host:port";
    case CS_CONFIG_PREFIX:
        return "passthrough";
    }
    return "?";
}

/* Levenshtein distance of two short strings (bounded by KEY_MAX). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > KEY_MAX || lb > KEY_MAX)
        return SIZE_MAX;
    size_t prev[KEY_MAX + 1], cur[KEY_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

/* The nearest of `names` to `word`, when near enough to be a likely typo; else NULL. */
static const char *nearest(const char *word, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, names[i]);
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    size_t len = strlen(word);
    if (best && (best_d <= 2 || best_d * 3 <= len))
        return best;
    return NULL;
}

/* A suggestion for an unknown key: a near spelling, or the same last segment in another section. */
static const char *suggest_key(const cs_config *c, const char *key)
{
    const char *names[512];
    size_t n = 0;
    for (size_t i = 0; i < c->n_rows && n < 512; i++)
        if (row_at(c, i)->type != CS_CONFIG_PREFIX)
            names[n++] = row_at(c, i)->name;
    const char *near = nearest(key, names, n);
    if (near)
        return near;
    const char *last = strrchr(key, '.');
    last = last ? last + 1 : key;
    for (size_t i = 0; i < n; i++) {
        const char *rl = strrchr(names[i], '.');
        if (rl && strcmp(rl + 1, last) == 0)
            return names[i];
    }
    return NULL;
}

static void err_unknown(cs_config *c, const char *key, int line)
{
    char b[SHOW_MAX + 4];
    const char *s = suggest_key(c, key);
    if (s)
        add_err(c, line, "unknown key \"%s\" (did you mean \"%s\"?)", show(key, b), s);
    else
        add_err(c, line, "unknown key \"%s\"; see --help-config for the keys this service takes",
                show(key, b));
}

/* Records that `key` was written at `line`; false (and an error) when it already was. */
static bool note_seen(cs_config *c, const char *key, int line)
{
    char b[SHOW_MAX + 4];
    for (size_t i = 0; i < c->n_seen; i++) {
        if (strcmp(c->seen[i].key, key) == 0) {
            add_err(c, line, "duplicate key \"%s\" (first set at line %d); keep only one", show(key, b),
                    c->seen[i].line);
            return false;
        }
    }
    if (c->n_seen >= KEYS_MAX) {
        if (!c->too_many_keys)
            add_err(c, line, "more than %d keys; a config file this large is a mistake", KEYS_MAX);
        c->too_many_keys = true;
        return false;
    }
    char *copy = strdup(key);
    if (!copy) {
        add_err(c, line, "out of memory");
        return false;
    }
    c->seen[c->n_seen].key = copy;
    c->seen[c->n_seen].line = line;
    c->n_seen++;
    return true;
}

/* ---- value parsing ---- */

static bool parse_ll(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* "250ms", "2s", "5m", "1h" -> milliseconds. */
static bool parse_duration(const char *s, long long *out)
{
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return false;
    long long n = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > (LLONG_MAX - 9) / 10)
            return false;
        n = n * 10 + (*p - '0');
    }
    long long mult;
    if (strcmp(p, "ms") == 0)
        mult = 1;
    else if (strcmp(p, "s") == 0)
        mult = 1000;
    else if (strcmp(p, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        mult = 3600 * 1000;
    else
        return false;
    if (n > LLONG_MAX / mult)
        return false;
    *out = n * mult;
    return true;
}

/* Milliseconds in the largest unit that is exact: 3600000 -> "1h", 1500 -> "1500ms". */
static const char *fmt_duration(long long ms, char *buf, size_t size)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, size, "%lldh", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, size, "%lldm", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, size, "%llds", ms / 1000);
    else
        snprintf(buf, size, "%lldms", ms);
    return buf;
}

static bool in_list(const char *s, const char *const *allowed)
{
    for (size_t i = 0; allowed && allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0)
            return true;
    return false;
}

static void join_list(const char *const *allowed, char *buf, size_t size)
{
    buf[0] = '\0';
    size_t off = 0;
    for (size_t i = 0; allowed && allowed[i] && off < size; i++) {
        int n = snprintf(buf + off, size - off, "%s%s", i ? ", " : "", allowed[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
}

/* Splits "host:port" / "[v6]:port". The host is returned in `host` (caller frees). */
static bool parse_listen(const char *s, char **host, long long *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return false;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        for (size_t i = 0; i < hlen; i++)
            if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.')
                return false;
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return false;
        hlen = (size_t)(colon - s);
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
                return false;
    }
    if (hlen == 0 || hlen > 253)
        return false;
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (plen == 0 || plen > 5)
        return false;
    for (size_t i = 0; i < plen; i++)
        if (!isdigit((unsigned char)p[i]))
            return false;
    long long v = strtoll(p, NULL, 10);
    if (v > 65535)
        return false;
    char *copy = malloc(hlen + 1);
    if (!copy)
        return false;
    memcpy(copy, h, hlen);
    copy[hlen] = '\0';
    *host = copy;
    *port = v;
    return true;
}

/* A path from the file, resolved against the config file's directory when relative. Caller frees. */
static char *resolve_path(const cs_config *c, const char *p)
{
    if (p[0] == '/' || !c->dir)
        return strdup(p);
    size_t n = strlen(c->dir) + 1 + strlen(p) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", c->dir, p);
    return out;
}

/* The "where relative paths go" hint of path errors. */
static const char *relative_hint(const cs_config *c, const char *written, char *buf, size_t size)
{
    if (written[0] == '/')
        buf[0] = '\0';
    else
        snprintf(buf, size, " (relative paths resolve against the config file's directory \"%s\")",
                 c->dir ? c->dir : ".");
    return buf;
}

/* Overwrites memory that held a secret; volatile so the compiler cannot drop it before free(). */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/*
 * Reads a secret file into *out (NUL-terminated, trailing newlines trimmed; caller wipes and frees).
 * On failure returns false and fills `why` with the reason (never the contents).
 */
static bool read_secret(const char *path, char **out, size_t *out_len, char *why, size_t why_size)
{
    bool ok = false;
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "cannot open it: %s", strerror(errno));
        goto cleanup;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, why_size, "cannot stat it: %s", strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, why_size, "it is not a regular file");
        goto cleanup;
    }
    buf = malloc(CS_CONFIG_SECRET_MAX + 2);
    if (!buf) {
        snprintf(why, why_size, "out of memory");
        goto cleanup;
    }
    /* Read one byte past the limit to tell "exactly at the limit" from "too big". */
    while (len < CS_CONFIG_SECRET_MAX + 1) {
        ssize_t n = read(fd, buf + len, CS_CONFIG_SECRET_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, why_size, "cannot read it: %s", strerror(errno));
            goto cleanup;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > CS_CONFIG_SECRET_MAX) {
        snprintf(why, why_size, "it is larger than %d bytes; it should hold only the secret",
                 CS_CONFIG_SECRET_MAX);
        goto cleanup;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        snprintf(why, why_size, "it is empty; put the secret in it (a trailing newline is ignored)");
        goto cleanup;
    }
    if (memchr(buf, '\0', len)) {
        snprintf(why, why_size, "it contains a NUL byte; secrets must be text (PEM, not DER)");
        goto cleanup;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
    ok = true;
cleanup:
    if (buf) {
        wipe(buf, CS_CONFIG_SECRET_MAX + 2);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

bool cs_config_read_secret_file(const char *path, char **out, size_t *out_len, char *why, size_t why_size)
{
    return read_secret(path, out, out_len, why, why_size);
}

/* Checks that a non-secret file exists and is readable; fills `why` when not. */
static bool check_readable(const char *path, char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "cannot open it: %s", strerror(errno));
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!ok)
        snprintf(why, why_size, "it is not a regular file");
    close(fd);
    return ok;
}

static void free_items(char **items)
{
    for (size_t i = 0; items && items[i]; i++)
        free(items[i]);
    free(items);
}

static void clear_value(cs_config_value *v)
{
    free(v->str);
    free_items(v->items);
    if (v->secret) {
        wipe(v->secret, v->secret_len);
        free(v->secret);
    }
    free(v->host);
    v->str = v->secret = v->host = NULL;
    v->items = NULL;
    v->n_items = 0;
    v->secret_len = 0;
}

/*
 * Parses `text` as the value of row `i` and stores it. `line` is 0 for a built-in default (an error
 * there is a bug in the table). Returns false after recording an error.
 */
static bool set_scalar(cs_config *c, size_t i, const char *text, int line)
{
    const cs_config_row *r = row_at(c, i);
    cs_config_value *v = &c->values[i];
    char b[SHOW_MAX + 4], list[512], lo[32], hi[32], hint[PATH_MAX + 96], why[256];
    const char *what = line ? "" : "built-in default: ";
    long long n = 0;
    char *host = NULL;

    switch (r->type) {
    case CS_CONFIG_STRING:
    case CS_CONFIG_ENUM: {
        if (r->type == CS_CONFIG_ENUM && !in_list(text, r->allowed)) {
            join_list(r->allowed, list, sizeof(list));
            size_t na = 0;
            while (r->allowed && r->allowed[na])
                na++;
            const char *near = nearest(text, r->allowed, na);
            if (near)
                add_err(c, line, "%s%s = \"%s\" is not allowed: expected one of %s (did you mean \"%s\"?)",
                        what, r->name, show(text, b), list, near);
            else
                add_err(c, line, "%s%s = \"%s\" is not allowed: expected one of %s", what, r->name,
                        show(text, b), list);
            return false;
        }
        const char *problem = r->check ? r->check(text) : NULL;
        if (problem) {
            add_err(c, line, "%s%s = \"%s\" is not valid: %s", what, r->name, show(text, b), problem);
            return false;
        }
        char *copy = strdup(text);
        if (!copy)
            goto oom;
        clear_value(v);
        v->str = copy;
        return true;
    }
    case CS_CONFIG_INT:
        if (!parse_ll(text, &n)) {
            add_err(c, line, "%s%s = \"%s\" is not an integer: write a whole number in %lld..%lld", what,
                    r->name, show(text, b), r->min, r->max);
            return false;
        }
        if (n < r->min || n > r->max) {
            add_err(c, line, "%s%s = %lld is out of range: allowed %lld..%lld", what, r->name, n, r->min,
                    r->max);
            return false;
        }
        v->num = n;
        return true;
    case CS_CONFIG_DURATION:
        fmt_duration(r->min, lo, sizeof(lo));
        fmt_duration(r->max, hi, sizeof(hi));
        if (!parse_duration(text, &n)) {
            add_err(c, line,
                    "%s%s = \"%s\" is not a duration: write a whole number with a unit ms, s, m or h (e.g. "
                    "250ms, 2s, 5m, 1h) in %s..%s",
                    what, r->name, show(text, b), lo, hi);
            return false;
        }
        if (n < r->min || n > r->max) {
            add_err(c, line, "%s%s = %s is out of range: allowed %s..%s", what, r->name, show(text, b), lo,
                    hi);
            return false;
        }
        v->num = n;
        return true;
    case CS_CONFIG_BOOL:
        if (strcmp(text, "true") == 0)
            v->num = 1;
        else if (strcmp(text, "false") == 0)
            v->num = 0;
        else {
            add_err(c, line, "%s%s = \"%s\" is not a boolean: write true or false", what, r->name,
                    show(text, b));
            return false;
        }
        return true;
    case CS_CONFIG_LISTEN:
        if (!parse_listen(text, &host, &n)) {
            add_err(c, line,
                    "%s%s = \"%s\" is not a host:port listen address: write e.g. 0.0.0.0:9464, "
                    "127.0.0.1:0 or [::]:9464 (port 0..65535)",
                    what, r->name, show(text, b));
            return false;
        }
        clear_value(v);
        v->host = host;
        v->num = n;
        v->str = strdup(text);
        if (!v->str)
            goto oom;
        return true;
    case CS_CONFIG_FILE:
    case CS_CONFIG_SECRET: {
        char *path = resolve_path(c, text);
        if (!path)
            goto oom;
        char *secret = NULL;
        size_t secret_len = 0;
        bool ok = r->type == CS_CONFIG_FILE ? check_readable(path, why, sizeof(why))
                                            : read_secret(path, &secret, &secret_len, why, sizeof(why));
        if (!ok) {
            /* Only a file that cannot be opened needs the "where is it" hints; the other reasons say the fix. */
            bool missing = strncmp(why, "cannot open", 11) == 0;
            add_err(c, line, "%s%s: %s \"%s\" is unusable: %s%s%s%s", what, r->name,
                    r->type == CS_CONFIG_SECRET ? "secret file" : "file", show(path, b), why,
                    !missing ? ""
                    : r->type == CS_CONFIG_SECRET
                        ? "; create it (e.g. mount a Kubernetes Secret there) or fix the path"
                        : "; create it or fix the path",
                    missing ? relative_hint(c, text, hint, sizeof(hint)) : "", "");
            free(path);
            return false;
        }
        clear_value(v);
        v->str = path;
        v->secret = secret;
        v->secret_len = secret_len;
        return true;
    }
    case CS_CONFIG_LIST:
    case CS_CONFIG_PREFIX:
        break;
    }
    add_err(c, line, "%s: internal error: no scalar parser for type %s", r->name, type_name(r->type));
    return false;
oom:
    add_err(c, line, "out of memory while reading %s", r->name);
    return false;
}

/* Stores a list for row `i`, taking ownership of `items` (NULL-terminated). */
static bool set_list(cs_config *c, size_t i, char **items, size_t n, int line)
{
    const cs_config_row *r = row_at(c, i);
    char b[SHOW_MAX + 4], list[512];
    bool ok = true;
    for (size_t k = 0; k < n; k++) {
        if (r->allowed && !in_list(items[k], r->allowed)) {
            join_list(r->allowed, list, sizeof(list));
            add_err(c, line, "%s: item \"%s\" is not allowed: expected items from %s", r->name,
                    show(items[k], b), list);
            ok = false;
        }
        for (size_t j = 0; j < k; j++) {
            if (strcmp(items[j], items[k]) == 0) {
                add_err(c, line, "%s: item \"%s\" is listed twice; list it once", r->name, show(items[k], b));
                ok = false;
                break;
            }
        }
    }
    if (!ok) {
        free_items(items);
        return false;
    }
    clear_value(&c->values[i]);
    c->values[i].items = items;
    c->values[i].n_items = n;
    return true;
}

/* Splits a built-in list default "a,b,c" into a NULL-terminated array. */
static char **split_default(const char *def, size_t *n)
{
    char **items = calloc(CS_CONFIG_LIST_MAX + 1, sizeof(char *));
    if (!items)
        return NULL;
    *n = 0;
    const char *p = def;
    while (*p && *n < CS_CONFIG_LIST_MAX) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        items[*n] = strndup(p, len);
        if (!items[*n]) {
            free_items(items);
            return NULL;
        }
        (*n)++;
        p += len + (e ? 1 : 0);
    }
    return items;
}

/* Passthrough properties that hold credentials: their values are never echoed. */
static bool looks_secret(const char *key)
{
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "sasl.jaas") ||
           strstr(key, ".pem") || strstr(key, "key");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

#define FILE_SUFFIX "_file"

/*
 * A kafka.* property (without "kafka.") whose value would be a credential written into the config file,
 * which ends up in ConfigMaps, backups and diffs: refused, the value comes from X_file instead. Keys that
 * looks_secret() flags but that hold a path or a public certificate stay allowed.
 */
static bool kafka_inline_secret(const char *prop)
{
    return looks_secret(prop) && !ends_with(prop, ".location") && !ends_with(prop, FILE_SUFFIX) &&
           strcmp(prop, "sasl.kerberos.keytab") != 0 && strcmp(prop, "ssl.ca.pem") != 0 &&
           strcmp(prop, "ssl.certificate.pem") != 0;
}

/*
 * kafka.X_file for a credential X: the file's contents become librdkafka's X. On success fills p's value
 * (the resolved path), target (X) and secret (the contents; wiped on free); on failure records an error
 * that names the key and the path, never the contents.
 */
static bool read_kafka_secret_file(cs_config *c, const char *key, const char *text, int line,
                                   cs_config_prop *p)
{
    char why[256], hint[PATH_MAX + 96], b[SHOW_MAX + 4], pb[SHOW_MAX + 4];
    const char *prop = key + strlen("kafka.");
    size_t tlen = strlen(prop) - strlen(FILE_SUFFIX);
    p->target = strndup(prop, tlen);
    p->value = resolve_path(c, text);
    if (!p->target || !p->value) {
        add_err(c, line, "out of memory while reading %s", show(key, b));
        return false;
    }
    if (!read_secret(p->value, &p->secret, &p->secret_len, why, sizeof(why))) {
        bool missing = strncmp(why, "cannot open", 11) == 0;
        add_err(c, line, "%s: secret file \"%s\" is unusable: %s%s%s", show(key, b), show(p->value, pb), why,
                missing ? "; create it (e.g. mount a Kubernetes Secret there) or fix the path" : "",
                missing ? relative_hint(c, text, hint, sizeof(hint)) : "");
        return false;
    }
    return true;
}

static void prop_clear(cs_config_prop *p)
{
    free(p->key);
    /* Passthrough values may be credentials (an unknown secret-looking key): wipe them too. */
    if (p->value) {
        wipe(p->value, strlen(p->value));
        free(p->value);
    }
    free(p->target);
    if (p->secret) {
        wipe(p->secret, p->secret_len);
        free(p->secret);
    }
    memset(p, 0, sizeof(*p));
}

static bool is_null_scalar(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)ev->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

/* A key with one scalar value. */
static void handle_scalar(cs_config *c, const char *key, const yaml_event_t *ev, int line)
{
    char b[SHOW_MAX + 4];
    const char *text = (const char *)ev->data.scalar.value;
    if (!note_seen(c, key, line))
        return;
    if (memchr(text, '\0', ev->data.scalar.length)) {
        add_err(c, line, "%s: the value contains a NUL character; remove it", show(key, b));
        return;
    }
    long i = find_row(c, key);
    bool null = is_null_scalar(ev);
    if (i >= 0) {
        const cs_config_row *r = row_at(c, (size_t)i);
        cs_config_value *v = &c->values[i];
        v->set = true;
        v->line = line;
        if (null) {
            add_err(c, line, "%s has no value: give one, or remove the line to use the default", key);
            v->bad = true;
        } else if (r->type == CS_CONFIG_LIST) {
            add_err(c, line,
                    "%s expects a list, got a single value: write it as a YAML sequence, e.g. \"%s: [%s]\"",
                    key, key, show(text, b));
            v->bad = true;
        } else if (!set_scalar(c, (size_t)i, text, line)) {
            v->bad = true;
        }
        return;
    }
    if (find_prefix(c, key)) {
        if (null) {
            add_err(c, line, "%s has no value: give one, or remove the line", show(key, b));
            return;
        }
        if (c->n_props >= PROPS_MAX) {
            add_err(c, line, "more than %d passthrough properties", PROPS_MAX);
            return;
        }
        bool is_kafka = strncmp(key, "kafka.", 6) == 0;
        const char *prop = key + 6;
        if (is_kafka && kafka_inline_secret(prop)) {
            bool pem = ends_with(prop, ".pem");
            char b2[SHOW_MAX + 4];
            add_err(c, line,
                    "%s: a credential may not be written in the config file (it would sit in ConfigMaps and "
                    "backups); put it in a file (e.g. a mounted Kubernetes Secret) and set %s%s%s instead",
                    show(key, b), pem ? "kafka.ssl.key.location" : show(key, b2), pem ? "" : FILE_SUFFIX,
                    pem ? " (librdkafka reads the key file itself)" : " to its path");
            return;
        }
        cs_config_prop *p = &c->props[c->n_props];
        memset(p, 0, sizeof(*p));
        p->line = line;
        p->key = strdup(key);
        if (!p->key) {
            add_err(c, line, "out of memory");
            return;
        }
        if (is_kafka && ends_with(prop, FILE_SUFFIX) && strlen(prop) > strlen(FILE_SUFFIX)) {
            /* Only credentials come from files: X_file for any other X is librdkafka's to reject. */
            char stem[KEY_MAX + 1];
            snprintf(stem, sizeof(stem), "%.*s", (int)(strlen(prop) - strlen(FILE_SUFFIX)), prop);
            if (kafka_inline_secret(stem)) {
                if (!read_kafka_secret_file(c, key, text, line, p)) {
                    prop_clear(p);
                    return;
                }
                c->n_props++;
                return;
            }
        }
        p->value = strdup(text);
        if (!p->value) {
            prop_clear(p);
            add_err(c, line, "out of memory");
            return;
        }
        c->n_props++;
        return;
    }
    const cs_config_row *member = find_section_member(c, key);
    if (member) {
        add_err(c, line, "\"%s\" is a section, not a value: put its keys under it (e.g. %s)", show(key, b),
                member->name);
        return;
    }
    err_unknown(c, key, line);
}

static bool yaml_failed(cs_config *c, yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    char msg[ERROR_LINE_MAX];
    if (p->context)
        snprintf(msg, sizeof(msg), "%d:%d: malformed YAML: %s (%s at line %d)", line, col, problem,
                 p->context, (int)p->context_mark.line + 1);
    else
        snprintf(msg, sizeof(msg), "%d:%d: malformed YAML: %s", line, col, problem);
    /* The position is part of msg ("line:column: ..."), so store it with the line but no extra prefix. */
    char full[ERROR_LINE_MAX + PATH_MAX];
    snprintf(full, sizeof(full), "%s:%s", c->path, msg);
    char *copy = c->n_errors < ERRORS_MAX ? strdup(full) : NULL;
    if (!copy) {
        c->n_errors_hidden++;
        return false;
    }
    c->errors[c->n_errors].line = line;
    c->errors[c->n_errors].seq = c->n_errors;
    c->errors[c->n_errors].text = copy;
    c->n_errors++;
    return false;
}

static bool next_event(cs_config *c, yaml_parser_t *p, yaml_event_t *ev)
{
    if (!yaml_parser_parse(p, ev))
        return yaml_failed(c, p);
    return true;
}

/* Consumes the rest of a node whose first event is `first` (already read and deleted by the caller). */
static bool skip_node(cs_config *c, yaml_parser_t *p, yaml_event_type_t first)
{
    if (first != YAML_MAPPING_START_EVENT && first != YAML_SEQUENCE_START_EVENT)
        return true;
    int depth = 1;
    while (depth > 0) {
        yaml_event_t ev;
        if (!next_event(c, p, &ev))
            return false;
        if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT)
            depth++;
        else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT)
            depth--;
        yaml_event_delete(&ev);
    }
    return true;
}

/* A key whose value is a YAML sequence (SEQUENCE_START already read). */
static bool handle_sequence(cs_config *c, yaml_parser_t *p, const char *key, int line)
{
    char b[SHOW_MAX + 4];
    char **items = calloc(CS_CONFIG_LIST_MAX + 1, sizeof(char *));
    size_t n = 0;
    bool items_ok = items != NULL, more = true;
    if (!items)
        add_err(c, line, "out of memory");
    while (more) {
        yaml_event_t ev;
        if (!next_event(c, p, &ev)) {
            free_items(items);
            return false;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_SEQUENCE_END_EVENT) {
            more = false;
        } else if (t == YAML_SCALAR_EVENT && items) {
            if (n >= CS_CONFIG_LIST_MAX) {
                if (items_ok)
                    add_err(c, line, "%s: more than %d items", show(key, b), CS_CONFIG_LIST_MAX);
                items_ok = false;
            } else if (is_null_scalar(&ev) || memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
                add_err(c, (int)ev.start_mark.line + 1, "%s: empty list item; remove it", show(key, b));
                items_ok = false;
            } else {
                items[n] = strdup((const char *)ev.data.scalar.value);
                if (items[n])
                    n++;
            }
        } else if (t != YAML_SCALAR_EVENT) {
            add_err(c, (int)ev.start_mark.line + 1, "%s: list items must be single values, not %s",
                    show(key, b), t == YAML_ALIAS_EVENT ? "aliases" : "lists or maps");
            items_ok = false;
        }
        yaml_event_delete(&ev);
        if (t != YAML_SEQUENCE_END_EVENT && !skip_node(c, p, t)) {
            free_items(items);
            return false;
        }
    }
    if (!note_seen(c, key, line)) {
        free_items(items);
        return true;
    }
    long i = find_row(c, key);
    if (i >= 0) {
        const cs_config_row *r = row_at(c, (size_t)i);
        c->values[i].set = true;
        c->values[i].line = line;
        if (r->type != CS_CONFIG_LIST) {
            add_err(c, line, "%s expects a single %s value, got a list", key, type_name(r->type));
            c->values[i].bad = true;
            free_items(items);
        } else if (!items_ok) {
            c->values[i].bad = true;
            free_items(items);
        } else if (!set_list(c, (size_t)i, items, n, line)) {
            c->values[i].bad = true;
        }
        return true;
    }
    free_items(items);
    if (find_prefix(c, key))
        add_err(c, line,
                "%s expects a single value, got a list (librdkafka lists are comma-separated strings)",
                show(key, b));
    else
        err_unknown(c, key, line);
    return true;
}

static bool parse_mapping(cs_config *c, yaml_parser_t *p, const char *prefix, int depth);

/* A key whose value is a map (MAPPING_START already read): a section, or a mistake. */
static bool handle_map(cs_config *c, yaml_parser_t *p, const char *key, int line, int depth)
{
    long i = find_row(c, key);
    if (i >= 0) {
        add_err(c, line, "%s expects a single %s value, got a map", key,
                type_name(row_at(c, (size_t)i)->type));
        c->values[i].set = true;
        c->values[i].bad = true;
        c->values[i].line = line;
        return skip_node(c, p, YAML_MAPPING_START_EVENT);
    }
    if (depth >= DEPTH_MAX) {
        add_err(c, line, "maps nested deeper than %d levels", DEPTH_MAX);
        return skip_node(c, p, YAML_MAPPING_START_EVENT);
    }
    if (!note_seen(c, key, line))
        return skip_node(c, p, YAML_MAPPING_START_EVENT);
    return parse_mapping(c, p, key, depth + 1);
}

/* The entries of a map (MAPPING_START already read) up to its MAPPING_END. False on a YAML error. */
static bool parse_mapping(cs_config *c, yaml_parser_t *p, const char *prefix, int depth)
{
    char b[SHOW_MAX + 4];
    for (;;) {
        yaml_event_t kev, vev;
        if (!next_event(c, p, &kev))
            return false;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return true;
        }
        int line = (int)kev.start_mark.line + 1;
        char key[KEY_MAX + 1];
        bool key_ok = false;
        if (kev.type != YAML_SCALAR_EVENT) {
            add_err(c, line, "keys must be plain text, not %s",
                    kev.type == YAML_ALIAS_EVENT ? "aliases" : "lists or maps");
        } else if (kev.data.scalar.length == 0 ||
                   memchr(kev.data.scalar.value, '\0', kev.data.scalar.length)) {
            add_err(c, line, "empty key or key with a NUL character");
        } else {
            int n = prefix ? snprintf(key, sizeof(key), "%s.%s", prefix, (const char *)kev.data.scalar.value)
                           : snprintf(key, sizeof(key), "%s", (const char *)kev.data.scalar.value);
            if (n < 0 || (size_t)n >= sizeof(key))
                add_err(c, line, "key \"%s\" is longer than %d characters",
                        show((const char *)kev.data.scalar.value, b), KEY_MAX);
            else
                key_ok = true;
        }
        yaml_event_type_t kt = kev.type;
        yaml_event_delete(&kev);
        if (!skip_node(c, p, kt))
            return false;
        if (!next_event(c, p, &vev))
            return false;
        bool ok = true;
        yaml_event_type_t vt = vev.type;
        if (!key_ok) {
            yaml_event_delete(&vev);
            ok = skip_node(c, p, vt);
        } else if (vt == YAML_SCALAR_EVENT) {
            handle_scalar(c, key, &vev, line);
            yaml_event_delete(&vev);
        } else if (vt == YAML_SEQUENCE_START_EVENT) {
            yaml_event_delete(&vev);
            ok = handle_sequence(c, p, key, line);
        } else if (vt == YAML_MAPPING_START_EVENT) {
            yaml_event_delete(&vev);
            ok = handle_map(c, p, key, line, depth);
        } else {
            /* Aliases would let a small file expand into a huge one; the config never needs them. */
            add_err(c, line, "%s: aliases (*name) are not supported; write the value out", show(key, b));
            yaml_event_delete(&vev);
        }
        if (!ok)
            return false;
    }
}

/* The whole stream: exactly one document whose top level is a map (or an empty file). */
static bool parse_stream(cs_config *c, const char *data, size_t len)
{
    yaml_parser_t p;
    bool ok = false;
    int docs = 0;
    if (!yaml_parser_initialize(&p)) {
        add_err(c, 0, "out of memory");
        return false;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    for (;;) {
        yaml_event_t ev;
        if (!next_event(c, &p, &ev))
            goto cleanup;
        yaml_event_type_t t = ev.type;
        int line = (int)ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t == YAML_DOCUMENT_START_EVENT) {
            if (++docs > 1) {
                add_err(c, line, "more than one YAML document (---); put everything in one");
                goto cleanup;
            }
        } else if (t == YAML_MAPPING_START_EVENT) {
            if (!parse_mapping(c, &p, NULL, 1))
                goto cleanup;
        } else if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT || t == YAML_ALIAS_EVENT) {
            add_err(c, line, "the top level must be a map of keys (key: value), not a %s",
                    t == YAML_SEQUENCE_START_EVENT ? "list" : "single value");
            if (!skip_node(c, &p, t))
                goto cleanup;
        }
    }
    ok = true;
cleanup:
    yaml_parser_delete(&p);
    return ok;
}

/* ---- file reading ---- */

/* Offset of the first byte that is not valid UTF-8 (or is NUL), or len when all is fine. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char ch = s[i];
        size_t n;
        unsigned min;
        if (ch == 0)
            return i;
        if (ch < 0x80) {
            i++;
            continue;
        } else if ((ch & 0xe0) == 0xc0) {
            n = 1;
            min = 0x80;
        } else if ((ch & 0xf0) == 0xe0) {
            n = 2;
            min = 0x800;
        } else if ((ch & 0xf8) == 0xf0) {
            n = 3;
            min = 0x10000;
        } else {
            return i;
        }
        if (i + n >= len)
            return i; /* truncated sequence at the end */
        unsigned cp = ch & (0x3f >> n);
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i; /* overlong, beyond Unicode, or a surrogate */
        i += n + 1;
    }
    return len;
}

/* Reads the whole file, bounded by CS_CONFIG_FILE_MAX. Caller frees *data. */
static cs_err *read_config_file(const char *path, char **data, size_t *len)
{
    cs_err *err = NULL;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err = cs_err_new(CS_ERR_IO, 0, "%s: cannot open config file: %s; check the path given to --config",
                         path, strerror(errno));
        goto cleanup;
    }
    buf = malloc(CS_CONFIG_FILE_MAX + 2);
    if (!buf) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "%s: out of memory", path);
        goto cleanup;
    }
    n = fread(buf, 1, CS_CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        err = cs_err_new(CS_ERR_IO, 0, "%s: cannot read config file: %s", path, strerror(errno));
        goto cleanup;
    }
    if (n > CS_CONFIG_FILE_MAX) {
        err = cs_err_new(
            CS_ERR_CONFIG, 0,
            "%s: the config file is larger than %d bytes; is this the right file? A config is a few "
            "kilobytes",
            path, CS_CONFIG_FILE_MAX);
        goto cleanup;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
cleanup:
    free(buf);
    if (f)
        fclose(f);
    return err;
}

/* ---- load ---- */

static int cmp_errors(const void *a, const void *b)
{
    const cs_config_error *x = a, *y = b;
    /* File-wide errors (line 0: missing keys, cross-field rules) after the line-numbered ones. */
    long lx = x->line > 0 ? x->line : INT_MAX, ly = y->line > 0 ? y->line : INT_MAX;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All errors in line order, one per line, bounded to what a cs_err holds. */
static cs_err *report_errors(cs_config *c)
{
    qsort(c->errors, c->n_errors, sizeof(c->errors[0]), cmp_errors);
    cs_buf b;
    cs_buf_init(&b, ERRORS_TEXT_MAX);
    size_t hidden = c->n_errors_hidden;
    for (size_t i = 0; i < c->n_errors; i++) {
        bool ok = cs_buf_len(&b) == 0 || cs_buf_add_str(&b, "\n");
        if (!ok || !cs_buf_add_str(&b, c->errors[i].text))
            hidden++;
    }
    cs_err *err;
    if (hidden)
        err = cs_err_new(CS_ERR_CONFIG, 0, "%s\n%s: ... and %zu more errors not shown", cs_buf_str(&b),
                         c->path, hidden);
    else
        err = cs_err_new(CS_ERR_CONFIG, 0, "%s", cs_buf_str(&b));
    cs_buf_free(&b);
    return err;
}

static void apply_defaults(cs_config *c)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        const cs_config_row *r = row_at(c, i);
        if (!r->def || r->type == CS_CONFIG_PREFIX)
            continue;
        if (r->type == CS_CONFIG_LIST) {
            size_t n = 0;
            char **items = split_default(r->def, &n);
            if (!items)
                add_err(c, 0, "out of memory");
            else
                set_list(c, i, items, n, 0);
        } else {
            set_scalar(c, i, r->def, 0);
        }
    }
}

static void check_required(cs_config *c)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        const cs_config_row *r = row_at(c, i);
        const cs_config_value *v = &c->values[i];
        if (!r->required || v->bad)
            continue;
        if (!v->set)
            add_err(c, 0, "missing required key \"%s\": %s", r->name, r->desc);
        else if (r->type == CS_CONFIG_LIST && v->n_items == 0)
            add_err(c, v->line, "%s is empty: give at least one item (%s)", r->name, r->desc);
    }
}

/* Sets every kafka.* property on a scratch conf, so librdkafka's verdict is part of the load. */
static void check_kafka(cs_config *c)
{
    if (cs_config_prefix_count(c, "kafka.") == 0)
        return;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cs_err *err = cs_config_apply_kafka(c, conf);
    rd_kafka_conf_destroy(conf);
    if (err) {
        /* apply_kafka stops at the first; check each one on its own conf to list them all. */
        cs_err_free(err);
        for (size_t i = 0; i < c->n_props; i++) {
            if (strncmp(c->props[i].key, "kafka.", 6) != 0)
                continue;
            char errstr[512];
            rd_kafka_conf_t *one = rd_kafka_conf_new();
            char b[SHOW_MAX + 4];
            const cs_config_prop *p = &c->props[i];
            if (rd_kafka_conf_set(one, p->target ? p->target : p->key + 6, p->secret ? p->secret : p->value,
                                  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
                add_err(
                    c, c->props[i].line,
                    "%s = \"%s\": librdkafka rejected this property: %s (see librdkafka's CONFIGURATION.md)",
                    c->props[i].key, looks_secret(c->props[i].key) ? "<hidden>" : show(c->props[i].value, b),
                    errstr);
            rd_kafka_conf_destroy(one);
        }
    }
}

cs_err *cs_config_load(const cs_config_spec *spec, const char *path, cs_config **out)
{
    cs_err *err = NULL;
    char *data = NULL;
    size_t len = 0;
    cs_config *c = NULL;
    *out = NULL;

    err = read_config_file(path, &data, &len);
    if (err)
        goto cleanup;

    c = calloc(1, sizeof(*c));
    if (!c)
        goto oom;
    c->spec = spec;
    while (spec->rows[c->n_rows].name)
        c->n_rows++;
    c->path = strdup(path);
    c->values = calloc(c->n_rows ? c->n_rows : 1, sizeof(*c->values));
    c->props = calloc(PROPS_MAX, sizeof(*c->props));
    c->seen = calloc(KEYS_MAX, sizeof(*c->seen));
    if (!c->path || !c->values || !c->props || !c->seen)
        goto oom;
    const char *slash = strrchr(path, '/');
    if (slash) {
        c->dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (!c->dir)
            goto oom;
    }

    apply_defaults(c);

    size_t bad = utf8_invalid_at((const unsigned char *)data, len);
    if (bad < len) {
        int line = 1, col = 1;
        for (size_t i = 0; i < bad; i++) {
            if (data[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        add_err(c, line, "column %d: the file is not valid UTF-8 text (byte 0x%02x); save it as UTF-8", col,
                (unsigned)(unsigned char)data[bad]);
    } else if (parse_stream(c, data, len)) {
        check_required(c);
        check_kafka(c);
        if (spec->finalize)
            spec->finalize(c);
    }

    if (c->n_errors > 0 || c->n_errors_hidden > 0) {
        err = report_errors(c);
        goto cleanup;
    }
    *out = c;
    c = NULL;
    goto cleanup;
oom:
    err = cs_err_new(CS_ERR_NOMEM, 0, "%s: out of memory while loading the config", path);
cleanup:
    free(data);
    cs_config_free(c);
    return err;
}

void cs_config_free(cs_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; cfg->values && i < cfg->n_rows; i++)
        clear_value(&cfg->values[i]);
    free(cfg->values);
    for (size_t i = 0; cfg->props && i < cfg->n_props; i++)
        prop_clear(&cfg->props[i]);
    free(cfg->props);
    for (size_t i = 0; i < cfg->n_seen; i++)
        free(cfg->seen[i].key);
    free(cfg->seen);
    for (size_t i = 0; i < cfg->n_warnings; i++)
        free(cfg->warnings[i]);
    for (size_t i = 0; i < cfg->n_errors; i++)
        free(cfg->errors[i].text);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

const char *cs_config_path(const cs_config *cfg)
{
    return cfg->path;
}

/* ---- accessors ---- */

/* The value of `key`, which must be a row of one of the given types: anything else is a caller bug. */
static const cs_config_value *lookup(const cs_config *c, const char *key, cs_config_type t1,
                                     cs_config_type t2, cs_config_type t3)
{
    long i = find_row(c, key);
    if (i < 0) {
        fprintf(stderr, "cs_config: bug: key \"%s\" is not in the %s table\n", key, c->spec->service);
        abort();
    }
    cs_config_type t = row_at(c, (size_t)i)->type;
    if (t != t1 && t != t2 && t != t3) {
        fprintf(stderr, "cs_config: bug: key \"%s\" is a %s, read with the wrong accessor\n", key,
                type_name(t));
        abort();
    }
    return &c->values[i];
}

const char *cs_config_get_string(const cs_config *cfg, const char *key)
{
    long i = find_row(cfg, key);
    if (i >= 0 &&
        (row_at(cfg, (size_t)i)->type == CS_CONFIG_FILE || row_at(cfg, (size_t)i)->type == CS_CONFIG_SECRET))
        return cfg->values[i].str;
    return lookup(cfg, key, CS_CONFIG_STRING, CS_CONFIG_ENUM, CS_CONFIG_LISTEN)->str;
}

int cs_config_enum_index(const char *const *allowed, const char *value)
{
    for (int i = 0; allowed && allowed[i]; i++)
        if (strcmp(value, allowed[i]) == 0)
            return i;
    return 0;
}

int cs_config_get_enum_index(const cs_config *cfg, const char *key)
{
    const cs_config_value *v = lookup(cfg, key, CS_CONFIG_ENUM, CS_CONFIG_ENUM, CS_CONFIG_ENUM);
    /* lookup() aborts unless the row exists, so find_row() is >= 0 here. */
    if (!v->str) /* an enum row without a default that the file did not set */
        return 0;
    return cs_config_enum_index(row_at(cfg, (size_t)find_row(cfg, key))->allowed, v->str);
}

long long cs_config_get_int(const cs_config *cfg, const char *key)
{
    return lookup(cfg, key, CS_CONFIG_INT, CS_CONFIG_INT, CS_CONFIG_INT)->num;
}

long long cs_config_get_duration_ms(const cs_config *cfg, const char *key)
{
    return lookup(cfg, key, CS_CONFIG_DURATION, CS_CONFIG_DURATION, CS_CONFIG_DURATION)->num;
}

bool cs_config_get_bool(const cs_config *cfg, const char *key)
{
    return lookup(cfg, key, CS_CONFIG_BOOL, CS_CONFIG_BOOL, CS_CONFIG_BOOL)->num != 0;
}

size_t cs_config_get_list(const cs_config *cfg, const char *key, const char *const **items)
{
    static const char *const empty[] = {NULL};
    const cs_config_value *v = lookup(cfg, key, CS_CONFIG_LIST, CS_CONFIG_LIST, CS_CONFIG_LIST);
    *items = v->items ? (const char *const *)v->items : empty;
    return v->n_items;
}

const char *cs_config_get_secret(const cs_config *cfg, const char *key)
{
    return lookup(cfg, key, CS_CONFIG_SECRET, CS_CONFIG_SECRET, CS_CONFIG_SECRET)->secret;
}

void cs_config_get_listen(const cs_config *cfg, const char *key, const char **host, int *port)
{
    const cs_config_value *v = lookup(cfg, key, CS_CONFIG_LISTEN, CS_CONFIG_LISTEN, CS_CONFIG_LISTEN);
    *host = v->host;
    *port = (int)v->num;
}

bool cs_config_is_set(const cs_config *cfg, const char *key)
{
    long i = find_row(cfg, key);
    if (i >= 0)
        return cfg->values[i].set;
    for (size_t k = 0; k < cfg->n_props; k++)
        if (strcmp(cfg->props[k].key, key) == 0)
            return true;
    return false;
}

size_t cs_config_prefix_count(const cs_config *cfg, const char *prefix)
{
    size_t n = 0, plen = strlen(prefix);
    for (size_t i = 0; i < cfg->n_props; i++)
        if (strncmp(cfg->props[i].key, prefix, plen) == 0)
            n++;
    return n;
}

void cs_config_prefix_at(const cs_config *cfg, const char *prefix, size_t i, const char **name,
                         const char **value, int *line)
{
    size_t plen = strlen(prefix), n = 0;
    for (size_t k = 0; k < cfg->n_props; k++) {
        if (strncmp(cfg->props[k].key, prefix, plen) != 0)
            continue;
        if (n++ == i) {
            *name = cfg->props[k].key + plen;
            *value = cfg->props[k].value;
            *line = cfg->props[k].line;
            return;
        }
    }
    fprintf(stderr, "cs_config: bug: prefix index %zu out of range\n", i);
    abort();
}

cs_err *cs_config_apply_kafka(const cs_config *cfg, rd_kafka_conf_t *conf)
{
    for (size_t i = 0; i < cfg->n_props; i++) {
        const cs_config_prop *p = &cfg->props[i];
        if (strncmp(p->key, "kafka.", 6) != 0)
            continue;
        char errstr[512];
        /* kafka.X_file sets X from the file's contents (read at load). */
        if (rd_kafka_conf_set(conf, p->target ? p->target : p->key + 6, p->secret ? p->secret : p->value,
                              errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
            return cs_err_new(
                CS_ERR_CONFIG, 0,
                "%s:%d: %s: librdkafka rejected this property: %s (see librdkafka's CONFIGURATION.md)",
                cfg->path, p->line, p->key, errstr);
    }
    return NULL;
}

/* Line of `key` in the file, 0 when it came from the default or is unknown. */
static int key_line(const cs_config *c, const char *key)
{
    if (!key)
        return 0;
    long i = find_row(c, key);
    if (i >= 0)
        return c->values[i].set ? c->values[i].line : 0;
    for (size_t k = 0; k < c->n_props; k++)
        if (strcmp(c->props[k].key, key) == 0)
            return c->props[k].line;
    return 0;
}

void cs_config_add_error(cs_config *cfg, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_errv(cfg, key_line(cfg, key), fmt, ap);
    va_end(ap);
    long i = key ? find_row(cfg, key) : -1;
    if (i >= 0)
        cfg->values[i].bad = true;
}

void cs_config_add_warning(cs_config *cfg, const char *key, const char *fmt, ...)
{
    if (cfg->n_warnings >= WARNINGS_MAX)
        return;
    char msg[ERROR_LINE_MAX];
    int line = key_line(cfg, key);
    int off = line > 0 ? snprintf(msg, sizeof(msg), "%s:%d: ", cfg->path, line)
                       : snprintf(msg, sizeof(msg), "%s: ", cfg->path);
    if (off < 0 || (size_t)off >= sizeof(msg))
        off = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + off, sizeof(msg) - (size_t)off, fmt, ap);
    va_end(ap);
    char *copy = strdup(msg);
    if (copy)
        cfg->warnings[cfg->n_warnings++] = copy;
}

bool cs_config_key_ok(const cs_config *cfg, const char *key)
{
    long i = find_row(cfg, key);
    return i < 0 || !cfg->values[i].bad;
}

size_t cs_config_warning_count(const cs_config *cfg)
{
    return cfg->n_warnings;
}

const char *cs_config_warning_at(const cs_config *cfg, size_t i)
{
    return i < cfg->n_warnings ? cfg->warnings[i] : NULL;
}

/* ---- help ---- */

/* Writes `text` indented by 4 and wrapped at about 100 columns, on word boundaries. */
static void put_wrapped(FILE *out, const char *text)
{
    const size_t width = 96;
    const char *p = text;
    while (*p) {
        size_t n = strlen(p);
        if (n > width) {
            n = width;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = width; /* one long word: cut it */
        }
        fprintf(out, "    %.*s\n", (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

bool cs_config_render_help(const cs_config_spec *spec, FILE *out)
{
    char list[512], lo[32], hi[32];
    fprintf(
        out,
        "%s configuration (YAML). Nested maps flatten to dotted keys: \"ldap:\\n  url: x\" is \"ldap.url\".\n"
        "Durations are a whole number with a unit: ms, s, m or h. Relative file paths resolve against the\n"
        "config file's directory. Secret files hold only the secret (a trailing newline is ignored).\n\n",
        spec->service);
    for (size_t i = 0; spec->rows[i].name; i++) {
        const cs_config_row *r = &spec->rows[i];
        if (r->type == CS_CONFIG_PREFIX) {
            fprintf(out, "%s<property>  (passthrough)\n", r->name);
            put_wrapped(out, r->desc);
            fputc('\n', out);
            continue;
        }
        fprintf(out, "%s  (%s", r->name, type_name(r->type));
        if (r->required)
            fprintf(out, ", required");
        if (r->def_doc)
            fprintf(out, ", default %s", r->def_doc);
        else if (r->def && r->type == CS_CONFIG_SECRET)
            fprintf(out, ", default <file>");
        else if (r->def && r->type == CS_CONFIG_LIST)
            fprintf(out, ", default [%s]", r->def);
        else if (r->def)
            fprintf(out, ", default %s", *r->def ? r->def : "\"\"");
        else if (!r->required)
            fprintf(out, ", no default");
        if (r->type == CS_CONFIG_INT)
            fprintf(out, ", range %lld..%lld", r->min, r->max);
        else if (r->type == CS_CONFIG_DURATION)
            fprintf(out, ", range %s..%s", fmt_duration(r->min, lo, sizeof(lo)),
                    fmt_duration(r->max, hi, sizeof(hi)));
        else if (r->type == CS_CONFIG_ENUM || (r->type == CS_CONFIG_LIST && r->allowed)) {
            join_list(r->allowed, list, sizeof(list));
            fprintf(out, ", %s %s", r->type == CS_CONFIG_ENUM ? "one of" : "items from", list);
        } else if (r->type == CS_CONFIG_SECRET)
            fprintf(out, ", value: path to <file>");
        fprintf(out, ")\n");
        put_wrapped(out, r->desc);
        fputc('\n', out);
    }
    return !ferror(out) && fflush(out) == 0;
}

/* ---- ready-made checks ---- */

const char *cs_config_check_topic(const char *value)
{
    size_t n = strlen(value);
    if (n == 0 || n > 249 || strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
        return "a Kafka topic name is 1..249 characters of letters, digits, '.', '_' and '-'";
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)value[i]) && value[i] != '.' && value[i] != '_' && value[i] != '-')
            return "a Kafka topic name is 1..249 characters of letters, digits, '.', '_' and '-'";
    return NULL;
}

const char *cs_config_check_id(const char *value)
{
    size_t n = strlen(value);
    if (n == 0 || n > 100)
        return "an id is 1..100 characters of letters, digits, '.', '_' and '-'";
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)value[i]) && value[i] != '.' && value[i] != '_' && value[i] != '-')
            return "an id is 1..100 characters of letters, digits, '.', '_' and '-'";
    return NULL;
}

static bool has_host_after(const char *value, size_t scheme_len)
{
    const char *h = value + scheme_len;
    return *h && *h != '/' && *h != ':' && !strpbrk(h, " \t");
}

const char *cs_config_check_https_url(const char *value)
{
    if (strncmp(value, "https://", 8) != 0 || !has_host_after(value, 8))
        return "write an https:// URL with a host, e.g. https://login.microsoftonline.com (plain http is not "
               "allowed)";
    return NULL;
}

const char *cs_config_check_ldap_url(const char *value)
{
    size_t n = strncmp(value, "ldap://", 7) == 0 ? 7 : strncmp(value, "ldaps://", 8) == 0 ? 8 : 0;
    if (n == 0 || !has_host_after(value, n))
        return "write ldap://host[:port] or ldaps://host[:port] (one server)";
    return NULL;
}

const char *cs_config_check_ldap_filter(const char *value)
{
    size_t n = strlen(value);
    if (n < 3 || value[0] != '(' || value[n - 1] != ')')
        return "an LDAP filter is enclosed in parentheses, e.g. (objectClass=user)";
    long depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (value[i] == '(')
            depth++;
        else if (value[i] == ')' && --depth < 0)
            break;
        if (depth == 0 && i + 1 < n)
            return "the filter's parentheses do not balance (or there are two filters: combine them with "
                   "(&...))";
    }
    if (depth != 0)
        return "the filter's parentheses do not balance";
    return NULL;
}
