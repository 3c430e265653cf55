#!/usr/bin/env bash
# col_samba: the collector's directory side against a real Samba AD DC (col_probe drives col_core).
# Asserts:
#   1. the rootDSE read says AD and auto mode picks DirSync (over LDAPS verified with the test CA);
#   2. a paged snapshot returns every generated user with exactly the manifest's values, a SID and a
#      userCertificate replication stamp for users that have one;
#   3. a DirSync position taken first, then one user's userCertificate replaced: DirSync from the
#      position returns exactly that user, re-read in full (new userCertificate AND its unchanged
#      userSMIMECertificate values), with a higher stamp version;
#   4. a deleted user arrives as a removal with its objectGUID id.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
. "$HERE/col_lib.sh"
it_init
IT_LOG=$SAMBA_LOG
OU="OU=colprobe,$SAMBA_BASE"
FILTER='(&(objectClass=user)(sAMAccountName=colp*))'
export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
auth=(-x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 6 --seed 31 --out "$W/data" --flavor ad --base "$SAMBA_BASE" \
  --ou colprobe --prefix colp || it_fail "gen_users.py failed"
ldapdelete "${auth[@]}" -H "$SAMBA_URL" -r "$OU" 2>/dev/null || true
ldapadd "${auth[@]}" -H "$SAMBA_LDAPS_URL" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || {
  cat "$W/ldapadd.out" >&2
  it_fail "ldapadd over LDAPS of $W/data/users.ldif"
}
write_config "$W/col.yaml" "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" "$SAMBA_PASSWORD_FILE" "$OU" "$FILTER" \
  "tls: {ca_file: \"$SAMBA_CA_FILE\"}"

probe "$W/info.out" "$W/col.yaml" info
cat "$W/info.out"
grep -q '"directory":"ad","mode":"dirsync"' "$W/info.out" || it_fail "rootDSE: expected ad / dirsync"
it_ok "rootDSE read: AD, DirSync"

probe "$W/pos.out" "$W/col.yaml" position
pos=$(last_cookie "$W/pos.out")
it_ok "DirSync position taken (${#pos} hex digits)"

probe "$W/snap.out" "$W/col.yaml" snapshot
tail -1 "$W/snap.out"
compare_manifest "$W/data/manifest.json" "$W/snap.out" || it_fail "snapshot values differ from the manifest"
python3 - "$W/data/manifest.json" "$W/snap.out" <<'PY' || it_fail "snapshot identity / stamps missing"
import json, sys, time
m = json.load(open(sys.argv[1]))
with_cert = {u["dn"].lower() for u in m["users"] if any(v["attribute"] == "userCertificate" for v in u["values"])}
for l in open(sys.argv[2]):
    j = json.loads(l)
    if j["type"] != "upsert": continue
    assert j.get("sid", "").startswith("S-1-5-21-"), j
    assert len(j["id"]) == 36, j
    if j["dn"].lower() in with_cert:
        assert j.get("cert_version", 0) >= 1, j
        # originating time is NTTIME_1sec: within a day of now, not 1601 or the far future
        assert abs(j["cert_time"] - time.time()) < 86400, j
    assert j.get("lifecycle_version", 0) >= 1, j
PY
it_ok "snapshot matches the manifest, with SIDs and replication stamps"

read -r target new_pem victim < <(python3 - "$W/data/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
users = [u for u in m["users"] if any(v["attribute"] == "userCertificate" for v in u["values"])]
other = next(v for u in users[1:] for v in u["values"] if v["attribute"] == "userCertificate")
victim = next(u for u in m["users"] if u is not users[0])
print(users[0]["dn"], other["cert"], victim["dn"])
PY
)
openssl x509 -in "$W/data/$new_pem" -outform DER -out "$W/new.der"
new_sha=$(sha256sum "$W/new.der" | cut -d' ' -f1)
v1=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l)
    if j["type"]=="upsert" and j["dn"].lower()==sys.argv[2].lower(): print(j["cert_version"])' "$W/snap.out" "$target")
ldapmodify "${auth[@]}" -H "$SAMBA_LDAPS_URL" >/dev/null <<LDIF || it_fail "ldapmodify of $target"
dn: $target
changetype: modify
replace: userCertificate
userCertificate:< file://$W/new.der
LDIF

probe "$W/delta.out" "$W/col.yaml" dirsync "$pos"
cat "$W/delta.out" | cut -c1-220
python3 - "$W/data/manifest.json" "$W/delta.out" "$target" "$new_sha" "$v1" <<'PY' || it_fail "DirSync delta is wrong"
import json, sys
m = json.load(open(sys.argv[1])); target = sys.argv[3].lower()
ups = [json.loads(l) for l in open(sys.argv[2])]
ups = [j for j in ups if j["type"] in ("upsert", "removal")]
assert len(ups) == 1, f"expected exactly one change, got {len(ups)}"
j = ups[0]
assert j["type"] == "upsert" and j["dn"].lower() == target, j
assert j["user_certificate"] == [sys.argv[4]], j["user_certificate"]
u = next(u for u in m["users"] if u["dn"].lower() == target)
want = sorted(v["sha256"] for v in u["values"] if v["attribute"] == "userSMIMECertificate")
assert sorted(j["user_smime_certificate"]) == want, "re-read did not return the unchanged userSMIMECertificate"
assert j["cert_version"] > int(sys.argv[5]), (j["cert_version"], sys.argv[5])
PY
it_ok "DirSync from the position returned exactly $target with full state and a newer stamp"
pos2=$(last_cookie "$W/delta.out")

victim_id=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l)
    if j["type"]=="upsert" and j["dn"].lower()==sys.argv[2].lower(): print(j["id"])' "$W/snap.out" "$victim")
ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" "$victim" || it_fail "ldapdelete $victim"
probe "$W/del.out" "$W/col.yaml" dirsync "$pos2"
cut -c1-220 "$W/del.out"
grep -q "\"type\":\"removal\",\"id\":\"$victim_id\"" "$W/del.out" || it_fail "the deleted user did not arrive as a removal"
[ "$(grep -c '"type":"upsert"' "$W/del.out" || true)" = 0 ] || it_fail "DirSync after a delete returned upserts"
it_ok "deleted user $victim arrived as a removal of $victim_id"
ldapdelete "${auth[@]}" -H "$SAMBA_URL" -r "$OU" 2>/dev/null || true
