#!/usr/bin/env bash
# valgrind-smoke: both services under valgrind (memcheck), a short real run each; any leak of our own (definite
# or indirect) or memory error fails (issue 6, "a valgrind smoke run with no leaks"):
#   1. --version, --help and --check-config of certsync-collector and certsync-publisher;
#   2. certsync-collector --once against slapd and Kafka: snapshot of 3 generated users, commit, exit 0;
#   3. certsync-publisher against Kafka and the Office 365 emulator until it has applied the 3 events, then
#      SIGTERM: orderly exit 0.
# Suppressions (tests/tools/valgrind.supp) cover only one-time allocations of third-party libraries, each with
# the reason. ctest sets what tests/e2e/e2e_smime.sh gets (CS_ENV_FILE, CS_KAFKA_ENV, CS_KAFKA_SH, CS_KAFKA_DIR,
# O365_EMULATOR_ENV, COLLECTOR, PUBLISHER, CS_WORK_DIR). Every wait is a bounded poll of an observable state.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/it_lib.sh
. "$HERE/../integration/it_lib.sh"
it_init
COLLECTOR=${COLLECTOR:?COLLECTOR is not set; run through ctest}
PUBLISHER=${PUBLISHER:?PUBLISHER is not set; run through ctest}
# shellcheck disable=SC1090
. "${CS_KAFKA_ENV:?CS_KAFKA_ENV is not set}"
# shellcheck disable=SC1090
. "${O365_EMULATOR_ENV:?O365_EMULATOR_ENV is not set}"
PIPE=$HERE/../e2e/pipeline.py
command -v valgrind >/dev/null || it_fail "valgrind is not installed (scripts/install-deps.sh installs it)"
started=$SECONDS

VG=(valgrind --quiet --leak-check=full "--errors-for-leak-kinds=definite,indirect" --error-exitcode=99
  "--show-leak-kinds=definite,indirect" --num-callers=30 --suppressions="$HERE/valgrind.supp")
# vg_check NAME RC: fails when valgrind reported errors (exit 99), showing its report.
vg_check() {
  if [ "$2" -eq 99 ]; then
    cat "$W/$1.vg" >&2
    it_fail "valgrind found errors or leaks in '$1' (report above, also in $W/$1.vg)"
  fi
}
# vg_run NAME EXPECTED_RC PROGRAM ARGS...: runs PROGRAM under valgrind in the foreground.
vg_run() {
  local name=$1 want=$2 rc=0
  shift 2
  "${VG[@]}" --log-file="$W/$name.vg" "$@" >"$W/$name.out" 2>&1 || rc=$?
  vg_check "$name" "$rc"
  [ "$rc" -eq "$want" ] || { tail -20 "$W/$name.out" >&2; it_fail "'$name' exited $rc, expected $want"; }
}

declare -A PIDS=()
cleanup() {
  local n
  for n in "${!PIDS[@]}"; do cs_stop_pid "${PIDS[$n]}" 20 TERM || true; done
}
trap cleanup EXIT

tag=vg$RANDOM
OU="ou=$tag,$SLAPD_BASE"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
"$TOOLS/gen_users.py" --count 3 --seed 7 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" \
  --prefix "$tag" --no-base-entry >/dev/null 2>&1 || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
for spec in events:1:compact state:1:compact held:1:compact pstate:1:compact results:1: dlq:1: retry:1:; do
  IFS=: read -r t n c <<<"$spec"
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$tag.$t" --partitions "$n" ${c:+--compact} >/dev/null || it_fail "topic $tag.$t"
done
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/reset" >/dev/null || it_fail "emulator reset"
python3 "$PIPE" seed --data "$W/data" --flavor openldap --dir-env "$CS_ENV_FILE" --post "$O365_EMULATOR_ADMIN_URL" \
  >/dev/null || it_fail "seeding the emulator"

it_slapd_collector_yaml "$tag" "$OU" 20s "topics: {events: $tag.events, checkpoint: $tag.state, held: $tag.held}" >"$W/collector.yaml"
pport=$(cs_free_port)
it_publisher_yaml "$tag" "$pport" 100ms >"$W/publisher.yaml"

# --- 1. the short commands
for svc in collector publisher; do
  bin=$COLLECTOR
  [ "$svc" = publisher ] && bin=$PUBLISHER
  vg_run "$svc-version" 0 "$bin" --version
  vg_run "$svc-help" 0 "$bin" --help
  vg_run "$svc-check-config" 0 "$bin" --check-config --config "$W/$svc.yaml"
done
it_ok "--version, --help, --check-config of both services: no leak, no error ($((SECONDS - started)) s so far)"

# --- 2. one collector pass
vg_run collector-once 0 "$COLLECTOR" --once --config "$W/collector.yaml"
grep -q 'committed' "$W/collector-once.out" || { tail -20 "$W/collector-once.out" >&2; it_fail "collector --once committed nothing"; }
it_ok "collector --once against slapd and Kafka: no leak, no error ($((SECONDS - started)) s so far)"

# --- 3. the publisher applies the 3 events, then SIGTERM
POLICY=off
if grep -Eq '^[a-z_]*polic[a-z_]*\.' <<<"$("$PUBLISHER" --help-config)"; then POLICY=on; fi
"${VG[@]}" --log-file="$W/publisher-run.vg" "$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher-run.out" 2>&1 &
PIDS[publisher]=$!
python3 "$PIPE" status --data "$W/data" --flavor openldap --dir-env "$CS_ENV_FILE" --admin "$O365_EMULATOR_ADMIN_URL" \
  --policy "$POLICY" --wait 60 --metrics "publisher=$pport" --min-events 3 >"$W/table.txt" 2>"$W/progress.txt" || {
  cat "$W/table.txt" "$W/progress.txt" >&2
  tail -20 "$W/publisher-run.out" >&2
  it_fail "the publisher under valgrind did not apply the 3 events within 60 s"
}
kill -TERM "${PIDS[publisher]}"
rc=0
end=$((SECONDS + 30))
while cs_pid_alive "${PIDS[publisher]}" && [ $SECONDS -lt $end ]; do sleep 0.2; done
cs_pid_alive "${PIDS[publisher]}" && it_fail "the publisher under valgrind did not exit within 30 s of SIGTERM"
wait "${PIDS[publisher]}" || rc=$?
unset 'PIDS[publisher]'
vg_check publisher-run "$rc"
[ "$rc" -eq 0 ] || { tail -20 "$W/publisher-run.out" >&2; it_fail "the publisher exited $rc after SIGTERM, expected 0"; }
it_ok "publisher applied 3 events against the emulator, SIGTERM, exit 0: no leak, no error"
echo "valgrind smoke run took $((SECONDS - started)) s"
