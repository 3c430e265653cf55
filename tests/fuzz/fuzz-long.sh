#!/usr/bin/env bash
# Runs every libFuzzer target longer than CI does (CI: 20 s each, ctest -L fuzz).
#   tests/fuzz/fuzz-long.sh [SECONDS-PER-TARGET] [BUILD-DIR]
# Defaults: 300 s, build-fuzz. Configures and builds BUILD-DIR with clang-14 and -DCS_FUZZ=ON when needed
# (Debian 12: apt-get install clang-14 libclang-rt-14-dev). Targets run one after another; the corpus grown
# by each run is kept in BUILD-DIR/tests/fuzz/fuzz-work/<target>/corpus, so a second run continues from it.
# A crash stops the script and names the saved input: fix the parser, then copy the input into
# tests/fuzz/corpus/<target>/ (its _replay unit test replays it in every build from then on).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=${1:-300}
BUILD=${2:-$ROOT/build-fuzz}
TARGETS=(fuzz_cert_diff fuzz_proto fuzz_config fuzz_http fuzz_ldap fuzz_cs_cert fuzz_col_replmeta)
case $SECONDS_EACH in '' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [build-dir]" >&2; exit 2 ;; esac
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=${CC:-clang-14} cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCS_FUZZ=ON >/dev/null
fi
ninja -C "$BUILD" "${TARGETS[@]}"
for t in "${TARGETS[@]}"; do
  case $t in
    fuzz_cs_cert) seeds=("$ROOT/../shared/testdata/certs") ;;
    fuzz_col_replmeta) seeds=() ;;
    *) seeds=("$ROOT/tests/fuzz/corpus/${t#fuzz_}") ;;
  esac
  echo "== $t: ${SECONDS_EACH} s"
  CS_FUZZ_SEED=${CS_FUZZ_SEED:-0} bash "$ROOT/tests/fuzz/fuzz-run.sh" "$BUILD/tests/fuzz/$t" "$SECONDS_EACH" "$BUILD/tests/fuzz/fuzz-work/$t" \
    "${seeds[@]}"
done
echo "fuzz-long: every target ran ${SECONDS_EACH} s without a crash"
