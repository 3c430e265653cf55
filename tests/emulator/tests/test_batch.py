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
