#!/usr/bin/env bash
# col_samba_track: uSNChanged polling (col_usn) and DirSync deletions with the DEFAULT filter, against a
# real Samba AD DC. The config sets no ldap.filter, so the default (&(objectCategory=person)(objectClass=user))
# applies; AD strips objectCategory from tombstones, which is what the DirSync part checks.
# Asserts:
#   1. usn: a position, then one user's userCertificate replaced: the poll returns exactly that user once,
#      in full (new userCertificate AND its unchanged userSMIMECertificate), plus one position;
#   2. usn: a deleted user arrives as a removal (deleted) with its objectGUID id, and no upsert;
#   3. usn: a user moved out of the base DN arrives as a removal (out_of_scope);
#   4. usn: a second poll from the returned position returns no change;
#   5. usn: a position with another invocationId, or a highestCommittedUSN above the server's, asks for a
#      resync instead of returning changes;
#   6. dirsync (default filter): a deleted user arrives as a removal;
#   7. dirsync with the object-security flag checks CN=Deleted Objects at start and says it is readable.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
. "$HERE/col_lib.sh"
it_init
IT_LOG=$SAMBA_LOG
OU="OU=colusn,$SAMBA_BASE"
OUT="OU=colusnout,$SAMBA_BASE"
export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
auth=(-x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 6 --seed 47 --out "$W/data" --flavor ad --base "$SAMBA_BASE" \
  --ou colusn --prefix colu || it_fail "gen_users.py failed"
ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" -r "$OU" 2>/dev/null || true
ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" -r "$OUT" 2>/dev/null || true
ldapadd "${auth[@]}" -H "$SAMBA_LDAPS_URL" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || {
  cat "$W/ldapadd.out" >&2
  it_fail "ldapadd of $W/data/users.ldif"
}
ldapadd "${auth[@]}" -H "$SAMBA_LDAPS_URL" >/dev/null <<LDIF || it_fail "ldapadd $OUT"
dn: $OUT
objectClass: organizationalUnit
LDIF
# No ldap.filter: the default AD filter is under test.
cat >"$W/col.yaml" <<YAML
source: {id: colusn}
ldap:
  url: "$SAMBA_LDAPS_URL"
  bind_dn: "$SAMBA_BIND_DN"
  password_file: "$SAMBA_PASSWORD_FILE"
  base_dns: ["$OU"]
  page_size: 3
  timeout: 10s
  tls: {ca_file: "$SAMBA_CA_FILE"}
kafka: {bootstrap.servers: "127.0.0.1:1"}
YAML

# users: target (has a userCertificate), victim, mover, dvictim (DirSync), in manifest order
read -r target new_pem victim mover dvictim < <(python3 - "$W/data/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
users = [u for u in m["users"] if any(v["attribute"] == "userCertificate" for v in u["values"])]
other = next(v for u in users[1:] for v in u["values"] if v["attribute"] == "userCertificate")
rest = [u for u in m["users"] if u is not users[0]]
print(users[0]["dn"], other["cert"], rest[0]["dn"], rest[1]["dn"], rest[2]["dn"])
PY
)
probe "$W/snap.out" "$W/col.yaml" snapshot
compare_manifest "$W/data/manifest.json" "$W/snap.out" || it_fail "snapshot with the default filter differs"
id_of() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l)
    if j["type"]=="upsert" and j["dn"].lower()==sys.argv[2].lower(): print(j["id"])' "$W/snap.out" "$1"
}
victim_id=$(id_of "$victim")
mover_id=$(id_of "$mover")
dvictim_id=$(id_of "$dvictim")

# --- 1. modify --------------------------------------------------------------------------------------
probe "$W/pos.out" "$W/col.yaml" usn
pos=$(last_cookie "$W/pos.out")
openssl x509 -in "$W/data/$new_pem" -outform DER -out "$W/new.der"
new_sha=$(sha256sum "$W/new.der" | cut -d' ' -f1)
ldapmodify "${auth[@]}" -H "$SAMBA_LDAPS_URL" >/dev/null <<LDIF || it_fail "ldapmodify of $target"
dn: $target
changetype: modify
replace: userCertificate
userCertificate:< file://$W/new.der
LDIF
probe "$W/mod.out" "$W/col.yaml" usn "$pos"
cut -c1-200 "$W/mod.out"
python3 - "$W/data/manifest.json" "$W/mod.out" "$target" "$new_sha" <<'PY' || it_fail "usn poll after a modify is wrong"
import json, sys
m = json.load(open(sys.argv[1])); target = sys.argv[3].lower()
lines = [json.loads(l) for l in open(sys.argv[2])]
ch = [j for j in lines if j["type"] in ("upsert", "removal")]
ups = [j for j in ch if j["type"] == "upsert"]
assert len(ups) == 1, f"expected exactly one upsert, got {len(ups)}: {ups}"
assert not [j for j in ch if j["type"] == "removal" and j["dn"].lower().endswith("ou=colusn,dc=corp,dc=example,dc=test")], ch
j = ups[0]
assert j["dn"].lower() == target, j
assert j["user_certificate"] == [sys.argv[4]], j["user_certificate"]
u = next(u for u in m["users"] if u["dn"].lower() == target)
want = sorted(v["sha256"] for v in u["values"] if v["attribute"] == "userSMIMECertificate")
assert sorted(j["user_smime_certificate"]) == want, "the poll did not return the full state"
assert sum(1 for j in lines if j["type"] == "cookie") == 1, "expected one position at the end of the pass"
assert lines[-2]["type"] == "cookie", "the position must come after the changes"
PY
it_ok "usn: a modify of $target is seen once with full state"
pos=$(last_cookie "$W/mod.out")

