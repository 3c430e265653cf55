"""Token endpoint: client secret and certificate assertions, and one negative test per AADSTS code of
the contract (section 1)."""
import base64
import json
import re
import time
import uuid

from conftest import EXO_SCOPE, GRAPH_SCOPE, EXPIRED_APP

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def claims_of(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def assert_aadsts(r, code, status, error, crid=None):
    """The Entra error body: error, error_description starting AADSTSnnnn:, error_codes, timestamp,
    trace_id, correlation_id (= client-request-id when sent)."""
    assert r.status == status, (r.status, r.raw)
    b = r.json()
    assert b["error"] == error
    assert b["error_description"].startswith("AADSTS%d: " % code), b["error_description"]
    assert b["error_codes"] == [code]
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", b["timestamp"])
    assert GUID.match(b["trace_id"]) and GUID.match(b["correlation_id"])
    # The layout of real bodies and of the docs' examples: the trace lines follow after CR LF.
    assert b["error_description"].endswith("\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (
        b["trace_id"], b["correlation_id"], b["timestamp"])), b["error_description"]
    if crid:
        assert b["correlation_id"] == crid
    return b


def test_secret_grants_exchange_token(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": EXO_SCOPE})
    assert r.status == 200
    b = r.json()
    assert b["token_type"] == "Bearer" and b["expires_in"] == 3599
    c = claims_of(b["access_token"])
    assert c["aud"] == "https://outlook.office365.com" and c["tid"] == emu.tid and c["appid"] == emu.cid
    assert c["exp"] - c["nbf"] == 3599 and "Exchange.ManageAsApp" in c["roles"]
    assert r.header("cache-control").startswith("no-store")


def test_graph_scope_gets_graph_audience(emu):
    c = claims_of(emu.secret_token(GRAPH_SCOPE))
    assert c["aud"] == "https://graph.microsoft.com"


def test_rs256_assertion_with_x5t(emu):
    r = emu.token_form(emu.assertion_form(emu.assertion("RS256")))
    assert r.status == 200, r.raw
    assert claims_of(r.json()["access_token"])["appidacr"] == "2"


def test_ps256_assertion_with_x5t_s256(emu):
    r = emu.token_form(emu.assertion_form(emu.assertion("PS256")))
    assert r.status == 200, r.raw


def test_tenant_by_domain_name(emu):
    a = emu.assertion(claims={"aud": "%s/contoso.onmicrosoft.com/oauth2/v2.0/token" % emu.url})
    r = emu.token_form(emu.assertion_form(a), tenant="contoso.onmicrosoft.com")
    assert r.status == 200, r.raw


def test_token_lifetime_is_configurable(emu):
    emu.admin("PUT", "/config", {"token_lifetime_s": 5})
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": EXO_SCOPE})
    assert r.json()["expires_in"] == 5


# --- one negative test per AADSTS code -------------------------------------------------------------

def test_1002012_scope_not_default(emu):
    crid = str(uuid.uuid4())
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": "https://outlook.office365.com/Exchange.ManageAsApp"},
                       headers={"client-request-id": crid})
    b = assert_aadsts(r, 1002012, 400, "invalid_scope", crid)
    assert "/.default suffixed to the resource identifier" in b["error_description"]


