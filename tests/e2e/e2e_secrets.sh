#!/usr/bin/env bash
# e2e_secrets: no secret is ever printed, with the Kafka SASL password in play (issue 6, label security).
#   1. the secure broker (fixture kafka_secure: SASL_SSL, SCRAM-SHA-512, ACLs) gets this test's topics and
#      least-privilege ACLs (kafka_secure_admin, as the broker's admin);
#   2. the real certsync-collector (slapd) and certsync-publisher (the Office 365 emulator, client-secret
#      auth) run with kafka.sasl.password_file, and the users' certificates reach Office 365;
#   3. SIGHUP while the collector waits for syncrepl messages is no directory failure: no "directory
#      unavailable", no new bind, and a certificate change made afterwards is published;
#   4. /metrics, /healthz and /readyz of both are scraped;
#   5. rotation: each service's SASL password file gets a new value (collector: found by the timer;
#      publisher: SIGHUP): both exit with code 5 and log the key and the file;
#   6. every log line and every scrape is searched for every password and secret used (and their base64),
#      the rotated values included. The search is first proven to find a planted password.
# ctest sets CS_ENV_FILE (slapd), CS_KAFKA_ENV (kafka_secure), O365_EMULATOR_ENV, COLLECTOR, PUBLISHER,
# KAFKA_SECURE_ADMIN, CS_WORK_DIR. Every wait is a bounded poll of an observable state.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/it_lib.sh
. "$HERE/../integration/it_lib.sh"
it_init
COLLECTOR=${COLLECTOR:?COLLECTOR is not set; run through ctest}
PUBLISHER=${PUBLISHER:?PUBLISHER is not set; run through ctest}
ADMIN=${KAFKA_SECURE_ADMIN:?KAFKA_SECURE_ADMIN is not set; run through ctest}
# shellcheck disable=SC1090
. "${CS_KAFKA_ENV:?CS_KAFKA_ENV is not set}"
[ -n "${KAFKA_COLLECTOR_PASSWORD_FILE:-}" ] || it_fail "$CS_KAFKA_ENV is not a --secure broker's env"
# shellcheck disable=SC1090
. "${O365_EMULATOR_ENV:?O365_EMULATOR_ENV is not set}"
PIPE=$HERE/pipeline.py
# shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
IT_LOG=$W/collector.log

declare -A PIDS=()
cleanup() {
  local n
  for n in "${!PIDS[@]}"; do cs_stop_pid "${PIDS[$n]}" 20 TERM || true; done
}
trap cleanup EXIT

# await_log FILE REGEX SECONDS PID: waits until FILE has a line matching REGEX (fails early when PID died).
await_log() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    grep -Eq "$2" "$1" && return 0
    if ! kill -0 "$4" 2>/dev/null; then
      grep -Eq "$2" "$1" && return 0
      break
    fi
    sleep 0.1
  done
  echo "no line matching '$2' in $1; tail:" >&2
  tail -15 "$1" >&2
  return 1
}
# await_exit NAME SECONDS: waits for PIDS[NAME] to exit; sets RC to its exit code.
await_exit() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ] && kill -0 "${PIDS[$1]}" 2>/dev/null; do sleep 0.1; done
  kill -0 "${PIDS[$1]}" 2>/dev/null && return 1
  RC=0
  wait "${PIDS[$1]}" || RC=$?
  unset "PIDS[$1]"
  return 0
}

tag=sec$RANDOM
OU="ou=$tag,$SLAPD_BASE"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

# --- 1. directory users, topics and ACLs ------------------------------------------------------------------
"$TOOLS/gen_users.py" --count 3 --seed 7 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" \
  --prefix "$tag" --no-base-entry >/dev/null 2>&1 || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"

# The services' copies of their SASL password files: the rotation below rewrites these, not the fixture's.
(umask 077 && cp "$KAFKA_COLLECTOR_PASSWORD_FILE" "$W/kafka-collector.pw" &&
  cp "$KAFKA_PUBLISHER_PASSWORD_FILE" "$W/kafka-publisher.pw") || it_fail "copying the SASL password files"

# Each service gets only its own topics, as the fixture's ACLs do for the design's names (KafkaSecureSetup.java).
"$ADMIN" "$CS_KAFKA_ENV" >"$W/admin.out" 2>&1 <<EOF || it_fail "topics/ACLs: $(cat "$W/admin.out")"
topic $tag.events 3 compact
topic $tag.state 1 compact
topic $tag.held 1 compact
topic $tag.pstate 3 compact
topic $tag.results 1 delete
topic $tag.dlq 1 delete
topic $tag.retry 3 delete
allow collector topic literal $tag.events read write describe
allow collector topic literal $tag.state read write describe
allow collector topic literal $tag.held read write describe
allow publisher topic literal $tag.events read describe
allow publisher topic literal $tag.pstate read write describe
allow publisher topic literal $tag.results read write describe
allow publisher topic literal $tag.dlq read write describe
allow publisher topic literal $tag.retry read write describe
allow publisher group literal $tag read describe
EOF
it_ok "topics and ACLs for $tag on the SASL_SSL broker"

