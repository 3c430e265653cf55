/*
 * Helpers shared by the publisher's C tests; contracts in pub_test_support.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certsync/v1/change_event.pb-c.h"
#include "cs_event.h"
#include "kafka_test_util.h"
#include "pub_test_support.h"

long long pts_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pts_nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *pts_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (len)
        *len = (size_t)n;
    return s;
}

char *pts_env_file_text(const char *var)
{
    const char *path = getenv(var);
    char *raw = path ? pts_slurp(path, NULL) : NULL;
    if (!raw)
        return NULL;
    size_t n = strlen(raw);
    char *text = malloc(n + 2);
    if (text) {
        text[0] = '\n'; /* every KEY= is then preceded by a newline, the first line too */
        memcpy(text + 1, raw, n + 1);
    }
    free(raw);
    return text;
}

void pts_env_get(const char *text, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s=", name);
    const char *p = strstr(text, pat);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(pat);
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
}

int pts_emu_env_load(pts_emu_env *e)
{
    memset(e, 0, sizeof *e);
    char *text = pts_env_file_text("O365_EMULATOR_ENV");
    if (!text)
        return -1;
    pts_env_get(text, "O365_EMULATOR_URL", e->url, sizeof e->url);
    pts_env_get(text, "O365_EMULATOR_ADMIN_URL", e->admin, sizeof e->admin);
    pts_env_get(text, "O365_EMULATOR_CA_FILE", e->ca, sizeof e->ca);
    pts_env_get(text, "O365_TENANT_ID", e->tenant, sizeof e->tenant);
    pts_env_get(text, "O365_TENANT_DOMAIN", e->domain, sizeof e->domain);
    pts_env_get(text, "O365_CLIENT_ID", e->client, sizeof e->client);
    pts_env_get(text, "O365_CLIENT_SECRET_FILE", e->secret_file, sizeof e->secret_file);
    pts_env_get(text, "O365_CLIENT_CERT_FILE", e->cert_file, sizeof e->cert_file);
    pts_env_get(text, "O365_CLIENT_KEY_FILE", e->key_file, sizeof e->key_file);
    pts_env_get(text, "O365_OTHER_CERT_FILE", e->other_cert_file, sizeof e->other_cert_file);
    pts_env_get(text, "O365_OTHER_KEY_FILE", e->other_key_file, sizeof e->other_key_file);
    free(text);
    return 0;
}

void pts_b64(const unsigned char *d, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, d, (int)n);
}

typedef struct body {
    char *p;
    size_t n;
} body;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    body *b = ud;
    size_t add = size * nmemb;
    char *g = realloc(b->p, b->n + add + 1);
    if (!g)
        return 0;
    memcpy(g + b->n, ptr, add);
    b->p = g;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

long pts_http(const char *method, const char *url, const char *json, char **out)
{
    CURL *c = curl_easy_init();
    body b = {0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (json)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (out)
        *out = b.p ? b.p : strdup("");
    else
        free(b.p);
    return status;
}

long pts_emu_call(const char *admin, const char *method, const char *path, const char *json, char **out)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", admin, path);
    return pts_http(method, url, json, out);
}

json_t *pts_emu_json(const char *admin, const char *path)
{
    char *text = NULL;
    assert_int_equal(pts_emu_call(admin, "GET", path, NULL, &text), 200);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(j);
    return j;
}

int pts_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &l), 0);
    close(s);
    return ntohs(a.sin_port);
}

void pts_dump_tail(const char *what, const char *path)
{
    char *t = pts_slurp(path, NULL);
    if (t) {
        size_t n = strlen(t);
        fprintf(stderr, "---- %s (last 6000 bytes) ----\n%s\n----\n", what, n > 6000 ? t + n - 6000 : t);
        free(t);
    }
}

int pts_wait_pid(pid_t pid, long long timeout_ms, int *st)
{
    long long end = pts_mono_ms() + timeout_ms;
    for (;;) {
        if (waitpid(pid, st, WNOHANG) == pid)
            return 1;
        if (pts_mono_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, st, 0);
            return 0;
        }
        pts_nap_ms(50);
    }
}

