/*
 * cs_metrics: a Prometheus registry rendered in text exposition format 0.0.4.
 *
 * A service creates one registry at startup and registers its metric
 * families (counter, gauge, histogram) with a name, help text and a fixed
 * list of label names. A series is one combination of label values:
 *
 *   static const char *const labels[] = {"source", "dc", NULL};
 *   cs_metric *changes = NULL;
 *   err = cs_metrics_register(reg, &(cs_metric_def){.type = CS_METRIC_COUNTER,
 *             .name = "certsync_ldap_changes_total", .help = "Changes read.", .labels = labels}, &changes);
 *   cs_counter *c = cs_metrics_counter_with(changes, "dirsync", "dc1");   (cache this)
 *   cs_metrics_counter_inc(c);                                            (any thread, lock-free)
 *
 * Series handles live as long as the registry. Updates are C11 atomics and
 * never take a lock; registration, series creation and rendering share one
 * mutex.
 *
 * Bounded: every family holds at most `max_series` series (default
 * CS_METRICS_DEFAULT_MAX_SERIES). Past the cap, a *_with call returns NULL,
 * updates through NULL go nowhere, and the registry's own counter
 * `certsync_metrics_series_dropped_total` counts each refused *_with call
 * (also wrong label counts and over-long label values), so a label with
 * unbounded values cannot grow memory forever.
 */
#ifndef CS_METRICS_H
#define CS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "cs_buf.h"
#include "cs_err.h"

#define CS_METRICS_DEFAULT_MAX_SERIES 10000
#define CS_METRICS_MAX_LABELS 16        /* label names per family */
#define CS_METRICS_MAX_BUCKETS 64       /* histogram bucket bounds, without +Inf */
#define CS_METRICS_MAX_LABEL_VALUE 1024 /* bytes per label value */
#define CS_METRICS_MAX_HELP 1024        /* bytes of help text */

typedef struct cs_metrics cs_metrics;           /* the registry */
typedef struct cs_metric cs_metric;             /* one registered family */
typedef struct cs_counter cs_counter;           /* one counter series */
typedef struct cs_gauge cs_gauge;               /* one gauge series */
typedef struct cs_histogram cs_histogram;       /* one histogram series */
typedef struct cs_metrics_sink cs_metrics_sink; /* where a collect callback puts samples */

typedef enum cs_metric_type {
    CS_METRIC_COUNTER = 1,
    CS_METRIC_GAUGE,
    CS_METRIC_HISTOGRAM,
} cs_metric_type;

/*
 * Scrape-time collection (e.g. consumer lag): called under the registry lock
 * while rendering, from the scraping thread. It reports each sample with
 * cs_metrics_sink_add(); it must be quick and must not call back into the
 * registry other than through the sink.
 */
typedef void (*cs_metrics_collect_fn)(void *arg, cs_metrics_sink *sink);

typedef struct cs_metric_def {
    cs_metric_type type;
    const char *name;          /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total */
    const char *help;          /* non-empty, at most CS_METRICS_MAX_HELP bytes */
    const char *const *labels; /* NULL-terminated label names, or NULL for none */
    size_t max_series;         /* 0 = CS_METRICS_DEFAULT_MAX_SERIES */
    const double *buckets;     /* histogram: finite, strictly increasing upper bounds, no +Inf */
    size_t n_buckets;
    cs_metrics_collect_fn
        collect; /* counter or gauge computed at scrape time; NULL = series updated by callers */
    void *collect_arg;
} cs_metric_def;

/* Creates an empty registry (it holds only certsync_metrics_series_dropped_total). Caller frees with
 * cs_metrics_free(). */
cs_err *cs_metrics_new(cs_metrics **out);

/* Frees the registry, its families and every series handle. NULL is allowed. */
void cs_metrics_free(cs_metrics *reg);

/*
 * Registers a family. The definition is copied. Fails, naming the metric and
 * the rule, on a bad or duplicate name, a bad, reserved (__ prefix, "le" on
 * histograms) or duplicate label name, bad buckets or help text. `out` may be
 * NULL for collect families; the family is owned by the registry.
 */
