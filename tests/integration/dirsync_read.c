/*
 * dirsync_read: one Active Directory DirSync pass with libldap, for the integration tests.
 *
 *   dirsync_read [-Z] [-C cafile] [-f flags] [-i cookie_in] [-o cookie_out] URL BINDDN PWFILE BASE FILTER ATTR...
 *
 * Binds simply (password from PWFILE, one trailing newline ignored), searches BASE (a naming-context
 * root: DirSync refuses anything else) with the DirSync control (1.2.840.113556.1.4.841, critical),
 * the cookie from cookie_in (absent or empty = full sync), and repeats while the server sets the
 * "more data" flag. Prints one block per entry:
 *
 *   dn: <dn>
 *   <attr> <sha256 hex of the value> <length>     (one line per value, binary safe)
 *
 * and writes the final cookie to cookie_out. -Z does StartTLS; -C sets the CA file and demands a
 * verified server certificate (ldaps:// or -Z). Exit 0 on success, 1 with a message otherwise.
 *
 * The pattern (create_dirsync_control / parse_dirsync_control, referrals off, loop on the continue
 * flag, cookie bytes kept verbatim) is the one the collector's DirSync mode reuses.
 */
#include <errno.h>
#include <lber.h>
#include <ldap.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    MAX_ROUNDS = 10000,            /* bound on "more data" rounds: 10,000 pages is far beyond a test */
    MAX_FILE = 1024 * 1024,        /* bound on a cookie or password file */
    DIRSYNC_MAX_BYTES = 0x7fffffff /* maxAttrCount: let the server choose the page size */
};

/* read_file: whole file into a malloc'd buffer (NUL-terminated for convenience). */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t n = 0;
    int rc = -1;

    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "dirsync_read: cannot open %s: %s\n", path, strerror(errno));
        goto cleanup;
    }
    buf = malloc(MAX_FILE + 1);
    if (buf == NULL) {
        fprintf(stderr, "dirsync_read: out of memory\n");
        goto cleanup;
    }
    n = fread(buf, 1, MAX_FILE + 1, f);
    if (ferror(f) || n > MAX_FILE) {
        fprintf(stderr, "dirsync_read: cannot read %s (or larger than %d bytes)\n", path, MAX_FILE);
        goto cleanup;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;

cleanup:
    free(buf);
    if (f != NULL) {
        fclose(f);
    }
    return rc;
}

static int write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int rc = -1;

    if (f == NULL) {
        fprintf(stderr, "dirsync_read: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (len == 0 || fwrite(data, 1, len, f) == len) {
        rc = 0;
    }
    if (fclose(f) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        fprintf(stderr, "dirsync_read: cannot write %s\n", path);
    }
    return rc;
}

static void print_ldap_error(LDAP *ld, const char *what, int rc)
{
    char *diag = NULL;

    ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    fprintf(stderr, "dirsync_read: %s: %s (%d)%s%s\n", what, ldap_err2string(rc), rc,
            diag != NULL && diag[0] != '\0' ? ": " : "", diag != NULL ? diag : "");
    ldap_memfree(diag);
}

static void print_value(const char *attr, const struct berval *v)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned int i;

    if (EVP_Digest(v->bv_val, v->bv_len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        mdlen = 0;
    }
    printf("%s ", attr);
    for (i = 0; i < mdlen; i++) {
        printf("%02x", md[i]);
    }
    printf(" %lu\n", (unsigned long)v->bv_len);
}

static void print_entry(LDAP *ld, LDAPMessage *e)
{
    char *dn = ldap_get_dn(ld, e);
    BerElement *ber = NULL;
    char *attr;

    printf("dn: %s\n", dn != NULL ? dn : "(none)");
    for (attr = ldap_first_attribute(ld, e, &ber); attr != NULL; attr = ldap_next_attribute(ld, e, ber)) {
        struct berval **vals = ldap_get_values_len(ld, e, attr);
        size_t i;

        if (vals == NULL || vals[0] == NULL) {
            /* DirSync reports an emptied attribute as the attribute with no values. */
            printf("%s (no values)\n", attr);
        }
        for (i = 0; vals != NULL && vals[i] != NULL; i++) {
            print_value(attr, vals[i]);
        }
        ldap_value_free_len(vals);
        ldap_memfree(attr);
    }
    ber_free(ber, 0);
    ldap_memfree(dn);
    printf("\n");
}

