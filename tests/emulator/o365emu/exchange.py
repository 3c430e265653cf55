"""Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand (and the cmdlet logic that
$batch reuses). Envelopes follow the contract (section 2); the README marks what is [observed]."""
import copy
import hashlib
import json
import re
import warnings

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from . import state, util
from .state import MAILBOX_TYPES, SYSTEM_MAILBOX

# BER (indefinite-length) PKCS#7 is valid input (contract section 6); cryptography parses it after a
# warning per value that would only clutter the emulator's log.
warnings.filterwarnings("ignore", message="PKCS#7 certificates could not be parsed as DER")

SERVER = "EMU01A001.PROD.OUTLOOK.COM"
BYTE_ARRAY_TYPE = "#Collection(Exchange.ByteArrayType)"
CERT_ATTRS = ("UserCertificate", "UserSMimeCertificate")

CMDLET_TYPES = {
    "Get-Mailbox": MAILBOX_TYPES, "Set-Mailbox": MAILBOX_TYPES,
    "Get-MailUser": {"MailUser", "GuestMailUser"}, "Set-MailUser": {"MailUser", "GuestMailUser"},
    "Get-MailContact": {"MailContact"}, "Set-MailContact": {"MailContact"},
    "Get-Recipient": None,
}
# parameter -> accepted Python types
GET_PARAMS = {"Identity": (str,), "Filter": (str,), "ResultSize": (str, int)}
SET_PARAMS = {"Identity": (str,), "UserCertificate": (list,), "UserSMimeCertificate": (list,),
              "IsExchangeCloudManaged": (bool,), "Confirm": (bool,), "Force": (bool,)}
PARAMS = {c: (SET_PARAMS if c.startswith("Set-") else GET_PARAMS) for c in CMDLET_TYPES}
PARAMS["Set-MailContact"] = {k: v for k, v in SET_PARAMS.items() if k != "IsExchangeCloudManaged"}

OUTPUT_FIELDS = ["Identity", "Name", "Alias", "DisplayName", "ExternalDirectoryObjectId", "Guid",
                 "UserPrincipalName", "PrimarySmtpAddress", "EmailAddresses", "RecipientType",
                 "RecipientTypeDetails", "IsDirSynced", "IsExchangeCloudManaged", "UserCertificate",
                 "UserSMimeCertificate"]


class ExError(Exception):
    """A cmdlet failure rendered as the contract's error envelope."""

    def __init__(self, status, code, ex_code, exc_class, message, outcome):
        super().__init__(message)
        self.status, self.code, self.ex_code, self.exc_class, self.message = status, code, ex_code, exc_class, message
        self.outcome = outcome

    def body(self):
        return {"error": {"code": self.code, "message": "Error executing cmdlet", "details": [
            {"code": "Client", "target": "", "message": "%s|%s|%s" % (self.ex_code, self.exc_class, self.message)}]}}


def request_error(status, code, message):
    """Errors before a cmdlet runs (bad JSON, headers): same envelope, no cmdlet details."""
    return status, {"error": {"code": code, "message": message, "details": [
        {"code": "Client", "target": "", "message": message}]}}


def not_found(identity):
    return ExError(404, "NotFound", "Ex6F9304", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
                   "The operation couldn't be performed because object '%s' couldn't be found on '%s'."
                   % (identity, SERVER), "NotFound")


def bad_param(message, outcome="InvalidParameter"):
    return ExError(400, "BadRequest", "Ex4F4B7C", "System.Management.Automation.ParameterBindingException",
                   message, outcome)


def validation(message, outcome):
    return ExError(400, "BadRequest", "ExB36D2D", "Microsoft.Exchange.Data.DataValidationException", message, outcome)


def _accepts_json(accept):
    """True when an Accept header lists application/json (parameters such as odata.metadata allowed)."""
    return any(p.split(";")[0].strip().lower() == "application/json" for p in accept.split(","))


