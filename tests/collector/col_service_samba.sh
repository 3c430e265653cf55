#!/usr/bin/env bash
# col_service_samba: the real certsync-collector against Samba AD (DirSync over LDAPS) and Kafka.
# Asserts, read back from the events topic read_committed:
#   1. first start: a snapshot of every generated user with the manifest's certificates;
#   2. a replaced userCertificate arrives with full state (the unchanged userSMIMECertificate too);
#   3. a deleted user arrives as a removal of its objectGUID id;
#   4. versions only increase, no (object, version) twice; SIGTERM exits 0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
IT_LOG=$SAMBA_LOG
trap svc_stop_all EXIT

tag=cs$RANDOM
OU="OU=$tag,$SAMBA_BASE"
TP="it.$tag"
FILTER="(&(objectClass=user)(sAMAccountName=$tag*))"
export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
auth=(-x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" -H "$SAMBA_LDAPS_URL")

"$TOOLS/gen_users.py" --count 5 --seed 41 --out "$W/data" --flavor ad --base "$SAMBA_BASE" \
  --ou "$tag" --prefix "$tag" >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
svc_topics "$TP"
SVC_LDAP_EXTRA=("tls: {ca_file: \"$SAMBA_CA_FILE\"}")
svc_config "$W/c.yaml" "$tag" "$TP" "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" "$SAMBA_PASSWORD_FILE" "$OU" "$FILTER" \
  "batch: {max_wait: 100ms}"

svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 90 || it_fail "no snapshot committed"
grep -q '"mode":"dirsync"' "$W/a.log" || it_fail "auto mode did not pick DirSync"
await_events "$TP.events" "len({e['id'] for e in evs if e['emit']=='snapshot'}) == 5" 30 ||
  it_fail "the snapshot did not put 5 users in the events topic"
python3 - "$W/data/manifest.json" "$W/await.json" <<'PY' || it_fail "snapshot events differ from the manifest"
import json, sys
m = json.load(open(sys.argv[1]))
evs = [j for j in map(json.loads, open(sys.argv[2])) if j["type"] == "event"]
for u in m["users"]:
    e = [e for e in evs if e.get("dn", "").lower() == u["dn"].lower()][-1]
    for a, k in (("userCertificate", "user_certificate"), ("userSMIMECertificate", "user_smime_certificate")):
        want = sorted(v["sha256"] for v in u["values"] if v["attribute"] == a)
        assert sorted(e[k]) == want, (u["dn"], a, want, e[k])
    assert len(e["id"]) == 36
PY
it_ok "DirSync snapshot: 5 users with the manifest's certificates"

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
smime=$(python3 -c 'import json,sys
m=json.load(open(sys.argv[1])); u=[u for u in m["users"] if u["dn"].lower()==sys.argv[2].lower()][0]
print(sorted(v["sha256"] for v in u["values"] if v["attribute"]=="userSMIMECertificate"))' "$W/data/manifest.json" "$target")
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "ldapmodify of $target"
dn: $target
changetype: modify
replace: userCertificate
userCertificate:< file://$W/new.der
LDIF
await_events "$TP.events" "last('$target')['user_certificate']==['$new_sha'] and sorted(last('$target')['user_smime_certificate'])==$smime and last('$target')['emit']=='change'" 30 ||
  it_fail "the replaced certificate did not arrive with full state"
it_ok "modify: $target re-read in full"

victim_id=$(python3 -c "import json,sys
print([j for j in map(json.loads,open(sys.argv[1])) if j.get('dn','').lower()==sys.argv[2].lower()][-1]['id'])" "$W/await.json" "$victim")
ldapdelete "${auth[@]}" "$victim" || it_fail "ldapdelete $victim"
await_events "$TP.events" "by_id['$victim_id']['kind']=='removal'" 30 || it_fail "the delete did not arrive as a removal"
it_ok "delete: removal of $victim_id"
check_invariants "$TP.events"

kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit code $SVC_RC, want 0"
it_ok "versions only increase, no (object, version) twice; SIGTERM exits 0"
ldapdelete -x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" -H "$SAMBA_URL" -r "$OU" 2>/dev/null || true
