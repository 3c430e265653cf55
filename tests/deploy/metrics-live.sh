#!/usr/bin/env bash
# deploy_metrics_live: every metric the alert rules and the Grafana dashboard name is on a live /metrics.
# Starts the real certsync-collector (slapd + Kafka) and certsync-publisher (Kafka + the Office 365
# emulator), waits until both are ready and have done their first work (the collector's snapshot
# committed, the publisher's partitions restored, token fetched and lag reported), scrapes both /metrics
# and checks, with the names extracted from the files themselves (metric-names.py), that each one is
# exposed, counters never incremented included (at 0).
#
# Environment (set by ctest): CS_ENV_FILE (slapd), CS_KAFKA_ENV, O365_EMULATOR_ENV, CS_WORK_DIR,
# COLLECTOR, PUBLISHER, COL_EVENTS, CS_KAFKA_SH, CS_KAFKA_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/../collector/col_svc_lib.sh"
IT_LOG=$SLAPD_LOG
[ -f "${O365_EMULATOR_ENV:?O365_EMULATOR_ENV is not set; run through ctest}" ] ||
  it_fail "$O365_EMULATOR_ENV missing: the o365emu fixture did not start"
# shellcheck disable=SC1090
. "$O365_EMULATOR_ENV"
PUBLISHER=${PUBLISHER:?PUBLISHER (path of certsync-publisher) is not set; run through ctest}
files=$ROOT/deploy/helm/certsync/files
pub_pid=""
cleanup() {
  svc_stop_all
  if [ -n "$pub_pid" ]; then kill -9 "$pub_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# await_ready PORT NAME PID SECONDS: polls /readyz until it answers 200 while PID lives.
await_ready() {
  local port=$1 name=$2 pid=$3 end=$((SECONDS + $4))
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || it_fail "$name exited before it was ready (log: $W/$name.log)"
    [ $SECONDS -lt $end ] || it_fail "$name not ready within $4 s: $(curl -s "http://127.0.0.1:$port/readyz")"
    sleep 0.2
  done
}

tag=mon$RANDOM
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

# --- collector: one OU with one user, snapshot committed -------------------------------------------
ldapadd "${auth[@]}" >"$W/ldapadd.out" 2>&1 <<LDIF || it_fail "ldapadd: $(cat "$W/ldapadd.out")"
dn: ou=$tag,$SLAPD_BASE
objectClass: organizationalUnit
ou: $tag

dn: cn=$tag-user,ou=$tag,$SLAPD_BASE
objectClass: inetOrgPerson
cn: $tag-user
sn: user
mail: $tag-user@example.com
LDIF
svc_topics "it.$tag"
svc_config "$W/collector.yaml" "$tag" "it.$tag" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" \
  "ou=$tag,$SLAPD_BASE" "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}"
svc_start collector "$W/collector.yaml"
await_log collector '"full pass \(snapshot\) committed' 60 || it_fail "the collector committed no snapshot"
cport=$(admin_port collector)
[ -n "$cport" ] || it_fail "no admin port in the collector's log"
await_ready "$cport" collector "${SVC_PID[collector]}" 30
curl -sf "http://127.0.0.1:$cport/metrics" >"$W/collector.metrics" || it_fail "collector /metrics"
it_ok "collector ready, scraped"

# --- publisher: its topics, ready (partitions restored, token), lag reported -----------------------
for t in events state retry; do
  extra=()
  [ "$t" = state ] && extra=(--compact)
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "mon.$tag.$t" --partitions 2 "${extra[@]}" >/dev/null ||
    it_fail "create mon.$tag.$t"
done
for t in results dlq; do
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "mon.$tag.$t" --partitions 1 >/dev/null || it_fail "create mon.$tag.$t"
done
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$W/publisher.yaml" <<YAML
publisher.instance_id: mon-$tag
topics: {events: mon.$tag.events, state: mon.$tag.state, results: mon.$tag.results, dlq: mon.$tag.dlq, retry: mon.$tag.retry}
o365:
  tenant_id: $O365_TENANT_ID
  tenant_domain: $O365_TENANT_DOMAIN
  client_id: $O365_CLIENT_ID
  authority_url: $O365_EMULATOR_URL
  graph_url: $O365_EMULATOR_URL
  exchange_url: $O365_EMULATOR_URL
  exchange_resource: https://outlook.office365.com
  graph_resource: https://graph.microsoft.com
  auth: secret
  client_secret_file: $O365_CLIENT_SECRET_FILE
  ca_file: $O365_EMULATOR_CA_FILE
batch: {max_events: 100, max_wait: 300ms}
admin.listen: 127.0.0.1:$pport
kafka:
  bootstrap.servers: $KAFKA_BOOTSTRAP
  group.id: mon-$tag
  session.timeout.ms: 6000
YAML
"$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher.log" 2>&1 &
pub_pid=$!
await_ready "$pport" publisher "$pub_pid" 60
# The lag gauges appear after the first loop turn that owns partitions: await them, bounded.
end=$((SECONDS + 30))
until curl -sf "http://127.0.0.1:$pport/metrics" >"$W/publisher.metrics" &&
  grep -q '^certsync_publisher_consumer_lag{' "$W/publisher.metrics"; do
  kill -0 "$pub_pid" 2>/dev/null || it_fail "the publisher exited (log: $W/publisher.log)"
  [ $SECONDS -lt $end ] || it_fail "no certsync_publisher_consumer_lag series within 30 s"
  sleep 0.2
done
it_ok "publisher ready, scraped"

# --- every name the alerts and the dashboard use is in a scrape --------------------------------------
python3 "$HERE/metric-names.py" names "$files/alerts.yaml" "$files/dashboard.json" >"$W/names.txt"
[ "$(wc -l <"$W/names.txt")" -ge 20 ] || it_fail "only $(wc -l <"$W/names.txt") metric names extracted"
python3 "$HERE/metric-names.py" check-scrape "$files/alerts.yaml" "$files/dashboard.json" -- \
  "$W/collector.metrics" "$W/publisher.metrics" || it_fail "metrics named by the alerts or the dashboard are missing"
# Counters never incremented are exposed at 0, not left out.
for zero in 'certsync_publisher_dead_lettered_total 0' 'certsync_publisher_token_failures_total 0'; do
  grep -qx "$zero" "$W/publisher.metrics" || it_fail "publisher /metrics lacks '$zero'"
done
grep -q "^certsync_collector_mass_removal_guard_trips_total{source=\"$tag\"} 0\$" "$W/collector.metrics" ||
  it_fail "collector /metrics lacks the guard trips counter at 0"
it_ok "$(wc -l <"$W/names.txt") metric names of the alerts and the dashboard all exposed"

kill -TERM "${SVC_PID[collector]}" "$pub_pid"
await_exit collector 30 || it_fail "the collector did not stop on SIGTERM"
pts_end=$((SECONDS + 30))
while kill -0 "$pub_pid" 2>/dev/null && [ $SECONDS -lt $pts_end ]; do sleep 0.1; done
if kill -0 "$pub_pid" 2>/dev/null; then it_fail "the publisher did not stop on SIGTERM"; fi
pub_pid=""
echo "deploy_metrics_live: ok"
