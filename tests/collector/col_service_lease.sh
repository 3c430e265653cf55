#!/usr/bin/env bash
# col_service_lease: two certsync-collectors with one source.id and election.mode: kubernetes-lease against
# slapd, Kafka and the Lease API emulator (tests/k8s/leaseapi.py: HTTPS, bearer tokens, resourceVersion
# conflicts). Short durations (lease 3s, renew deadline 2s, retry 250ms). Asserts:
#   1. one active (the Lease's holderIdentity), one standby: /readyz 503, election_active 0, no Kafka;
#   2. kill -9 of the active: the standby takes over only once the lease expired (>= 2 s later, by its own
#      observation clock), resumes from the checkpoint and carries changes on;
#   3. SIGTERM of the active: it releases the lease (holderIdentity ""), exits 0, and the standby takes
#      over well before the lease would have expired;
#   4. the active cannot renew (the API answers 500 to its token): it logs "lease lost", aborts and exits 6
#      BEFORE the standby is elected;
#   5. no fencing in any replica and no (object, version) twice in the topic.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
# shellcheck disable=SC2034 # it_fail prints it
IT_LOG=$SLAPD_LOG
EMU_PID=""
cleanup() {
  svc_stop_all
  [ -z "$EMU_PID" ] || kill "$EMU_PID" 2>/dev/null || true
}
trap cleanup EXIT
LEASE_S=3

tag=cl$RANDOM
TP="it.$tag"
NS=certsync-test
LEASE=certsync-collector-$tag
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
"$TOOLS/gen_users.py" --count 3 --seed 41 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou "$tag" --prefix "$tag" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
mapfile -t U < <(python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' "$W/data/manifest.json")
svc_topics "$TP"

# --- the Lease API emulator ----------------------------------------------------------------------------
"$TOOLS/test_ca.sh" init "$W/ca" >/dev/null
"$TOOLS/test_ca.sh" server "$W/ca" leaseapi 127.0.0.1 >/dev/null
for who in a b; do
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$W/token-$who"
  echo "$who $(cat "$W/token-$who")" >>"$W/tokens"
done
python3 "$HERE/../k8s/leaseapi.py" --cert "$W/ca/leaseapi.pem" --key "$W/ca/leaseapi.key" --tokens "$W/tokens" \
  --port-file "$W/emu.port" 2>"$W/emu.log" &
EMU_PID=$!
end=$((SECONDS + 15))
until [ -s "$W/emu.port" ]; do
  kill -0 "$EMU_PID" 2>/dev/null || it_fail "the Lease API emulator exited: $(cat "$W/emu.log")"
  [ $SECONDS -lt $end ] || it_fail "the Lease API emulator did not start"
  sleep 0.1
done
EMU="https://127.0.0.1:$(cat "$W/emu.port")"
emu() { curl -sf --cacert "$W/ca/ca.pem" "$@"; }
holder() { emu "$EMU/_emu/leases/$NS/$LEASE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"].get("holderIdentity",""))'; }

