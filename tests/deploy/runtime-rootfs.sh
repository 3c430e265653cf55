#!/usr/bin/env bash
# Runtime-layout proof of the container image without a container engine (issue 8):
#   1. the runtime stage's root file system: debootstrap --variant=minbase bookworm with exactly the
#      packages of deploy/image/runtime-packages.txt (the list the Containerfile installs), cached as a
#      tarball keyed by a hash of that list, suite and mirror;
#   2. the image's user and mount points by deploy/image/runtime-setup.sh, run inside it (the Containerfile
#      runs the same script);
#   3. both binaries built from a copy of exactly the sources the Containerfile's build stage COPYs, by
#      deploy/image/build-binaries.sh (the Containerfile's build command), installed into the root;
#   4. then, per pod kind (collector, publisher), the chart's configs (helm template of a ci values file)
#      and fake Secrets mounted where the chart mounts them (read-only, 0440, group 10001), /tmp as the
#      emptyDir, the root bind-mounted READ-ONLY, in new mount and pid namespaces, chroot, and the
#      checks run as uid/gid 10001 with no supplementary groups, no capabilities and no_new_privs:
#      ldd finds every library, --check-config accepts the rendered config, the only writable path is
#      /tmp, and a write to the root fails even for root.
# Mounts live only in the private mount namespaces (unshare, --kill-child), so they and every process
# vanish when the namespace's init exits, also on failure or timeout; the trap removes the work files.
#
#   runtime-rootfs.sh WORK_DIR [VALUES_FILE]
# Needs root (debootstrap, namespaces, chroot); exits 77 (ctest SKIP_RETURN_CODE) without it. Network:
# only for the cold debootstrap, from the machine's Debian mirror (CS_DEBIAN_MIRROR overrides).
set -euo pipefail

work=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
values=${2:-$root/deploy/helm/certsync/ci/tls-scram-values.yaml}
image=$root/deploy/image
list=$image/runtime-packages.txt
containerfile=$image/Containerfile
cache=${CS_CACHE_DIR:-$HOME/.cache/certsync}/rootfs
SUITE=bookworm
UID_GID=10001
SECRET_DIR=/run/secrets/certsync
start_all=$SECONDS

