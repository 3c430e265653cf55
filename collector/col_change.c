/*
 * col_change: names of change kinds (see col_change.h).
 */
#include "col_change.h"

const char *col_change_kind_name(col_change_kind kind)
{
    switch (kind) {
    case COL_CHANGE_UPSERT:
        return "upsert";
    case COL_CHANGE_REMOVAL:
        return "removal";
    case COL_CHANGE_PRESENT:
        return "present";
    case COL_CHANGE_COOKIE:
        return "cookie";
    case COL_CHANGE_REFRESH_BEGIN:
        return "refresh_begin";
    case COL_CHANGE_REFRESH_DONE:
        return "refresh_done";
    }
    return "unknown";
}