int main(int argc, char **argv)
{
    const char *cafile = NULL, *cookie_in = NULL, *cookie_out = NULL;
    int starttls = 0, flags = 0, opt, rc, exit_code = 1, version = LDAP_VERSION3, rounds;
    long entries = 0;
    LDAP *ld = NULL;
    char *password = NULL, *cookie_buf = NULL;
    size_t password_len = 0, cookie_len = 0;
    struct berval cred, cookie = {0, NULL}, next_cookie = {0, NULL};
    const char *url = NULL, *binddn = NULL, *pwfile = NULL, *base = NULL, *filter = NULL;
    char **attrs = NULL;
    static char empty[1];

    while ((opt = getopt(argc, argv, "ZC:f:i:o:")) != -1) {
        switch (opt) {
        case 'Z':
            starttls = 1;
            break;
        case 'C':
            cafile = optarg;
            break;
        case 'f':
            flags = (int)strtoul(optarg, NULL, 0);
            break;
        case 'i':
            cookie_in = optarg;
            break;
        case 'o':
            cookie_out = optarg;
            break;
        default:
            goto usage;
        }
    }
    if (argc - optind < 6) {
        goto usage;
    }
    url = argv[optind];
    binddn = argv[optind + 1];
    pwfile = argv[optind + 2];
    base = argv[optind + 3];
    filter = argv[optind + 4];
    attrs = &argv[optind + 5];

    if (read_file(pwfile, &password, &password_len) != 0) {
        goto cleanup;
    }
    if (password_len > 0 && password[password_len - 1] == '\n') {
        password[--password_len] = '\0';
    }
    cookie.bv_val = empty; /* ber_printf "O" skips a NULL berval: send an empty cookie instead */
    if (cookie_in != NULL && access(cookie_in, F_OK) == 0) {
        if (read_file(cookie_in, &cookie_buf, &cookie_len) != 0) {
            goto cleanup;
        }
        cookie.bv_val = cookie_buf;
        cookie.bv_len = cookie_len;
    }

    rc = ldap_initialize(&ld, url);
    if (rc != LDAP_SUCCESS) {
        fprintf(stderr, "dirsync_read: bad URL %s: %s\n", url, ldap_err2string(rc));
        goto cleanup;
    }
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    /* AD answers with referrals to other naming contexts; chasing them would rebind anonymously. */
    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    if (cafile != NULL) {
        int demand = LDAP_OPT_X_TLS_DEMAND, newctx = 0;

        ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, cafile);
        ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
        ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newctx);
    }
    if (starttls) {
        rc = ldap_start_tls_s(ld, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            print_ldap_error(ld, "StartTLS", rc);
            goto cleanup;
        }
    }
    cred.bv_val = password;
    cred.bv_len = password_len;
    rc = ldap_sasl_bind_s(ld, binddn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
    if (rc != LDAP_SUCCESS) {
        print_ldap_error(ld, "simple bind", rc);
        goto cleanup;
    }

    for (rounds = 0; rounds < MAX_ROUNDS; rounds++) {
        LDAPControl *ctrl = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL, *resp;
        LDAPMessage *res = NULL, *msg;
        int err = LDAP_SUCCESS, more = 0, zero = LDAP_SUCCESS;

        rc = ldap_create_dirsync_control(ld, flags, DIRSYNC_MAX_BYTES, &cookie, &ctrl);
        if (rc != LDAP_SUCCESS) {
            print_ldap_error(ld, "create DirSync control", rc);
            goto cleanup;
        }
        sctrls[0] = ctrl;
        rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, sctrls, NULL, NULL,
                               LDAP_NO_LIMIT, &res);
        ldap_control_free(ctrl);
        if (rc != LDAP_SUCCESS) {
            print_ldap_error(ld, "DirSync search", rc);
            ldap_msgfree(res);
            goto cleanup;
        }
        for (msg = ldap_first_entry(ld, res); msg != NULL; msg = ldap_next_entry(ld, msg)) {
            print_entry(ld, msg);
            entries++;
        }
        rc = ldap_parse_result(ld, res, &err, NULL, NULL, NULL, &rctrls, 1);
        if (rc != LDAP_SUCCESS || err != LDAP_SUCCESS) {
            print_ldap_error(ld, "DirSync result", rc != LDAP_SUCCESS ? rc : err);
            ldap_controls_free(rctrls);
            goto cleanup;
        }
        resp = ldap_control_find(LDAP_CONTROL_X_DIRSYNC, rctrls, NULL);
        if (resp == NULL) {
            fprintf(stderr, "dirsync_read: the server sent no DirSync response control\n");
            ldap_controls_free(rctrls);
            goto cleanup;
        }
        /* libldap 2.5 returns ld_errno from the parse, which may hold an older code: clear it. */
        ldap_set_option(ld, LDAP_OPT_RESULT_CODE, &zero);
        rc = ldap_parse_dirsync_control(ld, resp, &more, &next_cookie);
        ldap_controls_free(rctrls);
        if (rc != LDAP_SUCCESS) {
            print_ldap_error(ld, "parse DirSync response", rc);
            goto cleanup;
        }
        /* The parsed cookie is a copy ("{iio}"): caller frees with ber_memfree. */
        free(cookie_buf);
        cookie_buf = malloc(next_cookie.bv_len + 1);
        if (cookie_buf == NULL) {
            fprintf(stderr, "dirsync_read: out of memory\n");
            goto cleanup;
        }
        if (next_cookie.bv_len > 0) {
            memcpy(cookie_buf, next_cookie.bv_val, next_cookie.bv_len);
        }
        cookie.bv_val = cookie_buf;
        cookie.bv_len = next_cookie.bv_len;
        ber_memfree(next_cookie.bv_val);
        next_cookie.bv_val = NULL;
        if (!more) {
            break;
        }
    }
    if (rounds == MAX_ROUNDS) {
        fprintf(stderr, "dirsync_read: still more data after %d rounds; giving up\n", MAX_ROUNDS);
        goto cleanup;
    }
    if (cookie_out != NULL && write_file(cookie_out, cookie.bv_val, cookie.bv_len) != 0) {
        goto cleanup;
    }
    fprintf(stderr, "dirsync_read: %ld entries in %d round(s), cookie %lu bytes\n", entries, rounds + 1,
            (unsigned long)cookie.bv_len);
    exit_code = 0;
    goto cleanup;

usage:
    fprintf(stderr, "usage: dirsync_read [-Z] [-C cafile] [-f flags] [-i cookie_in] [-o cookie_out] "
                    "URL BINDDN PWFILE BASE FILTER ATTR...\n");
    exit_code = 2;

cleanup:
    if (ld != NULL) {
        ldap_unbind_ext_s(ld, NULL, NULL);
    }
    free(password);
    free(cookie_buf);
    return exit_code;
}