def test_500011_unknown_resource(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": "https://example.com/.default"})
    b = assert_aadsts(r, 500011, 400, "invalid_resource")
    assert "The resource principal named https://example.com was not found" in b["error_description"]


def test_70011_unknown_resource_by_configuration(emu):
    assert emu.admin("PUT", "/config", {"unknown_scope_code": 70011})[0] == 200
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": "https://foo.microsoft.com/.default"})
    b = assert_aadsts(r, 70011, 400, "invalid_scope")
    assert b["error_description"].startswith("AADSTS70011: The provided value for the input parameter 'scope' is "
                                             "not valid. The scope https://foo.microsoft.com/.default is not valid.")
    assert emu.admin("PUT", "/config", {"unknown_scope_code": 12345})[0] == 400


def test_900561_get_on_token_endpoint(emu):
    r = emu.curl("GET", emu.token_url)
    b = assert_aadsts(r, 900561, 400, "invalid_request")
    assert "Received a GET request" in b["error_description"]


def test_9000411_duplicated_parameters(emu):
    base = "grant_type=client_credentials&client_id=%s&scope=%s" % (emu.cid, EXO_SCOPE)
    for extra in ("&client_secret=a&client_secret=" + emu.secret, "&client_secret=" + emu.secret + "&scope=" + EXO_SCOPE):
        r = emu.curl("POST", emu.token_url, headers={"Content-Type": "application/x-www-form-urlencoded"},
                     data=base + extra)
        b = assert_aadsts(r, 9000411, 400, "invalid_request")
        assert "is duplicated" in b["error_description"]


def test_700022_two_resources(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": EXO_SCOPE + " " + GRAPH_SCOPE})
    assert_aadsts(r, 700022, 400, "invalid_scope")


def test_700016_unknown_app(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": str(uuid.uuid4()),
                        "client_secret": "x", "scope": EXO_SCOPE})
    b = assert_aadsts(r, 700016, 400, "unauthorized_client")
    assert "was not found in the directory" in b["error_description"]


def test_90002_unknown_tenant(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": EXO_SCOPE}, tenant="fabrikam.onmicrosoft.com")
    assert_aadsts(r, 90002, 400, "invalid_request")


def test_700027_unregistered_certificate(emu):
    a = emu.assertion(cert=emu.env["O365_OTHER_CERT_FILE"], key=emu.env["O365_OTHER_KEY_FILE"])
    b = assert_aadsts(emu.token_form(emu.assertion_form(a)), 700027, 401, "invalid_client")
    assert "The key was not found" in b["error_description"]


def test_700027_signature_by_another_key(emu):
    # x5t names the registered certificate, but the signature comes from an unrelated key.
    a = emu.assertion(key=emu.env["O365_OTHER_KEY_FILE"])
    b = assert_aadsts(emu.token_form(emu.assertion_form(a)), 700027, 401, "invalid_client")
    assert "did not match the expected signature" in b["error_description"]


def test_700027_ps256_needs_x5t_s256(emu):
    a = emu.assertion("PS256", header={"x5t": "AAAA"}, drop=("x5t#S256",))
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700027, 401, "invalid_client")


def test_700027_rs256_signature_under_ps256_header(emu):
    # Header says PS256 but the bytes are PKCS#1 v1.5: the padding is checked, not just the key.
    good = emu.assertion("RS256")
    h = {"alg": "PS256", "typ": "JWT", "x5t#S256": json.loads(base64.urlsafe_b64decode(
        emu.assertion("PS256").split(".")[0] + "=="))["x5t#S256"]}
    from conftest import b64url
    forged = b64url(json.dumps(h).encode()) + "." + good.split(".", 1)[1]
    assert_aadsts(emu.token_form(emu.assertion_form(forged)), 700027, 401, "invalid_client")


def test_700024_expired_assertion(emu):
    now = int(time.time())
    a = emu.assertion(claims={"nbf": now - 1200, "iat": now - 1200, "exp": now - 600})
    b = assert_aadsts(emu.token_form(emu.assertion_form(a)), 700024, 401, "invalid_client")
    assert "Current time:" in b["error_description"]


def test_700024_not_yet_valid(emu):
    now = int(time.time())
    a = emu.assertion(claims={"nbf": now + 900, "iat": now + 900, "exp": now + 1500})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700024, 401, "invalid_client")


def test_assertion_within_skew_is_accepted(emu):
    now = int(time.time())
    a = emu.assertion(claims={"nbf": now + 120, "iat": now + 120, "exp": now + 700})
    assert emu.token_form(emu.assertion_form(a)).status == 200


def test_700024_skew_is_configurable(emu):
    emu.admin("PUT", "/config", {"assertion_skew_s": 0})
    now = int(time.time())
    a = emu.assertion(claims={"nbf": now + 120, "iat": now + 120, "exp": now + 700})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700024, 401, "invalid_client")


def test_700024_lifetime_too_long(emu):
    now = int(time.time())
    a = emu.assertion(claims={"exp": now + 2 * 86400})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700024, 401, "invalid_client")


def test_700021_issuer_not_client_id(emu):
    a = emu.assertion(claims={"iss": str(uuid.uuid4())})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700021, 401, "invalid_client")


def test_700021_subject_not_client_id(emu):
    a = emu.assertion(claims={"sub": str(uuid.uuid4())})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700021, 401, "invalid_client")


def test_700023_audience_not_token_url(emu):
    a = emu.assertion(claims={"aud": "https://login.microsoftonline.com/%s/oauth2/v2.0/token" % emu.tid})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700023, 401, "invalid_client")


def test_7000215_wrong_secret(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": "nope",
                        "scope": EXO_SCOPE})
    assert_aadsts(r, 7000215, 401, "invalid_client")


def test_7000218_no_credential(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "scope": EXO_SCOPE})
    assert_aadsts(r, 7000218, 401, "invalid_client")


