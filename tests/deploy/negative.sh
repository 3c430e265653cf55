#!/usr/bin/env bash
# The deploy checks must be able to fail: each case below breaks one thing and expects the chart, a
# validator or a binary to refuse it with a message naming the problem.
#
#   negative.sh BUILD_DIR WORK_DIR
set -euo pipefail

build=$1 work=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
chart=$root/deploy/helm/certsync
values=$chart/ci/one-site-values.yaml
tools=$("$here/install-tools.sh" --print)
helm=$tools/bin/helm
failures=0
rm -rf "$work"
mkdir -p "$work"

# expect_fail NAME PATTERN CMD...: CMD must exit non-zero and print PATTERN (grep -E).
expect_fail() {
  local name=$1 pattern=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "FAIL: $name: accepted, expected a refusal matching /$pattern/"
    failures=$((failures + 1))
  elif ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $name: refused (exit $rc) but without /$pattern/:"
    echo "$out" | head -5
    failures=$((failures + 1))
  else
    echo "ok: $name"
  fi
}

render() { "$helm" template t "$chart" --kube-version 1.30.0 -f "$values" "$@"; }

expect_fail "more publishers than partitions" 'publisher.replicas \(13\) exceeds topics.events.partitions \(12\)' \
  render --set publisher.replicas=13
expect_fail "no Kafka bootstrap servers" 'kafka.bootstrapServers is required' \
  render --set kafka.bootstrapServers=
expect_fail "transactional.id in values" 'transactional.id' \
  render --set-string 'kafka.config.transactional\.id=x'
expect_fail "min.insync above replicas" 'minInsyncReplicas \(4\) exceeds topics.replicas \(3\)' \
  render --set topics.minInsyncReplicas=4
printf 'collector:\n  sources:\n    - id: x\n      ldap: {url: "ldaps://dc"}\n' >"$work/no-egress.yaml"
expect_fail "source without directory egress" 'sources\[x\].networkPolicy.to is required' \
  render -f "$work/no-egress.yaml"
expect_fail "proxy mode without proxy url" 'set publisher.egress.proxy.url' \
  render --set publisher.egress.mode=proxy
expect_fail "Lease election behind a NetworkPolicy without the API server" 'networkPolicy.kubeApi is empty' \
  render --set-json 'networkPolicy.kubeApi={}'

# values.schema.json: a typo or a wrong type in a key the chart owns fails before anything renders, and the
# message names the key (helm's JSON-schema validation).
expect_fail "typo in a chart key (schema)" "at '/collector': additional properties 'replicaz' not allowed" \
  render --set collector.replicaz=3
expect_fail "typo in a nested chart key (schema)" "at '/kafka/sasl/passwordSecret': additional properties 'nmae' not allowed" \
  render --set kafka.sasl.passwordSecret.nmae=x
expect_fail "string for an integer (schema)" "at '/publisher/replicas': got string, want integer" \
  render --set-string publisher.replicas=two
expect_fail "unknown egress mode (schema)" "at '/publisher/egress/mode': value must be one of 'cidrs', 'proxy'" \
  render --set publisher.egress.mode=direct
printf 'collector:\n  sources:\n    - site: x\n      ldap: {url: "ldaps://dc"}\n' >"$work/no-id.yaml"
expect_fail "source without id (schema)" "at '/collector/sources/0': missing property 'id'" \
  render -f "$work/no-id.yaml"

render >"$work/good.yaml"
# An unknown field in a Deployment spec (k8s.io/api strict decoding).
awk '/^kind: Deployment/{d=1} d&&/^spec:/{print; print "  replicaz: 2"; d=0; next} {print}' "$work/good.yaml" >"$work/unknown.yaml"
expect_fail "unknown Deployment field" 'unknown field "replicaz"' "$tools/bin/k8svalidate" "$work/unknown.yaml"
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "$work/good.yaml" >"$work/rw.yaml"
expect_fail "writable root file system" 'readOnlyRootFilesystem is not true' "$tools/bin/k8svalidate" "$work/rw.yaml"
# An unknown field in a ServiceMonitor endpoint (prometheus-operator API types).
sed 's/^      scrapeTimeout:/      scrapeTimeoutz:/' "$work/good.yaml" >"$work/sm.yaml"
expect_fail "unknown ServiceMonitor field" 'unknown field.*scrapeTimeoutz' "$tools/bin/k8svalidate" "$work/sm.yaml"
# An unknown field in a PrometheusRule rule (prometheus-operator API types).
sed 's/^        for: 10m$/        forr: 10m/' "$work/good.yaml" >"$work/rule.yaml"
expect_fail "unknown PrometheusRule field" 'unknown field.*forr' "$tools/bin/k8svalidate" "$work/rule.yaml"

# KafkaTopic: an unknown spec field, and the events topic without LogAppendTime.
sed 's/^  replicas: 3$/  replicas: 3\n  replicaz: 3/' "$work/good.yaml" >"$work/kt-unknown.yaml"
expect_fail "unknown KafkaTopic field" 'replicaz' \
  java -cp "$tools/strimzi/lib/*" "$here/strimzi/ValidateKafkaTopic.java" "$work/kt-unknown.yaml"
sed 's/message.timestamp.type: LogAppendTime/message.timestamp.type: CreateTime/' "$work/good.yaml" >"$work/kt-ts.yaml"
expect_fail "events topic without LogAppendTime" 'LogAppendTime' \
  java -cp "$tools/strimzi/lib/*" "$here/strimzi/ValidateKafkaTopic.java" --certsync-policy "$work/kt-ts.yaml"
sed 's/retention.ms:/retention.msec:/' "$work/good.yaml" >"$work/kt-cfg.yaml"
expect_fail "not a Kafka topic config" 'retention.msec is not a Kafka topic config' \
  java -cp "$tools/strimzi/lib/*" "$here/strimzi/ValidateKafkaTopic.java" "$work/kt-cfg.yaml"

# The services' own check refuses a key the chart could have rendered wrongly.
render --set-string 'collector.sources[0].config.ldap.urll=x' >"$work/badkey.yaml"
"$tools/bin/k8svalidate" -configs "$work/configs" "$work/badkey.yaml" >/dev/null
sed "s#/run/secrets/certsync/#$root/tests/data/config/secrets/#g" \
  "$work/configs/t-certsync-collector-corp/collector.yaml" >"$work/badkey-collector.yaml"
expect_fail "collector config with an unknown key" 'ldap.urll' \
  "$build/collector/certsync-collector" --check-config --config "$work/badkey-collector.yaml"

if [ "$failures" -ne 0 ]; then
  echo "negative: $failures case(s) not refused"
  exit 1
fi
echo "negative: every broken input refused"
