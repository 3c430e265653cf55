"""Tenant state: the tenant, its recipients and app registrations, the emulator's runtime
configuration and its clock. One lock guards everything; handlers hold it only briefly."""
import copy
import json
import threading
import time

from . import util

SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"

# Default resources (scope prefix -> token audience, API). Sovereign clouds: override in the seed.
DEFAULT_RESOURCES = {
    "https://outlook.office365.com": {"aud": "https://outlook.office365.com", "api": "exchange",
                                      "roles": ["Exchange.ManageAsApp"]},
    "https://graph.microsoft.com": {"aud": "https://graph.microsoft.com", "api": "graph",
                                    "roles": ["User.Read.All"]},
}

DEFAULT_CONFIG = {
    "token_lifetime_s": 3599,          # what Entra answers for app-only tokens (contract section 1)
    "assertion_skew_s": 300,           # Entra tolerates 5 minutes of clock skew on nbf/exp
    "assertion_max_lifetime_s": 86400, # emulator limit on exp - nbf of a client assertion
    "api_clock_skew_s": 300,           # APIs (IdentityModel's default ClockSkew) on access tokens
    "exchange_page_size": 1000,        # Get-* results per page before @odata.nextLink
    "graph_page_size": 100,            # Graph users per page before @odata.nextLink
    "max_values": 15,                  # UserCertificate / UserSMimeCertificate values per recipient
    "max_value_bytes": 32768,          # AD rangeUpper of userCertificate / userSMIMECertificate
    "exchange_batch_max": 10,
    "graph_batch_max": 20,
    "strict_headers": True,            # require X-AnchorMailbox and client-request-id on Exchange calls
    "require_odata_type": True,        # require "<Param>@odata.type":"#Collection(Exchange.ByteArrayType)"
    "retry_after_format": "seconds",   # or "http-date" (Retry-After: <IMF-fixdate>)
    "rate_limit_limit": 10000,         # Rate-Limit-Limit advertised when no throttling model is set
    "rate_limit_window_s": 60,
    # AADSTS code for a /.default scope of a resource the tenant does not know: 500011 (reference-error-codes,
    # InvalidResourceServicePrincipalNotFound) or 70011 (the client-credentials doc's error example).
    "unknown_scope_code": 500011,
    # Graph user properties whose `eq` filter needs ConsistencyLevel: eventual + $count=true. Default: the
    # filter table of learn.microsoft.com/graph/aad-advanced-queries (eq on onPremisesImmutableId is
    # "Advanced"); the user resource page says only "Supports $filter (eq, ...)". See README.
    "advanced_query_props": ["onPremisesImmutableId"],
    "max_connections": 64,             # concurrent API connections; beyond it a new one is closed at once
    "request_read_deadline_s": 30,     # whole request (TLS handshake, headers, body) must arrive within this
    "max_filter_chars": 2048,          # Exchange -Filter / Graph $filter length limit
}

CONFIG_CHOICES = {"unknown_scope_code": (500011, 70011), "retry_after_format": ("seconds", "http-date")}
# App roles the default resources know (token `roles` claim). An app without "roles" in the seed gets the
# default roles of each resource, so seeds written before roles existed keep working.

RECIPIENT_TYPES = {"UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox", "MailUser",
                   "MailContact", "GuestMailUser", "RemoteUserMailbox"}
MAILBOX_TYPES = {"UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox"}


class SeedError(Exception):
    pass


def _as_list(value, what):
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeedError("%s must be a list" % what)
    return value


