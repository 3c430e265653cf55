#!/usr/bin/env python3
"""Measurement side of bench/bench_e2e.sh (not run on its own).

    bench_e2e.py sync --data DIR --flavor ad|openldap --dir-env FILE --admin URL --timeout S --t0 EPOCH
        Reads the directory's certificates once (they do not change during the initial sync), then polls the
        emulator's state until every user of DIR/manifest.json holds exactly the directory's values (policy
        off in the bench's publisher). Prints the seconds from EPOCH (the services' start) to the poll that
        saw everything in sync; exit 1 if not within S seconds.
    bench_e2e.py latency --data DIR --flavor ad|openldap --dir-env FILE --admin URL --changes M --rate R
                         --name NAME [--timeout S]
        Prepares M certificate changes for random users (pipeline.py's issue(): new key, new S/MIME
        certificate), then issues them with ldapmodify at R per second. t0 of a change is the wall clock just
        before its ldapmodify starts; its write time is the time of the emulator journal's change entry that
        puts the new certificate on the recipient. Both are this machine's CLOCK_REALTIME (the emulator runs
        here), so no alignment is needed. Prints NAME_samples / _p50_ms / _p99_ms / _max_ms lines.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import pipeline  # noqa: E402  (tests/e2e/pipeline.py: manifest, directory reads, certificate issuing)

from cryptography.hazmat.primitives import serialization  # noqa: E402


def dir_auth(flavor, env):
    if flavor == "ad":
        return ["-x", "-H", env["SAMBA_URL"], "-D", env["SAMBA_BIND_DN"], "-y", env["SAMBA_PASSWORD_FILE"]]
    return ["-x", "-H", env["SLAPD_URL"], "-D", env["SLAPD_BIND_DN"], "-y", env["SLAPD_PASSWORD_FILE"]]


# Exchange Online keeps at most this many values per certificate attribute (publisher/pub_decide.h
# PUB_DECIDE_MAX_VALUES, the emulator's max_values): for a user with more, the publisher prunes (drops the values
# it judges unusable, then keeps the newest) and the recipient holds a non-empty subset of the directory's values.
MAX_VALUES = 15


def in_sync(m, state, directory):
    """One bool per manifest user: the recipient holds exactly the directory's values (per attribute; at most
    a pruned subset of them when the directory has more than MAX_VALUES)."""
    by_smtp = {(r.get("PrimarySmtpAddress") or "").lower(): r for r in state.get("recipients", [])}
    out = []
    for u in m["users"]:
        r = by_smtp.get(u["mail"].lower())
        d = directory.get(u["dn"].lower(), {a: [] for a in pipeline.ATTRS})
        ok = r is not None
        for attr, field in (("userCertificate", "UserCertificate"), ("userSMIMECertificate", "UserSMimeCertificate")):
            if not ok:
                break
            want = {hashlib.sha256(v).hexdigest() for v in d[attr]}
            have = set(pipeline.sha_list(r.get(field)))
            ok = have == want if len(want) <= MAX_VALUES else (0 < len(have) <= MAX_VALUES and have <= want)
        out.append(ok)
    return out


def cmd_sync(a):
    # Progress from the journal (cheap, incremental): GET /state of 10,000 recipients costs the emulator a second
    # or more per poll and would slow the very sync it measures. The end is confirmed with one GET /state.
    m = pipeline.load_manifest(a.data)
    directory = pipeline.directory_values(a.flavor, pipeline.read_env(a.dir_env))
    want = {}
    for u in m["users"]:
        d = directory.get(u["dn"].lower(), {x: [] for x in pipeline.ATTRS})
        for attr, field in (("userCertificate", "UserCertificate"), ("userSMIMECertificate", "UserSMimeCertificate")):
            want[(u["mail"].lower(), field)] = {hashlib.sha256(v).hexdigest() for v in d[attr]}
    have = {k: set() for k in want}  # the seeded recipients hold no certificates: an empty tenant
    end = time.time() + a.timeout
    seq, last = 0, -1
    while True:
        j = pipeline.http_json("GET", f"{a.admin}/journal?since={seq}&kind=change", timeout=60)
        for e in j["entries"]:
            seq = max(seq, e["seq"])
            k = ((e.get("primary_smtp") or "").lower(), e.get("attribute"))
            if k in have:
                have[k] = set(e.get("after") or [])
        ok = {k for k in want if (have[k] == want[k] if len(want[k]) <= MAX_VALUES
                                  else 0 < len(have[k]) <= MAX_VALUES and have[k] <= want[k])}
        done = len({mail for mail, _ in want}) - len({mail for (mail, f) in want if (mail, f) not in ok})
        now = time.time()
        if done != last:
            print(f"  [{now - a.t0:6.1f} s] {done}/{len(m['users'])} users in sync (journal)", file=sys.stderr)
            last = done
        if done == len(m["users"]):
            state = pipeline.http_json("GET", a.admin + "/state", timeout=60)
            if all(in_sync(m, state, directory)):
                print(f"{now - a.t0:.1f}")
                return 0
            print("the journal says in sync but GET /state disagrees; polling on", file=sys.stderr)
        if now >= end:
            print(f"not in sync after {a.timeout} s: {len(m['users']) - done} users pending", file=sys.stderr)
            return 1
        time.sleep(0.5)  # poll of the journal; the figure is the poll's own time (+- 0.5 s)


def pct(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, int(p * len(sorted_vals)))]


def cmd_latency(a):
    m = pipeline.load_manifest(a.data)
    env = pipeline.read_env(a.dir_env)
    auth = dir_auth(a.flavor, env)
    attr = pipeline.cert_attr(a.flavor)
    rnd = random.Random(11)
    users = rnd.sample(m["users"], min(a.changes, len(m["users"])))
    while len(users) < a.changes:  # fewer users than changes: users repeat, never back to back
        users.append(users[len(users) % len(m["users"])])
    changes = []
    for u in users:  # before the clock starts: key generation is not part of the latency
        cert, _ = pipeline.issue(a.data, u["uid"], u["mail"])
        der = cert.public_bytes(serialization.Encoding.DER)
        ldif = (f"dn: {u['dn']}\nchangetype: modify\nreplace: {attr}\n"
                f"{attr}:: {base64.b64encode(der).decode()}\n-\n")
        changes.append((u["mail"].lower(), hashlib.sha256(der).hexdigest(), ldif))
    since = pipeline.http_json("GET", a.admin + "/journal?since=0&kind=change")["last_seq"]
    issued = []
    start = time.monotonic()
    for i, (mail, sha, ldif) in enumerate(changes):
        delay = start + i / a.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing of the change stream (the load), not synchronisation
        t0 = time.time()
        subprocess.run(["ldapmodify"] + auth, input=ldif, text=True, check=True, stdout=subprocess.DEVNULL)
        issued.append((mail, sha, t0))
    want = {(mail, sha): t0 for mail, sha, t0 in issued}
    got = {}
    end = time.time() + a.timeout
    seq = since
    while len(got) < len(want) and time.time() < end:
        j = pipeline.http_json("GET", f"{a.admin}/journal?since={seq}&kind=change", timeout=30)
        for e in j["entries"]:
            mail = (e.get("primary_smtp") or "").lower()
            for sha in e.get("after") or []:
                k = (mail, sha)
                if k in want and k not in got:
                    got[k] = pipeline.iso_epoch(e["time"]) - want[k]
        seq = j.get("last_seq", seq)
        if len(got) < len(want):
            time.sleep(0.2)  # poll of the journal; latencies come from the entries' own times
    missing = len(want) - len(got)
    lat = sorted(v * 1000 for v in got.values())
    print(f"{a.name}_samples: {len(lat)}")
    if missing:
        print(f"{a.name}_missing: {missing} (no journal write within {a.timeout} s)")
    if not lat:
        return 1
    print(f"{a.name}_p50_ms: {pct(lat, 0.50):.0f}")
    print(f"{a.name}_p99_ms: {pct(lat, 0.99):.0f}")
    print(f"{a.name}_max_ms: {lat[-1]:.0f}")
    return 1 if missing else 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("sync", "latency"):
        s = sub.add_parser(name)
        s.add_argument("--data", required=True)
        s.add_argument("--flavor", choices=("ad", "openldap"), required=True)
        s.add_argument("--dir-env", required=True)
        s.add_argument("--admin", required=True)
        s.add_argument("--timeout", type=float, default=60)
        if name == "sync":
            s.add_argument("--t0", type=float, required=True)
        else:
            s.add_argument("--changes", type=int, required=True)
            s.add_argument("--rate", type=float, required=True)
            s.add_argument("--name", required=True)
    a = p.parse_args(argv)
    if a.cmd == "latency" and (a.changes < 1 or a.rate <= 0):
        p.error("--changes must be >= 1 and --rate > 0")
    return cmd_sync(a) if a.cmd == "sync" else cmd_latency(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
