/*
 * col_index: what the collector has already put in Kafka, per object, so it emits only real changes.
 *
 * key ("<source_id>/<object_id>") -> (packed version, content SHA-256, removed, held). Memory per entry is
 * bounded: the key, at most COL_INDEX_MAX_VERSION_BYTES of packed version and a 32-byte hash, never the
 * event. Rebuilt on start from the compacted events topic (read_committed), so "no (object, version)
 * twice" holds across restarts, also when a snapshot overlaps change tracking (design.md, "Duplicates
 * across restarts").
 *
 * Verdicts for an incoming event against the entry of its key:
 *   NEW       no entry: emit
 *   NEWER     version newer: emit
 *   DIVERGED  some stamps newer, some older (two histories): log, emit; the incoming state wins
 *   DUPLICATE version not newer and same content (hash and removed flag): drop, count
 *   STALE     version not newer but other content: drop, count, log. Emitting it would put an older or
 *             conflicting state after the newer one in the compacted topic, and the publisher's version gate
 *             would skip it anyway.
 *
 * Removal sweep after a full resync: sweep_begin, then sweep_mark for every object the resync saw (the
 * pipeline does this for each submitted event), then sweep_end lists the keys of this source that are
 * known, not removed and were not seen: each becomes a removal event (REMOVAL_REASON_RESYNC_ABSENT).
 *
 * Not thread-safe: one thread owns the index.
 */
#ifndef COL_INDEX_H
#define COL_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "certsync/v1/change_event.pb-c.h"
#include "cs_err.h"
#include "cs_event.h"

#define COL_INDEX_MAX_VERSION_BYTES 1024u
#define COL_INDEX_MAX_KEY_BYTES 1024u
/* Hard cap on entries: ~100 bytes each, so ~2 GB at the cap; a directory bigger than this is a config error. */
#define COL_INDEX_MAX_ENTRIES 20000000u

typedef struct col_index col_index;

typedef enum col_index_verdict {
    COL_INDEX_NEW = 0,
    COL_INDEX_NEWER,
    COL_INDEX_DIVERGED,
    COL_INDEX_DUPLICATE,
    COL_INDEX_STALE,
    /* A removal of an object this source never emitted (a tombstone of a user that never matched the
     * filter, an object outside the base DNs): nothing downstream knows it, so there is nothing to clear. */
    COL_INDEX_UNKNOWN_REMOVAL,
} col_index_verdict;

/* A read-only view of one entry. `version` is owned by the index, valid until the next change to it. */
typedef struct col_index_entry {
    const uint8_t *version; /* packed certsync.v1.Version */
    size_t version_len;
    char content_sha256[CS_SHA256_HEX_LEN];
    bool removed;
    bool held; /* the latest state is held back by the mass-removal guard, not yet in the events topic */
    bool has_certificates; /* content differs from the empty certificate sets */
} col_index_entry;

/* Creates an empty index for `source_id` (its keys start with "<source_id>/"). Caller frees with
 * col_index_free(). */
cs_err *col_index_new(const char *source_id, col_index **out);

/* Frees the index. NULL is allowed. */
void col_index_free(col_index *idx);

/* Number of entries. */
size_t col_index_count(const col_index *idx);

/* True and *out filled when `key` has an entry. */
bool col_index_lookup(const col_index *idx, const char *key, col_index_entry *out);

/*
 * Judges `ev` (its key, version, kind and content hash `content_sha256`, lowercase hex) against the index
 * without changing it. Fails on an event that cannot be judged (no version that packs within the bound).
 */
cs_err *col_index_judge(const col_index *idx, const char *key, const Certsync__V1__ChangeEvent *ev,
                        const char *content_sha256, col_index_verdict *out);

/* Records `ev` as the latest state of `key` (held as given). Replaces any entry. */
cs_err *col_index_put(col_index *idx, const char *key, const Certsync__V1__ChangeEvent *ev,
                      const char *content_sha256, bool held);

/*
 * Records the state of `key` like col_index_put, from the event's version already packed (`version`,
 * `version_len` bytes, copied) and whether the event is a removal: for a caller that packed it anyway.
 */
cs_err *col_index_put_packed(col_index *idx, const char *key, const uint8_t *version, size_t version_len,
                             bool removed, const char *content_sha256, bool held);

/* Sets or clears the held flag of an existing entry; false when there is none. */
bool col_index_set_held(col_index *idx, const char *key, bool held);

/*
 * Applies one record of the events topic (or of the held topic with `held`): keys of other sources are
 * ignored, a null value (a tombstone) deletes the entry, anything else must decode as a ChangeEvent.
 * Used by the rebuild and by tests.
 */
cs_err *col_index_apply_record(col_index *idx, const void *key, size_t key_len, const void *value,
                               size_t value_len, bool held);

/*
 * Rebuilds from `topic` read_committed up to the LSO (cs_state_reader). `conf` is taken over in every case.
 * `*n_records` (may be NULL) receives the records read.
 */
cs_err *col_index_load(col_index *idx, rd_kafka_conf_t *conf, const char *topic, bool held, int timeout_ms,
                       uint64_t *n_records);

/* Starts a removal sweep: clears every entry's "seen" mark. Fails when a sweep is already open. */
cs_err *col_index_sweep_begin(col_index *idx);

/* Marks `key` as present in the resync. Unknown keys are ignored (they arrive as events). */
void col_index_sweep_mark(col_index *idx, const char *key);

/* True while a sweep is open. */
bool col_index_sweep_open(const col_index *idx);

/*
 * Ends the sweep and returns the keys of this source's entries that are not removed and were not marked,
 * sorted. Caller frees with col_index_keys_free(*keys, *n).
 */
cs_err *col_index_sweep_end(col_index *idx, char ***keys, size_t *n);

/* Frees a key list from col_index_sweep_end(). */
void col_index_keys_free(char **keys, size_t n);

/* "new", "newer", "diverged", "duplicate" or "stale". */
const char *col_index_verdict_name(col_index_verdict v);

/* The content hash of an event with no certificate values (what "emptied" means). */
const char *col_index_empty_sha256(void);

#endif
