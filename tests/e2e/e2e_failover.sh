#!/usr/bin/env bash
# Failover of the whole pipeline (issue 7): slapd (syncrepl) -> certsync-collector -> Kafka -> certsync-publisher
# -> Office 365 emulator, while a change stream (tests/e2e/failover.py stream) replaces the certificate of 5
# users with a new one every ~50 ms. Each mode injects one failure in the middle of the stream:
#
#   e2e_failover.sh kafka-leader       three brokers (fixture kafka3; topics replication 3, min.insync.replicas
#                                      2; both services bootstrap from all three): kill -9 the leader of the
#                                      events partition (found from the metadata, killed by the PID the fixture
#                                      recorded), await a new leader, restart the broker (kafka.sh node-start:
#                                      the shared fixture has three brokers again when the test ends)
#   e2e_failover.sh kill-services      kill -9 the collector and the publisher at the same moment, restart both;
#                                      then the events topic read read_committed has no (object, version) twice
#                                      and no object's version going back
#   e2e_failover.sh directory-restart  restart slapd (a private one: restarting the shared fixture would disturb
#                                      other tests) keeping its data: the collector reconnects and resumes from
#                                      its position without a new snapshot
#                                      (certsync_collector_full_syncs_total{reason="snapshot"} stays 1)
#   e2e_failover.sh ad-restart-dirsync the same against Samba AD: a private DC (tests/services/samba.sh, a template
#   e2e_failover.sh ad-restart-usn     copy on its own 127.88.x.y), the collector tracking it over LDAPS with
#                                      DirSync (or uSNChanged polling); the DC is stopped by its PID (samba.sh
#                                      stop --keep-address) and kept down until the collector has failed to
#                                      reconnect twice (its log shows the backoff growing: 250, 500, 1000 ms),
#                                      then started again on the same data and address (samba.sh restart);
#                                      the collector resumes from its in-memory DirSync cookie / USN position:
#                                      full_syncs_total{reason="snapshot"} stays 1, {reason="resync"} stays 0
#
# Every mode then stops the stream and asserts: the emulator state of every user equals the directory's
# certificates (awaited with a deadline), the journal shows no recipient going back to an older state, and (but
# for kill-services) both services are still running. ctest sets CS_ENV_FILE (slapd fixture), CS_KAFKA_ENV,
# CS_KAFKA_SH, CS_KAFKA_DIR, O365_EMULATOR_ENV, COLLECTOR, PUBLISHER, COL_EVENTS, CS_WORK_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/it_lib.sh
. "$HERE/../integration/it_lib.sh"
MODE=${1:?usage: e2e_failover.sh kafka-leader|kill-services|directory-restart|ad-restart-dirsync|ad-restart-usn}
FLAVOR=openldap # the directory: slapd, or Samba AD (ad-restart-*, tracked with ldap.mode AD_MODE)
AD_MODE=""
case $MODE in kafka-leader | kill-services | directory-restart) ;;
  ad-restart-dirsync | ad-restart-usn)
    FLAVOR=ad
    AD_MODE=${MODE#ad-restart-}
    ;;
  *) cs_die "unknown mode '$MODE'; use kafka-leader, kill-services, directory-restart, ad-restart-dirsync or ad-restart-usn" ;;
esac
W=${CS_WORK_DIR:?CS_WORK_DIR is not set; run through ctest}
rm -rf "$W"
mkdir -p "$W"
COLLECTOR=${COLLECTOR:?COLLECTOR is not set; run through ctest}
PUBLISHER=${PUBLISHER:?PUBLISHER is not set; run through ctest}
COL_EVENTS=${COL_EVENTS:?COL_EVENTS is not set; run through ctest}
CS_KAFKA_SH=${CS_KAFKA_SH:?CS_KAFKA_SH is not set}
KDIR=${CS_KAFKA_DIR:?CS_KAFKA_DIR is not set}
# shellcheck disable=SC1090
. "${CS_KAFKA_ENV:?CS_KAFKA_ENV is not set}"
# shellcheck disable=SC1090
. "${O365_EMULATOR_ENV:?O365_EMULATOR_ENV is not set}"
PIPE=$HERE/pipeline.py
FO=$HERE/failover.py
SLAPD_SH=$HERE/../services/slapd.sh
SAMBA_SH=$HERE/../services/samba.sh
# shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
IT_LOG=$W/publisher.log

