"""Fixtures for the o365emu tests. The API is driven with curl (verified TLS, --cacert) and client
assertions are signed with openssl; the admin API is plain HTTP on loopback (urllib).

One emulator serves the whole run: ctest starts it through a fixture (O365_EMULATOR_ENV = DIR/env);
run by hand, this conftest starts one itself with emulator.sh and stops it at the end. Every test
starts from POST /reset."""
import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EMU_DIR = os.path.dirname(HERE)
sys.path.insert(0, EMU_DIR)  # unit tests import o365emu modules directly
ANCHOR = "UPN:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@contoso.onmicrosoft.com"
EXO_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXPIRED_APP = "22222222-aaaa-4bbb-8ccc-000000000002"


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            if k:
                env[k] = v
    return env


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Resp:
    def __init__(self, status, headers, body, rc=0):
        self.status, self.headers, self.raw, self.rc = status, headers, body, rc

    def json(self):
        return json.loads(self.raw)

    def header(self, name):
        return self.headers.get(name.lower())


class Emu:
    """Test helpers around one running emulator."""

    def __init__(self, env, tmp):
        self.env = env
        self.tmp = tmp
        self.url = env["O365_EMULATOR_URL"]
        self.admin_url = env["O365_EMULATOR_ADMIN_URL"]
        self.ca = env["O365_EMULATOR_CA_FILE"]
        self.tid = env["O365_TENANT_ID"]
        self.cid = env["O365_CLIENT_ID"]
        self.token_url = env["O365_TOKEN_URL"]
        self.invoke_url = "%s/adminapi/beta/%s/InvokeCommand" % (env["O365_EXCHANGE_BASE"], self.tid)
        self.exo_batch_url = "%s/adminapi/beta/%s/$batch" % (env["O365_EXCHANGE_BASE"], self.tid)
        with open(env["O365_CLIENT_SECRET_FILE"]) as f:
            self.secret = f.read()
        self._tokens = {}

    # -- transport -----------------------------------------------------------------------------------
    def curl(self, method, url, headers=None, data=None, form=None, timeout=20, extra=()):
        """Runs curl with verified TLS; returns Resp (status 0 and rc != 0 when the transfer failed)."""
        hfile = os.path.join(self.tmp, "h-%s" % uuid.uuid4().hex)
        bfile = os.path.join(self.tmp, "b-%s" % uuid.uuid4().hex)
        cmd = ["curl", "-sS", "--cacert", self.ca, "-X", method, "-D", hfile, "-o", bfile,
               "-w", "%{http_code}", "--max-time", str(timeout)] + list(extra)
        for k, v in (headers or {}).items():
            cmd += ["-H", "%s: %s" % (k, v)] if v is not None else ["-H", "%s:" % k]
        if form is not None:
            for k, v in form.items():
                cmd += ["--data-urlencode", "%s=%s" % (k, v)]
        elif data is not None:
            cmd += ["--data-binary", "@-"]
        cmd.append(url)
        inp = data if isinstance(data, bytes) else (data.encode() if isinstance(data, str) else None)
        p = subprocess.run(cmd, input=inp, capture_output=True, timeout=timeout + 5)
        status = int(p.stdout.decode() or 0)
        headers = {}
        if os.path.exists(hfile):
            for line in open(hfile, "rb").read().decode("latin-1").split("\r\n")[1:]:
                k, sep, v = line.partition(":")
                if sep:
                    headers[k.strip().lower()] = v.strip()
            os.unlink(hfile)
        body = b""
        if os.path.exists(bfile):
            body = open(bfile, "rb").read()
            os.unlink(bfile)
        return Resp(status, headers, body, p.returncode)

    def admin(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    # -- tokens ------------------------------------------------------------------------------------
    def token_form(self, form, tenant=None, headers=None):
        url = self.token_url if tenant is None else "%s/%s/oauth2/v2.0/token" % (self.url, tenant)
        return self.curl("POST", url, headers=headers, form=form)

    def secret_token(self, scope=EXO_SCOPE):
        if scope not in self._tokens:
            r = self.token_form({"grant_type": "client_credentials", "client_id": self.cid,
                                 "client_secret": self.secret, "scope": scope})
            assert r.status == 200, r.raw
            self._tokens[scope] = r.json()["access_token"]
        return self._tokens[scope]

    def der(self, pem):
        return subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER"], capture_output=True,
                              check=True).stdout

    def assertion(self, alg="RS256", cert=None, key=None, claims=None, header=None, drop=(), raw_claims=None,
                  digest="sha256", saltlen=32):
        """A client assertion JWT signed with openssl (dgst -sign; PSS with saltlen 32 for PS256).
        raw_claims: the payload JSON text as given (for values json.dumps cannot write, e.g. 1e400)."""
        cert = cert or self.env["O365_CLIENT_CERT_FILE"]
        key = key or self.env["O365_CLIENT_KEY_FILE"]
        der = self.der(cert)
        h = {"alg": alg, "typ": "JWT"}
        if alg == "PS256":
            h["x5t#S256"] = b64url(hashlib.sha256(der).digest())
        else:
            h["x5t"] = b64url(hashlib.sha1(der).digest())
        h.update(header or {})
        now = int(time.time())
        c = {"aud": self.token_url, "iss": self.cid, "sub": self.cid, "jti": str(uuid.uuid4()),
             "nbf": now, "iat": now, "exp": now + 600}
        c.update(claims or {})
        for k in drop:
            h.pop(k, None)
            c.pop(k, None)
        payload = raw_claims.encode() if raw_claims is not None else json.dumps(c).encode()
        signing_input = b64url(json.dumps(h).encode()) + "." + b64url(payload)
        cmd = ["openssl", "dgst", "-" + digest, "-sign", key]
        if alg == "PS256":
            cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:%d" % saltlen]
        sig = subprocess.run(cmd, input=signing_input.encode(), capture_output=True, check=True).stdout
        return signing_input + "." + b64url(sig)

    def assertion_form(self, assertion, scope=EXO_SCOPE, client_id=None):
        return {"grant_type": "client_credentials", "client_id": client_id or self.cid, "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion}

    # -- Exchange / Graph --------------------------------------------------------------------------
    def exo_headers(self, cmdlet, token=None, crid=None):
        return {"Authorization": "Bearer " + (token or self.secret_token()), "Content-Type": "application/json",
                "Accept": "application/json", "X-CmdletName": cmdlet, "X-ResponseFormat": "json",
                "X-AnchorMailbox": ANCHOR, "client-request-id": crid or str(uuid.uuid4())}

    def invoke(self, cmdlet, params, headers=None, url=None, crid=None, **kw):
        h = self.exo_headers(cmdlet, crid=crid)
        h.update(headers or {})
        body = json.dumps({"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}})
        return self.curl("POST", url or self.invoke_url, headers=h, data=body, **kw)

    def graph(self, path_query, token=None, headers=None):
        h = {"Authorization": "Bearer " + (token or self.secret_token(GRAPH_SCOPE))}
        h.update(headers or {})
        return self.curl("GET", self.url + "/v1.0" + path_query, headers=h)

    def tls_socket(self, timeout=10):
        """A TLS connection to the API (verified against the test CA), for requests curl will not send."""
        host, port = self.url[len("https://"):].split(":")
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = False
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        return ctx.wrap_socket(raw, server_hostname=host)

    def raw(self, request_bytes, timeout=10):
        """Sends bytes as they are and returns (status, headers, body) of the answer."""
        with self.tls_socket(timeout) as s:
            s.sendall(request_bytes)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    hs = {}
                    for line in head.decode("latin-1").split("\r\n")[1:]:
                        k, _, v = line.partition(":")
                        hs[k.strip().lower()] = v.strip()
                    if len(body) >= int(hs.get("content-length", "0")):
                        return int(head.split(b" ")[1]), hs, body
        raise AssertionError("connection closed before a full response: %r" % data[:200])

    def journal(self, kind=None, since=0):
        q = "?since=%d" % since + ("&kind=%s" % kind if kind else "")
        return self.admin("GET", "/journal" + q)[1]["entries"]


@pytest.fixture(scope="session")
def emu_env(tmp_path_factory):
    path = os.environ.get("O365_EMULATOR_ENV")
    if path:
        yield read_env(path)
        return
    d = str(tmp_path_factory.mktemp("o365emu"))
    subprocess.run([os.path.join(EMU_DIR, "emulator.sh"), "start", d], check=True)
    try:
        yield read_env(os.path.join(d, "env"))
    finally:
        subprocess.run([os.path.join(EMU_DIR, "emulator.sh"), "stop", d], check=False)


@pytest.fixture
def emu(emu_env, tmp_path):
    e = Emu(emu_env, str(tmp_path))
    status, _ = e.admin("POST", "/reset")
    assert status == 200
    return e


def cert_value(emu, pem=None):
    """Base64 DER of a certificate file (default: the test app's)."""
    return base64.b64encode(emu.der(pem or emu.env["O365_CLIENT_CERT_FILE"])).decode()


def pkcs7_value(emu, pem=None):
    """Base64 DER of a degenerate PKCS#7 SignedData carrying one certificate (openssl crl2pkcs7)."""
    out = subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", pem or emu.env["O365_CLIENT_CERT_FILE"],
                          "-outform", "DER"], capture_output=True, check=True).stdout
    return base64.b64encode(out).decode()


def byte_array(param, values):
    return {param: [{"Data": v} for v in values], param + "@odata.type": "#Collection(Exchange.ByteArrayType)"}
