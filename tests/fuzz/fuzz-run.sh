#!/usr/bin/env bash
# Fuzzes one libFuzzer target for a bounded time (used by the ctests of label fuzz and by fuzz-long.sh).
#   fuzz-run.sh BINARY SECONDS WORKDIR SEED-DIR...
# New inputs go to WORKDIR/corpus (the seed folders in the source tree are never written); a crash is saved
# as WORKDIR/crash-<sha1> and the run fails. Keep a crash as a regression input by copying it into the
# target's tests/fuzz/corpus/<target>/ folder (its _replay unit test then runs it in every build).
set -euo pipefail
bin=$1 seconds=$2 work=$3
shift 3
mkdir -p "$work/corpus"
# -seed: CS_FUZZ_SEED, default 1, so the CI gate replays the same input sequence every run (a red CI is
# then reproducible, not a lottery); fuzz-long.sh passes 0, libFuzzer's "random", to explore.
seed=${CS_FUZZ_SEED:-1}
echo "fuzz-run: $(basename "$bin") for $seconds s, -seed=$seed"
# -timeout: one input taking longer is a hang worth a report; -rss_limit_mb bounds a runaway allocation.
status=0
"$bin" -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/corpus" "$@" 2>"$work/fuzz.log" || status=$?
tail -n 20 "$work/fuzz.log"
if [ "$status" -ne 0 ]; then
  echo "fuzz-run: $(basename "$bin") failed (exit $status); input saved in $work/ (see $work/fuzz.log)." \
    "Fix the parser, then copy the input into tests/fuzz/corpus/ of the target as a regression seed." >&2
  grep -m 40 -E 'ERROR|SUMMARY|#[0-9]+ 0x|differs' "$work/fuzz.log" >&2 || true
fi
exit "$status"