# --- 2. delete ----------------------------------------------------------------------------------------
ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" "$victim" || it_fail "ldapdelete $victim"
probe "$W/del.out" "$W/col.yaml" usn "$pos"
cut -c1-200 "$W/del.out"
grep -q "\"type\":\"removal\",\"id\":\"$victim_id\".*\"reason\":\"deleted\"" "$W/del.out" ||
  it_fail "usn: the deleted user did not arrive as a removal (deleted)"
[ "$(grep -c '"type":"upsert"' "$W/del.out" || true)" = 0 ] || it_fail "usn: a delete produced upserts"
it_ok "usn: deleted $victim arrived as a removal of $victim_id"
pos=$(last_cookie "$W/del.out")

# --- 3. move out of scope -----------------------------------------------------------------------------
ldapmodrdn "${auth[@]}" -H "$SAMBA_LDAPS_URL" -r -s "$OUT" "$mover" "${mover%%,*}" || it_fail "ldapmodrdn $mover"
probe "$W/move.out" "$W/col.yaml" usn "$pos"
cut -c1-200 "$W/move.out"
grep -q "\"type\":\"removal\",\"id\":\"$mover_id\".*\"reason\":\"out_of_scope\"" "$W/move.out" ||
  it_fail "usn: the user moved out of the base DN did not arrive as a removal (out_of_scope)"
it_ok "usn: $mover moved out of scope arrived as an out_of_scope removal"
pos=$(last_cookie "$W/move.out")

# --- 4. nothing new -----------------------------------------------------------------------------------
probe "$W/again.out" "$W/col.yaml" usn "$pos"
cat "$W/again.out"
[ "$(grep -c '"type":"\(upsert\|removal\)"' "$W/again.out" || true)" = 0 ] ||
  it_fail "usn: a second poll from the returned position returned changes"
grep -q '"type":"poll_done"' "$W/again.out" || it_fail "usn: the second poll did not finish"
it_ok "usn: a second poll from the returned position returns nothing"

# --- 5. resync ----------------------------------------------------------------------------------------
# The position is "USN1" (8 hex), invocationId (32 hex), USN (16 hex), server.
other_inv="${pos:0:8}0123456789abcdef0123456789abcdef${pos:40}"
probe "$W/inv.out" "$W/col.yaml" usn "$other_inv"
cat "$W/inv.out"
grep -q '"type":"resync".*invocationId changed' "$W/inv.out" || it_fail "usn: another invocationId did not ask for a resync"
[ "$(grep -c '"type":"\(upsert\|removal\|cookie\)"' "$W/inv.out" || true)" = 0 ] || it_fail "usn: a resync delivered changes"
future="${pos:0:40}7fffffffffff0000${pos:56}"
probe "$W/future.out" "$W/col.yaml" usn "$future"
grep -q '"type":"resync".*went backwards' "$W/future.out" ||
  it_fail "usn: a highestCommittedUSN below the checkpoint did not ask for a resync"
it_ok "usn: another invocationId or a USN going backwards asks for a full resync"

# --- 6. DirSync with the default filter sees deletions --------------------------------------------------
probe "$W/dpos.out" "$W/col.yaml" position
dpos=$(last_cookie "$W/dpos.out")
ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" "$dvictim" || it_fail "ldapdelete $dvictim"
probe "$W/ddel.out" "$W/col.yaml" dirsync "$dpos"
cut -c1-200 "$W/ddel.out"
grep -q "\"type\":\"removal\",\"id\":\"$dvictim_id\".*\"reason\":\"deleted\"" "$W/ddel.out" ||
  it_fail "dirsync with the default filter: the deleted user did not arrive as a removal"
it_ok "dirsync with the default filter: deleted $dvictim arrived as a removal of $dvictim_id"


# --- 7. object-security flag: CN=Deleted Objects checked at start -------------------------------------------
probe "$W/os.out" "$W/col.yaml" dirsync "$dpos" 1
grep -q 'CN=Deleted Objects is readable' "$W/os.out.err" ||
  it_fail "dirsync with the object-security flag did not check CN=Deleted Objects"
it_ok "dirsync with the object-security flag: CN=Deleted Objects checked at start"

ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" -r "$OU" 2>/dev/null || true
ldapdelete "${auth[@]}" -H "$SAMBA_LDAPS_URL" -r "$OUT" 2>/dev/null || true
