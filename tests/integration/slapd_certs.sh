#!/usr/bin/env bash
# slapd_certs: generated users with certificates load with ldapadd and read back byte-identical.
# Asserts: every userCertificate;binary and userSMIMECertificate value read back with ldapsearch has
# the SHA-256 the manifest recorded for that user, no value is missing or extra, and the user with
# more than 15 values keeps them all.
set -euo pipefail
. "$(dirname "$0")/it_lib.sh"
it_init
IT_LOG=$SLAPD_LOG
OU="ou=certs,$SLAPD_BASE"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 40 --seed 7 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --no-base-entry --ou certs || it_fail "gen_users.py failed"
# A rerun against the same server starts from an empty subtree (32 = no such object is fine).
ldapdelete "${auth[@]}" -r "$OU" 2>/dev/null || true
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || {
  cat "$W/ldapadd.out" >&2
  it_fail "ldapadd of $W/data/users.ldif"
}
it_ok "loaded 40 users"
ldapsearch "${auth[@]}" -LLL -o ldif-wrap=no -b "$OU" '(objectClass=inetOrgPerson)' \
  'userCertificate;binary' userSMIMECertificate >"$W/read.ldif" || it_fail "ldapsearch of $OU"

python3 - "$W/data/manifest.json" "$W/read.ldif" <<'PY' || it_fail "certificates read back differ from the manifest"
import base64, hashlib, json, sys
manifest = json.load(open(sys.argv[1]))
got, dn = {}, None
for line in open(sys.argv[2]):
    line = line.rstrip("\n")
    if line.startswith("dn: "):
        dn = line[4:].lower(); got.setdefault(dn, set())
    elif ":: " in line and dn:
        attr, b64 = line.split(":: ", 1)
        attr = {"usercertificate;binary": "userCertificate",
                "usersmimecertificate": "userSMIMECertificate"}[attr.lower()]
        got[dn].add((attr, hashlib.sha256(base64.b64decode(b64)).hexdigest()))
bad = 0
for u in manifest["users"]:
    want = {(v["attribute"], v["sha256"]) for v in u["values"]}
    have = got.get(u["dn"].lower(), set())
    if want != have:
        bad += 1
        print(f"{u['dn']}: missing {sorted(want - have)} extra {sorted(have - want)}", file=sys.stderr)
big = max(len(u["values"]) for u in manifest["users"])
nvals = sum(len(u["values"]) for u in manifest["users"])
print(f"compared {len(manifest['users'])} users, {nvals} values, largest user has {big} values")
if len(got) != len(manifest["users"]):
    print(f"read {len(got)} entries, manifest has {len(manifest['users'])}", file=sys.stderr); bad += 1
if big <= 15:
    print("no user with more than 15 values was generated", file=sys.stderr); bad += 1
sys.exit(1 if bad else 0)
PY
it_ok "all certificate values match the manifest"
