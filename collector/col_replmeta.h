/*
 * col_replmeta: AD attribute replication stamps from replPropertyMetaData.
 *
 * replPropertyMetaData is an NDR blob (replPropertyMetaDataBlob, MS-DRSR 5.166 / Samba's drsblobs.idl):
 *   u32 version (= 1), u32 reserved, u32 count, u32 reserved,
 *   count x 48-byte entries: u32 attid, u32 version, u64 originating_change_time,
 *   16-byte originating invocationId, i64 originating USN, i64 local USN (all little-endian).
 * originating_change_time is NTTIME_1sec: whole seconds since 1601-01-01 (not 100 ns units), so
 * unix seconds = value - 11644473600. Lengths and counts come from the wire and are checked against
 * the blob's real size before anything is read.
 */
#ifndef COL_REPLMETA_H
#define COL_REPLMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cs_err.h"

/* Attribute ids (ATTIDs through Samba's / Windows' fixed prefix table). */
#define COL_ATTID_CN 0x00000003u               /* stamped locally per DC: never compare across DCs */
#define COL_ATTID_USER_CERTIFICATE 0x00000024u /* 2.5.4.36 */
#define COL_ATTID_IS_DELETED 0x00020030u       /* 1.2.840.113556.1.2.48 */
#define COL_ATTID_NAME 0x00090001u             /* 1.2.840.113556.1.4.1: the RDN value; moves stamp it too */
#define COL_ATTID_USER_SMIME_CERTIFICATE 0x0014008Cu /* 2.16.840.1.113730.3.140 */

/* Seconds between 1601-01-01 and 1970-01-01. */
#define COL_NTTIME_UNIX_EPOCH_SECONDS 11644473600LL

/* One attribute's replication stamp. */
typedef struct col_stamp {
    bool present; /* false: the attribute has no stamp (never set) */
    uint32_t version;
    int64_t originating_time; /* unix seconds */
    unsigned char invocation_id[16];
    int64_t originating_usn;
    int64_t local_usn;
} col_stamp;

/*
 * Finds the stamp of `attid` in a replPropertyMetaData blob. The whole blob is validated first
 * (version 1, count within the blob); `dn` names the object in the error. An attid that is not in
 * the blob gives out->present = false and no error.
 */
cs_err *col_replmeta_find(const unsigned char *blob, size_t len, const char *dn, uint32_t attid,
                          col_stamp *out);

/*
 * Compares two stamps as AD resolves conflicts: version, then originating time, then originating
 * invocationId (bytewise). An absent stamp is older than any present one. <0, 0, >0 like strcmp.
 */
int col_stamp_compare(const col_stamp *a, const col_stamp *b);

#endif
