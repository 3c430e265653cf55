#!/usr/bin/env bash
# Runs every certsync test on a fresh Debian 12 machine: installs what is missing,
# fetches the Kafka jars (both versions the tests run), builds twice (plain and with AddressSanitizer + UBSan),
# and runs ctest. Real servers (Kafka, slapd, Samba AD) are started and stopped
# by the tests' own fixtures.
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh -L unit    only tests with that ctest label (passed to ctest)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=$(nproc)

step() { printf '\n==== %s ====\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh
# Both broker versions: 4.x for most tests, 3.9.1 for the SASL_SSL ones (kafka.sh start --secure).
bash tests/services/kafka.sh fetch --all

step "format check (clang-format)"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null || find common collector publisher tests bench -name '*.[ch]')
clang-format --dry-run --Werror "${sources[@]}"

step "build (sanitizers: address, undefined)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCS_SANITIZE=ON >/dev/null
ninja -C build-asan
step "unit tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -L unit -j "$JOBS" --output-on-failure
step "smoke run of both services under sanitizers (real Kafka, slapd and the Office 365 emulator)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -R '^(col_service_slapd|pub_service_apply_update_clear_restart)$' --output-on-failure

step "fuzz targets under libFuzzer, 20 s each (clang; new crashes: see tests/fuzz/fuzz-run.sh)"
CC=clang-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCS_FUZZ=ON >/dev/null
ninja -C build-fuzz fuzz_all
ctest --test-dir build-fuzz -L fuzz -j "$JOBS" --output-on-failure

step "build (release with debug info)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build
step "all tests against real servers"
ctest --test-dir build -j "$JOBS" --output-on-failure "$@"
