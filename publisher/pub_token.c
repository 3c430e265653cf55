/*
 * pub_token: client-credentials tokens with a signed client assertion or a secret, cached per resource.
 */
#include "pub_token.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cs_buf.h"
#include "cs_log.h"
#include "pub_codec.h"

#define PUB_TOKEN_FAC "token"
#define PUB_TOKEN_URL_MAX 2048
#define PUB_TOKEN_ASSERTION_LIFETIME 600 /* exp = now + 10 min (the contract allows 5-10 min) */
#define PUB_TOKEN_MAX_BODY (64u * 1024)
#define PUB_TOKEN_MAX_ACCESS_TOKEN (32u * 1024)

struct pub_token {
    atomic_int refs;
    time_t expires_at;       /* wall clock, for callers and logs */
    long long refresh_at_ms; /* monotonic: refresh from here on */
    long long expires_ms;    /* monotonic: unusable from here on */
    size_t len;
    char value[]; /* the bearer token */
};

struct pub_token_provider {
    pthread_mutex_t lock;
    pub_http *http;
    pub_auth auth;
    pub_assertion_alg alg;
    char *client_id;
    char *token_url;
    char *secret;
    EVP_PKEY *key;
    char x5t[64]; /* base64url thumbprint for the header, SHA-1 or SHA-256 by alg */
    char scope[PUB_RESOURCE_COUNT][PUB_TOKEN_URL_MAX];
    long long margin_ms;
    pub_token *cache[PUB_RESOURCE_COUNT];
    atomic_uint_fast64_t refreshes;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first OpenSSL error as text, for messages. */
static const char *ssl_error(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "no OpenSSL detail");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

bool pub_token_resource_of(const char *url, char *out, size_t cap)
{
    const char *p;
    if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        p = url + 7;
    else
        return false;
    size_t host_len = strcspn(p, "/?#");
    if (host_len == 0)
        return false;
    size_t total = (size_t)(p - url) + host_len;
    if (total + 1 > cap)
        return false;
    for (size_t i = 0; i < total; i++)
        out[i] = (char)tolower((unsigned char)url[i]);
    out[total] = '\0';
    return true;
}

pub_token *pub_token_ref(pub_token *t)
{
    if (t)
        atomic_fetch_add(&t->refs, 1);
    return t;
}

void pub_token_unref(pub_token *t)
{
    if (!t)
        return;
    if (atomic_fetch_sub(&t->refs, 1) == 1) {
        OPENSSL_cleanse(t->value, t->len);
        free(t);
    }
}

const char *pub_token_value(const pub_token *t)
{
    return t->value;
}

time_t pub_token_expires_at(const pub_token *t)
{
    return t->expires_at;
}

const char *pub_token_scope(const pub_token_provider *p, pub_resource r)
{
    return (unsigned)r < PUB_RESOURCE_COUNT ? p->scope[r] : "";
}

const char *pub_token_url(const pub_token_provider *p)
{
    return p->token_url;
}

uint64_t pub_token_refreshes(const pub_token_provider *p)
{
    return (uint64_t)atomic_load(&((pub_token_provider *)(uintptr_t)p)->refreshes);
}

/* Loads the certificate, computes the thumbprint for `alg`, and loads the key; checks they match. */
static cs_err *load_credentials(pub_token_provider *p, const pub_token_opts *o)
{
    cs_err *err = NULL;
    FILE *f = NULL;
    X509 *cert = NULL;
    BIO *bio = NULL;
    unsigned char *der = NULL;
    char sslbuf[256];
    cs_buf x5t;
    cs_buf_init(&x5t, sizeof p->x5t - 1);
    if (!o->certificate_file || !o->private_key_pem) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                         "o365.auth: certificate needs o365.certificate_file and o365.private_key_file");
        goto cleanup;
    }
    f = fopen(o->certificate_file, "r");
    if (!f) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                         "o365.certificate_file: cannot open '%s': check the path and permissions",
                         o->certificate_file);
        goto cleanup;
    }
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    if (!cert) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                         "o365.certificate_file: '%s' holds no PEM certificate (%s): export the app's "
                         "certificate as PEM",
                         o->certificate_file, ssl_error(sslbuf, sizeof sslbuf));
        goto cleanup;
    }
    int der_len = i2d_X509(cert, &der);
    if (der_len <= 0) {
        err = cs_err_new(CS_ERR_CERT, CS_ERR_F_FATAL, "o365.certificate_file: cannot encode '%s': %s",
                         o->certificate_file, ssl_error(sslbuf, sizeof sslbuf));
        goto cleanup;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    const EVP_MD *mdt = o->alg == PUB_ASSERTION_PS256 ? EVP_sha256() : EVP_sha1();
    if (EVP_Digest(der, (size_t)der_len, md, &md_len, mdt, NULL) != 1 ||
        !pub_b64url_encode(&x5t, md, md_len)) {
        err = cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "certificate thumbprint failed");
        goto cleanup;
    }
    snprintf(p->x5t, sizeof p->x5t, "%s", cs_buf_str(&x5t));
    bio = BIO_new_mem_buf(o->private_key_pem, -1);
    if (!bio) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        goto cleanup;
    }
    p->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!p->key) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                         "o365.private_key_file: no unencrypted PEM private key (%s): export the key "
                         "without a passphrase (PKCS#8 or PKCS#1)",
                         ssl_error(sslbuf, sizeof sslbuf));
        goto cleanup;
    }
    if (EVP_PKEY_get_base_id(p->key) != EVP_PKEY_RSA) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                         "o365.private_key_file: the key is not RSA: RS256 and PS256 need an RSA key "
                         "(Entra app certificates are RSA)");
        goto cleanup;
    }
    if (X509_check_private_key(cert, p->key) != 1) {
        ERR_clear_error();
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                         "o365.private_key_file: the key does not belong to o365.certificate_file '%s': "
                         "configure the key of that certificate",
                         o->certificate_file);
        goto cleanup;
    }
