#!/usr/bin/env bash
# bench_collector_snapshot: the collector's first-start snapshot from slapd into Kafka, against two
# baselines measured in the same run. A benchmark, not a test: it prints `name: value` lines and fails only
# when something could not be measured.
#
#   bench/bench_collector_snapshot.sh BUILD_DIR [COUNT...]      (default COUNT: 10000)
#   e.g. bench/bench_collector_snapshot.sh build-rel 10000 100000
#
# Per COUNT (users from tests/tools/gen_users.py --no-user-files --key-pool 4, in their own OU of a
# throw-away slapd; a throw-away one-node Kafka):
#   snapshot_<N>_users_per_second      N / wall time of `certsync-collector --once` (connect, fence, load the
#                                      empty checkpoint, paged snapshot, events + checkpoint committed, exit)
#   snapshot_<N>_ldapsearch_seconds    paged (RFC 2696, 500/page) ldapsearch of the same entries and
#                                      attributes into /dev/null
#   snapshot_<N>_ratio_vs_ldapsearch   ldapsearch time / collector time (target >= 0.5)
#   snapshot_<N>_kcat_seconds          the same ldapsearch piped into `kcat -P` (one message per entry,
#                                      no parsing, no transactions)
#   snapshot_<N>_ratio_vs_kcat         kcat pipeline time / collector time (target >= 1.0)
#   snapshot_<N>_peak_rss_mb           the collector's maximum RSS (/usr/bin/time -v) (target < 64 at 100000)
# Then, on the last COUNT's data with the collector running (syncrepl refreshAndPersist):
#   latency_syncrepl_p50_ms / _p99_ms  from the start of an ldapmodify (mail of one user) to its event being
#                                      readable read_committed (kcat consumer), over LATENCY_SAMPLES changes
#                                      made one after another (target p99 < 250)
# kcat comes from the Debian package `kcat` (apt-get install kcat); without it the kcat lines say so.
# Environment: LATENCY_SAMPLES (default 100), BENCH_DIR (default: a new directory under /tmp, removed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$(cd "${1:?usage: bench_collector_snapshot.sh BUILD_DIR [COUNT...]}" && pwd)
shift
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(10000)
COLLECTOR=$BUILD/collector/certsync-collector
[ -x "$COLLECTOR" ] || { echo "no $COLLECTOR: build the project in $BUILD first" >&2; exit 2; }
SAMPLES=${LATENCY_SAMPLES:-100}
KEEP=${BENCH_DIR:+1}
W=${BENCH_DIR:-$(mktemp -d /tmp/bench-collector.XXXXXX)}
mkdir -p "$W"
KAFKA_SH=$ROOT/tests/services/kafka.sh
SLAPD_SH=$ROOT/tests/services/slapd.sh
ATTRS=(entryUUID entryCSN uid mail "userCertificate;binary" userSMIMECertificate userPrincipalName)

cleanup() {
  "$SLAPD_SH" stop "$W/slapd" >/dev/null 2>&1 || true
  "$KAFKA_SH" stop "$W/kafka" >/dev/null 2>&1 || true
  [ -n "$KEEP" ] || rm -rf "$W"
}
trap cleanup EXIT

# Seconds (with fraction) that a command takes.
elapsed() {
  local t0 t1
  t0=$(date +%s%3N)
  "$@"
  t1=$(date +%s%3N)
  printf '%d.%03d\n' $(((t1 - t0) / 1000)) $(((t1 - t0) % 1000))
}
# calc EXPR: a float expression of numbers (python3, so no bc is needed).
calc() { python3 -c 'import sys; print(eval(sys.argv[1]))' "$1"; }
ratio() { calc "round($1 / $2, 3)"; }

