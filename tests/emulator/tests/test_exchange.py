"""Exchange admin API: InvokeCommand reads and writes with state and journal, validation, write scope,
value limits and parsing, the error envelopes, Rate-Limit headers and paging."""
import base64
import datetime
import hashlib
import json
import subprocess
import threading
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID, ObjectIdentifier

from conftest import ANCHOR, byte_array, cert_value, pkcs7_value

ALICE = "alice@contoso.onmicrosoft.com"
BOB = "bob@contoso.onmicrosoft.com"
ALICE_ID = "5eed0001-0000-4000-8000-000000000001"


def assert_ex_error(r, status, code, exc, text=None):
    assert r.status == status, (r.status, r.raw)
    e = r.json()["error"]
    assert e["code"] == code and e["message"] == "Error executing cmdlet"
    d = e["details"][0]
    assert d["code"] == "Client" and d["target"] == ""
    ex_code, cls, msg = d["message"].split("|", 2)
    assert ex_code.startswith("Ex") and cls == exc, d["message"]
    if text:
        assert text in msg, msg
    return msg


def assert_request_error(r, status, text):
    assert r.status == status, (r.status, r.raw)
    e = r.json()["error"]
    assert text in e["message"], e["message"]
    assert e["details"][0]["code"] == "Client"


def test_get_mailbox_by_identity(emu):
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE})
    assert r.status == 200
    b = r.json()
    assert b["@odata.context"].endswith("/adminapi/beta/%s/$metadata#Collection(Exchange.GenericHashTable)" % emu.tid)
    assert b["@adminapi.warnings"] == []
    [m] = b["value"]
    assert m["ExternalDirectoryObjectId"] == ALICE_ID and m["RecipientTypeDetails"] == "UserMailbox"
    assert m["UserCertificate@odata.type"] == "#Collection(String)"
    for h in ("rate-limit-limit", "rate-limit-remaining", "rate-limit-reset"):
        assert r.header(h) is not None and int(r.header(h)) >= 0


def test_get_by_filter_external_directory_object_id(emu):
    r = emu.invoke("Get-Recipient", {"Filter": "ExternalDirectoryObjectId -eq '%s'" % ALICE_ID})
    assert [v["PrimarySmtpAddress"] for v in r.json()["value"]] == [ALICE]


def test_get_mailuser_and_contact(emu):
    assert emu.invoke("Get-MailUser", {"Identity": "dave@partner.example"}).json()["value"][0]["RecipientTypeDetails"] == "MailUser"
    assert emu.invoke("Get-Recipient", {"Identity": "erin@external.example"}).json()["value"][0]["RecipientTypeDetails"] == "MailContact"


def test_not_found_envelope(emu):
    r = emu.invoke("Get-Mailbox", {"Identity": "dave@partner.example"})  # a MailUser is no mailbox
    msg = assert_ex_error(r, 404, "NotFound", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException")
    assert msg.startswith("The operation couldn't be performed because object 'dave@partner.example' couldn't be found")


def test_set_mailbox_writes_and_journals(emu):
    crid = str(uuid.uuid4())
    uc, sm = cert_value(emu), pkcs7_value(emu)
    params = {"Identity": ALICE}
    params.update(byte_array("UserCertificate", [uc]))
    params.update(byte_array("UserSMimeCertificate", [sm]))
    r = emu.invoke("Set-Mailbox", params, crid=crid)
    assert r.status == 200, r.raw
    assert r.json()["value"] == [] and r.json()["@adminapi.warnings"] == []
    got = emu.invoke("Get-Mailbox", {"Identity": ALICE}).json()["value"][0]
    assert got["UserCertificate"] == [uc] and got["UserSMimeCertificate"] == [sm]
    changes = emu.journal("change")
    assert [c["attribute"] for c in changes] == ["UserCertificate", "UserSMimeCertificate"]
    c = changes[0]
    assert c["request_id"] == crid and c["recipient"] == ALICE_ID and c["before"] == []
    assert c["after"] == [hashlib.sha256(base64.b64decode(uc)).hexdigest()] and c["unchanged"] is False
    reqs = [e for e in emu.journal("request") if e["endpoint"] == "exchange"]
    assert reqs[0]["request_id"] == crid and reqs[0]["cmdlet"] == "Set-Mailbox" and reqs[0]["status"] == 200


def test_identical_write_is_unchanged(emu):
    params = dict({"Identity": ALICE}, **byte_array("UserCertificate", [cert_value(emu)]))
    assert emu.invoke("Set-Mailbox", params).status == 200
    r = emu.invoke("Set-Mailbox", params)
    assert r.status == 200
    assert "no settings of" in r.json()["@adminapi.warnings"][0]
    changes = emu.journal("change")
    assert [c["unchanged"] for c in changes] == [False, True]
    assert changes[0]["after"] == changes[1]["before"] == changes[1]["after"]


def test_empty_list_clears(emu):
    assert emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [cert_value(emu)]))).status == 200
    assert emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", []))).status == 200
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).json()["value"][0]["UserCertificate"] == []


