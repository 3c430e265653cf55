#!/bin/sh
# Builds both certsync binaries the way the image's build stage does, and installs them stripped under
# OUT_DIR/usr/local/bin. Shared by deploy/image/Containerfile (build stage) and the runtime-layout proof
# tests/deploy/runtime-rootfs.sh, so the two cannot drift. POSIX sh: the build image has no bash guarantee.
#
#   build-binaries.sh SOURCE_DIR BUILD_DIR OUT_DIR
set -eu

src=$1 build=$2 out=$3
# RelWithDebInfo as CI builds it; tests off (the image needs neither cmocka nor the test tree).
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCS_BUILD_TESTS=OFF \
  -DCS_SANITIZE=OFF -DCMAKE_INSTALL_PREFIX=/usr/local
ninja -C "$build" certsync-collector certsync-publisher
# The project's install rules (bin/), stripped: debug info stays in the build stage.
cmake --install "$build" --prefix "$out/usr/local" --strip
"$out/usr/local/bin/certsync-collector" --version
"$out/usr/local/bin/certsync-publisher" --version
