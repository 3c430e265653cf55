#!/bin/sh
# expect_exit.sh RC COMMAND...: runs COMMAND, prints its stdout as "out| ..." and its stderr as
# "err| ..." lines (so ctest's PASS_REGULAR_EXPRESSION can tell the two apart), and prints
# "UNEXPECTED EXIT CODE" (for FAIL_REGULAR_EXPRESSION) unless it exited with RC.
expected=$1
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
sed 's/^/out| /' "$tmp/out"
sed 's/^/err| /' "$tmp/err"
if [ "$rc" -ne "$expected" ]; then
    echo "UNEXPECTED EXIT CODE: got $rc, expected $expected"
    exit 1
fi
exit 0