log() { echo "runtime-rootfs: $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  echo "runtime-rootfs: SKIPPED: needs root for debootstrap, mount namespaces and chroot" >&2
  exit 77
fi
for tool in debootstrap unshare chroot tar flock; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed: run scripts/install-deps.sh"
done

# Cleanup on every exit. Mounts and processes die with their namespaces (unshare --kill-child); what is
# left is files. A mount under WORK_DIR in *our* namespace would mean a leak: unmount it before removing.
base_tmp=""
cleanup() {
  local rc=$? m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  if [ -n "$base_tmp" ]; then rm -rf --one-file-system "$base_tmp"; fi
  rm -rf --one-file-system "$work/root"
  exit "$rc"
}
trap cleanup EXIT
# A signal (ctest's timeout, ^C) also goes through cleanup.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ---- 1. the base root file system (cached) ----
# The machine's bookworm mirror: the first deb822 stanza (or sources.list line) whose suites name bookworm.
debian_mirror() {
  local m=""
  if [ -n "${CS_DEBIAN_MIRROR:-}" ]; then
    echo "$CS_DEBIAN_MIRROR"
    return
  fi
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    m=$(awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
          if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
        }
        if (ok && uri != "") { print uri; exit } }' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i < NF; i++) if ($(i + 1) == s && $i ~ /^https?:/) { print $i; exit } }' \
      /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
mirror=$(debian_mirror)
packages=$(grep -v '^#' "$list" | sed '/^[[:space:]]*$/d' | paste -sd, -)
[ -n "$packages" ] || fail "$list lists no packages"
key=$(printf '%s\n' "$SUITE" minbase "$mirror" "$packages" | sha256sum | cut -c1-16)
base_tar=$cache/$SUITE-minbase-$key.tar
mkdir -p "$cache"

build_base() {
  local keyring=() t0=$SECONDS
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  base_tmp=$(mktemp -d "$cache/build.XXXXXX")
  log "cold: debootstrap --variant=minbase $SUITE from $mirror with: $packages"
  # In its own mount namespace: the /proc and /sys debootstrap mounts in the target vanish with it.
  if ! unshare --mount --fork --kill-child -- debootstrap --variant=minbase "${keyring[@]}" \
    --include="$packages" "$SUITE" "$base_tmp/root" "$mirror" >"$base_tmp/debootstrap.log" 2>&1; then
    tail -30 "$base_tmp/debootstrap.log" >&2
    fail "debootstrap of $SUITE from $mirror failed (log above); set CS_DEBIAN_MIRROR to a reachable mirror"
  fi
  # As the Containerfile's runtime stage: no package lists or archives in the image.
  rm -rf "$base_tmp/root/var/lib/apt/lists/"* "$base_tmp/root/var/cache/apt/archives/"*.deb
  tar -C "$base_tmp/root" --numeric-owner -cpf "$base_tmp/base.tar" .
  mv "$base_tmp/base.tar" "$base_tar"
  rm -rf --one-file-system "$base_tmp"
  base_tmp=""
  # Older keys (an edited package list) are dead weight: keep only this one.
  find "$cache" -maxdepth 1 -name "$SUITE-minbase-*.tar" ! -name "$(basename "$base_tar")" -delete
  log "cold: base root file system built in $((SECONDS - t0)) s ($(du -h "$base_tar" | cut -f1))"
}
(
  # One builder at a time (the Debug, RelWithDebInfo and sanitizer trees may run this test at once).
  flock 9
  # A subshell does not inherit the EXIT trap: remove its half-built root itself, also when fail() exits.
  trap 'if [ -n "$base_tmp" ]; then rm -rf --one-file-system "$base_tmp"; fi' EXIT
  # Holding the lock, no build is running: a build.* left behind was a killed run's.
  find "$cache" -mindepth 1 -maxdepth 1 -name 'build.*' -exec rm -rf --one-file-system {} +
  [ -f "$base_tar" ] || build_base
) 9>"$cache/.lock"

rm -rf --one-file-system "$work/root" "$work/src" "$work/out" "$work/pods"
mkdir -p "$work/root"
tar -C "$work/root" --numeric-owner -xpf "$base_tar"

# ---- 2. the image's user and mount points ----
grep -qF 'sh /tmp/runtime-setup.sh' "$containerfile" ||
  fail "$containerfile no longer runs runtime-setup.sh: keep this proof and the image in step"
chroot "$work/root" /bin/sh -s <"$image/runtime-setup.sh"
[ "$(chroot "$work/root" id -u certsync)" = "$UID_GID" ] || fail "runtime-setup.sh did not create uid $UID_GID"

# ---- 3. the binaries, built as the image's build stage builds them ----
# The build stage's source COPYs (not --from): a directory the build needs but the Containerfile does not
# copy fails here, as it would fail the image build.
stage=$work/src
mkdir -p "$stage"
copies=0
while read -r -a words; do
  [ "${#words[@]}" -ge 3 ] || continue
  dst=${words[-1]}
  for src in "${words[@]:1:${#words[@]}-2}"; do
    case $dst in
      */ | .) mkdir -p "$stage/$dst" && cp -a "$root/$src" "$stage/$dst" ;;
      *) mkdir -p "$(dirname "$stage/$dst")" && cp -a "$root/$src" "$stage/$dst" ;;
    esac
    copies=$((copies + 1))
  done
done < <(awk '/^FROM .* AS build/ { b = 1; next } /^FROM / { b = 0 } b && /^COPY / && !/--from/' "$containerfile")
[ "$copies" -ge 5 ] || fail "found only $copies COPY sources in the build stage of $containerfile"
grep -qF 'RUN sh deploy/image/build-binaries.sh /src /build /out' "$containerfile" ||
  fail "$containerfile no longer builds with deploy/image/build-binaries.sh: keep this proof in step"
[ -f "$stage/deploy/image/build-binaries.sh" ] || fail "the build stage does not COPY deploy/image/build-binaries.sh"
t0=$SECONDS
# The build tree stays in WORK_DIR (cp -a keeps mtimes), so a warm run rebuilds nothing.
sh "$stage/deploy/image/build-binaries.sh" "$stage" "$work/build" "$work/out" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; fail "build-binaries.sh failed (log above)"; }
log "binaries built in $((SECONDS - t0)) s"
# COPY --from=build /out/ /, then the example configs, as the runtime stage does.
grep -qF 'COPY --from=build /out/ /' "$containerfile" || fail "$containerfile no longer copies /out/ to /"
cp -a "$work/out/." "$work/root/"
install -m 0644 "$root/deploy/config/collector.example.yaml" "$root/deploy/config/publisher.example.yaml" \
  "$work/root/usr/local/share/certsync/"
