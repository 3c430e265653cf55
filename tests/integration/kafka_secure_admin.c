/*
 * kafka_secure_admin: topics and ACLs for one test on the secure broker of `tests/services/kafka.sh start
 * DIR --secure` (fixture kafka_secure), made as its admin super user over SASL_SSL + SCRAM-SHA-512 with
 * librdkafka's Admin API: the same principal and mechanism as tests/services/kafka/KafkaSecureSetup.java,
 * for names only one test uses (the fixture's ACLs cover the design's fixed topic names).
 *
 *   kafka_secure_admin ENV_FILE < SPEC
 *
 * ENV_FILE is DIR/env written by kafka.sh start --secure. SPEC has one request per line:
 *   topic NAME PARTITIONS compact|delete                  create a topic (replication 1)
 *   allow USER topic|group literal|prefixed NAME OP...  an ALLOW ACL for User:USER per operation
 *                                                          (read, write, describe). librdkafka 2.0.2 has no
 *                                                          transactional-id resource type: the fixture's
 *                                                          PREFIXED certsync-collector-/-publisher- ACLs cover those
 * Blank lines and lines starting with '#' are skipped. Every topic is created first, then every ACL (one
 * CreateAcls call), then the tool waits (bounded, 30 s) until each topic has a leader for every partition.
 * Exit 0 when all of it succeeded, 1 otherwise with the reason on stderr, 2 on a usage or SPEC error.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

enum {
    LINE_MAX_LEN = 1024,
    MAX_TOPICS = 32,
    MAX_ACLS = 128,
    MAX_WORDS = 12,
    TIMEOUT_MS = 30000,
};

/* The value of `key` in the env file, copied into out; false when absent. */
static bool env_get(const char *path, const char *key, char *out, size_t out_size)
{
    char line[LINE_MAX_LEN];
    size_t klen = strlen(key);
    bool found = false;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            snprintf(out, out_size, "%s", line + klen + 1);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The first line of a password file, newline trimmed. */
static bool read_password(const char *path, char *out, size_t out_size)
{
    FILE *f = fopen(path, "r");
    bool ok = f != NULL && fgets(out, (int)out_size, f) != NULL;
    if (f != NULL)
        fclose(f);
    if (ok)
        out[strcspn(out, "\r\n")] = '\0';
    return ok && out[0] != '\0';
}

static bool set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka_secure_admin: %s: %s\n", name, errstr);
        return false;
    }
    return true;
}

/* An admin client as the broker's super user; NULL (reason on stderr) when the env file is incomplete. */
static rd_kafka_t *admin_client(const char *env)
{
    char bootstrap[LINE_MAX_LEN], ca[LINE_MAX_LEN], user[128], pwfile[LINE_MAX_LEN], pw[256];
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;

    if (!env_get(env, "KAFKA_BOOTSTRAP", bootstrap, sizeof bootstrap) ||
        !env_get(env, "KAFKA_CA_FILE", ca, sizeof ca) ||
        !env_get(env, "KAFKA_ADMIN_USERNAME", user, sizeof user) ||
        !env_get(env, "KAFKA_ADMIN_PASSWORD_FILE", pwfile, sizeof pwfile)) {
        fprintf(
            stderr,
            "kafka_secure_admin: %s lacks KAFKA_BOOTSTRAP, KAFKA_CA_FILE or KAFKA_ADMIN_*: start the broker "
            "with tests/services/kafka.sh start DIR --secure and pass DIR/env\n",
            env);
        return NULL;
    }
    if (!read_password(pwfile, pw, sizeof pw)) {
        fprintf(stderr, "kafka_secure_admin: cannot read the admin password file %s\n", pwfile);
        return NULL;
    }
    conf = rd_kafka_conf_new();
    if (set(conf, "bootstrap.servers", bootstrap) && set(conf, "security.protocol", "SASL_SSL") &&
        set(conf, "ssl.ca.location", ca) && set(conf, "sasl.mechanisms", "SCRAM-SHA-512") &&
        set(conf, "sasl.username", user) && set(conf, "sasl.password", pw)) {
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (rk == NULL)
            fprintf(stderr, "kafka_secure_admin: rd_kafka_new: %s\n", errstr);
        else
            conf = NULL; /* taken by rd_kafka_new */
    }
    memset(pw, 0, sizeof pw);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Splits `line` in place on blanks into at most MAX_WORDS words; returns the count. */
static int split(char *line, char *w[MAX_WORDS])
{
    int n = 0;
    char *p = line;
    while (*p != '\0' && n < MAX_WORDS) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        w[n++] = p;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
        if (*p != '\0')
            *p++ = '\0';
    }
    return n;
}

