/*
 * col_replmeta: replPropertyMetaData parsing (see col_replmeta.h).
 */
#include "col_replmeta.h"

#include <string.h>

enum {
    HEADER_LEN = 16,
    ENTRY_LEN = 48,
};

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

cs_err *col_replmeta_find(const unsigned char *blob, size_t len, const char *dn, uint32_t attid,
                          col_stamp *out)
{
    uint32_t version, count;

    memset(out, 0, sizeof *out);
    if (dn == NULL)
        dn = "(unknown DN)";
    if (blob == NULL || len < HEADER_LEN)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: replPropertyMetaData is %zu bytes, shorter than its 16-byte header", dn,
                          blob == NULL ? (size_t)0 : len);
    version = le32(blob);
    count = le32(blob + 8);
    if (version != 1)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: replPropertyMetaData has version %u; only version 1 is known", dn, version);
    /* Division, not multiplication: a lying count must not overflow the check. */
    if (count > (len - HEADER_LEN) / ENTRY_LEN)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: replPropertyMetaData claims %u entries but its %zu bytes hold at most %zu", dn,
                          count, len, (len - HEADER_LEN) / ENTRY_LEN);
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = blob + HEADER_LEN + (size_t)i * ENTRY_LEN;
        uint64_t t;
        if (le32(e) != attid)
            continue;
        out->present = true;
        out->version = le32(e + 4);
        t = le64(e + 8);
        /* NTTIME_1sec: seconds since 1601. Values below the unix epoch are kept negative, never wrapped. */
        out->originating_time =
            t > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)t - COL_NTTIME_UNIX_EPOCH_SECONDS;
        memcpy(out->invocation_id, e + 16, 16);
        out->originating_usn = (int64_t)le64(e + 32);
        out->local_usn = (int64_t)le64(e + 40);
        return NULL;
    }
    return NULL;
}

int col_stamp_compare(const col_stamp *a, const col_stamp *b)
{
    int c;

    if (a->present != b->present)
        return a->present ? 1 : -1;
    if (!a->present)
        return 0;
    if (a->version != b->version)
        return a->version < b->version ? -1 : 1;
    if (a->originating_time != b->originating_time)
        return a->originating_time < b->originating_time ? -1 : 1;
    c = memcmp(a->invocation_id, b->invocation_id, 16);
    return c < 0 ? -1 : c > 0 ? 1 : 0;
}