uint8_t *pts_encode_change_event(int user, const unsigned char guid[16], const char *upn, const char *mail,
                                 uint32_t version, const unsigned char *der, size_t len,
                                 const unsigned char *p7, size_t p7len, size_t *out_len)
{
    char oid[32];
    snprintf(oid, sizeof oid, "user%d", user);
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st1 = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__AttributeStamp st2 = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue sv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue *cvp = &cv, *svp = &sv;
    char src_id[] = "src";
    src.source_id = src_id;
    id.object_id = oid;
    id.has_object_guid = 1;
    id.object_guid.data = (uint8_t *)(uintptr_t)guid;
    id.object_guid.len = 16;
    id.user_principal_name = (char *)(uintptr_t)upn;
    id.mail = (char *)(uintptr_t)(mail ? mail : upn);
    st1.has_version = st2.has_version = 1;
    st1.version = st2.version = version;
    ver.user_certificate = &st1;
    ver.user_smime_certificate = &st2;
    ev.has_kind = 1;
    ev.kind =
        der ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    if (der) {
        cv.has_raw = sv.has_raw = 1;
        cv.raw.data = (uint8_t *)(uintptr_t)der;
        cv.raw.len = len;
        sv.raw.data = (uint8_t *)(uintptr_t)p7;
        sv.raw.len = p7len;
        ev.user_certificate = &cvp;
        ev.n_user_certificate = 1;
        ev.user_smime_certificate = &svp;
        ev.n_user_smime_certificate = 1;
    }
    uint8_t *buf = NULL;
    assert_null(cs_event_encode(&ev, &buf, out_len));
    return buf;
}

void pts_topics_new(pts_topics *t, const char *prefix, int parts, int events_compacted, int with_instance)
{
    char name[128];
    memset(t, 0, sizeof *t);
    t->parts = parts;
    snprintf(name, sizeof name, "%s-events", prefix);
    t->events = kt_unique_name(name);
    snprintf(name, sizeof name, "%s-state", prefix);
    t->state = kt_unique_name(name);
    snprintf(name, sizeof name, "%s-results", prefix);
    t->results = kt_unique_name(name);
    snprintf(name, sizeof name, "%s-dlq", prefix);
    t->dlq = kt_unique_name(name);
    snprintf(name, sizeof name, "%s-retry", prefix);
    t->retry = kt_unique_name(name);
    snprintf(name, sizeof name, "%s-group", prefix);
    t->group = kt_unique_name(name);
    if (with_instance)
        t->instance = kt_unique_name(prefix);
    kt_create_topic(t->events, parts, 1, events_compacted);
    kt_create_topic(t->state, parts, 1, 1);
    kt_create_topic(t->retry, parts, 1, 0);
    kt_create_topic(t->results, 1, 1, 0);
    kt_create_topic(t->dlq, 1, 1, 0);
    char errstr[256];
    t->prod = rd_kafka_new(RD_KAFKA_PRODUCER, kt_conf(), errstr, sizeof errstr);
    assert_non_null(t->prod);
}

void pts_topics_free(pts_topics *t)
{
    rd_kafka_flush(t->prod, 10000);
    rd_kafka_destroy(t->prod);
    free(t->events);
    free(t->state);
    free(t->results);
    free(t->dlq);
    free(t->retry);
    free(t->group);
    free(t->instance);
}

void pts_sha256_hex(const unsigned char *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(d, n, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

long long pts_emu_last_seq(const char *admin)
{
    /* A since beyond any sequence: no entries, only last_seq. */
    json_t *j = pts_emu_json(admin, "/journal?kind=request&since=999999999");
    long long s = json_integer_value(json_object_get(j, "last_seq"));
    json_decref(j);
    return s;
}

int pts_emu_requests(const char *admin, long long since, const char *prefix)
{
    char path[128];
    snprintf(path, sizeof path, "/journal?kind=request&since=%lld", since);
    json_t *j = pts_emu_json(admin, path);
    json_t *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        const char *c = json_string_value(json_object_get(e, "cmdlet"));
        n += c && strncmp(c, prefix, strlen(prefix)) == 0;
    }
    json_decref(j);
    return n;
}

void pts_emu_seed_mailbox(const char *admin, const char *upn, const unsigned char guid[16], int id_group,
                          int user, int dir_synced, int cloud_managed)
{
    char id[40], json[1024];
    pts_b64(guid, 16, id);
    snprintf(json, sizeof json,
             "{\"UserPrincipalName\":\"%s\",\"PrimarySmtpAddress\":\"%s\",\"RecipientTypeDetails\":"
             "\"UserMailbox\",\"ExternalDirectoryObjectId\":\"00000000-0000-4000-%04d-%012d\","
             "\"onPremisesImmutableId\":\"%s\",\"IsDirSynced\":%s,\"IsExchangeCloudManaged\":%s}",
             upn, upn, id_group, user, id, dir_synced ? "true" : "false", cloud_managed ? "true" : "false");
    assert_int_equal(pts_emu_call(admin, "POST", "/state/recipients", json, NULL), 200);
}

void pts_produce(rd_kafka_t *prod, const char *topic, int32_t part, const char *key, const void *val,
                 size_t len)
{
    rd_kafka_resp_err_t e =
        rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)(uintptr_t)val, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

rd_kafka_t *pts_partition_reader(const char *topic, const char *group)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    return c;
}

