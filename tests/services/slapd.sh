#!/usr/bin/env bash
# Throw-away OpenLDAP slapd for tests (conventions: tests/services/lib.sh).
#
#   slapd.sh start DIR [--tls] [--suffix DN]
#       Builds slapd in DIR from a generated cn=config (core/cosine/inetorgperson schema, mdb,
#       syncprov, indexes), adds the suffix entry, and starts slapd on a free port on 127.0.0.1.
#       --tls also serves ldaps:// on a second free port and StartTLS on the plain one, with a
#       certificate from a test CA in DIR/tls (TLSVerifyClient never).
#       Waits until a real search answers, then writes DIR/env and DIR/pid:
#         SLAPD_URL SLAPD_LDAPS_URL SLAPD_BASE SLAPD_BIND_DN SLAPD_PASSWORD_FILE SLAPD_CA_FILE
#         (+ SLAPD_LOG, SLAPD_PID; plain KEY=VALUE lines; LDAPS/CA empty without --tls)
#       The log is DIR/slapd.log (level from CS_SLAPD_LOGLEVEL, default "stats").
#   slapd.sh stop DIR
#       SIGINT to the PID in DIR/pid (slapd's clean shutdown), waits, fails if it is still there.
#   slapd.sh restart DIR
#       stop, then start again on the same ports with the same config and database.
#
# Never touches /etc/ldap, the system slapd or port 389: everything lives in DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
. "$HERE/lib.sh"
TOOLS=$(cd "$HERE/../tools" && pwd)

MODULE_DIR=${CS_SLAPD_MODULE_DIR:-/usr/lib/ldap}
SCHEMA_DIR=${CS_SLAPD_SCHEMA_DIR:-/etc/ldap/schema}

usage() {
  awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

# write_config DIR SUFFIX ROOTDN HASH TLS: the cn=config LDIF slapadd -n0 loads.
write_config() {
  local d=$1 suffix=$2 rootdn=$3 hash=$4 tls=$5 s
  {
    cat <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $d/slapd.pid
olcArgsFile: $d/slapd.args
EOF
    if [ "$tls" = 1 ]; then
      cat <<EOF
olcTLSCACertificateFile: $d/tls/ca.pem
olcTLSCertificateFile: $d/tls/slapd.pem
olcTLSCertificateKeyFile: $d/tls/slapd.key
olcTLSVerifyClient: never
EOF
    fi
    cat <<EOF

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: $MODULE_DIR
olcModuleLoad: back_mdb
olcModuleLoad: syncprov

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

EOF
    # The Debian schema LDIFs are cn=config entries already: concatenating them is the include.
    for s in core cosine inetorgperson; do
      [ -f "$SCHEMA_DIR/$s.ldif" ] || cs_die "schema $SCHEMA_DIR/$s.ldif missing; install slapd (scripts/install-deps.sh)"
      grep -v '^#' "$SCHEMA_DIR/$s.ldif"
      echo
    done
    cat <<EOF
dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: unlimited

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcRootDN: $rootdn

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: $suffix
olcRootDN: $rootdn
olcRootPW: $hash
olcDbDirectory: $d/db
olcDbMaxSize: 4294967296
olcSizeLimit: unlimited
olcDbIndex: objectClass eq
olcDbIndex: entryCSN eq
olcDbIndex: entryUUID eq
olcDbIndex: uid eq
olcDbIndex: mail eq

dn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {0}syncprov
olcSpCheckpoint: 100 10
olcSpSessionlog: 10000
EOF
  } >"$d/config.ldif"
}

# base_entry SUFFIX: the suffix entry itself (dc= or o= / ou= first RDN).
base_entry() {
  local suffix=$1 rdn attr val
  rdn=${suffix%%,*}
  attr=${rdn%%=*}
  val=${rdn#*=}
  echo "dn: $suffix"
  case ${attr,,} in
    dc) printf 'objectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n' "$val" "$val" ;;
    o) printf 'objectClass: organization\no: %s\n' "$val" ;;
    ou) printf 'objectClass: organizationalUnit\nou: %s\n' "$val" ;;
    *) cs_die "suffix '$suffix' must start with dc=, o= or ou=" ;;
  esac
}