cleanup:
    if (f)
        fclose(f);
    X509_free(cert);
    BIO_free(bio);
    OPENSSL_free(der);
    cs_buf_free(&x5t);
    return err;
}

cs_err *pub_token_provider_new(const pub_token_opts *o, pub_token_provider **out)
{
    cs_err *err = NULL;
    pub_token_provider *p = NULL;
    char res[PUB_TOKEN_URL_MAX];
    *out = NULL;
    if (!o->authority_url || !o->tenant_id || !o->client_id || !o->exchange_url || !o->graph_url)
        return cs_err_new(
            CS_ERR_CONFIG, CS_ERR_F_FATAL,
            "o365: authority_url, tenant_id, client_id, exchange_url and graph_url are required");
    p = calloc(1, sizeof *p);
    if (!p)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    p->auth = o->auth;
    p->alg = o->alg;
    p->margin_ms = o->refresh_margin_ms > 0 ? o->refresh_margin_ms : 5 * 60 * 1000;
    p->client_id = strdup(o->client_id);
    size_t alen = strlen(o->authority_url);
    while (alen > 0 && o->authority_url[alen - 1] == '/')
        alen--;
    char url[PUB_TOKEN_URL_MAX];
    int n = snprintf(url, sizeof url, "%.*s/%s/oauth2/v2.0/token", (int)alen, o->authority_url, o->tenant_id);
    if (n < 0 || (size_t)n >= sizeof url) {
        err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL, "o365.authority_url: too long");
        goto cleanup;
    }
    p->token_url = strdup(url);
    if (!p->client_id || !p->token_url) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        goto cleanup;
    }
    const char *bases[PUB_RESOURCE_COUNT] = {o->exchange_url, o->graph_url};
    const char *overrides[PUB_RESOURCE_COUNT] = {o->exchange_resource, o->graph_resource};
    const char *keys[PUB_RESOURCE_COUNT] = {"o365.exchange_url", "o365.graph_url"};
    for (int i = 0; i < PUB_RESOURCE_COUNT; i++) {
        if (overrides[i]) {
            snprintf(res, sizeof res, "%s", overrides[i]);
            size_t l = strlen(res);
            while (l > 0 && res[l - 1] == '/')
                res[--l] = '\0';
        } else if (!pub_token_resource_of(bases[i], res, sizeof res - 16)) {
            err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL, "%s: '%s' is not an absolute https URL", keys[i],
                             bases[i]);
            goto cleanup;
        }
        snprintf(p->scope[i], sizeof p->scope[i], "%.*s/.default", (int)(sizeof p->scope[i] - 16), res);
    }
    if (o->auth == PUB_AUTH_SECRET) {
        if (!o->client_secret || !*o->client_secret) {
            err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                             "o365.client_secret_file: empty: put the client secret's value in the file");
            goto cleanup;
        }
        /* Secret files often end in a newline: it is not part of the secret. */
        size_t sl = strcspn(o->client_secret, "\r\n");
        p->secret = malloc(sl + 1);
        if (!p->secret) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
            goto cleanup;
        }
        memcpy(p->secret, o->client_secret, sl);
        p->secret[sl] = '\0';
    } else {
        err = load_credentials(p, o);
        if (err)
            goto cleanup;
    }
    pub_http_opts ho = o->http;
    ho.max_inflight = 1;
    if (ho.timeout_ms <= 0)
        ho.timeout_ms = 30000;
    if (ho.max_attempts <= 0)
        ho.max_attempts = 3;
    if (ho.max_retry_after_ms <= 0)
        ho.max_retry_after_ms = 30000;
    if (ho.max_response_bytes == 0)
        ho.max_response_bytes = PUB_TOKEN_MAX_BODY;
    err = pub_http_new(&ho, &p->http);
    if (err)
        goto cleanup;
    *out = p;
    p = NULL;
