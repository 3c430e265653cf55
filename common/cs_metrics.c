/*
 * cs_metrics: Prometheus registry, text exposition format 0.0.4.
 *
 * Values are doubles stored as their IEEE-754 bit patterns in atomic
 * uint64_t, updated with compare-and-swap loops, so a hot path never locks.
 * Everything structural (families, series, hash tables) is guarded by one
 * registry mutex, which scrapes also take.
 */
#include "cs_metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cs_log.h"

#define MAX_NAME 256             /* bytes of a metric or label name */
#define MAX_SERIES_LIMIT 1000000 /* largest max_series a family may ask for */
#define INITIAL_TABLE 16         /* hash buckets before the first growth */
#define DROPPED_NAME "certsync_metrics_series_dropped_total"

struct cs_series {
    struct cs_series *next;  /* creation order */
    struct cs_series *hnext; /* hash chain */
    uint64_t hash;
    const struct cs_metric *fam; /* owner, outlives the series; observe reads its bounds */
    char **values;               /* fam->n_labels label values */
    _Atomic uint64_t bits;       /* counter/gauge value, or histogram sum, as double bits */
    _Atomic uint64_t *counts;    /* histogram: n_bounds + 1 per-bucket (not cumulative) counts */
    bool hidden;                 /* removed (cs_metrics_series_remove): kept, not rendered; under the lock */
};

struct cs_metric {
    struct cs_metric *next;
    cs_metrics *reg;
    cs_metric_type type;
    char *name;
    char *help;
    char **labels;
    size_t n_labels;
    size_t max_series;
    double *bounds;
    size_t n_bounds;
    cs_metrics_collect_fn collect;
    void *collect_arg;
    struct cs_series *head, *tail;
    size_t n_series;
    size_t n_hidden; /* series removed and not asked for again */
    struct cs_series **table;
    size_t table_size;
    bool warned; /* logged a refused series once already */
};

struct cs_metrics {
    pthread_mutex_t lock;
    struct cs_metric *head, *tail;
    cs_metric *dropped_fam; /* rendered last, so it includes drops by this scrape's collect callbacks */
    cs_counter *dropped;
};

struct cs_metrics_sink {
    cs_metric *fam;
    cs_buf *out;
    size_t n;
    bool failed;
};

/* ---- doubles in atomics ---- */

