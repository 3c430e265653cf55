/*
 * pub_graph / pub_resolver: OData string escaping, lookup URLs (percent-encoded $filter and $select), the
 * immutable id of an objectGUID, and the resolver cache's bound and TTL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <time.h>

#include "pub_graph.h"
#include "pub_resolver.h"

static void odata_quote_doubles_single_quotes(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 256);
    assert_true(pub_odata_quote(&b, "o'brien''x"));
    assert_string_equal(cs_buf_str(&b), "'o''brien''''x'");
    cs_buf_reset(&b);
    assert_true(pub_odata_quote(&b, ""));
    assert_string_equal(cs_buf_str(&b), "''");
    cs_buf_free(&b);
}

static void lookup_urls(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 8192);
    assert_null(pub_graph_build_url("https://graph.microsoft.com/", PUB_RESOLVE_IMMUTABLE_ID,
                                    "AgDt+/XgAAAECA==", &b));
    assert_string_equal(cs_buf_str(&b),
                        "https://graph.microsoft.com/v1.0/users?%24filter=onPremisesImmutableId%20eq%20"
                        "%27AgDt%2B%2FXgAAAECA%3D%3D%27&%24select=id%2CuserPrincipalName%2Cmail%2C"
                        "onPremisesImmutableId%2ConPremisesSecurityIdentifier&%24count=true");
    cs_buf_reset(&b);
    assert_null(pub_graph_build_url("https://g", PUB_RESOLVE_MAIL, "o'brien@contoso.com", &b));
    assert_non_null(strstr(cs_buf_str(&b),
                           "%24filter=proxyAddresses%2Fany%28p%3Ap%20eq%20%27smtp%3Ao%27%27brien%40"
                           "contoso.com%27%29&"));
    cs_buf_reset(&b);
    assert_null(pub_graph_build_url("https://g", PUB_RESOLVE_SID, "S-1-5-21-1-2-3-1102", &b));
    assert_non_null(strstr(cs_buf_str(&b), "onPremisesSecurityIdentifier%20eq%20%27S-1-5-21-1-2-3-1102%27"));
    cs_buf_reset(&b);
    assert_null(pub_graph_build_url("https://g", PUB_RESOLVE_UPN, "a b@c", &b));
    assert_non_null(strstr(cs_buf_str(&b), "userPrincipalName%20eq%20%27a%20b%40c%27"));
    cs_err *err = pub_graph_build_url("https://g", PUB_RESOLVE_UPN, "", &b);
    assert_non_null(err);
    cs_err_free(err);
    cs_buf_free(&b);
}

static void immutable_id_is_base64_of_guid_bytes(void **state)
{
    (void)state;
    /* The seed's bob: onPremisesImmutableId AgDtXgAAAECAAAAAAAAAAg== */
    const unsigned char guid[16] = {0x02, 0x00, 0xed, 0x5e, 0x00, 0x00, 0x00, 0x40,
                                    0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02};
    char id[25];
    assert_true(pub_graph_immutable_id(guid, id));
    assert_string_equal(id, "AgDtXgAAAECAAAAAAAAAAg==");
}

static void resolver_cache_is_bounded_with_ttl(void **state)
{
    (void)state;
    pub_resolve order[] = {PUB_RESOLVE_UPN};
    pub_resolver *r = NULL;
    assert_null(pub_resolver_new(order, 1, 3, 60000, NULL, NULL, &r));
    pub_recipient rec = {.identity = "id"}, got;
    char key[16];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(rec.identity, sizeof rec.identity, "id%d", i);
        pub_resolver_cache_put(r, key, &rec);
    }
    assert_int_equal(pub_resolver_cached(r), 3);
    assert_false(pub_resolver_cache_get(r, "k0", &got)); /* the oldest went */
    assert_false(pub_resolver_cache_get(r, "k1", &got));
    assert_true(pub_resolver_cache_get(r, "k4", &got));
    assert_string_equal(got.identity, "id4");
    /* Re-putting a key replaces it, not duplicates it. */
    snprintf(rec.identity, sizeof rec.identity, "new");
    pub_resolver_cache_put(r, "k4", &rec);
    assert_int_equal(pub_resolver_cached(r), 3);
    assert_true(pub_resolver_cache_get(r, "k4", &got));
    assert_string_equal(got.identity, "new");
    pub_resolver_forget(r, "k4");
    assert_false(pub_resolver_cache_get(r, "k4", &got));
    pub_resolver_free(r);

    /* TTL 0: every entry is already stale. */
    assert_null(pub_resolver_new(order, 1, 3, 0, NULL, NULL, &r));
    pub_resolver_cache_put(r, "k", &rec);
    assert_false(pub_resolver_cache_get(r, "k", &got));
    assert_int_equal(pub_resolver_cached(r), 0);
    pub_resolver_free(r);

    cs_err *err = pub_resolver_new(order, 0, 3, 0, NULL, NULL, &r);
    assert_non_null(err);
    cs_err_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(odata_quote_doubles_single_quotes),
        cmocka_unit_test(lookup_urls),
        cmocka_unit_test(immutable_id_is_base64_of_guid_bytes),
        cmocka_unit_test(resolver_cache_is_bounded_with_ttl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