cmd_start() {
  local d=$1
  shift
  local tls=0 suffix="dc=example,dc=test"
  while [ $# -gt 0 ]; do
    case $1 in
      --tls) tls=1 ;;
      --suffix)
        [ $# -ge 2 ] || cs_die "--suffix needs a DN, e.g. --suffix dc=example,dc=test"
        suffix=$2
        shift
        ;;
      *) cs_die "unknown option '$1' for slapd.sh start; use --tls or --suffix DN" ;;
    esac
    shift
  done
  # DIR/env holds plain KEY=VALUE lines (read by shell and C tests alike): no spaces or quotes.
  [[ $suffix =~ ^[A-Za-z0-9=,.-]+$ ]] ||
    cs_die "suffix '$suffix' has characters DIR/env cannot carry; use letters, digits, '=', ',', '.', '-'"
  command -v slapd >/dev/null || command -v /usr/sbin/slapd >/dev/null ||
    cs_die "slapd not found; install it with scripts/install-deps.sh"
  if [ -f "$d/pid" ] && cs_pid_alive "$(cat "$d/pid")"; then
    cs_die "a slapd from $d is still running (pid $(cat "$d/pid")); run 'slapd.sh stop $d' first"
  fi
  mkdir -p "$d"
  d=$(cd "$d" && pwd)
  rm -rf "$d/slapd.d" "$d/db" "$d/env" "$d/pid" "$d/slapd.log"
  mkdir -p "$d/slapd.d" "$d/db"

  local rootdn="cn=admin,$suffix" password
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  # No trailing newline: ldapsearch -y uses the whole file as the password.
  (umask 077 && printf '%s' "$password" >"$d/password")
  local hash
  hash=$(/usr/sbin/slappasswd -n -s "$password")

  local port ldaps_port="" urls
  port=$(cs_free_port)
  urls="ldap://127.0.0.1:$port/"
  if [ "$tls" = 1 ]; then
    "$TOOLS/test_ca.sh" init "$d/tls"
    "$TOOLS/test_ca.sh" server "$d/tls" slapd 127.0.0.1 localhost
    ldaps_port=$(cs_free_port)
    urls="$urls ldaps://127.0.0.1:$ldaps_port/"
  fi

  write_config "$d" "$suffix" "$rootdn" "$hash" "$tls"
  /usr/sbin/slapadd -n0 -F "$d/slapd.d" -l "$d/config.ldif" >"$d/slapadd.log" 2>&1 || {
    cs_show_log "$d/slapadd.log"
    cs_die "slapadd could not load $d/config.ldif"
  }
  base_entry "$suffix" >"$d/base.ldif"
  /usr/sbin/slapadd -F "$d/slapd.d" -b "$suffix" -l "$d/base.ldif" >>"$d/slapadd.log" 2>&1 || {
    cs_show_log "$d/slapadd.log"
    cs_die "slapadd could not add the suffix entry $suffix"
  }

  # setsid: own session, so the test harness's terminal and process group never reach it;
  # -d keeps it in the foreground, so $! is slapd itself.
  setsid /usr/sbin/slapd -d "${CS_SLAPD_LOGLEVEL:-stats}" -h "$urls" -F "$d/slapd.d" \
    </dev/null >"$d/slapd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$d/pid"

  if ! cs_wait_port 127.0.0.1 "$port" 20 "$pid"; then
    cs_show_log "$d/slapd.log"
    cs_stop_pid "$pid" 5 INT || true
    cs_die "slapd did not listen on 127.0.0.1:$port within 20 s"
  fi
  # A real search, not only an open port: the database must answer.
  local i ok=0
  for ((i = 0; i < 50; i++)); do
    if ldapsearch -x -LLL -H "ldap://127.0.0.1:$port/" -D "$rootdn" -y "$d/password" \
      -b "$suffix" -s base dn >/dev/null 2>&1; then
      ok=1
      break
    fi
    sleep 0.1
  done
  if [ "$ok" = 0 ]; then
    cs_show_log "$d/slapd.log"
    cs_stop_pid "$pid" 5 INT || true
    cs_die "slapd on 127.0.0.1:$port does not answer a search of $suffix"
  fi

  {
    echo "SLAPD_URL=ldap://127.0.0.1:$port"
    echo "SLAPD_LDAPS_URL=${ldaps_port:+ldaps://127.0.0.1:$ldaps_port}"
    echo "SLAPD_BASE=$suffix"
    echo "SLAPD_BIND_DN=$rootdn"
    echo "SLAPD_PASSWORD_FILE=$d/password"
    echo "SLAPD_CA_FILE=${ldaps_port:+$d/tls/ca.pem}"
    echo "SLAPD_LOG=$d/slapd.log"
    echo "SLAPD_PID=$pid"
  } >"$d/env.tmp"
  mv "$d/env.tmp" "$d/env"
  echo "slapd: pid $pid on ldap://127.0.0.1:$port${ldaps_port:+ and ldaps://127.0.0.1:$ldaps_port}, env in $d/env"
}

cmd_stop() {
  local d=$1 pid
  [ -f "$d/pid" ] || cs_die "no $d/pid: nothing started there (or already stopped)"
  pid=$(cat "$d/pid")
  if ! cs_stop_pid "$pid" 10 INT; then
    cs_die "slapd pid $pid from $d is still running after SIGINT and SIGKILL"
  fi
  if cs_pid_alive "$pid"; then
    cs_die "slapd pid $pid from $d is still running"
  fi
  rm -f "$d/pid"
  echo "slapd: pid $pid stopped"
}

# restart DIR: stops slapd and starts it again on the same ports, config and database (the directory
# restart tests need the same URL and data). Updates DIR/pid and SLAPD_PID in DIR/env.
cmd_restart() {
  local d=$1 pid urls port
  d=$(cd "$d" && pwd)
  [ -f "$d/env" ] || cs_die "no $d/env: start slapd with 'slapd.sh start $d' first"
  # shellcheck disable=SC1091
  . "$d/env"
  [ -f "$d/pid" ] && cmd_stop "$d"
  urls="$SLAPD_URL/${SLAPD_LDAPS_URL:+ $SLAPD_LDAPS_URL/}"
  port=${SLAPD_URL##*:}
  setsid /usr/sbin/slapd -d "${CS_SLAPD_LOGLEVEL:-stats}" -h "$urls" -F "$d/slapd.d" \
    </dev/null >>"$d/slapd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$d/pid"
  cs_wait_port 127.0.0.1 "$port" 20 "$pid" || cs_die "slapd did not listen again on 127.0.0.1:$port"
  sed -i "s/^SLAPD_PID=.*/SLAPD_PID=$pid/" "$d/env"
  echo "slapd: restarted as pid $pid on $SLAPD_URL"
}

[ $# -ge 2 ] || usage
case $1 in
  start)
    shift
    cmd_start "$@"
    ;;
  stop) cmd_stop "$2" ;;
  restart) cmd_restart "$2" ;;
  *) usage ;;
esac