def parse_request(raw, headers, cfg, domain):
    """Checks headers and body of one InvokeCommand call. Returns (cmdlet, params) or raises
    (status, body) through RequestError. `domain` is the tenant's domain (X-AnchorMailbox)."""
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise RequestError(*request_error(400, "BadRequest", "Header '%s' must have a string value."
                                              % util.truncate(str(k), 64)))
    ctype = (headers.get("Content-Type") or "").lower()
    if not ctype.startswith("application/json"):
        raise RequestError(*request_error(415, "UnsupportedMediaType",
                                          "Content-Type must be application/json, got '%s'." % util.truncate(ctype, 64)))
    if cfg["strict_headers"]:
        # What the ExchangeOnlineManagement module sends on every app-only call (contract section 2).
        want = "UPN:%s@%s" % (SYSTEM_MAILBOX, domain)
        anchor = headers.get("X-AnchorMailbox")
        if anchor != want:
            raise RequestError(*request_error(400, "BadRequest",
                                              "The X-AnchorMailbox header must be '%s' for app-only calls (got %s)."
                                              % (want, json.dumps(util.truncate(anchor, 128)))))
        if headers.get("X-ResponseFormat") != "json":
            raise RequestError(*request_error(400, "BadRequest", "The X-ResponseFormat header must be 'json'."))
        if not _accepts_json(headers.get("Accept") or ""):
            raise RequestError(*request_error(400, "BadRequest", "The Accept header must be application/json."))
        if not headers.get("client-request-id"):
            raise RequestError(*request_error(400, "BadRequest",
                                              "The client-request-id header is required by this emulator "
                                              "(strict_headers): send a UUID per request."))
    try:
        doc = util.strict_loads(raw)
    except ValueError as e:
        raise RequestError(*request_error(400, "BadRequest", "The request body is not valid JSON: %s." % e))
    ci = doc.get("CmdletInput") if isinstance(doc, dict) else None
    if not isinstance(ci, dict) or not isinstance(ci.get("CmdletName"), str):
        raise RequestError(*request_error(400, "BadRequest",
                                          "The request body must be {\"CmdletInput\":{\"CmdletName\":\"...\","
                                          "\"Parameters\":{...}}}."))
    cmdlet = ci["CmdletName"]
    params = ci.get("Parameters", {})
    if not isinstance(params, dict):
        raise RequestError(*request_error(400, "BadRequest", "CmdletInput.Parameters must be a JSON object."))
    hdr = headers.get("X-CmdletName")
    if not hdr:
        raise RequestError(*request_error(400, "BadRequest", "The X-CmdletName header is required."))
    if hdr.lower() != cmdlet.lower():
        raise RequestError(*request_error(400, "BadRequest", "The X-CmdletName header '%s' does not match "
                                          "CmdletInput.CmdletName '%s'." % (util.truncate(hdr, 64),
                                                                            util.truncate(cmdlet, 64))))
    return cmdlet, params


class RequestError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status, self.body = status, body


def canonical_cmdlet(name):
    for c in CMDLET_TYPES:
        if c.lower() == name.lower():
            return c
    return None


def check_params(cmdlet, params):
    allowed = PARAMS[cmdlet]
    seen = set()
    for k, v in params.items():
        # PowerShell binds parameter names case-insensitively, so Identity and identity are one parameter
        # given twice: a binding error, never "the last one wins".
        if k.lower() in seen:
            canon = next((a for a in allowed if a.lower() == k.lower().partition("@")[0]), k)
            raise bad_param("Cannot bind parameter because parameter '%s' is specified more than once. To provide "
                            "multiple values to parameters that can accept multiple values, use the array syntax."
                            % util.truncate(canon, 64), "DuplicateParameter")
        seen.add(k.lower())
        if "@" in k:
            base, _, ann = k.partition("@")
            if ann != "odata.type" or base not in allowed:
                raise bad_param("A parameter cannot be found that matches parameter name '%s'." % util.truncate(k, 64))
            continue
        canon = next((a for a in allowed if a.lower() == k.lower()), None)
        if canon is None:
            raise bad_param("A parameter cannot be found that matches parameter name '%s'." % util.truncate(k, 64))
        if not isinstance(v, allowed[canon]) or (isinstance(v, bool) and bool not in allowed[canon]):
            raise ExError(400, "BadRequest", "Ex4F4B7C",
                          "System.Management.Automation.ParameterBindingArgumentTransformationException",
                          "Cannot process argument transformation on parameter '%s'. Cannot convert value of type "
                          "%s to type %s." % (canon, type(v).__name__, "/".join(t.__name__ for t in allowed[canon])),
                          "InvalidType")


