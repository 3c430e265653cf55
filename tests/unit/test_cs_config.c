/* cs_config: the YAML loader against a test table covering every type. Files are written to a
 * temporary folder made per test run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cs_config.h"

static char tmpdir[256];

static const char *const colours[] = {"red", "green", "blue", NULL};
static const char *const fruits[] = {"apple", "pear", "plum", NULL};

static const cs_config_row rows[] = {
    {.name = "svc.id",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = cs_config_check_id,
     .desc = "The id."},
    {.name = "svc.name", .type = CS_CONFIG_STRING, .def = "default-name", .desc = "A name."},
    {.name = "svc.count", .type = CS_CONFIG_INT, .def = "10", .min = 1, .max = 100, .desc = "A count."},
    {.name = "svc.on", .type = CS_CONFIG_BOOL, .def = "true", .desc = "A switch."},
    {.name = "svc.wait",
     .type = CS_CONFIG_DURATION,
     .def = "2s",
     .min = 10,
     .max = 3600000,
     .desc = "A wait."},
    {.name = "svc.colour", .type = CS_CONFIG_ENUM, .def = "red", .allowed = colours, .desc = "A colour."},
    {.name = "svc.fruits", .type = CS_CONFIG_LIST, .def = "apple,pear", .allowed = fruits, .desc = "Fruits."},
    {.name = "svc.bases", .type = CS_CONFIG_LIST, .desc = "Free list."},
    {.name = "svc.ca_file", .type = CS_CONFIG_FILE, .desc = "A CA file."},
    {.name = "svc.password_file", .type = CS_CONFIG_SECRET, .desc = "A password."},
    {.name = "svc.listen", .type = CS_CONFIG_LISTEN, .def = "0.0.0.0:9464", .desc = "Listen address."},
    {.name = "kafka.", .type = CS_CONFIG_PREFIX, .desc = "librdkafka properties."},
    {.name = NULL},
};

/* Cross-field rule for the test: svc.colour blue needs svc.password_file; svc.on false warns. */
static void finalize(cs_config *c)
{
    if (cs_config_key_ok(c, "svc.colour") && strcmp(cs_config_get_string(c, "svc.colour"), "blue") == 0 &&
        !cs_config_is_set(c, "svc.password_file"))
        cs_config_add_error(c, "svc.colour", "svc.colour: blue needs svc.password_file");
    if (!cs_config_get_bool(c, "svc.on"))
        cs_config_add_warning(c, "svc.on", "svc.on is false");
}

static const cs_config_spec spec = {.service = "test-service", .rows = rows, .finalize = finalize};

/* Writes `text` to tmpdir/name and returns the path (static buffer per call site is fine here). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

/* Loads `text` expecting failure; returns the error message (caller frees). */
static char *load_fails(const char *text)
{
    cs_config *cfg = NULL;
    cs_err *err = cs_config_load(&spec, write_text("bad.yaml", text), &cfg);
    assert_non_null(err);
    assert_null(cfg);
    char *msg = strdup(cs_err_message(err));
    cs_err_free(err);
    return msg;
}

static cs_config *load_ok(const char *text)
{
    cs_config *cfg = NULL;
    cs_err *err = cs_config_load(&spec, write_text("good.yaml", text), &cfg);
    if (err)
        fail_msg("unexpected error: %s", cs_err_message(err));
    assert_non_null(cfg);
    return cfg;
}

