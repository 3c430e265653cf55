#!/usr/bin/env bash
# One deploy check of the Helm chart with one values file:
#   1. helm lint and helm template (kube-version pinned: a go-installed helm defaults to 1.20),
#   2. every rendered manifest strictly against the Kubernetes / Prometheus Operator API types (k8svalidate),
#   3. every KafkaTopic against Strimzi's API classes plus certsync's durability policy,
#   4. every rendered service config, copied out of its ConfigMap, through the binary's --check-config,
#      with fake secret files at the paths the Secrets are mounted on.
#
#   chart-check.sh VALUES_FILE BUILD_DIR WORK_DIR
# BUILD_DIR holds collector/certsync-collector and publisher/certsync-publisher. Exit 0 when all pass.
set -euo pipefail

values=$1 build=$2 work=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
chart=$root/deploy/helm/certsync
tools=$("$here/install-tools.sh" --print)
helm=$tools/bin/helm
KUBE_VERSION=1.30.0
SECRET_DIR=/run/secrets/certsync

rm -rf "$work"
mkdir -p "$work"
echo "== helm lint ($values)"
"$helm" lint --strict --kube-version "$KUBE_VERSION" "$chart" -f "$values"
echo "== helm template"
"$helm" template certsync-test "$chart" --namespace certsync --kube-version "$KUBE_VERSION" \
  -f "$values" >"$work/manifests.yaml"
echo "== k8svalidate"
"$tools/bin/k8svalidate" -configs "$work/configs" "$work/manifests.yaml"
echo "== PrometheusRule from files/alerts.yaml"
# The chart renders the one rule file: the same alerts with the same expressions, no copy to drift.
want=$(grep -c '^ *- alert: ' "$chart/files/alerts.yaml")
got=$(grep -c '^ *- alert: ' "$work/manifests.yaml" || true)
if [ "$got" -ne "$want" ]; then
  echo "FAIL: the rendered PrometheusRule has $got alerts, files/alerts.yaml $want"
  exit 1
fi
# Same indentation in both: toYaml under spec.groups puts a rule where the file has it.
while IFS= read -r line; do
  grep -qxF -- "$line" "$work/manifests.yaml" || { echo "FAIL: the rendered rules lack: $line"; exit 1; }
done < <(awk '/^      - alert: /{print} /^        [a-z_]+:/{e=0} e&&NF{print} /^        expr: \|$/{e=1}' \
  "$chart/files/alerts.yaml")
echo "PrometheusRule: $got alerts"
echo "== Strimzi KafkaTopic"
java -cp "$tools/strimzi/lib/*" "$here/strimzi/ValidateKafkaTopic.java" --certsync-policy --expect-topics 7 \
  "$work/manifests.yaml"

echo "== --check-config of every rendered config"
# The Secrets' mount points, with fake contents of the right kind (PEM files where PEM is expected).
fake=$work/secrets
mkdir -p "$fake/ldap" "$fake/kafka" "$fake/o365"
data=$root/tests/data/config/secrets
printf 'ldap-password\n' >"$fake/ldap/password"
cp "$data/ldap-ca.pem" "$fake/ldap/ca.crt"
cp "$data/kafka-ca.pem" "$fake/kafka/ca.crt"
printf 'kafka-password\n' >"$fake/kafka/sasl-password"
cp "$data/o365-certificate.pem" "$fake/o365/tls.crt"
cp "$data/o365-private-key.pem" "$fake/o365/tls.key"
cp "$data/o365-private-key.pem" "$fake/o365/tls.key"
printf 'client-secret\n' >"$fake/o365/client-secret"
cp "$data/kafka-ca.pem" "$fake/o365/ca.crt"

checked=0
while IFS= read -r -d '' cfg; do
  # Only the mount prefix changes: everything else is byte for byte what the pod reads.
  local_cfg=${cfg%.yaml}.local.yaml
  sed "s#$SECRET_DIR/#$fake/#g" "$cfg" >"$local_cfg"
  case $cfg in
    */collector.yaml) bin=$build/collector/certsync-collector ;;
    *) bin=$build/publisher/certsync-publisher ;;
  esac
  if ! out=$("$bin" --check-config --config "$local_cfg" 2>&1); then
    echo "FAIL: $(basename "$bin") --check-config rejects the config rendered into ${cfg#"$work"/configs/}:"
    echo "$out"
    exit 1
  fi
  echo "$(basename "$bin"): ${cfg#"$work"/configs/}: ok"
  checked=$((checked + 1))
done < <(find "$work/configs" -name '*.yaml' ! -name '*.local.yaml' -print0 | sort -z)
if [ "$checked" -lt 2 ]; then
  echo "FAIL: only $checked config file(s) rendered; expected a collector and a publisher config at least"
  exit 1
fi
echo "chart-check: $values: ok ($checked configs)"