static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* Lock-free add: the CAS only fails when another thread made progress, so it ends. */
static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, dbl_bits(bits_dbl(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* ---- formatting ---- */

/*
 * Formats a sample value or a bucket bound the way Prometheus parses it:
 * NaN, +Inf, -Inf, integers without exponent, else the shortest %g that
 * reads back as the same double.
 */
static void format_double(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
    } else if (isinf(v)) {
        snprintf(out, size, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(int64_t)v) {
        snprintf(out, size, "%" PRId64, (int64_t)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, size, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* Label values escape backslash, double quote and newline. */
static bool add_label_value(cs_buf *b, const char *s)
{
    bool ok = true;
    for (const char *p = s; ok && *p; p++) {
        if (*p == '\\')
            ok = cs_buf_add(b, "\\\\", 2);
        else if (*p == '"')
            ok = cs_buf_add(b, "\\\"", 2);
        else if (*p == '\n')
            ok = cs_buf_add(b, "\\n", 2);
        else
            ok = cs_buf_add(b, p, 1);
    }
    return ok;
}

/* HELP text escapes backslash and newline only. */
static bool add_help(cs_buf *b, const char *s)
{
    bool ok = true;
    for (const char *p = s; ok && *p; p++) {
        if (*p == '\\')
            ok = cs_buf_add(b, "\\\\", 2);
        else if (*p == '\n')
            ok = cs_buf_add(b, "\\n", 2);
        else
            ok = cs_buf_add(b, p, 1);
    }
    return ok;
}

/*
 * Writes `name{l1="v1",...,extra_name="extra_value"} value\n`; braces are
 * left out when there are no labels at all.
 */
static bool add_sample(cs_buf *b, const char *name, const char *suffix, const cs_metric *fam,
                       const char *const *values, const char *extra_name, const char *extra_value, double v)
{
    char num[64];
    bool ok = cs_buf_add_str(b, name) && cs_buf_add_str(b, suffix);
    bool any = fam->n_labels > 0 || extra_name;
    if (ok && any)
        ok = cs_buf_add(b, "{", 1);
    for (size_t i = 0; ok && i < fam->n_labels; i++) {
        ok = (i == 0 || cs_buf_add(b, ",", 1)) && cs_buf_add_str(b, fam->labels[i]) &&
             cs_buf_add(b, "=\"", 2) && add_label_value(b, values[i]) && cs_buf_add(b, "\"", 1);
    }
    if (ok && extra_name) {
        ok = (fam->n_labels == 0 || cs_buf_add(b, ",", 1)) && cs_buf_add_str(b, extra_name) &&
             cs_buf_add(b, "=\"", 2) && add_label_value(b, extra_value) && cs_buf_add(b, "\"", 1);
    }
    if (ok && any)
        ok = cs_buf_add(b, "}", 1);
    format_double(num, sizeof(num), v);
    return ok && cs_buf_add(b, " ", 1) && cs_buf_add_str(b, num) && cs_buf_add(b, "\n", 1);
}

static const char *type_name(cs_metric_type t)
{
    switch (t) {
    case CS_METRIC_COUNTER:
        return "counter";
    case CS_METRIC_GAUGE:
        return "gauge";
    case CS_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static bool add_header(cs_buf *b, const cs_metric *fam)
{
    return cs_buf_printf(b, "# HELP %s ", fam->name) && add_help(b, fam->help) &&
           cs_buf_printf(b, "\n# TYPE %s %s\n", fam->name, type_name(fam->type));
}

static bool add_series(cs_buf *b, const cs_metric *fam, const struct cs_series *s)
{
    const char *const *values = (const char *const *)s->values;
    if (fam->type != CS_METRIC_HISTOGRAM)
        return add_sample(b, fam->name, "", fam, values, NULL, NULL,
                          bits_dbl(atomic_load_explicit(&s->bits, memory_order_relaxed)));
    /* _count is the +Inf bucket, so the two always agree even mid-update. */
    uint64_t cum = 0;
    char le[64];
    bool ok = true;
    for (size_t i = 0; ok && i <= fam->n_bounds; i++) {
        cum += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        if (i < fam->n_bounds)
            format_double(le, sizeof(le), fam->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        ok = add_sample(b, fam->name, "_bucket", fam, values, "le", le, (double)cum);
    }
    return ok &&
           add_sample(b, fam->name, "_sum", fam, values, NULL, NULL,
                      bits_dbl(atomic_load_explicit(&s->bits, memory_order_relaxed))) &&
           add_sample(b, fam->name, "_count", fam, values, NULL, NULL, (double)cum);
}

/* ---- validation ---- */

static bool valid_name(const char *s, bool colon)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* True when `name` is already rendered by `fam`, including a histogram's _bucket/_sum/_count lines. */
static bool name_clashes(const cs_metric *fam, const char *name, cs_metric_type type)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t fl = strlen(fam->name), nl = strlen(name);
    if (strcmp(fam->name, name) == 0)
        return true;
    for (size_t i = 0; i < 3; i++) {
        if (fam->type == CS_METRIC_HISTOGRAM && nl > fl && strncmp(name, fam->name, fl) == 0 &&
            strcmp(name + fl, suffixes[i]) == 0)
            return true;
        if (type == CS_METRIC_HISTOGRAM && fl > nl && strncmp(fam->name, name, nl) == 0 &&
            strcmp(fam->name + nl, suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* Checks a definition against the format's rules; the caller holds the lock. */
static cs_err *validate(const cs_metrics *reg, const cs_metric_def *def, size_t *n_labels)
{
    const char *name = def->name ? def->name : "(null)";
    if (!def->name || !valid_name(def->name, true))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "metric \"%s\": name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be at most %d bytes",
                          name, MAX_NAME);
    if (def->type != CS_METRIC_COUNTER && def->type != CS_METRIC_GAUGE && def->type != CS_METRIC_HISTOGRAM)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "metric \"%s\": type %d is not counter, gauge or histogram", name, (int)def->type);
    if (def->type == CS_METRIC_COUNTER && !ends_with(name, "_total"))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": counter names must end in _total", name);
    if (def->type == CS_METRIC_HISTOGRAM && def->collect)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": only counters and gauges can be collected",
                          name);
    if (!def->help || !def->help[0] || strlen(def->help) > CS_METRICS_MAX_HELP)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": help text must be 1 to %d bytes", name,
                          CS_METRICS_MAX_HELP);
    if (def->max_series > MAX_SERIES_LIMIT)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": max_series %zu is over the limit of %d",
                          name, def->max_series, MAX_SERIES_LIMIT);
    for (const cs_metric *f = reg->head; f; f = f->next) {
        if (name_clashes(f, name, def->type))
            return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                              "metric \"%s\": name is already registered (by \"%s\")", name, f->name);
    }
    size_t n = 0;
    for (; def->labels && def->labels[n]; n++) {
        const char *l = def->labels[n];
        if (n >= CS_METRICS_MAX_LABELS)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": more than %d label names", name,
                              CS_METRICS_MAX_LABELS);
        if (!valid_name(l, false))
            return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                              "metric \"%s\": label name \"%s\" must match [a-zA-Z_][a-zA-Z0-9_]*", name, l);
        if (strncmp(l, "__", 2) == 0)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                              "metric \"%s\": label name \"%s\" starts with __, which Prometheus reserves",
                              name, l);
        if (def->type == CS_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                              "metric \"%s\": label name \"le\" is reserved for histogram buckets", name);
        for (size_t j = 0; j < n; j++) {
            if (strcmp(def->labels[j], l) == 0)
                return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": label name \"%s\" is listed twice",
                                  name, l);
        }
    }
    if (def->type == CS_METRIC_HISTOGRAM) {
        if (def->n_buckets > CS_METRICS_MAX_BUCKETS || (def->n_buckets > 0 && !def->buckets))
            return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metric \"%s\": give 0 to %d bucket bounds", name,
                              CS_METRICS_MAX_BUCKETS);
        for (size_t i = 0; i < def->n_buckets; i++) {
            if (!isfinite(def->buckets[i]) || (i > 0 && def->buckets[i] <= def->buckets[i - 1]))
                return cs_err_new(
                    CS_ERR_INVALID_INPUT, 0,
                    "metric \"%s\": bucket bounds must be finite and strictly increasing (bound %zu)", name,
                    i);
        }
    }
    *n_labels = n;
    return NULL;
}