declare -A PIDS=()
KILLED_NODE=""
STREAM_PID=""
cleanup() {
  local n
  [ -n "$STREAM_PID" ] && { : >"$W/stream.stop"; cs_stop_pid "$STREAM_PID" 10 TERM || true; }
  for n in "${!PIDS[@]}"; do cs_stop_pid "${PIDS[$n]}" 20 TERM || true; done
  # The shared fixture must have its three brokers again, whatever happened here.
  if [ -n "$KILLED_NODE" ]; then "$CS_KAFKA_SH" node-start "$KDIR" "$KILLED_NODE" >/dev/null || true; fi
  if [ -f "$W/slapd/pid" ]; then "$SLAPD_SH" stop "$W/slapd" >/dev/null 2>&1 || true; fi
  # Also a DC stopped with --keep-address (failed while down): stop then removes its alias.
  if [ -f "$W/samba/address" ]; then "$SAMBA_SH" stop "$W/samba" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# --- the directory: the shared slapd, or a private one that this test may restart
if [ "$MODE" = directory-restart ]; then
  "$SLAPD_SH" start "$W/slapd" >"$W/slapd.out" 2>&1 || it_fail "private slapd did not start: $(cat "$W/slapd.out")"
  DIR_ENV=$W/slapd/env
elif [ "$FLAVOR" = ad ]; then
  "$SAMBA_SH" start "$W/samba" --cache "${CS_CACHE_DIR:-$HOME/.cache/certsync}/samba-template" >"$W/samba.out" 2>&1 ||
    it_fail "private Samba DC did not start: $(cat "$W/samba.out")"
  DIR_ENV=$W/samba/env
else
  DIR_ENV=${CS_ENV_FILE:?CS_ENV_FILE is not set}
fi
# shellcheck disable=SC1090
. "$DIR_ENV"
tag=fo$RANDOM
if [ "$FLAVOR" = ad ]; then
  OU="OU=$tag,$SAMBA_BASE"
  # A simple bind over plain LDAP on loopback (samba.sh allows it); the collector uses LDAPS.
  auth=(-x -H "$SAMBA_URL" -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE")
  "$TOOLS/gen_users.py" --count 5 --seed 11 --out "$W/data" --flavor ad --base "$SAMBA_BASE" --ou "$tag" \
    --prefix "$tag" --no-user-files >/dev/null 2>&1 || it_fail "gen_users.py failed"
else
  OU="ou=$tag,$SLAPD_BASE"
  auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
  "$TOOLS/gen_users.py" --count 5 --seed 11 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" \
    --prefix "$tag" --no-base-entry --no-user-files >/dev/null 2>&1 || it_fail "gen_users.py failed"
fi
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"

# --- Kafka topics of this test only; one events partition, so "its leader" is one broker (the publisher's state
# and retry topics must have as many partitions as the events topic). Replication is the
# cluster's size (3 on kafka3, whose brokers have min.insync.replicas 2).
for spec in events:1:compact state:1:compact held:1:compact pstate:1:compact results:1: dlq:1: retry:1:; do
  IFS=: read -r t n c <<<"$spec"
  "$CS_KAFKA_SH" topic "$KDIR" "$tag.$t" --partitions "$n" ${c:+--compact} >/dev/null || it_fail "topic $tag.$t"
done

# --- Office 365: the shared emulator, reset, one mailbox per user (resolved by mail)
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/reset" >/dev/null || it_fail "emulator reset"
python3 "$PIPE" seed --data "$W/data" --flavor "$FLAVOR" --dir-env "$DIR_ENV" --post "$O365_EMULATOR_ADMIN_URL" \
  >/dev/null || it_fail "seeding the emulator"

# --- the two services, both bootstrapping from every broker of the cluster
pport=$(cs_free_port)
if [ "$FLAVOR" = ad ]; then
  cat >"$W/collector.yaml" <<EOF
source: {id: $tag}
ldap:
  url: "$SAMBA_LDAPS_URL"
  bind_dn: "$SAMBA_BIND_DN"
  password_file: "$SAMBA_PASSWORD_FILE"
  base_dns: ["$OU"]
  filter: "(&(objectClass=user)(sAMAccountName=$tag*))"
  mode: $AD_MODE
  poll_interval: 200ms
  timeout: 5s
  tls: {ca_file: "$SAMBA_CA_FILE"}
topics: {events: $tag.events, checkpoint: $tag.state, held: $tag.held}
batch: {max_wait: 100ms}
admin: {listen: "127.0.0.1:0"}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP"}
EOF
else
  it_slapd_collector_yaml "$tag" "$OU" 5s "topics: {events: $tag.events, checkpoint: $tag.state, held: $tag.held}" >"$W/collector.yaml"
fi
it_publisher_yaml "$tag" "$pport" 100ms >"$W/publisher.yaml"
"$COLLECTOR" --check-config --config "$W/collector.yaml" >/dev/null 2>"$W/check.err" || it_fail "collector config: $(cat "$W/check.err")"
"$PUBLISHER" --check-config --config "$W/publisher.yaml" >/dev/null 2>"$W/check.err" || it_fail "publisher config: $(cat "$W/check.err")"
POLICY=off
if grep -Eq '^[a-z_]*polic[a-z_]*\.' <<<"$("$PUBLISHER" --help-config)"; then POLICY=on; fi

# start_services SUFFIX: both services in the background, logs $W/collector$SUFFIX.log, $W/publisher$SUFFIX.log.
start_services() {
  "$COLLECTOR" --config "$W/collector.yaml" >"$W/collector$1.log" 2>&1 &
  PIDS[collector]=$!
  "$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher$1.log" 2>&1 &
  PIDS[publisher]=$!
}

# await_converged SECONDS: every user's Office 365 certificates equal the directory's now. Fails the test at once
# when a service exits meanwhile (it would never converge).
await_converged() {
  local sp n
  python3 "$PIPE" status --data "$W/data" --flavor "$FLAVOR" --dir-env "$DIR_ENV" --admin "$O365_EMULATOR_ADMIN_URL" \
    --policy "$POLICY" --wait "$1" >"$W/table.txt" 2>"$W/progress.txt" &
  sp=$!
  while cs_pid_alive "$sp"; do
    for n in collector publisher; do
      if ! cs_pid_alive "${PIDS[$n]}"; then
        cs_stop_pid "$sp" 5 TERM || true
        alive "$n"
      fi
    done
    sleep 0.2
  done
  wait "$sp"
}

# await_stream N SECONDS: the change stream has made at least N successful changes.
await_stream() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    [ "$(python3 "$FO" count --log "$W/stream.log" --ok)" -ge "$1" ] && return 0
    cs_pid_alive "$STREAM_PID" || it_fail "the change stream exited early"
    sleep 0.2
  done
  it_fail "the change stream made fewer than $1 changes within $2 s"
}

# await_reconnects N SECONDS: the collector has logged N "directory unavailable: reconnecting" lines (its first
# loss of the directory, then each failed reconnect); fails the test if it exits meanwhile.
await_reconnects() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    [ "$(grep -c 'directory unavailable: reconnecting in' "$W/collector.log")" -ge "$1" ] && return 0
    alive collector
    sleep 0.1
  done
  it_fail "the collector logged fewer than $1 reconnect attempts within $2 s of the directory's stop"
}

