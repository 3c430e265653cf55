/*
 * libFuzzer target for the configuration loader (cs_config: libyaml, the typed row tables, the finalize
 * steps) with both services' tables. The first input byte chooses the table (even: collector, odd:
 * publisher), the rest is the YAML file; it is written to a private temporary file because the loaders take
 * a path. A load either succeeds or fails with a message that names the file.
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into fuzz_config_replay
 * (fuzz_corpus_main.c), a unit test replaying tests/fuzz/corpus/config.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "col_config.h"
#include "pub_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[256];
static char g_path[300];

static void remove_tmp(void)
{
    unlink(g_path);
    rmdir(g_dir);
}

/* The temporary file, created once per process in $TMPDIR (or /dev/shm, /tmp) and removed at exit. */
static const char *tmp_path(void)
{
    if (g_path[0] != '\0')
        return g_path;
    /* Memory-backed /dev/shm when there is one: a disk-backed file makes every run wait for the disk. */
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0')
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_config.XXXXXX", tmp);
    if (mkdtemp(g_dir) == NULL) {
        perror("fuzz_config: mkdtemp");
        abort();
    }
    snprintf(g_path, sizeof g_path, "%s/certsync.yaml", g_dir);
    atexit(remove_tmp);
    return g_path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *path = tmp_path();
    FILE *f = fopen(path, "wb");
    if (f == NULL || (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1) || fclose(f) != 0) {
        perror("fuzz_config: writing the temporary file");
        abort();
    }
    cs_err *err;
    if ((data[0] & 1) == 0) {
        col_config *c = NULL;
        err = col_config_load(path, &c);
        if ((err == NULL) == (c == NULL))
            __builtin_trap();
        col_config_free(c);
    } else {
        pub_config *p = NULL;
        err = pub_config_load(path, &p);
        if ((err == NULL) == (p == NULL))
            __builtin_trap();
        pub_config_free(p);
    }
    if (err != NULL && strstr(cs_err_message(err), "certsync.yaml") == NULL)
        __builtin_trap(); /* every error names the file */
    cs_err_free(err);
    return 0;
}
