"""Exchange admin API: InvokeCommand reads and writes with state and journal, validation, write scope,
value limits and parsing, the error envelopes, Rate-Limit headers and paging."""
import base64
import hashlib
import json
import uuid

from conftest import byte_array, cert_value, pkcs7_value

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


def test_smime_tagged_format_accepted(emu):
    der = base64.b64decode(cert_value(emu))
    tagged = (0x3003).to_bytes(2, "little") + (len(der) + 4).to_bytes(2, "little") + der  # one TLV
    r = emu.invoke("Set-Mailbox", dict({"Identity": ALICE}, **byte_array("UserSMimeCertificate",
                                                                          [base64.b64encode(tagged).decode()])))
    assert r.status == 200, r.raw


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
