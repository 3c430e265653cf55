/*
 * pub_owner: which directory object owns one Exchange recipient when several sources hold the same person
 * (design.md "Multi-site"). Pure logic, no I/O.
 *
 * Every object whose events resolved to a recipient is a CLAIM on it: its events key "<source_id>/<object_id>",
 * the newest version seen and whether it is eligible (an upsert with at least one certificate value: not
 * removed, not out of scope, not empty). The owner is the best claim by this precedence, first difference wins:
 *   1. eligible before ineligible: a removed, out-of-scope or certificate-less object never keeps a recipient
 *      that another source can fill, so ownership passes to the next source that has the recipient;
 *   2. source rank: the position of the source id in `sources.priority`; sources not listed rank after every
 *      listed one, all equal;
 *   3. newest stamp: the latest originating time of any stamp of the version (AD originating_time, OpenLDAP
 *      entryCSN time), so among equal ranks the most recently changed object wins;
 *   4. events key, bytewise ascending: a total order, so a tie can never depend on arrival order.
 * The owner is a function of the SET of claims only: the same claims in any order, replayed or restored,
 * give the same owner. When no claim is eligible the best ineligible one "owns" an emptied recipient (a clear).
 */
#ifndef PUB_OWNER_H
#define PUB_OWNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certsync/v1/common.pb-c.h"
#include "cs_err.h"

/* Most sources in sources.priority. */
#define PUB_OWNER_MAX_SOURCES 64

typedef struct pub_owner_rules pub_owner_rules;

/* One object's claim on a recipient; pointers are borrowed. */
typedef struct pub_owner_claim {
    const char *object_key;               /* "<source_id>/<object_id>" */
    const Certsync__V1__Version *version; /* newest version seen; NULL = none */
    bool eligible;                        /* upsert with at least one certificate value */
} pub_owner_claim;

/*
 * The precedence for `priority[0..n)` (source ids, best first; n may be 0: every source ranks equal). A
 * duplicate or empty id, or more than PUB_OWNER_MAX_SOURCES, is CS_ERR_CONFIG naming it.
 * Caller frees *out with pub_owner_rules_free().
 */
cs_err *pub_owner_rules_new(const char *const *priority, size_t n, pub_owner_rules **out);

/* Frees; NULL is allowed. */
void pub_owner_rules_free(pub_owner_rules *r);

/* Number of sources listed in sources.priority (0 for NULL rules or an empty list). */
size_t pub_owner_rules_count(const pub_owner_rules *r);

/* The rank of `object_key`'s source (the part before the first '/'): its index in the list, or n. NULL
 * rules rank every source 0. */
size_t pub_owner_rank(const pub_owner_rules *r, const char *object_key);

/* The newest originating time of `v`'s stamps in microseconds since the epoch (0 when none is known). */
int64_t pub_owner_stamp_us(const Certsync__V1__Version *v);

/* < 0 when `a` ranks before (is a better owner than) `b`, > 0 after, 0 only for the same key. */
int pub_owner_compare(const pub_owner_rules *r, const pub_owner_claim *a, const pub_owner_claim *b);

/* Index of the owner among `claims[0..n)`, or SIZE_MAX when n is 0. */
size_t pub_owner_pick(const pub_owner_rules *r, const pub_owner_claim *claims, size_t n);

/* What to do to one recipient after its claims changed. */
typedef enum pub_owner_action {
    PUB_OWNER_KEEP = 0, /* the recipient already holds the owner's state: write nothing */
    PUB_OWNER_WRITE,    /* write the owner's certificates (an eligible owner that changed or changed owner) */
    PUB_OWNER_CLEAR,    /* no claim is eligible any more: empty both attributes */
} pub_owner_action;

typedef struct pub_owner_verdict {
    size_t owner;       /* index into claims, SIZE_MAX when there are none */
    bool owner_changed; /* the owner's key differs from `applied_owner` */
    pub_owner_action action;
} pub_owner_verdict;

/*
 * The decision table for one recipient whose claim set is now `claims[0..n)` (every object that resolves
 * to it, with its newest state; an object re-mapped away is no longer among them). `applied_owner` is the
 * owner recorded in its RecipientState (NULL: never written) and `applied_eligible` whether what was
 * written there was the owner's certificates (false: cleared). `changed_key` is the object whose event is
 * being handled (NULL: none, e.g. a restore):
 *   owner eligible, and the owner changed, or the recipient was cleared, or changed_key is the owner  -> WRITE
 *   no claim eligible (or no claim at all) and the recipient still holds certificates                -> CLEAR
 *   otherwise                                                                                         -> KEEP
 * A non-owner's event therefore never writes (the caller reports it SKIPPED_NOT_OWNER), and a claim that
 * overtakes the owner writes once.
 */
pub_owner_verdict pub_owner_decide(const pub_owner_rules *r, const pub_owner_claim *claims, size_t n,
                                   const char *applied_owner, bool applied_eligible, const char *changed_key);

#endif
