"""Small helpers shared by every module: base64url, JSON, ids, time formats, hashing."""
import base64
import datetime
import email.utils
import hashlib
import json
import math
import uuid

JSON_MAX_DEPTH = 64        # request bodies nest a few levels; deeper is an attack, not a request
TRUNCATE_AT = 256          # journal and log fields: long enough to identify, short enough to bound memory


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Decodes base64url with or without padding; raises ValueError on bad input."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=" for c in text):
        raise ValueError("not base64url")
    pad = "=" * (-len(text.rstrip("=")) % 4)
    return base64.urlsafe_b64decode(text.rstrip("=") + pad)


def b64_decode_strict(text: str) -> bytes:
    """Standard base64 (what .NET writes for byte[]); raises ValueError on bad input."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def b64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def new_guid() -> str:
    return str(uuid.uuid4())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)


def aad_timestamp(ts: float) -> str:
    """Entra's `timestamp` field: '2023-01-09 14:06:14Z'."""
    return utc(ts).strftime("%Y-%m-%d %H:%M:%SZ")


def aad_time_7(ts: float) -> str:
    """Entra's time format inside AADSTS700024: '2024-10-02T22:05:03.6755165Z'."""
    d = utc(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%07d" % (d.microsecond * 10) + "Z"


def graph_date(ts: float) -> str:
    """Graph innerError `date`: '2023-02-20T05:06:48'."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%S")


def iso(ts: float) -> str:
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _reject_constant(name):
    raise ValueError("'%s' is not valid JSON (RFC 8259 has no NaN or Infinity)" % name)


def _finite_float(text):
    v = float(text)
    if not math.isfinite(v):
        raise ValueError("number %s is out of range" % text[:40])
    return v


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError("duplicate key '%s'" % truncate(k, 64))
        out[k] = v
    return out


def json_depth(obj):
    """Nesting depth of a parsed JSON value, computed without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return depth


def strict_loads(raw, max_depth=JSON_MAX_DEPTH):
    """Parses a request's JSON the way a strict server does: UTF-8 only, no NaN/Infinity, no non-finite
    numbers, no duplicate keys, at most max_depth levels. Raises ValueError naming the problem (never
    RecursionError: a body nested 100,000 deep is a bad request, not a crash)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8")
    except RecursionError:
        raise ValueError("JSON nested deeper than %d levels" % max_depth)
    except json.JSONDecodeError as e:
        raise ValueError(str(e))
    if json_depth(doc) > max_depth:
        raise ValueError("JSON nested deeper than %d levels" % max_depth)
    return doc


def truncate(value, limit=TRUNCATE_AT):
    """A string cut to `limit` characters with a marker of what was cut; other values unchanged."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "...(+%d chars)" % (len(value) - limit)
    return value


def glob_match(pattern, text):
    """PowerShell -like with '*' wildcards, case-insensitive, in linear time: the pattern splits at '*'
    into literal segments; the first anchors the start, the last the end, the others are found left to
    right (leftmost match is always safe for '*'-only globs). No regex, so no backtracking."""
    p, t = pattern.lower(), text.lower()
    parts = p.split("*")
    if len(parts) == 1:
        return p == t
    first, last, middle = parts[0], parts[-1], [m for m in parts[1:-1] if m]
    if not t.startswith(first) or len(t) < len(first) + len(last):
        return False
    pos, end = len(first), len(t) - len(last)
    if not t.endswith(last):
        return False
    for m in middle:
        i = t.find(m, pos, end)
        if i < 0:
            return False
        pos = i + len(m)
    return True
