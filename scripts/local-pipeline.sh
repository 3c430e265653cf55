#!/usr/bin/env bash
# certsync's main job on this machine (run by scripts/run-local.sh after it builds):
# a directory with sample users and certificates, Kafka, the Office 365 emulator, the collector and
# the publisher, until Ctrl-C.
#
#   local-pipeline.sh [--directory samba|slapd]   start everything, show the initial sync, print a table
#                                                 per user, keep running until Ctrl-C (stops all of it)
#   local-pipeline.sh --status                    the table again (from another terminal)
#   local-pipeline.sh --try-change [USER]         replace USER's userCertificate (default user00000) with
#                                                 a new certificate through ldapmodify and print the time
#                                                 until the write shows in Office 365 (target: < 2 s)
#   local-pipeline.sh --stop                      stop a run whose terminal is gone (by its PIDs)
#
# Samba AD needs root (it binds 127.88.x.y:389); --directory slapd does not.
# Environment: CS_LOCAL_DIR state directory (default ./.local-run), CS_BUILD_DIR build tree with the
# binaries (default ./build), CS_CACHE_DIR cache (default ~/.cache/certsync: Kafka jars, Samba template,
# test keys), CS_LOCAL_SYNC_TIMEOUT seconds to wait for the initial sync (default 180).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/services/lib.sh
. "$ROOT/tests/services/lib.sh"

STATE=${CS_LOCAL_DIR:-$ROOT/.local-run}
BUILD=${CS_BUILD_DIR:-$ROOT/build}
CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}
SYNC_TIMEOUT=${CS_LOCAL_SYNC_TIMEOUT:-180}
COLLECTOR=$BUILD/collector/certsync-collector
PUBLISHER=$BUILD/publisher/certsync-publisher
SVC=$ROOT/tests/services
PIPE=$ROOT/tests/e2e/pipeline.py
DEMO_USER=user00000
# A user whose only certificate names another person's address: the policy refuses it.
STRANGER=stranger
STRANGER_ADDRESS=someone.else@elsewhere.example
OU=certsync-demo

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
  exit 2
}

say() { printf '%s\n' "$*"; }
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
secs_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# ---------------------------------------------------------------- stopping

# stop_all: stops what this run started, in reverse order, each by its PID (the services' own stop
# verbs for the servers), then checks that nothing is left. Safe to call twice.
stop_all() {
  local left=0 name pid
  # A second Ctrl-C (or --stop's SIGTERM) must not cut the clean-up short.
  trap '' INT TERM
  trap - EXIT
  [ -d "$STATE" ] || return 0
  [ -z "${STOPPED:-}" ] || return 0
  STOPPED=1
  echo
  step "stopping"
  for name in publisher collector; do
    if [ -f "$STATE/$name.pid" ]; then
      pid=$(cat "$STATE/$name.pid")
      # SIGTERM: each service finishes or aborts its open Kafka transaction and exits.
      if cs_pid_alive "$pid"; then
        cs_stop_pid "$pid" 30 TERM || true
        say "  $name (pid $pid) stopped"
      fi
    fi
  done
  [ -f "$STATE/o365/pid" ] && { bash "$ROOT/tests/emulator/emulator.sh" stop "$STATE/o365" | sed 's/^/  /' || left=1; }
  [ -f "$STATE/kafka/pid" ] && { bash "$SVC/kafka.sh" stop "$STATE/kafka" | sed 's/^/  /' || left=1; }
  if [ -f "$STATE/directory/pid" ]; then
    case $(cat "$STATE/flavor" 2>/dev/null || echo samba) in
      ad) bash "$SVC/samba.sh" stop "$STATE/directory" | sed 's/^/  /' || left=1 ;;
      *) bash "$SVC/slapd.sh" stop "$STATE/directory" | sed 's/^/  /' || left=1 ;;
    esac
  fi
  # Verify by every PID this run recorded.
  for pid in $(cat "$STATE/all.pids" 2>/dev/null); do
    if cs_pid_alive "$pid"; then
      echo "  still running: pid $pid ($(ps -o comm= -p "$pid" 2>/dev/null))" >&2
      left=1
    fi
  done
  rm -f "$STATE/run.pid"
  if [ "$left" -eq 0 ]; then
    say "  nothing left running. State and logs stay in $STATE"
  else
    echo "  some processes are still running (listed above)" >&2
    return 1
  fi
}

