#!/usr/bin/env bash
# col_service_slapd: the real certsync-collector against slapd (syncrepl) and Kafka.
# Asserts, each change read back from the events topic read_committed:
#   1. first start: a snapshot of every generated user with exactly the manifest's certificates, then
#      /healthz, /readyz and /metrics answer;
#   2. add, remove a certificate, change mail, empty the attribute, delete a user, move one out of scope:
#      each arrives with full state; versions only increase and no (object, version) appears twice;
#   3. SIGTERM exits 0 with the open batch committed (batch.max_wait 60 s: only the SIGTERM path commits);
#   4. restart: resumes from the checkpoint (a change made while it was down arrives), no new snapshot,
#      no duplicate;
#   5. a second instance with the same source.id fences the first, which exits 3; the second carries on.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
IT_LOG=$SLAPD_LOG
trap svc_stop_all EXIT

tag=cs$RANDOM
OU="ou=$tag,$SLAPD_BASE"
OUT="ou=$tag-out,$SLAPD_BASE"
TP="it.$tag"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 6 --seed 31 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou "$tag" --prefix "$tag" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
printf 'dn: %s\nobjectClass: organizationalUnit\nou: %s-out\n' "$OUT" "$tag" | ldapadd "${auth[@]}" >/dev/null ||
  it_fail "ldapadd $OUT"
