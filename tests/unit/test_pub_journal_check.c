/*
 * The chaos tests' journal checker (tests/support/pub_journal_check.h) fed crafted journals: a clean history
 * passes, and each planted regression is reported as what it is:
 *   (a) an older state written after a newer one,
 *   (b) a repeated write that differs from the write before it,
 *   (c) a repeated write with no restart (crash) between it and the write before it,
 *   (d) a final state that is not the newest version produced,
 * plus an unreadable entry. This proves the chaos tests' proofs can fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pub_journal_check.h"

#define U0 "user0@contoso.test"
#define U1 "user1@contoso.test"
#define T0 1764000000.0 /* 2025-11-24: any epoch second works */

/* Version hashes: user 0 has versions 1..3 (certificates), user 1 has 1 (certificate) and 2 (a removal). */
static const char vh0[4][65] = {"", "aaaa0001", "aaaa0002", "aaaa0003"};
static const char vh1[3][65] = {"", "bbbb0001", ""};

typedef struct journal {
    json_t *entries;
    long long seq;
} journal;

static void journal_init(journal *j)
{
    j->entries = json_array();
    j->seq = 100;
}

/* Appends a change entry at T0 + `at` seconds: `smtp`'s `attribute` now holds `hash` ("" none, "2" two
 * certificates), unchanged when the write was identical. */
static void add_attr(journal *j, double at, const char *smtp, const char *attribute, const char *hash,
                     int unchanged)
{
    char stamp[64], frac[16];
    double t = T0 + at;
    time_t secs = (time_t)t;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(frac, sizeof frac, ".%06ldZ", (long)((t - (double)secs) * 1e6));
    strncat(stamp, frac, sizeof stamp - strlen(stamp) - 1);
    json_t *after = json_array();
    if (strcmp(hash, "2") == 0) {
        json_array_append_new(after, json_string("cccc0001"));
        json_array_append_new(after, json_string("cccc0002"));
    } else if (hash[0]) {
        json_array_append_new(after, json_string(hash));
    }
    json_t *e = json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:b}", "seq", (json_int_t)++j->seq, "time", stamp,
                          "kind", "change", "primary_smtp", smtp, "attribute", attribute, "after", after,
                          "unchanged", unchanged);
    assert_non_null(e);
    json_array_append_new(j->entries, e);
}

static void add(journal *j, double at, const char *smtp, const char *hash, int unchanged)
{
    add_attr(j, at, smtp, "UserCertificate", hash, unchanged);
}

/* The users as a clean run leaves them: user 0 holds version 3, user 1 nothing (version 2 is a removal). */
static void users_final(pjc_user u[2])
{
    memset(u, 0, 2 * sizeof(*u));
    u[0].smtp = U0;
    u[0].newest = 3;
    u[0].vhash = vh0;
    u[0].final_count = 1;
    u[0].final_hash = vh0[3];
    u[1].smtp = U1;
    u[1].newest = 2;
    u[1].vhash = vh1;
    u[1].final_count = 0;
    u[1].final_hash = "";
}

/* A history that passes: a seeded-identical entry before any write, a version skipped (coalesced), a
 * repeat after a restart, a removal, other attributes and other recipients in between. */
static void clean_history(journal *j)
{
    add(j, 1, U0, "", 1); /* identical to the seeded (empty) state: not a repeat of ours */
    add(j, 2, U0, vh0[1], 0);
    add(j, 3, U1, vh1[1], 0);
    add_attr(j, 3.5, U0, "UserSMIMECertificate", "ffff", 0); /* another attribute: not checked here */
    add(j, 4, "someone@else.test", "9999", 0);               /* another recipient */
    add(j, 5, U0, vh0[2], 0);
    /* restart at T0 + 6 */
    add(j, 7, U0, vh0[2], 1); /* identical repeat after the restart */
    add(j, 8, U1, "", 0);     /* version 2 of user 1: the removal */
    add(j, 9, U0, vh0[3], 0);
}

static const double restarts[] = {T0 - 10, T0 + 6};

static pjc_result run(journal *j, const pjc_user *u)
{
    pjc_result r;
    pjc_check(j->entries, u, 2, restarts, sizeof restarts / sizeof restarts[0], &r);
    json_decref(j->entries);
    return r;
}

static void expect(const pjc_result *r, pjc_violation want)
{
    if (r->first != want)
        fail_msg("want %s, got %s (%d violation(s)): %s", pjc_violation_name(want),
                 pjc_violation_name(r->first), r->violations, r->message);
    if (want != PJC_OK && r->message[0] == '\0')
        fail_msg("a violation without a message");
}

static void clean_journal_passes(void **state)
{
    (void)state;
    journal j;
    pjc_user u[2];
    journal_init(&j);
    clean_history(&j);
    users_final(u);
    pjc_result r = run(&j, u);
    expect(&r, PJC_OK);
    assert_int_equal(r.violations, 0);
    assert_int_equal(r.writes, 5); /* u0: v1, v2, v3; u1: v1, removal */
    assert_int_equal(r.repeats, 1);
}