def normalise_recipient(r, domain):
    """Fills derived fields of a seeded recipient and checks its types; raises SeedError naming the
    field and the fix."""
    if not isinstance(r, dict):
        raise SeedError("each recipient must be a JSON object")
    out = dict(r)
    name = out.get("UserPrincipalName") or out.get("PrimarySmtpAddress") or out.get("Name")
    if not name:
        raise SeedError("recipient needs UserPrincipalName, PrimarySmtpAddress or Name")
    rtd = out.setdefault("RecipientTypeDetails", "UserMailbox")
    if rtd not in RECIPIENT_TYPES:
        raise SeedError("recipient %s: RecipientTypeDetails '%s' is not one of %s"
                        % (name, rtd, sorted(RECIPIENT_TYPES)))
    out.setdefault("ExternalDirectoryObjectId", "" if rtd == "MailContact" and not r.get("ExternalDirectoryObjectId")
                   else util.new_guid())
    out.setdefault("Guid", util.new_guid())
    alias = (out.get("PrimarySmtpAddress") or name).split("@")[0]
    out.setdefault("Alias", alias)
    out.setdefault("Name", alias)
    out.setdefault("DisplayName", out["Name"])
    out.setdefault("Identity", out["Name"])
    out.setdefault("PrimarySmtpAddress", out.get("UserPrincipalName") or "%s@%s" % (alias, domain))
    addrs = _as_list(out.get("EmailAddresses"), "EmailAddresses")
    if not any(a.lower() == "smtp:" + out["PrimarySmtpAddress"].lower() for a in addrs):
        addrs = ["SMTP:" + out["PrimarySmtpAddress"]] + addrs
    out["EmailAddresses"] = addrs
    out.setdefault("RecipientType", {"MailUser": "MailUser", "MailContact": "MailContact",
                                     "GuestMailUser": "MailUser"}.get(rtd, "UserMailbox"))
    for flag in ("IsDirSynced", "IsExchangeCloudManaged"):
        v = out.setdefault(flag, False)
        if not isinstance(v, bool):
            raise SeedError("recipient %s: %s must be true or false" % (name, flag))
    for attr in ("UserCertificate", "UserSMimeCertificate"):
        vals = _as_list(out.get(attr), attr)
        for v in vals:
            try:
                util.b64_decode_strict(v)
            except (ValueError, TypeError):
                raise SeedError("recipient %s: %s values must be base64 strings" % (name, attr))
        out[attr] = list(vals)
    out.setdefault("onPremisesImmutableId", None)
    out.setdefault("onPremisesSecurityIdentifier", None)
    out.setdefault("mail", out["PrimarySmtpAddress"] if rtd != "MailContact" else None)
    return out


def normalise_app(a):
    if not isinstance(a, dict) or not a.get("client_id"):
        raise SeedError("each app needs a client_id")
    out = {"client_id": a["client_id"], "display_name": a.get("display_name", a["client_id"]),
           "secrets": [], "certificates": [], "resources": a.get("resources"), "roles": None}
    roles = a.get("roles")
    if roles is not None:
        # {"<resource prefix>": ["Exchange.ManageAsApp", ...]}: the app roles granted (admin-consented) to the
        # app on that resource, what Entra puts in the access token's `roles` claim.
        if not isinstance(roles, dict) or not all(isinstance(k, str) and isinstance(v, list) and
                                                  all(isinstance(x, str) for x in v) for k, v in roles.items()):
            raise SeedError("app %s: 'roles' must be {\"<resource, e.g. https://outlook.office365.com>\": "
                            "[\"Exchange.ManageAsApp\", ...]}" % a["client_id"])
        out["roles"] = {k.rstrip("/").lower(): list(v) for k, v in roles.items()}
    for s in _as_list(a.get("secrets"), "secrets"):
        if not isinstance(s, dict) or not isinstance(s.get("value"), str):
            raise SeedError("app %s: each secret needs a string 'value' (and optional 'expires' epoch seconds)"
                            % a["client_id"])
        out["secrets"].append({"value": s["value"], "expires": s.get("expires")})
    for c in _as_list(a.get("certificates"), "certificates"):
        if not isinstance(c, str):
            raise SeedError("app %s: certificates are PEM strings" % a["client_id"])
        out["certificates"].append(c)
    return out


def check_config_value(k, v):
    """Raises SeedError naming the key when v has the wrong type or is not one of the allowed values."""
    d = DEFAULT_CONFIG[k]
    if type(v) is not type(d):
        raise SeedError("config key '%s' must be a %s" % (k, type(d).__name__))
    if k in CONFIG_CHOICES and v not in CONFIG_CHOICES[k]:
        raise SeedError("config key '%s' must be one of %s" % (k, list(CONFIG_CHOICES[k])))
    if isinstance(v, list) and not all(isinstance(x, str) for x in v):
        raise SeedError("config key '%s' must be a list of strings" % k)
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        raise SeedError("config key '%s' must not be negative" % k)


