#!/usr/bin/env bash
# ShellCheck (Debian's shellcheck) on every shell script in the repository: files named *.sh and files
# whose first line is a sh/bash shebang, outside build directories. Findings of severity warning or error
# fail the test, except those recorded in shellcheck-baseline.txt ("path SCcode", owned by other work in
# progress): the baseline may only shrink; a recorded finding that is gone is reported so it can be removed.
#
#   usage: tests/deploy/shellcheck.sh [REPO_ROOT]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${1:-$(cd "$here/../.." && pwd)}
cd "$root"
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "shellcheck is not installed: run scripts/install-deps.sh (Debian package shellcheck)"
  exit 1
fi

mapfile -t scripts < <(
  {
    find . -path './build*' -prune -o -path './.git' -prune -o -type f -name '*.sh' -print
    find . -path './build*' -prune -o -path './.git' -prune -o -type f ! -name '*.*' -print0 |
      xargs -0 -r grep -lIE '^#!.*/(env )?(ba|da)?sh( |$)' 2>/dev/null || true
    [ -f .ci/run ] && echo ./.ci/run
  } | sed 's#^\./##' | sort -u
)
if [ "${#scripts[@]}" -eq 0 ]; then
  echo "FAIL: found no shell scripts under $root"
  exit 1
fi

# -x -P SCRIPTDIR: follow `source "$DIR/lib.sh"` like the scripts do, so variables used across files count.
found=$(shellcheck -x -P SCRIPTDIR -S warning -f gcc "${scripts[@]}" 2>&1 || true)
baseline=$(grep -v '^#' "$here/shellcheck-baseline.txt" | sed '/^$/d' | sort -u || true)
new=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  file=${line%%:*}
  code=$(grep -oE 'SC[0-9]+' <<<"$line" | tail -1)
  if grep -qxF "$file $code" <<<"$baseline"; then
    echo "known (baseline): $line"
  else
    echo "NEW: $line"
    new=$((new + 1))
  fi
done <<<"$found"
while IFS= read -r entry; do
  [ -z "$entry" ] && continue
  if ! grep -qF "${entry%% *}:" <<<"$found" || ! grep -F "${entry%% *}:" <<<"$found" | grep -qF "${entry##* }"; then
    echo "fixed, remove from tests/deploy/shellcheck-baseline.txt: $entry"
  fi
done <<<"$baseline"
echo "shellcheck: ${#scripts[@]} scripts, $new new finding(s)"
[ "$new" -eq 0 ]
