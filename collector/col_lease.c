/*
 * col_lease: Lease records and client-go's election rules (see col_lease.h).
 */
#include "col_lease.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Copies a JSON string member into a bounded field; absent or null leaves "" (the API omits empties). */
static cs_err *get_str(json_t *obj, const char *key, char *out, size_t cap, const char *what)
{
    json_t *v = json_object_get(obj, key);
    out[0] = '\0';
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v))
        return cs_err_new(CS_ERR_HTTP, 0,
                          "the Lease's %s is not a string; is the API URL a Kubernetes API server?", what);
    if (json_string_length(v) >= cap)
        return cs_err_new(CS_ERR_HTTP, 0, "the Lease's %s is %zu bytes, more than the %zu allowed", what,
                          json_string_length(v), cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return NULL;
}

static cs_err *get_int(json_t *obj, const char *key, long long *out, const char *what)
{
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL || json_is_null(v))
        return NULL;
    /* int32 in the API types; a negative or huge value is not a Lease we should act on. */
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return cs_err_new(CS_ERR_HTTP, 0, "the Lease's %s is not an integer in 0..%d", what, INT32_MAX);
    *out = (long long)json_integer_value(v);
    return NULL;
}

cs_err *col_lease_parse(const char *body, size_t len, col_lease_record *out)
{
    json_error_t jerr;
    json_t *root = NULL;
    json_t *meta = NULL;
    json_t *spec = NULL;
    const char *kind = NULL;
    cs_err *err = NULL;

    memset(out, 0, sizeof *out);
    if (len > COL_LEASE_MAX_BODY)
        return cs_err_new(CS_ERR_HTTP, 0, "the Lease answer is %zu bytes, more than the %d allowed", len,
                          COL_LEASE_MAX_BODY);
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        err = cs_err_new(CS_ERR_HTTP, 0, "the Lease answer is not a JSON object (%s at line %d)",
                         root ? "not an object" : jerr.text, jerr.line);
        goto cleanup;
    }
    kind = json_string_value(json_object_get(root, "kind"));
    if (kind == NULL || strcmp(kind, "Lease") != 0) {
        err = cs_err_new(CS_ERR_HTTP, 0,
                         "the answer's kind is \"%s\", not Lease; check election.kubernetes.api_url",
                         kind ? kind : "(none)");
        goto cleanup;
    }
    meta = json_object_get(root, "metadata");
    if (!json_is_object(meta)) {
        err = cs_err_new(CS_ERR_HTTP, 0, "the Lease has no metadata object");
        goto cleanup;
    }
    if ((err = get_str(meta, "resourceVersion", out->resource_version, sizeof out->resource_version,
                       "metadata.resourceVersion")))
        goto cleanup;
    if (out->resource_version[0] == '\0') {
        err =
            cs_err_new(CS_ERR_HTTP, 0, "the Lease has no metadata.resourceVersion: cannot update it safely");
        goto cleanup;
    }
    spec = json_object_get(root, "spec");
    if (spec == NULL || json_is_null(spec))
        goto cleanup; /* an empty spec is a free lease */
    if (!json_is_object(spec)) {
        err = cs_err_new(CS_ERR_HTTP, 0, "the Lease's spec is not an object");
        goto cleanup;
    }
    if ((err = get_str(spec, "holderIdentity", out->holder, sizeof out->holder, "spec.holderIdentity")) ||
        (err =
             get_str(spec, "acquireTime", out->acquire_time, sizeof out->acquire_time, "spec.acquireTime")) ||
        (err = get_str(spec, "renewTime", out->renew_time, sizeof out->renew_time, "spec.renewTime")) ||
        (err = get_int(spec, "leaseDurationSeconds", &out->duration_s, "spec.leaseDurationSeconds")) ||
        (err = get_int(spec, "leaseTransitions", &out->transitions, "spec.leaseTransitions")))
        goto cleanup;
cleanup:
    json_decref(root);
    if (err)
        memset(out, 0, sizeof *out);
    return err;
}

cs_err *col_lease_render(const char *ns, const char *name, const col_lease_record *rec, char **out)
{
    json_t *root = NULL;
    json_t *meta = NULL;
    json_t *spec = NULL;
    cs_err *err = NULL;

    *out = NULL;
    root = json_object();
    meta = json_object();
    spec = json_object();
    if (root == NULL || meta == NULL || spec == NULL)
        goto nomem;
    if (json_object_set_new(meta, "name", json_string(name)) ||
        json_object_set_new(meta, "namespace", json_string(ns)))
        goto nomem;
    if (rec->resource_version[0] &&
        json_object_set_new(meta, "resourceVersion", json_string(rec->resource_version)))
        goto nomem;
    /* holderIdentity "" is written out (not omitted): that is what releases the lease. */
    if (json_object_set_new(spec, "holderIdentity", json_string(rec->holder)) ||
        json_object_set_new(spec, "leaseDurationSeconds", json_integer(rec->duration_s)) ||
        json_object_set_new(spec, "leaseTransitions", json_integer(rec->transitions)))
        goto nomem;
    if (rec->acquire_time[0] && json_object_set_new(spec, "acquireTime", json_string(rec->acquire_time)))
        goto nomem;
    if (rec->renew_time[0] && json_object_set_new(spec, "renewTime", json_string(rec->renew_time)))
        goto nomem;
    if (json_object_set_new(root, "apiVersion", json_string("coordination.k8s.io/v1")) ||
        json_object_set_new(root, "kind", json_string("Lease")))
        goto nomem;
    /* set_new takes the references even on failure, so clear the locals first. */
    {
        json_t *m = meta, *s = spec;
        meta = spec = NULL;
        if (json_object_set_new(root, "metadata", m) || json_object_set_new(root, "spec", s))
            goto nomem;
    }
    *out = json_dumps(root, JSON_COMPACT);
    if (*out == NULL)
        goto nomem;
    goto cleanup;
nomem:
    err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory rendering the Lease %s/%s (strings must be UTF-8)", ns,
                     name);
