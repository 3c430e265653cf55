"""The admin API: plain HTTP on 127.0.0.1, a separate port. Tests seed, reset and read the tenant,
read the journal, move the clock and configure faults and throttling through it.

Plain HTTP on purpose: it is a loopback-only test control plane that the publisher never calls, so TLS
would add certificate plumbing to every test helper without protecting anything; keeping it on its own
port also keeps control calls out of the API journal, throttling budgets and fault rules."""
import http.server
import sys
import traceback
import urllib.parse

from . import util
from .faults import FaultError
from . import state
from .state import SeedError


class AdminHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "o365emu-admin/1.0"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True  # headers and body are two writes: see server.ApiHandler

    def log_message(self, fmt, *args):
        pass

    def send_error(self, code, message=None, explain=None):
        self.reply(code, {"error": message or "bad request"})
        self.close_connection = True

    def reply(self, status, obj):
        data = util.dumps(obj)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def body_json(self):
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            raise SeedError("Content-Length '%s' is not a non-negative number" % util.truncate(text, 32))
        n = int(text)
        if n > 16 * 1024 * 1024:
            raise SeedError("admin request body too large")
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return util.strict_loads(raw)
        except ValueError as e:
            raise SeedError("admin request body is not valid JSON: %s" % e)

    def dispatch(self):
        emu = self.server.emu
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        key = (self.command, url.path.rstrip("/") or "/")
        try:
            body = self.body_json()
            if key == ("GET", "/health"):
                return self.reply(200, {"status": "ok", "tenant_id": emu.tenant.tenant_id})
            if key == ("POST", "/reset"):
                emu.reset()
                return self.reply(200, {"reset": True})
            if key == ("POST", "/seed"):
                emu.tenant.load(body, make_baseline=bool(q.get("baseline")))
                return self.reply(200, {"recipients": len(emu.tenant.recipients)})
            if key == ("GET", "/state"):
                return self.reply(200, emu.tenant.snapshot())
            if key == ("POST", "/state/recipients"):
                return self.reply(200, emu.tenant.upsert_recipient(body))
            if self.command == "GET" and url.path.startswith("/state/recipients/"):
                ident = urllib.parse.unquote(url.path[len("/state/recipients/"):])
                with emu.tenant.lock:
                    found = emu.tenant.find_recipients(ident)
                    if len(found) != 1:
                        return self.reply(404, {"error": "%d recipients match '%s'" % (len(found), ident)})
                    return self.reply(200, found[0])
            if key == ("GET", "/journal"):
                since = int(q.get("since", "0"))
                return self.reply(200, emu.journal.read(since, q.get("kind")))
            if key == ("GET", "/faults"):
                return self.reply(200, {"faults": emu.faults.list(), "throttle": emu.faults.throttle,
                                        "throttle_windows": emu.faults.window_keys()})
            if key == ("POST", "/faults"):
                rules = body if isinstance(body, list) else [body]
                return self.reply(200, {"added": [emu.faults.add(r) for r in rules]})
            if key == ("DELETE", "/faults"):
                emu.faults.clear()
                return self.reply(200, {"cleared": True})
            if key == ("PUT", "/faults/seed"):
                if not isinstance(body, dict) or not isinstance(body.get("seed"), int):
                    raise SeedError("PUT /faults/seed needs {\"seed\": <integer>}")
                emu.faults.set_seed(body["seed"])
                return self.reply(200, {"seed": body["seed"]})
            if key == ("PUT", "/throttle"):
                emu.faults.set_throttle(body)
                return self.reply(200, {"throttle": emu.faults.throttle})
            if key == ("DELETE", "/throttle"):
                emu.faults.set_throttle(None)
                return self.reply(200, {"throttle": None})
            if self.command == "PUT" and url.path.startswith("/apps/"):
                # Credential rotation and permission changes on a registered app, as an admin would make them
                # in Entra ID: {"secrets"?: [...], "certificates"?: [...], "roles"?: {...} or null}.
                cid = urllib.parse.unquote(url.path[len("/apps/"):]).rstrip("/")
                if not isinstance(body, dict) or not set(body) <= {"secrets", "certificates", "roles"} or not body:
                    raise SeedError("PUT /apps/<client_id> needs a JSON object with secrets, certificates "
                                    "and/or roles")
                with emu.tenant.lock:
                    app = emu.tenant.apps.get(cid)
                    if app is None:
                        return self.reply(404, {"error": "no app %s" % cid})
                    merged = dict(app)
                    merged.update(body)
                    fresh = state.normalise_app(merged)
                    for k in body:
                        app[k] = fresh[k]
                    return self.reply(200, {"client_id": cid, "secrets": len(app["secrets"]),
                                            "certificates": len(app["certificates"]), "roles": app["roles"]})
            if key == ("GET", "/config"):
                return self.reply(200, emu.tenant.config)
            if key == ("PUT", "/config"):
                if not isinstance(body, dict):
                    raise SeedError("PUT /config needs a JSON object of config keys")
                emu.tenant.set_config(body)
                return self.reply(200, emu.tenant.config)
            if key == ("PUT", "/clock"):
                if not isinstance(body, dict) or not isinstance(body.get("offset_s"), (int, float)):
                    raise SeedError("PUT /clock needs {\"offset_s\": seconds}")
                with emu.tenant.lock:
                    emu.tenant.clock_offset = float(body["offset_s"])
                return self.reply(200, {"offset_s": emu.tenant.clock_offset, "now": emu.tenant.now()})
            if key == ("GET", "/clock"):
                return self.reply(200, {"offset_s": emu.tenant.clock_offset, "now": emu.tenant.now()})
            return self.reply(404, {"error": "no admin endpoint %s %s; see tests/emulator/README.md" % key})
        except (SeedError, FaultError, ValueError) as e:
            return self.reply(400, {"error": str(e)})
        except Exception:
            sys.stderr.write(traceback.format_exc())
            return self.reply(500, {"error": "internal error; see the emulator log"})


class AdminServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, emu):
        super().__init__(addr, AdminHandler)
        self.emu = emu
