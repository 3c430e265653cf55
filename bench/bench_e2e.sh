#!/usr/bin/env bash
# bench_e2e: the whole pipeline (directory -> collector -> Kafka -> publisher -> Office 365 emulator), issue 7.
# A benchmark, not a test: prints `name: value` lines; fails only when something could not be measured.
#
#   bench/bench_e2e.sh BUILD_DIR [--users N] [--changes M] [--rate R] [--ad-users K] [--ad-changes L]
#                      [--no-dirsync]
#   defaults: N=10000 users, M=240 changes at R=4 per second (60 s), K=200 AD users, L=60 AD changes
#   quick run: bench/bench_e2e.sh build-rel --users 500 --changes 20 --ad-users 20 --ad-changes 10
#
# syncrepl: a throw-away slapd loaded with N users from tests/tools/gen_users.py (slapadd while slapd is
# stopped: seconds instead of minutes of ldapadd), a one-node Kafka, the emulator seeded (at start, from
# tests/e2e/pipeline.py seed) with a recipient per user and no certificates: an empty tenant. Then
#   e2e_initial_sync_s                    collector + publisher started -> every recipient's certificates
#                                         equal the directory's (bench_e2e.py sync polls GET /state, 0.5 s)
#   e2e_syncrepl_latency_p50_ms / _p99_ms ldapmodify of a user's userCertificate -> the emulator journal's
#                                         change entry writing it, M changes at R/s in steady state
# dirsync: a Samba AD DC (tests/services/samba.sh; needs root) with K users (ldapadd: Samba adds ~50/s, so
# fewer users than slapd), a second collector (mode dirsync, poll_interval 1s) into the same topic and publisher:
#   e2e_dirsync_initial_sync_s, e2e_dirsync_latency_p50_ms / _p99_ms
# Clocks: t0 is time.time() just before ldapmodify starts; the write time is the journal entry's time, which
# the emulator takes from the same machine's clock: same machine, same clock, no alignment.
# Reference: entra_connect_default_cycle_s: 1800 (Entra Connect's default sync cycle: a change waits up to
# 30 min) and <name>_vs_entra_ratio = 1800 s / p99 (how many times sooner). Target: p99 < 2000 ms.
# The publisher runs with policy.enabled: false so "in sync" means exactly the directory's values.
# Environment: BENCH_DIR (default a new directory under /tmp, removed at the end), CS_CACHE_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../tests/services/lib.sh
. "$ROOT/tests/services/lib.sh"
BUILD=$(cd "${1:?usage: bench_e2e.sh BUILD_DIR [--users N] [--changes M] [--rate R] [--ad-users K] [--ad-changes L] [--no-dirsync]}" && pwd)
shift
USERS=10000 CHANGES=240 RATE=4 AD_USERS=200 AD_CHANGES=60 DIRSYNC=1
while [ $# -gt 0 ]; do
  case $1 in
    --users) USERS=${2:?--users needs a number}; shift ;;
    --changes) CHANGES=${2:?--changes needs a number}; shift ;;
    --rate) RATE=${2:?--rate needs a number}; shift ;;
    --ad-users) AD_USERS=${2:?--ad-users needs a number}; shift ;;
    --ad-changes) AD_CHANGES=${2:?--ad-changes needs a number}; shift ;;
    --no-dirsync) DIRSYNC=0 ;;
    *) cs_die "unknown option '$1' (see the header of $0)" ;;
  esac
  shift
done
for v in USERS CHANGES AD_USERS AD_CHANGES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || cs_die "--${v,,} must be a positive whole number, not '${!v}'"
done
COLLECTOR=$BUILD/collector/certsync-collector
PUBLISHER=$BUILD/publisher/certsync-publisher
[ -x "$COLLECTOR" ] && [ -x "$PUBLISHER" ] ||
  cs_die "no collector/publisher in $BUILD: ninja -C $BUILD certsync-collector certsync-publisher"
if [ "$DIRSYNC" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  cs_die "the DirSync part needs root (Samba binds 127.88.x.y:389); run as root or pass --no-dirsync"
fi
CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}
KEEP=${BENCH_DIR:+1}
W=${BENCH_DIR:-$(mktemp -d /tmp/bench-e2e.XXXXXX)}
mkdir -p "$W"
W=$(cd "$W" && pwd)
SVC=$ROOT/tests/services
PIPE=$ROOT/tests/e2e/pipeline.py
DRV=$HERE/bench_e2e.py
declare -A PIDS=()