/* ---- families and series ---- */

static void series_free(struct cs_series *s, size_t n_labels)
{
    if (!s)
        return;
    for (size_t i = 0; s->values && i < n_labels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

static void family_free(cs_metric *fam)
{
    if (!fam)
        return;
    struct cs_series *s = fam->head;
    while (s) {
        struct cs_series *next = s->next;
        series_free(s, fam->n_labels);
        s = next;
    }
    for (size_t i = 0; fam->labels && i < fam->n_labels; i++)
        free(fam->labels[i]);
    free(fam->labels);
    free(fam->table);
    free(fam->bounds);
    free(fam->help);
    free(fam->name);
    free(fam);
}

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xffu) * 1099511628211ULL; /* separator: ("ab","c") != ("a","bc") */
    }
    return h;
}

static bool same_values(const struct cs_series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    }
    return true;
}

/* Doubles the hash table; on allocation failure keeps the old one (lookups stay correct, only slower). */
static void table_grow(cs_metric *fam)
{
    size_t size = fam->table_size ? fam->table_size * 2 : INITIAL_TABLE;
    struct cs_series **t = calloc(size, sizeof(*t));
    if (!t)
        return;
    for (struct cs_series *s = fam->head; s; s = s->next) {
        size_t i = (size_t)(s->hash & (size - 1));
        s->hnext = t[i];
        t[i] = s;
    }
    free(fam->table);
    fam->table = t;
    fam->table_size = size;
}

