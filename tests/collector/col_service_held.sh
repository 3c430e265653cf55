#!/usr/bin/env bash
# col_service_held: the mass-removal guard through the real binary (slapd + Kafka).
# Asserts: with guard.mass_removal_threshold 2, deleting 4 users holds at least 2 removals back from the events
# topic (/metrics shows them held); after SIGTERM, `--release-held` exits 0 and the held
# removals are in the events topic; invariants hold.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
IT_LOG=$SLAPD_LOG
trap svc_stop_all EXIT
tag=ch$RANDOM
OU="ou=$tag,$SLAPD_BASE"
TP="it.$tag"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
"$TOOLS/gen_users.py" --count 5 --seed 51 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou "$tag" --prefix "$tag" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >/dev/null || it_fail "ldapadd"
mapfile -t U < <(python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' \
  "$W/data/manifest.json")
svc_topics "$TP"
svc_config "$W/c.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}" "guard: {mass_removal_threshold: 2}"
svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot"
for i in 1 2 3 4; do ldapdelete "${auth[@]}" "${U[$i]}" || it_fail "ldapdelete ${U[$i]}"; done
port=$(admin_port a)
# Held + passed must account for the 4 deletes, and the threshold must hold back at least 2.
end=$((SECONDS + 30))
while :; do
  held=$(metric "$port" '^certsync_collector_held_events\{')
  dump "$TP.events" "$W/ev1.json"
  passed=$(grep -c '"kind":"removal"' "$W/ev1.json" || true)
  [ -n "$held" ] && [ "$((held + passed))" = 4 ] && [ "$held" -ge 2 ] && break
  [ $SECONDS -lt $end ] || it_fail "the guard did not hold the removals (held ${held:-?}, passed $passed)"
  sleep 0.2
done
it_ok "guard: $passed removals passed, $held held"
kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit $SVC_RC"
svc_start rel "$W/c.yaml" --release-held
await_exit rel 60 || it_fail "--release-held did not finish"
[ "$SVC_RC" = 0 ] || it_fail "--release-held exit $SVC_RC (see $W/rel.log)"
grep -q "released $held of $held held events" "$W/rel.log" || it_fail "release did not report $held events"
await_events "$TP.events" "sum(1 for e in evs if e['kind']=='removal') == 4" 20 || it_fail "released removals missing"
check_invariants "$TP.events"
it_ok "--release-held moved the $held held removals to the events topic"