grep -qF "USER $UID_GID:$UID_GID" "$containerfile" || fail "$containerfile no longer runs as $UID_GID"

# ---- 4. the chart's configs and Secrets, per pod ----
tools=$("$here/install-tools.sh" --print)
[ -x "$tools/bin/helm" ] || fail "helm missing in $tools: run tests/deploy/install-tools.sh (fixture deploy_tools)"
mkdir -p "$work/pods"
"$tools/bin/helm" template t "$root/deploy/helm/certsync" --namespace certsync --kube-version 1.30.0 \
  -f "$values" >"$work/pods/manifests.yaml"
"$tools/bin/k8svalidate" -configs "$work/pods/configs" "$work/pods/manifests.yaml" >/dev/null
collector_cfg=$(find "$work/pods/configs" -path '*collector*' -name collector.yaml | sort | head -1)
publisher_cfg=$(find "$work/pods/configs" -name 't-certsync-publisher-0.yaml' | head -1)
[ -n "$collector_cfg" ] && [ -n "$publisher_cfg" ] || fail "helm template of $values rendered no collector/publisher config"

# Fake Secrets with the kubelet's projected-volume modes: files 0440 owned by root and group fsGroup.
secrets=$work/pods/secrets
data=$root/tests/data/config/secrets
mkdir -p "$secrets/ldap" "$secrets/kafka" "$secrets/o365"
printf 'ldap-password\n' >"$secrets/ldap/password"
cp "$data/ldap-ca.pem" "$secrets/ldap/ca.crt"
cp "$data/kafka-ca.pem" "$secrets/kafka/ca.crt"
printf 'kafka-password\n' >"$secrets/kafka/sasl-password"
cp "$data/o365-certificate.pem" "$secrets/o365/tls.crt"
cp "$data/o365-private-key.pem" "$secrets/o365/tls.key"
printf 'client-secret\n' >"$secrets/o365/client-secret"
cp "$data/kafka-ca.pem" "$secrets/o365/ca.crt"
chown -R "0:$UID_GID" "$secrets"
find "$secrets" -type f -exec chmod 0440 {} +
find "$secrets" -type d -exec chmod 0755 {} +

# in_pod CONFIG_DIR SECRET_KINDS AS CMD...: CMD inside the root as a pod would see it. SECRET_KINDS is a
# comma list of $secrets subdirectories mounted at /run/secrets/certsync/<kind>; AS is "user" (10001,
# no groups, no capabilities, no_new_privs) or "root" (to prove the root is read-only even for root).
# The inner shell runs as pid 1 of a new pid namespace in a new mount namespace; it exits with CMD.
in_pod() {
  local cfgdir=$1 kinds=$2 as=$3
  shift 3
  unshare --mount --pid --fork --kill-child --propagation private -- bash -c '
    set -euo pipefail
    r=$1 cfg=$2 kinds=$3 secrets=$4 sdir=$5 id=$6 as=$7
    shift 7
    mount --bind "$r" "$r"
    mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
    mount -t tmpfs -o nosuid,noexec,size=1m,mode=0755 tmpfs "$r/dev"
    for d in null zero random urandom; do
      : >"$r/dev/$d"
      mount --bind "/dev/$d" "$r/dev/$d"
    done
    # The emptyDir on /tmp (sizeLimit 64Mi; kubelet creates it 0777).
    mount -t tmpfs -o nosuid,nodev,size=64m,mode=0777 tmpfs "$r/tmp"
    mount --bind "$cfg" "$r/etc/certsync"
    mount -o remount,bind,ro "$r/etc/certsync"
    IFS=, read -r -a ks <<<"$kinds"
    for k in "${ks[@]}"; do
      # The container runtime creates mount points before the root goes read-only; so do we.
      mkdir -p "$r$sdir/$k"
      mount --bind "$secrets/$k" "$r$sdir/$k"
      mount -o remount,bind,ro "$r$sdir/$k"
    done
    mount -o remount,bind,ro "$r"
    if [ "$as" = root ]; then exec chroot "$r" "$@"; fi
    exec chroot "$r" /usr/bin/setpriv --reuid="$id" --regid="$id" --clear-groups --no-new-privs \
      --inh-caps=-all --bounding-set=-all -- "$@"
  ' in_pod "$work/root" "$cfgdir" "$kinds" "$secrets" "$SECRET_DIR" "$UID_GID" "$as" "$@"
}

