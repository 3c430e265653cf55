"""HTTP(S) plumbing: the API listener (token endpoint, Exchange, Graph) and routing, authentication,
faults, throttling and journaling around the pure logic of tokens.py, exchange.py and graph.py."""
import http.server
import json
import math
import re
import socket
import ssl
import sys
import threading
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
EXO_ROLE = "Exchange.ManageAsApp"
TOKEN_PATH = re.compile(r"^/[^/]+/oauth2/v2\.0/token$")


def log(level, msg, **fields):
    rec = {"ts": util.iso(time.time()), "level": level, "facility": "o365emu", "msg": msg}
    # Fields are cut (a 4 MB path must not become a 4 MB log line), tracebacks much later.
    rec.update({k: util.truncate(v, 16384 if k == "trace" else util.TRUNCATE_AT) for k, v in fields.items()})
    sys.stderr.write(json.dumps(rec) + "\n")
    sys.stderr.flush()


class Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


class BodyError(Exception):
    """The request body could not be read: (status, message)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class Emulator:
    """Shared state of both listeners."""

    def __init__(self, tenant, journal, faults, authorities):
        self.tenant = tenant
        self.journal = journal
        self.faults = faults
        self.signer = tokens.Signer()
        self.jti = tokens.JtiCache()
        # Base URLs of the token endpoint (configuration, never the request's Host header): a client
        # assertion's aud must be <authority>/<tenant>/oauth2/v2.0/token for one of them.
        self.authorities = list(authorities)
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


def endpoint_of(path):
    """'token', 'exchange', 'graph' or 'unknown' for a request path (before the body is read)."""
    if TOKEN_PATH.match(path):
        return "token"
    if path.startswith("/adminapi/"):
        return "exchange"
    if path.startswith("/v1.0/"):
        return "graph"
    return "unknown"


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "o365emu/1.0"
    sys_version = ""
    timeout = 60  # per socket read; the server's deadline bounds the whole request (see ApiServer)
    # TCP_NODELAY: a response goes out as headers then body (two writes); with Nagle the body waits for
    # the client's delayed ACK of the headers, ~40 ms per keep-alive request whatever the lookup costs.
    disable_nagle_algorithm = True
    _clock = None

    # --- plumbing ----------------------------------------------------------------------------------
    def setup(self):
        super().setup()
        self.server.arm_deadline(self)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as e:
                log("info", "tls handshake failed", peer=str(self.client_address), error=str(e))
                self.close_connection = True
                raise

    def handle_one_request(self):
        # Each request (request line, headers, body) must arrive within the deadline, keep-alive too.
        self.server.arm_deadline(self)
        super().handle_one_request()

    def finish(self):
        self.server.disarm_deadline(self)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, fmt, *args):  # replaced by one JSON line per request
        pass

    def version_string(self):
        return self.server_version

    def response_clock(self):
        """The emulator's clock read once per response and rounded up to a whole second: Date and every
        Retry-After date of the response derive from it, so Date + Retry-After is exact, and a client
        waiting for the date never retries before the interval has passed."""
        if self._clock is None:
            self._clock = math.ceil(self.now())
        return self._clock

    def date_time_string(self, timestamp=None):
        """The Date header follows the emulator's clock, so Retry-After dates agree with it."""
        return util.http_date(self.response_clock())

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
            return util.http_date(self.response_clock() + math.ceil(seconds))
        return str(math.ceil(seconds))

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
            raise BodyError(400, "chunked request bodies are not supported; send Content-Length")
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        # Digits only: int() would take "-1", "+5" or " 5", and a negative length is no length.
        if not re.fullmatch(r"[0-9]{1,12}", n):
            raise BodyError(400, "Content-Length '%s' is not a non-negative decimal number" % util.truncate(n, 32))
        n = int(n)
        if n > MAX_BODY:
            raise BodyError(413, "request body of %d bytes exceeds the limit of %d" % (n, MAX_BODY))
        data = self.rfile.read(n)
        if len(data) != n:
            raise BodyError(400, "the connection closed after %d of %d body bytes" % (len(data), n))
        return data

    def body_error(self, endpoint, e):
        """Answers an unreadable body in the envelope of the API the path names."""
        self.close_connection = True
        self.jmeta["outcome"] = "BadRequest"
        if endpoint == "exchange":
            _, _, rl = self.throttle_peek(None)
            return self.respond(*exchange.request_error(e.status, "BadRequest", e.message), EXO_CT, rl)
        if endpoint == "graph":
            return self.graph_error(e.status, "BadRequest", e.message)
        return self.respond(e.status, {"error": {"code": "BadRequest", "message": e.message}})

    def dispatch(self):
        t0 = time.monotonic()
        self.status = 0
        self._clock = None
        self.client_request_id = util.truncate(self.headers.get("client-request-id"), 128)
        self.request_id = util.new_guid()
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        endpoint = endpoint_of(path)
        self.jmeta = {"endpoint": endpoint, "app_id": None, "cmdlet": None, "identity": None, "outcome": None,
                      "fault": None}
        try:
            try:
                body = self.read_body()
            except BodyError as e:
                return self.body_error(endpoint, e)
            finally:
                self.server.disarm_deadline(self)
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
                return self.token_error(900561, {"verb": self.command})
            return self.token(parts[1], body)
        if len(parts) == 5 and parts[1:3] == ["adminapi", "beta"] and parts[4] in ("InvokeCommand", "$batch"):
            self.jmeta["endpoint"] = "exchange"
            if self.command != "POST":
                _, _, rl = self.throttle_peek(None)
                return self.respond(*exchange.request_error(405, "MethodNotAllowed", "Use POST."), EXO_CT, rl)
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
        return self.respond(404, {"error": {"code": "NotFound", "message": "No such endpoint: %s"
                                            % util.truncate(path, 128)}})

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

    def throttle_peek(self, app):
        """Rate-Limit-* headers of the app's current window without counting a request (for answers
        that are not a counted call: 400 before parsing, 401, $batch envelopes)."""
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

    # --- token endpoint ----------------------------------------------------------------------------
    def token_error(self, code, fields, extra=None):
        now = self.now()
        trace = util.new_guid()
        corr = self.client_request_id or util.new_guid()
        authority = self.emu.authorities[0] if self.emu.authorities else self.base()
        status, b = aadsts.body(code, fields, now, trace, corr, authority)
        self.jmeta["outcome"] = "AADSTS%d" % code
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": trace}
        headers.update(extra or {})
        self.respond(status, b, JSON_CT, headers)

    def token(self, tenant_name, body):
        emu = self.emu
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        except ValueError:
            pairs = []
        self.jmeta["app_id"] = util.truncate(next((v for k, v in pairs if k == "client_id"), None), 64)
        f = self.fault("token")
        if f is not None:
            code, ra, fmt = f
            extra = {"Retry-After": self.retry_after(ra, fmt)} if ra is not None else {}
            if code in aadsts.CATALOG:
                return self.token_error(code, {}, extra)
            # A plain status outage of the token endpoint: temporarily_unavailable (retry), per RFC 6749.
            return self.token_error(90033 if code >= 500 else 90055, {}, extra)

        def throttle(cid):
            ok, reset, _ = self.throttle(cid, "token")
            return None if ok else reset

        names = {tenant_name.lower(), emu.tenant.tenant_id.lower(), emu.tenant.domain.lower()}
        bases = {a.rstrip("/").lower() for a in emu.authorities}
        token_urls = {"%s/%s/oauth2/v2.0/token" % (b, n) for b in bases for n in names}
        try:
            ok_body, _ = tokens.token_request(emu.tenant, emu.signer, emu.jti, tenant_name,
                                              self.headers.get("Content-Type"), body, token_urls, throttle)
        except AadError as e:
            extra = {}
            if "retry_after" in e.fields:
                extra["Retry-After"] = self.retry_after(e.fields["retry_after"], None)
            return self.token_error(e.code, e.fields, extra)
        self.jmeta["outcome"] = "ok"
        self.respond(200, ok_body, JSON_CT, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
                                             "x-ms-request-id": util.new_guid()})

    # --- Exchange ----------------------------------------------------------------------------------
    def exo_auth(self, tenant_name):
        """Claims, or None after answering 401 (Exchange's shape: WWW-Authenticate + x-ms-diagnostics,
        empty body) [observed] or 403 (app without the Exchange.ManageAsApp role)."""
        try:
            claims = tokens.check_bearer(self.emu.tenant, self.emu.signer, self.headers.get("Authorization"),
                                         "exchange")
            if not self.emu.tenant.knows_tenant(tenant_name):
                raise tokens.AuthFailure("tenant", "The tenant in the URL does not match the token's tenant.")
        except tokens.AuthFailure as e:
            codes = {"missing": "2000001", "malformed": "2000001", "signature": "2000001", "audience": "2000003",
                     "expired": "2000008", "tenant": "2000003"}
            self.jmeta["outcome"] = "unauthorized:" + e.reason
            _, _, rl = self.throttle_peek(None)
            self.respond(401, None, headers=dict(rl, **{
                "WWW-Authenticate": EXO_WWW_AUTH,
                "x-ms-diagnostics": '%s;reason="%s";error_category="invalid_token"' % (codes[e.reason], e.message)}))
            return None
        self.jmeta["app_id"] = claims.get("appid")
        roles = claims.get("roles")
        if not isinstance(roles, list) or EXO_ROLE not in roles:
            # The error body Exchange's REST endpoint answers when the caller may not run the cmdlet
            # (office-docs-powershell#7970) [observed]; status 403: the token itself is valid.
            msg = "The application is not allowed to call the Exchange admin API: its token has no '%s' role." % EXO_ROLE
            self.jmeta["outcome"] = "forbidden:role"
            _, _, rl = self.throttle_peek(claims.get("appid"))
            self.respond(403, {"error": {"code": "Unauthorized", "message": msg, "innererror": {
                "message": msg, "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"}}}, EXO_CT, rl)
            return None
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
        """One InvokeCommand (direct or inside $batch): (status, body, headers, meta). Every answer
        carries Rate-Limit-* headers."""
        emu = self.emu
        cfg = emu.tenant.config
        meta = {"cmdlet": None, "identity": None, "outcome": None, "changes": []}
        app = claims.get("appid")
        try:
            cmdlet, params = exchange.parse_request(raw, headers, cfg, emu.tenant.domain)
        except exchange.RequestError as e:
            meta["outcome"] = "BadRequest"
            return e.status, e.body, self.throttle_peek(app)[2], meta
        ident = next((v for k, v in params.items() if k.lower() == "identity"), None)
        meta["cmdlet"], meta["identity"] = cmdlet, ident if isinstance(ident, str) else None
        ids = []
        if isinstance(ident, str):
            ids.append(ident)
            with emu.tenant.lock:
                for r in emu.tenant.find_recipients(ident):
                    ids += [r.get("ExternalDirectoryObjectId"), r.get("PrimarySmtpAddress"), r.get("UserPrincipalName")]
        ok, reset, rl = self.throttle(app, "exchange")
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
        q, err = query_params(query)
        if err:
            _, _, rl = self.throttle_peek(claims.get("appid"))
            self.jmeta["outcome"] = "BadRequest"
            return self.respond(*exchange.request_error(400, "BadRequest", err), EXO_CT, rl)
        status, body, headers, meta = self.exo_one(tenant_name, q.get("$skiptoken"), raw, self.headers, claims)
        self.jmeta.update({k: meta[k] for k in ("cmdlet", "identity", "outcome")})
        self.respond(status, body, EXO_CT, headers)

    def exo_batch(self, tenant_name, raw):
        claims = self.exo_auth(tenant_name)
        if claims is None:
            return
        self.jmeta["cmdlet"] = "$batch"
        _, _, rl = self.throttle_peek(claims.get("appid"))

        def bad(msg):
            self.jmeta["outcome"] = "BadRequest"
            return self.respond(*exchange.request_error(400, "BadRequest", msg), EXO_CT, rl)

        try:
            doc = util.strict_loads(raw)
        except ValueError as e:
            return bad("The request body is not valid JSON: %s." % e)
        reqs = doc.get("requests") if isinstance(doc, dict) else None
        limit = self.emu.tenant.config["exchange_batch_max"]
        err = batch_shape_error(reqs, limit)
        if err:
            return bad(err)
        f = self.fault("exchange", "$batch")
        if f is not None:
            status, body, h = self.exo_status_fault(f, rl)
            return self.respond(status, body, EXO_CT, h)
        responses = []
        outer = {k: v for k, v in self.headers.items()}
        want = ["", "adminapi", "beta", tenant_name.lower(), "invokecommand"]
        for r in reqs:
            sub_headers = CaseDict(outer)
            sub_headers.update(r.get("headers") or {})
            sub_headers.setdefault_ci("Content-Type", "application/json")
            target = urllib.parse.urlsplit(r["url"])
            tparts = urllib.parse.unquote(target.path).lower().split("/")
            if r["method"].upper() != "POST" or target.scheme or target.netloc or tparts != want:
                responses.append({"id": r["id"], "status": 400, "headers": self.throttle_peek(claims.get("appid"))[2],
                                  "body": exchange.request_error(
                    400, "BadRequest", "Each batch request must be POST /adminapi/beta/%s/InvokeCommand."
                    % tenant_name)[1]})
                continue
            body = r.get("body")
            raw_sub = body.encode("utf-8") if isinstance(body, str) else util.dumps(body)
            q, qerr = query_params(target.query)
            t0 = time.monotonic()
            if qerr:
                status, sbody, h = 400, exchange.request_error(400, "BadRequest", qerr)[1], self.throttle_peek(
                    claims.get("appid"))[2]
                meta = {"cmdlet": None, "identity": None, "outcome": "BadRequest"}
            else:
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
        roles = claims.get("roles")
        if not isinstance(roles, list) or not graph.READ_ROLES & set(roles):
            # The body of the 403 in the json-batching doc's example (Authorization_RequestDenied).
            self.graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
            return None
        return claims

    def graph_one(self, path, query, claims, headers):
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
            status, body = graph.get(self.emu.tenant, path, query, self.base(), headers)
            # The headers of a directory read in json-batching's example response.
            return status, body, {"Cache-Control": "no-cache", "OData-Version": "4.0", "x-ms-resource-unit": "1"}, "ok"
        except graph.GraphError as e:
            return e.status, graph.error_body(e.code, e.message, self.now(), self.request_id,
                                              self.client_request_id), {}, e.code

    def graph_get(self, path, query):
        claims = self.graph_auth()
        if claims is None:
            return
        status, body, headers, outcome = self.graph_one(path, query, claims, CaseDict(dict(self.headers.items())))
        self.jmeta["outcome"] = outcome
        self.jmeta["identity"] = urllib.parse.unquote(query) or path
        self.respond(status, body, GRAPH_CT if status == 200 else JSON_CT, headers)

    def graph_batch(self, raw):
        claims = self.graph_auth()
        if claims is None:
            return
        unreadable = ("Unable to read JSON request payload. Please ensure Content-Type header is set and payload is "
                      "of valid JSON format.")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self.graph_error(400, "BadRequest", unreadable)
        try:
            doc = util.strict_loads(raw)
        except ValueError:
            return self.graph_error(400, "BadRequest", unreadable)
        reqs = doc.get("requests") if isinstance(doc, dict) else None
        limit = self.emu.tenant.config["graph_batch_max"]
        if isinstance(reqs, list) and len(reqs) > limit:
            return self.graph_error(400, "BadRequest", "The number of batch requests exceeds the limit of %d." % limit)
        err = batch_shape_error(reqs, limit) or graph_batch_error(reqs)
        if err:
            return self.graph_error(400, "BadRequest", err)
        responses = []
        for r in reqs:
            # json-batching: url is relative to the version ("/users" or "users?..."); absolute URLs
            # were refused by graph_batch_error.
            target = urllib.parse.urlsplit(r["url"])
            p = "/" + urllib.parse.unquote(target.path).lstrip("/")
            if p.startswith("/v1.0/"):
                p = p[len("/v1.0"):]
            if r["method"].upper() != "GET":
                status, body, h = 405, graph.error_body("MethodNotAllowed", "This emulator serves Graph reads only.",
                                                        self.now(), self.request_id, self.client_request_id), {}
            else:
                status, body, h, _ = self.graph_one(p, target.query, claims, CaseDict(r.get("headers") or {}))
            h = dict(h)
            h["Content-Type"] = GRAPH_CT if status == 200 else "application/json"
            responses.append({"id": r["id"], "status": status, "headers": h, "body": body})
        self.jmeta["outcome"] = "ok"
        self.respond(200, {"responses": responses}, JSON_CT)


