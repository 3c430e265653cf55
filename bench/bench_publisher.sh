#!/usr/bin/env bash
# bench_publisher: N recipients' change events through certsync-publisher into the Office 365 emulator,
# against the same HTTP requests sent by `curl --parallel` in the same run (issue 5). A benchmark, not a
# test: it prints `name: value` lines (and `# ...` comment lines) and fails only when something could not
# be measured.
#
#   bench/bench_publisher.sh BUILD_DIR [--recipients N] [--inflight K] [--budget B] [--window W]
#   defaults: N=10000, K=8 (the publisher's http.max_inflight default), throttling model: W=10 s windows on
#             the Exchange and Graph APIs, each with a budget B of 3/4 of the requests per W that API got from
#             the unthrottled publisher (so the model binds; a fixed B above the publisher's own rate would
#             measure nothing)
#   quick run: bench/bench_publisher.sh build-rel --recipients 300 --budget 60 --window 2
#
# Setup: a throw-away one-node Kafka (tests/services/kafka.sh) and the emulator (tests/emulator/emulator.sh)
# started with a seed of N writable mailboxes bench<i>@<domain> (onPremisesImmutableId = base64 of the
# objectGUID bench_pub_events gives user i), so /reset returns to exactly these recipients. The events are
# produced by bench/bench_pub_events (cs_event_encode, the same encoder the collector uses): N upserts of
# one EC certificate (userCertificate DER + userSMIMECertificate PKCS#7), keys bench/user<i>, 3 partitions.
# The publisher runs with policy.enabled: false and its default batching; "done" is every recipient's
# certificates written (a `change` entry for both attributes of each in the emulator journal; polled).
#   publisher_recipients_per_s      N / (last write's journal time - first Graph/Exchange request's journal
#                                   time): the publisher's work, not its start-up (token fetch) and Kafka
#                                   group join
#   publisher_wall_s                from the publisher's start to the last write (start-up included)
#   publisher_requests_per_recipient every API request in the journal (token, Graph, Exchange) / N
#   curl_parallel_recipients_per_s  after POST /reset: the publisher's requests, taken from the journal
#                                   (method, endpoint, cmdlet, identity; the journal keeps no bodies, so each
#                                   body is rebuilt the way pub_exchange/pub_graph build it, with the same
#                                   certificate values and headers) plus one token per API fetched with
#                                   curl, sent with `curl --parallel --parallel-max K -K CONFIG`; N / curl's
#                                   wall time, after checking the tenant ends in the same state
#   publisher_vs_curl_ratio         publisher_recipients_per_s / curl_parallel_recipients_per_s (target >= 0.8)
# Then, after POST /reset and PUT /throttle {budget B, window W, apis [exchange, graph]}, the publisher again
# from a fresh consumer group:
#   publisher_throttled_recipients_per_s  N / (last write - first request)
#   publisher_throttled_allowed_recipients_per_s  (B / W) / (API requests per recipient, from the first run)
#   publisher_throttled_rate_share  achieved / allowed (target >= 0.9)
#   publisher_429_count             429 answers in the journal
# The emulator is one Python process: when curl's rate is close to the emulator's own ceiling, the ratio says
# more about the emulator than the publisher, and a `#` line says so (emulator CPU ~100% of one core).
# Scale: the emulator's lookups use indexes (O(matches), see tests/emulator/README.md "Scale"), so its ceiling
# no longer falls with N: the default run (10,000 recipients) takes ~5 minutes on 2 shared cores (2026-11-28:
# publisher ~157/s, curl ~254/s with the emulator at ~0.9 of a core, throttled phase ~114/s).
# Environment: BENCH_DIR (default a new directory under /tmp, removed at the end).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../tests/services/lib.sh
. "$ROOT/tests/services/lib.sh"
BUILD=$(cd "${1:?usage: bench_publisher.sh BUILD_DIR [--recipients N] [--inflight K] [--budget B] [--window W]}" && pwd)
shift
N=10000 INFLIGHT=8 BUDGET="" WINDOW=10
while [ $# -gt 0 ]; do
  case $1 in
    --recipients) N=${2:?--recipients needs a number}; shift ;;
    --inflight) INFLIGHT=${2:?--inflight needs a number}; shift ;;
    --budget) BUDGET=${2:?--budget needs a number}; shift ;;
    --window) WINDOW=${2:?--window needs a number}; shift ;;
    *) cs_die "unknown option '$1' (see the header of $0)" ;;
  esac
  shift
