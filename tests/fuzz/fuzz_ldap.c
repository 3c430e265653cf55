/*
 * libFuzzer target for the collector's parsers of bytes from the directory server and of positions read back
 * from Kafka. The first input byte chooses the parser, the rest is the value:
 *   0  syncInfo intermediate message (col_syncrepl_handle_info on a handle without a connection): every
 *      change reported is read, the cookie kept must be the one reported;
 *   1  Sync State Control of an entry (col_syncrepl_parse_state);
 *   2  Sync Done Control of the result (col_syncrepl_parse_done);
 *   3  uSNChanged position from the checkpoint (col_usn_position_decode): must round-trip through encode;
 *   4  DirSync response control (col_control_parse_dirsync, over libldap's parser);
 *   5  paged results response control (col_control_parse_page, as the snapshot and uSNChanged searches).
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into fuzz_ldap_replay
 * (fuzz_corpus_main.c), a unit test replaying tests/fuzz/corpus/ldap.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ldap.h>

#include "col_control.h"
#include "col_object.h"
#include "col_syncrepl.h"
#include "col_usn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The change callback: reads everything a change carries and remembers the last cookie. */
typedef struct seen {
    size_t changes;
    const void *cookie;
    size_t cookie_len;
} seen;

static cs_err *on_change(void *ctx, const col_change *ch)
{
    seen *s = ctx;
    s->changes++;
    if (ch->kind == COL_CHANGE_COOKIE) {
        if (ch->cookie_len > COL_SYNCREPL_MAX_COOKIE || (ch->cookie_len > 0 && ch->cookie == NULL))
            __builtin_trap();
        s->cookie = ch->cookie;
        s->cookie_len = ch->cookie_len;
    }
    if (ch->object != NULL && strlen(col_object_id(ch->object)) == 0)
        __builtin_trap();
    return NULL;
}

static void sync_info(const struct berval *bv)
{
    col_syncrepl *s = NULL;
    seen st = {0};
    size_t n = 0;
    cs_err *err = col_syncrepl_new_unconnected(&s);
    if (err != NULL) {
        cs_err_free(err);
        return;
    }
    err = col_syncrepl_handle_info(s, bv, on_change, &st, &n);
    if (err == NULL && n != st.changes)
        __builtin_trap();
    cs_err_free(err);
    size_t len = 0;
    const void *ck = col_syncrepl_cookie(s, &len);
    if (st.cookie != NULL && (ck != st.cookie || len != st.cookie_len))
        __builtin_trap();
    col_syncrepl_free(s);
}

static void sync_state(const struct berval *bv)
{
    BerElement *ber = NULL;
    struct berval uuid, cookie;
    int state;
    cs_err *err = col_syncrepl_parse_state(bv, &state, &uuid, &cookie, &ber);
    if (err != NULL) {
        if (ber != NULL)
            __builtin_trap();
        cs_err_free(err);
        return;
    }
    /* Read every byte handed out, so ASan sees a pointer outside the copy. */
    volatile unsigned char x = 0;
    for (ber_len_t i = 0; i < uuid.bv_len; i++)
        x ^= (unsigned char)uuid.bv_val[i];
    for (ber_len_t i = 0; cookie.bv_val != NULL && i < cookie.bv_len; i++)
        x ^= (unsigned char)cookie.bv_val[i];
    (void)x;
    ber_free(ber, 1);
}

static void sync_done(const struct berval *bv)
{
    BerElement *ber = NULL;
    struct berval cookie;
    cs_err *err = col_syncrepl_parse_done(bv, &cookie, &ber);
    if (err != NULL) {
        if (ber != NULL)
            __builtin_trap();
        cs_err_free(err);
        return;
    }
    volatile unsigned char x = 0;
    for (ber_len_t i = 0; cookie.bv_val != NULL && i < cookie.bv_len; i++)
        x ^= (unsigned char)cookie.bv_val[i];
    (void)x;
    ber_free(ber, 1);
}

static void usn_position(const uint8_t *v, size_t n)
{
    col_usn_position p, q;
    unsigned char enc[COL_USN_POSITION_MAX_ENCODED];
    cs_err *err = col_usn_position_decode(v, n, &p);
    if (err != NULL) {
        cs_err_free(err);
        return;
    }
    if (memchr(p.server, '\0', sizeof p.server) == NULL)
        __builtin_trap();
    size_t len = col_usn_position_encode(&p, enc);
    if (len > sizeof enc)
        __builtin_trap();
    err = col_usn_position_decode(enc, len, &q);
    if (err != NULL || q.highest_committed_usn != p.highest_committed_usn ||
        strcmp(q.server, p.server) != 0 ||
        memcmp(q.invocation_id, p.invocation_id, sizeof q.invocation_id) != 0)
        __builtin_trap();
}

/* An LDAP handle that never connects: the control parsers only need it for ld_errno. */
static LDAP *handle(void)
{
    static LDAP *ld;
    if (ld == NULL && ldap_initialize(&ld, "ldap://127.0.0.1:9") != LDAP_SUCCESS)
        abort();
    return ld;
}

static void dirsync(struct berval *bv)
{
    LDAPControl ctrl = {.ldctl_oid = (char *)(uintptr_t)LDAP_CONTROL_X_DIRSYNC, .ldctl_value = *bv};
    int more = 0;
    struct berval cookie;
    cs_err *err = col_control_parse_dirsync(handle(), &ctrl, 4096, &more, &cookie);
    if (err != NULL && cookie.bv_val != NULL)
        __builtin_trap();
    if (cookie.bv_len > 4096)
        __builtin_trap();
    cs_err_free(err);
    ber_memfree(cookie.bv_val);
}

static void paged(struct berval *bv)
{
    LDAPControl ctrl = {.ldctl_oid = (char *)(uintptr_t)LDAP_CONTROL_PAGEDRESULTS, .ldctl_value = *bv};
    struct berval cookie;
    cs_err *err = col_control_parse_page(handle(), &ctrl, 4096, &cookie);
    if (err != NULL && cookie.bv_val != NULL)
        __builtin_trap();
    if (cookie.bv_len > 4096)
        __builtin_trap();
    cs_err_free(err);
    ber_memfree(cookie.bv_val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct berval bv = {.bv_len = size - 1, .bv_val = (char *)(uintptr_t)(data + 1)};
    switch (data[0] % 6) {
    case 0:
        sync_info(&bv);
        break;
    case 1:
        sync_state(&bv);
        break;
    case 2:
        sync_done(&bv);
        break;
    case 3:
        usn_position(data + 1, size - 1);
        break;
    case 4:
        dirsync(&bv);
        break;
    default:
        paged(&bv);
        break;
    }
    return 0;
}
