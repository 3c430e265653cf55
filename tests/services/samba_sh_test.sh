#!/usr/bin/env bash
# Failure paths of tests/services/samba.sh, each in its own network namespace (unshare -n: a private lo,
# so nothing here can touch the host's addresses or a real server on port 389). Needs root.
#
#   samba_sh_test.sh WORK_DIR
#
#   1. A wildcard listener on port 389 (what the Debian system slapd opens) makes start fail at once with a
#      message that names the listener and the fix, before any address alias is added.
#   2. A start that fails after it added its 127.88.x.y alias removes the alias again (trap).
#   3. stop removes a recorded alias even when there is no pid file (a start that died early).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
. "$HERE/lib.sh"
W=${1:?usage: samba_sh_test.sh WORK_DIR}
[ "$(id -u)" -eq 0 ] || cs_die "samba_sh_test.sh needs root (network namespaces, address aliases)"
command -v samba >/dev/null || cs_die "samba not found; install it with scripts/install-deps.sh"
rm -rf "$W"
mkdir -p "$W"
SAMBA_SH=$HERE/samba.sh
fails=0
case_failed=0

fail() {
  echo "FAIL: $*" >&2
  case_failed=1
}

# end_case: counts the case that just ran as failed when any of its checks failed.
end_case() {
  fails=$((fails + case_failed))
  case_failed=0
}

# in_netns SCRIPT: runs bash SCRIPT in a new network namespace with lo up; exports what SCRIPT needs.
in_netns() {
  SAMBA_SH=$SAMBA_SH W=$W unshare -n bash -c "ip link set lo up; $1"
}

# --- 1. wildcard listener on :389 ---------------------------------------------------------------------
out=$(in_netns '
  python3 -c "
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 389)); s.listen(1)
print(\"listening\", flush=True); time.sleep(60)" >"$W/listener.out" &
  lpid=$!
  for _ in $(seq 1 50); do grep -q listening "$W/listener.out" 2>/dev/null && break; sleep 0.1; done
  rc=0; "$SAMBA_SH" start "$W/wild" >"$W/wild.out" 2>&1 || rc=$?
  # Started anyway (the bug): stop it here, inside its namespace, so nothing outlives the test.
  [ "$rc" != 0 ] || "$SAMBA_SH" stop "$W/wild" >/dev/null 2>&1 || true
  kill "$lpid"; wait "$lpid" 2>/dev/null || true
  echo "rc=$rc"
  ip -4 addr show dev lo | grep -c "inet 127\.88\." || true
') || fail "case 1: the namespace script failed: $out"
grep -q '^rc=0$' <<<"$out" && fail "case 1: start succeeded despite a wildcard listener on port 389"
grep -q 'port 389' "$W/wild.out" || fail "case 1: the error does not name port 389: $(cat "$W/wild.out")"
grep -q '0\.0\.0\.0:389' "$W/wild.out" || fail "case 1: the error does not name the listener: $(cat "$W/wild.out")"
grep -q 'python3' "$W/wild.out" || fail "case 1: the error does not name the listening process: $(cat "$W/wild.out")"
grep -q 'install-deps.sh' "$W/wild.out" || fail "case 1: the error gives no fix: $(cat "$W/wild.out")"
[ "$(tail -1 <<<"$out")" = 0 ] || fail "case 1: an address alias was left on lo"
echo "case 1 (wildcard listener): $(grep -m1 'port 389' "$W/wild.out" || true)"
end_case

# --- 2. failure after the alias was added ---------------------------------------------------------------
# A template whose ad/ lacks etc/: start copies it, adds the alias, then cannot write smb.conf.
cache=$W/cache
mkdir -p "$cache/template/ad"
echo "recipe=1 $(samba --version)" >"$cache/template/stamp"
printf 'x' >"$cache/template/password"
out=$(in_netns '
  rc=0; "$SAMBA_SH" start "$W/late" --cache "$W/cache" >"$W/late.out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || "$SAMBA_SH" stop "$W/late" >/dev/null 2>&1 || true
  echo "rc=$rc"
  ip -4 addr show dev lo | grep -c "inet 127\.88\." || true
') || fail "case 2: the namespace script failed: $out"
grep -q '^rc=0$' <<<"$out" && fail "case 2: start succeeded with a broken template"
[ "$(tail -1 <<<"$out")" = 0 ] || fail "case 2: the failed start left its address alias on lo"
[ -f "$W/late/address" ] && fail "case 2: the failed start left $W/late/address behind"
echo "case 2 (late failure): $(tail -1 "$W/late.out")"
end_case

# --- 3. stop without a pid file -------------------------------------------------------------------------
mkdir -p "$W/nopid"
echo 127.88.7.9 >"$W/nopid/address"
out=$(in_netns '
  ip addr add 127.88.7.9/32 dev lo
  "$SAMBA_SH" stop "$W/nopid" >"$W/nopid.out" 2>&1 || true
  ip -4 addr show dev lo | grep -c "inet 127\.88\.7\.9/32" || true
') || fail "case 3: the namespace script failed: $out"
[ "$(tail -1 <<<"$out")" = 0 ] || fail "case 3: stop without a pid file left the alias: $(cat "$W/nopid.out")"
echo "case 3 (stop without pid): $(tail -1 "$W/nopid.out")"
end_case

echo "samba_sh_test: $((3 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
