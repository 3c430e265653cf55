/*
 * test_col_election: the lockfile election (col_election.h). Another process holds the lock (fcntl locks
 * do not exclude within one process): this one stays standby until that process dies, even by SIGKILL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "col_election.h"

static volatile sig_atomic_t stop_flag;

static void *stop_later(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 600 * 1000000L};
    nanosleep(&ts, NULL);
    stop_flag = 1;
    return NULL;
}

static char lock_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(lock_path, sizeof lock_path, "/tmp/test_col_election.%ld", (long)getpid());
    unlink(lock_path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(lock_path);
    return 0;
}

static void test_config_errors(void **state)
{
    (void)state;
    col_election *e = NULL;
    cs_err *err = col_election_new("kubernetes-lease", NULL, &e);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_non_null(strstr(cs_err_message(err), "election.kubernetes"));
    assert_null(e);
    cs_err_free(err);

    err = col_election_new("lockfile", NULL, &e);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "election.lock_file"));
    cs_err_free(err);

    err = col_election_new("lockfile", "/nonexistent-dir/x/lock", &e);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "/nonexistent-dir/x/lock"));
    cs_err_free(err);

    err = col_election_new("bogus", NULL, &e);
    assert_non_null(err);
    cs_err_free(err);
}

static void test_none_is_always_elected(void **state)
{
    (void)state;
    col_election *e = NULL;
    bool elected = false;
    stop_flag = 0;
    assert_null(col_election_new("none", NULL, &e));
    assert_false(col_election_enabled(e));
    assert_null(col_election_acquire(e, &stop_flag, &elected));
    assert_true(elected);
    col_election_free(e);
}

static void test_standby_until_holder_dies(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        col_election *e = NULL;
        bool elected = false;
        volatile sig_atomic_t never = 0;
        if (col_election_new("lockfile", lock_path, &e) != NULL ||
            col_election_acquire(e, &never, &elected) != NULL || !elected)
            _exit(1);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause(); /* hold the lock until killed */
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);

    col_election *e = NULL;
    bool elected = true;
    pthread_t t;
    stop_flag = 0;
    assert_null(col_election_new("lockfile", lock_path, &e));
    assert_true(col_election_enabled(e));
    assert_int_equal(pthread_create(&t, NULL, stop_later, NULL), 0);
    assert_null(col_election_acquire(e, &stop_flag, &elected));
    pthread_join(t, NULL);
    assert_false(elected); /* the child holds it: standby until stopped */

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    stop_flag = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_null(col_election_acquire(e, &stop_flag, &elected));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(elected);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    /* The holder is recorded for a standby's log line. */
    FILE *f = fopen(lock_path, "r");
    char line[256] = "";
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(strstr(line, "pid"));
    col_election_free(e);
    close(ready[0]);
    close(ready[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_none_is_always_elected),
        cmocka_unit_test_setup_teardown(test_standby_until_holder_dies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