#define assert_contains(hay, needle)                                                                         \
    do {                                                                                                     \
        if (!strstr((hay), (needle)))                                                                        \
            fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                                            \
    } while (0)

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_cs_config.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_text("secret.txt", "s3cr3t-value\r\n\n");
    write_text("ca.pem", "not really a CA\n");
    write_text("empty.txt", "");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void defaults_applied(void **state)
{
    (void)state;
    cs_config *cfg = load_ok("svc.id: a\n");
    assert_string_equal(cs_config_get_string(cfg, "svc.name"), "default-name");
    assert_int_equal(cs_config_get_int(cfg, "svc.count"), 10);
    assert_true(cs_config_get_bool(cfg, "svc.on"));
    assert_int_equal(cs_config_get_duration_ms(cfg, "svc.wait"), 2000);
    assert_string_equal(cs_config_get_string(cfg, "svc.colour"), "red");
    const char *const *items = NULL;
    assert_int_equal(cs_config_get_list(cfg, "svc.fruits", &items), 2);
    assert_string_equal(items[0], "apple");
    assert_string_equal(items[1], "pear");
    assert_null(items[2]);
    assert_int_equal(cs_config_get_list(cfg, "svc.bases", &items), 0);
    assert_null(cs_config_get_string(cfg, "svc.ca_file"));
    assert_null(cs_config_get_secret(cfg, "svc.password_file"));
    const char *host = NULL;
    int port = -1;
    cs_config_get_listen(cfg, "svc.listen", &host, &port);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 9464);
    assert_false(cs_config_is_set(cfg, "svc.count"));
    assert_true(cs_config_is_set(cfg, "svc.id"));
    assert_int_equal(cs_config_prefix_count(cfg, "kafka."), 0);
    cs_config_free(cfg);
}

static void every_type_parsed(void **state)
{
    (void)state;
    cs_config *cfg = load_ok("svc:\n"
                             "  id: my-id\n"
                             "  name: \"quoted name\"\n"
                             "  count: 100\n"
                             "  on: false\n"
                             "  wait: 5m\n"
                             "  colour: blue\n"
                             "  fruits: [plum]\n"
                             "  bases:\n"
                             "    - DC=a\n"
                             "    - DC=b\n"
                             "  ca_file: ca.pem\n"
                             "  password_file: secret.txt\n"
                             "  listen: \"[::1]:8080\"\n"
                             "kafka:\n"
                             "  bootstrap.servers: 127.0.0.1:9092\n"
                             "kafka.acks: all\n");
    assert_string_equal(cs_config_get_string(cfg, "svc.id"), "my-id");
    assert_string_equal(cs_config_get_string(cfg, "svc.name"), "quoted name");
    assert_int_equal(cs_config_get_int(cfg, "svc.count"), 100);
    assert_false(cs_config_get_bool(cfg, "svc.on"));
    assert_int_equal(cs_config_get_duration_ms(cfg, "svc.wait"), 300000);
    assert_string_equal(cs_config_get_string(cfg, "svc.colour"), "blue");
    const char *const *items = NULL;
    assert_int_equal(cs_config_get_list(cfg, "svc.fruits", &items), 1);
    assert_string_equal(items[0], "plum");
    assert_int_equal(cs_config_get_list(cfg, "svc.bases", &items), 2);
    assert_string_equal(items[1], "DC=b");
    /* Relative paths resolve against the config file's directory. */
    char expect[PATH_MAX + 32];
    snprintf(expect, sizeof(expect), "%s/ca.pem", tmpdir);
    assert_string_equal(cs_config_get_string(cfg, "svc.ca_file"), expect);
    /* Trailing CR/LF trimmed. */
    assert_string_equal(cs_config_get_secret(cfg, "svc.password_file"), "s3cr3t-value");
    const char *host = NULL;
    int port = 0;
    cs_config_get_listen(cfg, "svc.listen", &host, &port);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    /* Passthrough keeps file order and lines. */
    assert_int_equal(cs_config_prefix_count(cfg, "kafka."), 2);
    const char *name, *value;
    int line;
    cs_config_prefix_at(cfg, "kafka.", 0, &name, &value, &line);
    assert_string_equal(name, "bootstrap.servers");
    assert_string_equal(value, "127.0.0.1:9092");
    assert_int_equal(line, 16);
    cs_config_prefix_at(cfg, "kafka.", 1, &name, &value, &line);
    assert_string_equal(name, "acks");
    assert_int_equal(line, 17);
    /* The finalize step's warning carries file:line. */
    assert_int_equal(cs_config_warning_count(cfg), 1);
    assert_contains(cs_config_warning_at(cfg, 0), "good.yaml:5: svc.on is false");

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_null(cs_config_apply_kafka(cfg, conf));
    char buf[64];
    size_t sz = sizeof(buf);
    assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", buf, &sz), RD_KAFKA_CONF_OK);
    assert_string_equal(buf, "127.0.0.1:9092");
    rd_kafka_conf_destroy(conf);
    cs_config_free(cfg);
}

