#!/usr/bin/env bash
# col_slapd: the collector's directory side against real slapd (col_probe drives col_core).
# Asserts:
#   1. the rootDSE read says OpenLDAP and auto mode picks syncrepl;
#   2. a paged snapshot (page size 3) returns every generated user with exactly the manifest's values;
#   3. a position taken BEFORE the snapshot, then a modify made before the snapshot, a modify and a
#      delete made after it: syncrepl from that position delivers the modifies (full state) and the
#      delete as a removal; every line is awaited by reading the probe's output, never by sleeping;
#   4. LDAPS with a CA that did not sign the server's certificate is refused with an error naming
#      ldap.tls.ca_file, and the right CA connects.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
. "$HERE/col_lib.sh"
it_init
IT_LOG=$SLAPD_LOG
OU="ou=colprobe,$SLAPD_BASE"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 8 --seed 21 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou colprobe --prefix colp --no-base-entry --no-user-files || it_fail "gen_users.py failed"
ldapdelete "${auth[@]}" -r "$OU" 2>/dev/null || true
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || {
  cat "$W/ldapadd.out" >&2
  it_fail "ldapadd of $W/data/users.ldif"
}
write_config "$W/col.yaml" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" "(objectClass=inetOrgPerson)" \
  "allow_plaintext_bind: true"

probe "$W/info.out" "$W/col.yaml" info
cat "$W/info.out"
grep -q '"directory":"openldap","mode":"syncrepl"' "$W/info.out" || it_fail "rootDSE: expected openldap / syncrepl"
it_ok "rootDSE read: OpenLDAP, syncrepl"

probe "$W/pos.out" "$W/col.yaml" position
pos=$(last_cookie "$W/pos.out")
it_ok "position before the snapshot: cookie $(echo "$pos" | xxd -r -p)"

read -r u1 u2 u3 < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1])); print(*[u["dn"] for u in m["users"][:3]])' "$W/data/manifest.json")
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "ldapmodify of $u1"
dn: $u1
changetype: modify
replace: mail
mail: during-snapshot@example.test
LDIF

probe "$W/snap.out" "$W/col.yaml" snapshot
tail -1 "$W/snap.out"
compare_manifest "$W/data/manifest.json" "$W/snap.out" || it_fail "snapshot values differ from the manifest"
it_ok "paged snapshot matches the manifest"

mkfifo "$W/sync.fifo"
"$PROBE" "$W/col.yaml" syncrepl "$pos" 60 >"$W/sync.fifo" 2>"$W/sync.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
exec 3<"$W/sync.fifo"
: >"$W/sync.out"

# await PYTHON_CONDITION SECONDS: read probe lines (JSON in j) until the condition holds.
await() {
  local cond=$1 secs=$2 line end
  end=$((SECONDS + secs))
  while [ $SECONDS -lt $end ]; do
    if ! IFS= read -r -t 1 -u 3 line; then
      kill -0 "$pid" 2>/dev/null || { cat "$W/sync.err" >&2; return 1; }
      continue
    fi
    echo "$line" >>"$W/sync.out"
    echo "  sync> ${line:0:200}"
    if python3 -c "import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if ($cond) else 1)" "$line"; then
      return 0
    fi
  done
  return 1
}
await "j['type']=='upsert' and j['dn'].lower()=='${u1,,}' and j.get('mail')=='during-snapshot@example.test'" 15 ||
  it_fail "syncrepl from the pre-snapshot position did not deliver the modify made during the snapshot"
it_ok "change made between position and snapshot is delivered"
await "j['type']=='refresh_done'" 15 || it_fail "syncrepl refresh phase did not end"

ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "ldapmodify of $u2"
dn: $u2
changetype: modify
replace: mail
mail: persist@example.test
LDIF
await "j['type']=='upsert' and j['dn'].lower()=='${u2,,}' and j.get('mail')=='persist@example.test'" 15 ||
  it_fail "the persist phase did not deliver the modify"
grep -F "\"dn\":\"$u2\"" "$W/sync.out" | tail -1 >"$W/u2.json"
it_ok "persist phase delivered the modify with full state"

u3_id=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l)
    if j["type"]=="upsert" and j["dn"].lower()==sys.argv[2].lower(): print(j["id"])' "$W/snap.out" "$u3")
[ -n "$u3_id" ] || it_fail "no id for $u3 in the snapshot"
ldapdelete "${auth[@]}" "$u3" || it_fail "ldapdelete $u3"
await "j['type']=='removal' and j['id']=='$u3_id'" 15 || it_fail "the delete of $u3 did not arrive as a removal"
await "j['type']=='cookie'" 5 || it_fail "no cookie after the removal"
it_ok "delete arrived as a removal of $u3_id, followed by a cookie"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT

# Full state in the persist event: u2's certificates equal the manifest's.
python3 - "$W/data/manifest.json" "$W/u2.json" "$u2" <<'PY' || it_fail "persist event of $u2 is not full state"
import json, sys
m = json.load(open(sys.argv[1])); j = json.load(open(sys.argv[2]))
u = next(u for u in m["users"] if u["dn"].lower() == sys.argv[3].lower())
want = sorted(v["sha256"] for v in u["values"] if v["attribute"] == "userCertificate")
sys.exit(0 if sorted(j["user_certificate"]) == want else 1)
PY

# LDAPS: the wrong CA is refused with a clear error; the right one works.
"$TOOLS/test_ca.sh" other "$W/otherca" >/dev/null
write_config "$W/bad-ca.yaml" "$SLAPD_LDAPS_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "tls: {ca_file: \"$W/otherca/other-ca.pem\"}"
if "$PROBE" "$W/bad-ca.yaml" info >"$W/bad-ca.out" 2>"$W/bad-ca.err"; then
  it_fail "LDAPS with the wrong CA connected"
fi
cat "$W/bad-ca.out"
grep -q 'ldap.tls.ca_file' "$W/bad-ca.out" || it_fail "the wrong-CA error does not point at ldap.tls.ca_file"
grep -q '"retriable":false' "$W/bad-ca.out" || it_fail "a rejected certificate must not be retriable"
write_config "$W/good-ca.yaml" "$SLAPD_LDAPS_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "tls: {ca_file: \"$SLAPD_CA_FILE\"}"
probe "$W/good-ca.out" "$W/good-ca.yaml" info
it_ok "LDAPS: wrong CA refused with a hint, right CA connects"
ldapdelete "${auth[@]}" -r "$OU" 2>/dev/null || true
