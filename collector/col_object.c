/*
 * col_object: a directory object read from an entry (see col_object.h).
 */
#include "col_object.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct bytes {
    unsigned char *p;
    size_t len;
} bytes;

typedef struct values {
    bytes *v;
    size_t n, cap;
    char *from; /* full attribute name the values came from (cert attributes: "userCertificate;binary") */
} values;

enum attr_id {
    A_GUID,
    A_UUID,
    A_CGUID,
    A_SID,
    A_UPN,
    A_MAIL,
    A_PROXY,
    A_SAM,
    A_UID,
    A_UCERT,
    A_SMIME,
    A_ISDEL,
    A_CSN,
    A_META,
    A_COUNT
};

static const char *const attr_names[A_COUNT] = {
    [A_GUID] = "objectGUID",
    [A_UUID] = "entryUUID",
    [A_CGUID] = "mS-DS-ConsistencyGuid",
    [A_SID] = "objectSid",
    [A_UPN] = "userPrincipalName",
    [A_MAIL] = "mail",
    [A_PROXY] = "proxyAddresses",
    [A_SAM] = "sAMAccountName",
    [A_UID] = "uid",
    [A_UCERT] = "userCertificate",
    [A_SMIME] = "userSMIMECertificate",
    [A_ISDEL] = "isDeleted",
    [A_CSN] = "entryCSN",
    [A_META] = "replPropertyMetaData",
};

/* Multi-valued attributes keep every value; the others keep their first. */
static bool multi_valued(enum attr_id a)
{
    return a == A_PROXY || a == A_UCERT || a == A_SMIME;
}

struct col_object {
    col_dir_kind kind;
    char *dn;
    char *id;
    char *sid;
    values attrs[A_COUNT];
    size_t total_bytes;
    col_stamp stamps[3];
    bool finished;
};

static const char *const ad_attrs[] = {"objectGUID",
                                       "mS-DS-ConsistencyGuid",
                                       "objectSid",
                                       "userPrincipalName",
                                       "mail",
                                       "proxyAddresses",
                                       "sAMAccountName",
                                       "userCertificate",
                                       "userSMIMECertificate",
                                       "isDeleted",
                                       "replPropertyMetaData",
                                       NULL};
static const char *const openldap_attrs[] = {
    "entryUUID",         "entryCSN", "uid", "mail", "userCertificate;binary", "userSMIMECertificate",
    "userPrincipalName", NULL};
static const char *const other_attrs[] = {
    "entryUUID",       "objectGUID",           "entryCSN", "uid", "mail", "userCertificate;binary",
    "userCertificate", "userSMIMECertificate", NULL};

/* libldap takes `char **attrs` but never writes them: the cast keeps the tables in read-only memory. */
static char **unconst(const char *const *p)
{
    return (char **)(uintptr_t)p;
}

char **col_object_attrs(col_dir_kind kind)
{
    switch (kind) {
    case COL_DIR_AD:
        return unconst(ad_attrs);
    case COL_DIR_OPENLDAP:
        return unconst(openldap_attrs);
    case COL_DIR_OTHER:
        break;
    }
    return unconst(other_attrs);
}

void col_guid_format_ad(const unsigned char g[16], char out[COL_GUID_STR_LEN])
{
    snprintf(out, COL_GUID_STR_LEN, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14],
             g[15]);
}

void col_uuid_format(const unsigned char u[16], char out[COL_GUID_STR_LEN])
{
    snprintf(out, COL_GUID_STR_LEN, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
}

cs_err *col_sid_format(const unsigned char *sid, size_t len, const char *dn, char out[COL_SID_STR_LEN])
{
    uint64_t authority = 0;
    size_t count, pos;
    int n;

    out[0] = '\0';
    if (dn == NULL)
        dn = "(unknown DN)";
    if (sid == NULL || len < 8)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: objectSid is %zu bytes, shorter than a SID's 8-byte header", dn,
                          sid == NULL ? (size_t)0 : len);
    count = sid[1];
    if (sid[0] != 1 || count > 15)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: objectSid has revision %u and %zu sub-authorities; expected revision 1 and at "
                          "most 15",
                          dn, sid[0], count);
    if (len != 8 + 4 * count)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: objectSid is %zu bytes but its %zu sub-authorities need %zu", dn, len, count,
                          8 + 4 * count);
    for (size_t i = 2; i < 8; i++)
        authority = authority << 8 | sid[i];
    n = snprintf(out, COL_SID_STR_LEN, "S-1-%llu", (unsigned long long)authority);
    pos = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < count && pos < COL_SID_STR_LEN; i++) {
        const unsigned char *p = sid + 8 + 4 * i;
        uint32_t sub = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        n = snprintf(out + pos, COL_SID_STR_LEN - pos, "-%lu", (unsigned long)sub);
        pos += n > 0 ? (size_t)n : 0;
    }
    return NULL;
}

