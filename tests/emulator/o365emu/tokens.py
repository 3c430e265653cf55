"""The token endpoint (OAuth2 client credentials, app-only) and access-token checks for the APIs.

Client assertions are verified for real with `cryptography`: RS256 + x5t (base64url SHA-1 of the
registered certificate's DER) or PS256 + x5t#S256, the signature with the registered certificate's
public key, aud, iss = sub = client_id, nbf/exp with a configurable skew, a lifetime limit, jti reuse."""
import hashlib
import hmac
import json
import threading
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import util
from .aadsts import AadError

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Signer:
    """The emulator's own token-signing key (RS256), created at start."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = util.b64url_encode(hashlib.sha1(self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest())

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (util.b64url_encode(util.dumps(header)) + "." +
                         util.b64url_encode(util.dumps(claims))).encode("ascii")
        sig = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return signing_input.decode("ascii") + "." + util.b64url_encode(sig)

    def verify(self, token):
        """Claims of a token this emulator issued, or ValueError('reason')."""
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("malformed")
        try:
            header = json.loads(util.b64url_decode(parts[0]))
            claims = json.loads(util.b64url_decode(parts[1]))
            sig = util.b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise ValueError("malformed")
        if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
            raise ValueError("malformed")
        try:
            self.key.public_key().verify(sig, (parts[0] + "." + parts[1]).encode("ascii"),
                                         padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise ValueError("signature")
        return claims


class JtiCache:
    """Assertion ids seen, kept until their exp plus skew."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}

    def check_and_add(self, key, until, now):
        with self.lock:
            for k in [k for k, t in self.seen.items() if t < now]:
                del self.seen[k]
            if key in self.seen:
                return False
            self.seen[key] = until
            return True

    def clear(self):
        with self.lock:
            self.seen.clear()


def _cert_thumbprints(pem):
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert, util.b64url_encode(hashlib.sha1(der).digest()), util.b64url_encode(hashlib.sha256(der).digest()), \
        hashlib.sha1(der).hexdigest().upper()


def parse_scope(tenant, scope):
    """Resource entry for a client-credentials scope, or AadError 70011 / 700022."""
    items = scope.split()
    resources = set()
    for s in items:
        if not s.endswith("/.default"):
            raise AadError(70011, scope=scope)
        base = s[: -len("/.default")].rstrip("/").lower()
        match = None
        for prefix, res in tenant.resources.items():
            if prefix.rstrip("/").lower() == base:
                match = prefix
        if match is None:
            raise AadError(70011, scope=scope)
        resources.add(match)
    if not resources:
        raise AadError(70011, scope=scope)
    if len(resources) > 1:
        raise AadError(700022, scope=scope)
    return tenant.resources[resources.pop()]


