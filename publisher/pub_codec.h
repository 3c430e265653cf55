/*
 * pub_codec: the encodings Office 365 requests need: base64 (certificate values), base64url without
 * padding (JWT parts, x5t), percent-encoding (form bodies, query strings) and UUID v4 (client-request-id,
 * JWT jti). Thin wrappers over OpenSSL so the rules live in one place.
 */
#ifndef PUB_CODEC_H
#define PUB_CODEC_H

#include <stdbool.h>
#include <stddef.h>

#include "cs_buf.h"

#define PUB_UUID_LEN 36 /* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" without the NUL */

/* Appends standard base64 (with padding) of `data` to `out`. False when `out` is full. */
bool pub_b64_encode(cs_buf *out, const unsigned char *data, size_t len);

/* Appends base64url without padding (RFC 7515 section 2) of `data` to `out`. False when `out` is full. */
bool pub_b64url_encode(cs_buf *out, const unsigned char *data, size_t len);

/*
 * Decodes standard base64 `in` (length `in_len`, padding required, no whitespace) into a new buffer:
 * *out (caller frees with free()), *out_len. False on malformed input or out of memory.
 */
bool pub_b64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);

/* Decodes base64url without padding, as pub_b64_decode. */
bool pub_b64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);

/*
 * Appends `s` percent-encoded for a URL query or an application/x-www-form-urlencoded value: every byte
 * but ALPHA / DIGIT / "-" / "." / "_" / "~" becomes %XX (space too, never "+"). False when `out` is full.
 */
bool pub_url_encode(cs_buf *out, const char *s);

/* Writes a random (RAND_bytes) UUID v4 in lower case and a NUL to `out`. False when the RNG fails. */
bool pub_uuid_v4(char out[PUB_UUID_LEN + 1]);

#endif
