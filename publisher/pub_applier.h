/*
 * pub_applier: the Office 365 write behind an interface, so the Kafka pipeline is testable on its own and the
 * real Exchange applier (pub_exchange) plugs in later.
 *
 * The pipeline hands the applier every decided write of one batch at once (at most one per object key: the
 * batch is coalesced) and gets one outcome per write back. Running them concurrently, pacing, throttling and
 * retrying inside a bounded time are the applier's business. The applier must be idempotent: a write is
 * repeated, identically, when a transaction aborts or an instance dies before its commit.
 */
#ifndef PUB_APPLIER_H
#define PUB_APPLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "cs_err.h"

/* One decided write: replace both certificate lists of the object's recipient. */
typedef struct pub_write {
    const char *object_key;                      /* the events key "<source_id>/<object_id>" */
    const Certsync__V1__ChangeEvent *event;      /* identity (to resolve the recipient), version, source */
    int clear;                                   /* 1: a removal (both lists empty) */
    const ProtobufCBinaryData *user_certificate; /* full list to write (after pruning); may be NULL when 0 */
    size_t n_user_certificate;
    const ProtobufCBinaryData *user_smime_certificate;
    size_t n_user_smime_certificate;
    const char *written_sha256; /* hash of exactly these lists */
    int32_t partition;          /* where the event came from, for logs */
    int64_t offset;
    int attempt; /* 1 on the first delivery; higher when it came back from the retry topic */
    /* Pre-resolved target (may be NULL: resolve from the event's identity). Set for writes the multi-site
     * step adds: a clear of the recipient an object was re-mapped away from, or a handover. Needs at least
     * identity (else external_directory_object_id) and recipient_type_details (picks the Set-* cmdlet). */
    const Certsync__V1__Recipient *recipient;
} pub_write;

typedef enum pub_apply_status {
    PUB_APPLY_APPLIED = 1, /* written */
    PUB_APPLY_CLEARED,     /* a removal written (both lists emptied) */
    PUB_APPLY_PERMANENT,   /* will never work as is: dead-letter with `reason` and `detail` */
    PUB_APPLY_RETRY_LATER, /* throttled / not found yet: park it, try again after `retry_after_ms` */
} pub_apply_status;

/* One write's outcome. Strings are bounded copies (truncated when longer). */
typedef struct pub_apply_outcome {
    pub_apply_status status;
    Certsync__V1__DeadLetterReason reason; /* PERMANENT only */
    char detail[512];
    int64_t retry_after_ms; /* RETRY_LATER only */
    /* The recipient written (APPLIED/CLEARED): the id goes into the state key "rcpt/<id>"; when empty, the
     * object key is used as the recipient id. */
    char recipient_id[128];
    char recipient_identity[256];
    char recipient_type[64];
    char primary_smtp_address[256];
    char resolved_by[32];
    char cmdlet[32];
    char client_request_id[64];
    int attempts;
    int http_status;
    /* RETRY_LATER because pub_apply_limits.cancel_at_ms came while it was unfinished: not applied (its request
     * may still land; the retried write is the same full state, and the version gate decides). */
    int cancelled;
} pub_apply_outcome;

/* Time bounds of one apply_until() call, in CLOCK_MONOTONIC milliseconds; 0: no bound. */
typedef struct pub_apply_limits {
    /* No write starts at or after this time (the first one always does, so every call makes progress); the
     * started writes are a prefix of the array and the others keep a zero outcome. */
    int64_t start_until_ms;
    /* Whatever is still unfinished now is cancelled (its requests removed from the wire) and reported
     * RETRY_LATER with `cancelled` set; nothing starts after it. A hung request cannot hold the batch longer. */
    int64_t cancel_at_ms;
    /* Optional (NULL: never): asked before each write is started, the first one included. True: the instance
     * may no longer own the batch's partitions (the group assignment was lost): nothing more starts and
     * whatever is unfinished is cancelled at once like at cancel_at_ms (RETRY_LATER, `cancelled`). Must be
     * cheap; it is asked at least once a second while writes are in progress. */
    bool (*stop)(void *stop_ctx);
    void *stop_ctx;
} pub_apply_limits;

typedef struct pub_applier {
    /*
     * Applies `n` writes and fills `outcomes[i]` for each (zeroed by the caller). Returns an error only when it
     * could not even try (e.g. no token): the pipeline then re-delivers the whole batch later. Must return only
     * when every write has finished or been cancelled (nothing in flight afterwards).
     */
    cs_err *(*apply)(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes);
    /*
     * Called from the revoke callback before partitions are given up: cancel or await every request still in
     * flight, so that no write of ours can land after the new owner's (design.md "Fencing does not stop
     * HTTP"). May be NULL when the applier never leaves anything in flight.
     */
    void (*quiesce)(void *ctx);
    /*
     * Optional, used with sources.priority (NULL: precedence cannot be decided before writing, so every write
     * goes ahead as decided; re-maps are still settled after applying): resolves the
     * recipient of each of `n` writes WITHOUT writing, filling recipient_id, recipient_identity,
     * recipient_type, primary_smtp_address and resolved_by of `outcomes[i]` (zeroed by the caller) when found
     * and leaving recipient_id empty when not found or failed (apply() reports that later). Answers are
     * cached by object key, so the apply() that follows does not ask again. Errors as apply().
     */
    cs_err *(*resolve)(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes);
    /*
     * Optional (NULL: the pipeline calls apply() a chunk at a time and checks its deadline between chunks):
     * apply() within `lim`, starting writes in array order and keeping the HTTP client busy across what would
     * be chunk boundaries. *n_started receives how many writes were started (a prefix: writes[0..*n_started)
     * have outcomes, the rest were never sent). Errors as apply(); returns with nothing in flight.
     */
    cs_err *(*apply_until)(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes,
                           const pub_apply_limits *lim, size_t *n_started);
    void *ctx;
} pub_applier;

#endif