def verify_assertion(tenant, app, assertion, token_urls, jti_cache, now):
    """Checks a client assertion JWT; raises AadError with the code Entra uses."""
    cid = app["client_id"]
    parts = assertion.split(".")
    if len(parts) != 3:
        raise AadError(50027, reason="The client assertion does not have three parts")
    try:
        header = json.loads(util.b64url_decode(parts[0]))
        claims = json.loads(util.b64url_decode(parts[1]))
        sig = util.b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise AadError(50027, reason="The client assertion is not base64url-encoded JSON")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AadError(50027, reason="The client assertion header and payload must be JSON objects")
    alg = header.get("alg")
    x5t = header.get("x5t")
    x5t256 = header.get("x5t#S256")
    shown = x5t256 or x5t or ""
    if alg == "RS256":
        pad = padding.PKCS1v15()
    elif alg == "PS256":
        # Entra documents PS256 with x5t#S256; the salt length equals the digest length (32).
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if not x5t256:
            raise AadError(700027, reason="PS256 requires the x5t#S256 header", thumbprint=shown, client_id=cid)
    else:
        raise AadError(700027, reason="Unsupported signing algorithm '%s' (use RS256 or PS256)" % alg,
                       thumbprint=shown, client_id=cid)
    if not x5t and not x5t256:
        raise AadError(700027, reason="The key was not found. The header carries neither x5t nor x5t#S256",
                       thumbprint="", client_id=cid)
    cert = None
    for pem in app["certificates"]:
        c, t1, t256, hex1 = _cert_thumbprints(pem)
        if (x5t256 and hmac.compare_digest(t256, x5t256)) or (x5t and not x5t256 and hmac.compare_digest(t1, x5t)):
            cert = c
            shown = hex1
    if cert is None:
        raise AadError(700027, reason="The key was not found.", thumbprint=shown, client_id=cid)
    try:
        cert.public_key().verify(sig, (parts[0] + "." + parts[1]).encode("ascii"), pad, hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        raise AadError(700027, reason="The provided signature value did not match the expected signature value.",
                       thumbprint=shown, client_id=cid)
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud.rstrip("/").lower() not in token_urls:
        raise AadError(700023)
    if claims.get("iss") != cid or claims.get("sub") != cid:
        raise AadError(700021)
    cfg = tenant.config
    skew = cfg["assertion_skew_s"]
    exp = claims.get("exp")
    nbf = claims.get("nbf", claims.get("iat"))
    fmt = lambda t: util.aad_time_7(t) if isinstance(t, (int, float)) else "0001-01-01T00:00:00.0000000Z"
    bad_time = not isinstance(exp, (int, float)) or isinstance(exp, bool) or \
        (nbf is not None and (not isinstance(nbf, (int, float)) or isinstance(nbf, bool)))
    if bad_time or now > exp + skew or (nbf is not None and now + skew < nbf) or \
            (nbf is not None and exp - nbf > cfg["assertion_max_lifetime_s"]):
        raise AadError(700024, now=util.aad_time_7(now), nbf=fmt(nbf if nbf is not None else 0), exp=fmt(exp))
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise AadError(50027, reason="The client assertion has no jti claim")
    if not jti_cache.check_and_add((cid, jti), exp + skew, now):
        # Entra documents jti as unique but not the code of a replay: the emulator's choice, see README.
        raise AadError(700027, reason="The jti '%s' was already used; each assertion must be new" % jti,
                       thumbprint=shown, client_id=cid)


def verify_secret(app, secret, now):
    cid = app["client_id"]
    for s in app["secrets"]:
        if hmac.compare_digest(s["value"].encode("utf-8"), secret.encode("utf-8")):
            if s.get("expires") is not None and s["expires"] <= now:
                raise AadError(7000222, client_id=cid)
            return
    raise AadError(7000215, client_id=cid)


def token_request(tenant, signer, jti_cache, tenant_name, content_type, raw_body, token_urls):
    """Handles POST /{tenant}/oauth2/v2.0/token. Returns the success body; raises AadError."""
    with tenant.lock:
        now = tenant.now()
        if not tenant.knows_tenant(tenant_name):
            raise AadError(90002, tenant=tenant_name)
        if not (content_type or "").lower().startswith("application/x-www-form-urlencoded"):
            raise AadError(900144, param="grant_type")
        try:
            form = urllib.parse.parse_qs(raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise AadError(900144, param="grant_type")
        f = {k: v[0] for k, v in form.items()}
        grant = f.get("grant_type")
        if not grant:
            raise AadError(900144, param="grant_type")
        if grant != "client_credentials":
            raise AadError(70003, grant=grant)
        cid = f.get("client_id")
        if not cid:
            raise AadError(900144, param="client_id")
        app = tenant.apps.get(cid)
        if app is None:
            raise AadError(700016, client_id=cid, tenant=tenant_name)
        if f.get("client_assertion") is not None or f.get("client_assertion_type") is not None:
            if f.get("client_assertion_type") != JWT_BEARER:
                raise AadError(50027, reason="client_assertion_type must be " + JWT_BEARER)
            if not f.get("client_assertion"):
                raise AadError(7000218)
            verify_assertion(tenant, app, f["client_assertion"], token_urls, jti_cache, now)
            cred = "certificate"
        elif f.get("client_secret"):
            verify_secret(app, f["client_secret"], now)
            cred = "secret"
        else:
            raise AadError(7000218)
        scope = f.get("scope")
        if not scope:
            raise AadError(900144, param="scope")
        res = parse_scope(tenant, scope)
        lifetime = tenant.config["token_lifetime_s"]
        iat = int(now)
        claims = {"aud": res["aud"], "iss": "https://sts.windows.net/%s/" % tenant.tenant_id, "iat": iat,
                  "nbf": iat, "exp": iat + lifetime, "appid": cid, "appidacr": "2" if cred == "certificate" else "1",
                  "idtyp": "app", "oid": util.new_guid(), "roles": list(res.get("roles", [])),
                  "tid": tenant.tenant_id, "uti": util.b64url_encode(util.new_guid().encode())[:22], "ver": "1.0"}
        token = signer.sign(claims)
    return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
            "access_token": token}, cid


class AuthFailure(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_bearer(tenant, signer, authorization, api):
    """Claims of a valid access token for `api` ('exchange' or 'graph'); raises AuthFailure."""
    if not authorization:
        raise AuthFailure("missing", "Access token is empty.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailure("missing", "Access token is empty.")
    try:
        claims = signer.verify(token.strip())
    except ValueError as e:
        if str(e) == "signature":
            raise AuthFailure("signature", "Access token validation failure. Invalid signature.")
        raise AuthFailure("malformed", "IDX14100: JWT is not well formed.")
    with tenant.lock:
        now = tenant.now()
        skew = tenant.config["api_clock_skew_s"]
        auds = {r["aud"].lower() for r in tenant.resources.values() if r["api"] == api}
        if str(claims.get("aud", "")).lower() not in auds:
            raise AuthFailure("audience", "Access token validation failure. Invalid audience.")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + skew or (isinstance(nbf, (int, float)) and now + skew < nbf):
            raise AuthFailure("expired", "Access token has expired or is not yet valid.")
        if claims.get("tid") != tenant.tenant_id:
            raise AuthFailure("tenant", "Access token validation failure. Invalid tenant.")
    return claims
