/*
 * The journal proofs of the publisher's chaos tests (issue 5), as a pure function over the Office 365
 * emulator's change journal, so that a unit test can feed it crafted journals and show every check can fail
 * (tests/unit/test_pub_journal_check.c), and the chaos tests (tests/publisher/test_pub_chaos.c) run it on
 * the real one. For each user, over the journal's UserCertificate change entries of its address:
 *   - no older state after a newer one: each written certificate maps to a version newer than the last one
 *     written (each produced certificate is unique per (user, version));
 *   - a repeated write (entry "unchanged": true) equals the write before it, and a publisher restart (start
 *     or crash) lies strictly between the two;
 *   - the recipient's final state is the newest version produced (its certificate, or none for a removal).
 * Test code: no cs_err, the verdict is a value the caller asserts on.
 */
#ifndef PUB_JOURNAL_CHECK_H
#define PUB_JOURNAL_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum pjc_violation {
    PJC_OK = 0,
    PJC_OLDER_AFTER_NEWER,      /* a write that is no version newer than the last one written */
    PJC_REPEAT_DIFFERS,         /* an "unchanged" write that differs from the write before it */
    PJC_REPEAT_WITHOUT_RESTART, /* an "unchanged" write with no restart since the write before it */
    PJC_FINAL_STATE,            /* the final state is not the newest version produced */
    PJC_BAD_ENTRY,              /* an entry the checks cannot read (no time, several certificates) */
} pjc_violation;

/* What one user must have become. */
typedef struct pjc_user {
    const char *smtp; /* the primary SMTP address the journal names (compared case-insensitively) */
    uint32_t newest;  /* newest version produced; 0: none (the recipient stays empty) */
    /* vhash[v] for v in 1..newest: SHA-256 hex of version v's certificate, "" for a removal. */
    const char (*vhash)[65];
    size_t final_count;     /* certificates the recipient holds now */
    const char *final_hash; /* SHA-256 hex of the one it holds (used when final_count == 1) */
} pjc_user;

typedef struct pjc_result {
    int writes;          /* writes that changed a recipient */
    int repeats;         /* identical repeats, each after a restart */
    int violations;      /* how many were found */
    pjc_violation first; /* the first one found (PJC_OK: none) */
    char message[512];   /* what the first one was, naming user, entry and hashes */
} pjc_result;

/* "older state after a newer one" ... for messages. */
const char *pjc_violation_name(pjc_violation v);

/*
 * Checks `entries` (a JSON array of the emulator's change entries, in journal order) against `users`
 * (n_users), with the publisher restarts at `restarts` (n_restarts epoch seconds, any order). Fills *out.
 */
void pjc_check(const json_t *entries, const pjc_user *users, size_t n_users, const double *restarts,
               size_t n_restarts, pjc_result *out);

/* Epoch seconds of the journal's "YYYY-MM-DDThh:mm:ss.ffffffZ" (UTC); -1 when `t` is NULL or malformed. */
double pjc_iso_epoch(const char *t);

#endif
