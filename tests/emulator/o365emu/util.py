"""Small helpers shared by every module: base64url, JSON, ids, time formats, hashing."""
import base64
import datetime
import email.utils
import hashlib
import json
import uuid


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
