/*
 * pub_state: a chained hash map of state key -> decoded AppliedStateRecord (contract in pub_state.h).
 */
#include "pub_state.h"

#include <stdlib.h>
#include <string.h>

/* Fixed bucket count: the chains grow with the number of objects a member owns (tens of thousands at most per
 * member in practice); lookups stay short enough without rehashing. */
#define N_BUCKETS 4096u

typedef struct entry {
    struct entry *next;
    char *key;
    int32_t partition;
    Certsync__V1__AppliedStateRecord *rec;
} entry;

struct pub_state {
    entry *buckets[N_BUCKETS];
    size_t count;
};

static uint32_t hash_key(const char *k, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 16777619u;
    }
    return h;
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    free(e->key);
    if (e->rec)
        certsync__v1__applied_state_record__free_unpacked(e->rec, NULL);
    free(e);
}

cs_err *pub_state_new(pub_state **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? NULL : cs_err_new(CS_ERR_NOMEM, 0, "out of memory creating the applied-state store");
}

void pub_state_free(pub_state *s)
{
    if (!s)
        return;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        entry *e = s->buckets[b];
        while (e) {
            entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(s);
}

static entry **find_slot(const pub_state *s, const char *key, size_t key_len)
{
    entry **slot = (entry **)(uintptr_t)&s->buckets[hash_key(key, key_len) % N_BUCKETS];
    while (*slot && !(strlen((*slot)->key) == key_len && memcmp((*slot)->key, key, key_len) == 0))
        slot = &(*slot)->next;
    return slot;
}

static bool has_prefix(const char *key, size_t key_len, const char *prefix)
{
    size_t n = strlen(prefix);
    return key_len > n && memcmp(key, prefix, n) == 0;
}

/* written_at_ms of a RecipientState record; 0 for other records and for records written before the field. */
static int64_t written_at(const Certsync__V1__AppliedStateRecord *rec)
{
    return rec->state_case == CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT && rec->recipient &&
                   rec->recipient->has_written_at_ms
               ? rec->recipient->written_at_ms
               : 0;
}

cs_err *pub_state_put(pub_state *s, int32_t partition, const void *key, size_t key_len, const void *value,
                      size_t value_len)
{
    cs_err *err = NULL;
    entry *e = NULL;
    const char *k = key;
    if (!k || key_len == 0 || key_len > PUB_STATE_KEY_MAX ||
        (!has_prefix(k, key_len, PUB_STATE_OBJ_PREFIX) && !has_prefix(k, key_len, PUB_STATE_RCPT_PREFIX)) ||
        memchr(k, '\0', key_len))
        return cs_err_new(
            CS_ERR_INVALID_INPUT, 0,
            "applied-state key '%.*s' is not obj/<key> or rcpt/<id> (at most %d bytes): a foreign "
            "record in the state topic; remove it",
            (int)(key_len > 200 ? 200 : key_len), k ? k : "", PUB_STATE_KEY_MAX);
    entry **slot = find_slot(s, k, key_len);
    if (!value) { /* tombstone: only for its own partition's record (pub_state.h, a recipient's owner moved) */
        if (*slot && (*slot)->partition == partition) {
            entry *old = *slot;
            *slot = old->next;
            entry_free(old);
            s->count--;
        }
        return NULL;
    }
    Certsync__V1__AppliedStateRecord *rec =
        certsync__v1__applied_state_record__unpack(NULL, value_len, value);
    if (!rec)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "applied-state record '%.*s' (%zu bytes) is not a certsync.v1.AppliedStateRecord",
                          (int)key_len, k, value_len);
    if (*slot && (*slot)->partition != partition && written_at(rec) < written_at((*slot)->rec)) {
        /* An older RecipientState from another partition (the previous owner's, not yet compacted away): the
         * newer write stays, whichever partition the restore read last. */
        certsync__v1__applied_state_record__free_unpacked(rec, NULL);
        return NULL;
    }
    if (*slot) {
        certsync__v1__applied_state_record__free_unpacked((*slot)->rec, NULL);
        (*slot)->rec = rec;
        (*slot)->partition = partition;
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e)
        e->key = malloc(key_len + 1);
    if (!e || !e->key) {
        certsync__v1__applied_state_record__free_unpacked(rec, NULL);
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory storing applied state '%.*s'", (int)key_len, k);
        goto cleanup;
    }
    memcpy(e->key, k, key_len);
    e->key[key_len] = '\0';
    e->partition = partition;
    e->rec = rec;
    *slot = e;
    e = NULL;
    s->count++;
cleanup:
    entry_free(e);
    return err;
}

