/*
 * pub_readiness_cmd: the S/MIME readiness report from the events topic (see pub_readiness_cmd.h).
 */
#include "pub_readiness_cmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_buf.h"
#include "cs_readiness.h"
#include "pub_cmd.h"
#include "pub_latest.h"
#include "pub_readiness.h"

#define LINE_MAX_BYTES (64 * 1024)

int pub_readiness_command(const pub_config *cfg, int argc, char **argv)
{
    bool csv = false;
    int rc = PUB_CMD_EXIT_FAIL;
    pub_latest *set = NULL;
    cs_policy *own = NULL;
    cs_err *err = NULL;
    cs_readiness_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--csv") == 0)
            csv = true;
        else
            return pub_cmd_usage("readiness", "unknown argument \"%s\"", argv[i]);
    }
    const cs_policy *policy = cfg->policy;
    if (!policy) {
        err = cs_policy_new(NULL, &own);
        policy = own;
    }
    if (!err)
        err = pub_latest_read_events(cfg, 0, &set);
    if (err) {
        rc = pub_cmd_fail("readiness", err);
        goto cleanup;
    }
    int64_t now = (int64_t)time(NULL);
    cs_buf line;
    cs_buf_init(&line, LINE_MAX_BYTES);
    bool ok = csv ? cs_readiness_csv_header(&line) : cs_readiness_table_header(&line);
    if (ok)
        fwrite(cs_buf_str(&line), 1, cs_buf_len(&line), stdout);
    for (size_t i = 0; i < set->n && !err; i++) {
        cs_readiness *r = NULL;
        err = pub_readiness_judge_event(policy, set->v[i].event, set->v[i].key, now,
                                        cfg->readiness_expiring_soon_days, &r);
        if (err)
            break;
        cs_readiness_tally_add(&tally, r);
        cs_buf_reset(&line);
        ok = csv ? cs_readiness_csv_row(r, &line) : cs_readiness_table_row(r, &line);
        if (ok)
            fwrite(cs_buf_str(&line), 1, cs_buf_len(&line), stdout);
        cs_readiness_free(r);
    }
    cs_buf_free(&line);
    if (err) {
        rc = pub_cmd_fail("readiness", err);
        goto cleanup;
    }
    uint64_t not_ok = 0;
    fprintf(stderr, "readiness: %zu users:", set->n);
    for (int r = 0; r < CS_READINESS_REASON_COUNT; r++) {
        fprintf(stderr, " %" PRIu64 " %s", tally.users[r], cs_readiness_reason_name((cs_readiness_reason)r));
        if (r != CS_READINESS_OK)
            not_ok += tally.users[r];
    }
    fprintf(stderr, "\n");
    rc = not_ok ? PUB_CMD_EXIT_PROBLEMS : PUB_CMD_EXIT_OK;
cleanup:
    cs_policy_free(own);
    pub_latest_free(set);
    return rc;
}
