#!/bin/sh
# check_example_config.sh BINARY EXAMPLE SECRETS_DIR: the example configs under deploy/config point at
# Kubernetes secret mounts (/run/secrets/certsync/...). Copy one to a temporary folder with those paths
# rewritten to the fake test secrets, and require `--check-config` to accept it.
set -u
bin=$1 example=$2 secrets=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
name=$(basename "$example")
grep -q '/run/secrets/certsync/' "$example" || { echo "no /run/secrets/certsync/ paths in $example"; exit 1; }
sed "s#/run/secrets/certsync/#$secrets/#g" "$example" >"$tmp/$name"
"$bin" --check-config --config "$tmp/$name" 2>&1
