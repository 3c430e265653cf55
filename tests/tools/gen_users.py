#!/usr/bin/env python3
"""Test-data generator: directory users with a realistic mix of certificates.

    gen_users.py --count N --out DIR --flavor openldap|ad --base DN [--seed S] [--key-pool K]

Writes into DIR:
  users.ldif      ldapadd-ready entries (the containers first, then one entry per user).
                  openldap: inetOrgPerson with uid, mail, userCertificate;binary, userSMIMECertificate.
                  ad: objectClass user with sAMAccountName, userPrincipalName, mail, proxyAddresses,
                  plain userCertificate, userSMIMECertificate.
  ca.pem, ca.key  the issuing CA (EC P-256, so signing 20,000 certificates stays fast).
  users/<uid>/<n>.pem
                  per value: the certificate followed by its private key (PEM, unencrypted), so a later
                  test can decrypt S/MIME mail sent to that user (openssl smime -decrypt -recip F -inkey F).
                  One file per value, and no directory for users without values: file creation is
                  most of the cost at 10,000 users. --no-user-files skips them (benchmarks).
  manifest.json   per user: uid, dn, mail, values[] with attribute, sha256 (of the attribute value's
                  DER bytes as stored in the directory), cert_sha256, kind{key, validity, email_eku,
                  email_in}, cert and key file names.

The mix is deterministic from --seed: which users have no certificates, how many each has, key types
(RSA 2048/3072, EC P-256/P-384), validity (valid, expired, not yet valid), with or without the
emailProtection EKU, the address in SAN rfc822Name, in the subject emailAddress, or both; one user has
more than 15 values when N >= 10. Keys and signatures are random, so the bytes differ per run: the
manifest is the reference. Key generation dominates the cost (an RSA 3072 key takes ~0.5 s here), so keys
come from a pool of K keys per key type (default 4; 0 = a fresh key per certificate). --key-cache DIR
keeps the pool between runs.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import sys
import time

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("gen_users.py: error: the Python package 'cryptography' is missing; "
             "run scripts/install-deps.sh (or: python3 -m pip install cryptography)")

KEY_TYPES = ("rsa2048", "p256", "rsa3072", "p384")
# Patterns of coprime lengths over a running certificate counter: every combination shows up within
# a few dozen certificates, so small N still covers all kinds.
VALIDITY = ("valid", "expired", "valid", "not_yet_valid", "valid")
EMAIL_EKU = (True, True, False)
EMAIL_IN = ("san", "subject", "both", "san", "both", "san", "subject")
BIG_USER_VALUES = 18  # > 15: the Exchange limit the publisher has to prune to


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, required=True, help="number of users (1..1000000)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--flavor", choices=("openldap", "ad"), required=True)
    p.add_argument("--base", required=True, help="base DN, e.g. dc=example,dc=test")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--key-pool", type=int, default=4,
                   help="keys per key type to reuse (default 4; 0 = a fresh key per certificate)")
    p.add_argument("--key-cache", default=os.environ.get("CS_GEN_USERS_KEY_CACHE") or None,
                   help="directory that keeps the key pool between runs (created; default "
                        "$CS_GEN_USERS_KEY_CACHE)")
    p.add_argument("--no-base-entry", action="store_true",
                   help="openldap: do not emit the base entry itself (it already exists)")
    p.add_argument("--no-user-files", action="store_true",
                   help="do not write users/<uid>/ (the LDIF and the manifest are still complete)")
    p.add_argument("--prefix", default="user",
                   help="uid / sAMAccountName prefix (default: user); AD wants it unique per domain")
    p.add_argument("--ou", default="people", help="container for the users (default: people)")
    a = p.parse_args(argv)
    if not 1 <= a.count <= 1000000:
        p.error(f"--count {a.count} is out of range; use 1..1000000")
    if "=" not in a.base:
        p.error(f"--base '{a.base}' is not a DN; use e.g. dc=example,dc=test")
    if not a.prefix.isalnum() or len(a.prefix) > 12:
        p.error(f"--prefix '{a.prefix}' must be 1..12 letters or digits (it becomes sAMAccountName)")
    if a.key_pool < 0:
        p.error("--key-pool must be >= 0")
    return a


def mail_domain(base):
    parts = [rdn.split("=", 1)[1] for rdn in base.split(",") if rdn.strip().lower().startswith("dc=")]
    return ".".join(parts) if parts else "example.test"


def new_key(kind):
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    return ec.generate_private_key(ec.SECP384R1())


class KeyPool:
    """Hands out (key, pem file) per key type; with size 0 every call makes a fresh key (file None).

    Pooled keys are generated once (or loaded from the cache directory) and their PEM kept in memory.
    """

    def __init__(self, size, rng, cache):
        self.size = size
        self.rng = rng
        self.keys = {k: [] for k in KEY_TYPES}
        for kind in KEY_TYPES:
            for n in range(size):
                cached = os.path.join(cache, f"{kind}-{n}.pem") if cache else None
                if cached and os.path.exists(cached):
                    with open(cached, "rb") as f:
                        pem = f.read()
                    key = serialization.load_pem_private_key(pem, password=None)
                else:
                    key = new_key(kind)
                    pem = key_pem(key)
                    if cached:
                        os.makedirs(cache, exist_ok=True)
                        tmp = f"{cached}.{os.getpid()}.tmp"  # parallel runs share the cache
                        write_private(tmp, pem)
                        os.replace(tmp, cached)
                self.keys[kind].append((key, pem))

    def get(self, kind):
        if self.size == 0:
            key = new_key(kind)
            return key, key_pem(key)
        return self.keys[kind][self.rng.randrange(self.size)]


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_ca(out):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certsync tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "certsync test user CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=3650))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(out, "ca.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(os.path.join(out, "ca.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return key, cert


class Issuer:
    def __init__(self, ca_key, ca_cert):
        self.ca_key = ca_key
        self.issuer = ca_cert.subject
        self.aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
        self.now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.serial = 1000

    def issue(self, key, uid, mail, kind):
        self.serial += 1
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certsync tests"),
                 x509.NameAttribute(NameOID.COMMON_NAME, f"{uid} #{self.serial}")]
        if kind["email_in"] in ("subject", "both"):
            attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, mail))
        day = datetime.timedelta(days=1)
        if kind["validity"] == "expired":
            nb, na = self.now - 400 * day, self.now - 30 * day
        elif kind["validity"] == "not_yet_valid":
            nb, na = self.now + 30 * day, self.now + 400 * day
        else:
            nb, na = self.now - day, self.now + 365 * day
        is_rsa = kind["key"].startswith("rsa")
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(self.issuer)
             .public_key(key.public_key()).serial_number(self.serial)
             .not_valid_before(nb).not_valid_after(na)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, is_rsa, False, not is_rsa, False, False,
                                          False, False), critical=True)
             .add_extension(self.aki, critical=False))
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if kind["email_eku"]:
            ekus.insert(0, ExtendedKeyUsageOID.EMAIL_PROTECTION)
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        if kind["email_in"] in ("san", "both"):
            b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), critical=False)
        return b.sign(self.ca_key, hashes.SHA256())


def plan_counts(rng, n):
    """Per user: (number of userCertificate values, number of userSMIMECertificate values)."""
    plan = []
    for i in range(n):
        r = rng.random()
        if r < 0.10:
            plan.append((0, 0))  # no certificates at all
        elif r < 0.15:
            plan.append((0, 1))  # only an S/MIME value
        else:
            certs = rng.choice((1, 1, 1, 2, 2, 3))
            plan.append((certs, 1 if rng.random() < 0.3 else 0))
    if n >= 10:
        plan[7] = (BIG_USER_VALUES - 2, 2)
    if n >= 2:
        plan[1] = (0, 0)  # at least one user without certificates, always at the same place
    return plan


def main(argv):
    t0 = time.monotonic()
    a = parse_args(argv)
    rng = random.Random(a.seed)
    pool_size = a.key_pool
    os.makedirs(os.path.join(a.out, "users"), exist_ok=True)
    pool = KeyPool(pool_size, random.Random(a.seed + 1), a.key_cache)
    ca_key, ca_cert = make_ca(a.out)
    issuer = Issuer(ca_key, ca_cert)
    domain = mail_domain(a.base)
    ad = a.flavor == "ad"
    cert_attr = "userCertificate" if ad else "userCertificate;binary"

    ldif = []
    if ad:
        ou_dn = f"OU={a.ou},{a.base}"
        ldif.append(f"dn: {ou_dn}\nobjectClass: organizationalUnit\nou: {a.ou}\n")
    else:
        ou_dn = f"ou={a.ou},{a.base}"
        if not a.no_base_entry:
            first = a.base.split(",")[0].split("=", 1)[1]
            ldif.append(f"dn: {a.base}\nobjectClass: dcObject\nobjectClass: organization\n"
                        f"dc: {first}\no: {first}\n")
        ldif.append(f"dn: {ou_dn}\nobjectClass: organizationalUnit\nou: {a.ou}\n")

    users = []
    counter = 0
    width = max(5, len(str(a.count)))
    for i, (n_cert, n_smime) in enumerate(plan_counts(rng, a.count)):
        uid = f"{a.prefix}{i:0{width}d}"
        mail = f"{uid}@{domain}"
        dn = f"CN={uid},{ou_dn}" if ad else f"uid={uid},{ou_dn}"
        udir = os.path.join(a.out, "users", uid)
        if n_cert + n_smime and not a.no_user_files:
            os.makedirs(udir, exist_ok=True)
        values = []
        lines = [f"dn: {dn}"]
        if ad:
            lines += ["objectClass: user", f"cn: {uid}", f"sAMAccountName: {uid}",
                      f"userPrincipalName: {uid}@{domain}", f"mail: {mail}",
                      f"proxyAddresses: SMTP:{mail}", f"proxyAddresses: smtp:{uid}@alias.{domain}"]
        else:
            lines += ["objectClass: inetOrgPerson", f"uid: {uid}", f"cn: User {i}", f"sn: {i}",
                      f"mail: {mail}"]
        for j in range(n_cert + n_smime):
            kind = {"key": KEY_TYPES[counter % len(KEY_TYPES)],
                    "validity": VALIDITY[counter % len(VALIDITY)],
                    "email_eku": EMAIL_EKU[counter % len(EMAIL_EKU)],
                    "email_in": EMAIL_IN[counter % len(EMAIL_IN)]}
            counter += 1
            key, pem = pool.get(kind["key"])
            cert = issuer.issue(key, uid, mail, kind)
            der = cert.public_bytes(serialization.Encoding.DER)
            pem_file = f"users/{uid}/{j}.pem"
            if not a.no_user_files:
                write_private(os.path.join(a.out, pem_file),
                              cert.public_bytes(serialization.Encoding.PEM) + pem)
            v = {"kind": kind, "cert": pem_file, "key": pem_file,
                 "cert_sha256": hashlib.sha256(der).hexdigest()}
            if j < n_cert:
                v["attribute"] = "userCertificate"
                value, attr = der, cert_attr
            else:
                v["attribute"] = "userSMIMECertificate"
                value = pkcs7.serialize_certificates([cert], serialization.Encoding.DER)
                attr = "userSMIMECertificate"
            v["sha256"] = hashlib.sha256(value).hexdigest()
            lines.append(f"{attr}:: {base64.b64encode(value).decode()}")
            values.append(v)
        ldif.append("\n".join(lines) + "\n")
        users.append({"uid": uid, "dn": dn, "mail": mail, "values": values})

    with open(os.path.join(a.out, "users.ldif"), "w") as f:
        f.write("\n".join(ldif))
    manifest = {"flavor": a.flavor, "base": a.base, "seed": a.seed, "count": a.count,
                "key_pool": pool_size, "ca": "ca.pem", "users": users}
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, separators=(",", ":"))
    print(f"gen_users: {a.count} users, {counter} certificates in {time.monotonic() - t0:.2f} s "
          f"-> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