cs_err *col_object_new(col_dir_kind kind, const char *dn, col_object **out)
{
    col_object *o = calloc(1, sizeof *o);

    *out = NULL;
    if (o == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading %s", dn ? dn : "an object");
    o->kind = kind;
    if (dn != NULL) {
        o->dn = strdup(dn);
        if (o->dn == NULL) {
            free(o);
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading %s", dn);
        }
    }
    *out = o;
    return NULL;
}

static bool name_is(const char *attr, const char *want)
{
    size_t n = strlen(want);
    return strncasecmp(attr, want, n) == 0 && (attr[n] == '\0' || attr[n] == ';');
}

cs_err *col_object_add_value(col_object *o, const char *attr, const void *val, size_t len)
{
    enum attr_id a;
    values *vs;
    bytes *b;

    for (a = 0; a < A_COUNT; a++) {
        if (name_is(attr, attr_names[a]))
            break;
    }
    if (a == A_COUNT)
        return NULL; /* not ours */
    vs = &o->attrs[a];
    if (a == A_UCERT || a == A_SMIME) {
        /* The same values may come under two names (userCertificate and userCertificate;binary): keep one. */
        if (vs->from == NULL) {
            vs->from = strdup(attr);
            if (vs->from == NULL)
                return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading %s", o->dn ? o->dn : "an object");
        } else if (strcasecmp(vs->from, attr) != 0) {
            return NULL;
        }
    }
    if (!multi_valued(a) && vs->n > 0)
        return NULL;
    if (vs->n >= COL_OBJECT_MAX_VALUES)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: %s has more than %d values; not supported",
                          o->dn ? o->dn : "(no DN)", attr, COL_OBJECT_MAX_VALUES);
    if (len > COL_OBJECT_MAX_BYTES - o->total_bytes)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0,
                          "%s: the object's values pass %u bytes at %s; not supported",
                          o->dn ? o->dn : "(no DN)", COL_OBJECT_MAX_BYTES, attr);
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 4;
        bytes *nv = realloc(vs->v, cap * sizeof *nv);
        if (nv == NULL)
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading %s", o->dn ? o->dn : "an object");
        vs->v = nv;
        vs->cap = cap;
    }
    b = &vs->v[vs->n];
    b->p = malloc(len + 1); /* +1: NUL-terminated so string attributes can be used as C strings */
    if (b->p == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading %s", o->dn ? o->dn : "an object");
    if (len > 0)
        memcpy(b->p, val, len);
    b->p[len] = '\0';
    b->len = len;
    vs->n++;
    o->total_bytes += len;
    return NULL;
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p != NULL && *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

cs_err *col_object_set_id(col_object *o, const char *object_id)
{
    char *id = lower_dup(object_id);
    if (id == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory setting the id of %s", o->dn ? o->dn : "an object");
    free(o->id);
    o->id = id;
    return NULL;
}

/* The first value as a C string (values are stored NUL-terminated), or NULL. */
static const char *str_of(const col_object *o, enum attr_id a)
{
    return o->attrs[a].n > 0 ? (const char *)o->attrs[a].v[0].p : NULL;
}

cs_err *col_object_finish(col_object *o)
{
    const char *dn = o->dn ? o->dn : "(no DN)";
    const values *g = &o->attrs[A_GUID];
    cs_err *err = NULL;

    if (g->n > 0) {
        char buf[COL_GUID_STR_LEN];
        if (g->v[0].len != 16)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: objectGUID is %zu bytes; a GUID has 16", dn,
                              g->v[0].len);
        col_guid_format_ad(g->v[0].p, buf);
        err = col_object_set_id(o, buf);
    } else if (o->attrs[A_UUID].n > 0) {
        const char *u = str_of(o, A_UUID);
        if (strlen(u) != 36)
            return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: entryUUID '%.40s' is not a 36-character UUID", dn,
                              u);
        err = col_object_set_id(o, u);
    } else if (o->id == NULL) {
        return cs_err_new(
            CS_ERR_INVALID_INPUT, 0,
            "%s: the entry has neither objectGUID nor entryUUID; the collector needs a stable id "
            "(allow the bind account to read them)",
            dn);
    }
    if (err != NULL)
        return err;
    if (o->attrs[A_SID].n > 0) {
        char buf[COL_SID_STR_LEN];
        err = col_sid_format(o->attrs[A_SID].v[0].p, o->attrs[A_SID].v[0].len, dn, buf);
        if (err != NULL)
            return err;
        free(o->sid);
        o->sid = strdup(buf);
        if (o->sid == NULL)
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory reading %s", dn);
    }
    memset(o->stamps, 0, sizeof o->stamps);
    if (o->attrs[A_META].n > 0) {
        const bytes *m = &o->attrs[A_META].v[0];
        col_stamp name, del;
        err = col_replmeta_find(m->p, m->len, dn, COL_ATTID_USER_CERTIFICATE,
                                &o->stamps[COL_STAMP_USER_CERTIFICATE]);
        if (err == NULL)
            err = col_replmeta_find(m->p, m->len, dn, COL_ATTID_USER_SMIME_CERTIFICATE,
                                    &o->stamps[COL_STAMP_USER_SMIME_CERTIFICATE]);
        if (err == NULL)
            err = col_replmeta_find(m->p, m->len, dn, COL_ATTID_NAME, &name);
        if (err == NULL)
            err = col_replmeta_find(m->p, m->len, dn, COL_ATTID_IS_DELETED, &del);
        if (err != NULL)
            return err;
        o->stamps[COL_STAMP_LIFECYCLE] = col_stamp_compare(&name, &del) >= 0 ? name : del;
    }
    o->finished = true;
    return NULL;
}

