#!/usr/bin/env python3
"""Helpers for the whole pipeline: the local run (scripts/local-pipeline.sh) and the e2e tests (tests/e2e/).

    pipeline.py extra-user --data DIR --flavor ad|openldap --base DN --ou OU --uid UID --address ADDR
        Adds a user whose only certificate names ADDR instead of the user's own address (a value the
        certificate policy refuses: address_mismatch) to DIR/extra.ldif and DIR/manifest.json. Issued by
        gen_users.py's CA (DIR/ca.pem, DIR/ca.key); cert + key in DIR/users/UID/0.pem.
    pipeline.py change --data DIR --flavor ad|openldap --uid UID --out FILE.ldif
        Issues a new valid S/MIME certificate for UID (its mail in the SAN, emailProtection, RSA 2048) and
        writes an LDIF that replaces UID's userCertificate with it; prints "<sha256 of the DER> <pem file>".
    pipeline.py seed --data DIR --flavor ad|openldap --dir-env FILE (--out SEED.json | --post ADMIN_URL)
        The Office 365 recipients that match the directory users: a mailbox per user, directory-synced and
        cloud-managed (writable). AD: onPremisesImmutableId = base64 of the objectGUID bytes (read back with
        ldapsearch). OpenLDAP has no objectGUID and no UPN, so the publisher resolves by mail: the
        recipient's PrimarySmtpAddress is the directory's mail. --out writes a seed document for
        emulator.sh --seed; --post upserts the recipients into a running emulator.
    pipeline.py status --data DIR --flavor ad|openldap --dir-env FILE --admin URL --policy on|off
                       [--wait SECONDS] [--metrics NAME=PORT ...] [--min-events N]
        Prints one line per user of the manifest: certificates in the directory now (ldapsearch), in
        Office 365 (the emulator's state), status. With --wait, first shows progress until every user is
        in sync (exit 1 if not within SECONDS) and, with --min-events, the publisher (--metrics
        publisher=PORT) has consumed N events. --policy on: values the policy refuses must be absent.
    pipeline.py journal-seq --admin URL
        Prints the emulator journal's last sequence number.
    pipeline.py await-write --admin URL --since SEQ --mail ADDR --sha SHA --t0 EPOCH [--timeout S]
        Waits for the journal's change entry that writes SHA to ADDR's recipient; prints the latency from
        EPOCH (wall clock, this machine) to the write's journal time, in seconds.

"Policy" here predicts what common/cs_policy refuses with its default settings, from the certificate itself:
not_yet_valid, expired, an EKU without emailProtection (eku), no address of the user (address_mismatch).
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TENANT_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "emulator", "fixtures",
                              "tenant.json")


def die(msg):
    sys.exit("pipeline.py: error: " + msg)


def load_manifest(data):
    path = os.path.join(data, "manifest.json")
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        die(f"cannot read {path} ({e.strerror}); run tests/tools/gen_users.py --out {data} first")


def save_manifest(data, m):
    path = os.path.join(data, "manifest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(m, f, separators=(",", ":"))
    os.replace(path + ".tmp", path)


def load_ca(data):
    with open(os.path.join(data, "ca.pem"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(data, "ca.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return ca, key


def issue(data, uid, address, days=365):
    """A valid S/MIME certificate for `address` from gen_users.py's CA: (cert, RSA key)."""
    ca, ca_key = load_ca(data)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certsync tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{uid} {now:%H%M%S}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_pem(path, cert, key):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def cert_attr(flavor):
    return "userCertificate" if flavor == "ad" else "userCertificate;binary"


def mail_domain(base):
    parts = [rdn.split("=", 1)[1] for rdn in base.split(",") if rdn.strip().lower().startswith("dc=")]
    return ".".join(parts) if parts else "example.test"


