/*
 * pub_resolver: the resolve.order walk (Graph, then Exchange) and a bounded FIFO cache with a TTL.
 */
#include "pub_resolver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_log.h"

#define PUB_RES_FAC "resolve"
#define PUB_RES_KEY_MAX 512

typedef struct cache_entry {
    char key[PUB_RES_KEY_MAX];
    pub_recipient rec;
    long long expires_ms;
    bool used;
    size_t next; /* bucket chain; SIZE_MAX ends it */
} cache_entry;

struct pub_resolver {
    pub_resolve order[PUB_RESOLVE_MAX];
    size_t n_order;
    pub_graph *graph;
    pub_exchange *exo;
    long long ttl_ms;
    cache_entry *slots; /* ring: the oldest insert is replaced when full */
    size_t n_slots, ring, count;
    size_t *buckets;
    size_t n_buckets;
};

typedef struct res_op {
    pub_resolver *r;
    char key[PUB_RES_KEY_MAX];
    char values[PUB_RESOLVE_MAX][256];
    size_t step;     /* index into r->order */
    bool exo_direct; /* current step is an Exchange lookup by address */
    pub_resolve_status st;
    pub_resolver_done_fn done;
    void *ctx;
} res_op;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

cs_err *pub_resolver_new(const pub_resolve *order, size_t n, size_t max_entries, long long ttl_ms,
                         pub_graph *graph, pub_exchange *exo, pub_resolver **out)
{
    *out = NULL;
    if (n == 0 || n > PUB_RESOLVE_MAX)
        return cs_err_new(CS_ERR_CONFIG, 0, "resolve.order: needs 1..%d keys", PUB_RESOLVE_MAX);
    if (max_entries == 0 || max_entries > 10000000)
        return cs_err_new(CS_ERR_CONFIG, 0, "resolver cache size %zu out of range 1..10000000", max_entries);
    pub_resolver *r = calloc(1, sizeof *r);
    if (!r)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    memcpy(r->order, order, n * sizeof *order);
    r->n_order = n;
    r->graph = graph;
    r->exo = exo;
    r->ttl_ms = ttl_ms;
    r->n_slots = max_entries;
    r->n_buckets = max_entries * 2;
    r->slots = calloc(r->n_slots, sizeof *r->slots);
    r->buckets = malloc(r->n_buckets * sizeof *r->buckets);
    if (!r->slots || !r->buckets) {
        pub_resolver_free(r);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
    for (size_t i = 0; i < r->n_buckets; i++)
        r->buckets[i] = SIZE_MAX;
    *out = r;
    return NULL;
}

void pub_resolver_free(pub_resolver *r)
{
    if (!r)
        return;
    free(r->slots);
    free(r->buckets);
    free(r);
}

size_t pub_resolver_cached(const pub_resolver *r)
{
    return r->count;
}

/* Unlinks slot `i` from its bucket chain and marks it free. */
static void unlink_slot(pub_resolver *r, size_t i)
{
    cache_entry *e = &r->slots[i];
    if (!e->used)
        return;
    size_t *p = &r->buckets[hash(e->key) % r->n_buckets];
    for (size_t guard = 0; *p != SIZE_MAX && guard < r->n_slots; guard++) {
        if (*p == i) {
            *p = e->next;
            break;
        }
        p = &r->slots[*p].next;
    }
    e->used = false;
    r->count--;
}

static size_t find_slot(const pub_resolver *r, const char *key)
{
    size_t i = r->buckets[hash(key) % r->n_buckets];
    for (size_t guard = 0; i != SIZE_MAX && guard < r->n_slots; guard++) {
        if (strcmp(r->slots[i].key, key) == 0)
            return i;
        i = r->slots[i].next;
    }
    return SIZE_MAX;
}

bool pub_resolver_cache_get(pub_resolver *r, const char *key, pub_recipient *out)
{
    size_t i = find_slot(r, key);
    if (i == SIZE_MAX)
        return false;
    if (mono_ms() >= r->slots[i].expires_ms) {
        unlink_slot(r, i);
        return false;
    }
    *out = r->slots[i].rec;
    return true;
}

void pub_resolver_forget(pub_resolver *r, const char *key)
{
    size_t i = find_slot(r, key);
    if (i != SIZE_MAX)
        unlink_slot(r, i);
}

void pub_resolver_cache_put(pub_resolver *r, const char *key, const pub_recipient *rec)
{
    if (strlen(key) >= PUB_RES_KEY_MAX)
        return; /* not cached: correctness does not depend on the cache */
    size_t i = find_slot(r, key);
    if (i != SIZE_MAX) {
        /* Known key: refresh in place, evicting nothing. */
        r->slots[i].rec = *rec;
        r->slots[i].expires_ms = mono_ms() + r->ttl_ms;
        return;
    }
    i = r->ring;
    r->ring = (r->ring + 1) % r->n_slots;
    unlink_slot(r, i); /* the oldest insert goes when the ring is full */
    cache_entry *e = &r->slots[i];
    snprintf(e->key, sizeof e->key, "%s", key);
    e->rec = *rec;
    e->expires_ms = mono_ms() + r->ttl_ms;
    e->used = true;
    size_t *b = &r->buckets[hash(key) % r->n_buckets];
    e->next = *b;
    *b = i;
    r->count++;
}

static void step(res_op *op);

static void finish(res_op *op, pub_resolve_status st, const pub_recipient *rec, const cs_err *err,
                   long long ra)
{
    if (st == PUB_RESOLVE_FOUND)
        pub_resolver_cache_put(op->r, op->key, rec);
    op->done(op->ctx, st, rec, err, ra);
    free(op);
}

static void on_exo(void *ctx, const pub_exo_result *res)
{
    res_op *op = ctx;
    pub_resolve key = op->r->order[op->step];
    if (res->kind == PUB_EXO_OK && res->n_recipients == 1) {
        const pub_exo_recipient *x = &res->recipients[0];
        pub_recipient rec;
        memset(&rec, 0, sizeof rec);
        snprintf(rec.external_directory_object_id, sizeof rec.external_directory_object_id, "%s",
                 x->external_directory_object_id);
        snprintf(rec.identity, sizeof rec.identity, "%s",
                 x->external_directory_object_id[0] ? x->external_directory_object_id
                                                    : x->primary_smtp_address);
        snprintf(rec.recipient_type_details, sizeof rec.recipient_type_details, "%s",
                 x->recipient_type_details);
        snprintf(rec.primary_smtp_address, sizeof rec.primary_smtp_address, "%s", x->primary_smtp_address);
        snprintf(rec.resolved_by, sizeof rec.resolved_by, "%s", pub_resolve_name(key));
        finish(op, PUB_RESOLVE_FOUND, &rec, NULL, -1);
        return;
    }
    if (res->kind == PUB_EXO_OK && res->n_recipients > 1) {
        cs_err *err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "resolving %s by %s: %zu Exchange recipients match",
                                 op->key, pub_resolve_name(key), res->n_recipients);
        finish(op, PUB_RESOLVE_FAILED, NULL, err, -1);
        cs_err_free(err);
        return;
    }
    if (res->kind == PUB_EXO_OK || res->kind == PUB_EXO_NOT_FOUND) {
        /* A Graph user without an Exchange recipient (not licensed / provisioned yet), or no such address. */
        op->step++;
        step(op);
        return;
    }
    finish(op, PUB_RESOLVE_FAILED, NULL, res->err, res->retry_after_ms);
}