def query_params(query):
    """(dict of query parameters, None) or (None, message): a parameter given twice is an error."""
    out = {}
    for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if k in out:
            return None, "The query parameter '%s' is given more than once." % util.truncate(k, 64)
        out[k] = v
    return out, None


def batch_shape_error(reqs, limit):
    """Why a $batch body is malformed, or None. Ids are compared case-insensitively (json-batching:
    "Not case-sensitive. Must be unique in the batch")."""
    if not isinstance(reqs, list) or not reqs:
        return "The request body must be {\"requests\":[{\"id\",\"method\",\"url\",...}]} with at least one request."
    if len(reqs) > limit:
        return "The batch contains %d requests; at most %d are allowed." % (len(reqs), limit)
    ids = set()
    for r in reqs:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("method"), str) \
                or not isinstance(r.get("url"), str):
            return "Each batch request needs string 'id', 'method' and 'url'."
        if r["id"].lower() in ids:
            return "Batch request ids must be unique; '%s' is repeated." % util.truncate(r["id"], 64)
        ids.add(r["id"].lower())
        h = r.get("headers")
        if h is not None and (not isinstance(h, dict) or not all(isinstance(v, str) for v in h.values())):
            return "Batch request 'headers' must be an object of string values."
    return None


def graph_batch_error(reqs):
    """Graph-specific $batch rules (json-batching): relative URLs only; a body needs a Content-Type."""
    for r in reqs:
        u = urllib.parse.urlsplit(r["url"])
        if u.scheme or u.netloc:
            return ("Request '%s': absolute URLs are not supported in a batch; use a URL relative to the version, "
                    "e.g. /users." % util.truncate(r["id"], 64))
        if "body" in r and CaseDict(r.get("headers") or {}).get("Content-Type") is None:
            return "Request '%s': a request with a body must have a Content-Type header." % util.truncate(r["id"], 64)
    return None


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
    """One thread per connection, at most config max_connections of them (a new connection beyond it
    is closed at once, before its TLS handshake); a reaper closes any connection whose request has not
    fully arrived within config request_read_deadline_s (slowloris), the per-read timeout alone would
    let a byte every 59 s keep a thread for ever."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, emu, tls_context):
        super().__init__(addr, ApiHandler)
        self.emu = emu
        self.tls = tls_context is not None
        self.tls_context = tls_context
        self.conn_lock = threading.Lock()
        self.active = 0
        self.deadlines = {}  # handler -> (socket, monotonic deadline)
        self.reaper_stop = threading.Event()
        self.reaper = threading.Thread(target=self.reap, name="o365emu-reaper", daemon=True)
        self.reaper.start()

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls_context is not None:
            # The handshake runs in the handler thread (setup), so a slow client cannot stall accept().
            sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request, client_address):
        limit = self.emu.tenant.config["max_connections"]
        with self.conn_lock:
            full = self.active >= limit
            if not full:
                self.active += 1
        if full:
            log("info", "connection refused: max_connections reached", peer=str(client_address), limit=limit)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            with self.conn_lock:
                self.active -= 1
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.conn_lock:
                self.active -= 1

    def arm_deadline(self, handler):
        d = self.emu.tenant.config["request_read_deadline_s"]
        with self.conn_lock:
            self.deadlines[handler] = (handler.connection, time.monotonic() + d)

    def disarm_deadline(self, handler):
        with self.conn_lock:
            self.deadlines.pop(handler, None)

    def reap(self):
        while not self.reaper_stop.wait(0.2):
            now = time.monotonic()
            with self.conn_lock:
                late = [(h, s) for h, (s, t) in self.deadlines.items() if now > t]
                for h, _ in late:
                    del self.deadlines[h]
            for h, s in late:
                log("info", "request not received within request_read_deadline_s: closing",
                    peer=str(h.client_address))
                try:
                    # The plain socket's shutdown (not SSLSocket's, which drops its SSL object under the
                    # reading thread): the blocked read sees end-of-file and the handler ends.
                    socket.socket.shutdown(s, socket.SHUT_RDWR)
                except OSError:
                    pass

    def server_close(self):
        self.reaper_stop.set()
        super().server_close()

    def handle_error(self, request, client_address):
        log("info", "connection error", peer=str(client_address), error=str(sys.exc_info()[1]))
