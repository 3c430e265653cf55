#!/usr/bin/env bash
# check_config_doc: every key a service's config table defines (its --help-config output) is documented in
# docs/configuration.md as `key`. Fails naming each missing key and the service.
# Usage: check_config_doc.sh DOC BINARY...
set -euo pipefail
doc=$1
shift
[ -r "$doc" ] || { echo "check_config_doc: $doc is not readable" >&2; exit 2; }
missing=0
total=0
for bin in "$@"; do
  keys=$("$bin" --help-config | sed -n 's/^\([a-z][A-Za-z0-9_.]*\.\{0,1\}\)  (.*/\1/p')
  [ -n "$keys" ] || { echo "check_config_doc: $bin --help-config listed no keys" >&2; exit 2; }
  while IFS= read -r k; do
    total=$((total + 1))
    if ! grep -qF "\`$k\`" "$doc"; then
      echo "$(basename "$bin"): config key $k is not documented in $doc: add it to the key reference" >&2
      missing=$((missing + 1))
    fi
  done <<<"$keys"
done
if [ "$missing" -gt 0 ]; then
  echo "check_config_doc: $missing of $total keys undocumented" >&2
  exit 1
fi
echo "check_config_doc: all $total keys documented"
