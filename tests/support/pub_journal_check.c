/*
 * pub_journal_check: the chaos tests' journal proofs (contract in pub_journal_check.h).
 */
#include "pub_journal_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *pjc_violation_name(pjc_violation v)
{
    switch (v) {
    case PJC_OK:
        return "none";
    case PJC_OLDER_AFTER_NEWER:
        return "older state after a newer one";
    case PJC_REPEAT_DIFFERS:
        return "repeated write differs from the write before it";
    case PJC_REPEAT_WITHOUT_RESTART:
        return "repeated write without a restart";
    case PJC_FINAL_STATE:
        return "final state is not the newest version";
    case PJC_BAD_ENTRY:
        return "unreadable journal entry";
    }
    return "?";
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm): timegm is not POSIX. */
static long days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

double pjc_iso_epoch(const char *t)
{
    int y = 0, mo = 0, d = 0, h = 0, mi = 0;
    double s = 0;
    if (!t || sscanf(t, "%d-%d-%dT%d:%d:%lfZ", &y, &mo, &d, &h, &mi, &s) != 6 || mo < 1 || mo > 12)
        return -1;
    return (double)days_from_civil(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + s;
}

/* Records one violation; the first one's message is kept. */
__attribute__((format(printf, 3, 4))) static void violate(pjc_result *r, pjc_violation v, const char *fmt,
                                                          ...)
{
    r->violations++;
    if (r->first != PJC_OK)
        return;
    r->first = v;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

/* A restart strictly between t0 and t1 (epoch seconds). */
static int restart_between(const double *restarts, size_t n, double t0, double t1)
{
    for (size_t i = 0; i < n; i++)
        if (restarts[i] > t0 && restarts[i] < t1)
            return 1;
    return 0;
}

/* The history of one user's UserCertificate writes. */
static void check_user(const json_t *entries, size_t u, const pjc_user *pu, const double *restarts,
                       size_t n_restarts, pjc_result *r)
{
    uint32_t last_v = 0; /* version of the state the recipient holds; 0: the seeded (empty) one */
    char last_hash[65] = "";
    double last_time = -1;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *smtp = json_string_value(json_object_get(e, "primary_smtp"));
        const char *a = json_string_value(json_object_get(e, "attribute"));
        if (!smtp || !a || strcasecmp(smtp, pu->smtp) != 0 || strcmp(a, "UserCertificate") != 0)
            continue;
        long long seq = json_integer_value(json_object_get(e, "seq"));
        json_t *after = json_object_get(e, "after");
        double t = pjc_iso_epoch(json_string_value(json_object_get(e, "time")));
        if (json_array_size(after) > 1 || t < 0) {
            violate(r, PJC_BAD_ENTRY,
                    "user %zu (%s): entry seq %lld: %zu certificates written (want at most 1) "
                    "or a bad time",
                    u, pu->smtp, seq, json_array_size(after));
            continue;
        }
        const char *h = json_array_size(after) ? json_string_value(json_array_get(after, 0)) : "";
        if (!h)
            h = "";
        if (json_is_true(json_object_get(e, "unchanged"))) {
            if (last_time < 0) /* identical to the seeded state, not a repeat of our write */
                continue;
            if (strcmp(h, last_hash) != 0)
                violate(
                    r, PJC_REPEAT_DIFFERS,
                    "user %zu (%s): repeated write (seq %lld) %.12s differs from the write before it %.12s",
                    u, pu->smtp, seq, h, last_hash);
            else if (!restart_between(restarts, n_restarts, last_time, t))
                violate(
                    r, PJC_REPEAT_WITHOUT_RESTART,
                    "user %zu (%s): repeated write (seq %lld) at %.3f with no publisher restart since the "
                    "write before it at %.3f",
                    u, pu->smtp, seq, t, last_time);
            else
                r->repeats++;
        } else {
            uint32_t v = last_v + 1;
            while (v <= pu->newest && strcmp(pu->vhash[v], h) != 0)
                v++;
            if (v > pu->newest) {
                violate(r, PJC_OLDER_AFTER_NEWER,
                        "user %zu (%s): write seq %lld (%.12s) is no version newer than %u: an older state "
                        "after a newer one",
                        u, pu->smtp, seq, h, last_v);
            } else {
                last_v = v;
                r->writes++;
            }
        }
        snprintf(last_hash, sizeof last_hash, "%s", h);
        last_time = t;
    }
    /* Final state: the newest version (the recipient as it is, not only the journal). */
    uint32_t nv = pu->newest;
    if (nv == 0 || pu->vhash[nv][0] == '\0') {
        if (pu->final_count != 0)
            violate(r, PJC_FINAL_STATE,
                    "user %zu (%s): final state has %zu certificates, want none (version %u)", u, pu->smtp,
                    pu->final_count, nv);
    } else if (pu->final_count != 1) {
        violate(r, PJC_FINAL_STATE, "user %zu (%s): final state has %zu certificates, want version %u's", u,
                pu->smtp, pu->final_count, nv);
    } else if (!pu->final_hash || strcmp(pu->final_hash, pu->vhash[nv]) != 0) {
        violate(r, PJC_FINAL_STATE,
                "user %zu (%s): final certificate %.12s is not the newest version %u's %.12s", u, pu->smtp,
                pu->final_hash ? pu->final_hash : "(none)", nv, pu->vhash[nv]);
    }
}

void pjc_check(const json_t *entries, const pjc_user *users, size_t n_users, const double *restarts,
               size_t n_restarts, pjc_result *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t u = 0; u < n_users; u++)
        check_user(entries, u, &users[u], restarts, n_restarts, out);
}