CS_SLAPD_LOGLEVEL=none "$SLAPD_SH" start "$W/slapd" >"$W/slapd.out" 2>&1 || { cat "$W/slapd.out" >&2; exit 1; }
"$KAFKA_SH" start "$W/kafka" >"$W/kafka.out" 2>&1 || { cat "$W/kafka.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$W/slapd/env"
# shellcheck disable=SC1091
. "$W/kafka/env"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
echo "slapd: $SLAPD_URL"
echo "kafka: $KAFKA_BOOTSTRAP"
have_kcat=0
command -v kcat >/dev/null && have_kcat=1

search() { # BASE: the paged search both baselines run
  ldapsearch "${auth[@]}" -LLL -o ldif-wrap=no -E pr=500/noprompt -b "$1" "(objectClass=inetOrgPerson)" "${ATTRS[@]}"
}
to_null() { search "$1" >/dev/null; }
to_kcat() { search "$1" | kcat -P -b "$KAFKA_BOOTSTRAP" -t "$2" -D '\n\n' -X linger.ms=50; }

for n in "${COUNTS[@]}"; do
  ou=bench$n
  base="ou=$ou,$SLAPD_BASE"
  python3 "$ROOT/tests/tools/gen_users.py" --count "$n" --seed 7 --out "$W/data$n" --flavor openldap \
    --base "$SLAPD_BASE" --ou "$ou" --prefix "b$n" --no-base-entry --no-user-files --key-pool 4 >/dev/null
  ldapadd "${auth[@]}" -f "$W/data$n/users.ldif" >/dev/null
  certs=$(python3 -c 'import json,sys; print(sum(len(u["values"]) for u in json.load(open(sys.argv[1]))["users"]))' \
    "$W/data$n/manifest.json")
  echo "snapshot_${n}_users: $n"
  echo "snapshot_${n}_certificate_values: $certs"
  "$KAFKA_SH" topic "$W/kafka" "b$n.events" --partitions 3 --compact >/dev/null
  "$KAFKA_SH" topic "$W/kafka" "b$n.state" --partitions 1 --compact >/dev/null
  "$KAFKA_SH" topic "$W/kafka" "b$n.held" --partitions 1 --compact >/dev/null
  "$KAFKA_SH" topic "$W/kafka" "b$n.kcat" --partitions 3 >/dev/null
  cat >"$W/c$n.yaml" <<YAML
source: {id: bench$n}
ldap:
  url: "$SLAPD_URL"
  bind_dn: "$SLAPD_BIND_DN"
  password_file: "$SLAPD_PASSWORD_FILE"
  base_dns: ["$base"]
  filter: "(objectClass=inetOrgPerson)"
  allow_plaintext_bind: true
  page_size: 500
topics: {events: b$n.events, checkpoint: b$n.state, held: b$n.held}
admin: {listen: "127.0.0.1:0"}
guard: {mass_removal_threshold: 10000000}
log: {level: warn}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP"}
YAML
  to_null "$base" # warm slapd's cache so neither side pays for the first read
  t_ls=$(elapsed to_null "$base")
  /usr/bin/time -v -o "$W/time$n.txt" "$COLLECTOR" --config "$W/c$n.yaml" --once >"$W/col$n.log" 2>&1 || {
    tail -5 "$W/col$n.log" >&2
    exit 1
  }
  t_col=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$W/time$n.txt")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/time$n.txt")
  echo "snapshot_${n}_collector_seconds: $t_col"
  echo "snapshot_${n}_users_per_second: $(calc "int($n / $t_col)")"
  echo "snapshot_${n}_ldapsearch_seconds: $t_ls"
  echo "snapshot_${n}_ratio_vs_ldapsearch: $(ratio "$t_ls" "$t_col")"
  if [ $have_kcat = 1 ]; then
    t_kc=$(elapsed to_kcat "$base" "b$n.kcat")
    echo "snapshot_${n}_kcat_seconds: $t_kc"
    # One message per entry (kcat -D '\n\n'): checked, so the baseline produced what the collector did.
    echo "snapshot_${n}_kcat_messages: $(kcat -C -b "$KAFKA_BOOTSTRAP" -t "b$n.kcat" -e -q -f '.\n' | wc -l)"
    echo "snapshot_${n}_ratio_vs_kcat: $(ratio "$t_kc" "$t_col")"
  else
    echo "snapshot_${n}_ratio_vs_kcat: not measured (kcat missing: apt-get install kcat)"
  fi
  echo "snapshot_${n}_peak_rss_mb: $(calc "round($rss_kb / 1024, 1)")"
done

# --- latency: ldapmodify -> committed event (syncrepl) ---------------------------------------------------
n=${COUNTS[-1]}
if [ $have_kcat = 1 ] && [ "$SAMPLES" -gt 0 ]; then
  sed -i 's/^log: .*/log: {level: info}/; s/^ldap:/ldap:/' "$W/c$n.yaml"
  printf 'batch: {max_wait: 20ms}\n' >>"$W/c$n.yaml"
  "$COLLECTOR" --config "$W/c$n.yaml" >"$W/col-lat.log" 2>&1 &
  col_pid=$!
  end=$((SECONDS + 60))
  until grep -q 'resuming from the checkpoint' "$W/col-lat.log"; do
    [ $SECONDS -lt $end ] || { kill "$col_pid"; echo "the collector did not resume" >&2; exit 1; }
    sleep 0.1
  done
  dn=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"][0]["dn"])' "$W/data$n/manifest.json")
  uuid=$(ldapsearch "${auth[@]}" -LLL -b "$dn" -s base entryUUID | sed -n 's/^entryUUID: //p')
  python3 - "$KAFKA_BOOTSTRAP" "b$n.events" "$uuid" "$dn" "$SAMPLES" "$SLAPD_URL" "$SLAPD_BIND_DN" \
    "$SLAPD_PASSWORD_FILE" <<'PY' || { kill "$col_pid"; exit 1; }
import subprocess, sys, time, select
boot, topic, uuid, dn, samples, url, bind, pwf = sys.argv[1:9]
c = subprocess.Popen(["kcat", "-C", "-b", boot, "-t", topic, "-o", "end", "-u", "-q", "-f", "%k\n",
                      "-X", "isolation.level=read_committed", "-X", "fetch.wait.max.ms=5"], stdout=subprocess.PIPE, text=True, bufsize=1)
time.sleep(3)  # let the consumer get its partitions and the end offsets before the first change
lat = []
for i in range(int(samples)):
    ldif = f"dn: {dn}\nchangetype: modify\nreplace: mail\nmail: lat{i}@example.test\n"
    t0 = time.monotonic()
    subprocess.run(["ldapmodify", "-x", "-H", url, "-D", bind, "-y", pwf], input=ldif, text=True,
                   check=True, stdout=subprocess.DEVNULL)
    while True:
        r, _, _ = select.select([c.stdout], [], [], 10)
        if not r:
            sys.exit(f"no event for change {i} within 10 s")
        if c.stdout.readline().strip().endswith(uuid):
            break
    lat.append((time.monotonic() - t0) * 1000)
c.kill()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"latency_syncrepl_samples: {len(lat)}")
print(f"latency_syncrepl_p50_ms: {q(0.50):.1f}")
print(f"latency_syncrepl_p99_ms: {q(0.99):.1f}")
print(f"latency_syncrepl_max_ms: {lat[-1]:.1f}")
PY
  kill -TERM "$col_pid"
  wait "$col_pid" || true
fi
echo "latency_dirsync: not measured by this script (needs Samba AD)"