cleanup:
    json_decref(meta);
    json_decref(spec);
    json_decref(root);
    return err;
}

/* The spec fields only: a new resourceVersion with an identical spec is not a change client-go sees. */
static bool same_spec(const col_lease_record *a, const col_lease_record *b)
{
    return strcmp(a->holder, b->holder) == 0 && a->duration_s == b->duration_s &&
           strcmp(a->acquire_time, b->acquire_time) == 0 && strcmp(a->renew_time, b->renew_time) == 0 &&
           a->transitions == b->transitions;
}

col_lease_action col_lease_decide(col_lease_observer *obs, const col_lease_record *cur, const char *identity,
                                  int64_t now_ms)
{
    if (cur == NULL)
        return COL_LEASE_TAKE;
    if (!obs->have || !same_spec(&obs->rec, cur)) {
        obs->rec = *cur;
        obs->have = true;
        obs->observed_ms = now_ms;
    } else {
        /* Same spec: keep the observation time, but remember the newest resourceVersion to write at. */
        memcpy(obs->rec.resource_version, cur->resource_version, sizeof obs->rec.resource_version);
    }
    if (strcmp(cur->holder, identity) == 0)
        return COL_LEASE_RENEW;
    if (cur->holder[0] == '\0')
        return COL_LEASE_TAKE;
    if (obs->observed_ms + cur->duration_s * 1000 > now_ms)
        return COL_LEASE_WAIT;
    return COL_LEASE_TAKE;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

void col_lease_next(const col_lease_record *cur, col_lease_action act, const char *identity,
                    long long duration_s, const char *now, col_lease_record *out)
{
    memset(out, 0, sizeof *out);
    copy_str(out->holder, sizeof out->holder, identity);
    out->duration_s = duration_s;
    copy_str(out->renew_time, sizeof out->renew_time, now);
    if (cur == NULL) {
        copy_str(out->acquire_time, sizeof out->acquire_time, now);
        return;
    }
    copy_str(out->resource_version, sizeof out->resource_version, cur->resource_version);
    if (act == COL_LEASE_RENEW) {
        copy_str(out->acquire_time, sizeof out->acquire_time, cur->acquire_time[0] ? cur->acquire_time : now);
        out->transitions = cur->transitions;
    } else {
        copy_str(out->acquire_time, sizeof out->acquire_time, now);
        out->transitions = cur->transitions + 1;
    }
}

void col_lease_release_record(const col_lease_record *cur, const char *now, col_lease_record *out)
{
    memset(out, 0, sizeof *out);
    out->duration_s = 1;
    copy_str(out->acquire_time, sizeof out->acquire_time, now);
    copy_str(out->renew_time, sizeof out->renew_time, now);
    out->transitions = cur->transitions;
    copy_str(out->resource_version, sizeof out->resource_version, cur->resource_version);
}

void col_lease_microtime(const struct timespec *t, char out[COL_LEASE_TIME_LEN])
{
    struct tm tm;
    time_t sec = t->tv_sec;
    if (gmtime_r(&sec, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    char buf[128]; /* room for any int fields gcc can imagine; real dates need 27 bytes */
    int n =
        snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(t->tv_nsec / 1000) % 1000000);
    size_t len = n < 0 ? 0 : (size_t)n < COL_LEASE_TIME_LEN ? (size_t)n : COL_LEASE_TIME_LEN - 1;
    memcpy(out, buf, len);
    out[len] = '\0';
}

void col_lease_status_text(const char *body, size_t len, char *out, size_t cap)
{
    json_t *root = NULL;
    const char *kind = NULL;
    const char *reason = NULL;
    const char *msg = NULL;

    if (cap == 0)
        return;
    out[0] = '\0';
    if (body != NULL && len > 0 && len <= COL_LEASE_MAX_BODY)
        root = json_loadb(body, len, 0, NULL);
    kind = json_string_value(json_object_get(root, "kind"));
    if (kind == NULL || strcmp(kind, "Status") != 0) {
        snprintf(out, cap, "(the answer is not a Kubernetes Status object)");
        goto cleanup;
    }
    reason = json_string_value(json_object_get(root, "reason"));
    msg = json_string_value(json_object_get(root, "message"));
    snprintf(out, cap, "%s: %s", reason ? reason : "(no reason)", msg ? msg : "(no message)");
cleanup:
    json_decref(root);
}

const char *col_lease_action_name(col_lease_action a)
{
    switch (a) {
    case COL_LEASE_WAIT:
        return "wait";
    case COL_LEASE_TAKE:
        return "take";
    case COL_LEASE_RENEW:
        return "renew";
    }
    return "unknown";
}
