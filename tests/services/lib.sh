# shellcheck shell=bash
# Shared helpers for the scripts that start real test servers. Source it; do not run it.
#
# Convention for every service script (kafka.sh, slapd.sh, samba.sh):
#   <svc>.sh start DIR [options]   start a server whose whole state lives in DIR; write DIR/env
#                                  (shell assignments, e.g. KAFKA_BOOTSTRAP=127.0.0.1:40123) and
#                                  DIR/pid; exit non-zero with the log tail on failure
#   <svc>.sh stop DIR              stop it by the PID in DIR/pid and check it is gone
# Tests read DIR/env. ctest fixtures call start/stop once per test group.

cs_die() {
  echo "error: $*" >&2
  exit 1
}

# Milliseconds since the epoch (GNU date), so durations need only shell arithmetic (no bc).
cs_now_ms() {
  date +%s%3N
}

# cs_since_s T0_MS: seconds since T0_MS (from cs_now_ms) with two decimals, e.g. "12.34".
cs_since_s() {
  local ms=$(($(cs_now_ms) - $1))
  printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10))
}

# Prints a TCP port on 127.0.0.1 that nothing listens on now.
cs_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# cs_pid_alive PID: true while PID runs. A zombie counts as gone: the process has exited, and a
# daemon orphaned by its start script waits for PID 1 to reap it (slow on some machines: ~1 s).
cs_pid_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

# cs_wait_port HOST PORT SECONDS PID: waits until HOST:PORT accepts connections;
# fails early if PID dies. Polls (a TCP connect is the event there is to wait on).
cs_wait_port() {
  local host=$1 port=$2 secs=$3 pid=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    if ! cs_pid_alive "$pid"; then
      return 1
    fi
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# cs_stop_pid PID SECONDS [SIGNAL]: sends SIGNAL (default TERM) to PID, waits for it to exit,
# then SIGKILL. Never kills by name.
cs_stop_pid() {
  local pid=$1 secs=$2 sig=${3:-TERM} i
  cs_pid_alive "$pid" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    cs_pid_alive "$pid" || return 0
    sleep 0.1
  done
  echo "warning: pid $pid still alive after ${secs}s of SIG$sig; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    cs_pid_alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

# cs_show_log FILE: prints the last lines of a server log, for a failing start or test.
cs_show_log() {
  local f=$1
  if [ -f "$f" ]; then
    echo "---- last 60 lines of $f ----" >&2
    tail -n 60 "$f" >&2
    echo "---- end of $f ----" >&2
  fi
}

# cs_o365_yaml AUTH: prints the publisher's "o365:" block for the Office 365 emulator whose env file has been
# loaded (the O365_* variables). AUTH is "certificate" (client certificate and key) or "secret" (client secret
# file). One copy, so a change to the emulator's settings reaches every test and bench script.
cs_o365_yaml() {
  cat <<EOF
o365:
  tenant_id: $O365_TENANT_ID
  tenant_domain: $O365_TENANT_DOMAIN
  client_id: $O365_CLIENT_ID
  authority_url: $O365_EMULATOR_URL
  graph_url: $O365_GRAPH_BASE
  exchange_url: $O365_EXCHANGE_BASE
  exchange_resource: https://outlook.office365.com
  graph_resource: https://graph.microsoft.com
EOF
  case ${1:-} in
    certificate)
      printf '  auth: certificate\n  certificate_file: "%s"\n  private_key_file: "%s"\n' \
        "$O365_CLIENT_CERT_FILE" "$O365_CLIENT_KEY_FILE"
      ;;
    secret) printf '  auth: secret\n  client_secret_file: "%s"\n' "$O365_CLIENT_SECRET_FILE" ;;
    *) cs_die "cs_o365_yaml: auth '${1:-}' is neither certificate nor secret" || return 1 ;;
  esac
  printf '  ca_file: "%s"\n' "$O365_EMULATOR_CA_FILE"
}
