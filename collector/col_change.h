/*
 * col_change: what the change readers (col_snapshot, col_syncrepl, col_dirsync) hand to their caller.
 *
 * Readers stream: one callback per object, removal, presence notice or new position, never a list.
 * A callback that returns an error stops the reader, which returns that error (wrapped).
 */
#ifndef COL_CHANGE_H
#define COL_CHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include "col_object.h"
#include "cs_err.h"

typedef enum col_change_kind {
    /* `object` is in scope with its full state. */
    COL_CHANGE_UPSERT = 0,
    /* `object` is gone (deleted or out of scope): it carries at least the id; `reason` says why. */
    COL_CHANGE_REMOVAL,
    /* syncrepl present phase: `object` (id only) still exists unchanged. Objects neither upserted nor
       present between COL_CHANGE_REFRESH_BEGIN and a COL_CHANGE_REFRESH_DONE with `sweep` are gone. */
    COL_CHANGE_PRESENT,
    /* A new position: `cookie`/`cookie_len`. Everything delivered before it is covered by it; checkpoint it
       together with the events built so far. */
    COL_CHANGE_COOKIE,
    /* A full refresh (present phase) starts: the caller may start collecting ids for a sweep. */
    COL_CHANGE_REFRESH_BEGIN,
    /* The refresh phase ended. `sweep`: it was a present phase, so objects not announced since
       REFRESH_BEGIN must become removals (RESYNC_ABSENT). */
    COL_CHANGE_REFRESH_DONE,
} col_change_kind;

typedef enum col_removal_reason {
    COL_REMOVAL_DELETED = 1,      /* deleted in the directory */
    COL_REMOVAL_OUT_OF_SCOPE = 2, /* moved out of the base DNs / no longer matches */
} col_removal_reason;

typedef struct col_change {
    col_change_kind kind;
    const col_object *object;  /* UPSERT, REMOVAL, PRESENT; borrowed for the callback's duration */
    col_removal_reason reason; /* REMOVAL */
    const void *cookie;        /* COOKIE; borrowed */
    size_t cookie_len;
    bool sweep; /* REFRESH_DONE */
} col_change;

typedef cs_err *(*col_change_cb)(void *ctx, const col_change *change);

/* "upsert", "removal", "present", "cookie", "refresh_begin", "refresh_done". */
const char *col_change_kind_name(col_change_kind kind);

#endif
