/*
 * pub_codec: base64, base64url, percent-encoding and UUID v4 over OpenSSL.
 */
#include "pub_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

/* EVP_EncodeBlock takes an int length: larger inputs are refused rather than truncated. */
#define PUB_CODEC_MAX_INPUT (64u * 1024u * 1024u)

bool pub_b64_encode(cs_buf *out, const unsigned char *data, size_t len)
{
    bool ok = false;
    unsigned char *tmp = NULL;
    if (len > PUB_CODEC_MAX_INPUT)
        return false;
    tmp = malloc(4 * ((len + 2) / 3) + 1);
    if (!tmp)
        return false;
    int n = EVP_EncodeBlock(tmp, data, (int)len);
    if (n < 0)
        goto cleanup;
    ok = cs_buf_add(out, tmp, (size_t)n);
cleanup:
    free(tmp);
    return ok;
}

bool pub_b64url_encode(cs_buf *out, const unsigned char *data, size_t len)
{
    size_t start = cs_buf_len(out);
    if (!pub_b64_encode(out, data, len))
        return false;
    /* Translate in place and drop the padding: base64url per RFC 7515 appendix C. */
    size_t end = out->len;
    for (size_t i = start; i < end; i++) {
        if (out->data[i] == '+')
            out->data[i] = '-';
        else if (out->data[i] == '/')
            out->data[i] = '_';
    }
    while (end > start && out->data[end - 1] == '=')
        end--;
    out->len = end;
    out->data[end] = '\0';
    return true;
}

bool pub_b64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
    unsigned char *buf = NULL;
    *out = NULL;
    *out_len = 0;
    if (in_len % 4 != 0 || in_len > PUB_CODEC_MAX_INPUT)
        return false;
    for (size_t i = 0; i < in_len; i++) {
        char c = in[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        /* EVP_DecodeBlock skips whitespace silently: refuse anything outside the alphabet instead. */
        if (!alpha && c != '+' && c != '/' && !(c == '=' && i >= in_len - 2))
            return false;
        if (c != '=' && i > 0 && in[i - 1] == '=')
            return false;
    }
    buf = malloc(in_len / 4 * 3 + 1);
    if (!buf)
        return false;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)in_len);
    if (n < 0) {
        free(buf);
        return false;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes: take them off. */
    size_t len = (size_t)n;
    if (in_len >= 1 && in[in_len - 1] == '=')
        len--;
    if (in_len >= 2 && in[in_len - 2] == '=')
        len--;
    *out = buf;
    *out_len = len;
    return true;
}

bool pub_b64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
    bool ok = false;
    char *tmp = NULL;
    if (in_len % 4 == 1 || in_len > PUB_CODEC_MAX_INPUT)
        return false;
    size_t padded = (in_len + 3) / 4 * 4;
    tmp = malloc(padded + 1);
    if (!tmp)
        return false;
    for (size_t i = 0; i < in_len; i++) {
        if (in[i] == '+' || in[i] == '/' || in[i] == '=')
            goto cleanup; /* not base64url */
        tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    }
    for (size_t i = in_len; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    ok = pub_b64_decode(tmp, padded, out, out_len);
cleanup:
    free(tmp);
    return ok;
}

bool pub_url_encode(cs_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '.' || c == '_' || c == '~';
        if (plain) {
            if (!cs_buf_add(out, p, 1))
                return false;
        } else {
            char enc[3] = {'%', hex[c >> 4], hex[c & 0xf]};
            if (!cs_buf_add(out, enc, 3))
                return false;
        }
    }
    return true;
}

bool pub_uuid_v4(char out[PUB_UUID_LEN + 1])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, PUB_UUID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return true;
}
