# shellcheck shell=bash
# Shared helpers for the shell integration tests (tests/integration/*.sh). Source it.
#
# ctest sets CS_ENV_FILE (a service's DIR/env), CS_WORK_DIR (this test's scratch directory) and
# CS_SOURCE_DIR. it_init loads the env file and empties the scratch directory; it_fail prints the
# server log tail (IT_LOG) and exits 1.

HERE_IT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
. "$HERE_IT/../services/lib.sh"
# For the scripts that source this file (tests/tools: gen_users.py, ...).
# shellcheck disable=SC2034
TOOLS=$(cd "$HERE_IT/../tools" && pwd)
IT_LOG=""
IT_T0=$(cs_now_ms)

it_init() {
  [ -n "${CS_ENV_FILE:-}" ] || cs_die "CS_ENV_FILE is not set; run this test through ctest"
  [ -f "$CS_ENV_FILE" ] || cs_die "$CS_ENV_FILE missing: the service fixture did not start (see its *_start test)"
  # shellcheck disable=SC1090
  . "$CS_ENV_FILE"
  W=${CS_WORK_DIR:?CS_WORK_DIR is not set; run this test through ctest}
  rm -rf "$W"
  mkdir -p "$W"
}

it_fail() {
  echo "FAIL: $*" >&2
  [ -n "$IT_LOG" ] && cs_show_log "$IT_LOG"
  exit 1
}

it_ok() {
  printf 'ok: %s (%s s since start)\n' "$*" "$(cs_since_s "$IT_T0")"
}

# it_publisher_yaml TAG PORT MAX_WAIT [LINE...]: prints a publisher config for the end-to-end tests: instance
# and consumer group TAG, topics TAG.{events,pstate,results,dlq,retry}, each LINE as a top-level line (e.g.
# "sources: {priority: [a, b]}"), the emulator with certificate auth, batch max_wait MAX_WAIT, admin on
# 127.0.0.1:PORT and the Kafka at KAFKA_BOOTSTRAP.
it_publisher_yaml() {
  local tag=$1 port=$2 wait=$3 l
  shift 3
  printf 'publisher: {instance_id: %s}\n' "$tag"
  printf 'topics: {events: %s.events, state: %s.pstate, results: %s.results, dlq: %s.dlq, retry: %s.retry}\n' \
    "$tag" "$tag" "$tag" "$tag" "$tag"
  for l in "$@"; do printf '%s\n' "$l"; done
  cs_o365_yaml certificate
  printf 'batch: {max_wait: %s}\nadmin: {listen: "127.0.0.1:%s"}\n' "$wait" "$port"
  printf 'kafka: {bootstrap.servers: "%s", group.id: %s, session.timeout.ms: 6000}\n' "$KAFKA_BOOTSTRAP" "$tag"
}

# it_slapd_collector_yaml ID OU TIMEOUT TOPICS [LINE...]: prints a collector config reading the inetOrgPerson
# entries under OU of the slapd fixture (SLAPD_* variables, plaintext bind on loopback) as source ID, with the
# given "topics: {...}" line, batch max_wait 100ms, admin on an ephemeral port, then each LINE as a top-level
# line; without LINEs, the plain "kafka:" line for KAFKA_BOOTSTRAP (a caller with its own kafka block passes
# its lines and prints the block after).
it_slapd_collector_yaml() {
  local l
  cat <<EOF
source: {id: $1}
ldap:
  url: "$SLAPD_URL"
  bind_dn: "$SLAPD_BIND_DN"
  password_file: "$SLAPD_PASSWORD_FILE"
  allow_plaintext_bind: true
  base_dns: ["$2"]
  filter: "(objectClass=inetOrgPerson)"
  timeout: $3
$4
batch: {max_wait: 100ms}
admin: {listen: "127.0.0.1:0"}
EOF
  shift 4
  [ $# -gt 0 ] || set -- "kafka: {bootstrap.servers: \"$KAFKA_BOOTSTRAP\"}"
  for l in "$@"; do printf '%s\n' "$l"; done
}
