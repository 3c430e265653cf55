/*
 * pub_readiness: the S/MIME readiness of the objects the running publisher holds, counted by reason for the
 * gauge certsync_smime_readiness_users{reason} (issue 6; the judgement is cs_readiness's).
 *
 * Each object's verdict is judged when the pipeline writes its ObjectState (applied, cleared, skipped as a
 * duplicate) from the event's directory values, exactly as the readiness command judges them
 * (pub_readiness_cmd.h), and stored IN that ObjectState (fields readiness, readiness_not_after): so the
 * verdicts are bounded by the objects held, restored with the applied state on assignment (the gauge is right
 * after a restart without parsing a certificate) and forgotten with the state of a revoked partition.
 * Counting re-evaluates what time changes from the stored notAfter: ok -> expiring_soon -> expired, and
 * address_mismatch -> expired. Not counted: removed objects, objects another object's write superseded
 * (multi-site non-owners: their values are not in Exchange), and records written before this field existed
 * with certificate values (counted again at their next event; without values they are no_usable_certificate).
 */
#ifndef PUB_READINESS_H
#define PUB_READINESS_H

#include <stdbool.h>
#include <stdint.h>

#include "certsync/v1/change_event.pb-c.h"
#include "cs_err.h"
#include "cs_policy.h"
#include "cs_readiness.h"
#include "pub_state.h"

/*
 * Judges one object from its event: the directory's values (none for a removal) against the addresses of its
 * identity (mail, proxyAddresses, the UPN when the policy matches it), expiring_soon_days 0 = the default.
 * `key` names the object in errors and labels it when the identity has no UPN or DN.
 * Caller frees *out with cs_readiness_free().
 */
cs_err *pub_readiness_judge_event(const cs_policy *policy, const Certsync__V1__ChangeEvent *ev,
                                  const char *key, int64_t now, unsigned expiring_soon_days,
                                  cs_readiness **out);

/* The reason a verdict judged earlier has at `now`, given the notAfter stored with it (unix seconds; 0: none). */
cs_readiness_reason pub_readiness_at(cs_readiness_reason judged, int64_t not_after, int64_t now,
                                     unsigned expiring_soon_days);

/* "ok" ... "over_15_values" back to the reason; false for anything else. */
bool pub_readiness_reason_parse(const char *name, cs_readiness_reason *out);

/* Counts every counted ObjectState of `s` (see above) by its reason at `now` into *out (zeroed first). */
void pub_readiness_tally_state(const pub_state *s, int64_t now, unsigned expiring_soon_days,
                               cs_readiness_tally *out);

#endif