def test_set_mailuser_and_mailcontact(emu):
    v = byte_array("UserSMimeCertificate", [pkcs7_value(emu)])
    assert emu.invoke("Set-MailUser", dict({"Identity": "dave@partner.example"}, **v)).status == 200
    assert emu.invoke("Set-MailContact", dict({"Identity": "erin@external.example"}, **v)).status == 200
    assert emu.invoke("Set-MailUser", dict({"Identity": ALICE}, **v)).status == 404


def test_write_scope_rejected_for_synced_not_cloud_managed(emu):
    r = emu.invoke("Set-Mailbox", dict({"Identity": BOB}, **byte_array("UserSMimeCertificate", [pkcs7_value(emu)])))
    msg = assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.Directory.ADScopeException")
    assert "out of the current user's write scope" in msg
    assert "The action 'Set-Mailbox', 'UserSMimeCertificate', can't be performed" in msg
    assert "synchronized from your on-premises organization" in msg
    assert emu.journal("change") == []
    assert emu.invoke("Get-Mailbox", {"Identity": BOB}).json()["value"][0]["UserSMimeCertificate"] == []


def test_cloud_managed_makes_synced_writable(emu):
    assert emu.invoke("Set-Mailbox", {"Identity": BOB, "IsExchangeCloudManaged": True}).status == 200
    r = emu.invoke("Set-Mailbox", dict({"Identity": BOB}, **byte_array("UserSMimeCertificate", [pkcs7_value(emu)])))
    assert r.status == 200, r.raw


def test_fifteen_values_accepted_sixteen_rejected(emu):
    v = cert_value(emu)
    assert emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [v] * 15))).status == 200
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [v] * 16)))
    assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.DataValidationException", "at most 15 values")


def test_user_certificate_must_parse_as_x509(emu):
    bad = base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [bad])))
    assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.DataValidationException", "not an X.509")
    # A PKCS#7 is no certificate either.
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [pkcs7_value(emu)])))
    assert r.status == 400


def test_smime_certificate_must_parse_as_pkcs7(emu):
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserSMimeCertificate", [cert_value(emu)])))
    assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.DataValidationException", "not a PKCS#7")


def tlv(tag, data):
    """One MS-OXOABK 2.2.4.36 setting: TAG, LENGTH (incl. the 4-byte header), both little-endian."""
    return tag.to_bytes(2, "little") + (len(data) + 4).to_bytes(2, "little") + data


def set_smime(emu, raw_values):
    return emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array(
        "UserSMimeCertificate", [base64.b64encode(v).decode() for v in raw_values])))


def test_smime_tagged_format_accepted(emu):
    der = base64.b64decode(cert_value(emu))
    # Version, KeyExchangeCertificate (0x0003), SignCertificate (0x0008), ChainCertificate (0x0004) twice.
    tagged = tlv(0x0001, b"\x01\x00\x00\x00") + tlv(0x0003, der) + tlv(0x0008, der) + tlv(0x0004, der) + tlv(0x0004, der)
    r = set_smime(emu, [tagged])
    assert r.status == 200, r.raw


def test_smime_tagged_format_is_checked(emu):
    der = base64.b64decode(cert_value(emu))
    bad = {"unknown tag": tlv(0x3003, der),
           "certificate element not X.509": tlv(0x0003, b"\x30\x03\x02\x01\x01"),
           "no certificate element": tlv(0x0001, b"\x01\x00\x00\x00"),
           "non-repeatable tag repeated": tlv(0x0003, der) + tlv(0x0003, der),
           "trailing bytes": tlv(0x0003, der) + b"\x01"}
    for why, value in bad.items():
        r = set_smime(emu, [value])
        assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.DataValidationException", "not a PKCS#7"), why


def test_pkcs7_with_trailing_garbage_refused(emu):
    p7 = base64.b64decode(pkcs7_value(emu))
    assert set_smime(emu, [p7]).status == 200
    for tail in (b"\x00", b"GARBAGE", p7):
        r = set_smime(emu, [p7 + tail])
        assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.DataValidationException", "not a PKCS#7")


