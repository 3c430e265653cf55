/*
 * Helpers shared by the publisher's C tests (tests/publisher, tests/integration, tests/unit): reading the
 * fixtures' env files, HTTP calls to the Office 365 emulator's admin API, process waiting and log dumps,
 * and the per-test Kafka topic set. Test code: failures are cmocka assertions, not cs_err values.
 */
#ifndef PUB_TEST_SUPPORT_H
#define PUB_TEST_SUPPORT_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>

#include "certsync/v1/dead_letter.pb-c.h"

/* Monotonic clock in milliseconds (for bounded waits). */
long long pts_mono_ms(void);

/* Sleeps `ms` milliseconds; only for polling loops that also check a deadline. */
void pts_nap_ms(long ms);

/* The whole file at `path`, NUL-terminated; *len (may be NULL) gets its size. NULL when it cannot be read.
 * Caller frees with free(). */
char *pts_slurp(const char *path, size_t *len);

/* The env file named by environment variable `var` (KEY=value lines), with a '\n' put in front so that
 * pts_env_get finds the first line too. NULL when `var` is unset or the file cannot be read. Caller frees
 * with free(). */
char *pts_env_file_text(const char *var);

/* Copies the value of `name` from `text` (as returned by pts_env_file_text) into out[cap]; "" when absent. */
void pts_env_get(const char *text, const char *name, char *out, size_t cap);

/* The Office 365 emulator's env file (fixture o365emu) as read by pts_emu_env_load; "" for absent keys. */
typedef struct pts_emu_env {
    char url[512], admin[512], ca[512], tenant[128], domain[256], client[128];
    char secret_file[512], cert_file[512], key_file[512], other_cert_file[512], other_key_file[512];
} pts_emu_env;

/* Fills *e from the file named by $O365_EMULATOR_ENV; returns 0, or -1 when that is unset or unreadable.
 * Keys the file lacks are left "": the caller checks the ones it needs. */
int pts_emu_env_load(pts_emu_env *e);

/* Base64 of d[n] into `out`, NUL-terminated; out must hold 4 * ((n + 2) / 3) + 1 bytes. */
void pts_b64(const unsigned char *d, size_t n, char *out);

/* An HTTP call with a JSON body (`json` may be NULL: none), 10 s timeout; returns the status (0: no answer).
 * *out (out may be NULL) gets the body, never NULL; caller frees with free(). */
long pts_http(const char *method, const char *url, const char *json, char **out);

/* pts_http to `admin` (the emulator's admin URL) + `path`. */
long pts_emu_call(const char *admin, const char *method, const char *path, const char *json, char **out);

/* GET `admin` + `path`, asserting status 200 and a JSON body; caller frees with json_decref(). */
json_t *pts_emu_json(const char *admin, const char *path);

/* A loopback TCP port free at the time of the call (asserts on failure). */
int pts_free_port(void);

/* Prints the last 6000 bytes of the file at `path` to stderr under the heading `what` (nothing if
 * unreadable): a failing test shows what the process said. */
void pts_dump_tail(const char *what, const char *path);

/* Waits up to `timeout_ms` for child `pid` to exit: returns 1 with the wait status in *st, or, on timeout,
 * kills it with SIGKILL, reaps it and returns 0. */
int pts_wait_pid(pid_t pid, long long timeout_ms, int *st);

/* Encodes (asserting success) a change event of object "user<user>" from source "src" with objectGUID
 * `guid`, `upn` and `mail` (NULL: the upn), both attribute stamps at `version`: an upsert of `der` (DER
 * userCertificate) and `p7` (userSMIMECertificate), or a removal when der is NULL. *out_len gets the size.
 * Caller frees with free(). */
uint8_t *pts_encode_change_event(int user, const unsigned char guid[16], const char *upn, const char *mail,
                                 uint32_t version, const unsigned char *der, size_t len,
                                 const unsigned char *p7, size_t p7len, size_t *out_len);

/* One test's Kafka topics (unique names), consumer group, optional instance id and a plain producer. */
typedef struct pts_topics {
    char *events, *state, *results, *dlq, *retry, *group, *instance;
    int parts;
    rd_kafka_t *prod;
} pts_topics;

/* Names <prefix>-events/-state/-results/-dlq/-retry/-group (and, when `with_instance`, an instance id
 * <prefix>-...), creates the topics (events/state/retry with `parts` partitions, state compacted, events
 * compacted when `events_compacted`, results and dlq with one) and a producer. Asserts on failure.
 * Release with pts_topics_free. */