def _param(params, name):
    for k, v in params.items():
        if k.lower() == name.lower():
            return v
    return None


def decode_values(params, attr, cfg):
    """The DER values of a UserCertificate / UserSMimeCertificate parameter, checked."""
    raw = _param(params, attr)
    ann = _param(params, attr + "@odata.type")
    if cfg["require_odata_type"] and ann != BYTE_ARRAY_TYPE:
        raise bad_param("Parameter '%s' needs the annotation \"%s@odata.type\":\"%s\" (got %s)."
                        % (attr, attr, BYTE_ARRAY_TYPE, json.dumps(ann)), "InvalidType")
    if len(raw) > cfg["max_values"]:
        raise validation("The property '%s' can hold at most %d values; %d were supplied. Remove expired or "
                         "unusable certificates first." % (attr, cfg["max_values"], len(raw)), "TooManyValues")
    out = []
    for i, el in enumerate(raw):
        if not isinstance(el, dict) or set(el) != {"Data"} or not isinstance(el["Data"], str):
            raise ExError(400, "BadRequest", "Ex4F4B7C",
                          "System.Management.Automation.ParameterBindingArgumentTransformationException",
                          "Cannot process argument transformation on parameter '%s'. Element %d must be "
                          "{\"Data\":\"<base64>\"}." % (attr, i), "InvalidType")
        try:
            der = util.b64_decode_strict(el["Data"])
        except (ValueError, TypeError):
            raise ExError(400, "BadRequest", "Ex4F4B7C",
                          "System.Management.Automation.ParameterBindingArgumentTransformationException",
                          "Cannot process argument transformation on parameter '%s'. Element %d is not valid "
                          "base64." % (attr, i), "InvalidType")
        if not der or len(der) > cfg["max_value_bytes"]:
            raise validation("Value %d of '%s' is %d bytes; values must be 1..%d bytes."
                             % (i, attr, len(der), cfg["max_value_bytes"]), "ValueTooLarge")
        check_value(attr, i, der)
        out.append(der)
    return out


# MS-OXOABK 2.2.4.36 security settings (TAG, LENGTH incl. the 4-byte header, little-endian). Tags whose
# DATA is an X.509 certificate: 0x0003 KeyExchangeCertificate, 0x0004 ChainCertificate (2.2.4.36.10,
# may repeat), 0x0008 SignCertificate (2.2.4.36.9). The others carry no certificate (see README).
X509_TAGS = {0x0003, 0x0004, 0x0008}
TAGS = X509_TAGS | {0x0001, 0x0002, 0x0006, 0x0009, 0x000B, 0x0020, 0x0022}
REPEATABLE_TAGS = {0x0004}


def check_tagged(der):
    """Raises ValueError unless `der` is a sequence of known MS-OXOABK settings that fills the value
    exactly, no setting but ChainCertificate repeats, and it holds at least one certificate setting
    whose DATA parses as X.509."""
    pos, seen, certs = 0, set(), 0
    while pos < len(der):
        if pos + 4 > len(der):
            raise ValueError("truncated setting header at byte %d" % pos)
        tag = int.from_bytes(der[pos:pos + 2], "little")
        length = int.from_bytes(der[pos + 2:pos + 4], "little")
        if tag not in TAGS:
            raise ValueError("unknown tag 0x%04X at byte %d" % (tag, pos))
        if tag in seen and tag not in REPEATABLE_TAGS:
            raise ValueError("tag 0x%04X repeats" % tag)
        seen.add(tag)
        if length < 4 or pos + length > len(der):
            raise ValueError("setting 0x%04X has length %d past the value's end" % (tag, length))
        if tag in X509_TAGS:
            if length == 4:
                raise ValueError("certificate setting 0x%04X is empty" % tag)
            x509.load_der_x509_certificate(der[pos + 4:pos + length])
            certs += 1
        pos += length
    if not certs:
        raise ValueError("no certificate setting (0x0003, 0x0004 or 0x0008)")


