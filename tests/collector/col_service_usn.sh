#!/usr/bin/env bash
# col_service_usn: the real certsync-collector in ldap.mode: usn (uSNChanged polling) against Samba AD and
# Kafka. Asserts, read back from the events topic read_committed (and the checkpoint with col_ckpt):
#   1. first start: a snapshot of every generated user; the checkpoint holds the UsnPosition (16-byte
#      invocationId, USN) and the server;
#   2. a replaced userCertificate arrives as a change; a deleted user as a removal;
#   2b. a user whose description change makes ldap.filter no longer match gets an out_of_scope removal at
#      once (no resync), and arrives again, newer, when it matches again;
#   3. a restart resumes from the checkpoint (no full pass) and picks up a change made while it was down;
#   4. a checkpoint with another invocationId (a DC restored from backup) forces a resync whose removal
#      sweep emits a removal for a user deleted while the collector was down;
#   4b. a checkpoint bound to another server (failover) forces the same resync and sweep;
#   5. ldap.group_dn: a second source scoped to a group's members sees only them;
#   6. versions only increase, no (object, version) twice; SIGTERM exits 0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
CKPT=${COL_CKPT:?COL_CKPT (path of col_ckpt) is not set; run through ctest}
IT_LOG=$SAMBA_LOG
trap svc_stop_all EXIT