done
for v in N INFLIGHT WINDOW; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || cs_die "$v must be a positive whole number, not '${!v}'"
done
[ -z "$BUDGET" ] || [[ $BUDGET =~ ^[1-9][0-9]*$ ]] || cs_die "--budget must be a positive whole number, not '$BUDGET'"
[ "$INFLIGHT" -le 64 ] || cs_die "--inflight $INFLIGHT: the publisher's http.max_inflight allows 1..64"
PUBLISHER=$BUILD/publisher/certsync-publisher
EVENTS=$BUILD/bench/bench_pub_events
[ -x "$PUBLISHER" ] && [ -x "$EVENTS" ] ||
  cs_die "no publisher/bench tool in $BUILD: ninja -C $BUILD certsync-publisher bench_pub_events"
command -v curl >/dev/null || cs_die "curl is needed (apt-get install curl)"
KEEP=${BENCH_DIR:+1}
W=${BENCH_DIR:-$(mktemp -d /tmp/bench-publisher.XXXXXX)}
mkdir -p "$W"
W=$(cd "$W" && pwd)
SVC=$ROOT/tests/services
EMU=$ROOT/tests/emulator/emulator.sh
DRV=$HERE/bench_publisher.py
PUB_PID=""

cleanup() {
  set +e # one failed stop must not skip the others (errexit would end this function at the first)
  [ -z "$PUB_PID" ] || cs_stop_pid "$PUB_PID" 30 TERM || true
  [ -f "$W/o365/pid" ] && bash "$EMU" stop "$W/o365" >/dev/null 2>&1
  [ -f "$W/kafka/pid" ] && "$SVC/kafka.sh" stop "$W/kafka" >/dev/null 2>&1
  [ -n "$KEEP" ] || rm -rf "$W"
}
trap cleanup EXIT

# --- one certificate for every recipient (policy is off: its address need not match)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/cert.key" \
  -subj /CN=bench -days 365 -out "$W/cert.pem" 2>/dev/null
openssl x509 -in "$W/cert.pem" -outform DER -out "$W/cert.der"
openssl crl2pkcs7 -nocrl -certfile "$W/cert.pem" -outform DER -out "$W/cert.p7"

