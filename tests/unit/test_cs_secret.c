/*
 * cs_secret: a rotated secret file is noticed (Kubernetes' ..data symlink swap, an in-place rewrite,
 * SIGHUP), the new value replaces the old one, the reload is logged with the file and never the value,
 * an unreadable file keeps the old value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cs_log.h"
#include "cs_secret.h"

typedef struct dirs {
    char root[256];
    char path[512]; /* what the config names: root/password -> ..data/password */
    FILE *log;
} dirs;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Lays out a Kubernetes Secret volume: root/..v1/password, root/..data -> ..v1, root/password ->
 * ..data/password. */
static int setup(void **state)
{
    dirs *d = calloc(1, sizeof *d);
    snprintf(d->root, sizeof d->root, "/tmp/cs_secret_test.XXXXXX");
    assert_non_null(mkdtemp(d->root));
    char p[600];
    snprintf(p, sizeof p, "%s/..v1", d->root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/..v1/password", d->root);
    write_file(p, "first-Secret-Value-1\n");
    snprintf(p, sizeof p, "%s/..data", d->root);
    assert_int_equal(symlink("..v1", p), 0);
    snprintf(d->path, sizeof d->path, "%s/password", d->root);
    assert_int_equal(symlink("..data/password", d->path), 0);
    d->log = tmpfile();
    assert_non_null(d->log);
    cs_log_set_output(d->log);
    cs_log_set_level(CS_LOG_DEBUG);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    dirs *d = *state;
    char cmd[600];
    cs_log_set_output(NULL);
    fclose(d->log);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->root);
    assert_int_equal(system(cmd), 0);
    free(d);
    return 0;
}

/* Swaps ..data to a new directory holding `text`, as the kubelet's atomic writer does. */
static void k8s_swap(const dirs *d, const char *version, const char *text)
{
    char dir[600], file[700], tmp[600], data[600];
    snprintf(dir, sizeof dir, "%s/%s", d->root, version);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(file, sizeof file, "%s/password", dir);
    write_file(file, text);
    snprintf(tmp, sizeof tmp, "%s/..data_tmp", d->root);
    snprintf(data, sizeof data, "%s/..data", d->root);
    assert_int_equal(symlink(version, tmp), 0);
    assert_int_equal(rename(tmp, data), 0);
}

static char *log_text(const dirs *d)
{
    fflush(d->log);
    long n = ftell(d->log);
    char *out = calloc(1, (size_t)n + 1);
    rewind(d->log);
    assert_int_equal(fread(out, 1, (size_t)n, d->log), (size_t)n);
    return out;
}

static void symlink_swap_is_reloaded_and_logged_without_value(void **state)
{
    dirs *d = *state;
    cs_secret_watch *w = NULL;
    assert_null(cs_secret_watch_new(&w));
    assert_null(cs_secret_watch_add(w, "ldap.password_file", d->path, 0x1));
    assert_string_equal(cs_secret_watch_value(w, "ldap.password_file"), "first-Secret-Value-1");
    /* Nothing changed: a forced poll reports nothing. */
    assert_int_equal(cs_secret_watch_poll(w, true), 0);
    k8s_swap(d, "..v2", "second-Secret-Value-2\n");
    /* Within the interval and without force or SIGHUP nothing is compared. */
    assert_int_equal(cs_secret_watch_poll(w, false), 0);
    assert_int_equal(cs_secret_watch_poll(w, true), 0x1);
    assert_string_equal(cs_secret_watch_value(w, "ldap.password_file"), "second-Secret-Value-2");
    assert_int_equal(cs_secret_watch_generation(w, "ldap.password_file"), 1);
    char *log = log_text(d);
    assert_non_null(strstr(log, "secret file reloaded"));
    assert_non_null(strstr(log, d->path));
    assert_null(strstr(log, "Secret-Value"));
    free(log);
    cs_secret_watch_free(w);
}

static void sighup_triggers_a_comparison(void **state)
{
    dirs *d = *state;
    cs_secret_watch *w = NULL;
    assert_null(cs_secret_watch_new(&w));
    assert_null(cs_secret_watch_add(w, "o365.client_secret_file", d->path, 0x4));
    cs_secret_install_sighup();
    k8s_swap(d, "..v3", "third-Secret-Value-3");
    assert_int_equal(cs_secret_watch_poll(w, false), 0);
    assert_int_equal(raise(SIGHUP), 0);
    assert_int_equal(cs_secret_watch_poll(w, false), 0x4);
    assert_string_equal(cs_secret_watch_value(w, "o365.client_secret_file"), "third-Secret-Value-3");
    /* The request is consumed: the next poll within the interval is quiet again. */
    k8s_swap(d, "..v4", "fourth-Secret-Value-4");
    assert_int_equal(cs_secret_watch_poll(w, false), 0);
    signal(SIGHUP, SIG_DFL);
    cs_secret_watch_free(w);
}

static void unreadable_file_keeps_the_old_value(void **state)
{
    dirs *d = *state;
    cs_secret_watch *w = NULL;
    char target[600];
    assert_null(cs_secret_watch_new(&w));
    assert_null(cs_secret_watch_add(w, "kafka.sasl.password_file", d->path, 0x2));
    /* Mid-swap: ..data points nowhere. Then an empty file. Neither replaces the value. */
    snprintf(target, sizeof target, "%s/..v1/password", d->root);
    assert_int_equal(unlink(target), 0);
    assert_int_equal(cs_secret_watch_poll(w, true), 0);
    assert_string_equal(cs_secret_watch_value(w, "kafka.sasl.password_file"), "first-Secret-Value-1");
    write_file(target, "\n");
    assert_int_equal(cs_secret_watch_poll(w, true), 0);
    assert_string_equal(cs_secret_watch_value(w, "kafka.sasl.password_file"), "first-Secret-Value-1");
    /* In-place rewrite (no symlinks) with a new value is seen. */
    write_file(target, "fifth-Secret-Value-5\n");
    assert_int_equal(cs_secret_watch_poll(w, true), 0x2);
    assert_string_equal(cs_secret_watch_value(w, "kafka.sasl.password_file"), "fifth-Secret-Value-5");
    char *log = log_text(d);
    assert_non_null(strstr(log, "keeping the previous value"));
    assert_null(strstr(log, "Secret-Value"));
    free(log);
    cs_secret_watch_free(w);
}

static void add_errors_name_key_and_file(void **state)
{
    dirs *d = *state;
    cs_secret_watch *w = NULL;
    assert_null(cs_secret_watch_new(&w));
    cs_err *err = cs_secret_watch_add(w, "ldap.password_file", "/nonexistent/pw", 1);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "ldap.password_file"));
    assert_non_null(strstr(cs_err_message(err), "/nonexistent/pw"));
    cs_err_free(err);
    assert_null(cs_secret_watch_add(w, "ldap.password_file", d->path, 1));
    err = cs_secret_watch_add(w, "ldap.password_file", d->path, 1);
    assert_non_null(err);
    cs_err_free(err);
    assert_null(cs_secret_watch_value(w, "other"));
    cs_secret_watch_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(symlink_swap_is_reloaded_and_logged_without_value, setup, teardown),
        cmocka_unit_test_setup_teardown(sighup_triggers_a_comparison, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable_file_keeps_the_old_value, setup, teardown),
        cmocka_unit_test_setup_teardown(add_errors_name_key_and_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