record_pid() { echo "$1" >>"$STATE/all.pids"; }

# ---------------------------------------------------------------- helpers for a running instance

load_run() {
  [ -f "$STATE/run.env" ] || cs_die "no local run in $STATE; start one with: bash scripts/run-local.sh"
  # shellcheck disable=SC1091
  . "$STATE/run.env"
  if ! { [ -f "$STATE/run.pid" ] && cs_pid_alive "$(cat "$STATE/run.pid")"; }; then
    cs_die "the local run in $STATE is not running; start it with: bash scripts/run-local.sh"
  fi
}

status_table() {
  python3 "$PIPE" status --data "$STATE/data" --flavor "$FLAVOR" --dir-env "$STATE/directory/env" \
    --admin "$ADMIN_URL" --policy "$POLICY" "$@"
}

# ldap_cmd VERB: the exact ldapmodify/ldapsearch command line for this run's directory, as text.
ldap_cmd() {
  printf "%s -x -H %s -D '%s' -y %s" "$1" "$LDAP_URL" "$LDAP_BIND_DN" "$LDAP_PASSWORD_FILE"
}

cmd_status() {
  load_run
  say "certsync local run ($FLAVOR directory, Office 365 emulator at $O365_URL):"
  status_table
  if [ -s "$STATE/latency.log" ]; then
    say "change latency (ldapmodify -> write in the Office 365 journal), last 5:"
    tail -n 5 "$STATE/latency.log" | sed 's/^/  /'
  fi
  [ "$POLICY" = on ] || say "note: this publisher build does not apply the certificate policy yet; every value is published"
}

cmd_try_change() {
  local user=${1:-$DEMO_USER} n ldif sha pem seq t0 lat mail
  load_run
  n=$(($(find "$STATE" -maxdepth 1 -name 'change-*.ldif' | wc -l) + 1))
  ldif=$STATE/change-$n.ldif
  read -r sha pem < <(python3 "$PIPE" change --data "$STATE/data" --flavor "$FLAVOR" --uid "$user" --out "$ldif")
  mail=$(python3 -c 'import json,sys
print(next(u["mail"] for u in json.load(open(sys.argv[1]))["users"] if u["uid"] == sys.argv[2]))' \
    "$STATE/data/manifest.json" "$user")
  seq=$(python3 "$PIPE" journal-seq --admin "$ADMIN_URL")
  say "\$ $(ldap_cmd ldapmodify) -f $ldif"
  t0=$(now)
  ldapmodify -x -H "$LDAP_URL" -D "$LDAP_BIND_DN" -y "$LDAP_PASSWORD_FILE" -f "$ldif" >/dev/null ||
    cs_die "ldapmodify of $user failed (see above)"
  lat=$(python3 "$PIPE" await-write --admin "$ADMIN_URL" --since "$seq" --mail "$mail" --sha "$sha" --t0 "$t0" \
    --timeout 30)
  echo "$(date -u +%FT%TZ) $user ${lat}s" >>"$STATE/latency.log"
  say "new certificate of $user (key and certificate: $pem) written to Office 365 ${lat} s after ldapmodify"
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 2 else 1)' "$lat" ||
    say "warning: above the 2 s target"
  status_table
}

cmd_stop() {
  local pid i
  if [ -f "$STATE/run.pid" ] && cs_pid_alive "$(cat "$STATE/run.pid")"; then
    pid=$(cat "$STATE/run.pid")
    say "asking the local run (pid $pid) to stop"
    kill -TERM "$pid"
    # Once: its trap stops everything in order, which takes up to a minute (Kafka's controlled shutdown).
    for ((i = 0; i < 1200; i++)); do
      cs_pid_alive "$pid" || break
      sleep 0.1
    done
    cs_pid_alive "$pid" && cs_die "the local run (pid $pid) is still stopping after 120 s; see its terminal"
    say "stopped"
  else
    stop_all
  fi
}

# ---------------------------------------------------------------- start