def app_roles(app, resource_prefix, resource):
    """The roles claim of a token for `app` on a resource: the seed's roles for it, or the resource's
    default roles when the app lists none."""
    if app.get("roles") is None:
        return list(resource.get("roles", []))
    return list(app["roles"].get(resource_prefix.rstrip("/").lower(), []))


# Recipient fields with a lookup index (Tenant.lookup, Tenant.find_recipients). A recipient in
# Tenant.recipients changes these only through load() and upsert_recipient(), which keep the indexes
# current; in-place edits (Set-* cmdlets) touch only unindexed fields (certificates, IsExchangeCloudManaged).
IDENTITY_FIELDS = ("ExternalDirectoryObjectId", "Guid", "UserPrincipalName", "PrimarySmtpAddress", "Alias", "Name",
                   "DisplayName", "Identity")
EXACT_FIELDS = {"onPremisesImmutableId"}  # base64: compared byte for byte (Graph, see README)
INDEXED_FIELDS = IDENTITY_FIELDS + ("EmailAddresses", "mail", "onPremisesImmutableId", "onPremisesSecurityIdentifier")
IDENTITY = "*identity"  # the index of identity_keys(), what an Exchange -Identity value may name


def identity_keys(r):
    """Lower-cased values an Exchange -Identity may name `r` by (object id, GUID, UPN, any SMTP
    address, alias, name, display name, identity)."""
    keys = [r.get(f) for f in IDENTITY_FIELDS]
    keys += [a.split(":", 1)[1] for a in r["EmailAddresses"] if ":" in a]
    return {str(k).lower() for k in keys if k}


def field_keys(r, field):
    """Index keys of one field of `r`: lower-cased str() of the value (every element for EmailAddresses),
    the exact string for EXACT_FIELDS; no key for a missing (None) value."""
    if field == IDENTITY:
        return identity_keys(r)
    v = r.get(field)
    if field == "EmailAddresses":
        return {a.lower() for a in v or [] if isinstance(a, str)}
    if field in EXACT_FIELDS:
        return {v} if isinstance(v, str) else set()
    return set() if v is None else {str(v).lower()}


def lookup_key(field, value):
    """The index key a lookup of `value` in `field` uses (see field_keys)."""
    if field == IDENTITY:
        return value.strip().lower()
    return value if field in EXACT_FIELDS else value.lower()


