#!/usr/bin/env python3
"""Helpers for the failover tests (tests/e2e/e2e_failover.sh).

    failover.py leader --bootstrap HOST:PORT,... --topic T [--partition N]
        Prints the node id of the partition's leader (Metadata v4, asked of each bootstrap address in turn
        until one answers); -1 while the partition has no leader.
    failover.py stream --data DIR --dir-env FILE --out LOG --stop FILE [--flavor openldap|ad] [--interval S]
                       [--max N]
        The change stream: replaces the userCertificate of the manifest's users, round robin, with a new valid
        S/MIME certificate each time (ldapmodify; --flavor ad: Samba AD, DIR-ENV's SAMBA_* with a simple bind
        over plain LDAP, which samba.sh allows), until FILE exists (or N changes, or 300 s). Each attempt is
        one JSON line in LOG, in order: {"n", "uid", "mail", "sha", "rc", "t"}; an attempt that failed (rc != 0,
        the directory restarting) may still have been applied, so it keeps its place in the order.
    failover.py count --log LOG [--ok]
        Prints the number of attempts (with --ok: successful ones) in a stream log.
    failover.py regressions --admin URL --stream LOG --since SEQ
        Reads the emulator's change journal after SEQ and checks, per recipient, that its UserCertificate
        writes follow the directory's order: each write's value is the stream's value of that user at a position
        not before the previous write's (skipping states is fine, going back is a regression). A value that
        neither the stream nor the initial directory wrote is an error too. Prints a summary line; exit 1 on
        any regression.

Every loop is bounded (a deadline or a count); waits poll observable state.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "services", "kafka"))
sys.path.insert(0, HERE)

import kafka_probe  # noqa: E402  (tests/services/kafka: the stdlib Kafka wire client)
import pipeline  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

STREAM_MAX_SECONDS = 300


def die(msg):
    sys.exit("failover.py: error: " + msg)


def partition_leader(host, port, topic, partition, timeout):
    """Leader node id of topic/partition from one broker's Metadata v4 answer (-1: none, None: not listed)."""
    body = struct.pack(">i", 1) + kafka_probe.kstr(topic) + b"\x00"
    r = kafka_probe.call(host, port, 3, 4, body, timeout)
    r.take(">i")  # throttle_time_ms
    for _ in range(r.take(">i")):  # brokers
        r.take(">i")
        r.string()
        r.take(">i")
        r.string()
    r.string()  # cluster_id
    r.take(">i")  # controller_id
    leader = None
    for _ in range(r.take(">i")):  # topics
        r.take(">h")  # error_code
        name = r.string()
        r.take("b")  # is_internal
        for _ in range(r.take(">i")):
            r.take(">h")
            idx = r.take(">i")
            lead = r.take(">i")
            for _ in range(r.take(">i")):  # replicas
                r.take(">i")
            for _ in range(r.take(">i")):  # isr
                r.take(">i")
            if name == topic and idx == partition:
                leader = lead
    return leader


def cmd_leader(a):
    last = "no address answered"
    for h, p in kafka_probe.parse_bootstrap(a.bootstrap):
        try:
            lead = partition_leader(h, p, a.topic, a.partition, 3.0)
        except (OSError, ValueError, struct.error) as e:
            last = f"{h}:{p}: {type(e).__name__}: {e}"
            continue
        if lead is None:
            last = f"{h}:{p} does not list {a.topic}/{a.partition}"
            continue
        print(lead)
        return 0
    die(f"no leader for {a.topic}/{a.partition} from {a.bootstrap}: {last}")


def new_cert(ca, ca_key, key, uid, address, n):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certsync tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{uid} change {n}")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .sign(ca_key, hashes.SHA256()))