/* Appends one binding per operation to out, counting each in *made (also on failure, for the cleanup). */
static bool parse_acl(char *w[], int n, int lineno, rd_kafka_AclBinding_t **out, size_t *made)
{
    rd_kafka_ResourceType_t type;
    rd_kafka_ResourcePatternType_t pattern;
    char principal[160], errstr[256];

    if (n < 6) {
        fprintf(stderr, "SPEC:%d: expected: allow USER topic|group literal|prefixed NAME OP...\n", lineno);
        return false;
    }
    type = strcmp(w[2], "topic") == 0   ? RD_KAFKA_RESOURCE_TOPIC
           : strcmp(w[2], "group") == 0 ? RD_KAFKA_RESOURCE_GROUP
                                        : RD_KAFKA_RESOURCE_UNKNOWN;
    pattern = strcmp(w[3], "literal") == 0    ? RD_KAFKA_RESOURCE_PATTERN_LITERAL
              : strcmp(w[3], "prefixed") == 0 ? RD_KAFKA_RESOURCE_PATTERN_PREFIXED
                                              : RD_KAFKA_RESOURCE_PATTERN_UNKNOWN;
    if (type == RD_KAFKA_RESOURCE_UNKNOWN || pattern == RD_KAFKA_RESOURCE_PATTERN_UNKNOWN) {
        fprintf(stderr, "SPEC:%d: resource '%s' or pattern '%s' unknown (topic|group, literal|prefixed)\n",
                lineno, w[2], w[3]);
        return false;
    }
    snprintf(principal, sizeof principal, "User:%s", w[1]);
    for (int i = 5; i < n; i++) {
        rd_kafka_AclOperation_t op = strcmp(w[i], "read") == 0       ? RD_KAFKA_ACL_OPERATION_READ
                                     : strcmp(w[i], "write") == 0    ? RD_KAFKA_ACL_OPERATION_WRITE
                                     : strcmp(w[i], "describe") == 0 ? RD_KAFKA_ACL_OPERATION_DESCRIBE
                                                                     : RD_KAFKA_ACL_OPERATION_UNKNOWN;
        if (op == RD_KAFKA_ACL_OPERATION_UNKNOWN) {
            fprintf(stderr, "SPEC:%d: operation '%s' unknown (read, write, describe)\n", lineno, w[i]);
            return false;
        }
        out[i - 5] = rd_kafka_AclBinding_new(type, w[4], pattern, principal, "*", op,
                                             RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, errstr, sizeof errstr);
        if (out[i - 5] == NULL) {
            fprintf(stderr, "SPEC:%d: %s\n", lineno, errstr);
            return false;
        }
        (*made)++;
    }
    return true;
}

/* Waits for the result event of an admin request on q; NULL after TIMEOUT_MS. */
static rd_kafka_event_t *await_result(rd_kafka_queue_t *q, const char *what)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
    if (ev == NULL)
        fprintf(stderr, "kafka_secure_admin: no answer to %s within %d ms\n", what, TIMEOUT_MS);
    else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "kafka_secure_admin: %s: %s\n", what, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        ev = NULL;
    }
    return ev;
}

/* True when every partition of `name` has a leader (metadata has no change notification: polled). */
static bool wait_leaders(rd_kafka_t *rk, const char *name, int partitions)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
    bool ok = false;
    for (int i = 0; i < TIMEOUT_MS / 100 && !ok && rkt != NULL; i++) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const rd_kafka_metadata_topic_t *t = &md->topics[0];
            ok = t->err == 0 && t->partition_cnt == partitions;
            for (int p = 0; ok && p < t->partition_cnt; p++)
                ok = t->partitions[p].leader >= 0 && t->partitions[p].err == 0;
            rd_kafka_metadata_destroy(md);
        }
        if (!ok)
            nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 100000000L}, NULL);
    }
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    if (!ok)
        fprintf(stderr, "kafka_secure_admin: topic %s has no leader for every partition after %d ms\n", name,
                TIMEOUT_MS);
    return ok;
}