class Tenant:
    """Everything the emulator knows. `lock` guards all fields. Lookups by the INDEXED_FIELDS go through
    per-field indexes ({field: {key: {position in recipients}}}) so a lookup costs O(matches), not
    O(tenant): rebuilt by load(), updated per recipient by upsert_recipient()."""

    def __init__(self):
        self.lock = threading.RLock()
        self.seed_doc = None
        self.config = dict(DEFAULT_CONFIG)
        self.clock_offset = 0.0
        self.load({"tenant_id": "00000000-0000-0000-0000-000000000000", "domain": "contoso.onmicrosoft.com"})

    # -- time ---------------------------------------------------------------------------------------
    def now(self):
        """The emulator's clock: wall time plus the admin-set offset (tests move time, never sleep)."""
        return time.time() + self.clock_offset

    # -- seeding ------------------------------------------------------------------------------------
    def load(self, doc, make_baseline=True):
        """Replaces the state from a seed document (see fixtures/tenant.json); raises SeedError."""
        if not isinstance(doc, dict):
            raise SeedError("the seed must be a JSON object")
        tid = doc.get("tenant_id")
        domain = doc.get("domain")
        if not isinstance(tid, str) or not isinstance(domain, str):
            raise SeedError("the seed needs 'tenant_id' (GUID) and 'domain' strings")
        recipients = [normalise_recipient(r, domain) for r in _as_list(doc.get("recipients"), "recipients")]
        apps = {}
        for a in _as_list(doc.get("apps"), "apps"):
            app = normalise_app(a)
            apps[app["client_id"]] = app
        resources = copy.deepcopy(doc.get("resources") or DEFAULT_RESOURCES)
        cfg = dict(DEFAULT_CONFIG)
        for k, v in (doc.get("config") or {}).items():
            if k not in DEFAULT_CONFIG:
                raise SeedError("unknown config key '%s'; known keys: %s" % (k, sorted(DEFAULT_CONFIG)))
            check_config_value(k, v)
            cfg[k] = v
        with self.lock:
            self.tenant_id = tid
            self.domain = domain
            self.extra_domains = [d.lower() for d in doc.get("extra_domains", [])]
            self.recipients = recipients
            self._index = {f: {} for f in INDEXED_FIELDS + (IDENTITY,)}
            for pos, r in enumerate(recipients):
                self._index_add(pos, r)
            self.apps = apps
            self.resources = resources
            self.config = cfg
            if make_baseline:
                self.seed_doc = copy.deepcopy(doc)

    def reset(self):
        with self.lock:
            self.load(copy.deepcopy(self.seed_doc), make_baseline=False)
            self.clock_offset = 0.0

    def knows_tenant(self, name):
        n = (name or "").lower()
        return n == self.tenant_id.lower() or n == self.domain.lower() or n in self.extra_domains

    def snapshot(self):
        with self.lock:
            return {"tenant_id": self.tenant_id, "domain": self.domain, "recipients": copy.deepcopy(self.recipients),
                    "apps": [{"client_id": a["client_id"], "secrets": len(a["secrets"]),
                              "certificates": len(a["certificates"])} for a in self.apps.values()],
                    "config": dict(self.config), "clock_offset": self.clock_offset}

    def upsert_recipient(self, r):
        """Adds or replaces (by ExternalDirectoryObjectId or PrimarySmtpAddress: the first recipient in
        order that has either) one recipient, keeping the indexes current."""
        with self.lock:
            rec = normalise_recipient(r, self.domain)
            candidates = set(self.lookup("PrimarySmtpAddress", rec["PrimarySmtpAddress"]))
            if rec.get("ExternalDirectoryObjectId"):
                candidates.update(self.lookup("ExternalDirectoryObjectId", rec["ExternalDirectoryObjectId"]))
            for i in sorted(candidates):
                old = self.recipients[i]
                same_id = rec.get("ExternalDirectoryObjectId") and \
                    old.get("ExternalDirectoryObjectId") == rec.get("ExternalDirectoryObjectId")
                if same_id or old["PrimarySmtpAddress"].lower() == rec["PrimarySmtpAddress"].lower():
                    self._index_remove(i, old)
                    self.recipients[i] = rec
                    self._index_add(i, rec)
                    return rec
            self.recipients.append(rec)
            self._index_add(len(self.recipients) - 1, rec)
            return rec

    def _index_add(self, pos, r):
        for field, index in self._index.items():
            for k in field_keys(r, field):
                index.setdefault(k, set()).add(pos)

    def _index_remove(self, pos, r):
        for field, index in self._index.items():
            for k in field_keys(r, field):
                ps = index.get(k)
                if ps is not None:
                    ps.discard(pos)
                    if not ps:
                        del index[k]

    def lookup(self, field, value):
        """Positions in `recipients` (ascending) whose `field` (one of INDEXED_FIELDS, or IDENTITY) equals
        the string `value`: case-insensitive, exact for EXACT_FIELDS, any element of EmailAddresses.
        Caller holds the lock."""
        if not isinstance(value, str):
            return []
        return sorted(self._index[field].get(lookup_key(field, value), ()))

    def set_config(self, changes):
        with self.lock:
            for k, v in changes.items():
                if k not in DEFAULT_CONFIG:
                    raise SeedError("unknown config key '%s'; known keys: %s" % (k, sorted(DEFAULT_CONFIG)))
                check_config_value(k, v)
                self.config[k] = v

    # -- identity resolution ------------------------------------------------------------------------
    def find_recipients(self, identity):
        """Recipients an Exchange -Identity value names (see match_identity), in tenant order, through the
        identity index. Caller holds the lock."""
        return [self.recipients[p] for p in self.lookup(IDENTITY, identity)]


def match_identity(recipients, identity):
    """Recipients of a list that an Exchange -Identity value names (object id, GUID, UPN, any SMTP
    address, alias, name, display name), case-insensitive as Exchange is. Scans the list: for a
    tenant's recipients use Tenant.find_recipients."""
    ident = identity.strip().lower()
    return [r for r in recipients if ident in identity_keys(r)]


def load_seed_file(path):
    with open(path, "r", encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise SeedError("%s:%d:%d: %s" % (path, e.lineno, e.colno, e.msg))