static void refuse(cs_metric *fam, const char *why)
{
    cs_metrics_counter_inc(fam->reg->dropped);
    if (!fam->warned) {
        fam->warned = true;
        cs_log_kv(CS_LOG_WARN, "metrics", "metric series refused; its updates are discarded", "metric",
                  fam->name, "reason", why, NULL);
    }
}

/* Finds or creates a series; the caller holds the lock. NULL when refused. */
static struct cs_series *series_get(cs_metric *fam, const char *const *values, size_t n)
{
    struct cs_series *s = NULL;
    if (n != fam->n_labels || (n > 0 && !values)) {
        refuse(fam, "wrong number of label values");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!values[i] || strlen(values[i]) > CS_METRICS_MAX_LABEL_VALUE) {
            refuse(fam, "label value missing or too long");
            return NULL;
        }
    }
    uint64_t h = hash_values(values, n);
    if (fam->table) {
        for (s = fam->table[h & (fam->table_size - 1)]; s; s = s->hnext) {
            if (s->hash == h && same_values(s, values, n)) {
                if (s->hidden) {
                    /* Asked for again: shown again from zero (updates through stale handles discarded). */
                    s->hidden = false;
                    fam->n_hidden--;
                    atomic_store_explicit(&s->bits, dbl_bits(0.0), memory_order_relaxed);
                    for (size_t i = 0; s->counts && i <= fam->n_bounds; i++)
                        atomic_store_explicit(&s->counts[i], 0, memory_order_relaxed);
                }
                return s;
            }
        }
    }
    if (fam->n_series >= fam->max_series) {
        refuse(fam, "series limit reached");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        goto fail;
    s->hash = h;
    s->fam = fam;
    atomic_init(&s->bits, dbl_bits(0.0));
    if (n > 0) {
        s->values = calloc(n, sizeof(*s->values));
        if (!s->values)
            goto fail;
        for (size_t i = 0; i < n; i++) {
            s->values[i] = strdup(values[i]);
            if (!s->values[i])
                goto fail;
        }
    }
    if (fam->type == CS_METRIC_HISTOGRAM) {
        s->counts = calloc(fam->n_bounds + 1, sizeof(*s->counts));
        if (!s->counts)
            goto fail;
        for (size_t i = 0; i <= fam->n_bounds; i++)
            atomic_init(&s->counts[i], 0);
    }
    if (fam->n_series >= 2 * fam->table_size)
        table_grow(fam);
    if (!fam->table)
        goto fail;
    size_t slot = (size_t)(h & (fam->table_size - 1));
    s->hnext = fam->table[slot];
    fam->table[slot] = s;
    if (fam->tail)
        fam->tail->next = s;
    else
        fam->head = s;
    fam->tail = s;
    fam->n_series++;
    return s;

fail:
    series_free(s, n);
    refuse(fam, "out of memory");
    return NULL;
}

static struct cs_series *series_with(cs_metric *fam, cs_metric_type type, const char *const *values, size_t n)
{
    if (!fam)
        return NULL;
    if (fam->type != type || fam->collect) {
        cs_log_kv(CS_LOG_ERROR, "metrics", "series asked for with the wrong type; updates are discarded",
                  "metric", fam->name, NULL);
        return NULL;
    }
    pthread_mutex_lock(&fam->reg->lock);
    struct cs_series *s = series_get(fam, values, n);
    pthread_mutex_unlock(&fam->reg->lock);
    return s;
}