def test_pkcs7_ber_indefinite_length_accepted(emu, tmp_path):
    # S/MIME signed "Empty Body" streamed: openssl writes BER with indefinite lengths.
    msg = tmp_path / "m.txt"
    msg.write_text("Empty Body")
    out = tmp_path / "s.der"
    subprocess.run(["openssl", "smime", "-sign", "-stream", "-nodetach", "-in", str(msg), "-signer",
                    emu.env["O365_CLIENT_CERT_FILE"], "-inkey", emu.env["O365_CLIENT_KEY_FILE"], "-outform", "DER",
                    "-out", str(out)], check=True, capture_output=True)
    ber = out.read_bytes()
    assert ber[1] == 0x80  # indefinite length
    assert set_smime(emu, [ber]).status == 200
    assert set_smime(emu, [ber + b"\x00\x00"]).status == 400


def test_byte_array_encoding_enforced(emu):
    v = cert_value(emu)
    r = emu.invoke("Set-Mailbox", {"Identity": ALICE, "UserCertificate": [{"Data": v}]})  # no @odata.type
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException", "@odata.type")
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **{"UserCertificate": [v],
                                       "UserCertificate@odata.type": "#Collection(Exchange.ByteArrayType)"}))
    assert r.status == 400 and "Data" in r.json()["error"]["details"][0]["message"]
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", ["!!notbase64"])))
    assert r.status == 400 and "base64" in r.json()["error"]["details"][0]["message"]


def test_malformed_json(emu):
    r = emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Set-Mailbox"), data="{not json")
    assert_request_error(r, 400, "not valid JSON")


def test_unknown_cmdlet(emu):
    r = emu.invoke("Remove-Mailbox", {"Identity": ALICE})
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.CommandNotFoundException", "Remove-Mailbox")


def test_unknown_parameter(emu):
    r = emu.invoke("Set-Mailbox", {"Identity": ALICE, "Bogus": 1})
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException",
                    "A parameter cannot be found that matches parameter name 'Bogus'.")


def test_wrong_type(emu):
    r = emu.invoke("Get-Mailbox", {"Identity": 42})
    assert_ex_error(r, 400, "BadRequest",
                    "System.Management.Automation.ParameterBindingArgumentTransformationException", "'Identity'")
    r = emu.invoke("Set-Mailbox", {"Identity": ALICE, "UserCertificate": "abc"})
    assert r.status == 400


def test_missing_identity_on_set(emu):
    r = emu.invoke("Set-Mailbox", byte_array("UserCertificate", []))
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException", "Identity")


def test_required_headers(emu):
    assert_request_error(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"X-CmdletName": None}),
                         400, "X-CmdletName")
    assert_request_error(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"X-CmdletName": "Set-Mailbox"}),
                         400, "does not match")
    assert_request_error(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"X-AnchorMailbox": None}),
                         400, "X-AnchorMailbox")
    assert_request_error(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"client-request-id": None}),
                         400, "client-request-id")
    assert_request_error(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Content-Type": "text/plain"}),
                         415, "application/json")


def test_bad_filter(emu):
    r = emu.invoke("Get-Recipient", {"Filter": "ExternalDirectoryObjectId = 'x'"})
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException", "Filter")