svc_topics "$TP"
svc_config "$W/c.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}"
mapfile -t U < <(python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' \
  "$W/data/manifest.json")

# --- 1. snapshot ----------------------------------------------------------------------------------
svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed"
await_events "$TP.events" "len({e['id'] for e in evs if e['emit']=='snapshot'}) == 6" 30 ||
  it_fail "the snapshot did not put 6 users in the events topic"
python3 - "$W/data/manifest.json" "$W/await.json" <<'PY' || it_fail "snapshot events differ from the manifest"
import json, sys
m = json.load(open(sys.argv[1]))
evs = [j for j in map(json.loads, open(sys.argv[2])) if j["type"] == "event"]
for u in m["users"]:
    e = [e for e in evs if e.get("dn", "").lower() == u["dn"].lower()][-1]
    for a, k in (("userCertificate", "user_certificate"), ("userSMIMECertificate", "user_smime_certificate")):
        want = sorted(v["sha256"] for v in u["values"] if v["attribute"] == a)
        assert sorted(e[k]) == want, (u["dn"], a, want, e[k])
PY
it_ok "snapshot: 6 users with the manifest's certificates"

port=$(admin_port a)
[ -n "$port" ] || it_fail "no admin port in the log"
await_log a 'directory connected' 5 || true
curl -sf "http://127.0.0.1:$port/healthz" | grep -q '"ok"' || it_fail "/healthz not ok"
end=$((SECONDS + 20))
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  [ $SECONDS -lt $end ] || it_fail "/readyz never became ready"
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/metrics" >"$W/metrics.txt" || it_fail "/metrics"
for m in certsync_collector_events_produced_total certsync_collector_directory_events_total \
  certsync_collector_directory_reconnects_total certsync_collector_parse_problems_total \
  certsync_collector_last_commit_timestamp_seconds certsync_collector_directory_lag_seconds \
  certsync_collector_transactions_committed_total; do
  grep -q "^$m" "$W/metrics.txt" || grep -q "^# TYPE $m" "$W/metrics.txt" || it_fail "/metrics lacks $m"
done
it_ok "/healthz, /readyz and /metrics answer"

# --- 2. changes -----------------------------------------------------------------------------------
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=added $tag" -days 30 \
  -keyout "$W/k.pem" -outform DER -out "$W/c.der" 2>/dev/null || it_fail "openssl req"
sha=$(sha256sum "$W/c.der" | cut -d' ' -f1)
b64=$(base64 -w0 "$W/c.der")
u0=${U[0]}
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "add a certificate to $u0"
dn: $u0
changetype: modify
add: userCertificate;binary
userCertificate;binary:: $b64
LDIF
await_events "$TP.events" "'$sha' in (last('$u0') or {}).get('user_certificate', []) and last('$u0')['emit']=='change'" 20 ||
  it_fail "adding a certificate did not arrive"
n_before=$(python3 -c "import json,sys
e=[j for j in map(json.loads,open(sys.argv[1])) if j.get('dn','').lower()==sys.argv[2].lower()][-1]
print(len(e['user_certificate']))" "$W/await.json" "$u0")
it_ok "add a certificate: $u0 has $n_before values, the new one included"

ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "remove a certificate from $u0"
dn: $u0
changetype: modify
delete: userCertificate;binary
userCertificate;binary:: $b64
LDIF
await_events "$TP.events" "'$sha' not in last('$u0')['user_certificate'] and len(last('$u0')['user_certificate'])==$((n_before - 1))" 20 ||
  it_fail "removing a certificate did not arrive"
it_ok "remove a certificate"

ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "modify mail of $u0"
dn: $u0
changetype: modify
replace: mail
mail: changed-$tag@example.test
LDIF
await_events "$TP.events" "last('$u0').get('mail')=='changed-$tag@example.test' and len(last('$u0')['user_certificate'])==$((n_before - 1))" 20 ||
  it_fail "modify of mail did not arrive with full state"
it_ok "modify mail: full state (certificates still there)"

# empty the attribute of a user that has certificates
ue=$(python3 -c 'import json,sys
m=json.load(open(sys.argv[1])); print([u["dn"] for u in m["users"][1:] if any(v["attribute"]=="userCertificate" for v in u["values"])][0])' "$W/data/manifest.json")
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "empty userCertificate of $ue"
dn: $ue
changetype: modify
delete: userCertificate;binary
LDIF
await_events "$TP.events" "last('$ue')['kind']=='upsert' and last('$ue')['user_certificate']==[] and last('$ue')['emit']=='change'" 20 ||
  it_fail "emptying the attribute did not arrive"
it_ok "empty the attribute of $ue"

# delete a user; move another out of scope
ud=${U[4]}
um=${U[5]}
ud_id=$(python3 -c "import json,sys
print([j for j in map(json.loads,open(sys.argv[1])) if j.get('dn','').lower()==sys.argv[2].lower()][-1]['id'])" "$W/await.json" "$ud")
um_id=$(python3 -c "import json,sys
print([j for j in map(json.loads,open(sys.argv[1])) if j.get('dn','').lower()==sys.argv[2].lower()][-1]['id'])" "$W/await.json" "$um")
ldapdelete "${auth[@]}" "$ud" || it_fail "ldapdelete $ud"
await_events "$TP.events" "by_id['$ud_id']['kind']=='removal'" 20 || it_fail "delete of $ud did not arrive as a removal"
it_ok "delete a user: removal of $ud_id"
ldapmodrdn "${auth[@]}" -s "$OUT" "$um" "${um%%,*}" || it_fail "ldapmodrdn $um"
await_events "$TP.events" "by_id['$um_id']['kind']=='removal'" 20 || it_fail "move out of scope did not arrive as a removal"
it_ok "move out of scope: removal of $um_id"
check_invariants "$TP.events"
it_ok "versions only increase, no (object, version) twice"

# --- 3. SIGTERM commits the open batch --------------------------------------------------------------
kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit code $SVC_RC, want 0"
grep -q 'stopped: the open batch is committed' "$W/a.log" || it_fail "no commit on SIGTERM"
svc_config "$W/slow.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 60s, max_events: 1000}"
u3=${U[3]}
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "modify $u3 while down"
dn: $u3
changetype: modify
replace: mail
mail: while-down-$tag@example.test
LDIF
svc_start b "$W/slow.yaml"
await_log b 'resuming from the checkpoint' 30 || it_fail "restart did not resume from the checkpoint"
port=$(admin_port b)
end=$((SECONDS + 20))
until [ "$(metric "$port" 'certsync_collector_directory_events_total\{.*kind="upsert"')" != "" ] &&
  [ "$(metric "$port" 'certsync_collector_directory_events_total\{.*kind="upsert"')" != 0 ]; do
  [ $SECONDS -lt $end ] || it_fail "the restarted collector did not read the change made while it was down"
  sleep 0.1
done
dump "$TP.events" "$W/before-term.json"
grep -q "while-down-$tag" "$W/before-term.json" && it_fail "committed before SIGTERM despite batch.max_wait 60s"
kill -TERM "${SVC_PID[b]}"
await_exit b 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit code $SVC_RC, want 0"
await_events "$TP.events" "last('$u3').get('mail')=='while-down-$tag@example.test'" 10 ||
  it_fail "the batch open at SIGTERM was not committed"
grep -q 'full pass started' "$W/b.log" && it_fail "the restart took a new snapshot"
check_invariants "$TP.events"
it_ok "restart resumed without a snapshot; SIGTERM committed the open batch and exited 0"

# --- 4. fencing -----------------------------------------------------------------------------------
svc_start c "$W/c.yaml"
await_log c 'resuming from the checkpoint' 30 || it_fail "instance c did not start"
svc_start d "$W/c.yaml"
await_log d 'resuming from the checkpoint' 30 || it_fail "instance d did not start"
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "modify $u3 for fencing"
dn: $u3
changetype: modify
replace: mail
mail: fenced-$tag@example.test
LDIF
await_exit c 30 || it_fail "the fenced instance did not exit"
[ "$SVC_RC" = 3 ] || it_fail "fenced instance exit code $SVC_RC, want 3"
grep -q 'fenced' "$W/c.log" || it_fail "the fenced instance did not log why"
await_events "$TP.events" "last('$u3').get('mail')=='fenced-$tag@example.test'" 20 || it_fail "the new instance did not carry on"
kill -0 "${SVC_PID[d]}" || it_fail "the newer instance died"
kill -TERM "${SVC_PID[d]}"
await_exit d 30 || it_fail "d did not stop"
[ "$SVC_RC" = 0 ] || it_fail "d exit code $SVC_RC"
check_invariants "$TP.events"
it_ok "a second instance fenced the first (exit 3) and carried on"
ldapdelete "${auth[@]}" -r "$OU" "$OUT" 2>/dev/null || true