# --- the emulator: reset, one mailbox per user ---------------------------------------------------------------
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/reset" >/dev/null || it_fail "emulator reset"
python3 "$PIPE" seed --data "$W/data" --flavor openldap --dir-env "$CS_ENV_FILE" --post "$O365_EMULATOR_ADMIN_URL" \
  >/dev/null || it_fail "seeding the emulator"

# --- needles: every secret either service holds, as is and base64-encoded -----------------------------------
for n in collector publisher; do
  (umask 077 && printf 'Rotated-%s-%s\n' "$n" "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >"$W/rotated-$n.pw")
done
: >"$W/needles"
for f in "$SLAPD_PASSWORD_FILE" "$KAFKA_COLLECTOR_PASSWORD_FILE" "$KAFKA_PUBLISHER_PASSWORD_FILE" \
  "$KAFKA_ADMIN_PASSWORD_FILE" "$O365_CLIENT_SECRET_FILE" "$W/rotated-collector.pw" "$W/rotated-publisher.pw"; do
  pw=$(head -1 "$f" | tr -d '\r\n')
  [ ${#pw} -ge 12 ] || it_fail "$f: the secret is too short to be a distinctive needle"
  printf '%s\n' "$pw" >>"$W/needles"
  printf '%s' "$pw" | base64 -w0 >>"$W/needles"
  echo >>"$W/needles"
done
scan() { # FILE...: fails when any needle occurs in any file
  if grep -F -n -f "$W/needles" "$@" >"$W/leaks" 2>/dev/null; then
    sed 's/\(.\{60\}\).*/\1.../' "$W/leaks" >&2
    return 1
  fi
  return 0
}
printf '{"msg":"sasl handshake","password":"%s"}\n' "$(sed -n 3p "$W/needles")" >"$W/planted.log"
if scan "$W/planted.log" 2>/dev/null; then it_fail "the scan missed a planted SASL password"; fi
it_ok "the scan finds a planted SASL password"

# --- 2. both services on SASL_SSL ---------------------------------------------------------------------------
kafka_block() { # USER PWFILE [extra properties]
  printf 'kafka:\n  bootstrap.servers: "%s"\n  security.protocol: SASL_SSL\n  ssl.ca.location: "%s"\n' \
    "$KAFKA_BOOTSTRAP" "$KAFKA_CA_FILE"
  printf '  sasl.mechanisms: SCRAM-SHA-512\n  sasl.username: %s\n  sasl.password_file: "%s"\n' "$1" "$2"
  # librdkafka logs the SASL/SCRAM exchange and the TLS setup: the password must not be among it.
  printf '  debug: security\n'
  shift 2
  local l
  for l in "$@"; do printf '  %s\n' "$l"; done
}
pport=$(cs_free_port)
{
  it_slapd_collector_yaml "$tag" "$OU" 10s "topics: {events: $tag.events, checkpoint: $tag.state, held: $tag.held}" \
    "log.level: debug"
  kafka_block collector "$W/kafka-collector.pw"
} >"$W/collector.yaml"
{
  cat <<EOF
publisher: {instance_id: $tag}
topics: {events: $tag.events, state: $tag.pstate, results: $tag.results, dlq: $tag.dlq, retry: $tag.retry}
EOF
  cs_o365_yaml secret
  printf 'batch: {max_wait: 100ms}\nadmin: {listen: "127.0.0.1:%s"}\nlog.level: debug\n' "$pport"
  kafka_block publisher "$W/kafka-publisher.pw" "group.id: $tag" "session.timeout.ms: 6000"
} >"$W/publisher.yaml"
"$COLLECTOR" --check-config --config "$W/collector.yaml" >"$W/check-c.log" 2>&1 || it_fail "collector config: $(cat "$W/check-c.log")"
"$PUBLISHER" --check-config --config "$W/publisher.yaml" >"$W/check-p.log" 2>&1 || it_fail "publisher config: $(cat "$W/check-p.log")"
"$COLLECTOR" --config "$W/collector.yaml" >"$W/collector.log" 2>&1 &
PIDS[collector]=$!
"$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher.log" 2>&1 &
PIDS[publisher]=$!

python3 "$PIPE" status --data "$W/data" --flavor openldap --dir-env "$CS_ENV_FILE" --admin "$O365_EMULATOR_ADMIN_URL" \
  --policy on --wait 40 --metrics "publisher=$pport" --min-events 3 >"$W/table.txt" 2>"$W/progress.txt" || {
  cat "$W/table.txt" "$W/progress.txt" >&2
  tail -5 "$W/publisher.log" >&2
  it_fail "the initial sync over SASL_SSL did not finish within 40 s"
}
it_ok "initial sync: directory -> collector -> Kafka (SASL_SSL, SCRAM-SHA-512) -> publisher -> Office 365"

# --- 3. SIGHUP during the syncrepl wait -----------------------------------------------------------------------
await_log "$W/collector.log" '"directory connected"' 5 "${PIDS[collector]}" || it_fail "the collector never connected"
for i in 1 2 3 4 5; do
  kill -HUP "${PIDS[collector]}"
  end=$((SECONDS + 10))
  while [ "$(grep -c '"SIGHUP: comparing' "$W/collector.log")" -lt "$i" ] && [ $SECONDS -lt $end ]; do sleep 0.05; done
  [ "$(grep -c '"SIGHUP: comparing' "$W/collector.log")" -ge "$i" ] || it_fail "SIGHUP $i was not seen within 10 s"
done
! grep -q 'directory unavailable' "$W/collector.log" || it_fail "a SIGHUP during the syncrepl wait counted as a directory failure: $(grep -m1 'directory unavailable' "$W/collector.log")"
[ "$(grep -c '"directory connected"' "$W/collector.log")" -eq 1 ] || it_fail "the collector bound again after SIGHUP"
user=${tag}00001
read -r sha _ < <(python3 "$PIPE" change --data "$W/data" --flavor openldap --uid "$user" --out "$W/change.ldif") ||
  it_fail "pipeline.py change"
mail=$(python3 -c 'import json,sys; print(next(u["mail"] for u in json.load(open(sys.argv[1]))["users"] if u["uid"]==sys.argv[2]))' \
  "$W/data/manifest.json" "$user")
seq=$(python3 "$PIPE" journal-seq --admin "$O365_EMULATOR_ADMIN_URL")
t0=$(date +%s.%N)
ldapmodify "${auth[@]}" -f "$W/change.ldif" >/dev/null || it_fail "ldapmodify $user"
python3 "$PIPE" await-write --admin "$O365_EMULATOR_ADMIN_URL" --since "$seq" --mail "$mail" --sha "$sha" --t0 "$t0" \
  --timeout 20 >/dev/null || it_fail "the certificate change after the SIGHUPs did not reach Office 365"
it_ok "5 SIGHUPs during the syncrepl wait: same connection, no reconnect; a later change is published"

# --- 4. scrapes -----------------------------------------------------------------------------------------------
cport=$(sed -n 's/.*admin endpoint listening on port \([0-9]*\).*/\1/p' "$W/collector.log" | head -1)
[ -n "$cport" ] || it_fail "no admin port in the collector's log"
for p in metrics healthz readyz; do
  curl -s "http://127.0.0.1:$cport/$p" >"$W/scrape-collector-$p.txt" || it_fail "collector /$p"
  curl -s "http://127.0.0.1:$pport/$p" >"$W/scrape-publisher-$p.txt" || it_fail "publisher /$p"
done
grep -q '^certsync_collector' "$W/scrape-collector-metrics.txt" || it_fail "the collector's /metrics is empty"
grep -q '^certsync_publisher' "$W/scrape-publisher-metrics.txt" || it_fail "the publisher's /metrics is empty"

# --- 5. rotation of the SASL passwords: exit 5, the file named ----------------------------------------------
cp "$W/rotated-collector.pw" "$W/kafka-collector.pw" # found by the timer (CS_SECRET_POLL_MS)
await_exit collector 20 || it_fail "the collector did not exit within 20 s of its SASL password file changing"
[ "$RC" -eq 5 ] || it_fail "the collector exited $RC after a SASL password change, want 5"
grep -Eq '"secret file reloaded.*"key":"kafka.sasl.password_file".*'"$W/kafka-collector.pw" "$W/collector.log" ||
  it_fail "the collector's reload line does not name kafka.sasl.password_file and $W/kafka-collector.pw"
cp "$W/rotated-publisher.pw" "$W/kafka-publisher.pw"
kill -HUP "${PIDS[publisher]}"
await_exit publisher 30 || it_fail "the publisher did not exit within 30 s of its SASL password file changing"
[ "$RC" -eq 5 ] || it_fail "the publisher exited $RC after a SASL password change, want 5"
grep -Eq '"secret file reloaded.*"key":"kafka.sasl.password_file".*'"$W/kafka-publisher.pw" "$W/publisher.log" ||
  it_fail "the publisher's reload line does not name kafka.sasl.password_file and $W/kafka-publisher.pw"
it_ok "SASL password files rotated: both services exit 5 and name the key and the file"

# --- 6. nothing printed ---------------------------------------------------------------------------------------
files=("$W/collector.log" "$W/publisher.log" "$W/check-c.log" "$W/check-p.log" "$W"/scrape-*.txt)
scan "${files[@]}" || it_fail "a secret appears in the services' output (above)"
it_ok "no secret in $(cat "$W/collector.log" "$W/publisher.log" | wc -l) log lines and 6 scrapes"