# alive NAME: fails the test unless service NAME is still running (it survived the failure).
alive() {
  cs_pid_alive "${PIDS[$1]}" || {
    tail -20 "$W/$1"*.log >&2
    it_fail "certsync-$1 exited during the failover (log tail above)"
  }
}

start_services ""
await_converged 60 || {
  cat "$W/table.txt" "$W/progress.txt" >&2
  tail -5 "$W/collector.log" >&2
  it_fail "the initial sync did not finish within 60 s"
}
it_ok "initial sync of 5 users (policy in the publisher: $POLICY)"

# --- the change stream; the failure comes once a stream change has reached Office 365 (changes flow)
python3 "$FO" stream --data "$W/data" --flavor "$FLAVOR" --dir-env "$DIR_ENV" --out "$W/stream.log" --stop "$W/stream.stop" \
  2>"$W/stream.err" &
STREAM_PID=$!
await_stream 5 30
read -r mail0 sha0 < <(python3 -c 'import json,sys; e=json.loads(open(sys.argv[1]).readline()); print(e["mail"], e["sha"])' \
  "$W/stream.log")
python3 "$PIPE" await-write --admin "$O365_EMULATOR_ADMIN_URL" --since 0 --mail "$mail0" --sha "$sha0" --t0 0 \
  --timeout 30 >/dev/null || it_fail "the first change of the stream did not reach Office 365 within 30 s"