def _ber_end(der, pos, depth=0):
    """Offset just past the BER/DER element starting at pos (definite or indefinite length); ValueError
    on a truncated or malformed encoding. Depth-bounded: indefinite lengths nest."""
    if depth > 32:
        raise ValueError("BER nested too deep")
    if pos + 2 > len(der):
        raise ValueError("truncated element")
    tag, i = der[pos], pos + 1
    if tag & 0x1F == 0x1F:  # high tag number form
        while True:
            if i >= len(der):
                raise ValueError("truncated tag")
            i += 1
            if not der[i - 1] & 0x80:
                break
    if i >= len(der):
        raise ValueError("truncated length")
    first = der[i]
    i += 1
    if first == 0x80:  # indefinite: constructed contents up to an end-of-contents (00 00)
        if not tag & 0x20:
            raise ValueError("indefinite length on a primitive element")
        while True:
            if i + 2 > len(der):
                raise ValueError("missing end-of-contents")
            if der[i] == 0 and der[i + 1] == 0:
                return i + 2
            i = _ber_end(der, i, depth + 1)
    if first & 0x80:
        n = first & 0x7F
        if n == 0 or n > 4 or i + n > len(der):
            raise ValueError("bad length field")
        length = int.from_bytes(der[i:i + n], "big")
        i += n
    else:
        length = first
    if i + length > len(der):
        raise ValueError("element longer than the value")
    return i + length


def check_pkcs7(der):
    """Raises ValueError unless `der` is one CMS/PKCS#7 element (DER or BER) and nothing after it:
    the outer length must account for every byte, then the SignedData must parse."""
    end = _ber_end(der, 0)
    if end != len(der):
        raise ValueError("%d bytes after the PKCS#7 element" % (len(der) - end))
    pkcs7.load_der_pkcs7_certificates(der)


def check_value(attr, i, der):
    try:
        if attr == "UserCertificate":
            x509.load_der_x509_certificate(der)
        elif der[0] == 0x30:
            check_pkcs7(der)
        else:
            check_tagged(der)
    except Exception:  # any parse failure is the client's input error
        kind = "an X.509 certificate (DER)" if attr == "UserCertificate" else \
            "a PKCS#7 SignedData (DER/BER) or the MS-OXOABK tagged format"
        raise validation("Value %d of '%s' is not %s." % (i, attr, kind), "InvalidValue")


FILTER_RE = re.compile(r"""\s*(\w+)\s+-(eq|ne|like)\s+(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)")\s*""", re.I)


def parse_filter(text, max_chars):
    if len(text) > max_chars:
        raise bad_param("Cannot bind parameter 'Filter' to the target. The filter is %d characters long; at most %d "
                        "are accepted." % (len(text), max_chars), "InvalidFilter")
    t = text.strip()
    while t.startswith("(") and t.endswith(")"):
        t = t[1:-1].strip()
    clauses = []
    for part in re.split(r"\s+-and\s+", t, flags=re.I):
        m = FILTER_RE.fullmatch(part.strip("() "))
        if not m:
            raise bad_param("Cannot bind parameter 'Filter' to the target. Exception setting \"Filter\": "
                            "\"Invalid filter syntax. For a description of the filter parameter syntax see the "
                            "command help. \"%s\" at position 1.\"" % util.truncate(text, 128), "InvalidFilter")
        value = m.group(3).replace("''", "'") if m.group(3) is not None else m.group(4).replace('""', '"')
        clauses.append((m.group(1), m.group(2).lower(), value))
    return clauses


def _field(r, prop):
    for k in r:
        if k.lower() == prop.lower():
            return k
    return None


def match_filter(r, clauses):
    for prop, op, value in clauses:
        k = _field(r, prop)
        v = r.get(k)
        vals = v if isinstance(v, list) else [v]
        if prop.lower() == "emailaddresses":
            vals = vals + [a.split(":", 1)[1] for a in v if ":" in a]
        svals = [("True" if x is True else "False" if x is False else str(x)).lower() for x in vals if x is not None]
        if op == "eq":
            ok = value.lower() in svals
        elif op == "ne":
            ok = value.lower() not in svals
        else:
            ok = any(util.glob_match(value, s) for s in svals)
        if not ok:
            return False
    return True


def output(r):
    o = {f: r.get(f) for f in OUTPUT_FIELDS}
    o["EmailAddresses@odata.type"] = "#Collection(String)"
    o["UserCertificate@odata.type"] = "#Collection(String)"
    o["UserSMimeCertificate@odata.type"] = "#Collection(String)"
    return o


