#!/usr/bin/env python3
"""A small, strict emulator of the Kubernetes API for coordination.k8s.io/v1 Lease objects (tests only).

Serves, over HTTPS with a bearer token, what a leader-election client uses:

  GET  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}   200 Lease | 404 NotFound
  POST /apis/coordination.k8s.io/v1/namespaces/{ns}/leases          201 Lease | 409 AlreadyExists
  PUT  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}   200 Lease | 404 NotFound
                                                                     | 409 Conflict (stale resourceVersion)

following the API's documented behaviour: errors are meta/v1 Status objects (kind Status, status Failure,
message, reason, details, code); metadata.resourceVersion is an opaque string that changes on every
write, and a write that carries an older one is refused with 409 Conflict (optimistic concurrency); a PUT
without resourceVersion is an unconditional update (Leases allow it); a PUT of a missing Lease is 404
(Leases do not allow create-on-update); the name and namespace in the body must match the URL (400);
a missing kind/apiVersion is 400. It is stricter than a default server in one way, on purpose: unknown
fields are refused as with fieldValidation=Strict (400), and MicroTime values must be RFC 3339 with
exactly six fraction digits (what client-go writes), so a sloppy client fails here first.

Test hooks (no token needed), under /_emu/:
  GET  /_emu/leases/{ns}/{name}   the stored Lease (404 if none)
  GET  /_emu/requests             the request log as JSON lines: method, path, who (token label), status
  POST /_emu/fault                {"who": LABEL|null, "mode": "500"|"503"|"slow"|"drop", "count": N (-1:
                                  until cleared), "delay_ms": D, "method": M|null}: inject faults for the
                                  matching requests (drop closes the connection without an answer)
  POST /_emu/clear                remove all faults

Usage: leaseapi.py --cert PEM --key KEY --tokens FILE --port-file FILE [--port N]
  FILE of tokens: one "label token" per line; the label names the client in the log and in faults.
"""
import argparse
import json
import re
import ssl
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GROUP = "coordination.k8s.io"
VERSION = "v1"
PREFIX = "/apis/coordination.k8s.io/v1/namespaces/"
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MICROTIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SPEC_FIELDS = {"holderIdentity": str, "leaseDurationSeconds": int, "acquireTime": "time", "renewTime": "time",
               "leaseTransitions": int, "preferredHolder": str, "strategy": str}
META_FIELDS = {"name", "namespace", "resourceVersion", "uid", "creationTimestamp", "labels", "annotations",
               "generateName", "generation", "managedFields", "ownerReferences", "finalizers"}
MAX_BODY = 3 * 1024 * 1024  # the API server's request size limit


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.leases = {}  # (ns, name) -> dict
        self.rv = 1000
        self.faults = []
        self.log = []


STATE = State()
TOKENS = {}  # token -> label


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
         "reason": reason, "code": code}
    if details is not None:
        s["details"] = details
    return code, s


