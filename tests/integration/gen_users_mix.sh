#!/usr/bin/env bash
# gen_users_mix: tests/tools/gen_users.py produces the promised mix, deterministically per seed.
# Asserts: all key types, validities, no-EKU and every e-mail placement occur; some users have no
# values; one has more than 15; the LDIF uses userCertificate;binary (openldap) / userCertificate
# (ad) and AD entries carry sAMAccountName, userPrincipalName, proxyAddresses; userSMIMECertificate
# values are DER PKCS#7 that openssl reads; the same seed gives the same plan, another seed another.
set -euo pipefail
W=${CS_WORK_DIR:?run through ctest}
G=$(cd "$(dirname "$0")/../tools" && pwd)/gen_users.py
rm -rf "$W"
mkdir -p "$W"
"$G" --count 60 --seed 5 --out "$W/a" --flavor openldap --base dc=example,dc=test
"$G" --count 60 --seed 5 --out "$W/b" --flavor ad --base DC=corp,DC=example,DC=test --no-user-files
"$G" --count 60 --seed 6 --out "$W/c" --flavor openldap --base dc=example,dc=test --no-user-files
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
a, b, c = (json.load(open(f"{w}/{x}/manifest.json")) for x in "abc")
vals = [v for u in a["users"] for v in u["values"]]
def seen(k): return {v["kind"][k] for v in vals}
errors = []
for k, want in (("key", {"rsa2048", "rsa3072", "p256", "p384"}),
                ("validity", {"valid", "expired", "not_yet_valid"}),
                ("email_eku", {True, False}), ("email_in", {"san", "subject", "both"})):
    if seen(k) != want: errors.append(f"{k}: {seen(k)} != {want}")
if not any(not u["values"] for u in a["users"]): errors.append("no user without values")
if max(len(u["values"]) for u in a["users"]) <= 15: errors.append("no user with > 15 values")
if not any(v["attribute"] == "userSMIMECertificate" for v in vals): errors.append("no S/MIME value")
plan = lambda m: [[(v["attribute"], sorted(v["kind"].items())) for v in u["values"]] for u in m["users"]]
if plan(a) != plan(b): errors.append("same seed, different plan")
if plan(a) == plan(c): errors.append("different seed, same plan")
print("\n".join(errors) or f"ok: {len(vals)} values cover every kind")
sys.exit(1 if errors else 0)
PY
grep -q '^userCertificate;binary:: ' "$W/a/users.ldif" || { echo "openldap LDIF lacks userCertificate;binary" >&2; exit 1; }
grep -q '^userCertificate:: ' "$W/b/users.ldif" || { echo "ad LDIF lacks plain userCertificate" >&2; exit 1; }
if grep -q '^userCertificate;binary' "$W/b/users.ldif"; then echo "ad LDIF uses ;binary" >&2; exit 1; fi
for attr in 'objectClass: user' sAMAccountName: userPrincipalName: proxyAddresses: mail:; do
  grep -q "^$attr" "$W/b/users.ldif" || { echo "ad LDIF lacks $attr" >&2; exit 1; }
done
p7=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(v["file"] if "file" in v else v["cert"] for u in m["users"] for v in u["values"] if v["attribute"]=="userSMIMECertificate"))' "$W/a/manifest.json")
# The S/MIME value itself is in the LDIF; decode the first one and let openssl parse it as PKCS#7.
python3 -c '
import base64, sys
for l in open(sys.argv[1]):
    if l.startswith("userSMIMECertificate:: "):
        open(sys.argv[2], "wb").write(base64.b64decode(l.split(":: ", 1)[1])); break' "$W/a/users.ldif" "$W/smime.p7c"
openssl pkcs7 -inform DER -in "$W/smime.p7c" -print_certs -noout >/dev/null ||
  { echo "userSMIMECertificate value is not DER PKCS#7" >&2; exit 1; }
# The per-user file holds the certificate and its key, and they belong together.
f="$W/a/$p7"
[ "$(openssl x509 -in "$f" -noout -pubkey | sha256sum)" = "$(openssl pkey -in "$f" -pubout | sha256sum)" ] ||
  { echo "$f: certificate and key do not match" >&2; exit 1; }
echo "ok: LDIF flavors, PKCS#7 value and per-user cert+key file check out"