t_fail=$(cs_now_ms)

case $MODE in
  kafka-leader)
    leader=$(python3 "$FO" leader --bootstrap "$KAFKA_BOOTSTRAP" --topic "$tag.events") || it_fail "no leader for $tag.events"
    # shellcheck disable=SC1090
    . "$CS_KAFKA_ENV" # a node-start of an earlier test may have changed the PIDs
    pid_var=KAFKA_NODE${leader}_PID
    lpid=${!pid_var:-}
    [ -n "$lpid" ] && cs_pid_alive "$lpid" || it_fail "broker $leader (leader of $tag.events) has no live PID in $CS_KAFKA_ENV"
    KILLED_NODE=$leader
    kill -9 "$lpid"
    echo "killed broker $leader (pid $lpid), the leader of $tag.events/0, during the stream"
    end=$((SECONDS + 60))
    while [ $SECONDS -lt $end ]; do
      now=$(python3 "$FO" leader --bootstrap "$KAFKA_BOOTSTRAP" --topic "$tag.events" 2>/dev/null || echo -1)
      [ "$now" != -1 ] && [ "$now" != "$leader" ] && break
      sleep 0.2
    done
    [ "$now" != -1 ] && [ "$now" != "$leader" ] || it_fail "no new leader for $tag.events within 60 s of the kill"
    it_ok "broker $now leads $tag.events after $(cs_since_s "$t_fail") s"
    base=$(python3 "$FO" count --log "$W/stream.log" --ok)
    await_stream $((base + 30)) 60
    "$CS_KAFKA_SH" node-start "$KDIR" "$leader" >"$W/node-start.out" 2>&1 ||
      it_fail "restarting broker $leader: $(cat "$W/node-start.out")"
    KILLED_NODE=""
    it_ok "broker $leader restarted; the cluster lists 3 brokers again"
    ;;
  kill-services)
    kill -9 "${PIDS[collector]}" "${PIDS[publisher]}"
    wait "${PIDS[collector]}" 2>/dev/null || true
    wait "${PIDS[publisher]}" 2>/dev/null || true
    echo "killed the collector and the publisher (-9, together) during the stream"
    base=$(python3 "$FO" count --log "$W/stream.log" --ok)
    await_stream $((base + 30)) 60
    start_services .2
    # shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
    IT_LOG=$W/publisher.2.log
    it_ok "both services restarted"
    ;;
  directory-restart)
    "$SLAPD_SH" restart "$W/slapd" >"$W/restart.out" 2>&1 || it_fail "slapd restart: $(cat "$W/restart.out")"
    echo "restarted slapd during the stream: $(cat "$W/restart.out")"
    ;;
  ad-restart-*)
    "$SAMBA_SH" stop "$W/samba" --keep-address >"$W/restart.out" 2>&1 || it_fail "samba stop: $(cat "$W/restart.out")"
    # Down until the collector has lost the DC and failed to reconnect twice: 3 lines, 3 growing delays.
    await_reconnects 3 30
    "$SAMBA_SH" restart "$W/samba" >>"$W/restart.out" 2>&1 || it_fail "samba restart: $(cat "$W/restart.out")"
    echo "stopped and restarted the Samba DC during the stream ($(cs_since_s "$t_fail") s down): $(tail -1 "$W/restart.out")"
    delays=$(sed -n 's/.*directory unavailable: reconnecting in \([0-9]*\) ms.*/\1/p' "$W/collector.log" | head -3 | tr '\n' ' ')
    read -r d1 d2 d3 <<<"$delays"
    [ "${d1:-0}" -gt 0 ] && [ "${d2:-0}" -gt "$d1" ] && [ "${d3:-0}" -gt "$d2" ] ||
      it_fail "the collector's reconnect delays do not grow (no backoff): $delays"
    it_ok "the collector retried with backoff while the DC was down: ${delays% } ms"
    ;;