cleanup:
    pub_token_provider_free(p);
    return err;
}

cs_err *pub_token_provider_from_config(const pub_config *cfg, pub_token_provider **out)
{
    pub_token_opts o = {
        .authority_url = cfg->o365_authority_url,
        .tenant_id = cfg->o365_tenant_id,
        .client_id = cfg->o365_client_id,
        .exchange_url = cfg->o365_exchange_url,
        .graph_url = cfg->o365_graph_url,
        .auth = cfg->o365_auth,
        .client_secret = cfg->o365_client_secret,
        .certificate_file = cfg->o365_certificate_file,
        .private_key_pem = cfg->o365_private_key,
        .alg = cfg->o365_assertion_alg,
        .http = {.max_inflight = 1, .timeout_ms = cfg->http_timeout_ms, .ca_file = cfg->o365_ca_file},
    };
    return pub_token_provider_new(&o, out);
}

void pub_token_provider_free(pub_token_provider *p)
{
    if (!p)
        return;
    pub_http_free(p->http);
    for (int i = 0; i < PUB_RESOURCE_COUNT; i++)
        pub_token_unref(p->cache[i]);
    if (p->secret) {
        OPENSSL_cleanse(p->secret, strlen(p->secret));
        free(p->secret);
    }
    EVP_PKEY_free(p->key);
    free(p->client_id);
    free(p->token_url);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

cs_err *pub_token_provider_set_credentials(pub_token_provider *p, const char *client_secret,
                                           const char *certificate_file, const char *private_key_pem)
{
    cs_err *err = NULL;
    pub_token_provider fresh; /* only the credential fields are used */
    pub_token *old[PUB_RESOURCE_COUNT] = {NULL};
    memset(&fresh, 0, sizeof fresh);
    if (p->auth == PUB_AUTH_SECRET) {
        if (!client_secret || !*client_secret)
            return cs_err_new(CS_ERR_CONFIG, 0,
                              "o365.client_secret_file: empty: put the client secret's value in the file");
        size_t sl = strcspn(client_secret, "\r\n");
        fresh.secret = malloc(sl + 1);
        if (!fresh.secret)
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        memcpy(fresh.secret, client_secret, sl);
        fresh.secret[sl] = '\0';
    } else {
        pub_token_opts o = {
            .certificate_file = certificate_file, .private_key_pem = private_key_pem, .alg = p->alg};
        /* A certificate and key that do not match (one file rotated, the other not yet) are refused here and
           the old pair stays in use until both agree. */
        if ((err = load_credentials(&fresh, &o))) {
            EVP_PKEY_free(fresh.key);
            return err;
        }
    }
    pthread_mutex_lock(&p->lock);
    char *old_secret = p->secret;
    EVP_PKEY *old_key = p->key;
    p->secret = fresh.secret;
    p->key = fresh.key;
    memcpy(p->x5t, fresh.x5t, sizeof p->x5t);
    /* Tokens of the old credential stay valid at Entra, but a revoked secret must not linger: the next
       request fetches a token with the new one (callers holding a reference keep theirs). */
    for (int i = 0; i < PUB_RESOURCE_COUNT; i++) {
        old[i] = p->cache[i];
        p->cache[i] = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < PUB_RESOURCE_COUNT; i++)
        pub_token_unref(old[i]);
    if (old_secret) {
        OPENSSL_cleanse(old_secret, strlen(old_secret));
        free(old_secret);
    }
    EVP_PKEY_free(old_key);
    return NULL;
}

/* Appends base64url(JSON of `obj`) to `out`. */
static bool add_json_part(cs_buf *out, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s)
        return false;
    bool ok = pub_b64url_encode(out, (const unsigned char *)s, strlen(s));
    free(s);
    return ok;
}

