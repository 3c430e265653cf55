/*
 * col_kube: a minimal Kubernetes API client over libcurl, for the Lease election (col_election.c).
 *
 * In-cluster defaults (what client-go's rest.InClusterConfig does):
 *   API        https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
 *   token      /var/run/secrets/kubernetes.io/serviceaccount/token, re-read for EVERY request: projected
 *              service account tokens rotate (about hourly) and the kubelet rewrites the file
 *   CA         /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
 *   namespace  /var/run/secrets/kubernetes.io/serviceaccount/namespace
 * Each is overridable (election.kubernetes.*). TLS is always verified; redirects are never followed (the
 * bearer token must not go anywhere else); the token never appears in logs or errors.
 *
 * One handle is used by one thread at a time.
 */
#ifndef COL_KUBE_H
#define COL_KUBE_H

#include <stddef.h>

#include "cs_err.h"

#define COL_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define COL_KUBE_TOKEN_MAX 16384 /* a service account JWT is ~1 KiB; bound what is read */

typedef struct col_kube col_kube;

typedef struct col_kube_opts {
    const char *api_url;    /* NULL: from KUBERNETES_SERVICE_HOST/PORT (an error outside a pod) */
    const char *token_file; /* NULL: COL_KUBE_SA_DIR/token */
    const char *ca_file;    /* NULL: COL_KUBE_SA_DIR/ca.crt */
} col_kube_opts;

/*
 * Prepares a client. The token file is read once here so a missing one is a start-up error naming it.
 * Caller frees *out with col_kube_free().
 */
cs_err *col_kube_new(const col_kube_opts *o, col_kube **out);

/*
 * One request: `method` GET, POST or PUT on `path` (starting with /apis/), JSON `body` or NULL.
 * On a completed exchange returns NULL with *status the HTTP status and *resp the body (bounded by
 * COL_LEASE_MAX_BODY; caller frees with free()); a transport failure (connect, TLS, timeout) is a
 * retriable CS_ERR_HTTP with curl's words. `timeout_ms` bounds the whole exchange.
 */
cs_err *col_kube_request(col_kube *k, const char *method, const char *path, const char *body, long timeout_ms,
                         long *status, char **resp, size_t *resp_len);

/* The API base URL in use (for logs). */
const char *col_kube_url(const col_kube *k);

/* Frees; NULL is allowed. */
void col_kube_free(col_kube *k);

/*
 * Reads the pod's namespace from `file` (NULL: COL_KUBE_SA_DIR/namespace) into out (trimmed).
 */
cs_err *col_kube_read_namespace(const char *file, char *out, size_t cap);

#endif