esac
base=$(python3 "$FO" count --log "$W/stream.log" --ok)
await_stream $((base + 20)) 60
: >"$W/stream.stop"
wait "$STREAM_PID" || it_fail "the change stream failed: $(cat "$W/stream.err")"
STREAM_PID=""
echo "change stream: $(python3 "$FO" count --log "$W/stream.log") changes ($(python3 "$FO" count --log "$W/stream.log" --ok) acknowledged)"

# --- convergence, then the journal: nothing lost, nothing regressed
if ! await_converged 90; then
  cat "$W/table.txt" "$W/progress.txt" >&2
  tail -5 "$W/collector"*.log >&2
  it_fail "Office 365 did not converge to the directory within 90 s of the stream's end"
fi
it_ok "converged: every user's Office 365 certificates equal the directory's ($(cs_since_s "$t_fail") s after the failure)"
python3 "$FO" regressions --admin "$O365_EMULATOR_ADMIN_URL" --stream "$W/stream.log" >"$W/regressions.txt" || {
  cat "$W/regressions.txt" >&2
  it_fail "a recipient went back to an older state"
}
it_ok "$(head -1 "$W/regressions.txt")"

case $MODE in
  kill-services)
    "$COL_EVENTS" "$KAFKA_BOOTSTRAP" "$tag.events" dump >"$W/events.json" 2>"$W/events.err" ||
      it_fail "reading $tag.events: $(cat "$W/events.err")"
    python3 - "$W/events.json" <<'PY' || it_fail "an (object, version) is twice in $tag.events, or a version went back (see $W/events.json)"
import json, sys
s = [j for j in map(json.loads, open(sys.argv[1])) if j["type"] == "summary"][0]
print(f"events (read_committed): {s['records']} records, {s['repeated_versions']} (object, version) repeated, "
      f"{s['not_newer']} not newer than the object's previous one")
sys.exit(0 if s["repeated_versions"] == 0 and s["not_newer"] == 0 and s["records"] > 0 else 1)
PY
    it_ok "no (object, version) twice in $tag.events, no version going back"
    ;;
  directory-restart | ad-restart-*)
    grep -q 'directory unavailable: reconnecting' "$W/collector.log" || it_fail "the collector logged no reconnect"
    port=$(sed -n 's/.*admin endpoint listening on port \([0-9]*\).*/\1/p' "$W/collector.log" | head -1)
    [ -n "$port" ] || it_fail "no admin port in the collector's log"
    curl -sf "http://127.0.0.1:$port/metrics" >"$W/collector.metrics" || it_fail "no /metrics from the collector"
    full() { sed -n "s/^certsync_collector_full_syncs_total{[^}]*reason=\"$1\"[^}]*} //p" "$W/collector.metrics" | head -1; }
    snaps=$(full snapshot)
    resyncs=$(full resync)
    [ "${snaps%.*}" = 1 ] || it_fail "certsync_collector_full_syncs_total{reason=\"snapshot\"} is '$snaps', not 1: the reconnect took a new snapshot"
    [ "${resyncs%.*}" = 0 ] || it_fail "certsync_collector_full_syncs_total{reason=\"resync\"} is '$resyncs', not 0: the reconnect did not resume its position"
    # The same from the log: no full pass started after the first loss of the directory.
    if sed '1,/directory unavailable: reconnecting/d' "$W/collector.log" | grep -Eq 'full pass started|full resync'; then
      it_fail "the collector's log shows a full pass after the reconnect"
    fi
    it_ok "the collector reconnected and resumed without a new snapshot (full_syncs{reason=\"snapshot\"} = 1, {reason=\"resync\"} = 0)"
    ;;
esac
if [ "$MODE" != kill-services ]; then
  alive collector
  alive publisher
  it_ok "both services survived the failure"
fi