static void durations_and_absolute_paths(void **state)
{
    (void)state;
    char text[PATH_MAX * 2];
    snprintf(text, sizeof(text), "svc.id: a\nsvc.wait: 250ms\nsvc.password_file: %s/secret.txt\n", tmpdir);
    cs_config *cfg = load_ok(text);
    assert_int_equal(cs_config_get_duration_ms(cfg, "svc.wait"), 250);
    assert_string_equal(cs_config_get_secret(cfg, "svc.password_file"), "s3cr3t-value");
    cs_config_free(cfg);
    cfg = load_ok("svc.id: a\nsvc.wait: 1h\n");
    assert_int_equal(cs_config_get_duration_ms(cfg, "svc.wait"), 3600000);
    cs_config_free(cfg);
}

static void malformed_yaml_names_line_and_column(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nsvc.fruits: [apple, pear\nsvc.count: 3\n");
    assert_contains(msg,
                    "bad.yaml:3:10: malformed YAML: did not find expected ',' or ']' (while parsing a flow "
                    "sequence at line 2)");
    free(msg);
    msg = load_fails("svc.id: a\n  bad indent: x\n");
    assert_contains(msg, "bad.yaml:2:");
    assert_contains(msg, "malformed YAML:");
    free(msg);
}

static void unknown_key_suggests(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nsvc:\n  cuont: 3\nnothing.like.it: 1\n");
    assert_contains(msg, "bad.yaml:3: unknown key \"svc.cuont\" (did you mean \"svc.count\"?)");
    assert_contains(msg, "bad.yaml:4: unknown key \"nothing.like.it\"; see --help-config");
    free(msg);
}

static void out_of_range_int_and_duration(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nsvc.count: 0\nsvc.wait: 2h\n");
    assert_contains(msg, "bad.yaml:2: svc.count = 0 is out of range: allowed 1..100");
    assert_contains(msg, "bad.yaml:3: svc.wait = 2h is out of range: allowed 10ms..1h");
    free(msg);
    msg = load_fails("svc.id: a\nsvc.count: ten\nsvc.wait: 5\nsvc.on: yes\n");
    assert_contains(msg, "bad.yaml:2: svc.count = \"ten\" is not an integer");
    assert_contains(msg, "bad.yaml:3: svc.wait = \"5\" is not a duration");
    assert_contains(msg, "bad.yaml:4: svc.on = \"yes\" is not a boolean: write true or false");
    free(msg);
    msg = load_fails("svc.id: a\nsvc.count: 99999999999999999999999\n");
    assert_contains(msg, "is not an integer");
    free(msg);
}

static void bad_enum_lists_allowed_values(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nsvc.colour: gren\nsvc.fruits: [apple, kiwi, apple]\n");
    assert_contains(msg,
                    "bad.yaml:2: svc.colour = \"gren\" is not allowed: expected one of red, green, blue (did "
                    "you mean \"green\"?)");
    assert_contains(
        msg, "bad.yaml:3: svc.fruits: item \"kiwi\" is not allowed: expected items from apple, pear, plum");
    assert_contains(msg, "bad.yaml:3: svc.fruits: item \"apple\" is listed twice");
    free(msg);
}

static void wrong_shape_is_an_error(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\n"
                           "svc.count:\n  x: 1\n"
                           "svc: plain\n"
                           "svc.name: [a, b]\n"
                           "svc.bases: DC=a\n"
                           "svc.listen: 9464\n");
    assert_contains(msg, "bad.yaml:2: svc.count expects a single int value, got a map");
    assert_contains(msg, "bad.yaml:4: \"svc\" is a section, not a value");
    assert_contains(msg, "bad.yaml:5: svc.name expects a single string value, got a list");
    assert_contains(msg, "bad.yaml:6: svc.bases expects a list, got a single value");
    assert_contains(msg, "bad.yaml:7: svc.listen = \"9464\" is not a host:port listen address");
    free(msg);
    msg = load_fails("- a\n- b\n");
    assert_contains(msg, "bad.yaml:1: the top level must be a map of keys");
    free(msg);
    msg = load_fails("svc.id: &x a\nsvc.name: *x\n");
    assert_contains(msg, "bad.yaml:2: svc.name: aliases (*name) are not supported");
    free(msg);
    msg = load_fails("svc.id: a\nsvc.name:\n");
    assert_contains(msg, "bad.yaml:2: svc.name has no value");
    free(msg);
}