/* Registers with the lock held. */
static cs_err *register_locked(cs_metrics *reg, const cs_metric_def *def, cs_metric **out)
{
    cs_err *err = NULL;
    cs_metric *fam = NULL;
    size_t n_labels = 0;

    err = validate(reg, def, &n_labels);
    if (err)
        goto cleanup;
    fam = calloc(1, sizeof(*fam));
    if (!fam)
        goto nomem;
    fam->reg = reg;
    fam->type = def->type;
    fam->max_series = def->max_series ? def->max_series : CS_METRICS_DEFAULT_MAX_SERIES;
    fam->collect = def->collect;
    fam->collect_arg = def->collect_arg;
    fam->name = strdup(def->name);
    fam->help = strdup(def->help);
    if (!fam->name || !fam->help)
        goto nomem;
    if (n_labels > 0) {
        fam->labels = calloc(n_labels, sizeof(*fam->labels));
        if (!fam->labels)
            goto nomem;
        fam->n_labels = n_labels;
        for (size_t i = 0; i < n_labels; i++) {
            fam->labels[i] = strdup(def->labels[i]);
            if (!fam->labels[i])
                goto nomem;
        }
    }
    if (def->type == CS_METRIC_HISTOGRAM && def->n_buckets > 0) {
        fam->bounds = malloc(def->n_buckets * sizeof(*fam->bounds));
        if (!fam->bounds)
            goto nomem;
        memcpy(fam->bounds, def->buckets, def->n_buckets * sizeof(*fam->bounds));
        fam->n_bounds = def->n_buckets;
    }
    /* A family without labels has exactly one series: create it now so it renders 0 from the first scrape. */
    if (n_labels == 0 && !fam->collect && !series_get(fam, NULL, 0))
        goto nomem;
    if (reg->tail)
        reg->tail->next = fam;
    else
        reg->head = fam;
    reg->tail = fam;
    if (out)
        *out = fam;
    fam = NULL;
    goto cleanup;

nomem:
    err = cs_err_new(CS_ERR_NOMEM, 0, "metric \"%s\": out of memory while registering", def->name);
cleanup:
    family_free(fam);
    return err;
}

cs_err *cs_metrics_new(cs_metrics **out)
{
    cs_err *err = NULL;
    cs_metric *fam = NULL;
    cs_metrics *reg = calloc(1, sizeof(*reg));

    *out = NULL;
    if (!reg)
        return cs_err_new(CS_ERR_NOMEM, 0, "metrics registry: out of memory");
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return cs_err_new(CS_ERR_INTERNAL, 0, "metrics registry: cannot create its mutex");
    }
    err = register_locked(reg,
                          &(cs_metric_def){.type = CS_METRIC_COUNTER,
                                           .name = DROPPED_NAME,
                                           .help = "Metric series refused (series limit reached or bad label "
                                                   "values); their updates were discarded."},
                          &fam);
    if (err)
        goto cleanup;
    reg->dropped_fam = fam;
    reg->dropped = (cs_counter *)fam->head;
    *out = reg;
    reg = NULL;
cleanup:
    cs_metrics_free(reg);
    return err;
}

void cs_metrics_free(cs_metrics *reg)
{
    if (!reg)
        return;
    cs_metric *fam = reg->head;
    while (fam) {
        cs_metric *next = fam->next;
        family_free(fam);
        fam = next;
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

cs_err *cs_metrics_register(cs_metrics *reg, const cs_metric_def *def, cs_metric **out)
{
    if (out)
        *out = NULL;
    if (!reg || !def)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "metrics: register needs a registry and a definition");
    pthread_mutex_lock(&reg->lock);
    cs_err *err = register_locked(reg, def, out);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

cs_counter *cs_metrics_counter_withv(cs_metric *fam, const char *const *values, size_t n)
{
    return (cs_counter *)series_with(fam, CS_METRIC_COUNTER, values, n);
}

cs_gauge *cs_metrics_gauge_withv(cs_metric *fam, const char *const *values, size_t n)
{
    return (cs_gauge *)series_with(fam, CS_METRIC_GAUGE, values, n);
}

cs_histogram *cs_metrics_histogram_withv(cs_metric *fam, const char *const *values, size_t n)
{
    return (cs_histogram *)series_with(fam, CS_METRIC_HISTOGRAM, values, n);
}

bool cs_metrics_series_removev(cs_metric *fam, const char *const *values, size_t n)
{
    bool found = false;
    if (!fam || fam->collect || n != fam->n_labels || (n > 0 && !values))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!values[i])
            return false;
    uint64_t h = hash_values(values, n);
    pthread_mutex_lock(&fam->reg->lock);
    for (struct cs_series *s = fam->table ? fam->table[h & (fam->table_size - 1)] : NULL; s; s = s->hnext) {
        if (s->hash != h || !same_values(s, values, n))
            continue;
        if (!s->hidden) {
            /* The memory stays (cached handles remain valid); the value restarts at zero if it comes back. */
            s->hidden = true;
            fam->n_hidden++;
            atomic_store_explicit(&s->bits, dbl_bits(0.0), memory_order_relaxed);
            for (size_t i = 0; s->counts && i <= fam->n_bounds; i++)
                atomic_store_explicit(&s->counts[i], 0, memory_order_relaxed);
            found = true;
        }
        break;
    }
    pthread_mutex_unlock(&fam->reg->lock);
    return found;
}

/* ---- updates: the public handle types are views of struct cs_series ---- */

void cs_metrics_counter_inc(cs_counter *c)
{
    cs_metrics_counter_add(c, 1.0);
}

void cs_metrics_counter_add(cs_counter *c, double v)
{
    if (!c || !(v >= 0)) /* also rejects NaN: counters only go up */
        return;
    atomic_add_double(&((struct cs_series *)c)->bits, v);
}

void cs_metrics_gauge_set(cs_gauge *g, double v)
{
    if (g)
        atomic_store_explicit(&((struct cs_series *)g)->bits, dbl_bits(v), memory_order_relaxed);
}

void cs_metrics_gauge_add(cs_gauge *g, double v)
{
    if (g)
        atomic_add_double(&((struct cs_series *)g)->bits, v);
}

void cs_metrics_histogram_observe(cs_histogram *h, double v)
{
    if (!h || isnan(v))
        return;
    struct cs_series *s = (struct cs_series *)h;
    size_t i = 0;
    while (i < s->fam->n_bounds && v > s->fam->bounds[i]) /* bounded by CS_METRICS_MAX_BUCKETS */
        i++;
    atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&s->bits, v);
}