cs_err *cs_metrics_register(cs_metrics *reg, const cs_metric_def *def, cs_metric **out);

/*
 * Registers the process basics a Prometheus user expects:
 * certsync_build_info{version="..."} 1, process_start_time_seconds, and, read
 * from /proc/self at scrape time, process_resident_memory_bytes and
 * process_cpu_seconds_total.
 */
cs_err *cs_metrics_register_process(cs_metrics *reg, const char *version);

/*
 * Returns the series for the given label values (exactly as many as the
 * family has label names), creating it on first use. Returns NULL when the
 * family is NULL or of another type, the count is wrong, a value is NULL or
 * too long, the cap is reached or memory runs out; updating NULL is a no-op.
 * Takes the registry lock: look up once, cache the handle.
 */
cs_counter *cs_metrics_counter_withv(cs_metric *fam, const char *const *values, size_t n);
cs_gauge *cs_metrics_gauge_withv(cs_metric *fam, const char *const *values, size_t n);
cs_histogram *cs_metrics_histogram_withv(cs_metric *fam, const char *const *values, size_t n);

/* Same, with the label values as arguments: cs_metrics_counter_with(fam, "dirsync", "dc1"). */
#define CS_METRICS_ARGS_(...)                                                                                \
    (const char *const[]){__VA_ARGS__}, (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define cs_metrics_counter_with(fam, ...) cs_metrics_counter_withv((fam), CS_METRICS_ARGS_(__VA_ARGS__))
#define cs_metrics_gauge_with(fam, ...) cs_metrics_gauge_withv((fam), CS_METRICS_ARGS_(__VA_ARGS__))
#define cs_metrics_histogram_with(fam, ...) cs_metrics_histogram_withv((fam), CS_METRICS_ARGS_(__VA_ARGS__))

/* The series of a family without labels. */
#define cs_metrics_counter_get(fam) cs_metrics_counter_withv((fam), NULL, 0)
#define cs_metrics_gauge_get(fam) cs_metrics_gauge_withv((fam), NULL, 0)
#define cs_metrics_histogram_get(fam) cs_metrics_histogram_withv((fam), NULL, 0)

/*
 * Removes a series from the page (e.g. the lag of a partition this instance no longer owns), so a scrape
 * does not show a value that stopped being true. Its memory is kept, so handles cached earlier stay valid:
 * updates through them are not rendered until a *_with call with the same label values shows the series
 * again, starting from zero. Removed series still count towards max_series (re-showing one needs no room).
 * Returns true when a shown series was removed; false when there was none (or it was removed already),
 * the family is NULL or collected, or the label count is wrong. Takes the registry lock.
 */
bool cs_metrics_series_removev(cs_metric *fam, const char *const *values, size_t n);
#define cs_metrics_series_remove(fam, ...) cs_metrics_series_removev((fam), CS_METRICS_ARGS_(__VA_ARGS__))

/* Lock-free updates from any thread. NULL handles are ignored. Counters ignore negative or NaN amounts. */
void cs_metrics_counter_inc(cs_counter *c);
void cs_metrics_counter_add(cs_counter *c, double v);
void cs_metrics_gauge_set(cs_gauge *g, double v);
void cs_metrics_gauge_add(cs_gauge *g, double v);
void cs_metrics_histogram_observe(cs_histogram *h, double v);

/* Current values (0 for NULL), for tests and for services that read their own metrics. */
double cs_metrics_counter_value(const cs_counter *c);
double cs_metrics_gauge_value(const cs_gauge *g);

/*
 * For collect callbacks: reports one sample with as many label values as the
 * family has label names (NULL when it has none). Samples past the family's
 * max_series, or with bad label values, are dropped and counted.
 */
void cs_metrics_sink_add(cs_metrics_sink *sink, const char *const *values, double v);

/*
 * Appends the whole registry to `out` in text format 0.0.4: families in
 * registration order, series in creation order, and the registry's own
 * certsync_metrics_series_dropped_total last. Fails when `out` reaches its
 * maximum (the error names the size); `out` may then hold a partial page.
 */
cs_err *cs_metrics_render(cs_metrics *reg, cs_buf *out);

/* The content type of what cs_metrics_render() writes. */
#define CS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
