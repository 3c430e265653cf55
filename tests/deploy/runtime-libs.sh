#!/usr/bin/env bash
# The runtime image's package list (deploy/image/runtime-packages.txt) must provide every shared library
# the two binaries link (their NEEDED entries), so the slim image starts. Libraries are mapped to
# Debian packages with dpkg -S on this (Debian 12) build machine; libc6 is in every Debian base.
#
#   runtime-libs.sh BUILD_DIR PACKAGE_LIST
set -euo pipefail

build=$1 list=$2
mapfile -t wanted < <(grep -v '^#' "$list" | sed '/^$/d')
missing=0
listed() {
  local w
  for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}
for bin in "$build/collector/certsync-collector" "$build/publisher/certsync-publisher"; do
  while read -r lib; do
    path=$(ldd "$bin" | awk -v l="$lib" '$1 == l { print $3; exit }')
    if [ -z "$path" ]; then
      echo "FAIL: $(basename "$bin") needs $lib, which ldd cannot resolve here"
      missing=$((missing + 1))
      continue
    fi
    # Debian 12 is usr-merged: dpkg may know a library under /lib rather than /usr/lib.
    real=$(readlink -f "$path")
    pkg=""
    for candidate in "$real" "$path" "${real#/usr}" "${path#/usr}"; do
      pkg=$(dpkg -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1 || true)
      [ -n "$pkg" ] && break
    done
    if [ "$pkg" = "libc6" ]; then continue; fi
    # No `printf | grep -q` here: with pipefail, grep exiting at the first match can make printf die
    # of SIGPIPE and the pipeline fail at random.
    if ! listed "$pkg"; then
      echo "FAIL: $(basename "$bin") needs $lib from package '$pkg', which $list does not list: add it"
      missing=$((missing + 1))
    else
      echo "ok: $(basename "$bin"): $lib <- $pkg"
    fi
  done < <(readelf -d "$bin" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }')
done
[ "$missing" -eq 0 ] && echo "runtime-libs: every linked library is in $list"
