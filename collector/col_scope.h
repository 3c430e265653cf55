/*
 * col_scope: the search filters that express the configured scope (ldap.filter, ldap.group_dn) to the
 * directory, for every reader.
 *
 *   - Group membership (ldap.group_dn): direct members, or with ldap.group_nested the members of nested
 *     groups too. On AD the server filter is a `memberOf` match ANDed to the filter (memberOf is the back
 *     link of the group's `member`; nested: the in-chain rule), which narrows snapshots and re-reads to
 *     members. OpenLDAP has memberOf
 *     only with the memberof overlay, so there the server filter is ldap.filter alone and the collector
 *     keeps members only (col_group_is_member). On every server the group itself is watched (col_group):
 *     a membership change is written to the GROUP's `member`, the user's own stamps do not move, so the
 *     service turns joined / left members into upserts / OUT_OF_SCOPE removals (col_service.c).
 *   - Leaving the filter: DirSync and uSNChanged polling only see objects that match their search filter,
 *     so an object that stops matching would go unnoticed until a resync. They search with the broad
 *     filter too (col_scope_broad_filter: the filter's class terms) and report an object of it that changed
 *     but no longer matches as an OUT_OF_SCOPE removal by id (col_dirsync.h, col_usn.h); syncrepl's server
 *     sends such an entry as a delete (RFC 4533).
 *   - Tombstones: AD strips objectCategory (and most attributes) from a deleted object, so the default
 *     filter (&(objectCategory=person)(objectClass=user)) never matches a tombstone and DirSync /
 *     uSNChanged would miss every deletion (checked against Samba: a tombstone keeps objectClass,
 *     objectSid, sAMAccountName, userAccountControl and lastKnownParent). The tracking filter is therefore
 *     (|F(&(isDeleted=TRUE)(objectClass=user)(!(objectClass=computer)))): live objects still match F
 *     exactly; tombstones of user objects match the second branch. Readers narrow tombstones further by
 *     lastKnownParent (under a base DN). A tombstone of a user that never was in scope still becomes a
 *     removal event; the index (Kafka side) is what knows it was never emitted.
 */
#ifndef COL_SCOPE_H
#define COL_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "col_config.h"
#include "col_ldap.h"
#include "cs_err.h"

/* Largest filter built here (the config's filter plus the group DN and the tombstone clause). */
#define COL_SCOPE_MAX_FILTER 8192

/* AD's LDAP_MATCHING_RULE_IN_CHAIN: memberOf through nested groups. */
#define COL_SCOPE_IN_CHAIN "1.2.840.113556.1.4.1941"
/* Longest attribute name col_scope_filter_attrs() reports. */
#define COL_SCOPE_MAX_ATTR_NAME 64

/* The clause that matches tombstones of user objects (see above). */
#define COL_SCOPE_TOMBSTONE_CLAUSE "(&(isDeleted=TRUE)(objectClass=user)(!(objectClass=computer)))"

/*
 * The effective filter: `filter` alone, or (&<filter>(memberOf=<group_dn escaped per RFC 4515>)) when
 * `group_dn` is set; with `nested` (ldap.group_nested) the memberOf match is AD's in-chain rule
 * (memberOf:1.2.840.113556.1.4.1941:=<group_dn>), which Samba evaluates too. Caller frees *out with free().
 */
cs_err *col_scope_filter(const char *filter, const char *group_dn, bool nested, char **out);

/*
 * The broad filter of an effective filter: the AND of its class terms ((objectClass=v), (objectCategory=v))
 * found among its AND-ed components, or (objectClass=*) when it has none. An object that stops matching the
 * filter keeps its classes, so it still matches the broad filter: DirSync and uSNChanged polling search
 * with it to see objects leave the filter (col_dirsync.h, col_usn.h). Caller frees *out with free().
 */
cs_err *col_scope_broad_filter(const char *filter, char **out);

/*
 * The attribute names `filter` tests (options cut, each once, case-insensitively), at most `max`, into
 * `out`; returns how many. DirSync reports an object only when a requested attribute changed, so it must
 * request these to see an object leave (or enter) the filter.
 */
size_t col_scope_filter_attrs(const char *filter, char out[][COL_SCOPE_MAX_ATTR_NAME], size_t max);

/* (|<filter>COL_SCOPE_TOMBSTONE_CLAUSE): the AD tracking filter that also sees deletions. Caller frees *out. */
cs_err *col_scope_tracking_filter(const char *filter, char **out);

/*
 * Checks that the server can evaluate the scope: every base DN lies in one of the server's naming
 * contexts. (The group is checked when col_group first reads it.)
 */
cs_err *col_scope_check(col_ldap *c, const col_config *cfg);

#endif
