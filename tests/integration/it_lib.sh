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