def cmd_extra_user(a):
    m = load_manifest(a.data)
    mail = f"{a.uid}@{mail_domain(a.base)}"
    cert, key = issue(a.data, a.uid, a.address)
    der = cert.public_bytes(serialization.Encoding.DER)
    pem_file = f"users/{a.uid}/0.pem"
    write_pem(os.path.join(a.data, pem_file), cert, key)
    if a.flavor == "ad":
        dn = f"CN={a.uid},OU={a.ou},{a.base}"
        lines = [f"dn: {dn}", "objectClass: user", f"cn: {a.uid}", f"sAMAccountName: {a.uid}",
                 f"userPrincipalName: {mail}", f"mail: {mail}", f"proxyAddresses: SMTP:{mail}"]
    else:
        dn = f"uid={a.uid},ou={a.ou},{a.base}"
        lines = [f"dn: {dn}", "objectClass: inetOrgPerson", f"uid: {a.uid}", f"cn: {a.uid}", f"sn: {a.uid}",
                 f"mail: {mail}"]
    lines.append(f"{cert_attr(a.flavor)}:: {base64.b64encode(der).decode()}")
    with open(os.path.join(a.data, "extra.ldif"), "a") as f:
        f.write("\n".join(lines) + "\n\n")
    sha = hashlib.sha256(der).hexdigest()
    m["users"] = [u for u in m["users"] if u["uid"] != a.uid]
    m["users"].append({"uid": a.uid, "dn": dn, "mail": mail, "values": [
        {"attribute": "userCertificate", "sha256": sha, "cert_sha256": sha, "cert": pem_file, "key": pem_file,
         "kind": {"key": "rsa2048", "validity": "valid", "email_eku": True, "email_in": "san",
                  "address": a.address}}]})
    save_manifest(a.data, m)
    print(f"{dn} {sha}")


def cmd_change(a):
    m = load_manifest(a.data)
    u = next((u for u in m["users"] if u["uid"] == a.uid), None)
    if u is None:
        die(f"no user '{a.uid}' in {a.data}/manifest.json; pick one of "
            + ", ".join(x["uid"] for x in m["users"]))
    cert, key = issue(a.data, a.uid, u["mail"])
    der = cert.public_bytes(serialization.Encoding.DER)
    base = os.path.splitext(a.out)[0]
    with open(base + ".der", "wb") as f:
        f.write(der)
    write_pem(base + ".pem", cert, key)
    with open(a.out, "w") as f:
        f.write(f"dn: {u['dn']}\nchangetype: modify\nreplace: {cert_attr(a.flavor)}\n"
                f"{cert_attr(a.flavor)}:< file://{os.path.abspath(base + '.der')}\n-\n")
    print(hashlib.sha256(der).hexdigest(), base + ".pem")


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            if k:
                env[k] = v
    return env


def object_guids(flavor, env, dns):
    """dn (lower case) -> base64 objectGUID, read with ldapsearch (AD only)."""
    if flavor != "ad":
        return {}
    cmd = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", env["SAMBA_URL"], "-D", env["SAMBA_BIND_DN"],
           "-y", env["SAMBA_PASSWORD_FILE"], "-b", env["SAMBA_BASE"], "(objectClass=user)", "objectGUID"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"ldapsearch for objectGUID failed: {out.stderr.strip()}")
    guids, dn = {}, None
    for line in out.stdout.splitlines():
        if line.startswith("dn: "):
            dn = line[4:].lower()
        elif line.startswith("objectGUID:: ") and dn:
            # ldapsearch prints binary values as base64: exactly the immutable id Entra Connect derives.
            guids[dn] = line[len("objectGUID:: "):]
    missing = [d for d in dns if d.lower() not in guids]
    if missing:
        die(f"no objectGUID for {missing} under {env['SAMBA_BASE']}; was users.ldif added?")
    return guids


