/*
 * pub_state: the publisher's applied state in memory, for the partitions it owns.
 *
 * A map from state-topic key to the decoded certsync.v1.AppliedStateRecord:
 *   "obj/<events key>"   ObjectState (version seen, recipient, removed)
 *   "rcpt/<recipient>"   RecipientState (what was written, by which object)
 * Each entry remembers the partition it belongs to. Partitioning rule (documented in pub_pipeline.h): the
 * state topic has as many partitions as the events topic, and every state record is produced to the partition
 * number of the event it came from, so restoring partition p of the state topic restores exactly the state of
 * the objects in events partition p, and dropping p on revoke forgets exactly those.
 *
 * Filled from the state topic on assignment (cs_state_reader) and from the records of each committed
 * transaction, through the same function, so restore and live updates cannot disagree. Not thread-safe.
 */
#ifndef PUB_STATE_H
#define PUB_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "cs_err.h"
#include "pub_decide.h"

#define PUB_STATE_OBJ_PREFIX "obj/"
#define PUB_STATE_RCPT_PREFIX "rcpt/"
/* Longest state key accepted (prefix + events key or recipient id); longer records are refused. */
#define PUB_STATE_KEY_MAX 1024

typedef struct pub_state pub_state;

/* An empty store. Caller frees *out with pub_state_free(). */
cs_err *pub_state_new(pub_state **out);

/* Frees the store; NULL is allowed. */
void pub_state_free(pub_state *s);

/*
 * Stores one state-topic record (`value` an encoded AppliedStateRecord) for `partition`, replacing an earlier
 * one with the same key; a NULL value (tombstone) deletes. A key without the obj/ or rcpt/ prefix, or a value
 * that does not decode, is CS_ERR_INVALID_INPUT naming the key: the caller decides whether to skip it.
 * A recipient's owner can change to an object of another events partition (multi-site handover), so one
 * rcpt/<id> key can have records in two partitions of the state topic, and a restore reads the partitions in
 * no particular order. Hence, across partitions: a record replaces the stored one only when its written_at_ms
 * is not older (within one partition the log order decides, as compaction does), and a tombstone deletes only
 * the record of its own partition (the pipeline tombstones the old partition when the owner moves: that
 * tombstone must not delete the new owner's record read before it).
 */
cs_err *pub_state_put(pub_state *s, int32_t partition, const void *key, size_t key_len, const void *value,
                      size_t value_len);

/*
 * The gate's view of `object_key` (the events key): its ObjectState version and, when the object owns its
 * recipient's RecipientState, what was written there. Pointers are owned by the store and valid until the
 * next put or drop. Returns false (and zeroes *out) when nothing is known about the object.
 * Replicas (design.md "Multi-site": the version stamp makes the same change seen by two servers a no-op): when
 * the recipient's owner is the SAME directory object reported by another source (pub_state_same_object: two
 * collectors on two DCs of one domain, or two replicating slapd servers) and the owner's ObjectState version
 * is newer than this key's own, the view carries the owner's version and written hash. AD's attribute stamps
 * (originating version, time, invocationId) and OpenLDAP's entryCSN survive replication, so a replicated
 * change compares EQUAL to the write it already caused: SKIP_STALE, by version, whatever sources.priority
 * says; an older state a lagging server reports is OLDER. Only an ObjectState in memory counts (with
 * sources.priority the instance holds every partition, pub_pipeline.h); an object's first event has no view.
 */
bool pub_state_view(const pub_state *s, const char *object_key, pub_applied_view *out);

/*
 * True when events keys `key_a` and `key_b` ("<source_id>/<object_id>") differ only in the source id: one
 * directory object (AD objectGUID, OpenLDAP entryUUID: the same on every replica) seen through two sources.
 * False for the same key, NULLs, or a key without an object id.
 */
bool pub_state_same_object(const char *key_a, const char *key_b);

/* The stored ObjectState of `object_key`, or NULL. Owned by the store, valid until the next put or drop. */
const Certsync__V1__ObjectState *pub_state_object(const pub_state *s, const char *object_key);

/* The stored RecipientState of recipient id `recipient_id`, or NULL. Owned by the store, valid until the next
 * put or drop. */
const Certsync__V1__RecipientState *pub_state_recipient(const pub_state *s, const char *recipient_id);

/* Called for each stored ObjectState with its partition; the pointers are the store's. */
typedef void (*pub_state_object_fn)(void *ctx, int32_t partition, const Certsync__V1__ObjectState *obj);

/* One pass over every ObjectState (multi-site claims). `fn` must not change the store. */
void pub_state_each_object(const pub_state *s, pub_state_object_fn fn, void *ctx);

/* Forgets every entry of `partition` (on revoke). */
void pub_state_drop_partition(pub_state *s, int32_t partition);

/* True and *partition set when state key `key` ("obj/..." or "rcpt/...") is stored; false when it is not. */
bool pub_state_partition_of(const pub_state *s, const char *key, int32_t *partition);

/* Number of entries (both kinds). */
size_t pub_state_count(const pub_state *s);

/* The recipient id used in "rcpt/<id>": external_directory_object_id, else identity, else NULL. */
const char *pub_state_recipient_id(const Certsync__V1__Recipient *r);

#endif