cs_err *col_object_from_entry(LDAP *ld, LDAPMessage *entry, col_dir_kind kind, col_object **out)
{
    char *dn = ldap_get_dn(ld, entry);
    char *attr = NULL;
    BerElement *ber = NULL;
    col_object *o = NULL;
    cs_err *err = NULL;

    *out = NULL;
    err = col_object_new(kind, dn, &o);
    if (err != NULL)
        goto cleanup;
    for (attr = ldap_first_attribute(ld, entry, &ber); attr != NULL && err == NULL;
         attr = ldap_next_attribute(ld, entry, ber)) {
        struct berval **vals = ldap_get_values_len(ld, entry, attr);
        for (size_t i = 0; vals != NULL && vals[i] != NULL && err == NULL; i++)
            err = col_object_add_value(o, attr, vals[i]->bv_val, vals[i]->bv_len);
        ldap_value_free_len(vals);
        ldap_memfree(attr);
    }
    if (attr != NULL)
        ldap_memfree(attr);
    if (err == NULL)
        err = col_object_finish(o);
    if (err == NULL) {
        *out = o;
        o = NULL;
    }
cleanup:
    ber_free(ber, 0);
    ldap_memfree(dn);
    col_object_free(o);
    return err;
}

void col_object_free(col_object *o)
{
    if (o == NULL)
        return;
    for (int a = 0; a < A_COUNT; a++) {
        for (size_t i = 0; i < o->attrs[a].n; i++)
            free(o->attrs[a].v[i].p);
        free(o->attrs[a].v);
        free(o->attrs[a].from);
    }
    free(o->dn);
    free(o->id);
    free(o->sid);
    free(o);
}

col_dir_kind col_object_kind(const col_object *o)
{
    return o->kind;
}

const char *col_object_dn(const col_object *o)
{
    return o->dn;
}

const char *col_object_id(const col_object *o)
{
    return o->id;
}

const unsigned char *col_object_guid(const col_object *o)
{
    return o->attrs[A_GUID].n > 0 && o->attrs[A_GUID].v[0].len == 16 ? o->attrs[A_GUID].v[0].p : NULL;
}

const unsigned char *col_object_consistency_guid(const col_object *o, size_t *len)
{
    if (o->attrs[A_CGUID].n == 0) {
        *len = 0;
        return NULL;
    }
    *len = o->attrs[A_CGUID].v[0].len;
    return o->attrs[A_CGUID].v[0].p;
}

const char *col_object_sid(const col_object *o)
{
    return o->sid;
}

const char *col_object_upn(const col_object *o)
{
    return str_of(o, A_UPN);
}

const char *col_object_mail(const col_object *o)
{
    return str_of(o, A_MAIL);
}

const char *col_object_sam_account_name(const col_object *o)
{
    return str_of(o, A_SAM);
}

const char *col_object_uid(const col_object *o)
{
    return str_of(o, A_UID);
}

const char *col_object_entry_csn(const col_object *o)
{
    return str_of(o, A_CSN);
}

size_t col_object_proxy_address_count(const col_object *o)
{
    return o->attrs[A_PROXY].n;
}

const char *col_object_proxy_address(const col_object *o, size_t i)
{
    return i < o->attrs[A_PROXY].n ? (const char *)o->attrs[A_PROXY].v[i].p : NULL;
}

bool col_object_is_deleted(const col_object *o)
{
    const char *v = str_of(o, A_ISDEL);
    return v != NULL && strcasecmp(v, "TRUE") == 0;
}

static const values *cert_values(const col_object *o, cs_cert_attr attr)
{
    return &o->attrs[attr == CS_CERT_ATTR_USER_CERTIFICATE ? A_UCERT : A_SMIME];
}

size_t col_object_cert_count(const col_object *o, cs_cert_attr attr)
{
    return cert_values(o, attr)->n;
}

const unsigned char *col_object_cert(const col_object *o, cs_cert_attr attr, size_t i, size_t *len)
{
    const values *vs = cert_values(o, attr);
    if (i >= vs->n) {
        *len = 0;
        return NULL;
    }
    *len = vs->v[i].len;
    return vs->v[i].p;
}

const col_stamp *col_object_stamp(const col_object *o, col_stamp_kind kind)
{
    return &o->stamps[kind];
}
