#!/usr/bin/env bash
# col_service_kafka_pause: Kafka stops answering while the collector commits. The broker process (a private
# one, so no other test notices) is paused with SIGSTOP and resumed with SIGCONT. Asserts:
#   1. a commit during the pause stays pending: "commit pending" is logged, /readyz is not ready and
#      certsync_collector_commit_pending is 1 (certsync_collector_ready 0); after SIGCONT the same commit completes ("pending commit
#      completed"), /readyz is ready again and the change made during the pause arrives;
#   2. SIGTERM during an outage that does not end: the collector exits 4 (documented in --help) with a clear
#      log line, within a bounded time; after SIGCONT a --once run resumes from the committed checkpoint
#      (no new snapshot) and delivers the change that was pending;
#   3. read back read_committed: no (object, version) twice, no version going backwards, and the latest state
#      of every object equals the directory.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
IT_LOG=$SLAPD_LOG
KD="$W/kafka"
KPID=""
cleanup() {
  [ -n "$KPID" ] && kill -CONT "$KPID" 2>/dev/null
  declare -F svc_stop_all >/dev/null && svc_stop_all
  "$CS_KAFKA_SH" stop "$KD" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$CS_KAFKA_SH" start "$KD" >"$W/kafka-start.log" 2>&1 || { cat "$W/kafka-start.log" >&2; it_fail "private kafka did not start"; }
CS_KAFKA_ENV=$KD/env
CS_KAFKA_DIR=$KD
. "$HERE/col_svc_lib.sh"
KPID=${KAFKA_NODE1_PID:?no KAFKA_NODE1_PID in $KD/env}
it_ok "private kafka $KAFKA_BOOTSTRAP (pid $KPID)"

tag=kp$RANDOM
OU="ou=$tag,$SLAPD_BASE"
TP="it.$tag"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
"$TOOLS/gen_users.py" --count 4 --seed 47 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou "$tag" --prefix "$tag" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >/dev/null || it_fail "ldapadd"
mapfile -t U < <(python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' \
  "$W/data/manifest.json")
svc_topics "$TP"
svc_config "$W/c.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}"
set_mail() {
  printf 'dn: %s\nchangetype: modify\nreplace: mail\nmail: %s\n' "$1" "$2" | ldapmodify "${auth[@]}" >/dev/null ||
    it_fail "ldapmodify $1"
}
readyz() {
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz" || true
}

svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot"
port=$(admin_port a)
end=$((SECONDS + 20))
until [ "$(readyz "$port")" = 200 ]; do
  [ $SECONDS -lt $end ] || it_fail "/readyz never became ready"
  sleep 0.1
done

# --- 1. pause mid-commit, resume ---------------------------------------------------------------------
kill -STOP "$KPID"
set_mail "${U[0]}" "paused-$tag@example.test"
await_log a 'commit pending: resuming it' 30 || it_fail "no pending commit while Kafka was paused"
code=$(readyz "$port")
[ "$code" != 200 ] || it_fail "/readyz is ready while a commit is pending"
v=$(metric "$port" '^certsync_collector_commit_pending')
[ "${v%.*}" = 1 ] || it_fail "certsync_collector_commit_pending is '$v' while a commit is pending"
v=$(metric "$port" '^certsync_collector_ready')
[ "${v%.*}" = 0 ] || it_fail "certsync_collector_ready is '$v' while a commit is pending"
kill -CONT "$KPID"
await_log a 'pending commit completed' 60 || it_fail "the pending commit did not complete after SIGCONT"
await_events "$TP.events" "(last('${U[0]}') or {}).get('mail')=='paused-$tag@example.test'" 30 ||
  it_fail "the change made during the pause did not arrive"
end=$((SECONDS + 20))
until [ "$(readyz "$port")" = 200 ]; do
  [ $SECONDS -lt $end ] || it_fail "/readyz not ready again after the commit completed"
  sleep 0.1
done
v=$(metric "$port" '^certsync_collector_ready')
[ "${v%.*}" = 1 ] || it_fail "certsync_collector_ready is '$v' once the commit completed"
[ "$(grep -c 'full pass started' "$W/a.log")" = 1 ] || it_fail "the pause caused a new snapshot"
grep -q 'aborting and producing the batch again' "$W/a.log" && it_fail "the pending commit was aborted"
it_ok "paused mid-commit: pending (not ready, gauge 1), resumed, completed"

# --- 2. SIGTERM during an outage -------------------------------------------------------------------
kill -STOP "$KPID"
set_mail "${U[1]}" "stopped-$tag@example.test"
n=$(grep -c 'commit pending: resuming it' "$W/a.log")
end=$((SECONDS + 30))
while [ "$(grep -c 'commit pending: resuming it' "$W/a.log")" -le "$n" ]; do
  [ $SECONDS -lt $end ] || it_fail "no second pending commit"
  sleep 0.1
done
kill -TERM "${SVC_PID[a]}"
t0=$SECONDS
await_exit a 30 || it_fail "SIGTERM during the outage did not end the collector"
[ "$SVC_RC" = 4 ] || it_fail "exit code $SVC_RC after SIGTERM during a pending commit, want 4 (see $W/a.log)"
grep -q 'stopped while a Kafka commit was pending' "$W/a.log" || it_fail "no clear log line for the exit"
"$COLLECTOR" --help | grep -q '^  4  stopped while a Kafka commit was pending' || it_fail "--help does not document exit 4"
it_ok "SIGTERM during the outage: exit 4 after $((SECONDS - t0)) s"
kill -CONT "$KPID"

svc_start final "$W/c.yaml" --once
await_exit final 120 || it_fail "--once did not finish"
[ "$SVC_RC" = 0 ] || it_fail "--once exit code $SVC_RC (see $W/final.log)"
grep -q 'full pass started' "$W/final.log" && it_fail "the restart took a new snapshot"
await_events "$TP.events" "(last('${U[1]}') or {}).get('mail')=='stopped-$tag@example.test'" 30 ||
  it_fail "the change pending at SIGTERM was lost"
it_ok "restart resumed from the committed checkpoint"

# --- 3. exactly once -----------------------------------------------------------------------------------
check_invariants "$TP.events"
check_latest_equals_directory "$OU" 4
it_ok "no duplicate (object, version); latest state equals the directory"
