"""Access tokens on every API call: missing, malformed, tampered, wrong audience, expired -> 401 in each
API's own shape."""
import base64
import json

from conftest import EXO_SCOPE, GRAPH_SCOPE

ALICE = "alice@contoso.onmicrosoft.com"


def assert_exo_401(r, reason):
    assert r.status == 401, (r.status, r.raw)
    assert r.raw == b""
    assert 'error="invalid_token"' in r.header("www-authenticate")
    assert reason in r.header("x-ms-diagnostics") and 'error_category="invalid_token"' in r.header("x-ms-diagnostics")


def assert_graph_401(r, message):
    assert r.status == 401, (r.status, r.raw)
    e = r.json()["error"]
    assert e["code"] == "InvalidAuthenticationToken" and e["message"] == message
    assert set(e["innerError"]) >= {"date", "request-id"}


def test_exchange_missing_token(emu):
    assert_exo_401(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": None}), "empty")


def test_exchange_rejects_graph_token(emu):
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + emu.secret_token(GRAPH_SCOPE)})
    assert_exo_401(r, "Invalid audience")


def test_graph_rejects_exchange_token(emu):
    r = emu.graph("/users", token=emu.secret_token(EXO_SCOPE))
    assert_graph_401(r, "Access token validation failure. Invalid audience.")


def test_graph_missing_and_malformed_token(emu):
    assert_graph_401(emu.graph("/users", headers={"Authorization": None}), "Access token is empty.")
    r = emu.graph("/users", headers={"Authorization": "Bearer abc.def"})
    assert r.status == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_tampered_token(emu):
    h, p, s = emu.secret_token(EXO_SCOPE).split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims["exp"] += 86400
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer %s.%s.%s" % (h, p2, s)})
    assert_exo_401(r, "Invalid signature")


def test_token_expires_on_both_apis(emu):
    exo, graph = emu.secret_token(EXO_SCOPE), emu.secret_token(GRAPH_SCOPE)
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).status == 200
    # 3599 s lifetime + 300 s API clock skew: one second past that, both APIs refuse the token.
    emu.admin("PUT", "/clock", {"offset_s": 3599 + 300 + 1})
    assert_exo_401(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + exo}),
                   "The token has expired" if False else "expired")
    assert_graph_401(emu.graph("/users", token=graph), "Access token has expired or is not yet valid.")


def test_short_lifetime_without_skew(emu):
    emu.admin("PUT", "/config", {"token_lifetime_s": 2, "api_clock_skew_s": 0})
    emu._tokens.clear()
    tok = emu.secret_token(EXO_SCOPE)
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + tok}).status == 200
    emu.admin("PUT", "/clock", {"offset_s": 3})
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + tok}).status == 401


def test_api_clock_skew_boundary(emu):
    """exp + 300 s skew: 2 s inside is accepted, 2 s outside refused, on both APIs (kills a skew of 0
    or a doubled skew)."""
    emu.admin("PUT", "/config", {"token_lifetime_s": 100})
    emu._tokens.clear()
    exo, graph = emu.secret_token(EXO_SCOPE), emu.secret_token(GRAPH_SCOPE)
    emu.admin("PUT", "/clock", {"offset_s": 100 + 300 - 2})
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + exo}).status == 200
    assert emu.graph("/users?$select=id", token=graph).status == 200
    emu.admin("PUT", "/clock", {"offset_s": 100 + 300 + 2})
    assert_exo_401(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + exo}), "expired")
    assert_graph_401(emu.graph("/users?$select=id", token=graph), "Access token has expired or is not yet valid.")


def test_api_nbf_boundary(emu):
    """A token used before its nbf: within the skew accepted, beyond it refused."""
    exo = emu.secret_token(EXO_SCOPE)
    emu.admin("PUT", "/clock", {"offset_s": -(300 - 2)})
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + exo}).status == 200
    emu.admin("PUT", "/clock", {"offset_s": -(300 + 2)})
    assert_exo_401(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": "Bearer " + exo}), "expired")


def test_url_tenant_and_token_tenant(emu):
    exo, graph_tok = emu.secret_token(EXO_SCOPE), emu.secret_token(GRAPH_SCOPE)
    h = {"Authorization": "Bearer " + exo}
    # A tenant the emulator does not know in the URL.
    url = emu.invoke_url.replace(emu.tid, "fabrikam.onmicrosoft.com")
    assert_exo_401(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers=h, url=url), "tenant")
    # The token was issued for another tenant (tid) than the one the URL names: reseed under a new id.
    doc = json.load(open(emu.env["O365_CLIENT_CERT_FILE"].rsplit("/", 1)[0] + "/seed.json"))
    doc["tenant_id"] = "0b0b0b0b-0000-4000-8000-00000000000b"
    assert emu.admin("POST", "/seed", doc)[0] == 200
    url = emu.invoke_url.replace(emu.tid, doc["tenant_id"])
    assert_exo_401(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers=h, url=url), "Invalid tenant")
    assert_graph_401(emu.graph("/users?$select=id", token=graph_tok), "Access token validation failure. Invalid tenant.")
