/*
 * col_kube: Kubernetes API requests with a bearer token re-read per request (see col_kube.h).
 */
#include "col_kube.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "col_lease.h"
#include "cs_buf.h"

struct col_kube {
    char *url; /* no trailing slash */
    char *token_file;
    char *ca_file;
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
};

/* Reads a small text file into out, trimming surrounding white space (kubelet files end in none or \n). */
static cs_err *read_small(const char *path, const char *what, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f == NULL)
        return cs_err_new(
            CS_ERR_CONFIG, CS_ERR_F_RETRIABLE,
            "%s %s: cannot open it: %s; mount the service account (automountServiceAccountToken) "
            "or set election.kubernetes.%s",
            what, path, strerror(errno), strcmp(what, "namespace file") == 0 ? "namespace" : "token_file");
    n = fread(out, 1, cap - 1, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    if (more)
        return cs_err_new(CS_ERR_CONFIG, 0, "%s %s: longer than %zu bytes; is it the right file?", what, path,
                          cap - 1);
    out[n] = '\0';
    while (n > 0 && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
    size_t lead = strspn(out, " \t\r\n");
    memmove(out, out + lead, n - lead + 1);
    if (out[0] == '\0')
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_RETRIABLE, "%s %s is empty", what, path);
    return NULL;
}

cs_err *col_kube_read_namespace(const char *file, char *out, size_t cap)
{
    return read_small(file ? file : COL_KUBE_SA_DIR "/namespace", "namespace file", out, cap);
}

static char *dup_or(const char *s, const char *def)
{
    return strdup(s ? s : def);
}

cs_err *col_kube_new(const col_kube_opts *o, col_kube **out)
{
    col_kube *k = NULL;
    cs_err *err = NULL;
    char token[COL_KUBE_TOKEN_MAX];

    *out = NULL;
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the Kubernetes client");
    if (o->api_url != NULL) {
        k->url = strdup(o->api_url);
    } else {
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
            err = cs_err_new(
                CS_ERR_CONFIG, 0,
                "election.mode: kubernetes-lease: KUBERNETES_SERVICE_HOST/PORT are not set (not in "
                "a pod?); set election.kubernetes.api_url");
            goto cleanup;
        }
        size_t n = strlen(host) + strlen(port) + 16;
        if ((k->url = malloc(n)) != NULL)
            snprintf(k->url, n, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    }
    k->token_file = dup_or(o->token_file, COL_KUBE_SA_DIR "/token");
    k->ca_file = dup_or(o->ca_file, COL_KUBE_SA_DIR "/ca.crt");
    if (k->url == NULL || k->token_file == NULL || k->ca_file == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the Kubernetes client");
        goto cleanup;
    }
    size_t ul = strlen(k->url);
    while (ul > 0 && k->url[ul - 1] == '/')
        k->url[--ul] = '\0';
    if (strncmp(k->url, "https://", 8) != 0) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "election.kubernetes.api_url \"%s\": must start with https://",
                         k->url);
        goto cleanup;
    }
    if ((err = read_small(k->token_file, "token file", token, sizeof token)))
        goto cleanup;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (k->curl = curl_easy_init()) == NULL) {
        err = cs_err_new(CS_ERR_INTERNAL, 0, "libcurl could not be initialised");
        goto cleanup;
    }
    *out = k;
    k = NULL;
cleanup:
    memset(token, 0, sizeof token);
    col_kube_free(k);
    return err;
}

const char *col_kube_url(const col_kube *k)
{
    return k->url;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    cs_buf *b = arg;
    /* A false return (over COL_LEASE_MAX_BODY) makes curl fail the transfer: never trust a length. */
    return cs_buf_add(b, data, size * n) ? size * n : 0;
}

cs_err *col_kube_request(col_kube *k, const char *method, const char *path, const char *body, long timeout_ms,
                         long *status, char **resp, size_t *resp_len)
{
    struct curl_slist *hdrs = NULL;
    struct curl_slist *h = NULL;
    cs_buf url;
    cs_buf auth;
    cs_buf out;
    char token[COL_KUBE_TOKEN_MAX];
    cs_err *err = NULL;
    CURLcode rc;

    *status = 0;
    *resp = NULL;
    *resp_len = 0;
    cs_buf_init(&url, 4096);
    cs_buf_init(&auth, COL_KUBE_TOKEN_MAX + 64);
    cs_buf_init(&out, COL_LEASE_MAX_BODY);
    token[0] = '\0';
    /* Re-read every time: the kubelet rotates projected tokens in place. */
    if ((err = read_small(k->token_file, "token file", token, sizeof token)))
        goto cleanup;
    if (!cs_buf_printf(&url, "%s%s", k->url, path) ||
        !cs_buf_printf(&auth, "Authorization: Bearer %s", token)) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "the request URL or token is too long (%s)", path);
        goto cleanup;
    }
    const char *fixed[] = {cs_buf_str(&auth), "Accept: application/json", "Content-Type: application/json",
                           "User-Agent: certsync-collector (leader election)"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if ((h = curl_slist_append(hdrs, fixed[i])) == NULL) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building a Kubernetes request");
            goto cleanup;
        }
        hdrs = h;
    }
    curl_easy_reset(k->curl);
    k->curl_err[0] = '\0';
    curl_easy_setopt(k->curl, CURLOPT_URL, cs_buf_str(&url));
    curl_easy_setopt(k->curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(k->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(k->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(k->curl, CURLOPT_CAINFO, k->ca_file);
    curl_easy_setopt(k->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(k->curl, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(k->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(k->curl, CURLOPT_ERRORBUFFER, k->curl_err);
    curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, &out);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(k->curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? strlen(body) : 0));
    }
    rc = curl_easy_perform(k->curl);
    if (rc != CURLE_OK) {
        err = cs_err_new(CS_ERR_HTTP, CS_ERR_F_RETRIABLE, "%s %s%s: %s%s%s", method, k->url, path,
                         curl_easy_strerror(rc), k->curl_err[0] ? ": " : "", k->curl_err);
        goto cleanup;
    }
    curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, status);
    *resp_len = cs_buf_len(&out);
    if ((*resp = cs_buf_take(&out)) == NULL && (*resp = strdup("")) == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading a Kubernetes answer");
        goto cleanup;
    }
cleanup:
    memset(token, 0, sizeof token);
    curl_slist_free_all(hdrs);
    cs_buf_free(&url);
    cs_buf_free(&auth);
    cs_buf_free(&out);
    return err;
}

void col_kube_free(col_kube *k)
{
    if (k == NULL)
        return;
    if (k->curl) {
        curl_easy_cleanup(k->curl);
        curl_global_cleanup();
    }
    free(k->url);
    free(k->token_file);
    free(k->ca_file);
    free(k);
}