cleanup() {
  local n
  set +e # one failed stop must not skip the others (errexit would end this function at the first)
  for n in "${!PIDS[@]}"; do cs_stop_pid "${PIDS[$n]}" 30 TERM || true; done
  [ -f "$W/o365/pid" ] && bash "$ROOT/tests/emulator/emulator.sh" stop "$W/o365" >/dev/null 2>&1
  [ -f "$W/kafka/pid" ] && "$SVC/kafka.sh" stop "$W/kafka" >/dev/null 2>&1
  [ -f "$W/slapd/pid" ] && "$SVC/slapd.sh" stop "$W/slapd" >/dev/null 2>&1
  [ -f "$W/samba/pid" ] && "$SVC/samba.sh" stop "$W/samba" >/dev/null 2>&1
  [ -n "$KEEP" ] || rm -rf "$W"
}
trap cleanup EXIT
ms_since() { echo $(($(cs_now_ms) - $1)); }
calc() { python3 -c 'import sys; print(eval(sys.argv[1]))' "$1"; }

# --- slapd with N users (slapadd: slapd stopped, then restarted on the same port)
t=$(cs_now_ms)
CS_SLAPD_LOGLEVEL=none "$SVC/slapd.sh" start "$W/slapd" >"$W/slapd.out" 2>&1 || { cat "$W/slapd.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$W/slapd/env"
python3 "$ROOT/tests/tools/gen_users.py" --count "$USERS" --seed 7 --out "$W/data" --flavor openldap \
  --base "$SLAPD_BASE" --ou bench --prefix b --no-base-entry --no-user-files --key-pool 4 \
  --key-cache "$CACHE/key-cache" >"$W/gen.out" 2>&1 || { cat "$W/gen.out" >&2; exit 1; }
"$SVC/slapd.sh" stop "$W/slapd" >/dev/null
/usr/sbin/slapadd -q -F "$W/slapd/slapd.d" -b "$SLAPD_BASE" -l "$W/data/users.ldif" >"$W/slapadd.out" 2>&1 ||
  { cat "$W/slapadd.out" >&2; exit 1; }
CS_SLAPD_LOGLEVEL=none "$SVC/slapd.sh" restart "$W/slapd" >/dev/null
echo "setup_slapd_users: $USERS (generated and loaded in $(ms_since "$t") ms)"

# --- Kafka, topics, emulator (a recipient per user, no certificates)
"$SVC/kafka.sh" start "$W/kafka" >"$W/kafka.out" 2>&1 || { cat "$W/kafka.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$W/kafka/env"
for spec in events:3:compact s.state:1:compact s.held:1:compact d.state:1:compact d.held:1:compact \
  pstate:3:compact results:1: dlq:1: retry:3:; do
  IFS=: read -r tp n c <<<"$spec"
  "$SVC/kafka.sh" topic "$W/kafka" "bench.$tp" --partitions "$n" ${c:+--compact} >/dev/null
done
python3 "$PIPE" seed --data "$W/data" --flavor openldap --dir-env "$W/slapd/env" --out "$W/seed.json" >/dev/null
bash "$ROOT/tests/emulator/emulator.sh" start "$W/o365" --seed "$W/seed.json" >"$W/o365.out" 2>&1 ||
  { cat "$W/o365.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$W/o365/env"
ADMIN=$O365_EMULATOR_ADMIN_URL

# collector_yaml ID URL BIND PWFILE BASE FILTER EXTRA...: a collector config into the shared topic.
collector_yaml() {
  local id=$1 url=$2 bind=$3 pw=$4 base=$5 filter=$6
  shift 6
  printf 'source: {id: bench-%s}\nldap:\n  url: "%s"\n  bind_dn: "%s"\n  password_file: "%s"\n' \
    "$id" "$url" "$bind" "$pw"
  printf '  base_dns: ["%s"]\n  filter: "%s"\n  timeout: 30s\n' "$base" "$filter"
  local l
  for l in "$@"; do printf '  %s\n' "$l"; done
  printf 'topics: {events: bench.events, checkpoint: bench.%s.state, held: bench.%s.held}\n' "$id" "$id"
  printf 'batch: {max_wait: 20ms}\nadmin: {listen: "127.0.0.1:0"}\nlog: {level: warn}\n'
  printf 'guard: {mass_removal_threshold: 10000000}\nkafka: {bootstrap.servers: "%s"}\n' "$KAFKA_BOOTSTRAP"
}
collector_yaml s "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "ou=bench,$SLAPD_BASE" \
  "(objectClass=inetOrgPerson)" "allow_plaintext_bind: true" "mode: syncrepl" >"$W/collector-s.yaml"
{
  cat <<EOF
publisher: {instance_id: bench}
topics: {events: bench.events, state: bench.pstate, results: bench.results, dlq: bench.dlq, retry: bench.retry}
policy: {enabled: false}
EOF
  cs_o365_yaml certificate
  cat <<EOF
batch: {max_wait: 20ms}
admin: {listen: "127.0.0.1:0"}
log: {level: warn}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP", group.id: bench, session.timeout.ms: 6000}
EOF
} >"$W/publisher.yaml"
"$COLLECTOR" --check-config --config "$W/collector-s.yaml" >/dev/null
"$PUBLISHER" --check-config --config "$W/publisher.yaml" >/dev/null

# --- initial sync: from the services' start to every recipient in sync
t0=$(date +%s.%N)
"$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher.log" 2>&1 &
PIDS[publisher]=$!
"$COLLECTOR" --config "$W/collector-s.yaml" >"$W/collector-s.log" 2>&1 &
PIDS[collector_s]=$!
sync_s=$(python3 "$DRV" sync --data "$W/data" --flavor openldap --dir-env "$W/slapd/env" --admin "$ADMIN" \
  --timeout $((600 + USERS / 10)) --t0 "$t0") || { tail -5 "$W/collector-s.log" "$W/publisher.log" >&2; exit 1; }
echo "e2e_initial_sync_users: $USERS"
echo "e2e_initial_sync_s: $sync_s"
echo "e2e_initial_sync_users_per_s: $(calc "round($USERS / $sync_s)")"

# --- syncrepl latency in steady state
python3 "$DRV" latency --data "$W/data" --flavor openldap --dir-env "$W/slapd/env" --admin "$ADMIN" \
  --changes "$CHANGES" --rate "$RATE" --name e2e_syncrepl_latency | tee "$W/lat-s.txt"
echo "e2e_syncrepl_change_rate_per_s: $RATE"
echo "entra_connect_default_cycle_s: 1800"
p99=$(sed -n 's/^e2e_syncrepl_latency_p99_ms: //p' "$W/lat-s.txt")
[ -z "$p99" ] || echo "e2e_syncrepl_vs_entra_ratio: $(calc "round(1800000 / max($p99, 1))")"

# --- DirSync at a 1 s poll interval against Samba AD
if [ "$DIRSYNC" = 1 ]; then
  t=$(cs_now_ms)
  "$SVC/samba.sh" start "$W/samba" --cache "$CACHE/samba-template" >"$W/samba.out" 2>&1 ||
    { cat "$W/samba.out" >&2; exit 1; }
  # shellcheck disable=SC1091
  . "$W/samba/env"
  python3 "$ROOT/tests/tools/gen_users.py" --count "$AD_USERS" --seed 9 --out "$W/ad" --flavor ad \
    --base "$SAMBA_BASE" --ou benchad --prefix ad --no-user-files --key-pool 4 \
    --key-cache "$CACHE/key-cache" >"$W/gen-ad.out" 2>&1 || { cat "$W/gen-ad.out" >&2; exit 1; }
  ldapadd -x -H "$SAMBA_URL" -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" -f "$W/ad/users.ldif" \
    >"$W/ldapadd-ad.out" 2>&1 || { tail -5 "$W/ldapadd-ad.out" >&2; exit 1; }
  python3 "$PIPE" seed --data "$W/ad" --flavor ad --dir-env "$W/samba/env" --post "$ADMIN" >/dev/null
  echo "setup_samba_users: $AD_USERS (loaded in $(ms_since "$t") ms)"
  collector_yaml d "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" "$SAMBA_PASSWORD_FILE" "$SAMBA_BASE" \
    "(&(objectClass=user)(sAMAccountName=ad*))" "mode: dirsync" "poll_interval: 1s" \
    "tls: {ca_file: \"$SAMBA_CA_FILE\"}" >"$W/collector-d.yaml"
  "$COLLECTOR" --check-config --config "$W/collector-d.yaml" >/dev/null
  t0=$(date +%s.%N)
  "$COLLECTOR" --config "$W/collector-d.yaml" >"$W/collector-d.log" 2>&1 &
  PIDS[collector_d]=$!
  sync_s=$(python3 "$DRV" sync --data "$W/ad" --flavor ad --dir-env "$W/samba/env" --admin "$ADMIN" \
    --timeout 300 --t0 "$t0") || { tail -5 "$W/collector-d.log" "$W/publisher.log" >&2; exit 1; }
  echo "e2e_dirsync_initial_sync_users: $AD_USERS"
  echo "e2e_dirsync_initial_sync_s: $sync_s"
  python3 "$DRV" latency --data "$W/ad" --flavor ad --dir-env "$W/samba/env" --admin "$ADMIN" \
    --changes "$AD_CHANGES" --rate "$RATE" --name e2e_dirsync_latency | tee "$W/lat-d.txt"
  echo "e2e_dirsync_poll_interval_ms: 1000"
  p99=$(sed -n 's/^e2e_dirsync_latency_p99_ms: //p' "$W/lat-d.txt")
  [ -z "$p99" ] || echo "e2e_dirsync_vs_entra_ratio: $(calc "round(1800000 / max($p99, 1))")"
else
  echo "e2e_dirsync_latency: not measured (--no-dirsync)"
fi