static void duplicate_key_in_any_spelling(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nsvc.count: 3\nsvc:\n  count: 4\n");
    assert_contains(msg, "bad.yaml:4: duplicate key \"svc.count\" (first set at line 2)");
    free(msg);
    msg = load_fails("svc.id: a\nkafka.acks: all\nkafka:\n  acks: 1\n");
    assert_contains(msg, "bad.yaml:4: duplicate key \"kafka.acks\" (first set at line 2)");
    free(msg);
}

static void missing_required_key_named_with_description(void **state)
{
    (void)state;
    char *msg = load_fails("svc.count: 3\n");
    assert_contains(msg, "bad.yaml: missing required key \"svc.id\": The id.");
    free(msg);
    /* An empty file is an empty map: the same error, not a crash. */
    msg = load_fails("");
    assert_contains(msg, "missing required key \"svc.id\"");
    free(msg);
}

static void missing_and_empty_secret_files(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nsvc.password_file: nope.txt\n");
    char expect[PATH_MAX * 3];
    snprintf(expect, sizeof(expect),
             "bad.yaml:2: svc.password_file: secret file \"%s/nope.txt\" is unusable: cannot open it: No "
             "such file "
             "or directory; create it (e.g. mount a Kubernetes Secret there) or fix the path (relative paths "
             "resolve against the config file's directory \"%s\")",
             tmpdir, tmpdir);
    assert_contains(msg, expect);
    free(msg);
    msg = load_fails("svc.id: a\nsvc.password_file: empty.txt\n");
    assert_contains(msg, "bad.yaml:2: svc.password_file: secret file");
    assert_contains(msg, "is unusable: it is empty; put the secret in it");
    free(msg);
    msg = load_fails("svc.id: a\nsvc.ca_file: /nonexistent/ca.pem\n");
    assert_contains(
        msg, "bad.yaml:2: svc.ca_file: file \"/nonexistent/ca.pem\" is unusable: cannot open it: No such "
             "file or directory; create it or fix the path");
    free(msg);
    /* A directory is not a secret file. */
    msg = load_fails("svc.id: a\nsvc.password_file: .\n");
    assert_contains(msg, "it is not a regular file");
    free(msg);
}

static void secret_never_in_errors(void **state)
{
    (void)state;
    /* Other keys fail; the loaded secret's contents must not show up anywhere in the message. */
    char *msg = load_fails("svc.id: a\nsvc.password_file: secret.txt\nsvc.count: 0\nsvc.colour: blue\n");
    assert_null(strstr(msg, "s3cr3t"));
    assert_contains(msg, "svc.count = 0");
    free(msg);
}

