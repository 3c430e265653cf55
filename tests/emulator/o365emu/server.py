"""HTTP(S) plumbing: the API listener (token endpoint, Exchange, Graph) and routing, authentication,
faults, throttling and journaling around the pure logic of tokens.py, exchange.py and graph.py."""
import http.server
import json
import math
import socket
import ssl
import sys
import time
import traceback
import urllib.parse

from . import aadsts, exchange, graph, tokens, util
from .aadsts import AadError

MAX_BODY = 4 * 1024 * 1024
JSON_CT = "application/json; charset=utf-8"
EXO_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
GRAPH_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
EXO_WWW_AUTH = ('Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
                'token_types="app_asserted_user_v1 service_asserted_app_v1", '
                'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token"')


def log(level, msg, **fields):
    rec = {"ts": util.iso(time.time()), "level": level, "facility": "o365emu", "msg": msg}
    rec.update(fields)
    sys.stderr.write(json.dumps(rec) + "\n")
    sys.stderr.flush()


class Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


class Emulator:
    """Shared state of both listeners."""

    def __init__(self, tenant, journal, faults, authorities):
        self.tenant = tenant
        self.journal = journal
        self.faults = faults
        self.signer = tokens.Signer()
        self.jti = tokens.JtiCache()
        self.authorities = list(authorities)  # base URLs accepted in assertion aud, e.g. https://127.0.0.1:PORT
        self.startup_faults = []
        self.startup_throttle = None
        self.startup_config = {}

    def reset(self):
        self.tenant.reset()
        self.journal.clear()
        self.faults.reset()
        self.jti.clear()
        for r in self.startup_faults:
            self.faults.add(r)
        if self.startup_throttle:
            self.faults.set_throttle(self.startup_throttle)
        if self.startup_config:
            self.tenant.set_config(self.startup_config)


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "o365emu/1.0"
    sys_version = ""
    timeout = 60

    # --- plumbing ----------------------------------------------------------------------------------
    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as e:
                log("info", "tls handshake failed", peer=str(self.client_address), error=str(e))
                self.close_connection = True
                raise

    def log_message(self, fmt, *args):  # replaced by one JSON line per request
        pass

    def version_string(self):
        return self.server_version

    def date_time_string(self, timestamp=None):
        """The Date header follows the emulator's clock, so Retry-After dates agree with it."""
        return util.http_date(self.now())

    def send_error(self, code, message=None, explain=None):
        """Protocol-level errors (bad request line, unsupported method) as JSON, never HTML."""
        body = util.dumps({"error": {"code": "BadRequest" if code < 500 else "InternalServerError",
                                     "message": message or "bad request"}})
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", JSON_CT)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True

    @property
    def emu(self):
        return self.server.emu

    def base(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return ("https://" if self.server.tls else "http://") + host

    def now(self):
        return self.emu.tenant.now()

    def respond(self, status, body, content_type=JSON_CT, headers=None):
        data = b"" if body is None else (body if isinstance(body, bytes) else util.dumps(body))
        self.send_response(status)
        self.send_header("request-id", self.request_id)
        if self.client_request_id:
            self.send_header("client-request-id", self.client_request_id)
        if data:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.status = status

    def drop(self, partial):
        """Closes the socket mid-request: before any response byte, or after a truncated one."""
        try:
            if partial:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"va")
                self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True
        self.status = 0
        raise Dropped()

    def retry_after(self, seconds, fmt):
        fmt = fmt or self.emu.tenant.config["retry_after_format"]
        if fmt == "http-date":
            return util.http_date(self.now() + seconds)
        return str(int(seconds))

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise ValueError("chunked request bodies are not supported; send Content-Length")
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        try:
            n = int(n)
        except ValueError:
            raise ValueError("Content-Length is not a number")
        if n < 0 or n > MAX_BODY:
            raise ValueError("request body of %d bytes exceeds the limit of %d" % (n, MAX_BODY))
        return self.rfile.read(n)

    def dispatch(self):
        t0 = time.monotonic()
        self.status = 0
        self.client_request_id = self.headers.get("client-request-id")
        self.request_id = util.new_guid()
        self.jmeta = {"endpoint": "unknown", "app_id": None, "cmdlet": None, "identity": None, "outcome": None,
                      "fault": None}
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        try:
            try:
                body = self.read_body()
            except ValueError as e:
                self.close_connection = True
                self.respond(400 if "limit" not in str(e) else 413,
                             {"error": {"code": "BadRequest", "message": str(e)}})
                return
            self.route(path, url.query, body)
        except Dropped:
            pass
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception:  # never a traceback in a response: log it, answer 500 with the envelope
            log("error", "internal error", path=self.path, trace=traceback.format_exc())
            try:
                self.respond(500, {"error": {"code": "InternalServerError",
                                             "message": "o365emu internal error; see the emulator log"}})
            except OSError:
                pass
        finally:
            ms = int((time.monotonic() - t0) * 1000)
            m = self.jmeta
            self.emu.journal.add(self.now(), "request", request_id=self.client_request_id or self.request_id,
                                 client_request_id=self.client_request_id, endpoint=m["endpoint"],
                                 method=self.command, path=path, app_id=m["app_id"], cmdlet=m["cmdlet"],
                                 identity=m["identity"], status=self.status, outcome=m["outcome"],
                                 fault=m["fault"], batch_id=m.get("batch_id"), ms=ms)
            log("info", "request", method=self.command, path=path, status=self.status,
                request_id=self.client_request_id or self.request_id, endpoint=m["endpoint"], ms=ms)

    def route(self, path, query, body):
        parts = path.split("/")
        # /{tenant}/oauth2/v2.0/token
        if len(parts) == 5 and parts[2:] == ["oauth2", "v2.0", "token"]:
            self.jmeta["endpoint"] = "token"
            if self.command != "POST":
                return self.respond(405, {"error": "invalid_request", "error_description": "Use POST."})
            return self.token(parts[1], body)
        if len(parts) == 5 and parts[1:3] == ["adminapi", "beta"] and parts[4] in ("InvokeCommand", "$batch"):
            self.jmeta["endpoint"] = "exchange"
            if self.command != "POST":
                return self.respond(405, *exchange.request_error(405, "MethodNotAllowed", "Use POST.")[1:])
            if parts[4] == "InvokeCommand":
                return self.exo_invoke(parts[3], query, body)
            return self.exo_batch(parts[3], body)
        if path == "/v1.0/$batch" or path.startswith("/v1.0/"):
            self.jmeta["endpoint"] = "graph"
            if path == "/v1.0/$batch":
                if self.command != "POST":
                    return self.graph_error(405, "MethodNotAllowed", "Use POST for $batch.")
                return self.graph_batch(body)
            if self.command != "GET":
                return self.graph_error(405, "MethodNotAllowed", "This emulator serves Graph reads only.")
            return self.graph_get(path[len("/v1.0"):], query)
        return self.respond(404, {"error": {"code": "NotFound", "message": "No such endpoint: %s" % path}})

    # --- common checks -----------------------------------------------------------------------------
    def fault(self, endpoint, cmdlet=None, identities=()):
        """Applies a fault rule if one fires. Returns (status, retry_after, fmt) for status faults
        (the caller renders the body in its API's envelope), or None."""
        f = self.emu.faults.pick(endpoint, cmdlet, identities)
        if f is None:
            return None
        self.jmeta["fault"] = "%s#%d" % (f["action"], f["id"])
        if f["action"] == "delay":
            time.sleep(f["delay_ms"] / 1000.0)
            return None
        if f["action"] in ("drop", "partial"):
            self.drop(f["action"] == "partial")
        if f["action"] == "aadsts":
            return (f["code"], f.get("retry_after", 5), f.get("retry_after_format"))
        return (f["status"], f.get("retry_after", 5 if f["status"] == 429 else None), f.get("retry_after_format"))

    def throttle(self, app, api):
        cfg = self.emu.tenant.config
        ok, limit, remaining, reset = self.emu.faults.take(app, self.emu.tenant.tenant_id, api, self.now(),
                                                           cfg["rate_limit_limit"], cfg["rate_limit_window_s"])
        headers = {"Rate-Limit-Limit": str(limit), "Rate-Limit-Remaining": str(remaining),
                   "Rate-Limit-Reset": str(reset)}
        return ok, reset, headers

    # --- token endpoint ----------------------------------------------------------------------------
    def token(self, tenant_name, body):
        emu = self.emu
        now = self.now()
        trace = util.new_guid()
        corr = self.client_request_id or util.new_guid()
        authority = emu.authorities[0] if emu.authorities else self.base()
        no_store = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": trace}

        def aad_fail(code, fields, extra=None):
            status, b = aadsts.body(code, fields, now, trace, corr, authority)
            self.jmeta["outcome"] = "AADSTS%d" % code
            self.respond(status, b, JSON_CT, dict(no_store, **(extra or {})))

        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        self.jmeta["app_id"] = (form.get("client_id") or [None])[0]
        f = self.fault("token")
        if f is not None:
            code, ra, fmt = f
            extra = {"Retry-After": self.retry_after(ra, fmt)} if ra is not None else {}
            if code in aadsts.CATALOG:
                return aad_fail(code, {}, extra)
            # A plain status outage of the token endpoint: temporarily_unavailable (retry), per RFC 6749.
            return aad_fail(90033 if code >= 500 else 90055, {}, extra)
        if self.jmeta["app_id"]:
            ok, reset, _ = self.throttle(self.jmeta["app_id"], "token")
            if not ok:
                return aad_fail(90055, {}, {"Retry-After": self.retry_after(reset, None)})
        names = {tenant_name.lower(), emu.tenant.tenant_id.lower(), emu.tenant.domain.lower()}
        bases = set(a.rstrip("/").lower() for a in emu.authorities) | {self.base().lower()}
        token_urls = {"%s/%s/oauth2/v2.0/token" % (b, n) for b in bases for n in names}
        try:
            ok_body, cid = tokens.token_request(emu.tenant, emu.signer, emu.jti, tenant_name,
                                                self.headers.get("Content-Type"), body, token_urls)
        except AadError as e:
            return aad_fail(e.code, e.fields)
        self.jmeta["outcome"] = "ok"
        self.respond(200, ok_body, JSON_CT, no_store)

    # --- Exchange ----------------------------------------------------------------------------------
    def exo_auth(self, tenant_name):
        """Claims, or None after answering 401 (Exchange's shape: WWW-Authenticate + x-ms-diagnostics,
        empty body) [observed]."""
        try:
            claims = tokens.check_bearer(self.emu.tenant, self.emu.signer, self.headers.get("Authorization"),
                                         "exchange")
            if not self.emu.tenant.knows_tenant(tenant_name):
                raise tokens.AuthFailure("tenant", "The tenant in the URL does not match the token's tenant.")
        except tokens.AuthFailure as e:
            codes = {"missing": "2000001", "malformed": "2000001", "signature": "2000001", "audience": "2000003",
                     "expired": "2000008", "tenant": "2000003"}
            self.jmeta["outcome"] = "unauthorized:" + e.reason
            self.respond(401, None, headers={
                "WWW-Authenticate": EXO_WWW_AUTH,
                "x-ms-diagnostics": '%s;reason="%s";error_category="invalid_token"' % (codes[e.reason], e.message)})
            return None
        self.jmeta["app_id"] = claims.get("appid")
        return claims

    def exo_status_fault(self, f, rl_headers):
        status, ra, fmt = f
        headers = dict(rl_headers)
        if ra is not None:
            headers["Retry-After"] = self.retry_after(ra, fmt)
        code = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(status, "InternalServerError")
        msg = {429: "Too many requests; retry after the time in Retry-After."}.get(
            status, "The service is temporarily unavailable; retry later.")
        return status, exchange.request_error(status, code, msg)[1], headers

    def exo_one(self, tenant_name, query_skiptoken, raw, headers, claims):
        """One InvokeCommand (direct or inside $batch): (status, body, headers, meta)."""
        emu = self.emu
        cfg = emu.tenant.config
        meta = {"cmdlet": None, "identity": None, "outcome": None, "changes": []}
        try:
            cmdlet, params = exchange.parse_request(raw, headers, cfg)
        except exchange.RequestError as e:
            meta["outcome"] = "BadRequest"
            return e.status, e.body, {}, meta
        ident = next((v for k, v in params.items() if k.lower() == "identity"), None)
        meta["cmdlet"], meta["identity"] = cmdlet, ident if isinstance(ident, str) else None
        ids = []
        if isinstance(ident, str):
            ids.append(ident)
            with emu.tenant.lock:
                for r in emu.tenant.find_recipients(ident):
                    ids += [r.get("ExternalDirectoryObjectId"), r.get("PrimarySmtpAddress"), r.get("UserPrincipalName")]
        ok, reset, rl = self.throttle(claims.get("appid"), "exchange")
        f = self.fault("exchange", cmdlet, ids)
        if f is not None:
            status, body, h = self.exo_status_fault(f, rl)
            meta["outcome"] = "fault:%d" % status
            return status, body, h, meta
        if not ok:
            meta["outcome"] = "throttled"
            status, body, h = self.exo_status_fault((429, reset, None), rl)
            return status, body, h, meta
        ctx = {"base": self.base(), "tenant": tenant_name, "skiptoken": query_skiptoken,
               "request_id": headers.get("client-request-id") or self.request_id}
        status, body, m = exchange.invoke(emu.tenant, cmdlet, params, ctx)
        meta.update(m)
        for c in m["changes"]:
            emu.journal.add(self.now(), "change", request_id=ctx["request_id"], **c)
        return status, body, rl, meta

    def exo_invoke(self, tenant_name, query, raw):
        claims = self.exo_auth(tenant_name)
        if claims is None:
            return
        q = dict(urllib.parse.parse_qsl(query))
        status, body, headers, meta = self.exo_one(tenant_name, q.get("$skiptoken"), raw, self.headers, claims)
        self.jmeta.update({k: meta[k] for k in ("cmdlet", "identity", "outcome")})
        self.respond(status, body, EXO_CT, headers)

    def exo_batch(self, tenant_name, raw):
        claims = self.exo_auth(tenant_name)
        if claims is None:
            return
        self.jmeta["cmdlet"] = "$batch"
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.jmeta["outcome"] = "BadRequest"
            return self.respond(*exchange.request_error(400, "BadRequest", "The request body is not valid JSON: %s." % e))
        reqs = doc.get("requests") if isinstance(doc, dict) else None
        limit = self.emu.tenant.config["exchange_batch_max"]
        err = self.batch_shape_error(reqs, limit)
        if err:
            self.jmeta["outcome"] = "BadRequest"
            return self.respond(*exchange.request_error(400, "BadRequest", err))
        f = self.fault("exchange", "$batch")
        if f is not None:
            status, body, h = self.exo_status_fault(f, {})
            return self.respond(status, body, EXO_CT, h)
        responses = []
        outer = {k: v for k, v in self.headers.items()}
        for r in reqs:
            sub_headers = CaseDict(outer)
            sub_headers.update(r.get("headers") or {})
            sub_headers.setdefault_ci("Content-Type", "application/json")
            target = urllib.parse.urlsplit(r["url"])
            tparts = urllib.parse.unquote(target.path).split("/")
            if r["method"].upper() != "POST" or tparts[-1] != "InvokeCommand" or tparts[-2].lower() != tenant_name.lower():
                responses.append({"id": r["id"], "status": 400, "body": exchange.request_error(
                    400, "BadRequest", "Each batch request must be POST .../adminapi/beta/%s/InvokeCommand." % tenant_name)[1]})
                continue
            body = r.get("body")
            raw_sub = body.encode("utf-8") if isinstance(body, str) else util.dumps(body)
            q = dict(urllib.parse.parse_qsl(target.query))
            t0 = time.monotonic()
            status, sbody, h, meta = self.exo_one(tenant_name, q.get("$skiptoken"), raw_sub, sub_headers, claims)
            self.emu.journal.add(self.now(), "request", request_id=sub_headers.get("client-request-id") or self.request_id,
                                 client_request_id=sub_headers.get("client-request-id"), endpoint="exchange",
                                 method="POST", path=target.path, app_id=claims.get("appid"), cmdlet=meta["cmdlet"],
                                 identity=meta["identity"], status=status, outcome=meta["outcome"],
                                 fault=None, batch_id=r["id"], ms=int((time.monotonic() - t0) * 1000))
            responses.append({"id": r["id"], "status": status, "headers": h, "body": sbody})
        self.jmeta["outcome"] = "ok"
        _, _, rl = self.throttle_peek(claims.get("appid"))
        self.respond(200, {"responses": responses}, EXO_CT, rl)

    def throttle_peek(self, app):
        cfg = self.emu.tenant.config
        t = self.emu.faults.throttle
        if t is None or "exchange" not in t["apis"]:
            return True, 0, {"Rate-Limit-Limit": str(cfg["rate_limit_limit"]),
                             "Rate-Limit-Remaining": str(cfg["rate_limit_limit"]),
                             "Rate-Limit-Reset": str(cfg["rate_limit_window_s"])}
        w = self.emu.faults.windows.get((app, self.emu.tenant.tenant_id, "exchange"), [self.now(), 0])
        reset = max(1, math.ceil(w[0] + t["window_s"] - self.now()))
        return True, reset, {"Rate-Limit-Limit": str(t["budget"]),
                             "Rate-Limit-Remaining": str(max(0, t["budget"] - w[1])), "Rate-Limit-Reset": str(reset)}

    @staticmethod
    def batch_shape_error(reqs, limit):
        if not isinstance(reqs, list) or not reqs:
            return "The request body must be {\"requests\":[{\"id\",\"method\",\"url\",...}]} with at least one request."
        if len(reqs) > limit:
            return "The batch contains %d requests; at most %d are allowed." % (len(reqs), limit)
        ids = set()
        for r in reqs:
            if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("method"), str) \
                    or not isinstance(r.get("url"), str):
                return "Each batch request needs string 'id', 'method' and 'url'."
            if r["id"] in ids:
                return "Batch request ids must be unique; '%s' is repeated." % r["id"]
            ids.add(r["id"])
            if r.get("headers") is not None and not isinstance(r["headers"], dict):
                return "Batch request 'headers' must be an object."
        return None

    # --- Graph -------------------------------------------------------------------------------------
    def graph_error(self, status, code, message, headers=None):
        self.jmeta["outcome"] = code
        self.respond(status, graph.error_body(code, message, self.now(), self.request_id, self.client_request_id),
                     JSON_CT, headers)

    def graph_auth(self):
        try:
            claims = tokens.check_bearer(self.emu.tenant, self.emu.signer, self.headers.get("Authorization"), "graph")
        except tokens.AuthFailure as e:
            self.graph_error(401, "InvalidAuthenticationToken", e.message,
                             {"WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                                                  'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'})
            self.jmeta["outcome"] = "unauthorized:" + e.reason
            return None
        self.jmeta["app_id"] = claims.get("appid")
        return claims

    def graph_one(self, path, query, claims):
        ok, reset, _ = self.throttle(claims.get("appid"), "graph")
        f = self.fault("graph", None, [])
        if f is None and not ok:
            f = (429, reset, None)
        if f is not None:
            status, ra, fmt = f
            h = {"Retry-After": self.retry_after(ra, fmt)} if ra is not None else {}
            code = {429: "TooManyRequests", 503: "serviceNotAvailable", 504: "gatewayTimeout"}.get(status, "generalException")
            msg = ("Too many requests from Identifier:%s+%s under category:throttle.aad.ags.users.app. Please try "
                   "again later." % (claims.get("appid"), self.emu.tenant.tenant_id)) if status == 429 else \
                "The service is temporarily unavailable. Please retry later."
            return status, graph.error_body(code, msg, self.now(), self.request_id, self.client_request_id), h, code
        try:
            status, body = graph.get(self.emu.tenant, path, query, self.base())
            return status, body, {}, "ok"
        except graph.GraphError as e:
            return e.status, graph.error_body(e.code, e.message, self.now(), self.request_id,
                                              self.client_request_id), {}, e.code

    def graph_get(self, path, query):
        claims = self.graph_auth()
        if claims is None:
            return
        status, body, headers, outcome = self.graph_one(path, query, claims)
        self.jmeta["outcome"] = outcome
        self.jmeta["identity"] = urllib.parse.unquote(query)[:200] or path
        self.respond(status, body, GRAPH_CT if status == 200 else JSON_CT, headers)

    def graph_batch(self, raw):
        claims = self.graph_auth()
        if claims is None:
            return
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self.graph_error(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                                    "header is set and payload is of valid JSON format.")
        reqs = doc.get("requests") if isinstance(doc, dict) else None
        limit = self.emu.tenant.config["graph_batch_max"]
        if isinstance(reqs, list) and len(reqs) > limit:
            return self.graph_error(400, "BadRequest", "The number of batch requests exceeds the limit of %d." % limit)
        err = self.batch_shape_error(reqs, limit)
        if err:
            return self.graph_error(400, "BadRequest", err)
        responses = []
        for r in reqs:
            target = urllib.parse.urlsplit(r["url"])
            p = urllib.parse.unquote(target.path)
            if p.startswith("/v1.0/"):
                p = p[len("/v1.0"):]
            if r["method"].upper() != "GET":
                status, body, h = 405, graph.error_body("MethodNotAllowed", "This emulator serves Graph reads only.",
                                                        self.now(), self.request_id, self.client_request_id), {}
            else:
                status, body, h, _ = self.graph_one(p, target.query, claims)
            h = dict(h)
            h["Content-Type"] = "application/json"
            responses.append({"id": r["id"], "status": status, "headers": h, "body": body})
        self.jmeta["outcome"] = "ok"
        self.respond(200, {"responses": responses}, JSON_CT)


class CaseDict(dict):
    """Header dict with case-insensitive get (batch sub-request headers over the outer ones)."""

    def __init__(self, src):
        super().__init__()
        for k, v in src.items():
            self[k] = v

    def get(self, key, default=None):
        for k, v in self.items():
            if k.lower() == key.lower():
                return v
        return default

    def update(self, other):
        for k, v in other.items():
            for old in [o for o in self if o.lower() == k.lower()]:
                del self[old]
            self[k] = v

    def setdefault_ci(self, key, value):
        if self.get(key) is None:
            self[key] = value


class ApiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, emu, tls_context):
        super().__init__(addr, ApiHandler)
        self.emu = emu
        self.tls = tls_context is not None
        self.tls_context = tls_context

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls_context is not None:
            # The handshake runs in the handler thread (setup), so a slow client cannot stall accept().
            sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        log("info", "connection error", peer=str(client_address), error=str(sys.exc_info()[1]))
