"""Microsoft Graph v1.0 user lookups: GET /v1.0/users?$filter=...&$select=...&$top=..., GET
/v1.0/users/{id|userPrincipalName}. Identity resolution only: Graph v1.0 has no certificate attributes."""
import json
import re
import urllib.parse

from . import util

DEFAULT_SELECT = ["businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                  "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"]
EXTRA = ["onPremisesImmutableId", "onPremisesSecurityIdentifier", "proxyAddresses", "mailNickname",
         "onPremisesSyncEnabled", "accountEnabled", "userType"]
ALL_PROPS = DEFAULT_SELECT + EXTRA
FILTERABLE = {"id", "userprincipalname", "mail", "onpremisesimmutableid", "onpremisessecurityidentifier",
              "displayname", "mailnickname"}
CASE_SENSITIVE = {"onpremisesimmutableid"}  # base64: exact bytes (see README)


class GraphError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(code, message, now, request_id, client_request_id):
    inner = {"date": util.graph_date(now), "request-id": request_id}
    if client_request_id:
        inner["client-request-id"] = client_request_id
    return {"error": {"code": code, "message": message, "innerError": inner}}


def user_view(r):
    return {"businessPhones": [], "displayName": r.get("DisplayName"), "givenName": r.get("givenName"),
            "jobTitle": None, "mail": r.get("mail"), "mobilePhone": None, "officeLocation": None,
            "preferredLanguage": None, "surname": r.get("surname"), "userPrincipalName": r.get("UserPrincipalName"),
            "id": r.get("ExternalDirectoryObjectId"), "onPremisesImmutableId": r.get("onPremisesImmutableId"),
            "onPremisesSecurityIdentifier": r.get("onPremisesSecurityIdentifier"),
            "proxyAddresses": list(r.get("EmailAddresses", [])), "mailNickname": r.get("Alias"),
            "onPremisesSyncEnabled": True if r.get("IsDirSynced") else None, "accountEnabled": True,
            "userType": "Guest" if r.get("RecipientTypeDetails") == "GuestMailUser" else "Member"}


def is_user(r):
    """Graph lists a recipient as a user when it is no mail contact and has a directory object id."""
    return r.get("RecipientTypeDetails") != "MailContact" and bool(r.get("ExternalDirectoryObjectId"))


def users(tenant):
    """Every user's view, in tenant order (O(tenant): the lookups below use the tenant's indexes).
    Caller holds the lock."""
    return [user_view(r) for r in tenant.recipients if is_user(r)]


# $filter property (lower-case) -> the recipient field user_view() reads it from, i.e. the tenant index.
FILTER_FIELD = {"id": "ExternalDirectoryObjectId", "userprincipalname": "UserPrincipalName", "mail": "mail",
                "onpremisesimmutableid": "onPremisesImmutableId",
                "onpremisessecurityidentifier": "onPremisesSecurityIdentifier", "displayname": "DisplayName",
                "mailnickname": "Alias", "proxyaddresses": "EmailAddresses"}


def filtered_users(tenant, groups):
    """Views of the users matching parsed $filter groups, in tenant order. Each group's first clause
    picks candidates from the tenant's index (O(matches)); _matches then checks every clause, so the
    answer is exactly what filtering users() would give. Caller holds the lock."""
    positions = set()
    for group in groups:
        prop, value = group[0]
        for pos in tenant.lookup(FILTER_FIELD[prop], value):
            r = tenant.recipients[pos]
            if pos not in positions and is_user(r) and _matches(user_view(r), [group]):
                positions.add(pos)
    return [user_view(tenant.recipients[p]) for p in sorted(positions)]


def user_by_key(tenant, key):
    """The view of the first user (tenant order) whose id or userPrincipalName is `key`
    (case-insensitive), or None. Caller holds the lock."""
    k = key.lower()
    for pos in sorted(set(tenant.lookup("ExternalDirectoryObjectId", key)) |
                      set(tenant.lookup("UserPrincipalName", key))):
        u = user_view(tenant.recipients[pos])
        if is_user(tenant.recipients[pos]) and k in ((u["id"] or "").lower(), (u["userPrincipalName"] or "").lower()):
            return u
    return None


STR = r"'((?:[^']|'')*)'"
EQ_RE = re.compile(r"\s*(\w+)\s+eq\s+" + STR + r"\s*", re.I)
ANY_RE = re.compile(r"\s*proxyAddresses/any\(\s*(\w+)\s*:\s*(\w+)\s+eq\s+" + STR + r"\s*\)\s*", re.I)


def parse_filter(text):
    """[[clause, ...] (and), ...] (or); clause = (prop, value)."""
    groups = []
    for alt in re.split(r"\s+or\s+", text.strip(), flags=re.I):
        group = []
        for part in re.split(r"\s+and\s+", alt, flags=re.I):
            m = ANY_RE.fullmatch(part)
            if m:
                if m.group(1) != m.group(2):
                    raise GraphError(400, "BadRequest", "Invalid filter clause: the lambda variable '%s' is not "
                                     "defined." % m.group(2))
                group.append(("proxyaddresses", m.group(3).replace("''", "'")))
                continue
            m = EQ_RE.fullmatch(part)
            if not m:
                raise GraphError(400, "BadRequest", "Invalid filter clause: syntax error in '%s'." % part.strip())
            prop = m.group(1).lower()
            if prop not in FILTERABLE:
                raise GraphError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause "
                                 "specified for property '%s' of resource 'User'." % m.group(1))
            group.append((prop, m.group(2).replace("''", "'")))
        groups.append(group)
    return groups


