#include "col_index.h"

#include <stdlib.h>
#include <string.h>

#include "cs_log.h"
#include "cs_state_reader.h"
#include "cs_version.h"

#define FACILITY "index"

#define INITIAL_BUCKETS 1024u

typedef struct entry {
    struct entry *next;
    uint8_t *version;
    uint32_t version_len;
    uint8_t sha[32];
    bool removed;
    bool held;
    bool seen;  /* marked in the open sweep */
    char key[]; /* in the entry's own allocation: one malloc per object, not two */
} entry;

struct col_index {
    char *source_id;
    char *prefix; /* "<source_id>/" */
    size_t prefix_len;
    entry **buckets;
    size_t n_buckets; /* a power of two */
    size_t count;
    bool sweeping;
};

static char empty_sha[CS_SHA256_HEX_LEN];

const char *col_index_empty_sha256(void)
{
    if (!empty_sha[0]) {
        /* Computed by the one function that defines the hash, so the two can never disagree. */
        Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
        cs_err *err = cs_event_content_sha256(&ev, empty_sha);
        cs_err_free(err);
    }
    return empty_sha;
}

const char *col_index_verdict_name(col_index_verdict v)
{
    switch (v) {
    case COL_INDEX_NEW:
        return "new";
    case COL_INDEX_NEWER:
        return "newer";
    case COL_INDEX_DIVERGED:
        return "diverged";
    case COL_INDEX_DUPLICATE:
        return "duplicate";
    case COL_INDEX_STALE:
        return "stale";
    case COL_INDEX_UNKNOWN_REMOVAL:
        return "unknown_removal";
    }
    return "unknown";
}

/* FNV-1a: keys are short strings; no attacker picks them (they come from our directory). */
static uint64_t hash_key(const char *k)
{
    uint64_t h = 1469598103934665603ull;
    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 1099511628211ull;
    }
    return h;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static cs_err *parse_sha(const char *hex, uint8_t out[32])
{
    if (!hex || strlen(hex) != 64)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "content hash \"%s\" is not 64 hex digits",
                          hex ? hex : "(null)");
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_val(hex[2 * i]), lo = hex_val(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0, "content hash \"%s\" is not hex", hex);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return NULL;
}

static void sha_hex(const uint8_t sha[32], char out[CS_SHA256_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = digits[sha[i] >> 4];
        out[2 * i + 1] = digits[sha[i] & 0xf];
    }
    out[64] = '\0';
}

cs_err *col_index_new(const char *source_id, col_index **out)
{
    *out = NULL;
    if (!source_id || !source_id[0] || strchr(source_id, '/'))
        return cs_err_new(CS_ERR_CONFIG, 0, "index: source id \"%s\" must be non-empty and without '/'",
                          source_id ? source_id : "(null)");
    col_index *idx = calloc(1, sizeof(*idx));
    if (!idx)
        goto nomem;
    idx->source_id = strdup(source_id);
    idx->prefix_len = strlen(source_id) + 1;
    idx->prefix = malloc(idx->prefix_len + 1);
    idx->buckets = calloc(INITIAL_BUCKETS, sizeof(entry *));
    if (!idx->source_id || !idx->prefix || !idx->buckets)
        goto nomem;
    memcpy(idx->prefix, source_id, idx->prefix_len - 1);
    idx->prefix[idx->prefix_len - 1] = '/';
    idx->prefix[idx->prefix_len] = '\0';
    idx->n_buckets = INITIAL_BUCKETS;
    *out = idx;
    return NULL;
nomem:
    col_index_free(idx);
    return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    free(e->version);
    free(e);
}