int pts_read_dead_letters(const char *dlq, const char *group_prefix, Certsync__V1__DeadLetter **out, int cap)
{
    char *group = kt_unique_name(group_prefix);
    rd_kafka_t *c = pts_partition_reader(dlq, group);
    int n = 0;
    long long end = pts_mono_ms() + 30000;
    while (pts_mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        assert_int_equal(m->err, 0);
        Certsync__V1__DeadLetter *d = certsync__v1__dead_letter__unpack(NULL, m->len, m->payload);
        assert_non_null(d);
        if (n < cap)
            out[n] = d;
        else
            certsync__v1__dead_letter__free_unpacked(d, NULL);
        n++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(group);
    return n;
}

void pts_publisher_yaml_head(FILE *f, const pts_topics *t, const char *instance, const pts_emu_env *e,
                             const char *auth_yaml)
{
    fprintf(f,
            "publisher.instance_id: %s\n"
            "topics: {events: %s, state: %s, results: %s, dlq: %s, retry: %s}\n"
            "o365:\n"
            "  tenant_id: %s\n  tenant_domain: %s\n  client_id: %s\n"
            "  authority_url: %s\n  graph_url: %s\n  exchange_url: %s\n"
            "  exchange_resource: https://outlook.office365.com\n"
            "  graph_resource: https://graph.microsoft.com\n",
            instance, t->events, t->state, t->results, t->dlq, t->retry, e->tenant, e->domain, e->client,
            e->url, e->url, e->url);
    if (auth_yaml)
        fputs(auth_yaml, f);
    else
        fprintf(f, "  auth: secret\n  client_secret_file: %s\n", e->secret_file);
    fprintf(f, "  ca_file: %s\n", e->ca);
}

void pts_pub_log_path(const char *work, int port, char *out, size_t cap)
{
    snprintf(out, cap, "%s/pub-%d.log", work, port);
}

pid_t pts_pub_spawn(const char *work, int port, const char *config, int once, const char *fault)
{
    char log[300];
    pts_pub_log_path(work, port, log, sizeof log);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (fault)
            setenv("CERTSYNC_PUB_FAULT", fault, 1);
        else
            unsetenv("CERTSYNC_PUB_FAULT");
        const char *bin = getenv("CERTSYNC_PUBLISHER");
        if (once)
            execl(bin, bin, "--config", config, "--once", (char *)NULL);
        else
            execl(bin, bin, "--config", config, (char *)NULL);
        _exit(127);
    }
    return pid;
}

void pts_pub_dump_log(const char *work, int port)
{
    char log[300];
    pts_pub_log_path(work, port, log, sizeof log);
    pts_dump_tail("publisher log", log);
}

int pts_pub_wait_exit(const char *work, int port, pid_t pid, long long timeout_ms)
{
    int st = 0;
    if (!pts_wait_pid(pid, timeout_ms, &st)) {
        pts_pub_dump_log(work, port);
        fail_msg("publisher pid %d did not exit within %lld ms", (int)pid, timeout_ms);
    }
    return st;
}

void pts_pub_expect_exit(const char *work, int port, int st, int code)
{
    if (!WIFEXITED(st) || WEXITSTATUS(st) != code) {
        pts_pub_dump_log(work, port);
        fail_msg("publisher: wanted exit %d, got %s %d", code, WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
}

long pts_pub_admin_get(int port, const char *path, char **out)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    return pts_http("GET", url, NULL, out);
}

unsigned char *pts_smime_cert(EVP_PKEY *key, const char *email, long serial, time_t nb, time_t na,
                              size_t *len)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)email, -1, -1, 0);
    assert_true(X509_set_issuer_name(x, nm));
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), nb));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), na));
    assert_true(X509_set_pubkey(x, key));
    char san[400];
    snprintf(san, sizeof san, "email:%s", email);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    assert_non_null(ext);
    assert_true(X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    X509_free(x);
    *len = (size_t)n;
    return der;
}