/* (a) version 1 written again (as a change) after version 2. */
static void older_after_newer_is_reported(void **state)
{
    (void)state;
    journal j;
    pjc_user u[2];
    journal_init(&j);
    clean_history(&j);
    add(&j, 10, U0, vh0[1], 0);
    users_final(u);
    pjc_result r = run(&j, u);
    expect(&r, PJC_OLDER_AFTER_NEWER);
    assert_non_null(strstr(r.message, "user 0"));
    /* The same with the stale write landing between two versions, before the restart. */
    journal_init(&j);
    add(&j, 2, U0, vh0[2], 0);
    add(&j, 3, U0, vh0[1], 0);
    add(&j, 9, U0, vh0[3], 0);
    users_final(u);
    r = run(&j, u);
    expect(&r, PJC_OLDER_AFTER_NEWER);
    /* A certificate the test never produced counts as no newer version either. */
    journal_init(&j);
    add(&j, 2, U0, vh0[3], 0);
    add(&j, 3, U0, "deadbeef", 0);
    users_final(u);
    r = run(&j, u);
    expect(&r, PJC_OLDER_AFTER_NEWER);
}

/* (b) a repeat (journaled unchanged) that is not the write before it. */
static void repeat_that_differs_is_reported(void **state)
{
    (void)state;
    journal j;
    pjc_user u[2];
    journal_init(&j);
    add(&j, 2, U0, vh0[1], 0);
    add(&j, 5, U0, vh0[2], 0);
    add(&j, 7, U0, vh0[1], 1); /* after the restart at +6, but not what was written before */
    add(&j, 9, U0, vh0[3], 0);
    users_final(u);
    pjc_result r = run(&j, u);
    expect(&r, PJC_REPEAT_DIFFERS);
}

/* (c) an identical repeat with no restart since the write before it. */
static void repeat_without_restart_is_reported(void **state)
{
    (void)state;
    journal j;
    pjc_user u[2];
    journal_init(&j);
    add(&j, 2, U0, vh0[1], 0);
    add(&j, 5, U0, vh0[1], 1); /* no restart between +2 and +5 */
    add(&j, 9, U0, vh0[3], 0);
    users_final(u);
    pjc_result r = run(&j, u);
    expect(&r, PJC_REPEAT_WITHOUT_RESTART);
    /* A restart exactly at the earlier write is not between the two. */
    journal_init(&j);
    add(&j, 6, U0, vh0[2], 0);
    add(&j, 8, U0, vh0[2], 1);
    add(&j, 9, U0, vh0[3], 0);
    users_final(u);
    r = run(&j, u);
    expect(&r, PJC_REPEAT_WITHOUT_RESTART);
}

/* (d) the final state is not the newest version: an older certificate, two, one where none is due. */
static void wrong_final_state_is_reported(void **state)
{
    (void)state;
    journal j;
    pjc_user u[2];
    journal_init(&j);
    clean_history(&j);
    users_final(u);
    u[0].final_hash = vh0[2];
    pjc_result r = run(&j, u);
    expect(&r, PJC_FINAL_STATE);
    journal_init(&j);
    clean_history(&j);
    users_final(u);
    u[0].final_count = 2;
    r = run(&j, u);
    expect(&r, PJC_FINAL_STATE);
    journal_init(&j);
    clean_history(&j);
    users_final(u);
    u[1].final_count = 1; /* the removal did not land */
    u[1].final_hash = vh1[1];
    r = run(&j, u);
    expect(&r, PJC_FINAL_STATE);
    assert_non_null(strstr(r.message, U1));
    /* Never written at all: the journal is clean but the recipient is still empty. */
    journal_init(&j);
    users_final(u);
    u[0].final_count = 0;
    r = run(&j, u);
    expect(&r, PJC_FINAL_STATE);
}

static void unreadable_entry_is_reported(void **state)
{
    (void)state;
    journal j;
    pjc_user u[2];
    journal_init(&j);
    clean_history(&j);
    add(&j, 10, U0, "2", 0); /* two certificates where the test writes one */
    users_final(u);
    pjc_result r = run(&j, u);
    expect(&r, PJC_BAD_ENTRY);
    assert_true(pjc_iso_epoch("not a time") < 0);
    assert_true(pjc_iso_epoch(NULL) < 0);
    assert_true(pjc_iso_epoch("1970-01-01T00:00:01.500000Z") == 1.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clean_journal_passes),
        cmocka_unit_test(older_after_newer_is_reported),
        cmocka_unit_test(repeat_that_differs_is_reported),
        cmocka_unit_test(repeat_without_restart_is_reported),
        cmocka_unit_test(wrong_final_state_is_reported),
        cmocka_unit_test(unreadable_entry_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
