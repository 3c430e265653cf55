/*
 * col_probe: drives the collector's directory side against a real server, for the integration tests.
 *
 *   col_probe CONFIG info
 *   col_probe CONFIG position                      prints the incremental position (before a snapshot)
 *   col_probe CONFIG snapshot
 *   col_probe CONFIG syncrepl [COOKIE_HEX [MAX_SECONDS]]   streams until MAX_SECONDS (default 30) pass
 *   col_probe CONFIG dirsync [COOKIE_HEX [FLAGS]]  one DirSync poll (FLAGS: DirSync flags, 1 = object security)
 *   col_probe CONFIG usn [POSITION_HEX]            no position: take one ({"type":"position","cookie":...});
 *                                                  else one uSNChanged poll; a position that cannot be
 *                                                  resumed prints {"type":"resync","message":...} (exit 0)
 *   col_probe CONFIG scope                         checks the scope (col_scope_check) and prints the filters
 *
 * Prints one JSON line per object, removal, presence notice and cookie, flushed at once so a test can
 * await a line instead of sleeping:
 *   {"type":"upsert","id":"...","dn":"...","user_certificate":["<sha256>",...],"user_smime_certificate":[...],
 *    "cert_version":N,"lifecycle_version":N,"csn":"...","sid":"...","event_bytes":N}
 *   {"type":"removal","id":"...","dn":"...","reason":"deleted"}
 *   {"type":"present","id":"..."}  {"type":"cookie","cookie":"<hex>"}  {"type":"refresh_done","sweep":true}
 * Every object goes through col_event_build and cs_event_encode, so the whole mapping is exercised.
 * Errors: one line {"type":"error","message":"..."} on stdout and exit 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "col_config.h"
#include "col_dirsync.h"
#include "col_event_build.h"
#include "col_ldap.h"
#include "col_snapshot.h"
#include "col_scope.h"
#include "col_syncrepl.h"
#include "col_usn.h"
#include "cs_buf.h"
#include "cs_event.h"
#include "cs_log.h"

typedef struct probe {
    col_ldap *c;
    col_source_info src;
} probe;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex(cs_buf *b, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cs_buf_printf(b, "%02x", ((const unsigned char *)p)[i]);
}

static void field(cs_buf *b, const char *k, const char *v)
{
    if (v == NULL)
        return;
    cs_buf_printf(b, ",\"%s\":", k);
    cs_buf_add_json_string(b, v);
}

static void values(cs_buf *b, const char *k, Certsync__V1__CertificateValue **v, size_t n)
{
    cs_buf_printf(b, ",\"%s\":[", k);
    for (size_t i = 0; i < n; i++) {
        cs_buf_add_str(b, i ? "," : "");
        cs_buf_add_json_string(b, v[i]->sha256);
    }
    cs_buf_add_str(b, "]");
}

static cs_err *on_change(void *ctx, const col_change *ch)
{
    probe *p = ctx;
    cs_buf b;
    cs_err *err = NULL;
    Certsync__V1__ChangeEvent *ev = NULL;
    uint8_t *enc = NULL;
    size_t enc_len = 0;

    cs_buf_init(&b, 1u << 20);
    cs_buf_printf(&b, "{\"type\":\"%s\"", col_change_kind_name(ch->kind));
    if (ch->kind == COL_CHANGE_UPSERT || ch->kind == COL_CHANGE_REMOVAL) {
        const col_object *o = ch->object;
        col_source_info src = p->src;
        bool up = ch->kind == COL_CHANGE_UPSERT;
        if (col_object_dn(o) != NULL)
            src.naming_context = col_ldap_naming_context_of(p->c, col_object_dn(o));
        err = col_event_build(o, &src,
                              up ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT
                                 : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL,
                              ch->reason == COL_REMOVAL_OUT_OF_SCOPE
                                  ? CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_OUT_OF_SCOPE
                                  : CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_DELETED,
                              CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE, now_ms(), &ev);
        if (err == NULL)
            err = cs_event_encode(ev, &enc, &enc_len);
        if (err != NULL)
            goto cleanup;
        field(&b, "id", col_object_id(o));
        field(&b, "dn", col_object_dn(o));
        field(&b, "sid", col_object_sid(o));
        field(&b, "mail", col_object_mail(o));
        field(&b, "csn", col_object_entry_csn(o));
        if (!up)
            field(&b, "reason", ch->reason == COL_REMOVAL_OUT_OF_SCOPE ? "out_of_scope" : "deleted");
        values(&b, "user_certificate", ev->user_certificate, ev->n_user_certificate);
        values(&b, "user_smime_certificate", ev->user_smime_certificate, ev->n_user_smime_certificate);
        if (col_object_stamp(o, COL_STAMP_USER_CERTIFICATE)->present)
            cs_buf_printf(&b, ",\"cert_version\":%u,\"cert_time\":%lld",
                          col_object_stamp(o, COL_STAMP_USER_CERTIFICATE)->version,
                          (long long)col_object_stamp(o, COL_STAMP_USER_CERTIFICATE)->originating_time);
        if (col_object_stamp(o, COL_STAMP_LIFECYCLE)->present)
            cs_buf_printf(&b, ",\"lifecycle_version\":%u", col_object_stamp(o, COL_STAMP_LIFECYCLE)->version);
        cs_buf_printf(&b, ",\"event_bytes\":%zu", enc_len);
    } else if (ch->kind == COL_CHANGE_PRESENT) {
        field(&b, "id", col_object_id(ch->object));
    } else if (ch->kind == COL_CHANGE_COOKIE) {
        cs_buf_add_str(&b, ",\"cookie\":\"");
        hex(&b, ch->cookie, ch->cookie_len);
        cs_buf_add_str(&b, "\"");
    } else if (ch->kind == COL_CHANGE_REFRESH_DONE) {
        cs_buf_printf(&b, ",\"sweep\":%s", ch->sweep ? "true" : "false");
    }
    cs_buf_add_str(&b, "}");
    printf("%s\n", cs_buf_str(&b));
    fflush(stdout);
cleanup:
    free(enc);
    col_event_free(ev);
    cs_buf_free(&b);
    return err;
}

static unsigned char *unhex(const char *s, size_t *len)
{
    size_t n = strlen(s) / 2;
    unsigned char *out = malloc(n + 1);
    for (size_t i = 0; out != NULL && i < n; i++) {
        unsigned v = 0;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (unsigned char)v;
    }
    *len = n;
    return out;
}

static void print_cookie(const void *p, size_t n)
{
    cs_buf b;
    cs_buf_init(&b, 4u << 20);
    hex(&b, p, n);
    printf("{\"type\":\"position\",\"cookie\":\"%s\"}\n", cs_buf_str(&b));
    cs_buf_free(&b);
}

int main(int argc, char **argv)
{
    col_config *cfg = NULL;
    probe p = {0};
    cs_err *err = NULL;
    col_ldap_mode mode = COL_LDAP_MODE_AUTO;
    char *filter = NULL;
    unsigned char *cookie = NULL;
    size_t cookie_len = 0;
    int rc = 1;

    if (argc < 3) {
        fprintf(
            stderr,
            "usage: col_probe CONFIG info|position|snapshot|syncrepl [COOKIE [SECONDS]]|dirsync [COOKIE]|usn "
            "[POSITION]|scope\n");
        return 2;
    }
    cs_log_set_output(stderr); /* stdout carries only the probe's lines */
    err = col_config_load(argv[1], &cfg);
    if (err == NULL)
        err = col_ldap_connect(cfg, &p.c);
    if (err == NULL)
        err = col_ldap_pick_mode(p.c, cfg->ldap_mode, &mode);
    if (err != NULL)
        goto cleanup;
    err = col_scope_filter(col_config_filter(cfg, col_ldap_kind(p.c) == COL_DIR_AD), cfg->ldap_group_dn,
                           cfg->ldap_group_nested, &filter);
    if (err != NULL)
        goto cleanup;
    p.src = (col_source_info){.source_id = cfg->source_id,
                              .site = cfg->source_site,
                              .server = col_ldap_server(p.c),
                              .directory = col_ldap_kind(p.c),
                              .mode = mode};
    if (argc > 3 && argv[3][0] != '\0') {
        cookie = unhex(argv[3], &cookie_len);
        if (cookie == NULL) {
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "cookie '%s' is not hex", argv[3]);
            goto cleanup;
        }
    }

    if (strcmp(argv[2], "info") == 0) {
        printf(
            "{\"type\":\"info\",\"directory\":\"%s\",\"mode\":\"%s\",\"naming_context\":\"%s\",\"usn\":%lld,"
            "\"server\":\"%s\"}\n",
            col_ldap_kind_name(col_ldap_kind(p.c)), col_ldap_mode_name(mode),
            col_ldap_default_naming_context(p.c) ? col_ldap_default_naming_context(p.c) : "",
            (long long)col_ldap_highest_usn(p.c), col_ldap_server(p.c));
    } else if (strcmp(argv[2], "position") == 0) {
        if (mode == COL_LDAP_MODE_SYNCREPL) {
            void *ck = NULL;
            size_t n = 0;
            err = col_syncrepl_position(p.c, cfg->ldap_base_dns[0], &ck, &n);
            if (err == NULL)
                print_cookie(ck, n);
            free(ck);
        } else if (mode == COL_LDAP_MODE_DIRSYNC) {
            col_dirsync *d = NULL;
            err = col_dirsync_new(p.c, col_ldap_default_naming_context(p.c), filter, 0, NULL, 0, &d);
            if (err == NULL)
                err = col_dirsync_skip_to_end(d);
            if (err == NULL) {
                size_t n = 0;
                const void *ck = col_dirsync_cookie(d, &n);
                print_cookie(ck, n);
            }
            col_dirsync_free(d);
        } else {
            printf("{\"type\":\"position\",\"usn\":%lld}\n", (long long)col_ldap_highest_usn(p.c));
        }
    } else if (strcmp(argv[2], "snapshot") == 0) {
        size_t n = 0, skipped = 0;
        err = col_snapshot_run(p.c, cfg->ldap_base_dns, cfg->ldap_base_dn_count, filter, on_change, &p, &n,
                               &skipped);
        if (err == NULL)
            printf("{\"type\":\"snapshot_done\",\"objects\":%zu,\"skipped\":%zu}\n", n, skipped);
    } else if (strcmp(argv[2], "syncrepl") == 0) {
        col_syncrepl *s = NULL;
        long long max_s = argc > 4 ? atoll(argv[4]) : 30;
        int64_t end = now_ms() + max_s * 1000;
        bool ended = false;
        err = col_syncrepl_start_scoped(p.c, cfg->ldap_base_dns, cfg->ldap_base_dn_count, filter, cookie,
                                        cookie_len, &s);
        while (err == NULL && !ended && now_ms() < end) {
            size_t n = 0;
            err = col_syncrepl_step(s, 200, 100, on_change, &p, &n, &ended);
        }
        col_syncrepl_free(s);
    } else if (strcmp(argv[2], "dirsync") == 0) {
        col_dirsync *d = NULL;
        size_t n = 0;
        int flags = argc > 4 ? atoi(argv[4]) : 0;
        err =
            col_dirsync_new(p.c, col_ldap_default_naming_context(p.c), filter, flags, cookie, cookie_len, &d);
        if (err == NULL)
            err = col_dirsync_poll(d, cfg->ldap_base_dns, cfg->ldap_base_dn_count, on_change, &p, &n);
        if (err == NULL)
            printf("{\"type\":\"poll_done\",\"changes\":%zu}\n", n);
        col_dirsync_free(d);
    } else if (strcmp(argv[2], "usn") == 0) {
        col_usn *u = NULL;
        col_usn_position from;
        size_t n = 0;
        bool resync = false;
        p.src.mode = COL_LDAP_MODE_USN;
        if (cookie != NULL)
            err = col_usn_position_decode(cookie, cookie_len, &from);
        if (err == NULL)
            err = col_usn_new(p.c, filter, cfg->ldap_base_dns, cfg->ldap_base_dn_count,
                              cookie != NULL ? &from : NULL, &u);
        if (err == NULL && cookie == NULL) {
            unsigned char enc[COL_USN_POSITION_MAX_ENCODED];
            err = col_usn_skip_to_end(u);
            if (err == NULL)
                print_cookie(enc, col_usn_position_encode(col_usn_get_position(u), enc));
        } else if (err == NULL) {
            err = col_usn_poll(u, on_change, &p, &n, &resync);
            if (err != NULL && resync) {
                cs_buf b;
                cs_buf_init(&b, 1u << 16);
                cs_buf_add_json_string(&b, cs_err_message(err));
                printf("{\"type\":\"resync\",\"message\":%s}\n", cs_buf_str(&b));
                cs_buf_free(&b);
                cs_err_free(err);
                err = NULL;
            } else if (err == NULL) {
                printf("{\"type\":\"poll_done\",\"changes\":%zu}\n", n);
            }
        }
        col_usn_free(u);
    } else if (strcmp(argv[2], "scope") == 0) {
        char *tracking = NULL;
        err = col_scope_check(p.c, cfg);
        if (err == NULL)
            err = col_scope_tracking_filter(filter, &tracking);
        if (err == NULL) {
            cs_buf b;
            cs_buf_init(&b, 1u << 16);
            cs_buf_add_str(&b, "{\"type\":\"scope\",\"filter\":");
            cs_buf_add_json_string(&b, filter);
            cs_buf_add_str(&b, ",\"tracking_filter\":");
            cs_buf_add_json_string(&b, tracking);
            cs_buf_add_str(&b, "}");
            printf("%s\n", cs_buf_str(&b));
            cs_buf_free(&b);
        }
        free(tracking);
    } else {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "unknown command '%s'", argv[2]);
    }
cleanup:
    if (err != NULL) {
        cs_buf b;
        cs_buf_init(&b, 1u << 16);
        cs_buf_add_json_string(&b, cs_err_message(err));
        printf("{\"type\":\"error\",\"retriable\":%s,\"message\":%s}\n",
               cs_err_is_retriable(err) ? "true" : "false", cs_buf_str(&b));
        cs_buf_free(&b);
        cs_err_free(err);
    } else {
        rc = 0;
    }
    free(cookie);
    free(filter);
    col_ldap_free(p.c);
    col_config_free(cfg);
    return rc;
}
