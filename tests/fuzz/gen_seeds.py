#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ from real examples:
the shared certificate corpus (../shared/testdata/certs), the config examples (tests/data/config) and the
Office 365 response fixtures (tests/data/o365). Protobuf records are encoded here by hand (wire format)
from the .proto field numbers, so no protobuf package is needed. Run once after changing the examples;
crash inputs saved next to the seeds (crash-*) are kept.

    python3 tests/fuzz/gen_seeds.py
"""
import base64
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "testdata", "certs")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
MAX_SEED = 12 * 1024  # small files only: the replay test mutates every byte of each


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if len(data) > MAX_SEED:
        return
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def der_certs():
    """(name, DER) of every certificate / PKCS#7 in the shared corpus, PEM decoded."""
    out = []
    for dirpath, _, files in sorted(os.walk(SHARED)):
        for fn in sorted(files):
            if fn.endswith(".md"):
                continue
            raw = open(os.path.join(dirpath, fn), "rb").read()
            base = os.path.basename(dirpath) + "_" + fn
            blocks = re.findall(rb"-----BEGIN [^-]+-----(.*?)-----END", raw, re.S)
            if blocks:
                for i, b in enumerate(blocks):
                    try:
                        out.append(("%s.%d.der" % (base, i), base64.b64decode(b"".join(b.split()))))
                    except ValueError:
                        pass
            else:
                out.append((base, raw))
    return out


# --- protobuf wire format --------------------------------------------------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    b = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            b.append(x | 0x80)
        else:
            b.append(x)
            return bytes(b)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, v):
    if isinstance(v, str):
        v = v.encode()
    return varint(num << 3 | 2) + varint(len(v)) + v


def stamp(version, t, inv, usn=0, csn=None):
    s = f_varint(1, version) + f_varint(2, t) + f_bytes(3, inv) + f_varint(4, usn)
    return s + (f_bytes(5, csn) if csn else b"")


def version(n):
    inv = bytes(range(16))
    return f_bytes(1, stamp(n, 1700000000 + n, inv, 100 + n)) + f_bytes(2, stamp(1, 1700000000, inv, 99)) + \
        f_bytes(3, stamp(1, 1690000000, inv, 1))


def change_event(kind, certs, smime):
    src = f_bytes(1, "forest-a") + f_bytes(3, "dc1:389") + f_varint(5, 1) + f_varint(6, 1)
    ident = f_bytes(1, "6f2c1e7a-3b5d-4c8e-9a1f-0d2e3c4b5a69") + f_bytes(2, bytes(range(16))) + \
        f_bytes(5, "CN=Alice,OU=Users,DC=example,DC=com") + f_bytes(6, "alice@example.com") + \
        f_bytes(7, "alice@example.com") + f_bytes(8, "SMTP:alice@example.com")
    ev = f_varint(1, kind) + f_bytes(2, src) + f_bytes(3, ident) + f_bytes(4, version(3))
    for c in certs:
        ev += f_bytes(5, f_bytes(1, c) + f_bytes(2, hashlib.sha256(c).hexdigest()) + f_varint(3, 1))
    for c in smime:
        ev += f_bytes(6, f_bytes(1, c) + f_bytes(2, hashlib.sha256(c).hexdigest()) + f_varint(3, 2))
    if kind == 2:
        ev += f_varint(7, 1)
    return ev + f_varint(8, 1735689600000) + f_varint(10, 1)


def recipient():
    return f_bytes(1, "0b8f3c2e-1111-2222-3333-444455556666") + f_bytes(2, "alice@example.com") + \
        f_bytes(3, "UserMailbox") + f_bytes(4, "alice@example.com") + f_bytes(5, "upn")


