/*
 * pub_owner: the multi-site precedence (contract in pub_owner.h).
 */
#include "pub_owner.h"

#include <stdlib.h>
#include <string.h>

struct pub_owner_rules {
    char *ids[PUB_OWNER_MAX_SOURCES];
    size_t n;
};

void pub_owner_rules_free(pub_owner_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->ids[i]);
    free(r);
}

cs_err *pub_owner_rules_new(const char *const *priority, size_t n, pub_owner_rules **out)
{
    cs_err *err = NULL;
    pub_owner_rules *r = NULL;
    *out = NULL;
    if (n > PUB_OWNER_MAX_SOURCES)
        return cs_err_new(CS_ERR_CONFIG, 0, "sources.priority: %zu sources, at most %d are supported", n,
                          PUB_OWNER_MAX_SOURCES);
    r = calloc(1, sizeof(*r));
    if (!r)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building sources.priority");
    for (size_t i = 0; i < n; i++) {
        const char *id = priority[i];
        if (!id || !id[0] || strchr(id, '/')) {
            err = cs_err_new(CS_ERR_CONFIG, 0,
                             "sources.priority[%zu] '%s' is not a source id: write the collector's "
                             "source.id (no '/')",
                             i, id ? id : "");
            goto cleanup;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r->ids[j], id) == 0) {
                err = cs_err_new(CS_ERR_CONFIG, 0,
                                 "sources.priority lists '%s' twice (items %zu and %zu): keep one", id, j, i);
                goto cleanup;
            }
        }
        size_t len = strlen(id) + 1;
        r->ids[i] = malloc(len);
        if (!r->ids[i]) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building sources.priority");
            goto cleanup;
        }
        memcpy(r->ids[i], id, len);
        r->n = i + 1;
    }
    *out = r;
    r = NULL;
cleanup:
    pub_owner_rules_free(r);
    return err;
}

size_t pub_owner_rules_count(const pub_owner_rules *r)
{
    return r ? r->n : 0;
}

size_t pub_owner_rank(const pub_owner_rules *r, const char *object_key)
{
    if (!r || !object_key)
        return 0;
    const char *slash = strchr(object_key, '/');
    size_t len = slash ? (size_t)(slash - object_key) : strlen(object_key);
    for (size_t i = 0; i < r->n; i++)
        if (strlen(r->ids[i]) == len && memcmp(r->ids[i], object_key, len) == 0)
            return i;
    return r->n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil): timegm() is not
 * POSIX. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads `n` decimal digits at s; -1 when one is not a digit. */
static int64_t digits(const char *s, size_t n)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The time of an OpenLDAP CSN "YYYYmmddHHMMSS[.ffffff]Z#..." in microseconds; 0 when it is not one. */
static int64_t csn_us(const char *csn)
{
    if (strlen(csn) < 15)
        return 0;
    int64_t y = digits(csn, 4), mo = digits(csn + 4, 2), d = digits(csn + 6, 2);
    int64_t h = digits(csn + 8, 2), mi = digits(csn + 10, 2), s = digits(csn + 12, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 ||
        s > 60)
        return 0;
    int64_t us = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + s;
    us *= 1000000;
    if (csn[14] == '.') {
        int64_t frac = 0, scale = 100000;
        for (size_t i = 15; csn[i] >= '0' && csn[i] <= '9' && scale > 0; i++, scale /= 10)
            frac += (csn[i] - '0') * scale;
        us += frac;
    }
    return us;
}

static int64_t stamp_us(const Certsync__V1__AttributeStamp *s)
{
    if (!s)
        return 0;
    if (s->csn && s->csn[0])
        return csn_us(s->csn);
    if (s->has_originating_time && s->originating_time > 0 && s->originating_time < INT64_MAX / 1000000)
        return s->originating_time * 1000000;
    return 0;
}

int64_t pub_owner_stamp_us(const Certsync__V1__Version *v)
{
    if (!v)
        return 0;
    int64_t best = stamp_us(v->user_certificate);
    int64_t t = stamp_us(v->user_smime_certificate);
    if (t > best)
        best = t;
    t = stamp_us(v->lifecycle);
    return t > best ? t : best;
}

int pub_owner_compare(const pub_owner_rules *r, const pub_owner_claim *a, const pub_owner_claim *b)
{
    if (a->eligible != b->eligible)
        return a->eligible ? -1 : 1;
    size_t ra = pub_owner_rank(r, a->object_key), rb = pub_owner_rank(r, b->object_key);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    int64_t ta = pub_owner_stamp_us(a->version), tb = pub_owner_stamp_us(b->version);
    if (ta != tb)
        return ta > tb ? -1 : 1;
    int c = strcmp(a->object_key ? a->object_key : "", b->object_key ? b->object_key : "");
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

size_t pub_owner_pick(const pub_owner_rules *r, const pub_owner_claim *claims, size_t n)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if (best == SIZE_MAX || pub_owner_compare(r, &claims[i], &claims[best]) < 0)
            best = i;
    return best;
}

pub_owner_verdict pub_owner_decide(const pub_owner_rules *r, const pub_owner_claim *claims, size_t n,
                                   const char *applied_owner, bool applied_eligible, const char *changed_key)
{
    pub_owner_verdict v = {
        .owner = pub_owner_pick(r, claims, n), .owner_changed = false, .action = PUB_OWNER_KEEP};
    const char *owner_key = v.owner == SIZE_MAX ? NULL : claims[v.owner].object_key;
    bool eligible = v.owner != SIZE_MAX && claims[v.owner].eligible;
    v.owner_changed = (owner_key == NULL) != (applied_owner == NULL) ||
                      (owner_key && applied_owner && strcmp(owner_key, applied_owner) != 0);
    if (eligible) {
        if (v.owner_changed || !applied_eligible || (changed_key && strcmp(changed_key, owner_key) == 0))
            v.action = PUB_OWNER_WRITE;
    } else if (applied_eligible) {
        /* Nobody may fill it any more: whatever it holds came from a claim that is gone or emptied. */
        v.action = PUB_OWNER_CLEAR;
    }
    return v;
}
