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
#   snapshot_<N>_collector_cpu_seconds its user + system CPU time (the machine may be shared)
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
# And against a throw-away Samba AD DC (tests/services/samba.sh; needs root), DirSync polled every 1 s:
#   latency_dirsync_p50_ms / _p99_ms   the same, for a userCertificate replaced (two certificates taking
#                                      turns: DirSync versions follow the certificate attributes' metadata,
#                                      so a mail change is no new version) over DIRSYNC_SAMPLES changes.
#                                      Each change waits a random 0-1 s first, so changes fall at random
#                                      points of the poll cycle: expect p50 about half the interval plus a
#                                      commit, p99 about the interval plus a commit.
# Users are loaded offline with slapadd (slapd stopped for it): ldapadd takes minutes for 100,000.
# Prerequisites (Debian): kcat (apt-get install kcat; without it the kcat and latency lines say so), samba
# (already a test dependency), and for profiling the collector by hand linux-perf (`perf record -g
# certsync-collector --config ... --once`); neither kcat nor perf is needed by CI.
# Environment: LATENCY_SAMPLES (default 100), DIRSYNC_SAMPLES (default 50; 0 skips Samba), BENCH_DIR
# (default: a new directory under /tmp, removed), CS_CACHE_DIR (Samba template cache, default
# ~/.cache/certsync).
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
DS_SAMPLES=${DIRSYNC_SAMPLES:-50}
KEEP=${BENCH_DIR:+1}
W=${BENCH_DIR:-$(mktemp -d /tmp/bench-collector.XXXXXX)}
mkdir -p "$W"
KAFKA_SH=$ROOT/tests/services/kafka.sh
SLAPD_SH=$ROOT/tests/services/slapd.sh
SAMBA_SH=$ROOT/tests/services/samba.sh
ATTRS=(entryUUID entryCSN uid mail "userCertificate;binary" userSMIMECertificate userPrincipalName)

cleanup() {
  set +e # one failed stop must not skip the others (errexit would end this function at the first)
  [ -n "${col_pid:-}" ] && kill "$col_pid" 2>/dev/null
  "$SLAPD_SH" stop "$W/slapd" >/dev/null 2>&1 || true
  [ -f "$W/samba/pid" ] && "$SAMBA_SH" stop "$W/samba" >/dev/null 2>&1
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

# latency NAME TOPIC KEY_SUFFIX DN SAMPLES URL BIND_DN PASSWORD_FILE mail|CERT_A CERT_B: makes SAMPLES changes
# to DN one after another, each timed from the start of its ldapmodify until an event whose key ends in
# KEY_SUFFIX is readable read_committed from TOPIC; prints latency_NAME_* lines.
latency() {
  python3 - "$KAFKA_BOOTSTRAP" "$@" <<'PY'
import random, subprocess, sys, time, select
boot, name, topic, key, dn, samples, url, bind, pwf = sys.argv[1:10]
certs = sys.argv[10:12] if sys.argv[10] != "mail" else None
c = subprocess.Popen(["kcat", "-C", "-b", boot, "-t", topic, "-o", "end", "-u", "-q", "-f", "%k\n",
                      "-X", "isolation.level=read_committed", "-X", "fetch.wait.max.ms=5"], stdout=subprocess.PIPE, text=True, bufsize=1)
time.sleep(3)  # let the consumer get its partitions and the end offsets before the first change
lat = []
for i in range(int(samples)):
    if certs:
        # At a random point of the 1 s poll cycle: right after the previous event would always be ~1 s.
        time.sleep(random.uniform(0, 1.0))
        ldif = f"dn: {dn}\nchangetype: modify\nreplace: userCertificate\nuserCertificate:< file://{certs[i % 2]}\n"
    else:
        ldif = f"dn: {dn}\nchangetype: modify\nreplace: mail\nmail: lat{i}@example.test\n"
    t0 = time.monotonic()
    subprocess.run(["ldapmodify", "-x", "-H", url, "-D", bind, "-y", pwf], input=ldif, text=True,
                   check=True, stdout=subprocess.DEVNULL)
    while True:
        r, _, _ = select.select([c.stdout], [], [], 10)
        if not r:
            sys.exit(f"no event for change {i} within 10 s")
        if c.stdout.readline().strip().endswith(key):
            break
    lat.append((time.monotonic() - t0) * 1000)
c.kill()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"latency_{name}_samples: {len(lat)}")
print(f"latency_{name}_p50_ms: {q(0.50):.1f}")
print(f"latency_{name}_p99_ms: {q(0.99):.1f}")
print(f"latency_{name}_max_ms: {lat[-1]:.1f}")
PY
}