cs_err *pub_token_build_assertion(pub_token_provider *p, time_t now, char **out)
{
    cs_err *err = NULL;
    json_t *hdr = NULL, *claims = NULL;
    EVP_MD_CTX *md = NULL;
    unsigned char *sig = NULL;
    char sslbuf[256];
    char jti[PUB_UUID_LEN + 1];
    cs_buf jwt;
    cs_buf_init(&jwt, 64 * 1024);
    *out = NULL;
    if (p->auth != PUB_AUTH_CERTIFICATE || !p->key)
        return cs_err_new(CS_ERR_STATE, 0, "client assertion requested but o365.auth is secret");
    if (!pub_uuid_v4(jti))
        return cs_err_new(CS_ERR_INTERNAL, 0, "RAND_bytes failed: no jti");
    bool pss = p->alg == PUB_ASSERTION_PS256;
    hdr = json_pack("{s:s, s:s, s:s}", "alg", pss ? "PS256" : "RS256", "typ", "JWT", pss ? "x5t#S256" : "x5t",
                    p->x5t);
    claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "aud", p->token_url, "iss", p->client_id, "sub",
                       p->client_id, "jti", jti, "nbf", (json_int_t)now, "iat", (json_int_t)now, "exp",
                       (json_int_t)(now + PUB_TOKEN_ASSERTION_LIFETIME));
    if (!hdr || !claims || !add_json_part(&jwt, hdr) || !cs_buf_add(&jwt, ".", 1) ||
        !add_json_part(&jwt, claims)) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "building the client assertion: out of memory");
        goto cleanup;
    }
    md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (!md || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, p->key) != 1) {
        err = cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "EVP_DigestSignInit: %s",
                         ssl_error(sslbuf, sizeof sslbuf));
        goto cleanup;
    }
    if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) {
        /* RFC 7518 3.5: PS256 is RSASSA-PSS with SHA-256, MGF1 SHA-256 and a 32-byte salt. */
        err =
            cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "PSS padding: %s", ssl_error(sslbuf, sizeof sslbuf));
        goto cleanup;
    }
    size_t sig_len = 0;
    if (EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)cs_buf_str(&jwt), cs_buf_len(&jwt)) != 1 ||
        !(sig = OPENSSL_malloc(sig_len)) ||
        EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)cs_buf_str(&jwt), cs_buf_len(&jwt)) != 1) {
        err = cs_err_new(CS_ERR_INTERNAL, CS_ERR_F_FATAL, "EVP_DigestSign: %s",
                         ssl_error(sslbuf, sizeof sslbuf));
        goto cleanup;
    }
    if (!cs_buf_add(&jwt, ".", 1) || !pub_b64url_encode(&jwt, sig, sig_len)) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "building the client assertion: out of memory");
        goto cleanup;
    }
    *out = cs_buf_take(&jwt);
    if (!*out)
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
cleanup:
    json_decref(hdr);
    json_decref(claims);
    EVP_MD_CTX_free(md);
    OPENSSL_free(sig);
    cs_buf_free(&jwt);
    return err;
}

