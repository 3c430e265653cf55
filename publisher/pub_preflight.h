/*
 * pub_preflight: before the first sync, can the publisher write the recipients of the objects in the
 * events topic? (design.md "Write scope".)
 *
 *   certsync-publisher --config F preflight
 *
 * For the newest event of every object (removals left out: nothing to write), resolves the recipient as the
 * publisher would and reads it (pub_inspect), then classifies:
 *   writable    found, and cloud-managed or not directory-synced
 *   unwritable  found, IsDirSynced and not IsExchangeCloudManaged: Exchange refuses the write (write scope)
 *   unknown     no recipient by any key of resolve.order (not synced yet, out of scope, not mail-enabled)
 *   error       the read failed (throttled past the retries, outage, ambiguous identity)
 * Prints one line per problem recipient, a count per class and the exact fix for each class that has
 * members. Exit 0 when every object is writable, 1 when any is not, 2 when it could not run. Read-only.
 */
#ifndef PUB_PREFLIGHT_H
#define PUB_PREFLIGHT_H

#include "pub_config.h"

/* The preflight command (argc entries after "preflight"); returns the exit code. */
int pub_preflight_command(const pub_config *cfg, int argc, char **argv);

#endif
