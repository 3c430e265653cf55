#!/usr/bin/env bash
# col_ldap_transient: the collector's LDAP connect classifies a connection that a server drops as retriable
# (the service reconnects with backoff, issue 7 "restart the directory"), and only a certificate that does
# not verify as fatal. No fixture: small loopback servers (python3) stand in for a directory that is going
# down or coming up. Each case runs `col_probe CONFIG info` (one connect + bind) against ldaps://:
#   1. the server accepts and closes during the TLS handshake (a DC in shutdown): retriable
#      (GnuTLS says "The TLS connection was non-properly terminated."; that once read as a certificate problem)
#   2. the server sends a TLS fatal alert instead of its hello: retriable
#   3. the server completes the TLS handshake, then drops the connection before the bind's answer: retriable
#      (the certificate verifies, so it is not "the certificate was not accepted")
#   4. the server's certificate is from another CA: not retriable, and the message says check ldap.tls.ca_file
# ctest sets COL_PROBE and CS_WORK_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../services/lib.sh
. "$HERE/../services/lib.sh"
TOOLS=$(cd "$HERE/../tools" && pwd)
COL_PROBE=${COL_PROBE:?COL_PROBE is not set; run through ctest}
W=${CS_WORK_DIR:?CS_WORK_DIR is not set; run through ctest}
rm -rf "$W"
mkdir -p "$W"
SRV_PID=""
cleanup() { [ -z "$SRV_PID" ] || cs_stop_pid "$SRV_PID" 5 TERM || true; }
trap cleanup EXIT
fails=0

"$TOOLS/test_ca.sh" init "$W/ca" >/dev/null 2>&1
"$TOOLS/test_ca.sh" server "$W/ca" srv IP:127.0.0.1 >/dev/null 2>&1
"$TOOLS/test_ca.sh" init "$W/other" >/dev/null 2>&1
printf 'secret' >"$W/pw"

# serve MODE: a loopback server in the background that treats every connection by MODE (drop, alert,
# tls-drop) until stopped; sets PORT once it listens (awaited from its ready file, bounded).
serve() {
  rm -f "$W/ready"
  python3 - "$1" "$W/ca/srv.pem" "$W/ca/srv.key" "$W/ready" <<'PY' &
import os, socket, ssl, sys
mode, cert, key, ready = sys.argv[1:5]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
with open(ready + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.replace(ready + ".tmp", ready)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        if mode == "drop":
            c.recv(4096)  # the ClientHello, then gone
        elif mode == "alert":
            c.recv(4096)
            c.sendall(b"\x15\x03\x03\x00\x02\x02\x28")  # fatal handshake_failure
        elif mode == "tls-drop":
            t = ctx.wrap_socket(c, server_side=True)
            t.recv(4096)  # the bind request, never answered
            c = t
    except (OSError, ssl.SSLError):
        pass
    c.close()
PY
  SRV_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [ -f "$W/ready" ] && break
    cs_pid_alive "$SRV_PID" || cs_die "the $1 server exited at start"
    sleep 0.05
  done
  [ -f "$W/ready" ] || cs_die "the $1 server did not listen within 5 s"
  PORT=$(cat "$W/ready")
}

# probe CASE CA_FILE WANT_RETRIABLE [MESSAGE_REGEX]: col_probe info against ldaps://127.0.0.1:PORT.
probe() {
  local out
  cat >"$W/c.yaml" <<EOF
source: {id: transient}
ldap:
  url: "ldaps://127.0.0.1:$PORT"
  bind_dn: "cn=admin,dc=example,dc=test"
  password_file: "$W/pw"
  base_dns: ["dc=example,dc=test"]
  timeout: 3s
  tls: {ca_file: "$2"}
topics: {events: e, checkpoint: c, held: h}
kafka: {bootstrap.servers: "127.0.0.1:9"}
EOF
  out=$(timeout 30 "$COL_PROBE" "$W/c.yaml" info 2>"$W/probe.err" || true)
  if ! grep -q "\"type\":\"error\",\"retriable\":$3" <<<"$out" || ! grep -Eq "${4:-.}" <<<"$out"; then
    echo "FAIL: case $1: want retriable:$3${4:+ and /$4/}, got: $out $(cat "$W/probe.err")" >&2
    fails=$((fails + 1))
  else
    echo "ok: case $1: retriable:$3 ($(sed 's/.*"message":"\([^"]*\)".*/\1/' <<<"$out" | cut -c1-160))"
  fi
  cs_stop_pid "$SRV_PID" 5 TERM || true
  SRV_PID=""
}

serve drop
probe "1 (dropped during the TLS handshake)" "$W/ca/ca.pem" true
serve alert
probe "2 (TLS fatal alert)" "$W/ca/ca.pem" true
serve tls-drop
probe "3 (dropped after the TLS handshake)" "$W/ca/ca.pem" true
serve tls-drop
probe "4 (certificate from another CA)" "$W/other/ca.pem" false 'check ldap.tls.ca_file'
[ "$fails" -eq 0 ] || exit 1