static void on_graph(void *ctx, const pub_graph_result *res)
{
    res_op *op = ctx;
    pub_resolve key = op->r->order[op->step];
    cs_err *err = NULL;
    if (res->status == PUB_GRAPH_FOUND) {
        err = pub_exchange_get(op->r->exo, "Get-Recipient", res->user->id, NULL, on_exo, op);
    } else if (res->status == PUB_GRAPH_NOT_FOUND && key == PUB_RESOLVE_MAIL) {
        /* Mail contacts are no Graph users: ask Exchange for the address itself. */
        err = pub_exchange_get(op->r->exo, "Get-Recipient", op->values[op->step], NULL, on_exo, op);
    } else if (res->status == PUB_GRAPH_NOT_FOUND) {
        op->step++;
        step(op);
        return;
    } else if (res->status == PUB_GRAPH_AMBIGUOUS) {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "resolving %s by %s: more than one Graph user matches",
                         op->key, pub_resolve_name(key));
    } else {
        finish(op, PUB_RESOLVE_FAILED, NULL, res->err, res->retry_after_ms);
        return;
    }
    if (err) {
        finish(op, PUB_RESOLVE_FAILED, NULL, err, -1);
        cs_err_free(err);
    }
}

/* Starts the lookup for the next key that has a value, or finishes with not found. */
static void step(res_op *op)
{
    for (; op->step < op->r->n_order; op->step++) {
        if (!op->values[op->step][0])
            continue;
        cs_err *err =
            pub_graph_find_user(op->r->graph, op->r->order[op->step], op->values[op->step], on_graph, op);
        if (err) {
            finish(op, PUB_RESOLVE_FAILED, NULL, err, -1);
            cs_err_free(err);
        }
        return;
    }
    cs_log_kv(CS_LOG_INFO, PUB_RES_FAC, "no recipient yet", "key", op->key, NULL);
    finish(op, PUB_RESOLVE_NOT_FOUND, NULL, NULL, -1);
}

cs_err *pub_resolver_resolve(pub_resolver *r, const char *cache_key, const pub_resolve_input *in,
                             pub_resolver_done_fn done, void *ctx)
{
    pub_recipient hit;
    if (pub_resolver_cache_get(r, cache_key, &hit)) {
        done(ctx, PUB_RESOLVE_FOUND, &hit, NULL, -1);
        return NULL;
    }
    res_op *op = calloc(1, sizeof *op);
    if (!op)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    op->r = r;
    op->done = done;
    op->ctx = ctx;
    snprintf(op->key, sizeof op->key, "%s", cache_key);
    bool any = false;
    for (size_t i = 0; i < r->n_order; i++) {
        const char *v = NULL;
        char immutable[25];
        switch (r->order[i]) {
        case PUB_RESOLVE_IMMUTABLE_ID:
            if (in->object_guid && pub_graph_immutable_id(in->object_guid, immutable))
                v = immutable;
            else
                v = in->immutable_id;
            break;
        case PUB_RESOLVE_SID:
            v = in->sid;
            break;
        case PUB_RESOLVE_UPN:
            v = in->upn;
            break;
        case PUB_RESOLVE_MAIL:
            v = in->mail;
            break;
        }
        if (v && strlen(v) < sizeof op->values[i]) {
            snprintf(op->values[i], sizeof op->values[i], "%s", v);
            any = any || v[0];
        }
    }
    if (!any) {
        free(op);
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "resolving %s: the object has none of the identifiers in resolve.order", cache_key);
    }
    step(op);
    return NULL;
}