# --- Kafka, topics, emulator seeded with N recipients
"$SVC/kafka.sh" start "$W/kafka" >"$W/kafka.out" 2>&1 || { cat "$W/kafka.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$W/kafka/env"
# the publisher's own topics per run (plain, throttled): its applied state restored from a previous run's
# would skip every event as already applied
for spec in events:3:compact plain.pstate:3:compact plain.results:1: plain.dlq:1: plain.retry:3: \
  throttled.pstate:3:compact throttled.results:1: throttled.dlq:1: throttled.retry:3:; do
  IFS=: read -r tp n c <<<"$spec"
  "$SVC/kafka.sh" topic "$W/kafka" "bench.$tp" --partitions "$n" ${c:+--compact} >/dev/null
done
python3 "$DRV" seed --count "$N" --fixture "$ROOT/tests/emulator/fixtures/tenant.json" --out "$W/seed.json"
bash "$EMU" start "$W/o365" --seed "$W/seed.json" >"$W/o365.out" 2>&1 || { cat "$W/o365.out" >&2; exit 1; }
# shellcheck disable=SC1091
. "$W/o365/env"
ADMIN=$O365_EMULATOR_ADMIN_URL
t=$(cs_now_ms)
"$EVENTS" "$KAFKA_BOOTSTRAP" bench.events "$N" "$O365_TENANT_DOMAIN" "$W/cert.der" "$W/cert.p7"
echo "setup_events_produced: $N (in $(($(cs_now_ms) - t)) ms)"

# publisher_yaml GROUP: the publisher's config, a fresh consumer group and instance per run.
publisher_yaml() {
  cat <<EOF
publisher: {instance_id: bench-$1}
topics: {events: bench.events, state: bench.$1.pstate, results: bench.$1.results, dlq: bench.$1.dlq, retry: bench.$1.retry}
policy: {enabled: false}
EOF
  cs_o365_yaml secret
  cat <<EOF
resolve: {order: [immutable_id, upn]}
http: {max_inflight: $INFLIGHT}
admin: {listen: "127.0.0.1:0"}
log: {level: warn}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP", group.id: bench-$1, session.timeout.ms: 6000}
EOF
}

# run_publisher NAME: starts the publisher on a fresh group, waits for every recipient to be written
# (bench_publisher.py await prints `key: value` lines to NAME.txt), stops it.
run_publisher() {
  publisher_yaml "$1" >"$W/$1.yaml"
  "$PUBLISHER" --check-config --config "$W/$1.yaml" >/dev/null
  local t0
  t0=$(date +%s.%N)
  "$PUBLISHER" --config "$W/$1.yaml" >"$W/$1.log" 2>&1 &
  PUB_PID=$!
  python3 "$DRV" await --admin "$ADMIN" --count "$N" --t0 "$t0" --pid "$PUB_PID" --emu-pid "$O365_EMULATOR_PID" \
    --timeout $((120 + N / 5)) --journal-out "$W/$1.journal.json" >"$W/$1.txt" ||
    { tail -20 "$W/$1.log" >&2; exit 1; }
  cs_stop_pid "$PUB_PID" 30 TERM || true
  PUB_PID=""
}
get() { sed -n "s/^$2: //p" "$W/$1.txt"; }
calc() { python3 -c 'import sys; print(eval(sys.argv[1]))' "$1"; }

# --- 1: the publisher without throttling
curl -fsS -X POST "$ADMIN/reset" >/dev/null
run_publisher plain
pub_rate=$(get plain rate)
echo "recipients: $N"
echo "http_max_inflight: $INFLIGHT"
echo "publisher_recipients_per_s: $pub_rate"
echo "publisher_wall_s: $(get plain wall_s)"
echo "publisher_requests_per_recipient: $(get plain requests_per_recipient)"
echo "publisher_emulator_cpu_share: $(get plain emu_cpu_share)"

# --- 2: the same requests with curl --parallel, onto the reset tenant
curl -fsS -X POST "$ADMIN/reset" >/dev/null
python3 "$DRV" curlcfg --journal "$W/plain.journal.json" --cert-der "$W/cert.der" --cert-p7 "$W/cert.p7" \
  --token-url "$O365_TOKEN_URL" --client-id "$O365_CLIENT_ID" --secret-file "$O365_CLIENT_SECRET_FILE" \
  --ca "$O365_EMULATOR_CA_FILE" --base "$O365_EMULATOR_URL" --tenant "$O365_TENANT_ID" \
  --domain "$O365_TENANT_DOMAIN" --out "$W/curl.cfg" >"$W/curlcfg.txt"
python3 "$DRV" timecurl --config "$W/curl.cfg" --parallel-max "$INFLIGHT" --emu-pid "$O365_EMULATOR_PID" \
  --admin "$ADMIN" --count "$N" >"$W/curl.txt" || { cat "$W/curl.txt" >&2; exit 1; }
curl_rate=$(get curl rate)
echo "curl_parallel_requests: $(get curlcfg requests)"
echo "curl_parallel_recipients_per_s: $curl_rate"
echo "curl_parallel_emulator_cpu_share: $(get curl emu_cpu_share)"
echo "publisher_vs_curl_ratio: $(calc "round($pub_rate / $curl_rate, 3)")"
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.85 else 1)' "$(get curl emu_cpu_share)"; then
  echo "# the emulator (one Python process) used $(get curl emu_cpu_share) of a core under curl: curl measures" \
    "the emulator's ceiling, so the ratio compares the publisher with that ceiling"
fi

# --- 3: the publisher with the throttling model on
per_rcpt=$(get plain api_requests_per_recipient)
# default budget: 3/4 of what the publisher used unthrottled, so the model binds rather than idles
[ -n "$BUDGET" ] || BUDGET=$(calc "max(1, int(0.75 * $pub_rate * $per_rcpt * $WINDOW))")
curl -fsS -X POST "$ADMIN/reset" >/dev/null
curl -fsS -X PUT -H 'Content-Type: application/json' \
  -d "{\"budget\": $BUDGET, \"window_s\": $WINDOW, \"apis\": [\"exchange\", \"graph\"]}" "$ADMIN/throttle" >/dev/null
run_publisher throttled
allowed=$(calc "round($BUDGET / $WINDOW / $per_rcpt, 2)")
thr_rate=$(get throttled rate)
echo "throttle_budget: $BUDGET requests per ${WINDOW} s per API (exchange, graph)"
echo "publisher_throttled_recipients_per_s: $thr_rate"
echo "publisher_throttled_allowed_recipients_per_s: $allowed"
echo "publisher_throttled_rate_share: $(calc "round($thr_rate / $allowed, 3)")"
echo "publisher_429_count: $(get throttled status_429)"
