/*
 * col_event_build: a col_object into a certsync.v1.ChangeEvent.
 *
 * The event is built here (not unpacked), so it is freed with col_event_free(), never with
 * certsync__v1__change_event__free_unpacked(). Everything in it is owned by the event: raw values are
 * copied, so the col_object may be freed first.
 *
 * Every certificate value is summarised with cs_cert (problems mapped to CertProblem, the summary to
 * CertificateSummary). A value that cannot be parsed stays raw, is flagged UNPARSEABLE with the
 * parser's reason, and is logged once per build with DN and attribute.
 *
 * Certificate policy (issue 6): the collector REPORTS what the publisher will refuse, it never drops a value.
 * With `policy` set in col_source_info, every value of an upsert is judged against the object's own
 * addresses (mail, smtp: proxyAddresses, the UPN with policy.match_upn: what the publisher matches too) at
 * the observation time; a refused value is logged (info, facility "policy", the verdict's message naming the
 * user, the certificate's fingerprint and every failed rule) and counted once per failed rule in
 * `policy_refusals`. The event itself is unchanged: the problems the rules have in common with cs_cert
 * (expired, no_email_protection, ...) already travel in CertificateValue.problems, and the publisher judges
 * again at write time (validity changes between the two). The collector's policy leaves out the issuer and
 * revocation rules (cs_policy_config CHEAP): they need a full parse of every value.
 */
#ifndef COL_EVENT_BUILD_H
#define COL_EVENT_BUILD_H

#include <stdint.h>

#include "certsync/v1/change_event.pb-c.h"
#include "col_ldap.h"
#include "col_object.h"
#include "cs_err.h"
#include "cs_metrics.h"
#include "cs_policy.h"

/* Where events come from: copied into every event's Source. Strings may be NULL (left unset). */
typedef struct col_source_info {
    const char *source_id; /* required */
    const char *site;
    const char *server;         /* host:port that answered */
    const char *naming_context; /* the naming context / base DN the object was found under */
    col_dir_kind directory;
    col_ldap_mode mode;      /* the resolved tracking mode (not auto) */
    const cs_policy *policy; /* NULL: no policy report */
    /* CS_POLICY_RULE_COUNT counters indexed by cs_policy_rule (entries may be NULL), or NULL: not counted */
    cs_counter *const *policy_refusals;
} col_source_info;

/*
 * Builds an event for `o` observed at `observed_at_ms` (unix ms; also the "now" certificate validity
 * is judged against).
 *   kind UPSERT: identity, both attributes' values with summaries, version stamps, content hash.
 *   kind REMOVAL: identity and version, no values (the content hash of the empty sets), `removal_reason`.
 * `emit_reason` says why (change, snapshot, resync). Caller frees *out with col_event_free().
 */
cs_err *col_event_build(const col_object *o, const col_source_info *src, Certsync__V1__ChangeKind kind,
                        Certsync__V1__RemovalReason removal_reason, Certsync__V1__EmitReason emit_reason,
                        int64_t observed_at_ms, Certsync__V1__ChangeEvent **out);

/* Frees an event built by col_event_build(); NULL is allowed. */
void col_event_free(Certsync__V1__ChangeEvent *ev);

/* Maps cs_cert's problem to the proto enum (CertProblem = cs_cert_problem + 1). */
Certsync__V1__CertProblem col_event_cert_problem(cs_cert_problem p);

/* Maps cs_cert's keyUsage bits (RFC 5280 order) to OpenSSL's KU_* mask, as CertificateSummary carries. */
uint32_t col_event_key_usage(uint32_t cs_bits);

#endif
