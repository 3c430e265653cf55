/*
 * pub_decide: what the publisher does with one decoded event, given what it has applied before.
 *
 * Pure logic, no I/O, so every rule is unit-testable without Kafka or Office 365:
 *
 *  1. Version gate, cs_version_compare(event, applied ObjectState):
 *       OLDER or EQUAL  -> SKIP_STALE.
 *       NEWER           -> go on.
 *       DIVERGED        -> go on (documented rule): stamps newer in one attribute and older in another mean two
 *                          concurrent directory histories (e.g. a write on each of two DCs before they
 *                          replicated). Events of one key reach us in the collector's order, and the collector
 *                          emits its newest full view of the object last, so the later event wins: it is applied
 *                          and its own version (not a stamp-wise merge) becomes the applied version. A merge would
 *                          make the converged state that follows compare EQUAL and be skipped wrongly.
 *     No applied state at all: go on.
 *  2. Removal (CHANGE_KIND_REMOVAL): CLEAR both attributes (empty lists).
 *  2b. Certificate policy (pub_decide_with_policy() with an enabled cs_policy; issue 6), before pruning: every
 *     value is judged at `now` with cs_policy_check_value(). A refused value is not written: it becomes a
 *     DroppedValue whose reason is cs_policy_verdict_dropped_reason() ("policy: expired,address_mismatch") and
 *     whose problems are cs_policy_verdict_problems(), and a refusal (pub_decision_refusal_*: the
 *     cs_policy_verdict_message() line naming the user, the certificate's fingerprint and the rules, for the
 *     caller to log once and count by rule after its commit: decide itself does no I/O).
 *     Whose addresses: the address rule needs the RECIPIENT's addresses. The decision takes them from the
 *     event's identity (mail, the smtp: entries of proxyAddresses, and the UPN when policy.match_upn), not from
 *     Exchange: the decision comes before the recipient is resolved (resolution is the applier's, and it
 *     learns only the PrimarySmtpAddress, not every EmailAddresses entry), so judging after resolution would
 *     split the decision in two and make the written hash depend on a lookup. For synced users Entra Connect
 *     derives Exchange's EmailAddresses from exactly these directory attributes (proxyAddresses, else mail),
 *     so the two sets agree; an address Exchange adds on its own (e.g. a tenant.onmicrosoft.com alias) is
 *     one no certificate authority issues S/MIME certificates for.
 *     Only values that pass the policy are pruned below.
 *  3. Pruning, per attribute, only when it has more than PUB_DECIDE_MAX_VALUES values: every value is re-judged
 *     at `now` with cs_cert (time-dependent problems in the event were judged when it was collected); values
 *     with any problem (expired, unusable) are dropped first, then the valid ones are ranked by the user
 *     certificate's notAfter, newest first, and the first PUB_DECIDE_MAX_VALUES are kept. Kept values stay in
 *     directory order. Every dropped value is reported as a DroppedValue with its reason.
 *     If the event had values and the policy and pruning left none in either attribute: DEAD_LETTER
 *     (NOTHING_VALID).
 *     An event with no values at all is a legitimate clear: WRITE with two empty lists.
 *  4. Duplicate: the SHA-256 of what would be written (cs_event_content_sha256 framing, over the kept values)
 *     equals the applied RecipientState.written_sha256 -> SKIP_DUPLICATE (the version still advances).
 */
#ifndef PUB_DECIDE_H
#define PUB_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_cert.h"
#include "cs_err.h"
#include "cs_event.h"
#include "cs_policy.h"
#include "cs_version.h"

/* Exchange Online keeps at most this many values per certificate attribute. */
#define PUB_DECIDE_MAX_VALUES 15

typedef enum pub_decision_kind {
    PUB_DECISION_WRITE = 0,      /* write both lists (possibly empty: a clear by content) */
    PUB_DECISION_CLEAR,          /* a removal: write two empty lists */
    PUB_DECISION_SKIP_STALE,     /* version not newer than the applied one */
    PUB_DECISION_SKIP_DUPLICATE, /* newer version, but the same content as already written */
    PUB_DECISION_DEAD_LETTER,    /* permanent: see pub_decision_dead_letter_reason() */
} pub_decision_kind;

/* "write", "clear", "skip_stale", "skip_duplicate", "dead_letter". */
const char *pub_decision_kind_name(pub_decision_kind kind);

/* What was applied for the object before this event; every field may be NULL/false (nothing known). */
typedef struct pub_applied_view {
    const Certsync__V1__Version *version; /* ObjectState.version, NULL when the object was never seen */
    const char *written_sha256; /* RecipientState.written_sha256 of the object's recipient, or NULL */
} pub_applied_view;

typedef struct pub_decision pub_decision;

/*
 * Decides what to do with `event` (decoded with cs_event_decode) against `applied` (NULL = nothing known),
 * judging certificate validity at `now` (unix seconds). The decision points into `event` for the values:
 * keep the event alive until pub_decision_free(). Errors only for bad arguments and out of memory.
 * Caller frees *out with pub_decision_free().
 */
cs_err *pub_decide(const Certsync__V1__ChangeEvent *event, const pub_applied_view *applied, int64_t now,
                   pub_decision **out);

/*
 * pub_decide() with the certificate policy applied before pruning (step 2b above). `policy` NULL or disabled
 * (cs_policy_enabled() false): no value is judged, as pub_decide(). The policy must outlive the call only.
 * Caller frees *out with pub_decision_free().
 */
cs_err *pub_decide_with_policy(const Certsync__V1__ChangeEvent *event, const pub_applied_view *applied,
                               const cs_policy *policy, int64_t now, pub_decision **out);

/* Frees a decision; NULL is allowed. */
void pub_decision_free(pub_decision *d);

pub_decision_kind pub_decision_get_kind(const pub_decision *d);

/* The version order found by the gate (CS_VERSION_NEWER when nothing was applied before). */
cs_version_order pub_decision_order(const pub_decision *d);

/*
 * The values to write for `attr` (WRITE: the kept values in directory order; CLEAR, skips and dead letters:
 * none). *n receives the count. Pointers into the event; owned by the decision.
 */
const ProtobufCBinaryData *pub_decision_values(const pub_decision *d, cs_cert_attr attr, size_t *n);

/* The values left out, with reasons; *n receives the count. Owned by the decision. */
Certsync__V1__DroppedValue *const *pub_decision_dropped(const pub_decision *d, size_t *n);

/* Lowercase hex SHA-256 of what a WRITE/CLEAR writes (empty string for skips and dead letters). */
const char *pub_decision_sha256(const pub_decision *d);

/* The dead-letter reason (UNSPECIFIED unless DEAD_LETTER). */
Certsync__V1__DeadLetterReason pub_decision_dead_letter_reason(const pub_decision *d);

/* A human-readable line: why skipped, why dead-lettered, or what was written. Owned by the decision. */
const char *pub_decision_detail(const pub_decision *d);

/* The PublishResult outcome a decision maps to when nothing else happens (WRITE -> APPLIED etc.). */
Certsync__V1__Outcome pub_decision_outcome(const pub_decision *d);

/* Values the policy refused (each is also in pub_decision_dropped()). */
size_t pub_decision_refusal_count(const pub_decision *d);

/* Refusal i (< count): the line to log (user, attribute, fingerprint, every failed rule with its fix); "" out of
 * range. Owned by the decision. */
const char *pub_decision_refusal_message(const pub_decision *d, size_t i);

/* Refusal i's failed rules (count each one in a metric by rule); 0 out of range. */
cs_policy_rules pub_decision_refusal_rules(const pub_decision *d, size_t i);

#endif
