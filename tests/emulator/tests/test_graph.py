"""Graph user lookups (identity resolution only), $select, paging, errors."""
import urllib.parse

BOB_ID = "5eed0002-0000-4000-8000-000000000002"


def q(filter_, select=None):
    s = "/users?$filter=" + urllib.parse.quote(filter_)
    if select:
        s += "&$select=" + select
    return s


def state_of(emu, upn):
    return emu.admin("GET", "/state/recipients/" + upn)[1]


def ids(r):
    assert r.status == 200, r.raw
    return [u["id"] for u in r.json()["value"]]


def test_by_immutable_id(emu):
    imm = state_of(emu, "bob@contoso.onmicrosoft.com")["onPremisesImmutableId"]
    r = emu.graph(q("onPremisesImmutableId eq '%s'" % imm, "id,userPrincipalName,mail,onPremisesImmutableId"))
    assert ids(r) == [BOB_ID]
    b = r.json()
    assert b["@odata.context"].endswith("/v1.0/$metadata#users(id,userPrincipalName,mail,onPremisesImmutableId)")
    assert set(b["value"][0]) == {"id", "userPrincipalName", "mail", "onPremisesImmutableId"}


def test_by_sid_upn_mail_proxy(emu):
    sid = state_of(emu, "bob@contoso.onmicrosoft.com")["onPremisesSecurityIdentifier"]
    assert ids(emu.graph(q("onPremisesSecurityIdentifier eq '%s'" % sid, "id"))) == [BOB_ID]
    assert ids(emu.graph(q("userPrincipalName eq 'BOB@contoso.onmicrosoft.com'", "id"))) == [BOB_ID]
    assert ids(emu.graph(q("mail eq 'bob@contoso.onmicrosoft.com'", "id"))) == [BOB_ID]
    assert ids(emu.graph(q("proxyAddresses/any(p:p eq 'smtp:bob@contoso.com')", "id"))) == [BOB_ID]
    assert ids(emu.graph(q("proxyAddresses/any(p:p eq 'smtp:nobody@contoso.com')", "id"))) == []


def test_default_select(emu):
    u = emu.graph(q("userPrincipalName eq 'bob@contoso.onmicrosoft.com'")).json()["value"][0]
    assert "onPremisesImmutableId" not in u and u["id"] == BOB_ID and "businessPhones" in u


def test_get_user_by_upn(emu):
    r = emu.graph("/users/bob@contoso.onmicrosoft.com?$select=id")
    assert r.status == 200 and r.json()["id"] == BOB_ID
    r = emu.graph("/users/nobody@contoso.onmicrosoft.com")
    assert r.status == 404 and r.json()["error"]["code"] == "Request_ResourceNotFound"


def test_errors(emu):
    r = emu.graph(q("jobTitle eq 'x'"))
    assert r.status == 400 and r.json()["error"]["code"] == "Request_UnsupportedQuery"
    r = emu.graph(q("userPrincipalName eq 'x'", "id,nosuch"))
    assert r.status == 400 and "Could not find a property named 'nosuch'" in r.json()["error"]["message"]
    r = emu.graph(q("userPrincipalName = 'x'"))
    assert r.status == 400 and r.json()["error"]["code"] == "BadRequest"
    r = emu.graph("/users?$top=0")
    assert r.status == 400


def test_paging(emu):
    emu.admin("PUT", "/config", {"graph_page_size": 4})
    url, seen = "/users?$select=id", []
    for _ in range(10):
        r = emu.graph(url)
        assert r.status == 200, r.raw
        seen += ids(r)
        nxt = r.json().get("@odata.nextLink")
        if not nxt:
            break
        url = nxt[len(emu.url) + len("/v1.0"):]
    users = [x for x in emu.admin("GET", "/state")[1]["recipients"] if x["RecipientTypeDetails"] != "MailContact"]
    assert seen == [x["ExternalDirectoryObjectId"] for x in users]
