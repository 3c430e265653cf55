"""The token endpoint (OAuth2 client credentials, app-only) and access-token checks for the APIs.

Client assertions are verified for real with `cryptography`: RS256 + x5t (base64url SHA-1 of the
registered certificate's DER) or PS256 + x5t#S256, the signature with the registered certificate's
public key, aud, iss = sub = client_id, nbf/exp with a configurable skew, a lifetime limit, jti reuse."""
import hashlib
import heapq
import hmac
import math
import threading
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import state, util
from .aadsts import AadError

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# JWT NumericDate values outside this range are refused: 0 .. 9999-12-31T23:59:59Z. Anything else is a
# forged or broken assertion, and keeping it out also keeps time formatting and jti expiry finite.
TIME_MIN, TIME_MAX = 0, 253402300799
JTI_MAX = 100000            # assertion ids remembered at most; the soonest to expire go first
ALLOWED_ALGS = ("RS256", "PS256")


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
            header = util.strict_loads(util.b64url_decode(parts[0]))
            claims = util.strict_loads(util.b64url_decode(parts[1]))
            sig = util.b64url_decode(parts[2])
        except ValueError:
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
    """Assertion ids seen, kept until their exp plus skew. A heap orders them by expiry, so eviction
    costs O(log n) per id instead of a scan of the whole cache per request, and the cache holds at
    most JTI_MAX ids (the soonest to expire are dropped first)."""

    def __init__(self, max_entries=JTI_MAX):
        self.lock = threading.Lock()
        self.seen = {}
        self.heap = []   # (until, key)
        self.max_entries = max_entries

    def check_and_add(self, key, until, now):
        with self.lock:
            while self.heap and (self.heap[0][0] < now or len(self.heap) >= self.max_entries):
                t, k = heapq.heappop(self.heap)
                if self.seen.get(k) == t:
                    del self.seen[k]
            if key in self.seen:
                return False
            self.seen[key] = until
            heapq.heappush(self.heap, (until, key))
            return True

    def __len__(self):
        with self.lock:
            return len(self.seen)

    def clear(self):
        with self.lock:
            self.seen.clear()
            self.heap = []


def _cert_thumbprints(pem):
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert, util.b64url_encode(hashlib.sha1(der).digest()), util.b64url_encode(hashlib.sha256(der).digest()), \
        hashlib.sha1(der).hexdigest().upper()


def parse_scope(tenant, scope, tenant_name):
    """(resource prefix, resource entry) for a client-credentials scope, or AadError 1002012 (not
    <resource>/.default), 500011 / 70011 (unknown resource, config unknown_scope_code), 700022 (two)."""
    items = scope.split()
    resources = set()
    for s in items:
        if not s.endswith("/.default"):
            raise AadError(1002012, scope=scope)
    for s in items:
        base = s[: -len("/.default")].rstrip("/").lower()
        match = None
        for prefix in tenant.resources:
            if prefix.rstrip("/").lower() == base:
                match = prefix
        if match is None:
            code = tenant.config["unknown_scope_code"]
            raise AadError(code, scope=scope, resource=s[: -len("/.default")], tenant=tenant_name)
        resources.add(match)
    if not resources:
        raise AadError(1002012, scope=scope)
    if len(resources) > 1:
        raise AadError(700022, scope=scope)
    prefix = resources.pop()
    return prefix, tenant.resources[prefix]