# config WHO: replica WHO's config (identity WHO = the pod name; its own token = its service account).
config() {
  svc_config "$W/c-$1.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "ou=$tag,$SLAPD_BASE" \
    "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}" \
    "election:" "  mode: kubernetes-lease" "  kubernetes:" "    api_url: \"$EMU\"" \
    "    token_file: \"$W/token-$1\"" "    ca_file: \"$W/ca/ca.pem\"" "    namespace: $NS" \
    "    lease_name: $LEASE" "    identity: $1" "    lease_duration: ${LEASE_S}s" "    renew_deadline: 2s" \
    "    retry_period: 250ms"
}
config a
config b
"$COLLECTOR" --config "$W/c-a.yaml" --check-config >"$W/check.out" 2>&1 || it_fail "--check-config: $(cat "$W/check.out")"

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
# log_ms NAME REGEX: the time (ms since the epoch) of the first log line of NAME matching REGEX.
log_ms() {
  grep -E "$2" "$W/$1.log" | head -1 | python3 -c 'import json,sys,datetime
t=json.loads(sys.stdin.readline())["ts"]
print(int(datetime.datetime.strptime(t,"%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()*1000))'
}

# --- 1. one active, one standby ------------------------------------------------------------------------
svc_start a "$W/c-a.yaml"
await_log a 'elected: this replica is active' 20 || it_fail "the first replica was not elected"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed"
svc_start b "$W/c-b.yaml"
await_log b 'standby: another replica holds the election lease' 20 || it_fail "the second replica is not standby"
await_log b 'admin endpoint listening' 5 || it_fail "the standby has no admin endpoint"
await_ready a 20 || it_fail "the active replica is not ready"
[ "$(holder)" = a ] || it_fail "the Lease's holderIdentity is '$(holder)', want a"
[ "$(ready_code b)" = 503 ] || it_fail "the standby's /readyz answered $(ready_code b), want 503"
[ "$(metric "$(admin_port b)" '^certsync_collector_election_active')" = 0 ] || it_fail "standby election_active != 0"
[ "$(metric "$(admin_port a)" '^certsync_collector_election_active')" = 1 ] || it_fail "active election_active != 1"
grep -q 'checkpoint loaded' "$W/b.log" && it_fail "the standby touched Kafka (loaded the checkpoint)"
await_events "$TP.events" "len({e['id'] for e in evs if e['emit']=='snapshot'}) == 3" 30 || it_fail "snapshot not in the topic"
# Renewals keep the lease: after several lease durations the holder is unchanged and b still standby.
emu "$EMU/_emu/requests" | python3 -c 'import json,sys
n=sum(1 for l in sys.stdin if json.loads(l)["who"]=="a" and json.loads(l)["method"]=="PUT")
sys.exit(0 if n>=2 else 1)' || it_fail "the active replica does not renew (fewer than 2 PUTs)"
it_ok "one active (a, the Lease holder), one standby (b): /readyz 503, election_active 0, no Kafka"

# --- 2. kill -9: the standby takes over after the lease expires -------------------------------------------
t0=$(date +%s%3N)
kill -9 "${SVC_PID[a]}"
await_log b 'elected: this replica is active' $((LEASE_S + 10)) || it_fail "b was not elected after kill -9 of a"
dt=$(($(log_ms b 'elected: this replica is active') - t0))
echo "takeover a -> b: elected $dt ms after kill -9 (lease ${LEASE_S}s)"
[ "$dt" -ge 2000 ] || it_fail "b took the lease $dt ms after the kill: before it could have expired"
[ "$(holder)" = b ] || it_fail "holderIdentity '$(holder)', want b"
await_log b 'resuming from the checkpoint' 30 || it_fail "b did not resume from the checkpoint"
grep -q '"full pass' "$W/b.log" && it_fail "b ran a full pass instead of resuming"
await_ready b 20 || it_fail "b never became ready"
set_mail "${U[0]}" "b-$tag@example.test"
await_events "$TP.events" "last('${U[0]}')['mail']=='b-$tag@example.test'" 20 || it_fail "b did not carry changes on"
it_ok "kill -9 of the active: the standby took over after the lease expired ($dt ms) and resumed"

# --- 3. SIGTERM: release, fast takeover --------------------------------------------------------------------
svc_start a2 "$W/c-a.yaml"
await_log a2 'standby: another replica holds the election lease' 20 || it_fail "the restarted replica is not standby"
t0=$(date +%s%3N)
kill -TERM "${SVC_PID[b]}"
await_exit b 30 || it_fail "b did not exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "b's SIGTERM exit code $SVC_RC, want 0"
grep -q 'released the election lease' "$W/b.log" || it_fail "b did not release the lease"
await_log a2 'elected: this replica is active' 10 || it_fail "a2 was not elected after b released"
dt=$(($(log_ms a2 'elected: this replica is active') - t0))
echo "takeover b -> a2 after SIGTERM: elected $dt ms after the signal"
[ "$dt" -lt 2000 ] || it_fail "a2 needed $dt ms after the release: the release did not shorten the takeover"
await_ready a2 20 || it_fail "a2 never became ready"
set_mail "${U[1]}" "a2-$tag@example.test"
await_events "$TP.events" "last('${U[1]}')['mail']=='a2-$tag@example.test'" 20 || it_fail "a2 did not carry changes on"
it_ok "SIGTERM: the lease was released and the standby took over in $dt ms"

# --- 4. the active cannot renew: it stops before the standby is elected --------------------------------------
svc_start b2 "$W/c-b.yaml"
await_log b2 'standby: another replica holds the election lease' 20 || it_fail "b2 is not standby"
emu -X POST -d '{"who": "a", "mode": "500", "count": -1}' "$EMU/_emu/fault" >/dev/null || it_fail "fault injection"
await_exit a2 15 || it_fail "a2 kept running though it could not renew its lease"
[ "$SVC_RC" = 6 ] || it_fail "a2 exit code $SVC_RC after losing the lease, want 6"
grep -q '"lease lost' "$W/a2.log" || it_fail "a2 did not log that it lost the lease"
await_log b2 'elected: this replica is active' $((LEASE_S + 10)) || it_fail "b2 was not elected after a2 lost the lease"
lost=$(log_ms a2 '"lease lost')
last=$(tail -1 "$W/a2.log" | python3 -c 'import json,sys,datetime
t=json.loads(sys.stdin.readline())["ts"]
print(int(datetime.datetime.strptime(t,"%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()*1000))')
won=$(log_ms b2 'elected: this replica is active')
echo "a2 lost the lease at $lost, logged its last line at $last; b2 elected at $won"
[ "$last" -lt "$won" ] || it_fail "a2 was still running ($last) when b2 was elected ($won)"
emu -X POST "$EMU/_emu/clear" >/dev/null
await_ready b2 20 || it_fail "b2 never became ready"
set_mail "${U[2]}" "b2-$tag@example.test"
await_events "$TP.events" "last('${U[2]}')['mail']=='b2-$tag@example.test'" 20 || it_fail "b2 did not carry changes on"
it_ok "lease lost while active: a2 aborted and exited 6 before b2 was elected"

# --- 5. no ping-pong, no duplicates ------------------------------------------------------------------------
n=$(cat "$W"/a.log "$W"/b.log "$W"/a2.log "$W"/b2.log | grep -c 'fenced' || true)
[ "$n" = 0 ] || it_fail "$n fencing log lines: the replicas fenced each other"
[ "$(metric "$(admin_port b2)" '^certsync_collector_fenced')" = 0 ] || it_fail "certsync_collector_fenced != 0"
check_invariants "$TP.events"
kill -TERM "${SVC_PID[b2]}"
await_exit b2 30 || it_fail "b2 did not exit after SIGTERM"
[ "$SVC_RC" = 0 ] || it_fail "b2's SIGTERM exit code $SVC_RC, want 0"
[ "$(holder)" = "" ] || it_fail "after SIGTERM the lease is still held by '$(holder)'"
it_ok "no fencing (0 log lines), no (object, version) twice; the last replica released the lease"
