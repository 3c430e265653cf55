#!/usr/bin/env bash
# samba_dirsync: certificates written to Samba AD come back byte-identical through DirSync, and an
# incremental DirSync with the returned cookie reports exactly the one user changed afterwards.
# Asserts:
#   1. users added over LDAPS (server verified with the test CA) read back with DirSync
#      (dirsync_read, libldap's DirSync control) with the manifest's SHA-256 for every value;
#   2. after replacing one user's userCertificate (over StartTLS), DirSync with the cookie returns
#      exactly that user, with exactly the new value;
#   3. replPropertyMetaData's stamp for userCertificate (attid 0x24) has a higher version after;
#   4. a further DirSync with the newest cookie returns nothing.
set -euo pipefail
. "$(dirname "$0")/it_lib.sh"
it_init
IT_LOG=$SAMBA_LOG
DIRSYNC=${CS_DIRSYNC_READ:?CS_DIRSYNC_READ (path of dirsync_read) is not set; run through ctest}
OU="OU=certsync-dirsync,$SAMBA_BASE"
FILTER='(&(objectClass=user)(sAMAccountName=dsync*))'
export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
auth=(-x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 10 --seed 11 --out "$W/data" --flavor ad --base "$SAMBA_BASE" \
  --ou certsync-dirsync --prefix dsync || it_fail "gen_users.py failed"
ldapdelete "${auth[@]}" -H "$SAMBA_URL" -r "$OU" 2>/dev/null || true
ldapadd "${auth[@]}" -H "$SAMBA_LDAPS_URL" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || {
  cat "$W/ldapadd.out" >&2
  it_fail "ldapadd over LDAPS of $W/data/users.ldif"
}
it_ok "added 10 users over LDAPS"

dirsync() { # dirsync OUT [dirsync_read options]
  local out=$1
  shift
  "$DIRSYNC" -C "$SAMBA_CA_FILE" "$@" "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" "$SAMBA_PASSWORD_FILE" \
    "$SAMBA_BASE" "$FILTER" userCertificate userSMIMECertificate >"$out" 2>"$out.err" || {
    cat "$out.err" >&2
    it_fail "dirsync_read $*"
  }
  cat "$out.err"
}
dirsync "$W/full.out" -o "$W/cookie1"

python3 - "$W/data/manifest.json" "$W/full.out" <<'PY' || it_fail "DirSync values differ from the manifest"
import json, sys
m = json.load(open(sys.argv[1]))
got, dn = {}, None
for line in open(sys.argv[2]):
    f = line.split()
    if line.startswith("dn: "):
        dn = line[4:].strip().lower(); got[dn] = set()
    elif len(f) == 3 and f[0] in ("userCertificate", "userSMIMECertificate"):
        got[dn].add((f[0], f[1]))
bad = 0
for u in m["users"]:
    want = {(v["attribute"], v["sha256"]) for v in u["values"]}
    have = got.get(u["dn"].lower(), set())
    if want != have:
        bad += 1
        print(f"{u['dn']}: missing {sorted(want - have)} extra {sorted(have - want)}", file=sys.stderr)
print(f"compared {len(m['users'])} users, {sum(len(u['values']) for u in m['users'])} values")
sys.exit(1 if bad else 0)
PY
it_ok "full DirSync matches the manifest"

# The user to change: the first one with a userCertificate; the new value is another user's cert.
read -r target new_pem < <(python3 - "$W/data/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
users = [u for u in m["users"] if any(v["attribute"] == "userCertificate" for v in u["values"])]
other = next(v for u in users[1:] for v in u["values"] if v["attribute"] == "userCertificate")
print(users[0]["dn"], other["cert"])
PY
)
openssl x509 -in "$W/data/$new_pem" -outform DER -out "$W/new.der"
new_sha=$(sha256sum "$W/new.der" | cut -d' ' -f1)

# meta_version DN: version of the userCertificate stamp (attid 0x24) in replPropertyMetaData.
meta_version() {
  ldapsearch "${auth[@]}" -LLL -o ldif-wrap=no -H "$SAMBA_URL" -b "$1" -s base replPropertyMetaData |
    python3 -c '
import base64, struct, sys
# replPropertyMetaDataBlob (NDR): version, reserved, count, reserved, then 48-byte entries:
# attid u32, version u32, originating_change_time u64, invocationId 16 bytes, orig_usn u64, local_usn u64.
b64 = [l.split(":: ", 1)[1] for l in sys.stdin if l.startswith("replPropertyMetaData:: ")]
blob = base64.b64decode(b64[0]) if b64 else b""
if len(blob) < 16: sys.exit("no replPropertyMetaData")
ver, _, count, _ = struct.unpack_from("<IIII", blob, 0)
if ver != 1 or 16 + 48 * count > len(blob): sys.exit(f"unexpected blob: version {ver}, count {count}, {len(blob)} bytes")
for i in range(count):
    attid, version = struct.unpack_from("<II", blob, 16 + 48 * i)
    if attid == 0x24: print(version); sys.exit(0)
sys.exit("no stamp for attid 0x24 (userCertificate)")'
}
v1=$(meta_version "$target") || it_fail "reading replPropertyMetaData of $target"

ldapmodify "${auth[@]}" -H "$SAMBA_URL" -ZZ >/dev/null <<LDIF || it_fail "ldapmodify (StartTLS) of $target"
dn: $target
changetype: modify
replace: userCertificate
userCertificate:< file://$W/new.der
LDIF
it_ok "replaced userCertificate of $target (new sha256 $new_sha)"

dirsync "$W/delta.out" -i "$W/cookie1" -o "$W/cookie2"
cat "$W/delta.out"
n=$(grep -c '^dn: ' "$W/delta.out" || true)
[ "$n" = 1 ] || it_fail "incremental DirSync returned $n entries, expected exactly 1"
grep -qi "^dn: $target\$" "$W/delta.out" || it_fail "incremental DirSync returned another entry than $target"
[ "$(grep -c '^userCertificate ' "$W/delta.out")" = 1 ] ||
  it_fail "incremental DirSync did not return exactly one userCertificate value"
grep -q "^userCertificate $new_sha " "$W/delta.out" ||
  it_fail "incremental DirSync's userCertificate is not the new value $new_sha"
it_ok "incremental DirSync returned exactly the changed user and value"

v2=$(meta_version "$target") || it_fail "reading replPropertyMetaData of $target after the change"
[ "$v2" -gt "$v1" ] || it_fail "userCertificate stamp version did not increase ($v1 -> $v2)"
it_ok "replPropertyMetaData userCertificate version $v1 -> $v2"

dirsync "$W/none.out" -i "$W/cookie2" -o "$W/cookie3"
[ "$(grep -c '^dn: ' "$W/none.out" || true)" = 0 ] || {
  cat "$W/none.out"
  it_fail "DirSync with the newest cookie returned entries although nothing changed"
}
it_ok "DirSync with the newest cookie returns nothing"
