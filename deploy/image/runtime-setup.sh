#!/bin/sh
# The runtime image's user and mount points, run as root inside the runtime root file system after the
# packages of runtime-packages.txt are installed. Shared by deploy/image/Containerfile (runtime stage) and
# tests/deploy/runtime-rootfs.sh (inside the debootstrap'd root), so the two cannot drift.
# uid/gid 10001 match the Helm chart's podSecurityContext (runAsUser / runAsGroup / fsGroup).
set -eu

groupadd --system --gid 10001 certsync
useradd --system --uid 10001 --gid certsync --home-dir /nonexistent --no-create-home \
  --shell /usr/sbin/nologin certsync
# Mount points of the chart's ConfigMap and Secret volumes; the image itself writes nothing anywhere.
mkdir -p /etc/certsync /run/secrets/certsync /usr/local/share/certsync
