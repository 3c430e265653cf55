#!/usr/bin/env bash
# Installs the tools the deploy checks (ctest label "deploy") use, from the package registries only:
#   helm          go install helm.sh/helm/v3/cmd/helm@HELM_VERSION           (Go module proxy)
#   promtool      go install github.com/prometheus/prometheus/cmd/promtool@PROMTOOL_VERSION (Go module proxy)
#   k8svalidate   go build of tests/deploy/k8svalidate (k8s.io/api, prometheus-operator API types)
#   strimzi jars  mvn dependency:copy-dependencies of tests/deploy/strimzi/pom.xml (Maven Central)
#   ShellCheck    from the Debian package (shellcheck)
# Everything lands in ${CS_CACHE_DIR:-$HOME/.cache/certsync}/deploy-tools (outside git), keyed by version
# or by a hash of the sources, so a second run does nothing and takes well under a second.
#
#   tests/deploy/install-tools.sh            install what is missing, print the tool directory
#   tests/deploy/install-tools.sh --print    print the tool directory only (no installing)
#
# Measured cold on the 2-core machines: helm ~6-9 min of compile when the machine is busy (see
# docs/deploy.md "Checks"), promtool several minutes likewise, k8svalidate ~1-2 min, strimzi jars ~40 s,
# ShellCheck (Debian package) a few seconds.
set -euo pipefail

HELM_VERSION=v3.22.0
# Prometheus' Go module versions are v0.<minor><patch>.x: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION=v0.316.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}/deploy-tools
BIN=$CACHE/bin

if [ "${1:-}" = "--print" ]; then
  echo "$CACHE"
  exit 0
fi

mkdir -p "$BIN"
# Go's caches stay inside our cache too, so a clean machine's HOME is not littered and CI can keep them.
export GOBIN=$BIN GOPATH=$CACHE/gopath GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gocache GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local
# One installer at a time (ctest may start several deploy tests at once; they wait for the fixture, but a
# developer may run this by hand meanwhile).
exec 9>"$CACHE/.lock"
flock 9

log() { echo "install-tools: $*" >&2; }

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    log "go is not on PATH: install Go 1.24 or newer (the machine image has /usr/local/go)"
    exit 1
  fi
}

# helm, stamped with its version.
if [ ! -x "$BIN/helm" ] || [ "$(cat "$BIN/helm.version" 2>/dev/null)" != "$HELM_VERSION" ]; then
  need_go
  log "building helm $HELM_VERSION (cold: several minutes)"
  start=$SECONDS
  go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" >"$BIN/helm.version"
  log "helm built in $((SECONDS - start)) s"
fi

# promtool (alert rules: check and unit tests), stamped with its version.
if [ ! -x "$BIN/promtool" ] || [ "$(cat "$BIN/promtool.version" 2>/dev/null)" != "$PROMTOOL_VERSION" ]; then
  need_go
  log "building promtool $PROMTOOL_VERSION (cold: several minutes)"
  start=$SECONDS
  go install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  echo "$PROMTOOL_VERSION" >"$BIN/promtool.version"
  log "promtool built in $((SECONDS - start)) s"
fi

# k8svalidate, stamped with a hash of its sources so an edit rebuilds it.
src_hash=$(cat "$HERE"/k8svalidate/go.mod "$HERE"/k8svalidate/go.sum "$HERE"/k8svalidate/*.go | sha256sum | cut -c1-16)
if [ ! -x "$BIN/k8svalidate" ] || [ "$(cat "$BIN/k8svalidate.version" 2>/dev/null)" != "$src_hash" ]; then
  need_go
  log "building k8svalidate"
  start=$SECONDS
  (cd "$HERE/k8svalidate" && go build -o "$BIN/k8svalidate" .)
  echo "$src_hash" >"$BIN/k8svalidate.version"
  log "k8svalidate built in $((SECONDS - start)) s"
fi

# Strimzi API jars for tests/deploy/strimzi/ValidateKafkaTopic.java.
pom_hash=$(sha256sum "$HERE/strimzi/pom.xml" | cut -c1-16)
if [ "$(cat "$CACHE/strimzi/version" 2>/dev/null)" != "$pom_hash" ]; then
  log "fetching the Strimzi API jars (Maven Central)"
  rm -rf "$CACHE/strimzi"
  mkdir -p "$CACHE/strimzi"
  mvn -q -B -Dstyle.color=never -f "$HERE/strimzi/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$CACHE/strimzi/lib" -DincludeScope=runtime
  rm -rf "$HERE/strimzi/target"
  echo "$pom_hash" >"$CACHE/strimzi/version"
fi

if ! command -v shellcheck >/dev/null 2>&1; then
  log "installing shellcheck (Debian)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends shellcheck >/dev/null ||
    { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends shellcheck; }
fi

echo "$CACHE"