def test_paging_with_next_link(emu):
    emu.admin("PUT", "/config", {"exchange_page_size": 3})
    url, seen, pages = emu.invoke_url, [], 0
    while url:
        r = emu.invoke("Get-Mailbox", {"ResultSize": "Unlimited"}, url=url)
        assert r.status == 200, r.raw
        b = r.json()
        assert len(b["value"]) <= 3
        seen += [v["PrimarySmtpAddress"] for v in b["value"]]
        url = b.get("@odata.nextLink")
        pages += 1
        assert pages < 20
    state = emu.admin("GET", "/state")[1]["recipients"]
    expected = [r["PrimarySmtpAddress"] for r in state if r["RecipientTypeDetails"] == "UserMailbox"]
    assert seen == expected and pages == -(-len(expected) // 3)


def test_skiptoken_bound_to_request(emu):
    emu.admin("PUT", "/config", {"exchange_page_size": 2})
    nxt = emu.invoke("Get-Mailbox", {}).json()["@odata.nextLink"]
    r = emu.invoke("Get-Recipient", {}, url=nxt)
    assert r.status == 400


def test_never_a_traceback(emu):
    # A raw garbage request line and an oversized body both get JSON, not HTML or a Python trace.
    r = emu.curl("POST", emu.invoke_url, headers=dict(emu.exo_headers("Get-Mailbox"),
                                                      **{"Content-Length": str(64 * 1024 * 1024)}), data="{}")
    assert r.status in (413, 400) and b"Traceback" not in r.raw
    r = emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Get-Mailbox"), data=json.dumps([1, 2]))
    assert r.status == 400 and b"Traceback" not in r.raw
    r = emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Get-Mailbox"),
                 data=json.dumps({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": [1]}}))
    assert r.status == 400


# --- value limits -----------------------------------------------------------------------------------

def cert_of_size(n):
    """A self-signed Ed25519 certificate whose DER is exactly n bytes (padded by a private extension)."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "size test")])
    pad = n - 300
    for _ in range(10):
        der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(datetime.datetime(2024, 1, 1))
               .not_valid_after(datetime.datetime(2034, 1, 1))
               .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"A" * pad),
                              critical=False)
               .sign(key, None).public_bytes(serialization.Encoding.DER))
        if len(der) == n:
            return der
        pad += n - len(der)
    raise AssertionError("could not build a %d-byte certificate" % n)


def test_value_limit_is_32768_bytes(emu):
    ok = base64.b64encode(cert_of_size(32768)).decode()
    assert emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [ok]))).status == 200
    big = base64.b64encode(cert_of_size(32769)).decode()
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserCertificate", [big])))
    assert_ex_error(r, 400, "BadRequest", "Microsoft.Exchange.Data.DataValidationException", "1..32768 bytes")


def test_certificate_element_is_exactly_data(emu):
    v = cert_value(emu)
    for el in ({"Data": v, "Extra": 1}, {"data": v}, {}):
        r = emu.invoke("Set-Mailbox", {"Identity": ALICE, "UserCertificate": [el],
                                       "UserCertificate@odata.type": "#Collection(Exchange.ByteArrayType)"})
        assert_ex_error(r, 400, "BadRequest",
                        "System.Management.Automation.ParameterBindingArgumentTransformationException", "Data")


# --- -Filter: linear -like, length cap, snapshot ------------------------------------------------------

def test_like_pattern_is_linear_and_does_not_block_others(emu):
    """'********Q' made the regex matcher backtrack for 24 s under the tenant lock."""
    long_addr = "smtp:" + "a" * 3000 + "@contoso.com"
    emu.admin("POST", "/state/recipients", {"UserPrincipalName": "long@contoso.onmicrosoft.com",
                                            "EmailAddresses": [long_addr] * 5})
    results = {}

    def slow():
        results["like"] = emu.invoke("Get-Recipient", {"Filter": "EmailAddresses -like '********************Q'"})
    t = threading.Thread(target=slow)
    t0 = time.monotonic()
    t.start()
    other = emu.invoke("Get-Mailbox", {"Identity": ALICE})
    t.join(30)
    assert other.status == 200
    assert results["like"].status == 200 and results["like"].json()["value"] == []
    assert time.monotonic() - t0 < 5
    r = emu.invoke("Get-Recipient", {"Filter": "PrimarySmtpAddress -like 'ali*@*.onmicrosoft.*'"})
    assert [v["PrimarySmtpAddress"] for v in r.json()["value"]] == [ALICE]


def test_filter_length_is_capped(emu):
    f = "PrimarySmtpAddress -eq '%s'" % ("x" * 2100)
    r = emu.invoke("Get-Recipient", {"Filter": f})
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException", "at most 2048")


# --- parameters --------------------------------------------------------------------------------------

def test_duplicate_parameter_refused(emu):
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE, "identity": BOB}, **byte_array("UserCertificate", [])))
    assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException",
                    "parameter 'Identity' is specified more than once")
    assert emu.journal("change") == []
    # The same key twice in the JSON text (the last would silently win in most parsers).
    body = '{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{"Identity":"%s","Identity":"%s"}}}' % (ALICE, BOB)
    r = emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Get-Mailbox"), data=body)
    assert_request_error(r, 400, "duplicate key 'Identity'")


def test_result_size_must_be_positive(emu):
    for size in (-1, 0, "-5"):
        r = emu.invoke("Get-Mailbox", {"ResultSize": size})
        assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException", "ResultSize")
    assert emu.invoke("Get-Mailbox", {"ResultSize": 1}).status == 200


def test_negative_skiptoken_refused(emu):
    emu.admin("PUT", "/config", {"exchange_page_size": 2})
    nxt = emu.invoke("Get-Mailbox", {}).json()["@odata.nextLink"]
    tok = nxt.split("%24skiptoken=")[1]
    d = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    for o in (-2, True):
        d["o"] = o
        bad = base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).decode().rstrip("=")
        r = emu.invoke("Get-Mailbox", {}, url=nxt.split("?")[0] + "?%24skiptoken=" + bad)
        assert_ex_error(r, 400, "BadRequest", "System.Management.Automation.ParameterBindingException", "skiptoken")


# --- strict headers ---------------------------------------------------------------------------------

def test_strict_headers_are_exact(emu):
    wrong = {"X-AnchorMailbox": ["UPN:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@fabrikam.onmicrosoft.com",
                                 "UPN:admin@contoso.onmicrosoft.com", ANCHOR.lower(), ANCHOR[len("UPN:"):]],
             "X-ResponseFormat": [None, "xml"],
             "Accept": [None, "text/html", "application/xml"]}
    for h, values in wrong.items():
        for v in values:
            assert_request_error(emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={h: v}), 400, h)
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Accept": "application/json;odata.metadata=minimal"}).status == 200
    emu.admin("PUT", "/config", {"strict_headers": False})
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"X-AnchorMailbox": None, "Accept": None}).status == 200


# --- malformed requests get the envelope, never a 500 -----------------------------------------------

def test_deeply_nested_json_is_a_bad_request(emu):
    r = emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Get-Mailbox"), data="[" * 100000 + "]" * 100000)
    assert_request_error(r, 400, "not valid JSON")
    assert r.header("rate-limit-limit") is not None


def test_nan_in_body_is_a_bad_request(emu):
    body = '{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{"ResultSize":NaN}}}'
    assert_request_error(emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Get-Mailbox"), data=body),
                         400, "not valid JSON")


# --- Rate-Limit-* on every answer, Content-Length -----------------------------------------------------

def test_rate_limit_headers_on_400_401_and_403(emu):
    rs = [emu.curl("POST", emu.invoke_url, headers=emu.exo_headers("Get-Mailbox"), data="{not json"),
          emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"Authorization": None}),
          emu.invoke("Get-Mailbox", {"Identity": ALICE}, headers={"X-CmdletName": None})]
    assert [r.status for r in rs] == [400, 401, 400]
    for r in rs:
        for h in ("rate-limit-limit", "rate-limit-remaining", "rate-limit-reset"):
            assert r.header(h) is not None, (r.status, h)


def test_negative_content_length_is_400(emu):
    tok = emu.secret_token()
    for cl in ("-1", "+2", "1e3"):
        req = ("POST /adminapi/beta/%s/InvokeCommand HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n{}"
               % (emu.tid, tok, cl)).encode()
        status, headers, body = emu.raw(req)
        assert status == 400, (cl, status, body)
        assert "Content-Length" in json.loads(body)["error"]["message"]
        assert "rate-limit-limit" in headers


# --- app roles ---------------------------------------------------------------------------------------

def seed_with_roles(emu, roles):
    """The running seed with the test app's roles replaced (roles None: the resource defaults)."""
    doc = json.load(open(emu.env["O365_CLIENT_CERT_FILE"].rsplit("/", 1)[0] + "/seed.json"))
    for a in doc["apps"]:
        if a["client_id"] == emu.cid:
            if roles is None:
                a.pop("roles", None)
            else:
                a["roles"] = roles
    assert emu.admin("POST", "/seed", doc)[0] == 200


def test_exchange_needs_manage_as_app_role(emu):
    seed_with_roles(emu, {"https://outlook.office365.com": ["full_access_as_app"],
                          "https://graph.microsoft.com": ["User.Read.All"]})
    emu._tokens.clear()
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE})
    assert r.status == 403, r.raw
    e = r.json()["error"]
    assert e["code"] == "Unauthorized" and "Exchange.ManageAsApp" in e["message"]
    assert e["innererror"]["type"] == "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
    assert r.header("rate-limit-limit") is not None
    g = emu.graph("/users?$select=id")
    assert g.status == 200
    seed_with_roles(emu, {"https://outlook.office365.com": ["Exchange.ManageAsApp"]})
    emu._tokens.clear()
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).status == 200
    g = emu.graph("/users?$select=id")
    assert g.status == 403 and g.json()["error"]["code"] == "Authorization_RequestDenied"
