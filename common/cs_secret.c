/*
 * cs_secret: secret files compared on a timer and on SIGHUP (see cs_secret.h).
 */
#include "cs_secret.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cs_log.h"

#define FAC "secrets"
#define KEY_MAX 256 /* config keys are short; kafka.<property>_file included */

/* Set by SIGHUP; every watch remembers the value it last acted on. */
static volatile sig_atomic_t reload_requests;

typedef struct ident {
    dev_t dev;
    ino_t ino;
    off_t size;
    time_t mtime_s;
    long mtime_ns;
} ident;

typedef struct watched {
    char key[KEY_MAX];
    char *path;
    char *value; /* current contents; wiped before free */
    size_t len;
    unsigned tag;
    unsigned generation;
    ident id;
    bool failing; /* the last read failed: warn once until it works again */
} watched;

struct cs_secret_watch {
    watched files[CS_SECRET_MAX_FILES];
    size_t n;
    long long last_ms;
    sig_atomic_t seen_requests;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Overwrites memory that held a secret; volatile so the compiler cannot drop it before free(). */
static void wipe_free(char *p, size_t n)
{
    if (p == NULL)
        return;
    volatile char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
    free(p);
}

static bool stat_ident(const char *path, ident *out, int *err_no)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        *err_no = errno;
        return false;
    }
    memset(out, 0, sizeof *out);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime_s = st.st_mtim.tv_sec;
    out->mtime_ns = st.st_mtim.tv_nsec;
    return true;
}

static bool same_ident(const ident *a, const ident *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_s == b->mtime_s &&
           a->mtime_ns == b->mtime_ns;
}

cs_err *cs_secret_watch_new(cs_secret_watch **out)
{
    *out = NULL;
    cs_secret_watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory for the secret watch");
    w->last_ms = mono_ms();
    w->seen_requests = reload_requests;
    *out = w;
    return NULL;
}

void cs_secret_watch_free(cs_secret_watch *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        wipe_free(w->files[i].value, w->files[i].len);
        free(w->files[i].path);
    }
    free(w);
}

static watched *find(const cs_secret_watch *w, const char *key)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->files[i].key, key) == 0)
            return (watched *)(uintptr_t)&w->files[i];
    return NULL;
}

cs_err *cs_secret_watch_add(cs_secret_watch *w, const char *key, const char *path, unsigned tag)
{
    char why[256];
    int en = 0;
    if (key == NULL || path == NULL || strlen(key) >= KEY_MAX)
        return cs_err_new(CS_ERR_INTERNAL, 0, "cs_secret_watch_add: a key and a path are required");
    if (find(w, key) != NULL)
        return cs_err_new(CS_ERR_INTERNAL, 0, "%s: watched twice", key);
    if (w->n >= CS_SECRET_MAX_FILES)
        return cs_err_new(CS_ERR_CONFIG, 0, "%s: more than %d secret files; use fewer", key,
                          CS_SECRET_MAX_FILES);
    watched *f = &w->files[w->n];
    memset(f, 0, sizeof *f);
    snprintf(f->key, sizeof f->key, "%s", key);
    f->tag = tag;
    if (!stat_ident(path, &f->id, &en))
        return cs_err_new(CS_ERR_CONFIG, 0, "%s: secret file \"%s\" cannot be read: %s; check the mount", key,
                          path, strerror(en));
    if (!cs_config_read_secret_file(path, &f->value, &f->len, why, sizeof why))
        return cs_err_new(CS_ERR_CONFIG, 0, "%s: secret file \"%s\" is unusable: %s", key, path, why);
    f->path = strdup(path);
    if (f->path == NULL) {
        wipe_free(f->value, f->len);
        f->value = NULL;
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
    w->n++;
    return NULL;
}

cs_err *cs_secret_watch_add_kafka(cs_secret_watch *w, const cs_config *cfg, unsigned tag)
{
    size_t n = cs_config_prefix_count(cfg, "kafka.");
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL, *value = NULL;
        int line = 0;
        cs_config_prefix_at(cfg, "kafka.", i, &name, &value, &line);
        size_t len = strlen(name);
        /* The loader accepts kafka.X_file only for credentials: its value is the secret file's path. */
        if (len <= 5 || strcmp(name + len - 5, "_file") != 0)
            continue;
        char key[KEY_MAX];
        snprintf(key, sizeof key, "kafka.%s", name);
        cs_err *err = cs_secret_watch_add(w, key, value, tag);
        if (err)
            return err;
    }
    return NULL;
}

/* Compares one file; true when its contents changed (the new value is in place). */
static bool check_one(watched *f, bool force)
{
    ident now;
    int en = 0;
    char why[256];
    char *value = NULL;
    size_t len = 0;
    if (!stat_ident(f->path, &now, &en)) {
        if (!f->failing)
            cs_log_kv(CS_LOG_WARN, FAC, "secret file cannot be read: keeping the previous value", "key",
                      f->key, "file", f->path, "error", strerror(en), NULL);
        f->failing = true;
        return false;
    }
    if (!force && !f->failing && same_ident(&now, &f->id))
        return false;
    if (!cs_config_read_secret_file(f->path, &value, &len, why, sizeof why)) {
        if (!f->failing)
            cs_log_kv(CS_LOG_WARN, FAC, "secret file is unusable: keeping the previous value", "key", f->key,
                      "file", f->path, "error", why, NULL);
        f->failing = true;
        return false;
    }
    f->failing = false;
    f->id = now;
    if (len == f->len && memcmp(value, f->value, len) == 0) {
        wipe_free(value, len); /* touched or re-linked, same secret */
        return false;
    }
    wipe_free(f->value, f->len);
    f->value = value;
    f->len = len;
    f->generation++;
    cs_log_kv(CS_LOG_INFO, FAC, "secret file reloaded: the new value is used from the next connection", "key",
              f->key, "file", f->path, NULL);
    return true;
}

unsigned cs_secret_watch_poll(cs_secret_watch *w, bool force)
{
    unsigned changed = 0;
    long long now = mono_ms();
    sig_atomic_t req = reload_requests;
    bool hup = req != w->seen_requests;
    if (!force && !hup && now - w->last_ms < CS_SECRET_POLL_MS)
        return 0;
    if (hup)
        cs_log(CS_LOG_INFO, FAC, "SIGHUP: comparing %zu secret files", w->n);
    w->seen_requests = req;
    w->last_ms = now;
    for (size_t i = 0; i < w->n; i++)
        if (check_one(&w->files[i], force || hup))
            changed |= w->files[i].tag;
    return changed;
}

const char *cs_secret_watch_value(const cs_secret_watch *w, const char *key)
{
    const watched *f = w ? find(w, key) : NULL;
    return f ? f->value : NULL;
}

unsigned cs_secret_watch_generation(const cs_secret_watch *w, const char *key)
{
    const watched *f = w ? find(w, key) : NULL;
    return f ? f->generation : 0;
}

void cs_secret_request_reload(void)
{
    /* sig_atomic_t may be narrow: wrapping is fine, only "differs from what a watch saw" matters. */
    reload_requests = (sig_atomic_t)((reload_requests + 1) & 0x3fff);
}

static void on_sighup(int sig)
{
    (void)sig;
    cs_secret_request_reload();
}

void cs_secret_install_sighup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sighup;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
}