double cs_metrics_counter_value(const cs_counter *c)
{
    return c ? bits_dbl(atomic_load_explicit(&((const struct cs_series *)c)->bits, memory_order_relaxed))
             : 0.0;
}

double cs_metrics_gauge_value(const cs_gauge *g)
{
    return g ? bits_dbl(atomic_load_explicit(&((const struct cs_series *)g)->bits, memory_order_relaxed))
             : 0.0;
}

/* ---- rendering ---- */

void cs_metrics_sink_add(cs_metrics_sink *sink, const char *const *values, double v)
{
    if (!sink || sink->failed)
        return;
    cs_metric *fam = sink->fam;
    if (sink->n >= fam->max_series) {
        refuse(fam, "series limit reached");
        return;
    }
    for (size_t i = 0; i < fam->n_labels; i++) {
        if (!values || !values[i] || strlen(values[i]) > CS_METRICS_MAX_LABEL_VALUE) {
            refuse(fam, "label value missing or too long");
            return;
        }
    }
    sink->n++;
    if (!add_sample(sink->out, fam->name, "", fam, values, NULL, NULL, v))
        sink->failed = true;
}

/* Renders one family; the caller holds the lock. False when `out` is full. */
static bool render_family(cs_metric *fam, cs_buf *out)
{
    if (fam->collect) {
        /* Collected into a side buffer so a family with no samples leaves no header behind. */
        cs_buf samples;
        cs_buf_init(&samples, out->max);
        cs_metrics_sink sink = {.fam = fam, .out = &samples};
        fam->collect(fam->collect_arg, &sink);
        bool ok = !sink.failed &&
                  (sink.n == 0 ||
                   (add_header(out, fam) && cs_buf_add(out, cs_buf_str(&samples), cs_buf_len(&samples))));
        cs_buf_free(&samples);
        return ok;
    }
    if (!fam->head || fam->n_hidden == fam->n_series) /* no series (yet, or left): nothing to say */
        return true;
    bool ok = add_header(out, fam);
    for (const struct cs_series *s = fam->head; ok && s; s = s->next)
        ok = s->hidden || add_series(out, fam, s);
    return ok;
}

static cs_err *render_or_fail(cs_metric *fam, cs_buf *out)
{
    if (render_family(fam, out))
        return NULL;
    return cs_err_new(
        CS_ERR_INTERNAL, 0,
        "metrics: the page does not fit in %zu bytes (at metric \"%s\"); lower max_series or raise the "
        "render buffer's maximum",
        out->max, fam->name);
}