void col_index_free(col_index *idx)
{
    if (!idx)
        return;
    for (size_t b = 0; idx->buckets && b < idx->n_buckets; b++) {
        entry *e = idx->buckets[b];
        while (e) {
            entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(idx->buckets);
    free(idx->prefix);
    free(idx->source_id);
    free(idx);
}

size_t col_index_count(const col_index *idx)
{
    return idx->count;
}

static entry *find(const col_index *idx, const char *key)
{
    entry *e = idx->buckets[hash_key(key) & (idx->n_buckets - 1)];
    for (; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Doubles the table; on allocation failure keeps the old one (longer chains, still correct). */
static void grow(col_index *idx)
{
    size_t n = idx->n_buckets * 2;
    entry **nb = calloc(n, sizeof(entry *));
    if (!nb)
        return;
    for (size_t b = 0; b < idx->n_buckets; b++) {
        entry *e = idx->buckets[b];
        while (e) {
            entry *next = e->next;
            size_t i = hash_key(e->key) & (n - 1);
            e->next = nb[i];
            nb[i] = e;
            e = next;
        }
    }
    free(idx->buckets);
    idx->buckets = nb;
    idx->n_buckets = n;
}

static void fill_view(const entry *e, col_index_entry *out)
{
    out->version = e->version;
    out->version_len = e->version_len;
    sha_hex(e->sha, out->content_sha256);
    out->removed = e->removed;
    out->held = e->held;
    out->has_certificates = strcmp(out->content_sha256, col_index_empty_sha256()) != 0;
}

bool col_index_lookup(const col_index *idx, const char *key, col_index_entry *out)
{
    const entry *e = find(idx, key);
    if (e && out)
        fill_view(e, out);
    return e != NULL;
}

/* Packs the event's version within the bound. Caller frees *out with free(). */
static cs_err *pack_version(const char *key, const Certsync__V1__ChangeEvent *ev, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!ev->version)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "event %s has no version: the tracker must stamp every event", key);
    size_t n = certsync__v1__version__get_packed_size(ev->version);
    if (n > COL_INDEX_MAX_VERSION_BYTES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "event %s: version is %zu bytes packed, at most %u", key,
                          n, COL_INDEX_MAX_VERSION_BYTES);
    uint8_t *buf = malloc(n + 1);
    if (!buf)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
    certsync__v1__version__pack(ev->version, buf);
    *out = buf;
    *len = n;
    return NULL;
}

cs_err *col_index_judge(const col_index *idx, const char *key, const Certsync__V1__ChangeEvent *ev,
                        const char *content_sha256, col_index_verdict *out)
{
    uint8_t sha[32];
    cs_err *err = NULL;
    Certsync__V1__Version *known = NULL;

    *out = COL_INDEX_NEW;
    if (!ev->version)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "event %s has no version: the tracker must stamp every event", key);
    if ((err = parse_sha(content_sha256, sha)))
        return cs_err_wrap(err, "event %s", key);
    const entry *e = find(idx, key);
    if (!e) {
        if (ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL)
            *out = COL_INDEX_UNKNOWN_REMOVAL;
        return NULL;
    }
    known = certsync__v1__version__unpack(NULL, e->version_len, e->version);
    if (!known)
        return cs_err_new(CS_ERR_INTERNAL, 0, "index entry %s: stored version does not unpack", key);
    cs_version_order order = cs_version_compare(ev->version, known);
    bool removed = ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    bool same_content = memcmp(sha, e->sha, 32) == 0 && removed == e->removed;
    switch (order) {
    case CS_VERSION_NEWER:
        *out = COL_INDEX_NEWER;
        break;
    case CS_VERSION_DIVERGED:
        *out = COL_INDEX_DIVERGED;
        break;
    case CS_VERSION_EQUAL:
    case CS_VERSION_OLDER:
        *out = same_content ? COL_INDEX_DUPLICATE : COL_INDEX_STALE;
        break;
    }
    certsync__v1__version__free_unpacked(known, NULL);
    return NULL;
}

/* Records the state of `key` with `ver` (malloc'd, taken: freed here when it fails). */
static cs_err *put_owned(col_index *idx, const char *key, uint8_t *ver, size_t ver_len, bool removed,
                         const char *content_sha256, bool held)
{
    uint8_t sha[32];
    cs_err *err = NULL;
    size_t key_len = strlen(key);

    if (key_len > COL_INDEX_MAX_KEY_BYTES) {
        free(ver);
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "index: key of %zu bytes, at most %u", key_len,
                          COL_INDEX_MAX_KEY_BYTES);
    }
    if ((err = parse_sha(content_sha256, sha))) {
        free(ver);
        return cs_err_wrap(err, "event %s", key);
    }
    entry *e = find(idx, key);
    if (!e) {
        if (idx->count >= COL_INDEX_MAX_ENTRIES) {
            free(ver);
            return cs_err_new(CS_ERR_INVALID_INPUT, CS_ERR_F_FATAL,
                              "index of source %s is full (%u objects): narrow the scope (ldap.filter, "
                              "base DNs) or split the source",
                              idx->source_id, COL_INDEX_MAX_ENTRIES);
        }
        e = calloc(1, sizeof(*e) + key_len + 1);
        if (!e) {
            free(ver);
            return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
        }
        memcpy(e->key, key, key_len + 1);
        size_t b = hash_key(key) & (idx->n_buckets - 1);
        e->next = idx->buckets[b];
        idx->buckets[b] = e;
        idx->count++;
        if (idx->count > idx->n_buckets - idx->n_buckets / 4)
            grow(idx);
    }
    free(e->version);
    e->version = ver;
    e->version_len = (uint32_t)ver_len;
    memcpy(e->sha, sha, 32);
    e->removed = removed;
    e->held = held;
    /* A state recorded during a sweep came from the resync itself. */
    e->seen = idx->sweeping;
    return NULL;
}

cs_err *col_index_put(col_index *idx, const char *key, const Certsync__V1__ChangeEvent *ev,
                      const char *content_sha256, bool held)
{
    uint8_t *ver = NULL;
    size_t ver_len = 0;
    cs_err *err = pack_version(key, ev, &ver, &ver_len);
    if (err)
        return err;
    return put_owned(idx, key, ver, ver_len, ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL,
                     content_sha256, held);
}