/* The fix for a credential or configuration AADSTS code, or NULL when none is known; *fatal tells. */
static const char *aadsts_fix(long code, bool *fatal)
{
    static const struct {
        long code;
        const char *fix;
    } fixes[] = {
        {7000215, "o365.client_secret_file: the secret is wrong: put the secret's Value (not its Secret ID) "
                  "of a secret of the app named by o365.client_id in the file"},
        {7000222,
         "o365.client_secret_file: the secret is expired: create a new secret in the app registration"},
        {7000218, "o365.auth: the request carried no credential: set o365.client_secret_file or "
                  "o365.certificate_file and o365.private_key_file"},
        {700027, "o365.certificate_file: the assertion's signature did not verify or the certificate is "
                 "unknown: upload this certificate to the app registration (Certificates & secrets) of "
                 "o365.client_id, check o365.private_key_file belongs to it and o365.assertion_alg is RS256 "
                 "or PS256"},
        {700016, "o365.client_id: no such application in the tenant: check the client id and that the app "
                 "has a service principal in o365.tenant_id (admin consent)"},
        {500011,
         "o365.exchange_resource / o365.graph_resource (default: the origin of o365.exchange_url / "
         "o365.graph_url): the resource is not in tenant o365.tenant_id: set the resource of your cloud "
         "(e.g. https://outlook.office365.com) and check the tenant has Exchange Online and admin "
         "consent for the app"},
        {1002012,
         "o365.exchange_resource / o365.graph_resource: the scope is not <resource>/.default: set the "
         "bare resource URI (e.g. https://graph.microsoft.com, no path, no /.default; certsync "
         "appends it)"},
        {9000411, "o365.authority_url: the token request repeats a parameter: set a bare authority without a "
                  "query string (e.g. https://login.microsoftonline.com); if it has none, report a bug"},
        {90002, "o365.tenant_id: the tenant does not exist: check the tenant id and o365.authority_url "
                "(sovereign clouds have their own authority)"},
        {70011, "o365.exchange_url / o365.graph_url: the scope derived from the base URL is not a known "
                "resource: set the base URL of the right cloud"},
        {700022, "the request named more than one resource in scope: a bug, report it"},
        {700024, "the client assertion is outside its valid time: check the system clock (NTP)"},
        {700021, "o365.client_id: the assertion issuer does not match the app: check the client id"},
        {700023, "o365.authority_url / o365.tenant_id: the assertion audience is not this token endpoint"},
        {50027, "the client assertion is malformed: a bug, report it"},
        {900144, "the token request is missing a field: a bug, report it"},
    };
    *fatal = false;
    for (size_t i = 0; i < sizeof fixes / sizeof fixes[0]; i++) {
        if (fixes[i].code == code) {
            *fatal = true;
            return fixes[i].fix;
        }
    }
    return NULL;
}

cs_err *pub_token_error_from_response(long http_status, const char *body, size_t body_len,
                                      const char *client_request_id)
{
    json_t *root = NULL;
    json_error_t jerr;
    const char *error = "", *desc = "";
    long code = 0;
    cs_err *err = NULL;
    const char *crid = client_request_id ? client_request_id : "";
    if (body && body_len > 0)
        root = json_loadb(body, body_len, 0, &jerr);
    if (json_is_object(root)) {
        json_t *v = json_object_get(root, "error");
        if (json_is_string(v))
            error = json_string_value(v);
        v = json_object_get(root, "error_description");
        if (json_is_string(v))
            desc = json_string_value(v);
        v = json_object_get(root, "error_codes");
        if (json_is_array(v) && json_is_integer(json_array_get(v, 0)))
            code = (long)json_integer_value(json_array_get(v, 0));
    }
    if (code == 0 && strncmp(desc, "AADSTS", 6) == 0)
        code = strtol(desc + 6, NULL, 10);
    /* Only the first line: the description goes on with trace ids that clutter the message. */
    size_t desc_len = strcspn(desc, "\r\n");
    if (desc_len > 400)
        desc_len = 400;
    bool fatal = false;
    const char *fix = aadsts_fix(code, &fatal);
    bool retriable = strcmp(error, "temporarily_unavailable") == 0 || http_status >= 500 ||
                     http_status == 429 || code == 90055 || code == 90033 || (http_status == 0);
    if (retriable)
        fatal = false;
    unsigned flags = (retriable ? CS_ERR_F_RETRIABLE : 0) | (fatal ? CS_ERR_F_FATAL : 0);
    char codebuf[32] = "";
    if (code)
        snprintf(codebuf, sizeof codebuf, " (AADSTS%ld)", code);
    if (fix)
        err = cs_err_new(CS_ERR_HTTP, flags,
                         "token request failed%s: %s; HTTP %ld %s: %.*s (client-request-id %s)", codebuf, fix,
                         http_status, error, (int)desc_len, desc, crid);
    else
        err = cs_err_new(CS_ERR_HTTP, flags,
                         "token request failed%s: HTTP %ld %s: %.*s%s (client-request-id %s)", codebuf,
                         http_status, *error ? error : "(no error body)", (int)desc_len, desc,
                         retriable ? "; will retry" : "", crid);
    json_decref(root);
    return err;
}