checks=0
ok() {
  echo "ok: $*"
  checks=$((checks + 1))
}

# check_pod NAME CONFIG_FILE SECRET_KINDS BINARY
check_pod() {
  local name=$1 cfg=$2 kinds=$3 bin=$4 out rc
  local cfgdir incfg
  cfgdir=$(dirname "$cfg")
  incfg=/etc/certsync/$(basename "$cfg")

  out=$(in_pod "$cfgdir" "$kinds" user /bin/sh -c 'id -u; id -g; id -G')
  [ "$out" = "$(printf '%s\n%s\n%s' "$UID_GID" "$UID_GID" "$UID_GID")" ] ||
    fail "$name: expected to run as $UID_GID:$UID_GID with no other groups, got: $out"
  ok "$name: runs as uid/gid $UID_GID, no supplementary groups"

  out=$(in_pod "$cfgdir" "$kinds" user /usr/bin/ldd "$bin" 2>&1) || fail "$name: ldd $bin inside the root failed: $out"
  if grep -q 'not found' <<<"$out"; then
    fail "$name: $bin has missing shared libraries inside the root (add their packages to $list):
$(grep 'not found' <<<"$out")"
  fi
  ok "$name: ldd $bin: all $(grep -c '=>' <<<"$out") libraries resolve inside the root"

  rc=0
  out=$(in_pod "$cfgdir" "$kinds" user "$bin" --check-config --config "$incfg" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || fail "$name: $bin --check-config --config $incfg (from ${cfg#"$work"/pods/configs/}) exited $rc:
$out"
  ok "$name: $bin --check-config accepts the chart's ${cfg#"$work"/pods/configs/} (read-only root, non-root)"

  # Every path writable by the service's user. /proc and /dev are the runtime's own (prune them); the
  # answer must be exactly the /tmp emptyDir. /tmp appearing proves the scan can see a writable path.
  out=$(in_pod "$cfgdir" "$kinds" user /usr/bin/find / \( -path /proc -o -path /dev -o -path /sys \) -prune \
    -o -writable -print 2>/dev/null || true)
  grep -qx /tmp <<<"$out" || fail "$name: the scan did not find the /tmp emptyDir writable (scan: $out)"
  if grep -v '^/tmp\(/\|$\)' <<<"$out" | grep -q .; then
    fail "$name: paths writable by uid $UID_GID besides /tmp: $(grep -v '^/tmp\(/\|$\)' <<<"$out" | head -10 | paste -sd' ' -)"
  fi
  ok "$name: nothing writable by uid $UID_GID but /tmp"

  rc=0
  out=$(in_pod "$cfgdir" "$kinds" root /bin/sh -c 'echo x >/usr/local/bin/probe' 2>&1) || rc=$?
  [ "$rc" -ne 0 ] && grep -q 'Read-only file system' <<<"$out" ||
    fail "$name: root could write /usr/local/bin inside the pod: the root is not read-only ($out)"
  ok "$name: the root file system is read-only even for root"
}

check_pod collector "$collector_cfg" ldap,kafka /usr/local/bin/certsync-collector
check_pod publisher "$publisher_cfg" o365,kafka /usr/local/bin/certsync-publisher

# Without its Secret mounted, the publisher must refuse the config and name the missing file: proves the
# check above read the Secrets through the mounts (group 10001, 0440) and can fail.
rc=0
out=$(in_pod "$(dirname "$publisher_cfg")" kafka user /usr/local/bin/certsync-publisher --check-config \
  --config "/etc/certsync/$(basename "$publisher_cfg")" 2>&1) || rc=$?
[ "$rc" -ne 0 ] && grep -q "$SECRET_DIR/o365/" <<<"$out" ||
  fail "publisher: --check-config without the o365 Secret mounted did not fail naming $SECRET_DIR/o365/ (exit $rc): $out"
ok "publisher: without the o365 Secret mounted, --check-config refuses and names the file"

log "$checks checks passed in $((SECONDS - start_all)) s"