static void kafka_property_rejected_by_librdkafka(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nkafka:\n  no.such.property: 1\n  acks: banana\n");
    assert_contains(msg,
                    "bad.yaml:3: kafka.no.such.property = \"1\": librdkafka rejected this property: No such "
                    "configuration property: \"no.such.property\"");
    assert_contains(
        msg, "bad.yaml:4: kafka.acks = \"banana\": librdkafka rejected this property: Invalid value for "
             "configuration property \"request.required.acks\"");
    free(msg);
    /* Credentials are not echoed even when rejected. */
    msg = load_fails("svc.id: a\nkafka.sasl.password.nope: hunter2\n");
    assert_null(strstr(msg, "hunter2"));
    assert_contains(msg, "bad.yaml:2: kafka.sasl.password.nope: ");
    free(msg);
}

/* kafka.X_file: the file's contents become librdkafka's X, and only there. */
static void kafka_secret_from_file(void **state)
{
    (void)state;
    write_text("kafka-pass.txt", "kafka-p4ss-value\n");
    cs_config *cfg = load_ok("svc.id: a\n"
                             "kafka:\n"
                             "  sasl.password_file: kafka-pass.txt\n"
                             "  ssl.key.password_file: secret.txt\n"
                             "  sasl.username: certsync\n");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_null(cs_config_apply_kafka(cfg, conf));
    char buf[128];
    size_t sz = sizeof(buf);
    assert_int_equal(rd_kafka_conf_get(conf, "sasl.password", buf, &sz), RD_KAFKA_CONF_OK);
    assert_string_equal(buf, "kafka-p4ss-value"); /* newline trimmed */
    sz = sizeof(buf);
    assert_int_equal(rd_kafka_conf_get(conf, "ssl.key.password", buf, &sz), RD_KAFKA_CONF_OK);
    assert_string_equal(buf, "s3cr3t-value");
    rd_kafka_conf_destroy(conf);
    /* The file key is what the file set; its listed value is the resolved path, never the secret. */
    assert_true(cs_config_is_set(cfg, "kafka.sasl.password_file"));
    assert_false(cs_config_is_set(cfg, "kafka.sasl.password"));
    const char *name, *value;
    int line;
    cs_config_prefix_at(cfg, "kafka.", 0, &name, &value, &line);
    assert_string_equal(name, "sasl.password_file");
    char expect[PATH_MAX + 64];
    snprintf(expect, sizeof(expect), "%s/kafka-pass.txt", tmpdir);
    assert_string_equal(value, expect);
    assert_int_equal(line, 3);
    cs_config_free(cfg);
}

static void kafka_inline_secret_refused(void **state)
{
    (void)state;
    static const struct {
        const char *key, *fix;
    } cases[] = {
        {"sasl.password", "kafka.sasl.password_file"},
        {"ssl.key.password", "kafka.ssl.key.password_file"},
        {"sasl.oauthbearer.client.secret", "kafka.sasl.oauthbearer.client.secret_file"},
        {"ssl.key.pem", "kafka.ssl.key.location"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256], expect[256];
        snprintf(text, sizeof(text), "svc.id: a\nkafka.%s: hunter2-inline\n", cases[i].key);
        char *msg = load_fails(text);
        snprintf(expect, sizeof(expect), "bad.yaml:2: kafka.%s: ", cases[i].key);
        assert_contains(msg, expect);
        assert_contains(msg, cases[i].fix);
        assert_null(strstr(msg, "hunter2"));
        free(msg);
    }
    /* Nested spelling too, and a librdkafka-unknown secret-looking key is refused the same way. */
    char *msg = load_fails("svc.id: a\nkafka:\n  sasl:\n    password: hunter2-nested\n");
    assert_contains(msg, "bad.yaml:4: kafka.sasl.password: ");
    assert_null(strstr(msg, "hunter2"));
    free(msg);
    /* Paths and public certificates that merely look secret stay allowed. */
    cs_config *cfg = load_ok("svc.id: a\nkafka:\n  ssl.key.location: /run/secrets/k.pem\n"
                             "  ssl.keystore.location: /run/secrets/ks.p12\n"
                             "  sasl.kerberos.keytab: /etc/krb5.keytab\n");
    cs_config_free(cfg);
}

