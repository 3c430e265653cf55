#!/usr/bin/env bash
# slapd_tls: StartTLS and LDAPS verify against the test CA; an unrelated CA makes both fail.
set -euo pipefail
. "$(dirname "$0")/it_lib.sh"
it_init
IT_LOG=$SLAPD_LOG
[ -n "$SLAPD_LDAPS_URL" ] || it_fail "slapd was started without --tls"
search() { # search URL [extra args]: a base search with a verified server certificate
  local url=$1
  shift
  LDAPTLS_REQCERT=demand ldapsearch -x -LLL -H "$url" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE" \
    -b "$SLAPD_BASE" -s base "$@" dn
}
LDAPTLS_CACERT=$SLAPD_CA_FILE search "$SLAPD_URL" -ZZ >"$W/starttls.out" 2>&1 || {
  cat "$W/starttls.out" >&2
  it_fail "StartTLS with the test CA"
}
grep -q "^dn: $SLAPD_BASE" "$W/starttls.out" || it_fail "StartTLS search returned no base entry"
it_ok "StartTLS verified"
LDAPTLS_CACERT=$SLAPD_CA_FILE search "$SLAPD_LDAPS_URL" >"$W/ldaps.out" 2>&1 || {
  cat "$W/ldaps.out" >&2
  it_fail "LDAPS with the test CA"
}
grep -q "^dn: $SLAPD_BASE" "$W/ldaps.out" || it_fail "LDAPS search returned no base entry"
it_ok "LDAPS verified"

"$TOOLS/test_ca.sh" other "$W/other"
if LDAPTLS_CACERT=$W/other/other-ca.pem search "$SLAPD_URL" -ZZ >"$W/neg1.out" 2>&1; then
  it_fail "StartTLS succeeded although the client trusts only an unrelated CA"
fi
if LDAPTLS_CACERT=$W/other/other-ca.pem search "$SLAPD_LDAPS_URL" >"$W/neg2.out" 2>&1; then
  it_fail "LDAPS succeeded although the client trusts only an unrelated CA"
fi
cat "$W/neg1.out" "$W/neg2.out"
# The only difference to the passing runs above is the CA file; openssl names the reason.
hostport=${SLAPD_LDAPS_URL#ldaps://}
openssl s_client -connect "$hostport" -CAfile "$W/other/other-ca.pem" -verify_return_error \
  </dev/null >"$W/neg3.out" 2>&1 && it_fail "openssl s_client accepted the server with an unrelated CA"
grep -i "verify" "$W/neg3.out" | head -2
grep -qi "unable to get local issuer certificate\|certificate verify failed" "$W/neg3.out" ||
  it_fail "the handshake failed, but not on certificate verification (see $W/neg3.out)"
it_ok "an unrelated CA fails the handshake (StartTLS and LDAPS)"
