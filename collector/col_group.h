/*
 * col_group: the member set of ldap.group_dn, watched for changes (design.md, "DirSync facts").
 *
 * A membership change is written to the GROUP's `member` (AD, OpenLDAP groupOfNames) or `uniqueMember`
 * (groupOfUniqueNames): DirSync, uSNChanged and syncrepl report the group, never the user, whose own
 * stamps do not move. So the collector reads the group itself: col_group_refresh() reads the group's
 * change stamp (entryCSN on OpenLDAP, uSNChanged on AD) and, only when it moved, the member values
 * (AD's ranged retrieval `member;range=L-H` included), and lists the DNs that joined and left since the
 * previous refresh. The service turns a joined DN into an upsert (the user entering scope) and a left DN
 * into an OUT_OF_SCOPE removal.
 *
 * Membership is direct unless `nested` (ldap.group_nested): then a member that is a group (objectClass
 * group, groupOfNames or groupOfUniqueNames) brings in its own members, recursively. Which member DNs are
 * groups comes from one paged DN-only search of the group objects in the group's naming context (instead
 * of a read per member); the closure is walked breadth first, each group once (a cycle or a second path
 * ends there), at most COL_GROUP_MAX_NESTED groups. Every group of the closure is watched: each refresh
 * reads the change stamp of each, and any one moving (or a nested group appearing or vanishing) reads the
 * whole closure again. The groups themselves are not members (they are not users). AD's in-chain matching
 * rule (LDAP_MATCHING_RULE_IN_CHAIN, which Samba 4.17 evaluates too) narrows the server filter
 * (col_scope_filter), but cannot replace the watch: a change in a nested group stamps that group only.
 *
 * DNs are compared in a normal form: parsed and printed back by libldap (LDAPv3 string form, no spaces
 * around separators), then ASCII-lowercased. That is what AD and OpenLDAP treat as equal for the usual
 * case-insensitive naming attributes (cn, ou, dc, uid); a DN that libldap cannot parse is lowercased as is.
 *
 * The member set is kept in memory (sorted normal forms, at most COL_GROUP_MAX_MEMBERS). Its SHA-256 goes
 * into the checkpoint's scope hash, so a restart that finds another member set (changed while the
 * collector was down) runs a resync with a removal sweep instead of missing the change.
 */
#ifndef COL_GROUP_H
#define COL_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "col_ldap.h"
#include "col_object.h"
#include "cs_err.h"
#include "cs_event.h"

/* Largest member set held; a bigger group is a config error (scope by ldap.filter instead). */
#define COL_GROUP_MAX_MEMBERS 1000000u
/* Most ranged-retrieval rounds for one read (AD returns 1,500 values per round by default). */
#define COL_GROUP_MAX_RANGE_ROUNDS 2000
/* Most groups in a nested closure (ldap.group_nested), ldap.group_dn included. */
#define COL_GROUP_MAX_NESTED 10000
/* Longest change stamp kept (entryCSN is 40 bytes, uSNChanged at most 20). */
#define COL_GROUP_MAX_STAMP 128

typedef struct col_group col_group;

/*
 * A watcher for `group_dn` (with nested groups expanded when `nested`) with no member set read yet.
 * Caller frees with col_group_free().
 */
cs_err *col_group_new(const char *group_dn, bool nested, col_group **out);

/* Frees the watcher; NULL is allowed. */
void col_group_free(col_group *g);

/*
 * Reads the change stamp of every group of the closure from `c` and, when one differs from the last one
 * read (or on the first call, or with `force`), the member set of the whole closure. *changed is true when the member set differs from the previous
 * one (never on the first read: there is nothing to compare with). The joined / left DNs stay available
 * through col_group_joined() / col_group_left() until the next refresh. A missing group is a CS_ERR_CONFIG
 * naming ldap.group_dn; on any error the previous member set is kept.
 */
cs_err *col_group_refresh(col_group *g, col_ldap *c, bool force, bool *changed);

/* The DNs (as the group lists them) that joined / left at the last refresh; *dns borrowed. */
size_t col_group_joined(const col_group *g, const char *const **dns);
size_t col_group_left(const col_group *g, const char *const **dns);

/* True when `dn` is a member (direct, or nested with `nested`; normal forms compared); false before the
   first refresh. */
bool col_group_is_member(const col_group *g, const char *dn);

/* Number of members at the last refresh. */
size_t col_group_count(const col_group *g);

/* Number of nested groups in the closure at the last refresh (0 without `nested`). */
size_t col_group_nested_count(const col_group *g);

/* SHA-256 (lowercase hex) of the sorted normal forms (with `nested`, of the closure's groups too); ""
   before the first refresh. */
const char *col_group_members_sha256(const col_group *g);

/* The group's entryCSN at the last refresh (OpenLDAP), or NULL (AD, or not read yet). */
const char *col_group_entry_csn(const col_group *g);

/*
 * Reads the object `dn` (base scope) with `filter` and the attributes every reader asks for. *out is NULL
 * when the object does not exist or does not match the filter. Caller frees *out with col_object_free().
 */
cs_err *col_group_read_object(col_ldap *c, const char *dn, const char *filter, col_object **out);

/* The normal form of `dn` (see above) into *out. Caller frees *out with free(). */
cs_err *col_group_dn_normalize(const char *dn, char **out);

#endif