json_t *pub_token_parse_success(const char *body, size_t body_len, const char **access_token, size_t *len,
                                long long *expires_in_s)
{
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, body_len, 0, &jerr) : NULL;
    json_t *at = json_object_get(root, "access_token");
    json_t *ei = json_object_get(root, "expires_in");
    long long expires_in = -1;
    if (json_is_integer(ei))
        expires_in = (long long)json_integer_value(ei);
    else if (json_is_string(ei)) /* the v1 endpoint sends it as a string */
        expires_in = strtoll(json_string_value(ei), NULL, 10);
    if (!json_is_string(at) || json_string_length(at) == 0 ||
        json_string_length(at) > PUB_TOKEN_MAX_ACCESS_TOKEN || expires_in <= 0) {
        json_decref(root);
        return NULL;
    }
    /* The caller computes milliseconds from it: a huge value must not overflow (fuzz_http found it). */
    if (expires_in > PUB_TOKEN_MAX_LIFETIME_S)
        expires_in = PUB_TOKEN_MAX_LIFETIME_S;
    *access_token = json_string_value(at);
    *len = json_string_length(at);
    *expires_in_s = expires_in;
    return root;
}

/* Percent-encodes name=value into a form body. */
static bool form_add(cs_buf *b, const char *name, const char *value)
{
    return (cs_buf_len(b) == 0 || cs_buf_add(b, "&", 1)) && cs_buf_add_str(b, name) &&
           cs_buf_add(b, "=", 1) && pub_url_encode(b, value);
}

