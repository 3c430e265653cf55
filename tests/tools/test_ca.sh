#!/usr/bin/env bash
# Throw-away test certificate authority for the test servers (slapd, Samba, the Office 365 emulator).
#
#   test_ca.sh init DIR              create DIR/ca.key + DIR/ca.pem (kept if already there)
#   test_ca.sh server DIR NAME SAN...
#                                    create DIR/NAME.key + DIR/NAME.pem, signed by DIR's CA, for TLS
#                                    servers. Each SAN is "IP:a.b.c.d", "DNS:name", or a bare value
#                                    (an IPv4 address becomes IP:, anything else DNS:). DNS:localhost
#                                    and IP:127.0.0.1 are always added. DIR/NAME-chain.pem = leaf + CA.
#   test_ca.sh other DIR             create an unrelated CA in DIR/other-ca.pem (for negative tests:
#                                    a client trusting only it must fail the handshake)
#
# Keys are RSA 2048 (accepted by OpenSSL, GnuTLS/Samba and libcurl alike), mode 0600 because Samba
# refuses a key file that others can read. Validity: 1 day back (clock skew) to 825 days ahead.
# Never use these outside tests: the CA key sits next to the certificates.
set -euo pipefail

usage() {
  awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

die() {
  echo "test_ca.sh: error: $*" >&2
  exit 1
}

command -v openssl >/dev/null || die "openssl not found; install it (scripts/install-deps.sh)"

# make_ca DIR BASENAME CN: self-signed CA key + certificate, unless already present.
make_ca() {
  local dir=$1 base=$2 cn=$3
  if [ -s "$dir/$base.key" ] && [ -s "$dir/$base.pem" ]; then
    return 0
  fi
  mkdir -p "$dir"
  (
    umask 077
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -keyout "$dir/$base.key.tmp" -out "$dir/$base.pem.tmp" -subj "/O=certsync tests/CN=$cn" \
      -addext "basicConstraints=critical,CA:true" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectKeyIdentifier=hash" 2>/dev/null
  ) || die "openssl could not create the CA in $dir"
  chmod 0644 "$dir/$base.pem.tmp"
  # Rename last so a concurrent reader never sees half a CA.
  mv "$dir/$base.key.tmp" "$dir/$base.key"
  mv "$dir/$base.pem.tmp" "$dir/$base.pem"
}

cmd_server() {
  local dir=$1 name=$2
  shift 2
  [ -s "$dir/ca.key" ] || die "no CA in $dir; run 'test_ca.sh init $dir' first"
  case $name in
    '' | */* | .*) die "bad certificate name '$name'; use a plain file name such as 'slapd'" ;;
  esac
  local sans=("DNS:localhost" "IP:127.0.0.1") s
  for s in "$@"; do
    case $s in
      IP:* | DNS:* | email:* | URI:*) sans+=("$s") ;;
      *)
        if [[ $s =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then sans+=("IP:$s"); else sans+=("DNS:$s"); fi
        ;;
    esac
  done
  local san_line
  san_line=$(IFS=,; echo "${sans[*]}")
  local ext="$dir/$name.ext"
  cat >"$ext" <<EOF
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san_line
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EOF
  (
    umask 077
    openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" \
      -subj "/O=certsync tests/CN=$name" 2>/dev/null
  ) || die "openssl could not create a key for $name in $dir"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days 825 -sha256 -extfile "$ext" \
    -out "$dir/$name.pem" 2>/dev/null || die "openssl could not sign the certificate for $name"
  cat "$dir/$name.pem" "$dir/ca.pem" >"$dir/$name-chain.pem"
  rm -f "$dir/$name.csr" "$ext"
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2
case $cmd in
  init) make_ca "$dir" ca "certsync test CA" ;;
  server)
    [ $# -ge 1 ] || usage
    cmd_server "$dir" "$@"
    ;;
  other) make_ca "$dir" other-ca "unrelated test CA" ;;
  *) usage ;;
esac