def _matches(u, groups):
    lower = {k.lower(): v for k, v in u.items()}
    for group in groups:
        ok = True
        for prop, value in group:
            if prop == "proxyaddresses":
                ok = any(a.lower() == value.lower() for a in lower["proxyaddresses"])
            elif prop in CASE_SENSITIVE:
                ok = lower.get(prop) == value
            else:
                v = lower.get(prop)
                ok = v is not None and str(v).lower() == value.lower()
            if not ok:
                break
        if ok:
            return True
    return False


def _select(query):
    sel = query.get("$select")
    if sel is None:
        return DEFAULT_SELECT
    names = [s.strip() for s in sel.split(",") if s.strip()]
    out = []
    for n in names:
        canon = next((p for p in ALL_PROPS if p.lower() == n.lower()), None)
        if canon is None:
            raise GraphError(400, "BadRequest", "Could not find a property named '%s' on type "
                             "'microsoft.graph.user'." % n)
        out.append(canon)
    return out


ADVANCED_MSG = ("Operator 'eq' is not supported because the required parameters might be missing. Try adding "
                "$count=true query parameter and ConsistencyLevel:eventual header. Refer to "
                "https://aka.ms/graph-docs/advanced-queries for more information")
# Application permissions that allow GET /users (learn.microsoft.com/graph/api/user-list, Permissions).
READ_ROLES = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}


def get(tenant, path, query_string, base, headers=None):
    """Handles a Graph GET below /v1.0. `headers`: the request's (or the batch sub-request's) headers,
    case-insensitive get. Returns (status, body); raises GraphError."""
    headers = headers or {}
    try:
        query = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True, strict_parsing=False))
    except ValueError:
        raise GraphError(400, "BadRequest", "The query string is not valid.")
    for k in query:
        if k.startswith("$") and k not in ("$filter", "$select", "$top", "$skiptoken", "$count"):
            raise GraphError(400, "BadRequest", "Query option '%s' is not supported by this emulator." % k)
    sel = _select(query)
    with tenant.lock:
        page_default = tenant.config["graph_page_size"]
        advanced = {p.lower() for p in tenant.config["advanced_query_props"]}
        max_filter = tenant.config["max_filter_chars"]
    count = query.get("$count")
    if count is not None and count not in ("true", "false"):
        raise GraphError(400, "BadRequest", "Invalid value '%s' for $count; use true or false." % util.truncate(count, 32))
    eventual = (headers.get("ConsistencyLevel") or "").lower() == "eventual"
    m = re.fullmatch(r"/users/([^/]+)", path)
    if m:
        with tenant.lock:
            u = user_by_key(tenant, urllib.parse.unquote(m.group(1)))
        if u is not None:
            body = {"@odata.context": "%s/v1.0/$metadata#users(%s)/$entity" % (base, ",".join(sel))}
            body.update({p: u[p] for p in sel})
            return 200, body
        raise GraphError(404, "Request_ResourceNotFound", "Resource '%s' does not exist or one of its queried "
                         "reference-property objects are not present." % m.group(1))
    if path != "/users":
        raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % path.strip("/").split("/")[0])
    groups = None
    if "$filter" in query:
        if len(query["$filter"]) > max_filter:
            raise GraphError(400, "BadRequest", "The $filter is %d characters long; at most %d are accepted."
                             % (len(query["$filter"]), max_filter))
        groups = parse_filter(query["$filter"])
        needs = [p for g in groups for p, _ in g if p in advanced]
        if needs and not (eventual and count == "true"):
            # aad-advanced-queries, "Error handling": a property supported only in advanced queries without
            # ConsistencyLevel: eventual or $count=true is refused, not silently answered.
            raise GraphError(400, "Request_UnsupportedQuery", ADVANCED_MSG)
    with tenant.lock:
        found = users(tenant) if groups is None else filtered_users(tenant, groups)
    page = page_default
    if "$top" in query:
        try:
            page = int(query["$top"])
        except ValueError:
            page = 0
        if not 1 <= page <= 999:
            raise GraphError(400, "BadRequest", "Invalid page size specified: '%s'. Must be between 1 and 999 "
                             "inclusive." % query["$top"])
    offset = 0
    if "$skiptoken" in query:
        try:
            offset = json.loads(util.b64url_decode(query["$skiptoken"]))["o"]
        except (ValueError, KeyError, TypeError):
            raise GraphError(400, "BadRequest", "Invalid $skiptoken.")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise GraphError(400, "BadRequest", "Invalid $skiptoken.")
    chunk = found[offset:offset + page]
    ctx = "%s/v1.0/$metadata#users" % base + ("(%s)" % ",".join(sel) if "$select" in query else "")
    body = {"@odata.context": ctx}
    if count == "true" and eventual:
        # $count=true is honoured only with ConsistencyLevel: eventual; otherwise silently ignored
        # (aad-advanced-queries, "Error handling for advanced queries").
        body["@odata.count"] = len(found)
    body["value"] = [{p: u[p] for p in sel} for u in chunk]
    if offset + page < len(found):
        q = [(k, v) for k, v in query.items() if k != "$skiptoken"]
        q.append(("$skiptoken", util.b64url_encode(util.dumps({"o": offset + page}))))
        body["@odata.nextLink"] = "%s/v1.0/users?%s" % (base, urllib.parse.urlencode(q, quote_via=urllib.parse.quote))
    return 200, body
