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


EVENTUAL = {"ConsistencyLevel": "eventual"}


def test_by_immutable_id(emu):
    imm = state_of(emu, "bob@contoso.onmicrosoft.com")["onPremisesImmutableId"]
    r = emu.graph(q("onPremisesImmutableId eq '%s'" % imm, "id,userPrincipalName,mail,onPremisesImmutableId")
                  + "&$count=true", headers=EVENTUAL)
    assert ids(r) == [BOB_ID]
    assert r.json()["@odata.count"] == 1
    b = r.json()
    assert b["@odata.context"].endswith("/v1.0/$metadata#users(id,userPrincipalName,mail,onPremisesImmutableId)")
    assert set(b["value"][0]) == {"id", "userPrincipalName", "mail", "onPremisesImmutableId"}


def test_immutable_id_needs_advanced_query_parameters(emu):
    """aad-advanced-queries' filter table: eq on onPremisesImmutableId is Advanced (ConsistencyLevel:
    eventual and $count=true); without either, 400 Request_UnsupportedQuery."""
    imm = state_of(emu, "bob@contoso.onmicrosoft.com")["onPremisesImmutableId"]
    f = q("onPremisesImmutableId eq '%s'" % imm, "id")
    for path, headers in ((f, None), (f + "&$count=true", None), (f, EVENTUAL), (f + "&$count=false", EVENTUAL)):
        r = emu.graph(path, headers=headers)
        assert r.status == 400 and r.json()["error"]["code"] == "Request_UnsupportedQuery", (path, headers, r.raw)
        assert "ConsistencyLevel:eventual" in r.json()["error"]["message"]
    # Configurable per property: with an empty list the default query works.
    emu.admin("PUT", "/config", {"advanced_query_props": []})
    assert ids(emu.graph(f)) == [BOB_ID]
    # And a property made advanced by configuration is refused without the parameters.
    emu.admin("PUT", "/config", {"advanced_query_props": ["userPrincipalName"]})
    r = emu.graph(q("userPrincipalName eq 'bob@contoso.onmicrosoft.com'", "id"))
    assert r.status == 400 and r.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_count_is_ignored_without_eventual(emu):
    r = emu.graph(q("userPrincipalName eq 'bob@contoso.onmicrosoft.com'", "id") + "&$count=true")
    assert ids(r) == [BOB_ID] and "@odata.count" not in r.json()


def test_immutable_id_is_case_sensitive(emu):
    imm = state_of(emu, "bob@contoso.onmicrosoft.com")["onPremisesImmutableId"]
    for variant, want in ((imm, [BOB_ID]), (imm.lower(), []), (imm.upper(), [])):
        r = emu.graph(q("onPremisesImmutableId eq '%s'" % variant, "id") + "&$count=true", headers=EVENTUAL)
        assert ids(r) == want, variant


def test_top_limit_is_999(emu):
    assert emu.graph("/users?$select=id&$top=999").status == 200
    r = emu.graph("/users?$select=id&$top=1000")
    assert r.status == 400 and "between 1 and 999" in r.json()["error"]["message"]


def test_negative_skiptoken_refused(emu):
    import base64
    import json
    for o in (-3, True, "x"):
        tok = base64.urlsafe_b64encode(json.dumps({"o": o}).encode()).decode().rstrip("=")
        r = emu.graph("/users?$select=id&$skiptoken=" + tok)
        assert r.status == 400 and r.json()["error"]["message"] == "Invalid $skiptoken.", o


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


def test_lookups_follow_tenant_changes(emu):
    """Graph and Exchange lookups answer from indexes the tenant keeps current: an upsert that renames a
    user, a new recipient and a reset are each seen by the next lookup, and an `or` filter still answers
    each user once, in tenant order."""
    zoe_id = "5eed00ff-0000-4000-8000-0000000000ff"
    bob = state_of(emu, "bob@contoso.onmicrosoft.com")
    assert emu.admin("POST", "/state/recipients", dict(bob, UserPrincipalName="robert@contoso.onmicrosoft.com"))[0] == 200
    assert ids(emu.graph(q("userPrincipalName eq 'bob@contoso.onmicrosoft.com'", "id"))) == []
    assert ids(emu.graph(q("userPrincipalName eq 'Robert@contoso.onmicrosoft.com'", "id"))) == [BOB_ID]
    assert emu.graph("/users/robert@contoso.onmicrosoft.com?$select=id").json()["id"] == BOB_ID
    assert emu.graph("/users/bob@contoso.onmicrosoft.com").status == 404
    [r] = emu.invoke("Get-Recipient", {"Identity": "ROBERT@contoso.onmicrosoft.com"}).json()["value"]
    assert r["ExternalDirectoryObjectId"] == BOB_ID

    zoe = {"UserPrincipalName": "zoe@contoso.onmicrosoft.com", "ExternalDirectoryObjectId": zoe_id,
           "EmailAddresses": ["smtp:zoe@contoso.com"]}
    assert emu.admin("POST", "/state/recipients", zoe)[0] == 200
    assert ids(emu.graph(q("proxyAddresses/any(p:p eq 'SMTP:zoe@contoso.com')", "id"))) == [zoe_id]
    both = "mail eq 'zoe@contoso.onmicrosoft.com' or id eq '%s' or userPrincipalName eq 'zoe@contoso.onmicrosoft.com'"
    assert ids(emu.graph(q(both % BOB_ID, "id"))) == [BOB_ID, zoe_id]
    [r] = emu.invoke("Get-Recipient", {"Identity": "zoe@contoso.com"}).json()["value"]
    assert r["ExternalDirectoryObjectId"] == zoe_id

    assert emu.admin("POST", "/reset")[0] == 200
    assert ids(emu.graph(q("userPrincipalName eq 'robert@contoso.onmicrosoft.com'", "id"))) == []
    assert ids(emu.graph(q("userPrincipalName eq 'bob@contoso.onmicrosoft.com'", "id"))) == [BOB_ID]
    assert ids(emu.graph(q("proxyAddresses/any(p:p eq 'smtp:zoe@contoso.com')", "id"))) == []
    assert emu.invoke("Get-Recipient", {"Identity": "zoe@contoso.com"}).status == 404