void pts_topics_new(pts_topics *t, const char *prefix, int parts, int events_compacted, int with_instance);

/* Flushes (10 s bound) and destroys the producer and frees the names; the topics stay on the broker. */
void pts_topics_free(pts_topics *t);

/* SHA-256 of d[n] as 64 lowercase hex digits and a NUL in out. */
void pts_sha256_hex(const unsigned char *d, size_t n, char out[65]);

/* The emulator's last journal sequence number (GET /journal last_seq): "since" for the checks that follow. */
long long pts_emu_last_seq(const char *admin);

/* Requests in the emulator's journal after `since` whose cmdlet starts with `prefix` ("Set-", "Get-Mailbox"). */
int pts_emu_requests(const char *admin, long long since, const char *prefix);

/* Seeds (or replaces, emptying its certificates) the mailbox `upn` with onPremisesImmutableId = base64(guid),
 * ExternalDirectoryObjectId 00000000-0000-4000-<id_group>-<user, 12 digits> and the given IsDirSynced and
 * IsExchangeCloudManaged (asserts status 200). */
void pts_emu_seed_mailbox(const char *admin, const char *upn, const unsigned char guid[16], int id_group,
                          int user, int dir_synced, int cloud_managed);

/* Produces val[len] with `key` to `topic` partition `part` and flushes (10 s bound); asserts success. */
void pts_produce(rd_kafka_t *prod, const char *topic, int32_t part, const char *key, const void *val,
                 size_t len);

/* A read_committed consumer (group `group`) assigned to partition 0 of `topic` from its beginning, with
 * partition EOF events on: for reading a dead-letter or results topic to its end. Asserts on failure. Caller closes
 * with rd_kafka_consumer_close() and rd_kafka_destroy(). */
rd_kafka_t *pts_partition_reader(const char *topic, const char *group);

/* Reads every record of the single-partition dead-letter topic `dlq` (read_committed, a fresh group named
 * after `group_prefix`, 30 s bound) and returns how many there are; the first `cap` decoded records go to
 * out[] (caller frees each with certsync__v1__dead_letter__free_unpacked()), the rest are freed here. */
int pts_read_dead_letters(const char *dlq, const char *group_prefix, Certsync__V1__DeadLetter **out, int cap);

/* Writes the lines every publisher test config starts with to f: publisher.instance_id `instance`, the topics
 * of t, and the o365 block for the emulator e with `auth_yaml` ("  auth: ..." lines; NULL: the emulator's
 * client secret file) and its CA file. */
void pts_publisher_yaml_head(FILE *f, const pts_topics *t, const char *instance, const pts_emu_env *e,
                             const char *auth_yaml);

/* The log file of the publisher run on `port` in directory `work`: <work>/pub-<port>.log, into out[cap]. */
void pts_pub_log_path(const char *work, int port, char *out, size_t cap);

/* Starts $CERTSYNC_PUBLISHER --config `config` (plus --once when `once`) with CERTSYNC_PUB_FAULT = `fault`
 * (NULL: unset), stdout and stderr appended to pts_pub_log_path(work, port). Returns the child's pid. */
pid_t pts_pub_spawn(const char *work, int port, const char *config, int once, const char *fault);

/* Prints the tail of the publisher log of `port` to stderr (a failing test shows what it said). */
void pts_pub_dump_log(const char *work, int port);

/* Waits up to timeout_ms for publisher `pid` to exit; returns the raw wait status. On timeout kills it, dumps
 * its log and fails the test. */
int pts_pub_wait_exit(const char *work, int port, pid_t pid, long long timeout_ms);

/* Fails the test (after dumping the log) unless wait status `st` is a normal exit with `code`. */
void pts_pub_expect_exit(const char *work, int port, int st, int code);

/* GET http://127.0.0.1:<port><path> (the publisher's admin endpoint); pts_http's status and *out. */
long pts_pub_admin_get(int port, const char *path, char **out);

/* DER of a self-signed S/MIME certificate for `email` (CN and rfc822Name SAN) signed by `key` (its public key
 * too), serial `serial`, valid from `nb` to `na` (unix seconds). Asserts on failure. Caller frees with
 * OPENSSL_free(). */
unsigned char *pts_smime_cert(EVP_PKEY *key, const char *email, long serial, time_t nb, time_t na,
                              size_t *len);

#endif