static void kafka_secret_file_problems(void **state)
{
    (void)state;
    char *msg = load_fails("svc.id: a\nkafka.sasl.password_file: nope/kafka-missing.txt\n");
    char expect[PATH_MAX * 2];
    snprintf(expect, sizeof(expect),
             "bad.yaml:2: kafka.sasl.password_file: secret file \"%s/nope/kafka-missing.txt\" is unusable: "
             "cannot open it",
             tmpdir);
    assert_contains(msg, expect);
    assert_contains(msg, "Kubernetes Secret");
    free(msg);
    msg = load_fails("svc.id: a\nkafka.ssl.key.password_file: empty.txt\n");
    assert_contains(msg, "bad.yaml:2: kafka.ssl.key.password_file: secret file");
    assert_contains(msg, "it is empty");
    free(msg);
    /* The secret never shows: not next to other errors, not when librdkafka rejects the property. */
    write_text("kafka-pass.txt", "kafka-p4ss-value\n");
    msg = load_fails("svc.id: a\n"
                     "kafka.sasl.password_file: kafka-pass.txt\n"
                     "kafka.no.such.password_file: kafka-pass.txt\n"
                     "kafka.acks: banana\n");
    assert_contains(msg, "bad.yaml:3: kafka.no.such.password_file");
    assert_contains(msg, "bad.yaml:4: kafka.acks");
    assert_null(strstr(msg, "kafka-p4ss"));
    free(msg);
}

static void alias_error_escapes_the_key(void **state)
{
    (void)state;
    /* A key with a control character must not reach the message raw (it could forge a line). */
    char *msg = load_fails("svc.id: &a x\n\"svc.\\nforged\": *a\n");
    assert_contains(msg, "svc.?forged: aliases (*name) are not supported");
    assert_null(strstr(msg, "svc.\nforged"));
    free(msg);
}

static void all_errors_reported_together_in_line_order(void **state)
{
    (void)state;
    char *msg = load_fails("svc.count: 0\n"
                           "svc.colour: blue\n"
                           "kafka.acks: banana\n"
                           "svc.wait: forever\n"
                           "svc.bogus: 1\n");
    const char *expected[] = {
        "bad.yaml:1: svc.count = 0 is out of range", "bad.yaml:2: svc.colour: blue needs svc.password_file",
        "bad.yaml:3: kafka.acks = \"banana\"",       "bad.yaml:4: svc.wait = \"forever\" is not a duration",
        "bad.yaml:5: unknown key \"svc.bogus\"",     "bad.yaml: missing required key \"svc.id\"",
    };
    const char *at = msg;
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const char *hit = strstr(at, expected[i]);
        if (!hit)
            fail_msg("expected \"%s\" (in order) in:\n%s", expected[i], msg);
        at = hit;
    }
    /* One error per line. */
    size_t lines = 1;
    for (const char *p = msg; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 6);
    free(msg);
}

static void over_large_and_non_utf8_files(void **state)
{
    (void)state;
    size_t big = CS_CONFIG_FILE_MAX + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '#', big);
    cs_config *cfg = NULL;
    cs_err *err = cs_config_load(&spec, write_file("big.yaml", text, big), &cfg);
    free(text);
    assert_non_null(err);
    assert_null(cfg);
    assert_contains(cs_err_message(err), "big.yaml: the config file is larger than 1048576 bytes");
    cs_err_free(err);

    err = cs_config_load(&spec, write_text("latin1.yaml", "svc.id: a\nsvc.name: caf\xe9\n"), &cfg);
    assert_non_null(err);
    assert_contains(cs_err_message(err),
                    "latin1.yaml:2: column 14: the file is not valid UTF-8 text (byte 0xe9)");
    cs_err_free(err);

    err = cs_config_load(&spec, "/nonexistent/x.yaml", &cfg);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_IO);
    assert_contains(cs_err_message(err),
                    "/nonexistent/x.yaml: cannot open config file: No such file or directory");
    cs_err_free(err);
}

