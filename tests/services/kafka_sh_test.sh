#!/usr/bin/env bash
# kafka.sh start must never wipe a directory it did not make: DIR is deleted and recreated on start, so a
# mistyped DIR (a home or source directory) would be lost. Only an empty DIR, or one carrying the marker
# an earlier start wrote, may be wiped.
#
#   kafka_sh_test.sh WORK_DIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
. "$HERE/lib.sh"
W=${1:?usage: kafka_sh_test.sh WORK_DIR}
KAFKA_SH=$HERE/kafka.sh
rm -rf "$W"
mkdir -p "$W/precious/sub"
echo "keep me" >"$W/precious/notes.txt"
echo "and me" >"$W/precious/sub/data"
fails=0

rc=0
"$KAFKA_SH" start "$W/precious" >"$W/start.out" 2>&1 || rc=$?
if [ "$rc" -eq 0 ]; then
  # The bug: it wiped the directory and started a broker there. Stop it before failing.
  "$KAFKA_SH" stop "$W/precious" >/dev/null 2>&1 || true
  echo "FAIL: kafka.sh start accepted a non-empty directory it did not create" >&2
  fails=$((fails + 1))
fi
if [ ! -f "$W/precious/notes.txt" ] || [ ! -f "$W/precious/sub/data" ]; then
  echo "FAIL: kafka.sh start deleted files of a directory it did not create" >&2
  fails=$((fails + 1))
fi
grep -q "precious" "$W/start.out" && grep -q "refus" "$W/start.out" || {
  echo "FAIL: the refusal does not name the directory: $(cat "$W/start.out")" >&2
  fails=$((fails + 1))
}
echo "refusal: $(tail -1 "$W/start.out")"
echo "kafka_sh_test: $((fails == 0 ? 1 : 0)) passed, $((fails == 0 ? 0 : 1)) failed"
[ "$fails" -eq 0 ]
