/*
 * Standalone driver for fuzz_col_replmeta.c, run as a unit test (so the sanitizer build exercises the
 * parsers on every CI run without libFuzzer): builds seed inputs (a valid replPropertyMetaData blob with
 * several entries, blobs with lying counts and versions, valid SIDs of 0..15 sub-authorities), replays
 * each, every truncation of it and a flipped byte at every position, plus the files given on the command
 * line (e.g. a libFuzzer corpus).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILE (1u << 20)
#define MAX_SEED 1024

static unsigned long g_runs;

/* Runs one input from an exact-size heap copy, so ASan catches a read one past the end. */
static void run(const unsigned char *d, size_t n)
{
    unsigned char *copy = malloc(n ? n : 1);
    if (copy == NULL)
        exit(2);
    if (n)
        memcpy(copy, d, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    g_runs++;
}

static void mutate(const unsigned char *d, size_t n)
{
    static const unsigned char flips[] = {0xff, 0x80, 0x01};
    unsigned char *m = malloc(n ? n : 1);
    if (m == NULL)
        exit(2);
    run(d, n);
    for (size_t len = 0; len < n; len++)
        run(d, len);
    for (size_t i = 0; i < n; i++) {
        memcpy(m, d, n);
        m[i] ^= flips[i % sizeof flips];
        run(m, n);
    }
    free(m);
}

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* selector byte 0, then a replPropertyMetaData blob of `count` entries claiming `claimed`. */
static size_t blob(unsigned char *b, uint32_t version, uint32_t count, uint32_t claimed)
{
    static const uint32_t ids[] = {0x24, 0x14008C, 0x90001, 0x20030, 0x3};
    size_t n = 1 + 16 + 48 * (size_t)count;
    memset(b, 0, n);
    le32(b + 1, version);
    le32(b + 9, claimed);
    for (uint32_t i = 0; i < count; i++) {
        unsigned char *e = b + 17 + 48 * (size_t)i;
        le32(e, ids[i % 5]);
        le32(e + 4, i + 1);
        le32(e + 8, 0xdeadbeefu);               /* time, low half */
        le32(e + 12, i == 1 ? 0xffffffffu : 3); /* time, high half: one beyond INT64_MAX */
        memset(e + 16, (int)(0x11 * i), 16);
        le32(e + 32, 1000 + i);
        le32(e + 40, 2000 + i);
    }
    return n;
}

int main(int argc, char **argv)
{
    unsigned char seed[MAX_SEED];
    size_t files = 0;

    mutate(seed, blob(seed, 1, 5, 5));
    mutate(seed, blob(seed, 1, 2, 0xffffffffu)); /* a count that would overflow a multiplication */
    mutate(seed, blob(seed, 2, 1, 1));
    mutate(seed, blob(seed, 1, 0, 0));
    for (unsigned count = 0; count <= 15; count++) {
        size_t n = 1 + 8 + 4 * (size_t)count;
        memset(seed, 0xff, n);
        seed[0] = 1; /* SID */
        seed[1] = 1; /* revision */
        seed[2] = (unsigned char)count;
        mutate(seed, n);
    }
    for (int i = 1; i < argc; i++, files++) {
        FILE *f = fopen(argv[i], "rb");
        unsigned char *buf = malloc(MAX_FILE);
        size_t n;
        if (f == NULL || buf == NULL) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 1;
        }
        n = fread(buf, 1, MAX_FILE, f);
        fclose(f);
        mutate(buf, n);
        free(buf);
    }
    printf("replayed seeds and %zu files, %lu inputs, no crash\n", files, g_runs);
    return 0;
}