def page_token(cmdlet, params, offset):
    h = hashlib.sha256(util.dumps([cmdlet.lower(), params])).hexdigest()[:16]
    return util.b64url_encode(util.dumps({"o": offset, "h": h}))


def read_token(cmdlet, params, tok):
    try:
        d = json.loads(util.b64url_decode(tok))
        if d["h"] == json.loads(util.b64url_decode(page_token(cmdlet, params, 0)))["h"] and \
                isinstance(d["o"], int) and not isinstance(d["o"], bool) and d["o"] >= 0:
            return d["o"]
    except (ValueError, KeyError, TypeError):
        pass
    raise bad_param("The $skiptoken is not valid for this request: send the same body to the @odata.nextLink URL.",
                    "InvalidSkipToken")


def invoke(tenant, cmdlet_name, params, ctx):
    """Runs one cmdlet against the tenant. ctx: {"base","tenant","skiptoken","request_id","now"}.
    Returns (status, body, meta); meta: cmdlet, identity, outcome, changes (journal entries)."""
    cmdlet = canonical_cmdlet(cmdlet_name)
    meta = {"cmdlet": cmdlet_name, "identity": None, "outcome": "ok", "changes": []}
    context = "%s/adminapi/beta/%s/$metadata#Collection(Exchange.GenericHashTable)" % (ctx["base"], ctx["tenant"])
    try:
        if cmdlet is None:
            raise ExError(400, "BadRequest", "Ex5D6F1B", "System.Management.Automation.CommandNotFoundException",
                          "The term '%s' is not recognized as a name of a cmdlet, function, script file, or "
                          "executable program." % cmdlet_name, "UnknownCmdlet")
        meta["cmdlet"] = cmdlet
        check_params(cmdlet, params)
        ident = _param(params, "Identity")
        meta["identity"] = ident
        types = CMDLET_TYPES[cmdlet]
        if cmdlet.startswith("Get-"):
            # Reads match on a snapshot taken under the lock and filter outside it: a slow -Filter or a
            # huge result never holds up other requests. An -Identity read copies only the recipients the
            # identity index names (O(matches), not O(tenant)).
            with tenant.lock:
                cfg = dict(tenant.config)
                pool = tenant.recipients if not isinstance(ident, str) else tenant.find_recipients(ident)
                snapshot = [copy.copy(r) for r in pool if types is None or r["RecipientTypeDetails"] in types]
            body = _get(snapshot, cmdlet, params, ident, ctx, context, cfg)
            return 200, body, meta
        with tenant.lock:
            return _set(tenant, cmdlet, params, types, ident, ctx, context, tenant.config, meta)
    except ExError as e:
        meta["outcome"] = e.outcome
        return e.status, e.body(), meta


def _candidates(tenant, types, ident):
    found = tenant.find_recipients(ident)
    return [r for r in found if types is None or r["RecipientTypeDetails"] in types]


def _get(recipients, cmdlet, params, ident, ctx, context, cfg):
    if ident is not None and _param(params, "Filter") is not None:
        raise bad_param("Parameter set cannot be resolved using the specified named parameters.", "InvalidParameter")
    if ident is not None:
        rs = state.match_identity(recipients, ident)
        if not rs:
            raise not_found(ident)
        if len(rs) > 1:
            raise ExError(400, "BadRequest", "Ex9B8AD1", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException",
                          "The operation couldn't be performed because '%s' matches multiple entries." % ident,
                          "Ambiguous")
    else:
        rs = recipients
        f = _param(params, "Filter")
        if f is not None:
            clauses = parse_filter(f, cfg["max_filter_chars"])
            for prop, _, _ in clauses:
                if _field(rs[0] if rs else {"ExternalDirectoryObjectId": 1}, prop) is None and \
                        prop.lower() not in {x.lower() for x in OUTPUT_FIELDS}:
                    raise bad_param("Cannot bind parameter 'Filter' to the target. Exception setting \"Filter\": "
                                    "\"'%s' is not a recognized filterable property.\"" % prop, "InvalidFilter")
            rs = [r for r in rs if match_filter(r, clauses)]
    size = _param(params, "ResultSize")
    limit = len(rs)
    if isinstance(size, int) or (isinstance(size, str) and size.lower() != "unlimited"):
        try:
            n = int(size)
        except ValueError:
            raise bad_param("Cannot process argument transformation on parameter 'ResultSize'. '%s' is not "
                            "'Unlimited' or a number." % util.truncate(size, 64), "InvalidType")
        if n < 1:
            raise bad_param("Cannot validate argument on parameter 'ResultSize'. The %d argument is less than the "
                            "minimum allowed range of 1. Supply an argument that is greater than or equal to 1 and "
                            "then try the command again." % n, "InvalidParameter")
        limit = min(limit, n)
    offset = read_token(cmdlet, params, ctx["skiptoken"]) if ctx.get("skiptoken") else 0
    page = cfg["exchange_page_size"]
    chunk = rs[offset:min(offset + page, limit)]
    body = {"@odata.context": context, "@adminapi.warnings": [], "value": [output(r) for r in chunk]}
    if offset + page < limit:
        body["@odata.nextLink"] = "%s/adminapi/beta/%s/InvokeCommand?%%24skiptoken=%s" % (
            ctx["base"], ctx["tenant"], page_token(cmdlet, params, offset + page))
    return body


