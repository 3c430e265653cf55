/*
 * col_election: active/passive election in front of Kafka (see col_election.h).
 */
#include "col_election.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cs_log.h"

#define FAC "election"

typedef enum election_mode {
    ELECTION_NONE = 0,
    ELECTION_LOCKFILE,
} election_mode;

struct col_election {
    election_mode mode;
    char *path;
    int fd;
    bool held;
};

cs_err *col_election_new(const char *mode, const char *lock_file, col_election **out)
{
    col_election *e = NULL;
    cs_err *err = NULL;

    *out = NULL;
    if (mode != NULL && strcmp(mode, "kubernetes-lease") == 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.mode: kubernetes-lease is not implemented in this build; use "
                          "election.mode: lockfile with election.lock_file on a volume the replicas share, "
                          "or run one replica with election.mode: none");
    if (mode != NULL && strcmp(mode, "none") != 0 && strcmp(mode, "lockfile") != 0)
        return cs_err_new(CS_ERR_CONFIG, 0,
                          "election.mode: \"%s\" is not one of none, lockfile, kubernetes-lease", mode);
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the election");
    e->fd = -1;
    if (mode == NULL || strcmp(mode, "none") == 0)
        goto done;
    e->mode = ELECTION_LOCKFILE;
    if (lock_file == NULL || lock_file[0] == '\0') {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "election.mode: lockfile needs election.lock_file: a path on a volume every replica "
                         "of this source.id shares");
        goto cleanup;
    }
    if ((e->path = strdup(lock_file)) == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory preparing the election");
        goto cleanup;
    }
    e->fd = open(lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (e->fd < 0) {
        err = cs_err_new(CS_ERR_CONFIG, 0,
                         "election.lock_file %s: cannot open it read-write: %s; point it at a writable "
                         "shared volume",
                         lock_file, strerror(errno));
        goto cleanup;
    }
done:
    *out = e;
    e = NULL;
cleanup:
    col_election_free(e);
    return err;
}

bool col_election_enabled(const col_election *e)
{
    return e != NULL && e->mode != ELECTION_NONE;
}

/* One non-blocking attempt. *busy: another process holds it. */
static cs_err *try_lock(col_election *e, bool *got)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET; /* l_start = l_len = 0: the whole file, however long it grows */
    *got = false;
    if (fcntl(e->fd, F_SETLK, &fl) == 0) {
        *got = true;
        return NULL;
    }
    if (errno == EACCES || errno == EAGAIN || errno == EINTR)
        return NULL;
    return cs_err_new(CS_ERR_IO, CS_ERR_F_RETRIABLE,
                      "election.lock_file %s: locking failed: %s; the file system must support POSIX locks "
                      "(fcntl)",
                      e->path, strerror(errno));
}

/* What the active replica wrote into the lock file, for the standby's log line. */
static void read_holder(const col_election *e, char out[COL_ELECTION_MAX_HOLDER])
{
    ssize_t n = pread(e->fd, out, COL_ELECTION_MAX_HOLDER - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    if (out[0] == '\0')
        snprintf(out, COL_ELECTION_MAX_HOLDER, "unknown");
}

/* Records who holds the lock; best effort (the lock, not the text, is what elects). */
static void write_holder(const col_election *e)
{
    char host[128] = "";
    char line[COL_ELECTION_MAX_HOLDER];
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "unknown-host");
    int n = snprintf(line, sizeof line, "%s pid %ld\n", host, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    if (ftruncate(e->fd, 0) != 0 || pwrite(e->fd, line, (size_t)n, 0) != (ssize_t)n)
        cs_log(CS_LOG_WARN, FAC, "election.lock_file %s: could not record the holder: %s", e->path,
               strerror(errno));
}

cs_err *col_election_acquire(col_election *e, volatile sig_atomic_t *stop, bool *elected)
{
    bool logged = false;
    cs_err *err = NULL;

    *elected = false;
    if (e->mode == ELECTION_NONE || e->held) {
        *elected = true;
        return NULL;
    }
    while (*stop == 0) {
        bool got = false;
        if ((err = try_lock(e, &got)))
            return err;
        if (got) {
            e->held = true;
            write_holder(e);
            cs_log_kv(CS_LOG_INFO, FAC, "elected: this replica is active", "lock_file", e->path, NULL);
            *elected = true;
            return NULL;
        }
        if (!logged) {
            char holder[COL_ELECTION_MAX_HOLDER];
            read_holder(e, holder);
            cs_log_kv(CS_LOG_INFO, FAC, "standby: another replica holds the election lock; waiting",
                      "lock_file", e->path, "active", holder, NULL);
            logged = true;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = COL_ELECTION_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void col_election_free(col_election *e)
{
    if (e == NULL)
        return;
    if (e->fd >= 0) {
        if (e->held && ftruncate(e->fd, 0) != 0)
            cs_log(CS_LOG_DEBUG, FAC, "clearing the holder of %s failed: %s", e->path, strerror(errno));
        close(e->fd); /* drops the record lock */
    }
    free(e->path);
    free(e);
}
