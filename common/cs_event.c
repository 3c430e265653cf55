#include "cs_event.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* OpenSSL 3.0 looks SHA-256 up in its provider store on every SHA256() or EVP_sha256() digest (a lock and
 * a hash lookup: ~5% of a snapshot's CPU, with four digests per certificate value). Fetched once here and
 * kept for the life of the process. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

static const EVP_MD *sha256_get(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md ? sha256_md : EVP_sha256();
}

static void sha256(const void *data, size_t len, unsigned char md[SHA256_DIGEST_LENGTH])
{
    if (!EVP_Digest(data, len, md, NULL, sha256_get(), NULL))
        SHA256(data, len, md); /* no context (out of memory): the slower one-shot */
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

void cs_sha256_hex(const void *data, size_t len, char out[CS_SHA256_HEX_LEN])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    sha256(data, len, md);
    hex(md, sizeof(md), out);
}

cs_err *cs_event_key(const char *source_id, const char *object_id, char **out)
{
    *out = NULL;
    if (!source_id || !*source_id || strchr(source_id, '/'))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "source id \"%s\" cannot key an event: it must be non-empty and contain no '/'",
                          source_id ? source_id : "");
    if (!object_id || !*object_id)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "object without an id (objectGUID / entryUUID) in source \"%s\"", source_id);
    size_t n = strlen(source_id) + 1 + strlen(object_id) + 1;
    char *key = malloc(n);
    if (!key)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "out of memory building an event key");
    snprintf(key, n, "%s/%s", source_id, object_id);
    *out = key;
    return NULL;
}

cs_err *cs_event_decode(const uint8_t *data, size_t len, Certsync__V1__ChangeEvent **out)
{
    *out = NULL;
    if (len == 0)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "empty record: a change event is never empty (a null tombstone "
                          "from another producer?)");
    if (len > CS_EVENT_MAX_BYTES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "record of %zu bytes exceeds the %u-byte limit for a change event", len,
                          CS_EVENT_MAX_BYTES);
    Certsync__V1__ChangeEvent *ev = certsync__v1__change_event__unpack(NULL, len, data);
    if (!ev)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "record of %zu bytes is not a certsync.v1.ChangeEvent protobuf (wrong topic or a "
                          "foreign producer?)",
                          len);
    const char *why = NULL;
    if (!ev->has_kind || ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UNSPECIFIED)
        why = "no kind (upsert or removal)";
    else if (ev->kind != CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT &&
             ev->kind != CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL)
        why = "an unknown kind (written by a newer collector?)";
    else if (!ev->source || !ev->source->source_id || !*ev->source->source_id)
        why = "no source id";
    else if (!ev->identity || !ev->identity->object_id || !*ev->identity->object_id)
        why = "no object id";
    if (why) {
        certsync__v1__change_event__free_unpacked(ev, NULL);
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "change event of %zu bytes has %s", len, why);
    }
    *out = ev;
    return NULL;
}

cs_err *cs_event_encode(const Certsync__V1__ChangeEvent *event, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t n = certsync__v1__change_event__get_packed_size(event);
    if (n > CS_EVENT_MAX_BYTES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "change event of %zu bytes exceeds the %u-byte limit", n,
                          CS_EVENT_MAX_BYTES);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "out of memory encoding a %zu-byte change event", n);
    certsync__v1__change_event__pack(event, buf);
    *out = buf;
    *out_len = n;
    return NULL;
}

static int digest_cmp(const void *a, const void *b)
{
    return memcmp(a, b, SHA256_DIGEST_LENGTH);
}

/* Feeds one attribute's framing and sorted value digests into ctx (digests: n of them, sorted here). */
static void hash_attribute(EVP_MD_CTX *ctx, const char *name, unsigned char (*digests)[SHA256_DIGEST_LENGTH],
                           size_t n)
{
    if (n > 1)
        qsort(digests, n, sizeof(*digests), digest_cmp);
    unsigned char count[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                              (unsigned char)n};
    EVP_DigestUpdate(ctx, name, strlen(name) + 1);
    EVP_DigestUpdate(ctx, count, sizeof(count));
    if (n)
        EVP_DigestUpdate(ctx, digests, n * sizeof(*digests));
}

/* A copy of n digests to sort (NULL for n == 0); *err on out of memory. */
static unsigned char (*digests_dup(const unsigned char (*in)[SHA256_DIGEST_LENGTH], size_t n,
                                   cs_err **err))[SHA256_DIGEST_LENGTH]
{
    unsigned char(*d)[SHA256_DIGEST_LENGTH] = NULL;
    *err = NULL;
    if (!n)
        return NULL;
    d = calloc(n, sizeof(*d));
    if (!d) {
        *err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_FATAL, "out of memory hashing %zu values", n);
        return NULL;
    }
    if (in)
        memcpy(d, in, n * sizeof(*d));
    return d;
}

cs_err *cs_event_content_sha256_digests(const unsigned char (*user_cert)[32], size_t n_user_cert,
                                        const unsigned char (*smime)[32], size_t n_smime,
                                        char out[CS_SHA256_HEX_LEN])
{
    cs_err *err = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    unsigned char(*uc)[SHA256_DIGEST_LENGTH] = NULL, (*sm)[SHA256_DIGEST_LENGTH] = NULL;
    EVP_MD_CTX *ctx = NULL;

    out[0] = '\0';
    if ((n_user_cert && !user_cert) || (n_smime && !smime))
        return cs_err_new(CS_ERR_INTERNAL, 0, "cs_event_content_sha256_digests: digests missing");
    uc = digests_dup(user_cert, n_user_cert, &err);
    if (!err)
        sm = digests_dup(smime, n_smime, &err);
    if (err)
        goto cleanup;
    ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, sha256_get(), NULL)) {
        err = cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "OpenSSL could not start a SHA-256 digest");
        goto cleanup;
    }
    hash_attribute(ctx, "userCertificate", uc, n_user_cert);
    hash_attribute(ctx, "userSMIMECertificate", sm, n_smime);
    EVP_DigestFinal_ex(ctx, md, &md_len);
    hex(md, md_len, out);
cleanup:
    EVP_MD_CTX_free(ctx);
    free(uc);
    free(sm);
    return err;
}

/* The raw-byte digests of n values (NULL for n == 0); caller frees. */
static cs_err *value_digests(Certsync__V1__CertificateValue **values, size_t n,
                             unsigned char (**out)[SHA256_DIGEST_LENGTH])
{
    cs_err *err = NULL;
    *out = digests_dup(NULL, n, &err);
    for (size_t i = 0; !err && i < n; i++)
        sha256(values[i]->raw.data, values[i]->raw.len, (*out)[i]);
    return err;
}

cs_err *cs_event_content_sha256(const Certsync__V1__ChangeEvent *event, char out[CS_SHA256_HEX_LEN])
{
    unsigned char(*uc)[SHA256_DIGEST_LENGTH] = NULL, (*sm)[SHA256_DIGEST_LENGTH] = NULL;
    out[0] = '\0';
    cs_err *err = value_digests(event->user_certificate, event->n_user_certificate, &uc);
    if (!err)
        err = value_digests(event->user_smime_certificate, event->n_user_smime_certificate, &sm);
    if (!err)
        err = cs_event_content_sha256_digests((const unsigned char(*)[32])uc, event->n_user_certificate,
                                              (const unsigned char(*)[32])sm, event->n_user_smime_certificate,
                                              out);
    free(uc);
    free(sm);
    return err;
}