cmd_run() {
  local dir_kind=samba
  while [ $# -gt 0 ]; do
    case $1 in
      --directory)
        dir_kind=${2:-}
        shift 2 || usage
        ;;
      *) cs_die "unknown option '$1'; see --help" ;;
    esac
  done
  case $dir_kind in samba | slapd) ;; *) cs_die "--directory must be samba or slapd, not '$dir_kind'" ;; esac
  [ -x "$COLLECTOR" ] && [ -x "$PUBLISHER" ] ||
    cs_die "no binaries in $BUILD; build first (bash scripts/run-local.sh does) or set CS_BUILD_DIR"
  if [ "$dir_kind" = samba ] && [ "$(id -u)" -ne 0 ]; then
    cs_die "Samba AD needs root (it binds port 389 on its own loopback address); run as root or use --directory slapd"
  fi
  if [ -f "$STATE/run.pid" ] && cs_pid_alive "$(cat "$STATE/run.pid")"; then
    cs_die "a local run is already up (pid $(cat "$STATE/run.pid")); use --status / --try-change, or --stop it"
  fi
  # A previous run that was killed without its trap: stop what it left, by its recorded PIDs.
  if [ -f "$STATE/all.pids" ]; then
    stop_all >/dev/null 2>&1 || true
    STOPPED=
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE"
  STATE=$(cd "$STATE" && pwd)
  echo $$ >"$STATE/run.pid"
  trap 'stop_all; exit 130' INT
  trap 'stop_all; exit 143' TERM
  trap 'stop_all' EXIT

  local t_start
  t_start=$(now)
  POLICY=off
  # Not a pipe into grep -q: with pipefail, the publisher's SIGPIPE after an early match would read as "off".
  if grep -Eq '^[a-z_]*polic[a-z_]*\.' <<<"$("$PUBLISHER" --help-config)"; then POLICY=on; fi

  # --- directory and sample users
  local base ldif_base_opt=()
  if [ "$dir_kind" = samba ]; then
    FLAVOR=ad
    echo ad >"$STATE/flavor"
    step "Samba AD domain controller (CORP.EXAMPLE.TEST)"
    bash "$SVC/samba.sh" start "$STATE/directory" --cache "$CACHE/samba-template" | sed 's/^/  /'
    # shellcheck disable=SC1091
    . "$STATE/directory/env"
    record_pid "$SAMBA_PID"
    base=$SAMBA_BASE
    LDAP_URL=$SAMBA_URL LDAP_BIND_DN=$SAMBA_BIND_DN LDAP_PASSWORD_FILE=$SAMBA_PASSWORD_FILE
  else
    FLAVOR=openldap
    echo openldap >"$STATE/flavor"
    step "OpenLDAP slapd"
    bash "$SVC/slapd.sh" start "$STATE/directory" | sed 's/^/  /'
    # shellcheck disable=SC1091
    . "$STATE/directory/env"
    record_pid "$SLAPD_PID"
    base=$SLAPD_BASE
    ldif_base_opt=(--no-base-entry)
    LDAP_URL=$SLAPD_URL LDAP_BIND_DN=$SLAPD_BIND_DN LDAP_PASSWORD_FILE=$SLAPD_PASSWORD_FILE
  fi
  step "sample users with certificates (tests/tools/gen_users.py)"
  python3 "$ROOT/tests/tools/gen_users.py" --count 6 --seed 7 --out "$STATE/data" --flavor "$FLAVOR" \
    --base "$base" --ou "$OU" --key-cache "$CACHE/key-cache" "${ldif_base_opt[@]}" 2>&1 | sed 's/^/  /'
  python3 "$PIPE" extra-user --data "$STATE/data" --flavor "$FLAVOR" --base "$base" --ou "$OU" \
    --uid "$STRANGER" --address "$STRANGER_ADDRESS" >/dev/null
  ldapadd -x -H "$LDAP_URL" -D "$LDAP_BIND_DN" -y "$LDAP_PASSWORD_FILE" -f "$STATE/data/users.ldif" \
    >"$STATE/ldapadd.log" 2>&1 || { cat "$STATE/ldapadd.log" >&2; cs_die "ldapadd of the sample users failed"; }
  ldapadd -x -H "$LDAP_URL" -D "$LDAP_BIND_DN" -y "$LDAP_PASSWORD_FILE" -f "$STATE/data/extra.ldif" \
    >>"$STATE/ldapadd.log" 2>&1 || { cat "$STATE/ldapadd.log" >&2; cs_die "ldapadd of $STRANGER failed"; }
  say "  7 users in OU=$OU ($STRANGER holds a certificate for $STRANGER_ADDRESS)"

  # --- Kafka and topics (names and cleanup as in production; 3 partitions for the keyed topics)
  step "Kafka (KRaft, one node)"
  bash "$SVC/kafka.sh" start "$STATE/kafka" | sed 's/^/  /'
  # shellcheck disable=SC1091
  . "$STATE/kafka/env"
  record_pid "$KAFKA_NODE1_PID"
  local t n c spec
  for spec in certsync.changes.v1:3:compact certsync.collector-state.v1:1:compact certsync.held.v1:1:compact \
    certsync.publisher-state.v1:3:compact certsync.results.v1:1: certsync.dlq.v1:1: certsync.retry.v1:3:; do
    IFS=: read -r t n c <<<"$spec"
    bash "$SVC/kafka.sh" topic "$STATE/kafka" "$t" --partitions "$n" ${c:+--compact} >/dev/null ||
      cs_die "could not create topic $t"
  done
  say "  topics: changes, collector-state, held, publisher-state (compacted), results, dlq, retry"

  # --- Office 365 emulator, seeded with the users' recipients
  step "Office 365 emulator"
  python3 "$PIPE" seed --data "$STATE/data" --flavor "$FLAVOR" --dir-env "$STATE/directory/env" \
    --out "$STATE/seed.json" | sed 's/^/  seeded /'
  bash "$ROOT/tests/emulator/emulator.sh" start "$STATE/o365" --seed "$STATE/seed.json" | sed 's/^/  /'
  # shellcheck disable=SC1091
  . "$STATE/o365/env"
  record_pid "$O365_EMULATOR_PID"

  # --- the services' config files, checked before start
  local cport pport
  cport=$(cs_free_port)
  pport=$(cs_free_port)
  {
    echo "# Written by scripts/local-pipeline.sh (see deploy/config/collector.example.yaml)."
    echo "source: {id: local-$dir_kind, site: local}"
    echo "ldap:"
    if [ "$FLAVOR" = ad ]; then
      echo "  url: \"$SAMBA_LDAPS_URL\""
      echo "  tls: {ca_file: \"$SAMBA_CA_FILE\"}"
      echo "  filter: \"(&(objectCategory=person)(objectClass=user))\""
    else
      echo "  url: \"$SLAPD_URL\""
      echo "  allow_plaintext_bind: true       # a throw-away slapd on 127.0.0.1"
      echo "  filter: \"(objectClass=inetOrgPerson)\""
    fi
    echo "  bind_dn: \"$LDAP_BIND_DN\""
    echo "  password_file: \"$LDAP_PASSWORD_FILE\""
    echo "  base_dns: [\"$([ "$FLAVOR" = ad ] && echo "OU=$OU" || echo "ou=$OU"),$base\"]"
    echo "  poll_interval: 250ms             # DirSync/USN polls; syncrepl is pushed"
    echo "  timeout: 10s"
    echo "batch: {max_wait: 100ms}"
    echo "admin: {listen: \"127.0.0.1:$cport\"}"
    echo "kafka: {bootstrap.servers: \"$KAFKA_BOOTSTRAP\"}"
  } >"$STATE/collector.yaml"
  {
    echo "# Written by scripts/local-pipeline.sh (see deploy/config/publisher.example.yaml)."
    echo "publisher: {instance_id: local-0}"
    echo "o365:"
    echo "  tenant_id: $O365_TENANT_ID"
    echo "  tenant_domain: $O365_TENANT_DOMAIN"
    echo "  client_id: $O365_CLIENT_ID"
    echo "  authority_url: $O365_EMULATOR_URL"
    echo "  graph_url: $O365_GRAPH_BASE"
    echo "  exchange_url: $O365_EXCHANGE_BASE"
    echo "  exchange_resource: https://outlook.office365.com"
    echo "  graph_resource: https://graph.microsoft.com"
    echo "  auth: certificate"
    echo "  certificate_file: \"$O365_CLIENT_CERT_FILE\""
    echo "  private_key_file: \"$O365_CLIENT_KEY_FILE\""
    echo "  ca_file: \"$O365_EMULATOR_CA_FILE\""
    echo "batch: {max_wait: 100ms}"
    echo "admin: {listen: \"127.0.0.1:$pport\"}"
    echo "kafka: {bootstrap.servers: \"$KAFKA_BOOTSTRAP\", session.timeout.ms: 6000}"
  } >"$STATE/publisher.yaml"
  step "collector and publisher"
  "$COLLECTOR" --check-config --config "$STATE/collector.yaml" | sed 's/^/  /' ||
    cs_die "collector config $STATE/collector.yaml rejected (errors above)"
  "$PUBLISHER" --check-config --config "$STATE/publisher.yaml" | sed 's/^/  /' ||
    cs_die "publisher config $STATE/publisher.yaml rejected (errors above)"
  # setsid: Ctrl-C reaches this script only; the trap then stops the services in order.
  setsid "$COLLECTOR" --config "$STATE/collector.yaml" </dev/null >"$STATE/collector.log" 2>&1 &
  echo $! >"$STATE/collector.pid"
  record_pid $!
  setsid "$PUBLISHER" --config "$STATE/publisher.yaml" </dev/null >"$STATE/publisher.log" 2>&1 &
  echo $! >"$STATE/publisher.pid"
  record_pid $!
  say "  collector pid $(cat "$STATE/collector.pid") (log $STATE/collector.log, metrics http://127.0.0.1:$cport/metrics)"
  say "  publisher pid $(cat "$STATE/publisher.pid") (log $STATE/publisher.log, metrics http://127.0.0.1:$pport/metrics)"

  ADMIN_URL=$O365_EMULATOR_ADMIN_URL O365_URL=$O365_EMULATOR_URL
  {
    printf '%s=%q\n' FLAVOR "$FLAVOR" POLICY "$POLICY" ADMIN_URL "$ADMIN_URL" O365_URL "$O365_URL" \
      LDAP_URL "$LDAP_URL" LDAP_BIND_DN "$LDAP_BIND_DN" LDAP_PASSWORD_FILE "$LDAP_PASSWORD_FILE" \
      COLLECTOR_ADMIN "$cport" PUBLISHER_ADMIN "$pport"
  } >"$STATE/run.env"

  # --- initial sync
  local t_services
  t_services=$(now)
  step "initial sync (started $(secs_since "$t_start") s ago)"
  if ! status_table --wait "$SYNC_TIMEOUT" --metrics "collector=$cport" "publisher=$pport" --min-events 7; then
    tail -n 5 "$STATE/collector.log" "$STATE/publisher.log" >&2
    say "the initial sync did not finish; the run stays up for a look (logs in $STATE), Ctrl-C stops it"
  fi
  say "start-up to synced: $(secs_since "$t_start") s (services started to synced: $(secs_since "$t_services") s)"
  [ "$POLICY" = on ] || say "note: this publisher build does not apply the certificate policy yet; every value is published"

  local sha pem self="bash scripts/local-pipeline.sh"
  [ -z "${CS_LOCAL_DIR:-}" ] || self="CS_LOCAL_DIR=$STATE $self"
  read -r sha pem < <(python3 "$PIPE" change --data "$STATE/data" --flavor "$FLAVOR" --uid "$DEMO_USER" \
    --out "$STATE/change.ldif")
  cat <<EOF

Try a live change (another terminal, same directory). $STATE/change.ldif replaces
$DEMO_USER's userCertificate with a new certificate (its key: $pem):

  $(ldap_cmd ldapmodify) -f $STATE/change.ldif
  $self --status          # the table again

or both in one step, timed from ldapmodify to the write in Office 365:

  $self --try-change [USER]

Running until Ctrl-C.
EOF
  # Sleep until a service exits (or Ctrl-C runs the trap).
  local c p rc=0
  c=$(cat "$STATE/collector.pid")
  p=$(cat "$STATE/publisher.pid")
  wait -n "$c" "$p" || rc=$?
  echo "a service exited (status $rc); last lines of its log:" >&2
  cs_pid_alive "$c" || tail -n 20 "$STATE/collector.log" >&2
  cs_pid_alive "$p" || tail -n 20 "$STATE/publisher.log" >&2
  exit 1
}

case ${1:-} in
  --help | -h) usage ;;
  --status) cmd_status ;;
  --try-change) cmd_try_change "${2:-}" ;;
  --stop) cmd_stop ;;
  *) cmd_run "$@" ;;
esac
