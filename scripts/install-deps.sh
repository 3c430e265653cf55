#!/usr/bin/env bash
# Installs every Debian 12 package certsync needs to build and test.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format
  librdkafka-dev libssl-dev libldap-dev libcurl4-openssl-dev
  libprotobuf-c-dev protobuf-c-compiler libyaml-dev libmicrohttpd-dev libcmocka-dev
  openssl ldap-utils slapd samba samba-dsdb-modules samba-ad-provision samba-vfs-modules ldb-tools krb5-user
  openjdk-17-jre-headless maven python3 iproute2 procps curl ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
# slapd and krb5 ask questions on install; answer them with defaults.
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian slapd package starts a system slapd on :389; certsync's tests run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet slapd 2>/dev/null; then
  $SUDO systemctl stop slapd || true
fi
