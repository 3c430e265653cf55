/*
 * col_object: one directory object as the collector sees it.
 *
 * Built from a search entry (col_object_from_entry) or, in tests and for id-only notifications,
 * value by value (col_object_new + col_object_add_value + col_object_finish). Holds the identity
 * (DN, object id, GUID, SID, UPN, mail, proxyAddresses, sAMAccountName, uid), the raw values of
 * userCertificate and userSMIMECertificate, isDeleted, and the version stamps:
 *   - AD: from replPropertyMetaData; userCertificate (attid 0x24), userSMIMECertificate (0x14008C), and a
 *     lifecycle stamp = the newer of `name` (0x90001) and `isDeleted` (0x20030). `name` is the RDN
 *     value; AD stamps it on every rename AND every move (the parent travels with `name` in
 *     replication), on delete (renamed to "...\0ADEL:<guid>" under Deleted Objects) and on undelete;
 *     `isDeleted` is stamped on delete and undelete. Both are originating stamps, identical on every DC.
 *     `cn` (0x3) is not used: Samba stamps it locally on each DC. Leaving scope by a filter or group
 *     change stamps neither: that needs the index (Kafka side) to order.
 *   - OpenLDAP: every stamp carries the entry's entryCSN (a whole-entry stamp).
 * Values from the wire are never trusted for a length; malformed GUIDs, SIDs or metadata are errors
 * naming the DN.
 */
#ifndef COL_OBJECT_H
#define COL_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ldap.h>

#include "col_ldap.h"
#include "col_replmeta.h"
#include "cs_cert.h"
#include "cs_err.h"

/* 8-4-4-4-12 plus NUL. */
#define COL_GUID_STR_LEN 37
/* "S-1-" + 48-bit authority + 15 sub-authorities of up to 10 digits each, with room. */
#define COL_SID_STR_LEN 200
/* Bounds on what one object may hold (AD allows far fewer certificates; proxyAddresses can be many). */
#define COL_OBJECT_MAX_VALUES 4096
#define COL_OBJECT_MAX_BYTES (16u * 1024u * 1024u)

typedef enum col_stamp_kind {
    COL_STAMP_USER_CERTIFICATE = 0,
    COL_STAMP_USER_SMIME_CERTIFICATE,
    COL_STAMP_LIFECYCLE,
} col_stamp_kind;

typedef struct col_object col_object;

/* Formats AD's objectGUID bytes (first three fields little-endian) as lowercase 8-4-4-4-12. */
void col_guid_format_ad(const unsigned char guid[16], char out[COL_GUID_STR_LEN]);

/* Formats RFC 4122 UUID bytes (big-endian, as syncrepl's syncUUID) as lowercase 8-4-4-4-12. */
void col_uuid_format(const unsigned char uuid[16], char out[COL_GUID_STR_LEN]);

/*
 * Formats a binary SID (revision 1, sub-authority count <= 15, 48-bit big-endian authority, little-endian
 * sub-authorities; the length must match the count exactly) as "S-1-5-21-...". `dn` names the object in
 * the error.
 */
cs_err *col_sid_format(const unsigned char *sid, size_t len, const char *dn, char out[COL_SID_STR_LEN]);

/*
 * The attributes to request for a directory of `kind` (NULL-terminated, static). OpenLDAP gets
 * userCertificate;binary (the plain name is refused), AD the plain name (AD refuses ;binary in writes
 * and would return values twice if both were asked for); the result parser accepts either name.
 */
char **col_object_attrs(col_dir_kind kind);

/* A new empty object. `dn` may be NULL (id-only notifications). Caller frees with col_object_free(). */
cs_err *col_object_new(col_dir_kind kind, const char *dn, col_object **out);

/*
 * Adds one value of attribute `attr` (name as the server returned it, any case, options such as
 * ";binary" accepted for the certificate attributes). Unknown attributes are ignored. Single-valued
 * attributes keep their first value. Fails when the object passes COL_OBJECT_MAX_VALUES values of one
 * attribute or COL_OBJECT_MAX_BYTES in total.
 */
cs_err *col_object_add_value(col_object *o, const char *attr, const void *val, size_t len);

/*
 * Sets the object id directly (syncrepl's syncUUID for delete / present notifications that carry no
 * attributes). The id is copied and lowercased.
 */
cs_err *col_object_set_id(col_object *o, const char *object_id);

/*
 * Derives what depends on all values: the object id (AD objectGUID, else entryUUID), the SID string and
 * the stamps. Errors name the DN: an objectGUID that is not 16 bytes, a malformed SID, malformed
 * replPropertyMetaData, or no object id at all.
 */
cs_err *col_object_finish(col_object *o);

/* Reads a search entry: DN, every attribute value, then col_object_finish(). Caller frees with col_object_free(). */
cs_err *col_object_from_entry(LDAP *ld, LDAPMessage *entry, col_dir_kind kind, col_object **out);

/* Frees an object; NULL is allowed. */
void col_object_free(col_object *o);

/* Accessors. Strings are owned by the object; NULL when the attribute was absent. */
col_dir_kind col_object_kind(const col_object *o);
const char *col_object_dn(const col_object *o);
const char *col_object_id(const col_object *o);
/* Raw 16 bytes of objectGUID (AD) or NULL. */
const unsigned char *col_object_guid(const col_object *o);
/* ms-DS-ConsistencyGuid bytes or NULL; *len is set. */
const unsigned char *col_object_consistency_guid(const col_object *o, size_t *len);
const char *col_object_sid(const col_object *o);
const char *col_object_upn(const col_object *o);
const char *col_object_mail(const col_object *o);
const char *col_object_sam_account_name(const col_object *o);
const char *col_object_uid(const col_object *o);
const char *col_object_entry_csn(const col_object *o);
size_t col_object_proxy_address_count(const col_object *o);
const char *col_object_proxy_address(const col_object *o, size_t i);
/* isDeleted: TRUE (AD tombstone). */
bool col_object_is_deleted(const col_object *o);
/* Certificate values of `attr`, in directory order. */
size_t col_object_cert_count(const col_object *o, cs_cert_attr attr);
const unsigned char *col_object_cert(const col_object *o, cs_cert_attr attr, size_t i, size_t *len);
/* An AD stamp (present = false on OpenLDAP and when the attribute was never set). */
const col_stamp *col_object_stamp(const col_object *o, col_stamp_kind kind);

#endif
