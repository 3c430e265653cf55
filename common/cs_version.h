/*
 * cs_version: ordering of directory object versions, the heart of both
 * services' "never an older state over a newer one".
 *
 * A version (certsync.v1.Version) is a set of stamps: userCertificate,
 * userSMIMECertificate and lifecycle. Each stamp compares as Active Directory
 * compares replication stamps (version, then originating time, then
 * originating invocationId), or, for OpenLDAP, by entryCSN. So the same change
 * seen through two domain controllers compares equal, and a change made on
 * either one orders the same way everywhere.
 */
#ifndef CS_VERSION_H
#define CS_VERSION_H

#include "certsync/v1/common.pb-c.h"

typedef enum cs_version_order {
    CS_VERSION_OLDER = -1,   /* a is older than b: b supersedes it */
    CS_VERSION_EQUAL = 0,    /* same stamps: the same state */
    CS_VERSION_NEWER = 1,    /* a is newer than b */
    CS_VERSION_DIVERGED = 2, /* some stamps newer, some older: concurrent histories (e.g. two forests) */
} cs_version_order;

/*
 * Compares two stamps. An absent stamp (NULL, or no field set) is older than any
 * present one. Stamps carrying a CSN compare by CSN; otherwise by version,
 * originating_time, then originating_invocation_id bytewise. USNs are not
 * compared: they order changes of one DC only.
 */
int cs_version_stamp_compare(const Certsync__V1__AttributeStamp *a, const Certsync__V1__AttributeStamp *b);

/* Compares two versions stamp by stamp. NULL is the empty version. */
cs_version_order cs_version_compare(const Certsync__V1__Version *a, const Certsync__V1__Version *b);

/*
 * The lifecycle stamp for a removal the collector infers itself (a resync sweep, a delete
 * reported by id only), where the directory gives no stamp: the smallest step newer than
 * `last`'s lifecycle stamp, so that the removal orders after everything emitted before, and a
 * real later stamp (an undelete or a move stamps `name` / `isDeleted` with a higher version)
 * still orders after the removal. `proposed` carries the step: a CSN (OpenLDAP) is used as is;
 * an AD stamp keeps `last`'s version and takes the later of proposed->originating_time and
 * last's time + 1. Writes into *out; its pointers alias `proposed` (no allocation).
 */
void cs_version_next_lifecycle(const Certsync__V1__Version *last,
                               const Certsync__V1__AttributeStamp *proposed,
                               Certsync__V1__AttributeStamp *out);

/* "older", "equal", "newer" or "diverged". */
const char *cs_version_order_name(cs_version_order order);

#endif
