#!/usr/bin/env bash
# col_service_chaos: directory restart and kill -9 at seeded random moments, against a private slapd
# (so restarting it disturbs no other test) and the shared Kafka.
#
#   col_service_chaos.sh [KILLS [SEED]]      (ctest runs 5 kills; run by hand with 20+ for a longer run:
#                                             CS_ENV_FILE is not needed, the other variables are)
# Asserts:
#   1. directory restart mid-stream: the collector reconnects (log + metric), resumes without a new
#      snapshot and delivers a change made after the restart;
#   2. while a stream of changes flows, the collector is killed -9 KILLS times at random moments (the seed
#      is printed) and restarted each time; then a final --once run catches up and exits 0;
#   3. read back read_committed: no (object, version) twice, no object's version going backwards, and the
#      latest state of every object equals the directory (a fresh col_probe snapshot).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
KILLS=${1:-5}
SEED=${2:-$RANDOM}
echo "chaos: $KILLS kills, seed $SEED (rerun: $0 $KILLS $SEED)"
W=${CS_WORK_DIR:?CS_WORK_DIR is not set}
rm -rf "$W"
mkdir -p "$W"
. "$HERE/col_svc_lib.sh"
SLAPD_SH="$HERE/../services/slapd.sh"
SD="$W/slapd"
cleanup() {
  svc_stop_all
  [ -n "${STREAM_PID:-}" ] && kill "$STREAM_PID" 2>/dev/null || true
  [ -f "$SD/pid" ] && "$SLAPD_SH" stop "$SD" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$SLAPD_SH" start "$SD" >/dev/null || it_fail "private slapd did not start"
# shellcheck disable=SC1091
. "$SD/env"
IT_LOG=$SLAPD_LOG
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

tag=ch$RANDOM
OU="ou=$tag,$SLAPD_BASE"
TP="it.$tag"
"$TOOLS/gen_users.py" --count 12 --seed "$SEED" --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou "$tag" --prefix "$tag" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >/dev/null || it_fail "ldapadd"
mapfile -t U < <(python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' \
  "$W/data/manifest.json")
svc_topics "$TP"
svc_config "$W/c.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 50ms, max_events: 4}"
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=chaos $tag" -days 30 \
  -keyout "$W/k.pem" -outform DER -out "$W/c.der" 2>/dev/null || it_fail "openssl req"
B64=$(base64 -w0 "$W/c.der")

# --- 1. directory restart mid-stream ----------------------------------------------------------------
svc_start r "$W/c.yaml"
await_log r '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot"
"$SLAPD_SH" restart "$SD" >/dev/null || it_fail "slapd restart"
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "modify after the restart"
dn: ${U[0]}
changetype: modify
replace: mail
mail: after-restart-$tag@example.test
LDIF
await_events "$TP.events" "(last('${U[0]}') or {}).get('mail')=='after-restart-$tag@example.test'" 60 ||
  it_fail "the change after the directory restart did not arrive"
grep -q 'directory unavailable: reconnecting' "$W/r.log" || it_fail "no reconnect logged"
[ "$(grep -c 'full pass started' "$W/r.log")" = 1 ] || it_fail "the reconnect took a new snapshot"
port=$(admin_port r)
v=$(metric "$port" '^certsync_collector_directory_reconnects_total')
[ "${v%.*}" -ge 1 ] || it_fail "reconnect metric is $v"
it_ok "directory restart: reconnected ($v), resumed without a snapshot"
kill -9 "${SVC_PID[r]}"
await_exit r 10 || true

# --- 2. kills while changes flow --------------------------------------------------------------------
# The change stream: seeded, bounded, runs until the stop file appears.
python3 - "$SEED" "${#U[@]}" >"$W/plan.txt" <<'PY'
import random, sys
r = random.Random(int(sys.argv[1]))
for i in range(400):
    print(r.randrange(int(sys.argv[2])), r.choice(["mail", "mail", "addcert", "delcert"]), i)
PY
(
  while read -r ui op i; do
    [ -f "$W/stop-stream" ] && break
    dn=${U[$ui]}
    case $op in
      mail) printf 'dn: %s\nchangetype: modify\nreplace: mail\nmail: m%s@example.test\n' "$dn" "$i" ;;
      addcert) printf 'dn: %s\nchangetype: modify\nadd: userCertificate;binary\nuserCertificate;binary:: %s\n' "$dn" "$B64" ;;
      delcert) printf 'dn: %s\nchangetype: modify\ndelete: userCertificate;binary\nuserCertificate;binary:: %s\n' "$dn" "$B64" ;;
    esac | ldapmodify "${auth[@]}" -c >/dev/null 2>&1 || true
  done <"$W/plan.txt"
) &
STREAM_PID=$!
mapfile -t DELAYS < <(python3 -c 'import random,sys
r=random.Random(int(sys.argv[1])+1)
[print("%.2f" % r.uniform(0.1, 2.5)) for _ in range(int(sys.argv[2]))]' "$SEED" "$KILLS")
for ((k = 0; k < KILLS; k++)); do
  svc_start "k$k" "$W/c.yaml"
  # The random moment: what is being tested is a kill at an arbitrary point, so this wait is the point.
  sleep "${DELAYS[$k]}"
  kill -9 "${SVC_PID[k$k]}" 2>/dev/null || it_fail "collector k$k died before its kill (see $W/k$k.log)"
  await_exit "k$k" 10 || true
  echo "  kill $((k + 1))/$KILLS after ${DELAYS[$k]} s"
done
touch "$W/stop-stream"
wait "$STREAM_PID" || true
STREAM_PID=""
svc_start final "$W/c.yaml" --once
await_exit final 120 || it_fail "--once did not finish"
[ "$SVC_RC" = 0 ] || it_fail "--once exit code $SVC_RC (see $W/final.log)"
grep -q 'full pass started' "$W/final.log" && it_fail "the final run took a new snapshot"
it_ok "$KILLS kills at seeded random moments (seed $SEED), then --once caught up"

# --- 3. invariants ----------------------------------------------------------------------------------
check_invariants "$TP.events"
check_latest_equals_directory "$OU"
it_ok "latest state of every object equals the directory"