def details(name):
    return {"name": name, "group": GROUP, "kind": "leases"}


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate(obj, ns, name_from_url):
    """Returns an error (code, Status) or None. Strict decoding as fieldValidation=Strict."""
    if not isinstance(obj, dict):
        return status(400, "BadRequest", "the body is not a JSON object")
    if "kind" not in obj:
        return status(400, "BadRequest", "Object 'Kind' is missing in '%s'" % json.dumps(obj)[:200])
    if obj.get("kind") != "Lease" or obj.get("apiVersion") != GROUP + "/" + VERSION:
        return status(400, "BadRequest", "the API version in the data (%s) does not match the expected API "
                      "version (%s/%s) or kind %s is not Lease" % (obj.get("apiVersion"), GROUP, VERSION,
                                                                   obj.get("kind")))
    for k in obj:
        if k not in ("kind", "apiVersion", "metadata", "spec"):
            return status(400, "BadRequest", 'strict decoding error: unknown field "%s"' % k)
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        return status(400, "BadRequest", "metadata is not an object")
    for k in meta:
        if k not in META_FIELDS:
            return status(400, "BadRequest", 'strict decoding error: unknown field "metadata.%s"' % k)
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        return status(400, "BadRequest", "spec is not an object")
    for k, v in spec.items():
        t = SPEC_FIELDS.get(k)
        if t is None:
            return status(400, "BadRequest", 'strict decoding error: unknown field "spec.%s"' % k)
        if v is None:
            continue
        if t == "time":
            if not isinstance(v, str) or not MICROTIME.match(v):
                return status(400, "BadRequest", 'spec.%s: "%s" is not a MicroTime (RFC 3339, 6 fraction '
                              'digits, UTC)' % (k, v))
        elif t is int:
            if not isinstance(v, int) or isinstance(v, bool) or not (-2**31 <= v < 2**31):
                return status(400, "BadRequest", "spec.%s: not an int32" % k)
        elif not isinstance(v, t):
            return status(400, "BadRequest", "spec.%s: not a string" % k)
    name = meta.get("name", "")
    if "namespace" in meta and meta["namespace"] != ns:
        return status(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                      "sent on the request")
    if name_from_url is not None and name != name_from_url:
        return status(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                      % (name, name_from_url))
    if not name:
        return status(422, "Invalid", 'Lease.coordination.k8s.io "" is invalid: metadata.name: Required value: '
                      'name or generateName is required', {"group": GROUP, "kind": "Lease"})
    if not DNS1123.match(name) or len(name) > 253:
        return status(422, "Invalid", 'Lease.coordination.k8s.io "%s" is invalid: metadata.name: Invalid value'
                      % name, {"name": name, "group": GROUP, "kind": "Lease"})
    d = spec.get("leaseDurationSeconds")
    if d is not None and d <= 0:
        return status(422, "Invalid", 'Lease.coordination.k8s.io "%s" is invalid: spec.leaseDurationSeconds: '
                      'Invalid value: %d: must be greater than 0' % (name, d), details(name))
    t = spec.get("leaseTransitions")
    if t is not None and t < 0:
        return status(422, "Invalid", 'Lease.coordination.k8s.io "%s" is invalid: spec.leaseTransitions: '
                      'Invalid value: %d: must be greater than or equal to 0' % (name, t), details(name))
    return None


def store(ns, name, obj, old):
    """Writes obj as the new version (caller holds the lock); returns the stored object."""
    STATE.rv += 1
    meta = {"name": name, "namespace": ns, "resourceVersion": str(STATE.rv),
            "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
            "creationTimestamp": old["metadata"]["creationTimestamp"] if old else now_rfc3339()}
    for k in ("labels", "annotations"):
        if k in (obj.get("metadata") or {}):
            meta[k] = obj["metadata"][k]
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if v is not None}
    new = {"kind": "Lease", "apiVersion": GROUP + "/" + VERSION, "metadata": meta, "spec": spec}
    STATE.leases[(ns, name)] = new
    return new


def handle_api(method, path, body):
    rest = path[len(PREFIX):].split("/")
    if len(rest) < 2 or rest[1] != "leases" or len(rest) > 3 or not DNS1123.match(rest[0]):
        return status(404, "NotFound", "the server could not find the requested resource")
    ns = rest[0]
    name = rest[2] if len(rest) == 3 else None
    if method == "GET" and name:
        with STATE.lock:
            obj = STATE.leases.get((ns, name))
        if obj is None:
            return status(404, "NotFound", 'leases.coordination.k8s.io "%s" not found' % name, details(name))
        return 200, obj
    if method not in ("POST", "PUT") or (method == "POST" and name) or (method == "PUT" and not name):
        return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return status(400, "BadRequest", "the body is not JSON: %s" % e)
    err = validate(obj, ns, name)
    if err:
        return err
    oname = obj["metadata"]["name"]
    with STATE.lock:
        old = STATE.leases.get((ns, oname))
        if method == "POST":
            if old is not None:
                return status(409, "AlreadyExists", 'leases.coordination.k8s.io "%s" already exists' % oname,
                              details(oname))
            return 201, store(ns, oname, obj, None)
        if old is None:
            return status(404, "NotFound", 'leases.coordination.k8s.io "%s" not found' % oname, details(oname))
        rv = obj["metadata"].get("resourceVersion")
        if rv is not None and rv != old["metadata"]["resourceVersion"]:
            return status(409, "Conflict", 'Operation cannot be fulfilled on leases.coordination.k8s.io "%s": the '
                          'object has been modified; please apply your changes to the latest version and try '
                          'again' % oname, details(oname))
        return 200, store(ns, oname, obj, old)