def main():
    certs = der_certs()
    for name, der in certs:
        put("cert_diff", name, der)
    small = [d for n, d in certs if n.endswith(".der") and len(d) < 1500][:2]
    p7 = [d for n, d in certs if n.endswith(".p7c")][:1]

    # proto: first byte chooses the record (see fuzz_proto.c)
    put("proto", "event_upsert", b"\x00" + change_event(1, small, p7))
    put("proto", "event_removal", b"\x00" + change_event(2, [], []))
    put("proto", "event_no_source", b"\x00" + f_varint(1, 1) + f_bytes(3, f_bytes(1, "x")))
    obj = f_bytes(1, "forest-a/6f2c") + f_bytes(2, version(2)) + f_bytes(3, recipient()) + f_varint(4, 0) + \
        f_varint(5, 3) + f_varint(6, 42) + f_varint(7, 1735689600000) + f_varint(8, 2)
    put("proto", "state_object", b"\x01" + f_bytes(1, obj))
    rcpt = f_bytes(1, recipient()) + f_bytes(2, "src/obj") + f_bytes(3, version(2)) + \
        f_bytes(4, "00" * 32) + f_varint(5, 1) + f_varint(6, 1) + f_bytes(8, "crid")
    put("proto", "state_recipient", b"\x01" + f_bytes(2, rcpt))
    cp = f_bytes(1, "forest-a") + f_varint(2, 1) + f_bytes(3, "dc1:389") + f_bytes(4, b"\x01\x00\x00\x00" * 8) + \
        f_bytes(6, f_bytes(1, bytes(range(16))) + f_varint(2, 123456)) + f_varint(7, 1) + \
        f_bytes(8, "ab" * 32) + f_varint(9, 1735689600000) + f_varint(10, 7) + f_varint(11, 3)
    put("proto", "checkpoint", b"\x02" + cp)
    put("proto", "checkpoint_syncrepl", b"\x02" + f_bytes(1, "ldap-1") + f_varint(2, 3) +
        f_bytes(5, "rid=001,csn=20250101000000.000000Z#000000#000#000000"))
    dl = f_varint(1, 2) + f_bytes(2, "recipient not found") + f_bytes(3, "certsync.events") + f_varint(4, 1) + \
        f_varint(5, 9) + f_bytes(6, "forest-a/6f2c") + f_bytes(7, change_event(1, small[:1], [])) + \
        f_bytes(8, f_bytes(1, "h") + f_bytes(2, b"v")) + f_varint(11, 3) + f_varint(12, 404)
    put("proto", "dead_letter", b"\x03" + dl)
    va, vb = version(2), version(3)
    put("proto", "versions", b"\x04" + bytes([len(va)]) + va + vb)

    # config: first byte even = collector, odd = publisher
    cfgdir = os.path.join(ROOT, "tests", "data", "config")
    for fn in sorted(os.listdir(cfgdir)):
        path = os.path.join(cfgdir, fn)
        if not os.path.isfile(path):
            continue
        sel = b"\x00" if fn.startswith("collector") else b"\x01"
        put("config", fn, sel + open(path, "rb").read())

    # http: first byte chooses the parser (see fuzz_http.c)
    put("http", "token_ok", b"\x00" + b'{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,'
        b'"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"}')
    put("http", "token_ok_v1", b"\x00" + b'{"token_type":"Bearer","expires_in":"3599","access_token":"abc"}')
    put("http", "token_error", b"\x01\x00" + b'{"error":"invalid_client","error_description":"AADSTS7000215: '
        b'Invalid client secret provided.\\r\\nTrace ID: x","error_codes":[7000215]}')
    o365 = os.path.join(ROOT, "tests", "data", "o365")
    for fn in sorted(os.listdir(o365)):
        if fn.startswith("exo_") and fn.endswith(".json"):
            put("http", fn, b"\x02" + open(os.path.join(o365, fn), "rb").read())
    put("http", "graph_one", b"\x03" + b'{"@odata.context":"x","value":[{"id":"0b8f3c2e-1111-2222-3333-444455556666",'
        b'"userPrincipalName":"alice@example.com","mail":"alice@example.com","onPremisesImmutableId":"AAECAw=="}]}')
    put("http", "graph_none", b"\x03" + b'{"value":[]}')
    put("http", "retry_after_date", b"\x04" + b"Wed, 21 Oct 2015 07:28:00 GMT\nWed, 21 Oct 2015 07:27:00 GMT")
    put("http", "retry_after_secs", b"\x04" + b"120")
    put("http", "rate_limit", b"\x05" + b" 1200 \r\n")
    put("http", "b64", b"\x06" + base64.b64encode(small[0] if small else b"x"))

    # ldap: first byte chooses the parser (see fuzz_ldap.c); BER by hand
    def tlv(tag, body):
        n = len(body)
        if n < 0x80:
            return bytes([tag, n]) + body
        lb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag, 0x80 | len(lb)]) + lb + body
    cookie = b"rid=001,csn=20250101000000.000000Z#000000#000#000000"
    uuid = bytes(range(16))
    put("ldap", "info_new_cookie", b"\x00" + tlv(0x80, cookie))
    put("ldap", "info_refresh_delete", b"\x00" + tlv(0xA1, tlv(0x04, cookie) + tlv(0x01, b"\xff")))
    put("ldap", "info_refresh_present", b"\x00" + tlv(0xA2, tlv(0x04, cookie) + tlv(0x01, b"\x00")))
    put("ldap", "info_id_set", b"\x00" + tlv(0xA3, tlv(0x04, cookie) + tlv(0x01, b"\xff") +
                                           tlv(0x31, tlv(0x04, uuid) + tlv(0x04, uuid[::-1]))))
    put("ldap", "state_add", b"\x01" + tlv(0x30, tlv(0x0A, b"\x01") + tlv(0x04, uuid) + tlv(0x04, cookie)))
    put("ldap", "state_delete", b"\x01" + tlv(0x30, tlv(0x0A, b"\x03") + tlv(0x04, uuid)))
    put("ldap", "done", b"\x02" + tlv(0x30, tlv(0x04, cookie) + tlv(0x01, b"\xff")))
    put("ldap", "usn_position", b"\x03" + b"USN1" + uuid + struct.pack(">q", 123456) + b"dc1.example.com:389")
    put("ldap", "dirsync", b"\x04" + tlv(0x30, tlv(0x02, b"\x01") + tlv(0x02, b"\x00") +
                                         tlv(0x04, b"\x4d\x53\x44\x53" + bytes(60))))
    put("ldap", "paged", b"\x05" + tlv(0x30, tlv(0x02, b"\x00") + tlv(0x04, b"\x01\x02\x03\x04")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
