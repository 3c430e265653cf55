#!/usr/bin/env bash
# The alert rules (deploy/helm/certsync/files/alerts.yaml) and the Grafana dashboard (files/dashboard.json):
#   1. promtool check rules: the rule file is valid (PromQL parses, templates compile),
#   2. promtool test rules tests/deploy/alerts-test.yaml: every alert fires where it should and nowhere
#      else (a case that fires and one that does not for each),
#   3. the same tests against a copy with one threshold changed must fail (the tests can fail),
#   4. docs/runbook.md has an entry per alert and each alert's runbook_url points at it,
#   5. the dashboard is valid JSON with PromQL targets, and every metric the dashboard and the alerts
#      name is registered by a service (a string literal in common/, collector/, publisher/).
#
#   alert-rules.sh WORK_DIR
set -euo pipefail

work=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
files=$root/deploy/helm/certsync/files
tools=$("$here/install-tools.sh" --print)
promtool=$tools/bin/promtool
rm -rf "$work"
mkdir -p "$work"

echo "== promtool check rules"
"$promtool" check rules "$files/alerts.yaml"
echo "== promtool test rules"
"$promtool" test rules "$here/alerts-test.yaml"

echo "== the tests can fail: CertsyncCollectorDirectoryLagHigh at 9000 s instead of 900 s"
sed 's/certsync_collector_directory_lag_seconds) > 900)/certsync_collector_directory_lag_seconds) > 9000)/' \
  "$files/alerts.yaml" >"$work/alerts.yaml"
cmp -s "$files/alerts.yaml" "$work/alerts.yaml" && { echo "FAIL: the mutation did not apply"; exit 1; }
sed "s#^  - \.\./\.\./deploy/helm/certsync/files/alerts.yaml\$#  - $work/alerts.yaml#" "$here/alerts-test.yaml" \
  >"$work/alerts-test.yaml"
grep -q "^  - $work/alerts.yaml\$" "$work/alerts-test.yaml" || { echo "FAIL: rule_files not redirected"; exit 1; }
if "$promtool" test rules "$work/alerts-test.yaml" >"$work/mutated.out" 2>&1; then
  echo "FAIL: promtool test rules passed against a broken threshold"
  exit 1
fi
grep -q CertsyncCollectorDirectoryLagHigh "$work/mutated.out" ||
  { echo "FAIL: the mutated run failed for another reason:"; cat "$work/mutated.out"; exit 1; }
echo "ok: the broken threshold is caught"

echo "== runbook: an entry per alert, and each runbook_url points at it"
n=0
while IFS= read -r alert; do
  grep -qx "## $alert" "$root/docs/runbook.md" || { echo "FAIL: docs/runbook.md has no '## $alert'"; exit 1; }
  anchor=$(tr '[:upper:]' '[:lower:]' <<<"$alert")
  grep -A30 -- "- alert: $alert\$" "$files/alerts.yaml" | grep -m1 'runbook_url:' |
    grep -qx "  *runbook_url: docs/runbook.md#$anchor" ||
    { echo "FAIL: $alert: runbook_url is not docs/runbook.md#$anchor"; exit 1; }
  n=$((n + 1))
done < <(sed -n 's/^ *- alert: \(.*\)$/\1/p' "$files/alerts.yaml")
[ "$n" -ge 5 ] || { echo "FAIL: only $n alerts found"; exit 1; }
echo "runbook: $n entries"

echo "== dashboard and metric names"
python3 "$here/metric-names.py" check-dashboard "$files/dashboard.json" "$root/common" "$root/collector" \
  "$root/publisher"
echo "alert-rules: ok"