int main(int argc, char **argv)
{
    rd_kafka_NewTopic_t *topics[MAX_TOPICS];
    int partitions[MAX_TOPICS];
    char names[MAX_TOPICS][256];
    rd_kafka_AclBinding_t *acls[MAX_ACLS];
    size_t n_topics = 0, n_acls = 0;
    char line[LINE_MAX_LEN], errstr[256];
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int rc = 2, lineno = 0;

    if (argc != 2) {
        fprintf(stderr,
                "usage: kafka_secure_admin ENV_FILE < SPEC (see the comment in kafka_secure_admin.c)\n");
        return 2;
    }
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *w[MAX_WORDS];
        int n;
        lineno++;
        if (line[0] == '#')
            continue;
        n = split(line, w);
        if (n == 0)
            continue;
        if (strcmp(w[0], "topic") == 0 && n == 4 && n_topics < MAX_TOPICS) {
            int parts = atoi(w[2]);
            bool compact = strcmp(w[3], "compact") == 0;
            if (parts < 1 || parts > 100 || (!compact && strcmp(w[3], "delete") != 0)) {
                fprintf(stderr, "SPEC:%d: expected: topic NAME PARTITIONS(1-100) compact|delete\n", lineno);
                goto cleanup;
            }
            topics[n_topics] = rd_kafka_NewTopic_new(w[1], parts, 1, errstr, sizeof errstr);
            if (topics[n_topics] == NULL) {
                fprintf(stderr, "SPEC:%d: %s\n", lineno, errstr);
                goto cleanup;
            }
            snprintf(names[n_topics], sizeof names[n_topics], "%s", w[1]);
            partitions[n_topics++] = parts;
            if (compact && rd_kafka_NewTopic_set_config(topics[n_topics - 1], "cleanup.policy", "compact")) {
                fprintf(stderr, "SPEC:%d: cleanup.policy=compact refused\n", lineno);
                goto cleanup;
            }
        } else if (strcmp(w[0], "allow") == 0 && n_acls + (size_t)(n > 5 ? n - 5 : 0) <= MAX_ACLS) {
            if (!parse_acl(w, n, lineno, acls + n_acls, &n_acls))
                goto cleanup;
        } else {
            fprintf(stderr, "SPEC:%d: expected 'topic ...' or 'allow ...' (at most %d topics, %d ACLs)\n",
                    lineno, MAX_TOPICS, MAX_ACLS);
            goto cleanup;
        }
    }
    rc = 1;
    if ((rk = admin_client(argv[1])) == NULL)
        goto cleanup;
    q = rd_kafka_queue_new(rk);
    if (n_topics > 0) {
        size_t got = 0;
        rd_kafka_CreateTopics(rk, topics, n_topics, NULL, q);
        if ((ev = await_result(q, "CreateTopics")) == NULL)
            goto cleanup;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &got);
        for (size_t i = 0; i < got; i++)
            if (rd_kafka_topic_result_error(res[i])) {
                fprintf(stderr, "kafka_secure_admin: creating topic %s: %s\n",
                        rd_kafka_topic_result_name(res[i]), rd_kafka_topic_result_error_string(res[i]));
                goto cleanup;
            }
        rd_kafka_event_destroy(ev);
        ev = NULL;
    }
    if (n_acls > 0) {
        size_t got = 0;
        rd_kafka_CreateAcls(rk, acls, n_acls, NULL, q);
        if ((ev = await_result(q, "CreateAcls")) == NULL)
            goto cleanup;
        const rd_kafka_acl_result_t **res =
            rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &got);
        for (size_t i = 0; i < got; i++) {
            const rd_kafka_error_t *e = rd_kafka_acl_result_error(res[i]);
            if (e != NULL) {
                fprintf(stderr, "kafka_secure_admin: ACL %zu: %s\n", i, rd_kafka_error_string(e));
                goto cleanup;
            }
        }
    }
    for (size_t i = 0; i < n_topics; i++)
        if (!wait_leaders(rk, names[i], partitions[i]))
            goto cleanup;
    printf("kafka_secure_admin: %zu topics, %zu ACLs\n", n_topics, n_acls);
    rc = 0;
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    for (size_t i = 0; i < n_topics; i++)
        rd_kafka_NewTopic_destroy(topics[i]);
    for (size_t i = 0; i < n_acls; i++)
        rd_kafka_AclBinding_destroy(acls[i]);
    return rc;
}