tag=cu$RANDOM
OU="OU=$tag,$SAMBA_BASE"
TP="it.$tag"
FILTER="(&(objectClass=user)(sAMAccountName=$tag*)(!(description=out)))"
export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
auth=(-x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" -H "$SAMBA_LDAPS_URL")

"$TOOLS/gen_users.py" --count 5 --seed 43 --out "$W/data" --flavor ad --base "$SAMBA_BASE" \
  --ou "$tag" --prefix "$tag" >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
svc_topics "$TP"
SVC_LDAP_EXTRA=("tls: {ca_file: \"$SAMBA_CA_FILE\"}" "mode: usn")
svc_config "$W/c.yaml" "$tag" "$TP" "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" "$SAMBA_PASSWORD_FILE" "$OU" "$FILTER" \
  "batch: {max_wait: 100ms}"
mapfile -t DNS < <(python3 -c 'import json,sys
for u in json.load(open(sys.argv[1]))["users"]: print(u["dn"])' "$W/data/manifest.json")

# --- 1. snapshot ----------------------------------------------------------------------------------------
svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 90 || it_fail "no snapshot committed"
grep -q '"mode":"usn"' "$W/a.log" || it_fail "the collector did not run in usn mode"
await_events "$TP.events" "len({e['id'] for e in evs if e['emit']=='snapshot'}) == 5" 30 ||
  it_fail "the snapshot did not put 5 users in the events topic"
"$CKPT" "$KAFKA_BOOTSTRAP" "$TP.state" "$tag" show >"$W/ckpt.json" || it_fail "reading the checkpoint"
python3 - "$W/ckpt.json" "$SAMBA_HOST" <<'PY' || it_fail "the checkpoint does not hold a usn position: $(cat "$W/ckpt.json")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["mode"] == 2, c                      # TRACKING_MODE_USN
assert c["server"].startswith(sys.argv[2]), c
assert len(c["invocation_id"]) == 32 and c["invocation_id"] != "0" * 32, c
assert c["usn"] > 0 and c["snapshot_complete"], c
PY
it_ok "usn snapshot: 5 users; checkpoint $(cat "$W/ckpt.json")"

# --- 2. modify and delete -------------------------------------------------------------------------------
new_pem=$(python3 -c 'import json,sys
m=json.load(open(sys.argv[1])); print(next(v["cert"] for u in m["users"][1:] for v in u["values"] if v["attribute"]=="userCertificate"))' "$W/data/manifest.json")
openssl x509 -in "$W/data/$new_pem" -outform DER -out "$W/new.der"
new_sha=$(sha256sum "$W/new.der" | cut -d' ' -f1)
modify_cert() {
  ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "ldapmodify of $1"
dn: $1
changetype: modify
replace: userCertificate
userCertificate:< file://$W/new.der
LDIF
}
id_of() {
  python3 -c "import json,sys
print([j for j in map(json.loads,open(sys.argv[1])) if j.get('dn','').lower()==sys.argv[2].lower()][-1]['id'])" "$W/await.json" "$1"
}
modify_cert "${DNS[0]}"
await_events "$TP.events" "last('${DNS[0]}')['user_certificate']==['$new_sha'] and last('${DNS[0]}')['emit']=='change'" 30 ||
  it_fail "the replaced certificate did not arrive"
victim_id=$(id_of "${DNS[1]}")
ldapdelete "${auth[@]}" "${DNS[1]}" || it_fail "ldapdelete ${DNS[1]}"
await_events "$TP.events" "by_id['$victim_id']['kind']=='removal'" 30 || it_fail "the delete did not arrive as a removal"
it_ok "usn tracking: modify of ${DNS[0]}, removal of $victim_id"

# --- 2b. leaving the filter and re-entering, live --------------------------------------------------------
set_desc() { # set_desc DN VALUE
  printf 'dn: %s\nchangetype: modify\nreplace: description\ndescription: %s\n' "$1" "$2" |
    ldapmodify "${auth[@]}" >/dev/null || it_fail "ldapmodify description of $1"
}
id0=$(id_of "${DNS[0]}")
set_desc "${DNS[0]}" out
await_events "$TP.events" "by_id['$id0']['kind']=='removal' and by_id['$id0'].get('removal_reason')=='out_of_scope'" 30 ||
  it_fail "${DNS[0]} no longer matching ldap.filter got no out_of_scope removal"
set_desc "${DNS[0]}" in
await_events "$TP.events" "by_id['$id0']['kind']=='upsert' and by_id['$id0']['order']=='newer'" 30 ||
  it_fail "${DNS[0]} matching ldap.filter again did not arrive as newer than its removal"
grep -q '"full pass (resync)' "$W/a.log" && it_fail "leaving the filter ran a resync"
it_ok "usn tracking: ${DNS[0]} leaves ldap.filter (out_of_scope removal, no resync) and re-enters (newer)"
kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit code $SVC_RC, want 0"

# --- 3. restart resumes ---------------------------------------------------------------------------------
modify_cert "${DNS[2]}"
svc_start b "$W/c.yaml"
await_log b 'resuming from the checkpoint' 60 || it_fail "the restart did not resume from the checkpoint"
await_events "$TP.events" "last('${DNS[2]}')['user_certificate']==['$new_sha'] and last('${DNS[2]}')['emit']=='change'" 30 ||
  it_fail "the change made while the collector was down did not arrive after the restart"
grep -q '"full pass' "$W/b.log" && it_fail "the restart ran a full pass instead of resuming"
kill -TERM "${SVC_PID[b]}"
await_exit b 30 || it_fail "no exit after SIGTERM"
it_ok "restart resumed from the uSNChanged position without a full pass"

# --- 4. another invocationId: resync with removal sweep -------------------------------------------------
gone_id=$(id_of "${DNS[3]}")
ldapdelete "${auth[@]}" "${DNS[3]}" || it_fail "ldapdelete ${DNS[3]}"
"$CKPT" "$KAFKA_BOOTSTRAP" "$TP.state" "$tag" set-invocation 0123456789abcdef0123456789abcdef ||
  it_fail "rewriting the checkpoint's invocationId"
svc_start c "$W/c.yaml"
await_log c '"full pass \(resync\) committed' 60 || it_fail "a changed invocationId did not force a resync"
grep -q 'invocationId changed' "$W/c.log" || it_fail "the resync did not say why (invocationId)"
grep -Eq 'resync\) committed: [0-9]+ objects, [0-9]+ skipped, 1 removed' "$W/c.log" ||
  it_fail "the resync's sweep did not remove exactly the user deleted while down"
await_events "$TP.events" "by_id['$gone_id']['kind']=='removal'" 30 ||
  it_fail "the user deleted while the collector was down was not removed by the resync sweep"
"$CKPT" "$KAFKA_BOOTSTRAP" "$TP.state" "$tag" show >"$W/ckpt2.json" || it_fail "reading the checkpoint"
grep -q 0123456789abcdef "$W/ckpt2.json" && it_fail "the checkpoint still holds the forged invocationId"
modify_cert "${DNS[4]}"
await_events "$TP.events" "last('${DNS[4]}')['user_certificate']==['$new_sha']" 30 ||
  it_fail "tracking did not go on after the resync"
check_invariants "$TP.events"
kill -TERM "${SVC_PID[c]}"
await_exit c 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit code $SVC_RC, want 0"
it_ok "another invocationId: resync, sweep removed $gone_id, tracking resumed; invariants hold"

# --- 4b. a checkpoint from another server (failover): resync with removal sweep ------------------------
gone2_id=$(id_of "${DNS[4]}")
ldapdelete "${auth[@]}" "${DNS[4]}" || it_fail "ldapdelete ${DNS[4]}"
"$CKPT" "$KAFKA_BOOTSTRAP" "$TP.state" "$tag" set-server "dc2.$tag.example.test:636" ||
  it_fail "rewriting the checkpoint's server"
svc_start d "$W/c.yaml"
await_log d '"full pass \(resync\) committed' 60 || it_fail "a checkpoint of another server did not force a resync"
grep -q 'bound to another server' "$W/d.log" || it_fail "the resync did not say why (another server)"
await_events "$TP.events" "by_id['$gone2_id']['kind']=='removal'" 30 ||
  it_fail "the user deleted before the failover was not removed by the resync sweep"
kill -TERM "${SVC_PID[d]}"
await_exit d 30 || it_fail "no exit after SIGTERM"
check_invariants "$TP.events"
it_ok "checkpoint bound to another server: resync, sweep removed $gone2_id"

# --- 5. ldap.group_dn -----------------------------------------------------------------------------------
GROUP="CN=${tag}grp,$OU"
ldapadd "${auth[@]}" >/dev/null <<LDIF || it_fail "adding group $GROUP"
dn: $GROUP
objectClass: group
sAMAccountName: ${tag}grp
member: ${DNS[0]}
member: ${DNS[2]}
LDIF
svc_topics "$TP.g"
svc_config "$W/g.yaml" "${tag}g" "$TP.g" "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" "$SAMBA_PASSWORD_FILE" "$OU" "$FILTER" \
  "batch: {max_wait: 100ms}"
sed -i "s|^  filter:.*|&\n  group_dn: \"$GROUP\"|" "$W/g.yaml"
svc_start g "$W/g.yaml" --once
await_exit g 60 || it_fail "--once with ldap.group_dn did not finish"
[ "$SVC_RC" = 0 ] || it_fail "--once with ldap.group_dn exit code $SVC_RC; log: $(tail -5 "$W/g.log")"
await_events "$TP.g.events" "sorted(e['dn'].lower() for e in by_id.values())==sorted(['${DNS[0]}'.lower(),'${DNS[2]}'.lower()])" 20 ||
  it_fail "ldap.group_dn did not limit the snapshot to the group's two members"
it_ok "ldap.group_dn: only the group's members are in scope"
ldapdelete "${auth[@]}" -r "$OU" 2>/dev/null || true