def cmd_stream(a):
    m = pipeline.load_manifest(a.data)
    env = pipeline.read_env(a.dir_env)
    users = m["users"]
    if not users:
        die(f"no users in {a.data}/manifest.json")
    ca, ca_key = pipeline.load_ca(a.data)
    # One key per user, new certificates over it: signing is ~1 ms, an RSA key generation ~100 ms.
    keys = {u["uid"]: rsa.generate_private_key(public_exponent=65537, key_size=2048) for u in users}
    pre = "SAMBA" if a.flavor == "ad" else "SLAPD"
    cmd = ["ldapmodify", "-x", "-H", env[pre + "_URL"], "-D", env[pre + "_BIND_DN"], "-y", env[pre + "_PASSWORD_FILE"],
           "-o", "nettimeout=3"]
    end = time.monotonic() + STREAM_MAX_SECONDS
    with open(a.out, "a") as log:
        for n in range(a.max):
            if os.path.exists(a.stop) or time.monotonic() >= end:
                break
            u = users[n % len(users)]
            der = new_cert(ca, ca_key, keys[u["uid"]], u["uid"], u["mail"], n).public_bytes(
                serialization.Encoding.DER)
            attr = pipeline.cert_attr(a.flavor)
            ldif = (f"dn: {u['dn']}\nchangetype: modify\nreplace: {attr}\n"
                    f"{attr}:: {base64.b64encode(der).decode()}\n-\n")
            try:
                rc = subprocess.run(cmd, input=ldif, capture_output=True, text=True, timeout=10).returncode
            except subprocess.TimeoutExpired:
                rc = -1
            log.write(json.dumps({"n": n, "uid": u["uid"], "mail": u["mail"], "sha": hashlib.sha256(der).hexdigest(),
                                  "rc": rc, "t": time.time()}) + "\n")
            log.flush()
            # Pacing of the load (not a synchronisation); a failed attempt (directory down) backs off a little.
            time.sleep(a.interval if rc == 0 else 0.2)
    return 0


def read_stream(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_count(a):
    try:
        s = read_stream(a.log)
    except OSError:
        s = []
    print(sum(1 for e in s if e["rc"] == 0) if a.ok else len(s))
    return 0


def cmd_regressions(a):
    stream = read_stream(a.stream)
    pos = {}  # (mail, sha) -> position in the stream
    for e in stream:
        pos[(e["mail"].lower(), e["sha"])] = e["n"]
    mails = {e["mail"].lower() for e in stream}
    entries = pipeline.http_json("GET", f"{a.admin}/journal?since={a.since}&kind=change", timeout=30)["entries"]
    last, writes, bad = {}, 0, []
    for e in sorted(entries, key=lambda x: x["seq"]):
        mail = (e.get("primary_smtp") or "").lower()
        if mail not in mails or e.get("attribute") != "UserCertificate" or e.get("unchanged"):
            continue
        writes += 1
        after = e.get("after") or []
        # -1: the state before the stream's first change of this user (the initial sync, or cleared).
        known = [pos.get((mail, h), -1) for h in after]
        unknown = [h for h, p in zip(after, known) if p < 0 and last.get(mail, -1) >= 0]
        at = max(known) if known else -1
        if unknown:
            bad.append(f"seq {e['seq']} {mail}: value {unknown[0][:12]}... is no stream value, after stream "
                       f"position {last[mail]} (an older state came back)")
        elif at < last.get(mail, -1):
            bad.append(f"seq {e['seq']} {mail}: wrote stream position {at} after {last[mail]} (regression)")
        last[mail] = max(at, last.get(mail, -1))
    print(f"journal: {writes} UserCertificate writes to {len(last)} recipients checked against "
          f"{len(stream)} directory changes; {len(bad)} regressions")
    for b in bad[:10]:
        print("  " + b)
    return 1 if bad else 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ld = sub.add_parser("leader")
    ld.add_argument("--bootstrap", required=True)
    ld.add_argument("--topic", required=True)
    ld.add_argument("--partition", type=int, default=0)
    st = sub.add_parser("stream")
    for k in ("--data", "--dir-env", "--out", "--stop"):
        st.add_argument(k, required=True)
    st.add_argument("--flavor", choices=("ad", "openldap"), default="openldap")
    st.add_argument("--interval", type=float, default=0.05)
    st.add_argument("--max", type=int, default=5000)
    c = sub.add_parser("count")
    c.add_argument("--log", required=True)
    c.add_argument("--ok", action="store_true")
    rg = sub.add_parser("regressions")
    rg.add_argument("--admin", required=True)
    rg.add_argument("--stream", required=True)
    rg.add_argument("--since", type=int, default=0)
    a = p.parse_args(argv)
    return {"leader": cmd_leader, "stream": cmd_stream, "count": cmd_count, "regressions": cmd_regressions}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