static const Certsync__V1__AppliedStateRecord *get(const pub_state *s, const char *prefix, const char *id)
{
    char key[PUB_STATE_KEY_MAX + 1];
    size_t pn = strlen(prefix), n = strlen(id);
    if (pn + n > PUB_STATE_KEY_MAX)
        return NULL;
    memcpy(key, prefix, pn);
    memcpy(key + pn, id, n + 1);
    entry **slot = find_slot(s, key, pn + n);
    return *slot ? (*slot)->rec : NULL;
}

const char *pub_state_recipient_id(const Certsync__V1__Recipient *r)
{
    if (!r)
        return NULL;
    if (r->external_directory_object_id && r->external_directory_object_id[0])
        return r->external_directory_object_id;
    if (r->identity && r->identity[0])
        return r->identity;
    return NULL;
}

const Certsync__V1__ObjectState *pub_state_object(const pub_state *s, const char *object_key)
{
    const Certsync__V1__AppliedStateRecord *rec = get(s, PUB_STATE_OBJ_PREFIX, object_key);
    return rec && rec->state_case == CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT ? rec->object : NULL;
}

bool pub_state_same_object(const char *key_a, const char *key_b)
{
    const char *a = key_a ? strchr(key_a, '/') : NULL;
    const char *b = key_b ? strchr(key_b, '/') : NULL;
    return a && b && a[1] != '\0' && strcmp(key_a, key_b) != 0 && strcmp(a + 1, b + 1) == 0;
}

bool pub_state_view(const pub_state *s, const char *object_key, pub_applied_view *out)
{
    memset(out, 0, sizeof(*out));
    const Certsync__V1__ObjectState *obj = pub_state_object(s, object_key);
    if (!obj)
        return false;
    out->version = obj->version;
    const char *rid = pub_state_recipient_id(obj->recipient);
    const Certsync__V1__AppliedStateRecord *rec = rid ? get(s, PUB_STATE_RCPT_PREFIX, rid) : NULL;
    if (!rec || rec->state_case != CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT ||
        !rec->recipient->owner_object_key)
        return true;
    const char *owner = rec->recipient->owner_object_key;
    /* Only our own write counts as "already written": another object may own the recipient now. */
    if (strcmp(owner, object_key) == 0) {
        out->written_sha256 = rec->recipient->written_sha256;
        return true;
    }
    /* ...unless the owner is this very object seen through another server (a replica, pub_state.h): its
     * newer version is the one to beat, so the change it already wrote is stale here. */
    if (pub_state_same_object(owner, object_key)) {
        const Certsync__V1__ObjectState *o = pub_state_object(s, owner);
        if (o && o->version &&
            (!obj->version || cs_version_compare(o->version, obj->version) == CS_VERSION_NEWER)) {
            out->version = o->version;
            out->written_sha256 = rec->recipient->written_sha256;
        }
    }
    return true;
}

const Certsync__V1__RecipientState *pub_state_recipient(const pub_state *s, const char *recipient_id)
{
    if (!recipient_id)
        return NULL;
    const Certsync__V1__AppliedStateRecord *rec = get(s, PUB_STATE_RCPT_PREFIX, recipient_id);
    return rec && rec->state_case == CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT ? rec->recipient
                                                                                         : NULL;
}

void pub_state_each_object(const pub_state *s, pub_state_object_fn fn, void *ctx)
{
    for (size_t b = 0; b < N_BUCKETS; b++)
        for (const entry *e = s->buckets[b]; e; e = e->next)
            if (e->rec->state_case == CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT && e->rec->object)
                fn(ctx, e->partition, e->rec->object);
}

void pub_state_drop_partition(pub_state *s, int32_t partition)
{
    for (size_t b = 0; b < N_BUCKETS; b++) {
        entry **slot = &s->buckets[b];
        while (*slot) {
            if ((*slot)->partition == partition) {
                entry *old = *slot;
                *slot = old->next;
                entry_free(old);
                s->count--;
            } else {
                slot = &(*slot)->next;
            }
        }
    }
}

bool pub_state_partition_of(const pub_state *s, const char *key, int32_t *partition)
{
    size_t n = key ? strlen(key) : 0;
    entry **slot = n ? find_slot(s, key, n) : NULL;
    if (!slot || !*slot)
        return false;
    *partition = (*slot)->partition;
    return true;
}

size_t pub_state_count(const pub_state *s)
{
    return s->count;
}