cs_err *cs_metrics_render(cs_metrics *reg, cs_buf *out)
{
    cs_err *err = NULL;
    pthread_mutex_lock(&reg->lock);
    for (cs_metric *fam = reg->head; fam && !err; fam = fam->next) {
        if (fam != reg->dropped_fam)
            err = render_or_fail(fam, out);
    }
    /* Last, so it already counts what this scrape's collect callbacks dropped. */
    if (!err)
        err = render_or_fail(reg->dropped_fam, out);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

/* ---- process metrics, read from /proc ---- */

typedef struct proc_stat {
    double cpu_seconds;
    double rss_bytes;
    double start_ticks; /* clock ticks after boot */
} proc_stat;

/* Parses /proc/self/stat. False when it cannot be read (not Linux, or /proc not mounted). */
static bool read_proc_stat(proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    p++;
    unsigned long long field[24] = {0};
    for (int i = 3; i <= 24; i++) { /* field 3 (state) is a letter; the rest are numbers */
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        if (i == 3) {
            p++;
            continue;
        }
        char *end = NULL;
        field[i - 1] = strtoull(p, &end, 10);
        if (end == p)
            return false;
        p = end;
    }
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks <= 0 || page <= 0)
        return false;
    ps->cpu_seconds = (double)(field[13] + field[14]) / (double)ticks; /* utime + stime */
    ps->start_ticks = (double)field[21] / (double)ticks;
    ps->rss_bytes = (double)field[23] * (double)page;
    return true;
}

/* Boot time from the "btime" line of /proc/stat; 0 when unknown. */
static double read_boot_time(void)
{
    char line[256];
    double btime = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    /* Long lines (intr) come back in 256-byte pieces; the line count bound covers them. */
    for (int i = 0; i < 100000 && fgets(line, sizeof(line), f); i++) {
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    }
    fclose(f);
    return btime;
}

static void collect_rss(void *arg, cs_metrics_sink *sink)
{
    (void)arg;
    proc_stat ps;
    if (read_proc_stat(&ps))
        cs_metrics_sink_add(sink, NULL, ps.rss_bytes);
}

static void collect_cpu(void *arg, cs_metrics_sink *sink)
{
    (void)arg;
    proc_stat ps;
    if (read_proc_stat(&ps))
        cs_metrics_sink_add(sink, NULL, ps.cpu_seconds);
}

cs_err *cs_metrics_register_process(cs_metrics *reg, const char *version)
{
    static const char *const version_label[] = {"version", NULL};
    cs_err *err = NULL;
    cs_metric *build = NULL, *start = NULL;
    proc_stat ps;
    double boot = read_boot_time();
    double start_time = (double)time(NULL); /* fallback when /proc is not there */

    if (boot > 0 && read_proc_stat(&ps))
        start_time = boot + ps.start_ticks;
    err = cs_metrics_register(reg,
                              &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                               .name = "certsync_build_info",
                                               .help = "Build information; the value is always 1.",
                                               .labels = version_label},
                              &build);
    if (err)
        goto cleanup;
    cs_metrics_gauge_set(cs_metrics_gauge_with(build, version ? version : "unknown"), 1.0);
    err = cs_metrics_register(
        reg,
        &(cs_metric_def){.type = CS_METRIC_GAUGE,
                         .name = "process_start_time_seconds",
                         .help = "Start time of the process since unix epoch in seconds."},
        &start);
    if (err)
        goto cleanup;
    cs_metrics_gauge_set(cs_metrics_gauge_get(start), start_time);
    err = cs_metrics_register(reg,
                              &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                               .name = "process_resident_memory_bytes",
                                               .help = "Resident memory size in bytes.",
                                               .collect = collect_rss},
                              NULL);
    if (err)
        goto cleanup;
    err = cs_metrics_register(reg,
                              &(cs_metric_def){.type = CS_METRIC_COUNTER,
                                               .name = "process_cpu_seconds_total",
                                               .help = "Total user and system CPU time spent in seconds.",
                                               .collect = collect_cpu},
                              NULL);
cleanup:
    return err;
}