def _set(tenant, cmdlet, params, types, ident, ctx, context, cfg, meta):
    if ident is None:
        raise bad_param("Cannot process command because of one or more missing mandatory parameters: Identity.",
                        "MissingParameter")
    rs = _candidates(tenant, types, ident)
    if not rs:
        raise not_found(ident)
    if len(rs) > 1:
        raise ExError(400, "BadRequest", "Ex9B8AD1", "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException",
                      "The operation couldn't be performed because '%s' matches multiple entries." % ident, "Ambiguous")
    r = rs[0]
    new_values = {}
    for attr in CERT_ATTRS:
        if _param(params, attr) is not None:
            new_values[attr] = decode_values(params, attr, cfg)
    cloud = _param(params, "IsExchangeCloudManaged")
    if new_values and r["IsDirSynced"] and not r["IsExchangeCloudManaged"]:
        attr = next(iter(new_values))
        raise ExError(400, "BadRequest", "Ex0A4D24", "Microsoft.Exchange.Data.Directory.ADScopeException",
                      "The operation on mailbox \"%s\" failed because it's out of the current user's write scope. "
                      "The action '%s', '%s', can't be performed on the object '%s' because the object is being "
                      "synchronized from your on-premises organization. This action should be performed on the "
                      "object in your on-premises organization." % (r["Identity"], cmdlet, attr, r["Identity"]),
                      "WriteScope")
    modified = False
    # In-place edits of unindexed fields only (state.INDEXED_FIELDS): the tenant's indexes stay valid.
    for attr, ders in new_values.items():
        before = [util.b64_decode_strict(v) for v in r[attr]]
        after_b64 = [util.b64_encode(d) for d in ders]
        unchanged = before == ders
        meta["changes"].append({"cmdlet": cmdlet, "identity": ident, "recipient": r["ExternalDirectoryObjectId"],
                                "primary_smtp": r["PrimarySmtpAddress"], "attribute": attr,
                                "before": [util.sha256_hex(d) for d in before],
                                "after": [util.sha256_hex(d) for d in ders], "unchanged": unchanged})
        if not unchanged:
            r[attr] = after_b64
            modified = True
    if cloud is not None and cloud != r["IsExchangeCloudManaged"]:
        meta["changes"].append({"cmdlet": cmdlet, "identity": ident, "recipient": r["ExternalDirectoryObjectId"],
                                "primary_smtp": r["PrimarySmtpAddress"], "attribute": "IsExchangeCloudManaged",
                                "before": [str(r["IsExchangeCloudManaged"])], "after": [str(cloud)],
                                "unchanged": False})
        r["IsExchangeCloudManaged"] = cloud
        modified = True
    warnings = []
    if not modified:
        # What Exchange prints for a write that changes nothing (an idempotent re-apply).
        warnings.append("The command completed successfully but no settings of '%s' have been modified."
                        % r["Identity"])
        meta["outcome"] = "unchanged"
    return 200, {"@odata.context": context, "@adminapi.warnings": warnings, "value": []}, meta