/* Fetches a new token for `r`. Called with the lock held. */
static cs_err *fetch(pub_token_provider *p, pub_resource r, pub_token **out)
{
    cs_err *err = NULL;
    char *assertion = NULL;
    pub_http_response *resp = NULL;
    json_t *root = NULL;
    pub_token *t = NULL;
    cs_buf form;
    cs_buf_init(&form, 128 * 1024);
    *out = NULL;
    bool ok = form_add(&form, "client_id", p->client_id) && form_add(&form, "scope", p->scope[r]) &&
              form_add(&form, "grant_type", "client_credentials");
    if (ok && p->auth == PUB_AUTH_SECRET) {
        ok = form_add(&form, "client_secret", p->secret);
    } else if (ok) {
        err = pub_token_build_assertion(p, time(NULL), &assertion);
        if (err)
            goto cleanup;
        ok = form_add(&form, "client_assertion_type",
                      "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") &&
             form_add(&form, "client_assertion", assertion);
    }
    if (!ok) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "token request body: out of memory");
        goto cleanup;
    }
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    pub_http_request req = {.method = "POST",
                            .url = p->token_url,
                            .headers = headers,
                            .body = cs_buf_str(&form),
                            .body_len = cs_buf_len(&form)};
    long long started = mono_ms();
    time_t wall = time(NULL);
    err = pub_http_perform(p->http, &req, &resp);
    if (err)
        goto cleanup;
    if (resp->outcome != PUB_HTTP_OK) {
        if (resp->status == 0) {
            err = cs_err_new(CS_ERR_HTTP, cs_err_flags(resp->err), "token request to %s failed: %s",
                             p->token_url, cs_err_message(resp->err));
            goto cleanup;
        }
        err =
            pub_token_error_from_response(resp->status, resp->body, resp->body_len, resp->client_request_id);
        goto cleanup;
    }
    long long expires_in = -1;
    const char *at = NULL;
    size_t len = 0;
    root = pub_token_parse_success(resp->body, resp->body_len, &at, &len, &expires_in);
    if (!root) {
        err = cs_err_new(CS_ERR_HTTP, CS_ERR_F_RETRIABLE,
                         "token response from %s has no access_token / expires_in (client-request-id %s)",
                         p->token_url, resp->client_request_id);
        goto cleanup;
    }
    t = malloc(sizeof *t + len + 1);
    if (!t) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        goto cleanup;
    }
    atomic_init(&t->refs, 1);
    memcpy(t->value, at, len + 1);
    t->len = len;
    /* Count the lifetime from when we asked, not when the answer came: errs on the early side. */
    long long life_ms = expires_in * 1000;
    long long refresh_after = life_ms - p->margin_ms;
    if (refresh_after > life_ms * 8 / 10)
        refresh_after = life_ms * 8 / 10;
    if (refresh_after < 0)
        refresh_after = 0;
    t->refresh_at_ms = started + refresh_after;
    t->expires_ms = started + life_ms;
    t->expires_at = wall + (time_t)expires_in;
    atomic_fetch_add(&p->refreshes, 1);
    char life_s[32];
    snprintf(life_s, sizeof life_s, "%lld", expires_in);
    cs_log_kv(CS_LOG_INFO, PUB_TOKEN_FAC, "access token fetched", "scope", p->scope[r], "expires_in_s",
              life_s, "client_request_id", resp->client_request_id, NULL);
    *out = t;
cleanup:
    if (assertion) {
        OPENSSL_cleanse(assertion, strlen(assertion));
        free(assertion);
    }
    if (form.data)
        OPENSSL_cleanse(form.data, form.len); /* holds the secret */
    cs_buf_free(&form);
    pub_http_response_free(resp);
    json_decref(root);
    return err;
}

cs_err *pub_token_get(pub_token_provider *p, pub_resource r, pub_token **out)
{
    cs_err *err = NULL;
    *out = NULL;
    if ((unsigned)r >= PUB_RESOURCE_COUNT)
        return cs_err_new(CS_ERR_INTERNAL, 0, "pub_token_get: unknown resource %d", (int)r);
    pthread_mutex_lock(&p->lock);
    pub_token *cur = p->cache[r];
    long long now = mono_ms();
    if (cur && now < cur->refresh_at_ms) {
        *out = pub_token_ref(cur);
        goto cleanup;
    }
    pub_token *fresh = NULL;
    err = fetch(p, r, &fresh);
    if (err) {
        /* A refresh that fails early leaves a still-valid token usable: refresh is an optimisation. */
        if (cur && now < cur->expires_ms - 30000 && cs_err_is_retriable(err)) {
            cs_log_kv(CS_LOG_WARN, PUB_TOKEN_FAC,
                      "token refresh failed; using the current token until it expires", "error",
                      cs_err_message(err), NULL);
            cs_err_free(err);
            err = NULL;
            *out = pub_token_ref(cur);
        }
        goto cleanup;
    }
    p->cache[r] = fresh;
    pub_token_unref(cur); /* holders of the old token keep their own reference */
    *out = pub_token_ref(fresh);
cleanup:
    pthread_mutex_unlock(&p->lock);
    return err;
}

void pub_token_invalidate(pub_token_provider *p, pub_resource r, const pub_token *seen)
{
    if ((unsigned)r >= PUB_RESOURCE_COUNT)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->cache[r] && p->cache[r] == seen) {
        pub_token_unref(p->cache[r]);
        p->cache[r] = NULL;
        cs_log_kv(CS_LOG_INFO, PUB_TOKEN_FAC, "access token rejected by the API (401): refreshing", "scope",
                  p->scope[r], NULL);
    }
    pthread_mutex_unlock(&p->lock);
}