def _numeric_date(claims, name):
    """A JWT NumericDate claim as a number: None when absent; AadError 50027 when present but not a
    finite number (bool is no number) inside [TIME_MIN, TIME_MAX]."""
    if name not in claims:
        return None
    v = claims[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or \
            (isinstance(v, float) and not math.isfinite(v)) or not TIME_MIN <= v <= TIME_MAX:
        raise AadError(50027, reason="The claim '%s' must be a NumericDate (seconds since 1970) between %d and %d"
                       % (name, TIME_MIN, TIME_MAX))
    return v


def verify_assertion(tenant, app, assertion, token_urls, jti_cache, now):
    """Checks a client assertion JWT; raises AadError with the code Entra uses."""
    cid = app["client_id"]
    parts = assertion.split(".")
    if len(parts) != 3:
        raise AadError(50027, reason="The client assertion does not have three parts")
    try:
        header = util.strict_loads(util.b64url_decode(parts[0]))
        claims = util.strict_loads(util.b64url_decode(parts[1]))
        sig = util.b64url_decode(parts[2])
    except ValueError as e:
        raise AadError(50027, reason="The client assertion is not base64url-encoded JSON (%s)" % util.truncate(str(e), 80))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AadError(50027, reason="The client assertion header and payload must be JSON objects")
    alg = header.get("alg")
    x5t = header.get("x5t")
    x5t256 = header.get("x5t#S256")
    for name, v in (("alg", alg), ("x5t", x5t), ("x5t#S256", x5t256)):
        if v is not None and not isinstance(v, str):
            raise AadError(50027, reason="The header '%s' must be a string" % name)
    shown = util.truncate(x5t256 or x5t or "", 64)
    if alg not in ALLOWED_ALGS:
        raise AadError(700027, reason="Unsupported signing algorithm '%s' (use RS256 or PS256)" % util.truncate(alg, 32),
                       thumbprint=shown, client_id=cid)
    if alg == "PS256":
        # Entra documents PS256 with x5t#S256; the salt length equals the digest length (32).
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if not x5t256:
            raise AadError(700027, reason="PS256 requires the x5t#S256 header", thumbprint=shown, client_id=cid)
    else:  # RS256, the only other algorithm ALLOWED_ALGS lets through
        pad = padding.PKCS1v15()
    if not x5t and not x5t256:
        raise AadError(700027, reason="The key was not found. The header carries neither x5t nor x5t#S256",
                       thumbprint="", client_id=cid)
    cert = None
    for pem in app["certificates"]:
        c, t1, t256, hex1 = _cert_thumbprints(pem)
        # Compared as bytes: compare_digest refuses non-ASCII str, and a thumbprint is ASCII base64url.
        if (x5t256 and hmac.compare_digest(t256.encode(), x5t256.encode("utf-8"))) or \
                (x5t and not x5t256 and hmac.compare_digest(t1.encode(), x5t.encode("utf-8"))):
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
    exp = _numeric_date(claims, "exp")
    nbf = _numeric_date(claims, "nbf")
    iat = _numeric_date(claims, "iat")
    if exp is None:
        raise AadError(50027, reason="The client assertion has no exp claim")
    start = nbf if nbf is not None else iat
    if start is None:
        # certificate-credentials lists nbf (and iat) among the claims: without either the lifetime
        # cannot be checked, so the assertion is refused rather than trusted for ever.
        raise AadError(50027, reason="The client assertion has neither an nbf nor an iat claim")
    if now > exp + skew or now + skew < start or exp <= start or exp - start > cfg["assertion_max_lifetime_s"]:
        raise AadError(700024, now=util.aad_time_7(now), nbf=util.aad_time_7(start), exp=util.aad_time_7(exp))
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise AadError(50027, reason="The client assertion has no jti claim")
    if not jti_cache.check_and_add((cid, jti), exp + skew, now):
        # Entra documents jti as unique but not the code of a replay: the emulator's choice, see README.
        raise AadError(700027, reason="The jti '%s' was already used; each assertion must be new" % util.truncate(jti, 64),
                       thumbprint=shown, client_id=cid)


def verify_secret(app, secret, now):
    cid = app["client_id"]
    for s in app["secrets"]:
        if hmac.compare_digest(s["value"].encode("utf-8"), secret.encode("utf-8")):
            if s.get("expires") is not None and s["expires"] <= now:
                raise AadError(7000222, client_id=cid)
            return
    raise AadError(7000215, client_id=cid)


def token_request(tenant, signer, jti_cache, tenant_name, content_type, raw_body, token_urls, throttle=None):
    """Handles POST /{tenant}/oauth2/v2.0/token. Returns (success body, client id); raises AadError.
    throttle(client_id) -> None or seconds to wait: called once the app is known to be registered, so an
    unknown or forged client_id never gets (or creates) a throttling budget."""
    with tenant.lock:
        now = tenant.now()
        if not tenant.knows_tenant(tenant_name):
            raise AadError(90002, tenant=tenant_name)
        if not (content_type or "").lower().startswith("application/x-www-form-urlencoded"):
            raise AadError(900144, param="grant_type")
        try:
            pairs = urllib.parse.parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise AadError(900144, param="grant_type")
        f = {}
        for k, v in pairs:
            if k in f:
                # RFC 6749 3.1: parameters MUST NOT be included more than once; Entra answers 9000411.
                raise AadError(9000411, param=util.truncate(k, 64))
            f[k] = v
        grant = f.get("grant_type")
        if not grant:
            raise AadError(900144, param="grant_type")
        if grant != "client_credentials":
            raise AadError(70003, grant=util.truncate(grant, 64))
        cid = f.get("client_id")
        if not cid:
            raise AadError(900144, param="client_id")
        app = tenant.apps.get(cid)
        if app is None:
            raise AadError(700016, client_id=util.truncate(cid, 64), tenant=tenant_name)
        if throttle is not None:
            wait = throttle(cid)
            if wait is not None:
                raise AadError(90055, retry_after=wait)
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
        prefix, res = parse_scope(tenant, scope, tenant_name)
        lifetime = tenant.config["token_lifetime_s"]
        iat = int(now)
        claims = {"aud": res["aud"], "iss": "https://sts.windows.net/%s/" % tenant.tenant_id, "iat": iat,
                  "nbf": iat, "exp": iat + lifetime, "appid": cid, "appidacr": "2" if cred == "certificate" else "1",
                  "idtyp": "app", "oid": util.new_guid(), "roles": state.app_roles(app, prefix, res),
                  "tid": tenant.tenant_id, "uti": util.b64url_encode(util.new_guid().encode())[:22], "ver": "1.0"}
        token = signer.sign(claims)
    # The success example of v2-oauth2-client-creds-grant-flow: token_type, expires_in, access_token.
    return {"token_type": "Bearer", "expires_in": lifetime, "access_token": token}, cid


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
        if not isinstance(exp, int) or not isinstance(nbf, int) or now > exp + skew or now + skew < nbf:
            raise AuthFailure("expired", "Access token has expired or is not yet valid.")
        if claims.get("tid") != tenant.tenant_id:
            raise AuthFailure("tenant", "Access token validation failure. Invalid tenant.")
    return claims