def test_7000222_expired_secret(emu):
    r = emu.token_form({"grant_type": "client_credentials", "client_id": EXPIRED_APP,
                        "client_secret": "expired-secret-value", "scope": EXO_SCOPE})
    b = assert_aadsts(r, 7000222, 401, "invalid_client")
    assert EXPIRED_APP in b["error_description"]


def test_90055_tenant_throttling_fault(emu):
    emu.admin("POST", "/faults", {"endpoint": "token", "action": "aadsts", "code": 90055, "retry_after": 7})
    r = emu.token_form({"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret,
                        "scope": EXO_SCOPE})
    assert_aadsts(r, 90055, 429, "temporarily_unavailable")
    assert r.header("retry-after") == "7"


def test_90055_from_throttling_model(emu):
    emu.admin("PUT", "/throttle", {"budget": 2, "window_s": 30, "apis": ["token"]})
    form = {"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret, "scope": EXO_SCOPE}
    assert emu.token_form(form).status == 200
    assert emu.token_form(form).status == 200
    r = emu.token_form(form)
    assert_aadsts(r, 90055, 429, "temporarily_unavailable")
    assert 1 <= int(r.header("retry-after")) <= 30


def test_temporarily_unavailable_outage(emu):
    emu.admin("POST", "/faults", {"endpoint": "token", "action": "status", "status": 503, "retry_after": 3,
                                  "count": 1})
    form = {"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret, "scope": EXO_SCOPE}
    r = emu.token_form(form)
    assert r.status == 503 and r.json()["error"] == "temporarily_unavailable"
    assert r.header("retry-after") == "3"
    assert emu.token_form(form).status == 200  # count: 1 -> the outage is over


def test_jti_reuse_rejected(emu):
    a = emu.assertion()
    assert emu.token_form(emu.assertion_form(a)).status == 200
    b = assert_aadsts(emu.token_form(emu.assertion_form(a)), 700027, 401, "invalid_client")
    assert "already used" in b["error_description"]


def test_50027_malformed_assertion(emu):
    assert_aadsts(emu.token_form(emu.assertion_form("not-a-jwt")), 50027, 400, "invalid_request")


def test_900144_missing_grant_type(emu):
    r = emu.token_form({"client_id": emu.cid, "client_secret": emu.secret, "scope": EXO_SCOPE})
    assert_aadsts(r, 900144, 400, "invalid_request")


def test_70003_unsupported_grant(emu):
    r = emu.token_form({"grant_type": "password", "client_id": emu.cid, "scope": EXO_SCOPE})
    assert_aadsts(r, 70003, 400, "unsupported_grant_type")


# --- client-assertion time claims ------------------------------------------------------------------

def test_assertion_non_finite_or_bad_times_get_the_envelope(emu):
    """NaN, Infinity, 1e400, huge ints, strings and booleans in exp/nbf: the real AADSTS envelope
    (never 200, never a 500)."""
    now = int(time.time())
    cases = ['"exp": NaN', '"exp": Infinity', '"exp": 1e400', '"exp": 1' + '0' * 30, '"exp": "%d"' % (now + 600),
             '"exp": true', '"nbf": -Infinity, "exp": %d' % (now + 600)]
    for exp in cases:
        raw = ('{"aud": "%s", "iss": "%s", "sub": "%s", "jti": "%s", "nbf": %d, %s}'
               % (emu.token_url, emu.cid, emu.cid, uuid.uuid4(), now, exp))
        r = emu.token_form(emu.assertion_form(emu.assertion(raw_claims=raw)))
        assert r.status in (400, 401), (exp, r.status, r.raw)
        assert r.json()["error_codes"][0] in (50027, 700024), (exp, r.raw)


def test_assertion_needs_nbf_or_iat(emu):
    now = int(time.time())
    a = emu.assertion(claims={"exp": now + 600}, drop=("nbf", "iat"))
    b = assert_aadsts(emu.token_form(emu.assertion_form(a)), 50027, 400, "invalid_request")
    assert "neither an nbf nor an iat" in b["error_description"]
    # iat alone is enough
    a = emu.assertion(claims={"exp": now + 600}, drop=("nbf",))
    assert emu.token_form(emu.assertion_form(a)).status == 200


def test_assertion_exp_before_nbf(emu):
    now = int(time.time())
    a = emu.assertion(claims={"nbf": now, "iat": now, "exp": now - 1})
    assert_aadsts(emu.token_form(emu.assertion_form(a)), 700024, 401, "invalid_client")


def test_assertion_exp_skew_boundary(emu):
    """exp 298 s ago is inside the 300 s skew, 302 s ago outside (kills a skew of 0 or doubled)."""
    now = int(time.time())
    inside = emu.assertion(claims={"nbf": now - 900, "iat": now - 900, "exp": now - 298})
    assert emu.token_form(emu.assertion_form(inside)).status == 200
    outside = emu.assertion(claims={"nbf": now - 900, "iat": now - 900, "exp": now - 302})
    assert_aadsts(emu.token_form(emu.assertion_form(outside)), 700024, 401, "invalid_client")


def test_jti_cache_is_bounded_and_evicts_by_expiry():
    from o365emu.tokens import JtiCache
    c = JtiCache(max_entries=3)
    for i in range(10):
        assert c.check_and_add(("app", str(i)), 1000 + i, now=0)
    assert len(c) <= 3
    assert not c.check_and_add(("app", "9"), 2000, now=0)   # still remembered: a replay
    assert c.check_and_add(("app", "late"), 5000, now=1500)  # everything before 1500 expired
    assert len(c) == 1


# --- assertion header: types, algorithms, PSS salt ---------------------------------------------------

def test_x5t_of_wrong_type_gets_the_envelope(emu):
    for bad, code in ((12345, 50027), (["a"], 50027), ("\u00e9\u00e9\u00e9", 700027)):
        a = emu.assertion(header={"x5t": bad})
        r = emu.token_form(emu.assertion_form(a))
        assert r.status in (400, 401) and r.json()["error_codes"] == [code], (bad, r.status, r.raw)


def test_algorithm_whitelist(emu):
    """alg none (no signature), HS256 keyed with the registered certificate, RS512: all 700027."""
    from conftest import b64url
    import hmac as _hmac
    import hashlib as _hashlib
    now = int(time.time())
    claims = {"aud": emu.token_url, "iss": emu.cid, "sub": emu.cid, "nbf": now, "iat": now, "exp": now + 600}
    good = emu.assertion()
    x5t = json.loads(base64.urlsafe_b64decode(good.split(".")[0] + "=="))["x5t"]
    der = emu.der(emu.env["O365_CLIENT_CERT_FILE"])
    pem = open(emu.env["O365_CLIENT_CERT_FILE"], "rb").read()
    for alg in ("none", "HS256-der", "HS256-pem"):
        c = dict(claims, jti=str(uuid.uuid4()))
        h = {"alg": alg.split("-")[0], "typ": "JWT", "x5t": x5t}
        si = b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(c).encode())
        sig = b"" if alg == "none" else _hmac.new(der if alg.endswith("der") else pem, si.encode(),
                                                   _hashlib.sha256).digest()
        r = emu.token_form(emu.assertion_form(si + "." + b64url(sig)))
        b = assert_aadsts(r, 700027, 401, "invalid_client")
        assert "Unsupported signing algorithm" in b["error_description"], alg
    rs512 = emu.assertion(header={"alg": "RS512"}, digest="sha512")
    b = assert_aadsts(emu.token_form(emu.assertion_form(rs512)), 700027, 401, "invalid_client")
    assert "Unsupported signing algorithm 'RS512'" in b["error_description"]


def test_ps256_salt_length_must_be_32(emu):
    for salt in (20, 64):
        a = emu.assertion("PS256", saltlen=salt)
        b = assert_aadsts(emu.token_form(emu.assertion_form(a)), 700027, 401, "invalid_client")
        assert "did not match the expected signature" in b["error_description"]
    assert emu.token_form(emu.assertion_form(emu.assertion("PS256", saltlen=32))).status == 200


def test_aud_is_the_configured_token_url_not_the_host_header(emu):
    evil = "https://evil.example/%s/oauth2/v2.0/token" % emu.tid
    a = emu.assertion(claims={"aud": evil})
    r = emu.token_form(emu.assertion_form(a), headers={"Host": "evil.example"})
    assert_aadsts(r, 700023, 401, "invalid_client")


# --- throttling keyed by a verified app only -------------------------------------------------------

def test_token_throttling_checks_the_app_first(emu):
    emu.admin("PUT", "/throttle", {"budget": 1, "window_s": 60, "apis": ["token"]})
    unknown = str(uuid.uuid4())
    for _ in range(3):
        r = emu.token_form({"grant_type": "client_credentials", "client_id": unknown, "client_secret": "x",
                            "scope": EXO_SCOPE})
        assert_aadsts(r, 700016, 400, "unauthorized_client")
    windows = emu.admin("GET", "/faults")[1]["throttle_windows"]
    assert all(w[0] != unknown for w in windows), windows
    form = {"grant_type": "client_credentials", "client_id": emu.cid, "client_secret": emu.secret, "scope": EXO_SCOPE}
    assert emu.token_form(form).status == 200
    assert_aadsts(emu.token_form(form), 90055, 429, "temporarily_unavailable")
