/*
 * pub_latest: the newest event per object key, read from a Kafka topic, for the publisher's tools
 * (replay, redrive, preflight, readiness).
 *
 * Reads read_committed from the beginning up to the last stable offset each partition had when the read
 * started (cs_state_reader): that LSO is the recorded end of a replay. Records are then coalesced per key to
 * the newest version (cs_version_compare); on a tie or a diverged version the later record wins, the same
 * rule as the live pipeline's in-batch coalescing.
 *
 *  - events topic: every record is a ChangeEvent; `from_ms` > 0 keeps only records whose timestamp is at or
 *    after it (with message.timestamp.type=LogAppendTime that is the broker's clock, design.md). The whole
 *    topic is read either way: simpler than offsets_for_times, and the events topic is compacted.
 *  - dead-letter topic: every record is a DeadLetter; its original_value is decoded as the event, its
 *    original_key is the key and source_partition / source_offset are the event's coordinates. Only the
 *    reasons in `reasons` (a bit mask of 1 << DeadLetterReason) are kept.
 * Undecodable records are counted and skipped, never fatal.
 */
#ifndef PUB_LATEST_H
#define PUB_LATEST_H

#include <stddef.h>
#include <stdint.h>

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "cs_err.h"
#include "pub_config.h"

/* Upper bound of records kept in memory by one read (a bigger topic is refused with the reason). */
#define PUB_LATEST_MAX_RECORDS 2000000
/* Bound of one read of a topic. */
#define PUB_LATEST_TIMEOUT_MS 120000

typedef struct pub_latest_entry {
    char *key;                        /* the events key "<source_id>/<object_id>" */
    int32_t partition;                /* events partition of the record (source_partition for dead letters) */
    int64_t offset;                   /* events offset of the record (source_offset for dead letters) */
    int64_t timestamp_ms;             /* -1 when none */
    Certsync__V1__ChangeEvent *event; /* decoded; owned by the set */
    Certsync__V1__DeadLetterReason reason; /* dead letters only */
    int64_t order;                         /* position in the topic read (coalescing tie-break) */
} pub_latest_entry;

typedef struct pub_latest {
    pub_latest_entry *v; /* sorted by key, one per key */
    size_t n;
    uint64_t records;        /* records read */
    uint64_t undecodable;    /* records skipped because they did not decode */
    uint64_t filtered;       /* records left out by from_ms or the reason mask */
    int64_t last_offset[64]; /* last offset read per partition (< 64; -1: none): the recorded end */
} pub_latest;

/* Reads topics.events. Caller frees *out with pub_latest_free(). */
cs_err *pub_latest_read_events(const pub_config *cfg, int64_t from_ms, pub_latest **out);

/* Reads topics.dlq, keeping the reasons in `reasons` (bit 1 << reason). Caller frees with pub_latest_free(). */
cs_err *pub_latest_read_dead_letters(const pub_config *cfg, uint32_t reasons, pub_latest **out);

/* Frees the set; NULL is allowed. */
void pub_latest_free(pub_latest *l);

/* "recipient_not_found", "write_scope", "nothing_valid", "rejected", "undecodable"; "unspecified". */
const char *pub_latest_reason_name(Certsync__V1__DeadLetterReason r);

/* Parses a name of pub_latest_reason_name() (case-insensitive); false when unknown. */
int pub_latest_reason_parse(const char *name, Certsync__V1__DeadLetterReason *out);

#endif
