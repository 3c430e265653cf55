#include "cs_version.h"

#include <string.h>

static int sign(long long d)
{
    return (d > 0) - (d < 0);
}

static int stamp_present(const Certsync__V1__AttributeStamp *s)
{
    return s && (s->has_version || s->has_originating_time || s->has_originating_invocation_id || s->csn);
}

int cs_version_stamp_compare(const Certsync__V1__AttributeStamp *a, const Certsync__V1__AttributeStamp *b)
{
    int pa = stamp_present(a), pb = stamp_present(b);
    if (!pa || !pb)
        return pa - pb;
    if (a->csn || b->csn) {
        if (!a->csn || !b->csn)
            return a->csn ? 1 : -1;
        return sign(strcmp(a->csn, b->csn));
    }
    if (a->version != b->version)
        return a->version > b->version ? 1 : -1;
    if (a->originating_time != b->originating_time)
        return a->originating_time > b->originating_time ? 1 : -1;
    /* AD breaks ties by the originating DSA's invocationId, compared as bytes. */
    size_t la = a->originating_invocation_id.len, lb = b->originating_invocation_id.len;
    size_t n = la < lb ? la : lb;
    int c = n ? memcmp(a->originating_invocation_id.data, b->originating_invocation_id.data, n) : 0;
    if (c)
        return sign(c);
    return sign((long long)la - (long long)lb);
}

cs_version_order cs_version_compare(const Certsync__V1__Version *a, const Certsync__V1__Version *b)
{
    const Certsync__V1__AttributeStamp *sa[3] = {
        a ? a->user_certificate : NULL, a ? a->user_smime_certificate : NULL, a ? a->lifecycle : NULL};
    const Certsync__V1__AttributeStamp *sb[3] = {
        b ? b->user_certificate : NULL, b ? b->user_smime_certificate : NULL, b ? b->lifecycle : NULL};
    int newer = 0, older = 0;
    for (int i = 0; i < 3; i++) {
        int c = cs_version_stamp_compare(sa[i], sb[i]);
        newer |= c > 0;
        older |= c < 0;
    }
    if (newer && older)
        return CS_VERSION_DIVERGED;
    return newer ? CS_VERSION_NEWER : older ? CS_VERSION_OLDER : CS_VERSION_EQUAL;
}

void cs_version_next_lifecycle(const Certsync__V1__Version *last,
                               const Certsync__V1__AttributeStamp *proposed,
                               Certsync__V1__AttributeStamp *out)
{
    *out = *proposed;
    if (proposed->csn)
        return;
    const Certsync__V1__AttributeStamp *prev = last ? last->lifecycle : NULL;
    out->has_version = 1;
    out->version = prev && prev->has_version ? prev->version : 0;
    out->has_originating_time = 1;
    if (prev && prev->has_originating_time && prev->originating_time >= out->originating_time)
        out->originating_time = prev->originating_time + 1;
}

const char *cs_version_order_name(cs_version_order order)
{
    switch (order) {
    case CS_VERSION_OLDER:
        return "older";
    case CS_VERSION_EQUAL:
        return "equal";
    case CS_VERSION_NEWER:
        return "newer";
    case CS_VERSION_DIVERGED:
        return "diverged";
    }
    return "unknown";
}
