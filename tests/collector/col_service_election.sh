#!/usr/bin/env bash
# col_service_election: two certsync-collectors with one source.id and election.mode: lockfile against
# slapd (syncrepl, two base DNs) and Kafka. Asserts:
#   1. only one replica is active: the other logs that it is standby, answers /readyz 503 and reports
#      certsync_collector_election_active 0, and never touches Kafka (nobody is fenced);
#   2. ldap.base_dns with two DNs under syncrepl: users of both are in scope, users of a third OU are not;
#   3. kill -9 of the active: the standby is elected within TAKEOVER_S seconds, resumes from the checkpoint
#      (no snapshot) and carries changes on; a restarted replica becomes the new standby, and a second
#      kill -9 hands back the same way;
#   4. no fencing ping-pong: not one "fenced" log line in any replica, and no replica exits.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
IT_LOG=$SLAPD_LOG
trap svc_stop_all EXIT
TAKEOVER_S=5

tag=ce$RANDOM
TP="it.$tag"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
for ou in "${tag}a" "${tag}b" "${tag}o"; do
  "$TOOLS/gen_users.py" --count 2 --seed 37 --out "$W/data-$ou" --flavor openldap --base "$SLAPD_BASE" \
    --ou "$ou" --prefix "$ou" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
  ldapadd "${auth[@]}" -f "$W/data-$ou/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
done
svc_topics "$TP"
svc_config "$W/c.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "ou=${tag}a,$SLAPD_BASE" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}" \
  "election: {mode: lockfile, lock_file: \"$W/election.lock\"}"
sed -i "s|^  base_dns:.*|  base_dns: [\"ou=${tag}a,$SLAPD_BASE\", \"ou=${tag}b,$SLAPD_BASE\"]|" "$W/c.yaml"
dns() { python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' "$1"; }
mapfile -t U < <(dns "$W/data-${tag}a/manifest.json")
mapfile -t UB < <(dns "$W/data-${tag}b/manifest.json")

ready_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(admin_port "$1")/readyz" || true; }
await_ready() {
  local end=$((SECONDS + $2))
  until [ "$(ready_code "$1")" = 200 ]; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}
set_mail() {
  printf 'dn: %s\nchangetype: modify\nreplace: mail\nmail: %s\n' "$1" "$2" | ldapmodify "${auth[@]}" >/dev/null ||
    it_fail "ldapmodify $1"
}

# --- 1. one active, one standby ---------------------------------------------------------------------
svc_start a "$W/c.yaml"
await_log a 'elected: this replica is active' 20 || it_fail "the first replica was not elected"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed"
svc_start b "$W/c.yaml"
await_log b 'standby: another replica holds the election lock' 20 || it_fail "the second replica is not standby"
await_log b 'admin endpoint listening' 5 || it_fail "the standby has no admin endpoint"
await_ready a 20 || it_fail "the active replica is not ready"
[ "$(ready_code b)" = 503 ] || it_fail "the standby's /readyz answered $(ready_code b), want 503"
[ "$(metric "$(admin_port b)" '^certsync_collector_election_active')" = 0 ] || it_fail "standby election_active != 0"
[ "$(metric "$(admin_port a)" '^certsync_collector_election_active')" = 1 ] || it_fail "active election_active != 1"
grep -q 'checkpoint loaded' "$W/b.log" && it_fail "the standby touched Kafka (loaded the checkpoint)"
it_ok "one active (a), one standby (b): /readyz 503, election_active 0, no Kafka"

# --- 2. two base DNs under syncrepl -------------------------------------------------------------------
await_events "$TP.events" "len({e['id'] for e in evs if e['emit']=='snapshot'}) == 4 and not any('ou=${tag}o,' in e['dn'] for e in evs)" 30 ||
  it_fail "the snapshot of two base DNs is not exactly the 4 users of ou=${tag}a and ou=${tag}b"
set_mail "${UB[0]}" "b1-$tag@example.test"
await_events "$TP.events" "last('${UB[0]}')['mail']=='b1-$tag@example.test'" 20 || it_fail "a change under the second base DN did not arrive"
it_ok "syncrepl with two base DNs: both in scope, the third OU not"

# --- 3. kill -9 of the active: the standby takes over ---------------------------------------------------
takeover() { # KILLED NEW: kill -9 KILLED, NEW must be elected within TAKEOVER_S and carry a change on
  local t0
  t0=$(date +%s%N)
  kill -9 "${SVC_PID[$1]}"
  await_log "$2" 'elected: this replica is active' "$TAKEOVER_S" || it_fail "$2 was not elected within $TAKEOVER_S s after kill -9 of $1"
  echo "takeover $1 -> $2: elected within $((($(date +%s%N) - t0) / 1000000)) ms of kill -9 (bound $TAKEOVER_S s)"
  await_log "$2" 'resuming from the checkpoint' 30 || it_fail "$2 did not resume from the checkpoint"
  grep -q '"full pass' "$W/$2.log" && it_fail "$2 ran a full pass instead of resuming"
  await_ready "$2" 20 || it_fail "$2 never became ready"
  set_mail "${U[0]}" "$2-$tag@example.test"
  await_events "$TP.events" "last('${U[0]}')['mail']=='$2-$tag@example.test'" 20 || it_fail "$2 did not carry changes on"
}
takeover a b
svc_start a2 "$W/c.yaml"
await_log a2 'standby: another replica holds the election lock' 20 || it_fail "the restarted replica is not standby"
set_mail "${U[1]}" "still-b-$tag@example.test"
await_events "$TP.events" "last('${U[1]}')['mail']=='still-b-$tag@example.test'" 20 || it_fail "b stopped after a2 started"
takeover b a2
it_ok "kill -9 of the active: the standby takes over within $TAKEOVER_S s, twice"

# --- 4. no ping-pong ------------------------------------------------------------------------------------
kill -0 "${SVC_PID[a2]}" || it_fail "the active replica exited"
n=$(cat "$W"/a.log "$W"/b.log "$W"/a2.log | grep -c 'fenced' || true)
[ "$n" = 0 ] || it_fail "$n fencing log lines: the replicas fenced each other"
[ "$(metric "$(admin_port a2)" '^certsync_collector_fenced')" = 0 ] || it_fail "certsync_collector_fenced != 0"
check_invariants "$TP.events"
kill -TERM "${SVC_PID[a2]}"
await_exit a2 30 || it_fail "no exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "SIGTERM exit code $SVC_RC, want 0"
it_ok "no fencing in any replica (0 log lines, certsync_collector_fenced 0); SIGTERM exits 0"