def recipients(a):
    m = load_manifest(a.data)
    env = read_env(a.dir_env)
    guids = object_guids(a.flavor, env, [u["dn"] for u in m["users"]])
    out = []
    for u in m["users"]:
        r = {"UserPrincipalName": u["mail"], "PrimarySmtpAddress": u["mail"], "DisplayName": u["uid"],
             "RecipientTypeDetails": "UserMailbox",
             "ExternalDirectoryObjectId": str(uuid.uuid5(uuid.NAMESPACE_URL, "certsync-demo:" + u["dn"].lower())),
             "IsDirSynced": True, "IsExchangeCloudManaged": True}
        if a.flavor == "ad":
            r["onPremisesImmutableId"] = guids[u["dn"].lower()]
        out.append(r)
    return out


def cmd_seed(a):
    recs = recipients(a)
    if a.out:
        with open(TENANT_FIXTURE) as f:
            fixture = json.load(f)
        doc = {"tenant_id": fixture["tenant_id"], "domain": fixture["domain"], "recipients": recs}
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=1)
    else:
        for r in recs:
            http_json("POST", a.post + "/state/recipients", r)
    print(f"{len(recs)} recipients")


def http_json(method, url, body=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def directory_values(flavor, env):
    """dn (lower case) -> {"userCertificate": [DER], "userSMIMECertificate": [bytes]}, read now with ldapsearch."""
    if flavor == "ad":
        url, dn, pw, base = env["SAMBA_URL"], env["SAMBA_BIND_DN"], env["SAMBA_PASSWORD_FILE"], env["SAMBA_BASE"]
        flt = "(objectClass=user)"
    else:
        url, dn, pw, base = env["SLAPD_URL"], env["SLAPD_BIND_DN"], env["SLAPD_PASSWORD_FILE"], env["SLAPD_BASE"]
        flt = "(objectClass=inetOrgPerson)"
    cmd = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-D", dn, "-y", pw, "-b", base, flt,
           "userCertificate;binary" if flavor == "openldap" else "userCertificate", "userSMIMECertificate"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"ldapsearch of {base} on {url} failed: {out.stderr.strip()}")
    found, cur = {}, None
    for line in out.stdout.splitlines():
        if line.startswith("dn: "):
            cur = found.setdefault(line[4:].lower(), {"userCertificate": [], "userSMIMECertificate": []})
        elif cur is not None and ":: " in line:
            attr, _, val = line.partition(":: ")
            attr = attr.split(";")[0]
            if attr in cur:
                cur[attr].append(base64.b64decode(val))
    return found


def user_cert(attr, value):
    try:
        if attr == "userCertificate":
            return x509.load_der_x509_certificate(value)
        certs = pkcs7.load_der_pkcs7_certificates(value)
        return certs[0] if certs else None
    except ValueError:
        return None


def refusal(attr, value, mail):
    """The rule of common/cs_policy that refuses this value for a user with address `mail`, or None
    (a prediction for the table: validity, extended key usage, address)."""
    c = user_cert(attr, value)
    if c is None:
        return "unparseable"
    now = datetime.datetime.now(datetime.timezone.utc)
    utc = datetime.timezone.utc
    # *_utc since cryptography 42; Debian 12 ships 38 (naive UTC datetimes).
    nb = getattr(c, "not_valid_before_utc", None) or c.not_valid_before.replace(tzinfo=utc)
    na = getattr(c, "not_valid_after_utc", None) or c.not_valid_after.replace(tzinfo=utc)
    if nb > now:
        return "not_yet_valid"
    if na < now:
        return "expired"
    try:
        eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            return "eku"
    except x509.ExtensionNotFound:
        pass
    addrs = [a.value for a in c.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    try:
        addrs += c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.RFC822Name)
    except x509.ExtensionNotFound:
        pass
    if mail.lower() not in (str(a).lower() for a in addrs):
        return "address_mismatch"
    return None


def sha_list(values):
    out = []
    for s in values or []:
        try:
            out.append(hashlib.sha256(base64.b64decode(s)).hexdigest())
        except ValueError:
            out.append("?")
    return out


ATTRS = ("userCertificate", "userSMIMECertificate")


