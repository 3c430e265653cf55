/*
 * cs_event: the change event on the wire (certsync.v1.ChangeEvent).
 *
 * Both services go through here to encode, decode and key events, and to
 * compute the content hash, so the rules live in one place.
 */
#ifndef CS_EVENT_H
#define CS_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "certsync/v1/change_event.pb-c.h"
#include "cs_err.h"

/* Largest event accepted: 15+15 values of at most 32 KiB each, identity and summaries, with room to spare. */
#define CS_EVENT_MAX_BYTES (4u * 1024u * 1024u)

/* Length of a lowercase hex SHA-256 plus NUL. */
#define CS_SHA256_HEX_LEN 65

/*
 * Builds the record key "<source_id>/<object_id>". Source ids may not contain '/'
 * (the config loader refuses them), so the key splits unambiguously.
 * Caller frees *out with free().
 */
cs_err *cs_event_key(const char *source_id, const char *object_id, char **out);

/*
 * Decodes and sanity-checks an event: it must be a certsync.v1.ChangeEvent with a
 * kind, a source id and an object id. The error names what is wrong so a dead
 * letter can carry it. Caller frees *out with certsync__v1__change_event__free_unpacked(*out, NULL).
 */
cs_err *cs_event_decode(const uint8_t *data, size_t len, Certsync__V1__ChangeEvent **out);

/* Encodes an event. Caller frees *out with free(). */
cs_err *cs_event_encode(const Certsync__V1__ChangeEvent *event, uint8_t **out, size_t *out_len);

/*
 * Lowercase hex SHA-256 over both attributes' value sets, independent of value
 * order (a directory does not promise one): SHA-256 of
 *   "userCertificate" NUL count(u32 BE) sorted(SHA-256(raw) ...)
 *   "userSMIMECertificate" NUL count(u32 BE) sorted(SHA-256(raw) ...)
 * Computed from the raw bytes, never from the values' own sha256 fields.
 */
cs_err *cs_event_content_sha256(const Certsync__V1__ChangeEvent *event, char out[CS_SHA256_HEX_LEN]);

/*
 * The same hash from the values' SHA-256 digests, for a caller that computed them from the raw bytes
 * itself (the collector's event builder: its certificate parse hashed each value once). user_cert holds
 * n_user_cert digests, smime n_smime (either may be NULL when its count is 0); order does not matter.
 * Equal to cs_event_content_sha256 of an event whose values have exactly those digests.
 */
cs_err *cs_event_content_sha256_digests(const unsigned char (*user_cert)[32], size_t n_user_cert,
                                        const unsigned char (*smime)[32], size_t n_smime,
                                        char out[CS_SHA256_HEX_LEN]);

/* Writes the lowercase hex SHA-256 of data into out. */
void cs_sha256_hex(const void *data, size_t len, char out[CS_SHA256_HEX_LEN]);

#endif