static void help_renders_table(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_true(cs_config_render_help(&spec, f));
    long n = ftell(f);
    rewind(f);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    assert_contains(out, "svc.id  (string, required)\n    The id.\n");
    assert_contains(out, "svc.count  (int, default 10, range 1..100)\n    A count.\n");
    assert_contains(out, "svc.wait  (duration, default 2s, range 10ms..1h)");
    assert_contains(out, "svc.colour  (enum, default red, one of red, green, blue)");
    assert_contains(out, "svc.fruits  (list, default [apple,pear], items from apple, pear, plum)");
    assert_contains(out, "svc.password_file  (secret file, no default, value: path to <file>)");
    assert_contains(out, "kafka.<property>  (passthrough)");
    free(out);
}

static void ready_made_checks(void **state)
{
    (void)state;
    assert_null(cs_config_check_topic("certsync.changes.v1"));
    assert_non_null(cs_config_check_topic("bad topic"));
    assert_null(cs_config_check_ldap_url("ldaps://dc1:636"));
    assert_non_null(cs_config_check_ldap_url("http://dc1"));
    assert_null(cs_config_check_https_url("https://graph.microsoft.com"));
    assert_non_null(cs_config_check_https_url("http://graph.microsoft.com"));
    assert_null(cs_config_check_ldap_filter("(&(objectCategory=person)(objectClass=user))"));
    assert_non_null(cs_config_check_ldap_filter("(a=b)(c=d)"));
    assert_non_null(cs_config_check_ldap_filter("(a=b"));
    assert_non_null(cs_config_check_id("has space"));
    char *msg = load_fails("svc.id: has space\n");
    assert_contains(msg, "bad.yaml:1: svc.id = \"has space\" is not valid: an id is 1..100 characters");
    free(msg);
}

/* cs_config_get_enum_index() is the value's position in the row's allowed list (services cast it to their
 * enums); cs_config_enum_index() does the same for list items. */
static void enum_index_follows_allowed_order(void **state)
{
    (void)state;
    cs_config *cfg = load_ok("svc.id: a\n");
    assert_int_equal(cs_config_get_enum_index(cfg, "svc.colour"), 0);
    cs_config_free(cfg);
    cfg = load_ok("svc.id: a\nsvc.colour: green\n");
    assert_int_equal(cs_config_get_enum_index(cfg, "svc.colour"), 1);
    cs_config_free(cfg);
    assert_int_equal(cs_config_enum_index(fruits, "plum"), 2);
    assert_int_equal(cs_config_enum_index(fruits, "pear"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_applied),
        cmocka_unit_test(every_type_parsed),
        cmocka_unit_test(durations_and_absolute_paths),
        cmocka_unit_test(malformed_yaml_names_line_and_column),
        cmocka_unit_test(unknown_key_suggests),
        cmocka_unit_test(out_of_range_int_and_duration),
        cmocka_unit_test(bad_enum_lists_allowed_values),
        cmocka_unit_test(wrong_shape_is_an_error),
        cmocka_unit_test(duplicate_key_in_any_spelling),
        cmocka_unit_test(missing_required_key_named_with_description),
        cmocka_unit_test(missing_and_empty_secret_files),
        cmocka_unit_test(secret_never_in_errors),
        cmocka_unit_test(kafka_property_rejected_by_librdkafka),
        cmocka_unit_test(kafka_secret_from_file),
        cmocka_unit_test(kafka_inline_secret_refused),
        cmocka_unit_test(kafka_secret_file_problems),
        cmocka_unit_test(alias_error_escapes_the_key),
        cmocka_unit_test(all_errors_reported_together_in_line_order),
        cmocka_unit_test(over_large_and_non_utf8_files),
        cmocka_unit_test(help_renders_table),
        cmocka_unit_test(ready_made_checks),
        cmocka_unit_test(enum_index_follows_allowed_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