# await_log FILE REGEX SECONDS: until FILE has a line matching REGEX.
await_log() {
  local end=$((SECONDS + $3))
  until grep -qsE "$2" "$1"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}

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

# A fresh Kafka creates its transaction log on the first init_transactions (~1 s of "coordinator load in
# progress"): a one-off of a new cluster, not of a snapshot, so one throw-away transactional producer (the
# collector on an empty subtree) pays it before anything is timed.
"$KAFKA_SH" topic "$W/kafka" warm.events --partitions 1 --compact >/dev/null
"$KAFKA_SH" topic "$W/kafka" warm.state --partitions 1 --compact >/dev/null
"$KAFKA_SH" topic "$W/kafka" warm.held --partitions 1 --compact >/dev/null
cat >"$W/warm.yaml" <<YAML
source: {id: benchwarm}
ldap: {url: "$SLAPD_URL", bind_dn: "$SLAPD_BIND_DN", password_file: "$SLAPD_PASSWORD_FILE", base_dns: ["$SLAPD_BASE"], filter: "(uid=nobody-here)", allow_plaintext_bind: true}
topics: {events: warm.events, checkpoint: warm.state, held: warm.held}
admin: {listen: "127.0.0.1:0"}
log: {level: warn}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP"}
YAML
"$COLLECTOR" --config "$W/warm.yaml" --once >"$W/warm.log" 2>&1 || { tail -5 "$W/warm.log" >&2; exit 1; }

for n in "${COUNTS[@]}"; do
  ou=bench$n
  base="ou=$ou,$SLAPD_BASE"
  python3 "$ROOT/tests/tools/gen_users.py" --count "$n" --seed 7 --out "$W/data$n" --flavor openldap \
    --base "$SLAPD_BASE" --ou "$ou" --prefix "b$n" --no-base-entry --no-user-files --key-pool 4 >/dev/null
  # Offline load: slapadd adds entryUUID/entryCSN itself and -w updates the suffix's contextCSN, so
  # syncrepl cookies stay right. -q skips checks the generator already guarantees.
  "$SLAPD_SH" stop "$W/slapd" >/dev/null
  /usr/sbin/slapadd -q -w -F "$W/slapd/slapd.d" -b "$SLAPD_BASE" -l "$W/data$n/users.ldif" >"$W/slapadd$n.log" 2>&1 ||
    { tail -5 "$W/slapadd$n.log" >&2; exit 1; }
  CS_SLAPD_LOGLEVEL=none "$SLAPD_SH" restart "$W/slapd" >"$W/slapd.out" 2>&1 || { cat "$W/slapd.out" >&2; exit 1; }
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
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$W/time$n.txt")
  echo "snapshot_${n}_collector_seconds: $t_col"
  # CPU (user + system) of the collector: with other work on the machine, wall time waits for CPU too.
  echo "snapshot_${n}_collector_cpu_seconds: $cpu"
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
  await_log "$W/col-lat.log" 'resuming from the checkpoint' 60 || { echo "the collector did not resume" >&2; exit 1; }
  dn=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"][0]["dn"])' "$W/data$n/manifest.json")
  uuid=$(ldapsearch "${auth[@]}" -LLL -b "$dn" -s base entryUUID | sed -n 's/^entryUUID: //p')
  latency syncrepl "b$n.events" "$uuid" "$dn" "$SAMPLES" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" \
    mail || exit 1
  kill -TERM "$col_pid"
  wait "$col_pid" || true
  col_pid=
