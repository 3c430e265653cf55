/*
 * col_ldap: one authenticated connection to one directory server, and what its rootDSE says.
 *
 * col_ldap_connect() does everything up to a usable handle: ldap_initialize, LDAPv3, referrals off
 * (AD refers to other naming contexts; chasing would rebind anonymously), network and operation
 * timeouts from ldap.timeout, a per-connection TLS context (ldap.tls.ca_file, certificate demanded
 * unless ldap.tls.verify: false), StartTLS, a simple bind with the password from ldap.password_file
 * (never logged), and a read of the rootDSE: vendor, supported controls, naming contexts,
 * highestCommittedUSN, dsServiceName and that DSA's invocationId.
 *
 * Every LDAP failure becomes a cs_err naming the server URL, the operation, libldap's words
 * (ldap_err2string + LDAP_OPT_DIAGNOSTIC_MESSAGE) and, for TLS and bind problems, the config key to
 * fix; server-down, timeouts and busy servers are retriable.
 */
#ifndef COL_LDAP_H
#define COL_LDAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ldap.h>

#include "col_config.h"
#include "cs_err.h"

/* Control OIDs the collector cares about (advertised in the rootDSE's supportedControl). */
#define COL_OID_DIRSYNC "1.2.840.113556.1.4.841"
#define COL_OID_SYNCREPL "1.3.6.1.4.1.4203.1.9.1.1"
#define COL_OID_PAGED_RESULTS "1.2.840.113556.1.4.319"
#define COL_OID_SHOW_DELETED "1.2.840.113556.1.4.417"

/* cs_err flag of a bind refused with invalidCredentials (49): the password (or the DN) is wrong, e.g. the
 * directory's password was rotated and ldap.password_file not yet (or the reverse). */
#define COL_LDAP_ERR_F_BAD_CREDENTIALS 0x10000 /* above the common and Kafka flags */

/* What kind of directory answered. */
typedef enum col_dir_kind {
    COL_DIR_OTHER = 0, /* an LDAP server that is neither AD nor OpenLDAP */
    COL_DIR_AD,        /* Active Directory or Samba AD (supportedCapabilities / forestFunctionality) */
    COL_DIR_OPENLDAP,  /* objectClass: OpenLDAProotDSE */
} col_dir_kind;

typedef struct col_ldap col_ldap;

/* An attribute list for libldap's `char **attrs` parameter (libldap never writes it). */
char **col_ldap_attrs(const char *const *attrs);

/* "ad", "openldap" or "other". */
const char *col_ldap_kind_name(col_dir_kind kind);

/* "auto", "dirsync", "usn" or "syncrepl". */
const char *col_ldap_mode_name(col_ldap_mode mode);

/*
 * Connects, binds and reads the rootDSE as configured in `cfg` (which must outlive the connection).
 * ldap.sasl_mech: GSSAPI is refused with a clear "not supported yet" error. On failure *out is NULL.
 * Caller frees *out with col_ldap_free().
 */
cs_err *col_ldap_connect(const col_config *cfg, col_ldap **out);

/*
 * col_ldap_connect() with `password` instead of cfg->ldap_password (NULL: anonymous), for a password
 * re-read after a rotation (cs_secret.h). The password is only used for the bind, never kept or logged.
 */
cs_err *col_ldap_connect_as(const col_config *cfg, const char *password, col_ldap **out);

/* Unbinds and frees; NULL is allowed. */
void col_ldap_free(col_ldap *c);

/* The libldap handle, for searches. Owned by c. */
LDAP *col_ldap_handle(const col_ldap *c);

/* The configured URL and the server as "host:port" (for events' source.server). Owned by c. */
const char *col_ldap_url(const col_ldap *c);
const char *col_ldap_server(const col_ldap *c);

/* ldap.bind_dn as configured (a DN or user@domain), or NULL for anonymous / SASL. Owned by the config. */
const char *col_ldap_bind_dn(const col_ldap *c);

/* The operation timeout from ldap.timeout, in milliseconds. */
long long col_ldap_timeout_ms(const col_ldap *c);

/* Page size (ldap.page_size) and the config the connection was made from. */
const col_config *col_ldap_config(const col_ldap *c);

col_dir_kind col_ldap_kind(const col_ldap *c);

/* True when the rootDSE lists `oid` in supportedControl. */
bool col_ldap_supports_control(const col_ldap *c, const char *oid);

/* defaultNamingContext (AD), or the first namingContexts value; NULL when the server names none. */
const char *col_ldap_default_naming_context(const col_ldap *c);

/* The rootDSE's namingContexts values; i out of range gives NULL. Owned by c. */
size_t col_ldap_naming_context_count(const col_ldap *c);
const char *col_ldap_naming_context(const col_ldap *c, size_t i);

/*
 * The naming context that holds `dn` (the longest namingContexts value that is a suffix of `dn` at an
 * RDN boundary, compared case-insensitively), or NULL when none does. Owned by c.
 */
const char *col_ldap_naming_context_of(const col_ldap *c, const char *dn);

/* True when `dn` equals or lies below `base` (case-insensitive, at an RDN boundary). */
bool col_ldap_dn_is_under(const char *dn, const char *base);

/*
 * Re-reads the rootDSE (highestCommittedUSN moves; the DSA may change behind a load balancer) and the
 * invocationId of its dsServiceName.
 */
cs_err *col_ldap_read_rootdse(col_ldap *c);

/* highestCommittedUSN as of the last rootDSE read; -1 when the server has none (not AD). */
int64_t col_ldap_highest_usn(const col_ldap *c);

/* dsServiceName (AD: the DN of the DSA's NTDS Settings object); NULL when not AD. Owned by c. */
const char *col_ldap_ds_service_name(const col_ldap *c);

/* Copies the DSA's invocationId (16 raw bytes) into out; false when it could not be read. */
bool col_ldap_invocation_id(const col_ldap *c, unsigned char out[16]);

/*
 * Resolves ldap.mode: auto picks DirSync on AD when advertised, syncrepl on OpenLDAP with syncprov;
 * an explicit mode must be advertised too. Anything else is a CS_ERR_CONFIG naming what the server
 * offers and what to set instead.
 */
cs_err *col_ldap_pick_mode(const col_ldap *c, col_ldap_mode configured, col_ldap_mode *out);

/*
 * Turns a libldap result code into a cs_err: "<url>: <operation>: <ldap_err2string> (<rc>): <diagnostic>"
 * plus a hint for TLS and bind failures. Retriable for server down, connect errors, timeouts, busy and
 * unavailable; not retriable when the TLS certificate was rejected. Never returns NULL.
 */
cs_err *col_ldap_error(const col_ldap *c, const char *operation, int rc);

#endif
