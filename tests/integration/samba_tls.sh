#!/usr/bin/env bash
# samba_tls: the Samba DC serves simple bind over plain LDAP, StartTLS and LDAPS; TLS verifies with
# the test CA (certificate SAN = the DC's own 127.88.x.y address) and fails with an unrelated CA.
set -euo pipefail
. "$(dirname "$0")/it_lib.sh"
it_init
IT_LOG=$SAMBA_LOG
search() { # search URL [extra args]
  local url=$1
  shift
  LDAPTLS_REQCERT=demand ldapsearch -x -LLL -H "$url" -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" \
    -b "$SAMBA_BASE" -s base "$@" dn
}
for mode in plain starttls ldaps; do
  case $mode in
    plain) args=("$SAMBA_URL") ;;
    starttls) args=("$SAMBA_URL" -ZZ) ;;
    ldaps) args=("$SAMBA_LDAPS_URL") ;;
  esac
  LDAPTLS_CACERT=$SAMBA_CA_FILE search "${args[@]}" >"$W/$mode.out" 2>&1 || {
    cat "$W/$mode.out" >&2
    it_fail "simple bind + search over $mode"
  }
  grep -qi "^dn: $SAMBA_BASE" "$W/$mode.out" || it_fail "$mode search returned no base entry"
  it_ok "$mode: bind as $SAMBA_BIND_DN and search"
done
# The UPN form binds too (what services.md and most AD tooling use).
LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand ldapsearch -x -LLL -H "$SAMBA_LDAPS_URL" \
  -D "$SAMBA_BIND_UPN" -y "$SAMBA_PASSWORD_FILE" -b "$SAMBA_BASE" -s base dn >/dev/null ||
  it_fail "LDAPS bind as $SAMBA_BIND_UPN"
it_ok "UPN bind over LDAPS"

"$TOOLS/test_ca.sh" other "$W/other"
if LDAPTLS_CACERT=$W/other/other-ca.pem search "$SAMBA_URL" -ZZ >"$W/neg1.out" 2>&1; then
  it_fail "StartTLS succeeded although the client trusts only an unrelated CA"
fi
if LDAPTLS_CACERT=$W/other/other-ca.pem search "$SAMBA_LDAPS_URL" >"$W/neg2.out" 2>&1; then
  it_fail "LDAPS succeeded although the client trusts only an unrelated CA"
fi
openssl s_client -connect "$SAMBA_HOST:636" -CAfile "$W/other/other-ca.pem" -verify_return_error \
  </dev/null >"$W/neg3.out" 2>&1 && it_fail "openssl s_client accepted the DC with an unrelated CA"
grep -qi "unable to get local issuer certificate\|certificate verify failed" "$W/neg3.out" ||
  it_fail "the handshake failed, but not on certificate verification (see $W/neg3.out)"
it_ok "an unrelated CA fails the handshake (StartTLS and LDAPS)"