def user_rows(m, state, directory, policy):
    """One row per manifest user: the directory's values now, Office 365's, and a status."""
    by_smtp = {}
    for r in state.get("recipients", []):
        by_smtp[(r.get("PrimarySmtpAddress") or "").lower()] = r
    rows = []
    for u in m["users"]:
        r = by_smtp.get(u["mail"].lower())
        d = directory.get(u["dn"].lower(), {a: [] for a in ATTRS})
        have = {"userCertificate": sha_list(r.get("UserCertificate")) if r else [],
                "userSMIMECertificate": sha_list(r.get("UserSMimeCertificate")) if r else []}
        refused = [(a, hashlib.sha256(v).hexdigest(), refusal(a, v, u["mail"])) for a in ATTRS for v in d[a]]
        refused = [x for x in refused if x[2]]
        skip = {(a, h) for a, h, _ in refused} if policy == "on" else set()
        want = {a: sorted(h for h in (hashlib.sha256(v).hexdigest() for v in d[a]) if (a, h) not in skip)
                for a in ATTRS}
        n_dir = sum(len(d[a]) for a in ATTRS)
        n_have = sum(len(have[a]) for a in ATTRS)
        in_sync = r is not None and all(sorted(have[a]) == want[a] for a in ATTRS)
        if r is None:
            status = "no recipient in Office 365"
        elif in_sync:
            status = "in sync" if n_dir else "in sync (no certificates)"
            if refused:
                reasons = ", ".join(sorted({why for _, _, why in refused}))
                status += (f"; policy refused {len(refused)} ({reasons})" if policy == "on"
                           else f"; published {len(refused)} the policy would refuse ({reasons})")
        else:
            leaked = [why for a, h, why in refused if h in have[a]]
            status = "pending"
            if policy == "on" and leaked:
                status = "WRONG: refused value published (" + ", ".join(leaked) + ")"
        rows.append({"uid": u["uid"], "mail": u["mail"], "dir": n_dir, "o365": n_have, "status": status,
                     "in_sync": in_sync})
    return rows


def print_table(rows):
    w = max(len(r["uid"]) for r in rows) if rows else 4
    print(f"  {'user':<{w}}  {'directory':>9}  {'Office 365':>10}  status")
    for r in rows:
        print(f"  {r['uid']:<{w}}  {r['dir']:>9}  {r['o365']:>10}  {r['status']}")