def take_fault(who, method):
    with STATE.lock:
        for f in STATE.faults:
            if f["who"] not in (None, who) or f.get("method") not in (None, method) or f["count"] == 0:
                continue
            if f["count"] > 0:
                f["count"] -= 1
            return dict(f)
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "leaseapi-emulator"

    def log_message(self, fmt, *args):
        sys.stderr.write("leaseapi: %s\n" % (fmt % args))

    def reply(self, code, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None
        return self.rfile.read(n) if n > 0 else b""

    def admin(self, method, body):
        p = self.path
        if method == "GET" and p.startswith("/_emu/leases/"):
            parts = p[len("/_emu/leases/"):].split("/")
            with STATE.lock:
                obj = STATE.leases.get(tuple(parts)) if len(parts) == 2 else None
            return self.reply(200, obj) if obj else self.reply(404, {"error": "no such lease"})
        if method == "GET" and p == "/_emu/requests":
            with STATE.lock:
                data = "".join(json.dumps(r) + "\n" for r in STATE.log).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if method == "POST" and p == "/_emu/fault":
            f = json.loads(body or b"{}")
            if f.get("mode") not in ("500", "503", "slow", "drop"):
                return self.reply(400, {"error": "mode must be 500, 503, slow or drop"})
            f.setdefault("who", None)
            f.setdefault("count", -1)
            f.setdefault("delay_ms", 0)
            with STATE.lock:
                STATE.faults.append(f)
            return self.reply(200, f)
        if method == "POST" and p == "/_emu/clear":
            with STATE.lock:
                STATE.faults.clear()
            return self.reply(200, {})
        return self.reply(404, {"error": "unknown emulator hook"})

    def serve(self, method):
        body = self.read_body() if method in ("POST", "PUT") else b""
        if body is None:
            self.close_connection = True
            return self.reply(*status(413, "RequestEntityTooLarge", "the request is too large"))
        if self.path.startswith("/_emu/"):
            return self.admin(method, body)
        auth = self.headers.get("Authorization", "")
        who = TOKENS.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        fault = take_fault(who, method) if who else None
        if fault and fault["mode"] == "drop":
            self.log_request_entry(method, who, "drop")
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if fault and fault["mode"] == "slow":
            time.sleep(fault["delay_ms"] / 1000.0)
        if who is None:
            code, obj = status(401, "Unauthorized", "Unauthorized")
        elif fault and fault["mode"] in ("500", "503"):
            code, obj = (status(500, "InternalError", "Internal error occurred: injected fault")
                         if fault["mode"] == "500" else
                         status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
        elif not self.path.startswith(PREFIX):
            code, obj = status(404, "NotFound", "the server could not find the requested resource")
        else:
            code, obj = handle_api(method, self.path.split("?")[0], body)
        self.log_request_entry(method, who, code)
        return self.reply(code, obj)

    def log_request_entry(self, method, who, code):
        with STATE.lock:
            STATE.log.append({"t": time.time(), "method": method, "path": self.path, "who": who, "status": code})
            del STATE.log[:-10000]

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def do_DELETE(self):
        self.serve("DELETE")

    def do_PATCH(self):
        self.serve("PATCH")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    for line in open(a.tokens):
        if line.strip():
            label, tok = line.split()
            TOKENS[tok] = label
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    # Handshake in the handler thread, so a silent client cannot block accept().
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % srv.server_address[1])
    import os
    os.replace(a.port_file + ".tmp", a.port_file)
    sys.stderr.write("leaseapi: listening on https://127.0.0.1:%d\n" % srv.server_address[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
