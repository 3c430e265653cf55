/*
 * Standalone driver for fuzz_cs_cert.c, run as a unit test (so the sanitizer
 * build exercises the parser on every CI run without libFuzzer): replays every
 * file of the shared certificate corpus (raw, and each PEM block decoded), the
 * files given on the command line, and mutations of each: every truncation and
 * a flipped byte at every position (with a stride for inputs over 4 KiB, to
 * stay within the test's time budget), plus each certificate wrapped in the
 * MS-OXOABK tagged format.
 */
#include <dirent.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CORPUS_DIR CS_SHARED_DIR "/testdata/certs"
#define MAX_FILE (1u << 20)
#define FULL_MUTATION_LIMIT 4096
#define STRIDED_MUTATIONS 256

static unsigned long g_runs;

/* Runs one input from an exact-size heap copy, so ASan catches a read one past the end. */
static void run(const unsigned char *d, size_t n)
{
    unsigned char *copy = calloc(1, n ? n : 1);
    if (!copy) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    if (n)
        memcpy(copy, d, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    g_runs++;
}

static void mutate(const unsigned char *d, size_t n)
{
    size_t step = n <= FULL_MUTATION_LIMIT ? 1 : n / STRIDED_MUTATIONS;
    unsigned char *m = malloc(n ? n : 1);
    if (!m)
        exit(2);
    run(d, n);
    for (size_t len = 0; len < n; len += step)
        run(d, len);
    static const unsigned char flips[] = {0xff, 0x80, 0x01};
    for (size_t i = 0; i < n; i += step) {
        memcpy(m, d, n);
        m[i] ^= flips[i % sizeof flips];
        run(m, n);
    }
    free(m);
    /* The same bytes as an MS-OXOABK KeyExchangeCertificate setting (first byte 0x03). */
    if (n > 0 && n + 4 <= 0xffff) {
        unsigned char *w = malloc(n + 4);
        if (!w)
            exit(2);
        w[0] = 0x03;
        w[1] = 0x00;
        w[2] = (unsigned char)((n + 4) & 0xff);
        w[3] = (unsigned char)((n + 4) >> 8);
        memcpy(w + 4, d, n);
        run(w, n + 4);
        free(w);
    }
}

static void replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        exit(1);
    }
    unsigned char *buf = malloc(MAX_FILE);
    if (!buf)
        exit(2);
    size_t n = fread(buf, 1, MAX_FILE, f);
    fclose(f);
    mutate(buf, n);
    BIO *b = BIO_new_mem_buf(buf, (int)n);
    char *name = NULL, *hdr = NULL;
    unsigned char *data = NULL;
    long len = 0;
    while (b && PEM_read_bio(b, &name, &hdr, &data, &len)) {
        mutate(data, (size_t)len);
        OPENSSL_free(name);
        OPENSSL_free(hdr);
        OPENSSL_free(data);
    }
    ERR_clear_error();
    BIO_free(b);
    free(buf);
}

/* Walks dir (and its sub-folders, two levels) replaying every regular file. */
static size_t replay_dir(const char *dir, int depth)
{
    size_t files = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open the corpus folder\n", dir);
        exit(1);
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            fprintf(stderr, "%s/%s: path too long, skipped\n", dir, de->d_name);
            continue;
        }
        DIR *sub = depth < 2 ? opendir(path) : NULL;
        if (sub) {
            closedir(sub);
            files += replay_dir(path, depth + 1);
        } else {
            replay_file(path);
            files++;
        }
    }
    closedir(d);
    return files;
}

int main(int argc, char **argv)
{
    size_t files = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++, files++)
            replay_file(argv[i]);
    } else {
        files = replay_dir(CORPUS_DIR, 0);
    }
    if (files == 0) {
        fprintf(stderr, "no corpus files found\n");
        return 1;
    }
    printf("replayed %zu files, %lu inputs, no crash\n", files, g_runs);
    return 0;
}
