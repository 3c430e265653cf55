#!/usr/bin/env bash
# The Office 365 emulator (o365emu) as a test service. Follows tests/services/lib.sh.
#
#   emulator.sh start DIR [--seed FILE] [--config FILE] [--plain-http]
#        create a test CA + server certificate (tests/tools/test_ca.sh), the test app's certificate,
#        key and client secret, start o365emu over HTTPS on free 127.0.0.1 ports, wait for its ready
#        file, write DIR/env and DIR/pid. Everything lives in DIR.
#   emulator.sh stop DIR
#        stop it by the PID in DIR/pid and check it is gone.
#
# DIR/env: O365_EMULATOR_URL, O365_EMULATOR_ADMIN_URL, O365_EMULATOR_CA_FILE, O365_EMULATOR_PID,
# O365_TENANT_ID, O365_TENANT_DOMAIN, O365_TOKEN_URL, O365_EXCHANGE_BASE, O365_GRAPH_BASE,
# O365_CLIENT_ID, O365_CLIENT_SECRET_FILE, O365_CLIENT_CERT_FILE, O365_CLIENT_KEY_FILE,
# O365_OTHER_CERT_FILE, O365_OTHER_KEY_FILE (a certificate the app does NOT have: negative tests).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../services/lib.sh
. "$ROOT/tests/services/lib.sh"

CLIENT_ID=${O365_CLIENT_ID:-11111111-aaaa-4bbb-8ccc-000000000001}
START_TIMEOUT=${O365_EMULATOR_START_TIMEOUT:-20}

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# make_app_cert DIR NAME CN: a self-signed RSA 2048 certificate + key, as an app registration holds.
make_app_cert() {
  local dir=$1 name=$2 cn=$3
  (
    umask 077
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 30 -keyout "$dir/$name.key" \
      -out "$dir/$name.pem" -subj "/CN=$cn" 2>/dev/null
  ) || cs_die "openssl could not create the app certificate $dir/$name.pem"
}

cmd_start() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  shift
  local seed=$HERE/fixtures/tenant.json config="" plain=0
  while [ $# -gt 0 ]; do
    case $1 in
      --seed) seed=${2:-}; shift 2 ;;
      --config) config=${2:-}; shift 2 ;;
      --plain-http) plain=1; shift ;;
      *) cs_die "emulator.sh start: unknown option '$1' (expected --seed FILE, --config FILE, --plain-http)" ;;
    esac
  done
  [ -f "$seed" ] || cs_die "emulator.sh: seed file '$seed' not found; pass --seed FILE"
  python3 -c 'import cryptography' 2>/dev/null ||
    cs_die "python3 module 'cryptography' missing: run scripts/install-deps.sh"
  if [ -f "$dir/pid" ] && cs_pid_alive "$(cat "$dir/pid")"; then
    cs_die "emulator already running in $dir (pid $(cat "$dir/pid")): run 'emulator.sh stop $dir' first"
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  if [ -x "$ROOT/tests/tools/test_ca.sh" ]; then
    "$ROOT/tests/tools/test_ca.sh" init "$dir/ca" >/dev/null
    "$ROOT/tests/tools/test_ca.sh" server "$dir/ca" o365emu >/dev/null
  else
    cs_die "tests/tools/test_ca.sh not found: the emulator's HTTPS certificate comes from it"
  fi
  make_app_cert "$dir" app "certsync test app"
  make_app_cert "$dir" other "certsync unregistered cert"
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(30), end="")' >"$dir/app.secret")

  # The seed as given, plus the test app with its certificate and secret.
  python3 - "$seed" "$dir/seed.json" "$CLIENT_ID" "$dir/app.pem" "$dir/app.secret" <<'PY'
import json, sys
seed, out, cid, pem, secret = sys.argv[1:]
doc = json.load(open(seed))
apps = [a for a in doc.get("apps", []) if a.get("client_id") != cid]
apps.insert(0, {"client_id": cid, "display_name": "certsync test app",
                "secrets": [{"value": open(secret).read()}], "certificates": [open(pem).read()]})
doc["apps"] = apps
json.dump(doc, open(out, "w"), indent=1)
PY

  local -a args=(--seed "$dir/seed.json" --port 0 --admin-port 0 --ready-file "$dir/ready.json")
  if [ "$plain" -eq 1 ]; then
    args+=(--plain-http)
  else
    args+=(--tls-cert "$dir/ca/o365emu-chain.pem" --tls-key "$dir/ca/o365emu.key")
  fi
  [ -z "$config" ] || args+=(--config "$config")
  # setsid: the emulator must not die with the ctest process group that started it.
  PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} setsid python3 -m o365emu "${args[@]}" \
    </dev/null >"$dir/emulator.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"

  # Await the ready file (written atomically once both listeners are bound); fail early if it dies.
  local i
  for ((i = 0; i < START_TIMEOUT * 20; i++)); do
    [ -s "$dir/ready.json" ] && break
    if ! cs_pid_alive "$pid"; then
      cs_show_log "$dir/emulator.log"
      cs_die "emulator.sh: o365emu exited during start (log above)"
    fi
    sleep 0.05
  done
  if [ ! -s "$dir/ready.json" ]; then
    cs_show_log "$dir/emulator.log"
    cmd_stop "$dir" || true
    cs_die "emulator.sh: o365emu not ready after ${START_TIMEOUT}s (log above)"
  fi
  local url admin tid domain
  url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$dir/ready.json")
  admin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_url"])' "$dir/ready.json")
  tid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tenant_id"])' "$dir/seed.json")
  domain=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["domain"])' "$dir/seed.json")
  {
    echo "O365_EMULATOR_URL=$url"
    echo "O365_EMULATOR_ADMIN_URL=$admin"
    echo "O365_EMULATOR_CA_FILE=$dir/ca/ca.pem"
    echo "O365_EMULATOR_PID=$pid"
    echo "O365_TENANT_ID=$tid"
    echo "O365_TENANT_DOMAIN=$domain"
    echo "O365_TOKEN_URL=$url/$tid/oauth2/v2.0/token"
    echo "O365_EXCHANGE_BASE=$url"
    echo "O365_GRAPH_BASE=$url"
    echo "O365_CLIENT_ID=$CLIENT_ID"
    echo "O365_CLIENT_SECRET_FILE=$dir/app.secret"
    echo "O365_CLIENT_CERT_FILE=$dir/app.pem"
    echo "O365_CLIENT_KEY_FILE=$dir/app.key"
    echo "O365_OTHER_CERT_FILE=$dir/other.pem"
    echo "O365_OTHER_KEY_FILE=$dir/other.key"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  echo "emulator.sh: o365emu serving at $url (admin $admin, env: $dir/env)"
}

cmd_stop() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  [ -f "$dir/pid" ] || { echo "emulator.sh: no $dir/pid: nothing to stop"; return 0; }
  local pid
  pid=$(cat "$dir/pid")
  cs_stop_pid "$pid" 10 || true
  if cs_pid_alive "$pid"; then
    cs_die "emulator.sh stop: pid $pid still running"
  fi
  rm -f "$dir/pid"
  echo "emulator.sh: stopped o365emu in $dir"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) usage ;;
esac
