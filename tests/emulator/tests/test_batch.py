"""$batch on Exchange (at most 10) and Graph (at most 20)."""
import json
import uuid

from conftest import ANCHOR, GRAPH_SCOPE, byte_array, cert_value

ALICE = "alice@contoso.onmicrosoft.com"


def exo_sub(emu, i, cmdlet, params):
    return {"id": str(i), "method": "POST", "url": "/adminapi/beta/%s/InvokeCommand" % emu.tid,
            "headers": {"X-CmdletName": cmdlet, "X-AnchorMailbox": ANCHOR, "client-request-id": str(uuid.uuid4()),
                        "Content-Type": "application/json"},
            "body": {"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}}}


def exo_batch(emu, reqs):
    h = emu.exo_headers("$batch")
    h.pop("X-CmdletName")
    return emu.curl("POST", emu.exo_batch_url, headers=h, data=json.dumps({"requests": reqs}))


def test_exchange_batch(emu):
    reqs = [exo_sub(emu, 1, "Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [cert_value(emu)]))),
            exo_sub(emu, 2, "Get-Mailbox", {"Identity": "nobody@contoso.onmicrosoft.com"}),
            exo_sub(emu, 3, "Set-Mailbox", dict({"Identity": "bob@contoso.onmicrosoft.com"},
                                                **byte_array("UserCertificate", [cert_value(emu)])))]
    r = exo_batch(emu, reqs)
    assert r.status == 200, r.raw
    res = {x["id"]: x for x in r.json()["responses"]}
    assert res["1"]["status"] == 200 and res["2"]["status"] == 404 and res["3"]["status"] == 400
    assert res["2"]["body"]["error"]["code"] == "NotFound"
    assert [c["identity"] for c in emu.journal("change")] == [ALICE]
    subs = [e for e in emu.journal("request") if e.get("batch_id")]
    assert [e["batch_id"] for e in subs] == ["1", "2", "3"]
    assert subs[0]["request_id"] == reqs[0]["headers"]["client-request-id"]


def test_exchange_batch_limit(emu):
    ok = exo_batch(emu, [exo_sub(emu, i, "Get-Mailbox", {"Identity": ALICE}) for i in range(10)])
    assert ok.status == 200 and len(ok.json()["responses"]) == 10
    r = exo_batch(emu, [exo_sub(emu, i, "Get-Mailbox", {"Identity": ALICE}) for i in range(11)])
    assert r.status == 400 and "at most 10" in r.json()["error"]["message"]


def graph_batch(emu, n):
    reqs = [{"id": str(i), "method": "GET",
             "url": "/users?$filter=userPrincipalName%20eq%20'alice@contoso.onmicrosoft.com'&$select=id"}
            for i in range(n)]
    h = {"Authorization": "Bearer " + emu.secret_token(GRAPH_SCOPE), "Content-Type": "application/json"}
    return emu.curl("POST", emu.url + "/v1.0/$batch", headers=h, data=json.dumps({"requests": reqs}))


def test_graph_batch_limit(emu):
    r = graph_batch(emu, 20)
    assert r.status == 200
    res = r.json()["responses"]
    assert len(res) == 20 and all(x["status"] == 200 and len(x["body"]["value"]) == 1 for x in res)
    r = graph_batch(emu, 21)
    assert r.status == 400 and r.json()["error"]["code"] == "BadRequest"


def test_batch_bad_shape(emu):
    r = exo_batch(emu, [{"id": "1"}])
    assert r.status == 400
    r = exo_batch(emu, [exo_sub(emu, 1, "Get-Mailbox", {}), exo_sub(emu, 1, "Get-Mailbox", {})])
    assert r.status == 400 and "unique" in r.json()["error"]["message"]


def graph_post(emu, body, ctype="application/json"):
    h = {"Authorization": "Bearer " + emu.secret_token(GRAPH_SCOPE), "Content-Type": ctype}
    return emu.curl("POST", emu.url + "/v1.0/$batch", headers=h,
                    data=body if isinstance(body, str) else json.dumps(body))


def test_graph_batch_urls_ids_and_headers(emu):
    imm = emu.admin("GET", "/state/recipients/bob@contoso.onmicrosoft.com")[1]["onPremisesImmutableId"]
    f = "$filter=onPremisesImmutableId%20eq%20'" + imm + "'&$select=id&$count=true"
    reqs = [{"id": "a", "method": "GET", "url": "users?$select=id&$top=1"},            # no leading slash
            {"id": "b", "method": "GET", "url": "/users?" + f, "headers": {"ConsistencyLevel": "eventual"}},
            {"id": "c", "method": "GET", "url": "/users?" + f}]                        # no ConsistencyLevel
    r = graph_post(emu, {"requests": reqs})
    assert r.status == 200, r.raw
    res = {x["id"]: x for x in r.json()["responses"]}
    assert res["a"]["status"] == 200 and len(res["a"]["body"]["value"]) == 1
    assert res["b"]["status"] == 200 and res["b"]["body"]["@odata.count"] == 1
    assert res["c"]["status"] == 400 and res["c"]["body"]["error"]["code"] == "Request_UnsupportedQuery"


def test_graph_batch_refusals(emu):
    one = {"id": "1", "method": "GET", "url": "/users?$select=id"}
    cases = {"absolute url": {"requests": [dict(one, url="https://graph.microsoft.com/v1.0/users")]},
             "ids differ only in case": {"requests": [dict(one, id="A"), dict(one, id="a")]},
             "non-string header": {"requests": [dict(one, headers={"ConsistencyLevel": 1})]},
             "body without Content-Type": {"requests": [dict(one, method="POST", body={})]}}
    for why, body in cases.items():
        r = graph_post(emu, body)
        assert r.status == 400 and r.json()["error"]["code"] == "BadRequest", (why, r.raw)
    r = graph_post(emu, {"requests": [one]}, ctype="text/plain")
    assert r.status == 400 and "Content-Type" in r.json()["error"]["message"]
    r = graph_post(emu, "[" * 100000)
    assert r.status == 400 and r.json()["error"]["code"] == "BadRequest"


def test_exchange_batch_malformed_sub_requests(emu):
    good = exo_sub(emu, 1, "Get-Mailbox", {"Identity": ALICE})
    r = exo_batch(emu, [dict(good, id="1", url="InvokeCommand"), dict(good, id="2", url="/x"),
                        dict(good, id="3", url="https://evil.example/adminapi/beta/%s/InvokeCommand" % emu.tid),
                        dict(good, id="4")])
    assert r.status == 200, r.raw
    st = {x["id"]: x["status"] for x in r.json()["responses"]}
    assert st == {"1": 400, "2": 400, "3": 400, "4": 200}
    for bad in ({"X-CmdletName": 5}, {"X-CmdletName": ["Get-Mailbox"]}):
        r = exo_batch(emu, [dict(good, headers=bad)])
        assert r.status == 400 and "string values" in r.json()["error"]["message"]
    h = emu.exo_headers("$batch")
    h.pop("X-CmdletName")
    r = emu.curl("POST", emu.exo_batch_url, headers=h, data="{\"requests\":" + "[" * 100000)
    assert r.status == 400 and r.json()["error"]["code"] == "BadRequest"
    assert r.header("rate-limit-limit") is not None