fi

# --- latency: ldapmodify -> committed event (DirSync, 1 s poll, Samba AD) --------------------------------
if [ $have_kcat = 1 ] && [ "$DS_SAMPLES" -gt 0 ]; then
  "$SAMBA_SH" start "$W/samba" --cache "${CS_CACHE_DIR:-$HOME/.cache/certsync}/samba-template" >"$W/samba.out" 2>&1 ||
    { cat "$W/samba.out" >&2; exit 1; }
  # shellcheck disable=SC1091
  . "$W/samba/env"
  export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
  sauth=(-x -H "$SAMBA_LDAPS_URL" -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE")
  python3 "$ROOT/tests/tools/gen_users.py" --count 4 --seed 9 --out "$W/ds" --flavor ad --base "$SAMBA_BASE" \
    --ou benchds --prefix benchds >/dev/null
  ldapadd "${sauth[@]}" -f "$W/ds/users.ldif" >/dev/null
  read -r dn cert_a cert_b < <(python3 - "$W/ds/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
# Two certificates the user does not hold yet, so every replace is a real change.
certs = [v["cert"] for u in m["users"][1:] for v in u["values"] if v["cert"].endswith(".pem")]
print(m["users"][0]["dn"], certs[0], certs[1])
PY
  )
  openssl x509 -in "$W/ds/$cert_a" -outform DER -out "$W/ds/a.der"
  openssl x509 -in "$W/ds/$cert_b" -outform DER -out "$W/ds/b.der"
  for t in events state held; do
    "$KAFKA_SH" topic "$W/kafka" "ds.$t" --partitions 1 --compact >/dev/null
  done
  cat >"$W/ds.yaml" <<YAML
source: {id: benchds}
ldap:
  url: "$SAMBA_LDAPS_URL"
  bind_dn: "$SAMBA_BIND_DN"
  password_file: "$SAMBA_PASSWORD_FILE"
  base_dns: ["OU=benchds,$SAMBA_BASE"]
  filter: "(&(objectClass=user)(sAMAccountName=benchds*))"
  poll_interval: 1s
  tls: {ca_file: "$SAMBA_CA_FILE"}
topics: {events: ds.events, checkpoint: ds.state, held: ds.held}
admin: {listen: "127.0.0.1:0"}
log: {level: info}
batch: {max_wait: 20ms}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP"}
YAML
  "$COLLECTOR" --config "$W/ds.yaml" >"$W/col-ds.log" 2>&1 &
  col_pid=$!
  await_log "$W/col-ds.log" 'full pass \(snapshot\) committed' 120 ||
    { tail -5 "$W/col-ds.log" >&2; echo "the collector did not snapshot Samba" >&2; exit 1; }
  grep -q '"mode":"dirsync"' "$W/col-ds.log" || { echo "the collector did not pick DirSync" >&2; exit 1; }
  # Its events are keyed source/objectGUID (the GUID as text).
  guid=$(ldapsearch "${sauth[@]}" -LLL -b "$dn" -s base objectGUID | sed -n 's/^objectGUID:: //p' |
    python3 -c 'import base64, sys, uuid; print(uuid.UUID(bytes_le=base64.b64decode(sys.stdin.read())))')
  latency dirsync ds.events "$guid" "$dn" "$DS_SAMPLES" "$SAMBA_LDAPS_URL" "$SAMBA_BIND_DN" \
    "$SAMBA_PASSWORD_FILE" "$W/ds/a.der" "$W/ds/b.der" || exit 1
  kill -TERM "$col_pid"
  wait "$col_pid" || true
  col_pid=
else
  echo "latency_dirsync: not measured (needs kcat and DIRSYNC_SAMPLES > 0)"
fi
