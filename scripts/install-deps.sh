#!/usr/bin/env bash
# Installs every Debian 12 package certsync needs to build and test.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format
  librdkafka-dev libssl-dev libldap-dev libcurl4-openssl-dev
  libprotobuf-c-dev protobuf-c-compiler libyaml-dev libmicrohttpd-dev libcmocka-dev libjansson-dev
  openssl ldap-utils slapd samba samba-dsdb-modules samba-ad-provision samba-vfs-modules ldb-tools krb5-user
  openjdk-17-jre-headless maven python3 iproute2 procps curl ca-certificates
  shellcheck debootstrap
  clang-14 libclang-rt-14-dev valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Python packages for the test tools, on the machine's python3: tests/tools/gen_users.py needs
# "cryptography", the Office 365 emulator (tests/emulator) needs it too, and its tests run under pytest.
# ensure_py_module IMPORT_NAME PIP_NAME DEBIAN_PACKAGE: installs only when the import fails.
ensure_py_module() {
  local module=$1 pip_name=$2 deb=$3 sudo=""
  python3 -c "import $module" 2>/dev/null && return 0
  echo "install-deps: installing the Python package $pip_name"
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if python3 -m pip --version >/dev/null 2>&1; then
    # Debian 12 marks its python3 externally managed (PEP 668): retry with the override.
    $sudo python3 -m pip install -q "$pip_name" ||
      $sudo python3 -m pip install -q --break-system-packages "$pip_name"
  else
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$deb"
  fi
  python3 -c "import $module" || { echo "install-deps: $pip_name still missing" >&2; exit 1; }
}
ensure_py_modules() {
  ensure_py_module cryptography cryptography python3-cryptography
  ensure_py_module pytest pytest python3-pytest
}

# The Debian slapd package starts (and enables) a system slapd on *:389, which takes the port the Samba
# test DC binds on its loopback alias (tests/services/samba.sh) and can answer the tests' own probes.
# certsync's tests run their own slapd, so stop and disable the system one, on every run: a reboot or a
# package upgrade can bring it back. Never by process name: only through the init system or its pidfile.
stop_system_slapd() {
  local sudo="" pidfile=/var/run/slapd/slapd.pid pid
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl cat slapd.service >/dev/null 2>&1; then
      $sudo systemctl disable --now slapd >/dev/null 2>&1 || true
    fi
  elif [ -x /etc/init.d/slapd ]; then
    if command -v service >/dev/null 2>&1; then
      $sudo service slapd stop >/dev/null 2>&1 || true
    else
      $sudo /etc/init.d/slapd stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
      $sudo update-rc.d slapd disable >/dev/null 2>&1 || true
    fi
  fi
  # Still running (no init system answered): signal the pid in its pidfile, if it really is a slapd.
  [ -f "$pidfile" ] || return 0
  pid=$(head -c 32 "$pidfile" 2>/dev/null | tr -dc '0-9')
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = slapd ] || return 0
  echo "install-deps: stopping the system slapd (pid $pid from $pidfile)"
  $sudo kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.2
  done
  echo "install-deps: the system slapd (pid $pid) did not stop; stop it by hand (it holds port 389)" >&2
  return 1
}

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  stop_system_slapd
  ensure_py_modules
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
# slapd and krb5 ask questions on install; answer them with defaults.
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
stop_system_slapd
ensure_py_modules