cs_err *col_index_put_packed(col_index *idx, const char *key, const uint8_t *version, size_t version_len,
                             bool removed, const char *content_sha256, bool held)
{
    if (!version)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "event %s has no version: the tracker must stamp every event", key);
    if (version_len > COL_INDEX_MAX_VERSION_BYTES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "event %s: version is %zu bytes packed, at most %u", key,
                          version_len, COL_INDEX_MAX_VERSION_BYTES);
    uint8_t *ver = malloc(version_len + 1); /* + 1: an all-default version packs to 0 bytes */
    if (!ver)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
    memcpy(ver, version, version_len);
    return put_owned(idx, key, ver, version_len, removed, content_sha256, held);
}

bool col_index_set_held(col_index *idx, const char *key, bool held)
{
    entry *e = find(idx, key);
    if (e)
        e->held = held;
    return e != NULL;
}

static void remove_key(col_index *idx, const char *key)
{
    entry **pp = &idx->buckets[hash_key(key) & (idx->n_buckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            entry *e = *pp;
            *pp = e->next;
            entry_free(e);
            idx->count--;
            return;
        }
    }
}

cs_err *col_index_apply_record(col_index *idx, const void *key, size_t key_len, const void *value,
                               size_t value_len, bool held)
{
    cs_err *err = NULL;
    Certsync__V1__ChangeEvent *ev = NULL;
    char *k = NULL;
    char sha[CS_SHA256_HEX_LEN];

    /* Other sources share the topic. */
    if (!key || key_len <= idx->prefix_len || memcmp(key, idx->prefix, idx->prefix_len) != 0)
        return NULL;
    if (key_len > COL_INDEX_MAX_KEY_BYTES || memchr(key, '\0', key_len))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "record key of %zu bytes is not a valid object key",
                          key_len);
    k = malloc(key_len + 1);
    if (!k)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    if (!value) {
        remove_key(idx, k);
        goto cleanup;
    }
    if ((err = cs_event_decode(value, value_len, &ev)))
        goto cleanup;
    /* Recompute rather than trust the field: the index compares with hashes computed the same way. */
    if ((err = cs_event_content_sha256(ev, sha)))
        goto cleanup;
    err = col_index_put(idx, k, ev, sha, held);

cleanup:
    if (err)
        err = cs_err_wrap(err, "index record %s", k ? k : "?");
    if (ev)
        certsync__v1__change_event__free_unpacked(ev, NULL);
    free(k);
    return err;
}

typedef struct load_ctx {
    col_index *idx;
    bool held;
} load_ctx;

static cs_err *on_record(const cs_state_record *r, void *opaque)
{
    load_ctx *ctx = opaque;
    return col_index_apply_record(ctx->idx, r->key, r->key_len, r->value, r->value_len, ctx->held);
}

cs_err *col_index_load(col_index *idx, rd_kafka_conf_t *conf, const char *topic, bool held, int timeout_ms,
                       uint64_t *n_records)
{
    load_ctx ctx = {idx, held};
    cs_err *err = cs_state_reader_load(conf, topic, NULL, 0, timeout_ms, on_record, &ctx, n_records);
    if (err)
        return cs_err_wrap(err, "rebuilding the index of source %s from %s", idx->source_id, topic);
    cs_log(CS_LOG_INFO, FACILITY, "source %s: index rebuilt from %s: %zu objects", idx->source_id, topic,
           idx->count);
    return NULL;
}

cs_err *col_index_sweep_begin(col_index *idx)
{
    if (idx->sweeping)
        return cs_err_new(CS_ERR_STATE, 0, "index of source %s: a removal sweep is already open",
                          idx->source_id);
    for (size_t b = 0; b < idx->n_buckets; b++)
        for (entry *e = idx->buckets[b]; e; e = e->next)
            e->seen = false;
    idx->sweeping = true;
    return NULL;
}

void col_index_sweep_mark(col_index *idx, const char *key)
{
    entry *e = find(idx, key);
    if (e)
        e->seen = true;
}

bool col_index_sweep_open(const col_index *idx)
{
    return idx->sweeping;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void col_index_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
}

cs_err *col_index_sweep_end(col_index *idx, char ***keys, size_t *n)
{
    *keys = NULL;
    *n = 0;
    if (!idx->sweeping)
        return cs_err_new(CS_ERR_STATE, 0, "index of source %s: sweep_end without sweep_begin",
                          idx->source_id);
    idx->sweeping = false;
    size_t count = 0;
    for (size_t b = 0; b < idx->n_buckets; b++)
        for (entry *e = idx->buckets[b]; e; e = e->next)
            count += !e->seen && !e->removed;
    char **list = calloc(count + 1, sizeof(char *));
    if (!list)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
    size_t i = 0;
    for (size_t b = 0; b < idx->n_buckets; b++) {
        for (entry *e = idx->buckets[b]; e; e = e->next) {
            if (e->seen || e->removed)
                continue;
            list[i] = strdup(e->key);
            if (!list[i]) {
                col_index_keys_free(list, i);
                return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "index: out of memory");
            }
            i++;
        }
    }
    qsort(list, count, sizeof(char *), cmp_str);
    *keys = list;
    *n = count;
    return NULL;
}
