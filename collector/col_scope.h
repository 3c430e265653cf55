/*
 * col_scope: the search filters that express the configured scope (ldap.filter, ldap.group_dn) to the
 * directory, for every reader.
 *
 *   - Group membership (ldap.group_dn), direct members only (nested groups are not expanded). On AD the
 *     server filter is a `memberOf` equality match ANDed to the filter (memberOf is the back link of the
 *     group's `member`), which narrows snapshots and DirSync / uSNChanged to members. OpenLDAP has memberOf
 *     only with the memberof overlay, so there the server filter is ldap.filter alone and the collector
 *     keeps members only (col_group_is_member). On every server the group itself is watched (col_group):
 *     a membership change is written to the GROUP's `member`, the user's own stamps do not move, so the
 *     service turns joined / left members into upserts / OUT_OF_SCOPE removals (col_service.c).
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

#include "col_config.h"
#include "col_ldap.h"
#include "cs_err.h"

/* Largest filter built here (the config's filter plus the group DN and the tombstone clause). */
#define COL_SCOPE_MAX_FILTER 8192

/* The clause that matches tombstones of user objects (see above). */
#define COL_SCOPE_TOMBSTONE_CLAUSE "(&(isDeleted=TRUE)(objectClass=user)(!(objectClass=computer)))"

/*
 * The effective filter: `filter` alone, or (&<filter>(memberOf=<group_dn escaped per RFC 4515>)) when
 * `group_dn` is set. Caller frees *out with free().
 */
cs_err *col_scope_filter(const char *filter, const char *group_dn, char **out);

/* (|<filter>COL_SCOPE_TOMBSTONE_CLAUSE): the AD tracking filter that also sees deletions. Caller frees *out. */
cs_err *col_scope_tracking_filter(const char *filter, char **out);

/*
 * Checks that the server can evaluate the scope: every base DN lies in one of the server's naming
 * contexts. (The group is checked when col_group first reads it.)
 */
cs_err *col_scope_check(col_ldap *c, const col_config *cfg);

#endif