def metric_sum(port, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def cmd_status(a):
    m = load_manifest(a.data)
    ports = dict(x.split("=", 1) for x in a.metrics)
    t0 = time.monotonic()
    end = t0 + (a.wait or 0)
    tty = sys.stderr.isatty()
    last = ""
    while True:
        try:
            state = http_json("GET", a.admin + "/state")
        except OSError as e:
            die(f"the emulator's admin API at {a.admin} does not answer ({e}); is the local run up?")
        rows = user_rows(m, state, directory_values(a.flavor, read_env(a.dir_env)), a.policy)
        done = sum(r["in_sync"] for r in rows)
        if not a.wait:
            break
        parts = []
        if "collector" in ports:
            ev = metric_sum(ports["collector"], "certsync_collector_events_produced_total")
            parts.append(f"collector: {int(ev) if ev is not None else '-'} events committed")
        consumed = None
        if "publisher" in ports:
            consumed = metric_sum(ports["publisher"], "certsync_publisher_events_total")
            ap = metric_sum(ports["publisher"], "certsync_publisher_applied_total")
            lag = metric_sum(ports["publisher"], "certsync_publisher_consumer_lag")
            parts.append(f"publisher: {int(consumed) if consumed is not None else '-'} events, "
                         f"{int(ap) if ap is not None else '-'} applied, lag {int(lag) if lag is not None else '-'}")
        parts.append(f"Office 365: {done}/{len(rows)} users in sync")
        line = " | ".join(parts)
        stamped = f"[{time.monotonic() - t0:5.1f} s] {line}"
        if tty:
            sys.stderr.write("\r" + stamped + "\033[K")
        elif line != last:  # not a terminal: a line per change of state, not per poll
            sys.stderr.write(stamped + "\n")
        last = line
        sys.stderr.flush()
        # A user whose every value the policy refuses looks "in sync" before the publisher saw it: with
        # --min-events, also wait until the publisher has consumed that many events.
        seen_all = a.min_events == 0 or (consumed is not None and consumed >= a.min_events)
        if (done == len(rows) and seen_all) or time.monotonic() >= end:
            if tty:
                sys.stderr.write("\n")
            break
        time.sleep(0.25)  # progress display only; the loop ends on the state it observes
    print_table(rows)
    if a.wait and (done != len(rows) or not seen_all):
        print(f"not in sync after {a.wait} s: {len(rows) - done} user(s) pending"
              + ("" if seen_all else f", the publisher consumed fewer than {a.min_events} events"), file=sys.stderr)
        return 1
    if a.wait:
        print(f"synced: {len(rows)} users in {time.monotonic() - t0:.1f} s")
    return 0


def cmd_journal_seq(a):
    print(http_json("GET", a.admin + "/journal?since=0&kind=change")["last_seq"])


def iso_epoch(t):
    return datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def cmd_await_write(a):
    end = time.monotonic() + a.timeout
    while time.monotonic() < end:
        for e in http_json("GET", f"{a.admin}/journal?since={a.since}&kind=change")["entries"]:
            if (e.get("primary_smtp") or "").lower() == a.mail.lower() and a.sha in (e.get("after") or []):
                print(f"{iso_epoch(e['time']) - a.t0:.3f}")
                return 0
        time.sleep(0.02)  # poll of the journal; the latency comes from the entry's own time
    die(f"no write of {a.sha[:16]}... to {a.mail} in the emulator journal within {a.timeout} s")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extra-user")
    for k in ("--data", "--base", "--ou", "--uid", "--address"):
        e.add_argument(k, required=True)
    e.add_argument("--flavor", choices=("ad", "openldap"), required=True)
    c = sub.add_parser("change")
    for k in ("--data", "--uid", "--out"):
        c.add_argument(k, required=True)
    c.add_argument("--flavor", choices=("ad", "openldap"), required=True)
    s = sub.add_parser("seed")
    s.add_argument("--data", required=True)
    s.add_argument("--dir-env", required=True)
    s.add_argument("--flavor", choices=("ad", "openldap"), required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--out")
    g.add_argument("--post")
    st = sub.add_parser("status")
    st.add_argument("--data", required=True)
    st.add_argument("--admin", required=True)
    st.add_argument("--dir-env", required=True)
    st.add_argument("--flavor", choices=("ad", "openldap"), required=True)
    st.add_argument("--policy", choices=("on", "off"), required=True)
    st.add_argument("--wait", type=float, default=0)
    st.add_argument("--metrics", nargs="*", default=[])
    st.add_argument("--min-events", type=int, default=0,
                    help="with --wait and --metrics publisher=PORT: also wait for this many consumed events")
    j = sub.add_parser("journal-seq")
    j.add_argument("--admin", required=True)
    w = sub.add_parser("await-write")
    w.add_argument("--admin", required=True)
    w.add_argument("--since", type=int, required=True)
    w.add_argument("--mail", required=True)
    w.add_argument("--sha", required=True)
    w.add_argument("--t0", type=float, required=True)
    w.add_argument("--timeout", type=float, default=30)
    a = p.parse_args(argv)
    if a.cmd == "status" and any(not re.match(r"^\w+=\d+$", x) for x in a.metrics):
        p.error("--metrics takes NAME=PORT pairs, e.g. collector=9464")
    return {"extra-user": cmd_extra_user, "change": cmd_change, "seed": cmd_seed, "status": cmd_status,
            "journal-seq": cmd_journal_seq, "await-write": cmd_await_write}[a.cmd](a) or 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C in the local run: its trap reports and stops everything
        sys.exit(130)
