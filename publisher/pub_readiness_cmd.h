/*
 * pub_readiness_cmd: per user, what Outlook will find in Exchange Online after sync, and why encrypting to
 * them would fail (issue 6; the judgement is cs_readiness's).
 *
 *   certsync-publisher --config F readiness [--csv]
 *
 * From the newest event of every object in topics.events: the directory's values (a removal: none), judged
 * with the publisher's policy (policy.*) against the user's directory addresses (mail, proxyAddresses, the
 * UPN when policy.match_upn), expiring_soon from readiness.expiring_soon_days. The directory's values, not
 * the ones left after the policy: the policy refuses exactly the values that fail here, so judging what is
 * left would turn "expired" or "address_mismatch" into an unhelpful "no certificate". Over 15 values is
 * reported as such (the publisher prunes, the directory should still be cleaned). A table (default) or RFC 4180 CSV on stdout, one row per
 * user, sorted by object key; a summary by reason on stderr. Reads Kafka only: no Office 365 call, so it
 * also works before the first sync. Exit 0 when every user is ok, 1 when any is not, 2 when it could not run.
 * The running service keeps the same judgement per object as the gauge certsync_smime_readiness_users
 * (pub_readiness.h).
 */
#ifndef PUB_READINESS_CMD_H
#define PUB_READINESS_CMD_H

#include "pub_config.h"

/* The readiness command (argc entries after "readiness"); returns the exit code. */
int pub_readiness_command(const pub_config *cfg, int argc, char **argv);

#endif
