/*
 * Standalone driver for the corpus-based fuzz targets (fuzz_cert_diff, fuzz_proto, fuzz_config, fuzz_http,
 * fuzz_ldap), run as a unit test in every build so the sanitizer build checks the parsers on each CI run
 * without libFuzzer. Replays every file of the folders (or files) given on the command line, each as is,
 * every truncation and a flipped byte at every position (with a stride over 4 KiB to stay within the test's
 * time budget). A crashing input is saved as replay-crash.bin in the working folder. Crashes found by the real fuzzer are saved in tests/fuzz/corpus/<target>/ and so become
 * regression tests here.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILE (1u << 20)
#define FULL_MUTATION_LIMIT 1024
#define STRIDED_MUTATIONS 256
#define MAX_DEPTH 3

static unsigned long g_runs;
static const unsigned char *g_cur; /* the input being run, for the crash handler */
static size_t g_cur_len;

/* On a crash, saves the input to replay-crash.bin in the working folder, so it can be kept as a seed. */
static void on_crash(int sig)
{
    int fd = open("replay-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, g_cur, g_cur_len);
        (void)w;
        close(fd);
    }
    static const char msg[] = "replay: the crashing input is in replay-crash.bin\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Runs one input from an exact-size heap copy, so ASan catches a read one past the end. */
static void run(const unsigned char *d, size_t n)
{
    unsigned char *copy = malloc(n ? n : 1);
    if (copy == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    if (n)
        memcpy(copy, d, n);
    g_cur = copy;
    g_cur_len = n;
    LLVMFuzzerTestOneInput(copy, n);
    g_cur = NULL;
    free(copy);
    g_runs++;
}

static void mutate(const unsigned char *d, size_t n)
{
    static const unsigned char flips[] = {0xff, 0x80, 0x01, 0x20};
    size_t step = n <= FULL_MUTATION_LIMIT ? 1 : n / STRIDED_MUTATIONS;
    unsigned char *m = malloc(n ? n : 1);
    if (m == NULL)
        exit(2);
    run(d, n);
    for (size_t len = 0; len < n; len += step)
        run(d, len);
    for (size_t i = 0; i < n; i += step) {
        memcpy(m, d, n);
        m[i] ^= flips[i % sizeof flips];
        run(m, n);
    }
    free(m);
}

static void replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open\n", path);
        exit(1);
    }
    unsigned char *buf = malloc(MAX_FILE);
    if (buf == NULL)
        exit(2);
    size_t n = fread(buf, 1, MAX_FILE, f);
    fclose(f);
    mutate(buf, n);
    free(buf);
}

/* Replays `path`: a regular file, or every file of a folder (and its sub-folders, MAX_DEPTH levels). */
static size_t replay(const char *path, int depth)
{
    struct stat st;
    size_t files = 0;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: no such file or folder\n", path);
        exit(1);
    }
    if (!S_ISDIR(st.st_mode)) {
        replay_file(path);
        return 1;
    }
    if (depth >= MAX_DEPTH)
        return 0;
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "%s: cannot open the corpus folder\n", path);
        exit(1);
    }
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        char sub[1024];
        if (de->d_name[0] == '.')
            continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= (int)sizeof sub) {
            fprintf(stderr, "%s/%s: path too long, skipped\n", path, de->d_name);
            continue;
        }
        files += replay(sub, depth + 1);
    }
    closedir(d);
    return files;
}

int main(int argc, char **argv)
{
    size_t files = 0;
    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    signal(SIGILL, on_crash); /* __builtin_trap */
    signal(SIGBUS, on_crash);
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS-DIR-OR-FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        files += replay(argv[i], 0);
    if (files == 0) {
        fprintf(stderr, "no corpus files found in the folders given\n");
        return 1;
    }
    printf("replayed %zu files, %lu inputs, no crash\n", files, g_runs);
    return 0;
}
