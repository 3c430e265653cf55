/*
 * pub_ownership: the multi-site step of one batch (design.md "Multi-site", docs/architecture.md).
 *
 * With sources.priority, between deciding and applying, the pipeline hands over every decided write with its
 * recipient already resolved (pub_applier.resolve). Without it, after applying, with remap_only (below). For each recipient the batch touches (the one each write now resolves to,
 * and the one its ObjectState recorded when that differs: a re-map), the step gathers the recipient's claims
 * in ONE pass over the in-memory applied state (every ObjectState that resolves to it, except the batch's own
 * objects, which claim with their new event instead) and picks the owner with pub_owner (sources.priority,
 * then newest stamp, then key). Then:
 *   - a write whose object is not its recipient's owner is skipped (SKIPPED_NOT_OWNER): it writes nothing,
 *     and its ObjectState records the recipient, so it can take over later;
 *   - a write whose object is the owner goes ahead exactly as decided (single source: always the case, so
 *     nothing changes there);
 *   - a recipient whose owner is not in the batch is settled with pub_owner_decide() against its
 *     RecipientState: a HANDOVER (the owner went, the next claim takes over) writes that claim's certificates
 *     from the event kept in its ObjectState; a CLEAR (no claim with certificates is left, e.g. the only
 *     object was re-mapped to another recipient) empties the recipient. Both are "extra" writes, with their
 *     recipient pre-resolved.
 * Precedence is only correct when the state of every claim is in memory: with sources.priority set, the
 * pipeline runs only while this instance owns every events partition (pub_pipeline.h). Pure logic, no I/O.
 */
#ifndef PUB_OWNERSHIP_H
#define PUB_OWNERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cs_err.h"
#include "cs_policy.h"
#include "pub_applier.h"
#include "pub_decide.h"
#include "pub_owner.h"
#include "pub_state.h"

typedef struct pub_ownership_in {
    const pub_state *state;
    const pub_owner_rules *rules;      /* NULL: every source ranks equal */
    const cs_policy *policy;           /* for the decision of a handover; NULL: none */
    int64_t now;                       /* unix seconds, for that decision */
    const pub_write *writes;           /* the batch's decided writes (one per object key) */
    size_t n;                          /* number of writes */
    const pub_apply_outcome *resolved; /* resolve() answers, one per write; empty recipient_id: unresolved */
    /* Re-map only (no sources.priority: every object writes its own recipient): the writes are already
     * applied and `resolved` holds their outcomes; only the recipients they moved AWAY from are settled
     * (handed over or cleared). Nothing is skipped. */
    bool remap_only;
} pub_ownership_in;

typedef struct pub_ownership pub_ownership;

/* Plans the step for `in` (borrowed for the call only). Caller frees *out with pub_ownership_free(). */
cs_err *pub_ownership_plan(const pub_ownership_in *in, pub_ownership **out);

/* Frees; NULL is allowed. */
void pub_ownership_free(pub_ownership *o);

/* True when write `i` is not its recipient's owner (report it SKIPPED_NOT_OWNER, write nothing). */
bool pub_ownership_skipped(const pub_ownership *o, size_t i);

/* Why write `i` was skipped (names the owner); "" otherwise. Owned by the plan. */
const char *pub_ownership_detail(const pub_ownership *o, size_t i);

/* The recipient write `i` resolved to, or NULL when unresolved. Owned by the plan. */
Certsync__V1__Recipient *pub_ownership_recipient(const pub_ownership *o, size_t i);

/* Number of extra writes (handovers and clears). */
size_t pub_ownership_extra_count(const pub_ownership *o);

/*
 * Extra write `j`: object_key is the claim that owns the recipient afterwards (a handover's new owner; for a
 * clear the best remaining claim, else the object that left), event its event, recipient pre-resolved,
 * partition the state partition of that claim. Owned by the plan.
 */
const pub_write *pub_ownership_extra(const pub_ownership *o, size_t j);

/*
 * The event of the batch write that led to extra write `j` (pointer-equal to that pub_write's `event`, i.e.
 * borrowed from the batch), so a failed extra can be retried with it: parked, its record comes back and the
 * plan is made again. NULL for an unknown j.
 */
const Certsync__V1__ChangeEvent *pub_ownership_extra_cause(const pub_ownership *o, size_t j);

/* "handover from <old owner>" or "cleared: <why>", for logs. Owned by the plan. */
const char *pub_ownership_extra_detail(const pub_ownership *o, size_t j);

#endif
