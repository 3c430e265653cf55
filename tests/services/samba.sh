#!/usr/bin/env bash
# Throw-away Samba AD domain controller for tests (conventions: tests/services/lib.sh). Needs root.
#
#   samba.sh start DIR [--cache CACHEDIR]
#       Provisions realm CORP.EXAMPLE.TEST (domain CORP, rfc2307, no DNS, only the LDAP service)
#       into DIR/ad, binds it to its own loopback address 127.88.X.Y (added to lo as a /32 alias:
#       Samba's LDAP ports are fixed at 389/636, so one address per instance keeps instances apart
#       and off the host's real addresses), with TLS from a test CA in DIR/tls (SAN IP:127.88.X.Y)
#       and simple bind over plain LDAP allowed. Runs `samba -i -M single` in its own session,
#       waits until a simple bind as Administrator can search, writes DIR/env and DIR/pid:
#         SAMBA_URL SAMBA_LDAPS_URL SAMBA_HOST SAMBA_BASE SAMBA_BIND_DN SAMBA_PASSWORD_FILE
#         SAMBA_CA_FILE SAMBA_REALM (+ SAMBA_BIND_UPN, SAMBA_LOG, SAMBA_PID; plain KEY=VALUE lines)
#       Only the "ldap" service runs: "winbindd" would need the winbind package (without it samba
#       exits at once), and nothing here needs it. -M single then is one process.
#       --cache CACHEDIR (or CS_SAMBA_CACHE): keep a pristine provisioned template there and copy
#       it per start (provisioning costs ~6 s, a copy well under 1 s). The template's domain SID,
#       keys and Administrator password are shared by every copy: fine for tests only.
#       --replication: also serve cldap, rpc (DRSUAPI), drepl and kdc, so a second DC can join
#       (samba.sh join) and the first DC's changes reach the joined one by themselves (Samba's drepl:
#       ~0.2-1 s, by DRS notification). What Samba's DRS client needs, and how
#       it gets it here without a DNS server and without touching the machine's files:
#         - the partner's <NTDS Settings objectGUID>._msdcs.<realm> and dcN.<realm> resolve through
#           libc (getaddrinfo): samba runs in its own mount namespace (unshare -m) where DIR/hosts is
#           bind-mounted over /etc/hosts (the machine's /etc/hosts is never changed);
#         - its Kerberos client finds the KDC: KRB5_CONFIG=DIR/krb5.conf names the DC's own address;
#         - the DC's account has the DRS SPN E3514235-4B06-11D1-AB04-00C04FC2DCD2/<guid>/<realm>
#           (samba_spnupdate, which Samba's dnsupdate service would run; added before the start);
#         - `-M prefork` (one worker per service): in `-M single` the DC hung (LDAP unanswered) once its
#           DRS client began Kerberos exchanges with its own KDC, which then lives in the same process.
#       Refuses to start while something listens on port 389 on every address (e.g. the Debian system
#       slapd), naming it. A failed start leaves no samba process and no address alias behind.
#   samba.sh join DIR FIRST_DIR
#       A second DC (netbios name DC2) joined to the domain of the DC in FIRST_DIR (started with
#       --replication): `samba-tool domain join CORP.EXAMPLE.TEST DC --server=<first's address>` into
#       DIR/ad (the join is a DRS full replication of schema, configuration and domain: ~5 s here),
#       on its own 127.88.X.Y, same services; writes DIR/env like start (same Administrator
#       password: it is replicated). One joined DC per FIRST_DIR (the name DC2 is fixed). Its names
#       are appended to FIRST_DIR/hosts (in place: both DCs' namespaces bind-mount that file), so
#       from then on FIRST_DIR's DC notifies this one of every change and it pulls it (the join made
#       the replication link that way). The other direction would need the KCC to give the first DC a
#       connection from this one: the kcc service is not run (a quick try with it stopped both).
#   samba.sh replicate TO_DIR FROM_DIR
#       Pulls the domain partition's changes from FROM_DIR's DC into TO_DIR's DC now:
#       `samba-tool drs replicate --local` (a real DRS GetNCChanges from FROM's DC, applied to TO's
#       sam.ldb with the originating replPropertyMetaData kept). Not needed for a pair made by
#       start --replication + join (they replicate by themselves); a tool to force a pull now.
#   samba.sh stop DIR [--keep-address]
#       SIGTERM to the PID in DIR/pid, waits, then checks no process of that session is left
#       (samba runs in its own session, so its children are found by session id, never by name);
#       kills and reports leftovers and exits non-zero if there were any. Removes the address alias
#       (recorded in DIR/address before it is added), also when there is no DIR/pid; with
#       --keep-address it stays, for a later restart of the same DC (an outage of a chosen length).
#       The DC's data (DIR/ad) is never removed by stop.
#   samba.sh restart DIR
#       The same DC again, e.g. a directory restart under a running client: stops it as stop does
#       (by the PID in DIR/pid, the whole session; nothing to stop after 'stop --keep-address') but
#       keeps its data (DIR/ad: same sam.ldb, USNs, invocationId), TLS files and address alias, then
#       runs samba on them again (same 127.88.X.Y, same services; a replicating DC in its own
#       namespace with the same hosts file) and waits as start does. Rewrites DIR/env (only
#       SAMBA_PID changes); the previous log is kept as DIR/samba.log.prev.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
. "$HERE/lib.sh"
TOOLS=$(cd "$HERE/../tools" && pwd)

REALM=CORP.EXAMPLE.TEST
DOMAIN=CORP
DNS_DOMAIN=corp.example.test
BASE="DC=corp,DC=example,DC=test"
HOST_NAME=dc1
# Bump when the provision command below changes: cached templates with another recipe are rebuilt.
RECIPE=1
ALIAS_LOCK=/tmp/certsync-samba-alias.lock

usage() {
  awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

# session_pids SID: live (non-zombie) processes in session SID, one per line.
session_pids() {
  ps -e -o pid=,sid=,stat= | awk -v s="$1" '$2 == s && substr($3, 1, 1) != "Z" { print $1 }'
}

# provision TARGET PASSWORD: samba-tool domain provision into TARGET/ad (TARGET is new).
provision() {
  local t=$1 pw=$2
  mkdir -p "$t"
  : >"$t/empty.conf"
  # The paths given here only matter during provisioning: start writes its own smb.conf.
  samba-tool domain provision -s "$t/empty.conf" --targetdir="$t/ad" --realm="$REALM" \
    --domain="$DOMAIN" --host-name="$HOST_NAME" --server-role=dc --dns-backend=NONE --use-rfc2307 \
    --adminpass="$pw" --host-ip=127.0.0.1 \
    --option="interfaces = lo" --option="bind interfaces only = yes" \
    --option="log file = $t/ad/log.%m" --option="pid directory = $t/ad/run" \
    --option="ncalrpc dir = $t/ad/ncalrpc" --option="winbindd socket directory = $t/ad/winbindd" \
    --option="ntp signd socket directory = $t/ad/ntp_signd" --option="server services = ldap" \
    >"$t/provision.log" 2>&1 || {
    cs_show_log "$t/provision.log"
    cs_die "samba-tool domain provision into $t failed (is samba-ad-provision installed? scripts/install-deps.sh)"
  }
  (umask 077 && printf '%s' "$pw" >"$t/password")
}

new_password() {
  # AD complexity: upper, lower, digit and symbol.
  printf 'Cs1!%s' "$(head -c 15 /dev/urandom | base64 | tr -d '/+=')"
}

# template CACHEDIR: prints the path of a provisioned template, building it once under a lock.
template() {
  local c=$1 stamp
  stamp="recipe=$RECIPE $(samba --version)"
  mkdir -p "$c"
  (
    flock 9
    if [ -f "$c/template/stamp" ] && [ "$(cat "$c/template/stamp")" = "$stamp" ]; then
      exit 0
    fi
    rm -rf "$c/template" "$c/template.tmp"
    provision "$c/template.tmp" "$(new_password)"
    echo "$stamp" >"$c/template.tmp/stamp"
    mv "$c/template.tmp" "$c/template"
  ) 9>"$c/.lock" >&2
  echo "$c/template"
}

# pick_address: a 127.88.X.Y nobody uses, added to lo. Under a lock, so parallel starts differ.
pick_address() {
  local d=$1 i ip
  (
    flock 9
    for ((i = 0; i < 200; i++)); do
      ip="127.88.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 2))"
      if grep -qw "inet $ip/32" <<<"$(ip -4 addr show dev lo)"; then continue; fi
      if (exec 3<>"/dev/tcp/$ip/389") 2>/dev/null; then continue; fi
      # Recorded first: whatever dies after the add, stop (or the start's trap) finds the alias to remove.
      echo "$ip" >"$d/address"
      if ! ip addr add "$ip/32" dev lo; then
        rm -f "$d/address"
        cs_die "cannot add $ip/32 to lo (needs root / CAP_NET_ADMIN)"
      fi
      exit 0
    done
    cs_die "no free 127.88.x.y address found after 200 tries"
  ) 9>"$ALIAS_LOCK"
  cat "$d/address"
}

remove_address() {
  local d=$1 ip
  [ -f "$d/address" ] || return 0
  ip=$(cat "$d/address")
  if grep -qw "inet $ip/32" <<<"$(ip -4 addr show dev lo)"; then
    ip addr del "$ip/32" dev lo || echo "warning: could not remove $ip/32 from lo" >&2
  fi
  rm -f "$d/address"
}

# Fails when something listens on port 389 on every address (0.0.0.0, [::] or *): Samba's bind of its
# own 127.88.x.y:389 then fails or, with SO_REUSEADDR, clients may reach the wrong server. Typically
# the system slapd that the Debian slapd package starts and enables.
check_port_389() {
  local wild
  wild=$(ss -Hltnp 'sport = :389' 2>/dev/null |
    awk '$4 ~ /^(0\.0\.0\.0|\*|\[::\]):389$/ { printf "%s%s %s", sep, $4, $6; sep = "; " }') || true
  [ -z "$wild" ] && return 0
  cs_die "port 389 is taken on every address by: $wild. Samba's test DC needs 127.88.x.y:389 to itself." \
    "Stop that server; if it is the Debian system slapd, run scripts/install-deps.sh (it stops and" \
    "disables it), or 'systemctl disable --now slapd' (without systemd: 'service slapd stop &&" \
    "update-rc.d slapd disable')"
}

# EXIT trap of cmd_start: a start that fails at any point leaves no samba and no address alias behind.
START_DIR=""
start_failed() {
  local rc=$?
  [ "$rc" -ne 0 ] && [ -n "$START_DIR" ] || return 0
  if [ -f "$START_DIR/pid" ]; then
    (cmd_stop "$START_DIR") >/dev/null 2>&1 || true
  fi
  remove_address "$START_DIR"
  exit "$rc"
}

# Services of a DC that takes part in replication: cldap answers the joiner's DC lookup, rpc serves DRSUAPI.
REPL_SERVICES="ldap cldap rpc drepl kdc"

# ntds_guid DIR: "<objectGUID of the DC's NTDS Settings> <DNS host name>", read from its sam.ldb.
# /usr/bin/python3: Samba's bindings belong to the system Python, not to a python3 earlier on PATH.
ntds_guid() {
  /usr/bin/python3 - "$1/ad/etc/smb.conf" <<'PY'
import sys
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
print(db.get_ntds_GUID(), db.host_dns_name())
PY
}

# prepare_replication DIR IP HOSTS [--spn]: what a replicating DC needs besides its smb.conf (header of this
# file): its line in HOSTS (address, DNS host name, short name, <NTDS GUID>._msdcs.<realm>; appended in
# place, because a running partner's namespace has that very inode bind-mounted over /etc/hosts), DIR/krb5.conf
# naming its own KDC, and with --spn its DRS SPNs (samba_spnupdate; a join sets the joiner's own).
prepare_replication() {
  local d=$1 ip=$2 hosts=$3 spn=${4:-} guid host
  command -v unshare >/dev/null || cs_die "unshare (util-linux) not found: a replicating DC needs its own mount namespace"
  if [ "$spn" = --spn ]; then
    samba_spnupdate -s "$d/ad/etc/smb.conf" >"$d/spnupdate.log" 2>&1 || {
      cs_show_log "$d/spnupdate.log"
      cs_die "samba_spnupdate for the DC in $d failed (log $d/spnupdate.log)"
    }
  fi
  read -r guid host < <(ntds_guid "$d" 2>"$d/guid.err") || true
  [ -n "${host:-}" ] || cs_die "cannot read the NTDS Settings objectGUID of the DC in $d: $(cat "$d/guid.err")"
  printf '%s %s %s %s._msdcs.%s\n' "$ip" "$host" "${host%%.*}" "$guid" "$DNS_DOMAIN" >>"$hosts"
  cat >"$d/krb5.conf" <<EOF
# Written by tests/services/samba.sh: samba's Kerberos client (DRS binds) asks this DC's own KDC.
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
[realms]
	$REALM = {
		kdc = $ip
	}
EOF
}

# write_smb_conf DIR IP [SERVICES [NETBIOS_NAME]]
write_smb_conf() {
  local d=$1 ip=$2 ad=$1/ad services=${3:-ldap} nb=${4:-${HOST_NAME^^}} extra=""
  # A replicating DC runs -M prefork (see the header): one worker per service is enough for tests; names
  # resolve only through libc (DIR/hosts), so no WINS / broadcast attempts; drepl tells its partners about
  # a change after at most 1 s (dreplsrv:notify_interval, default 5 s: the DRS notification delay).
  [ "$services" = "$REPL_SERVICES" ] && extra=$(printf '\tprefork children = 1\n\tname resolve order = host\n\tdreplsrv:notify_interval = 1\n')
  cat >"$ad/etc/smb.conf" <<EOF
# Written by tests/services/samba.sh for one throw-away test DC.
[global]
	netbios name = $nb
	realm = $REALM
	workgroup = $DOMAIN
	server role = active directory domain controller
	server services = $services
	idmap_ldb:use rfc2307 = yes
	interfaces = $ip/32
	bind interfaces only = yes
	binddns dir = $ad/bind-dns
	cache directory = $ad/cache
	lock directory = $ad
	private dir = $ad/private
	state directory = $ad/state
	pid directory = $ad/run
	ncalrpc dir = $ad/ncalrpc
	winbindd socket directory = $ad/winbindd
	ntp signd socket directory = $ad/ntp_signd
	log file = $ad/log.%m
	log level = 1
${extra}
	ldap server require strong auth = no
	tls enabled = yes
	tls keyfile = $d/tls/samba.key
	tls certfile = $d/tls/samba.pem
	tls cafile = $d/tls/ca.pem
[netlogon]
	path = $ad/state/sysvol/$DNS_DOMAIN/scripts
	read only = no
[sysvol]
	path = $ad/state/sysvol
	read only = no
EOF
}

cmd_start() {
  local d=$1
  shift
  local cache=${CS_SAMBA_CACHE:-} services=ldap
  while [ $# -gt 0 ]; do
    case $1 in
      --replication) services=$REPL_SERVICES ;;
      --cache)
        [ $# -ge 2 ] || cs_die "--cache needs a directory"
        cache=$2
        shift
        ;;
      *) cs_die "unknown option '$1' for samba.sh start; use --cache DIR or --replication" ;;
    esac
    shift
  done
  [ "$(id -u)" -eq 0 ] || cs_die "samba.sh needs root (Samba's AD DC and the loopback alias); run as root"
  command -v samba >/dev/null || cs_die "samba not found; install it with scripts/install-deps.sh"
  if [ -f "$d/pid" ] && cs_pid_alive "$(cat "$d/pid")"; then
    cs_die "a samba from $d is still running (pid $(cat "$d/pid")); run 'samba.sh stop $d' first"
  fi
  check_port_389
  mkdir -p "$d"
  d=$(cd "$d" && pwd)
  START_DIR=$d
  trap start_failed EXIT
  remove_address "$d"
  rm -rf "$d/ad" "$d/tls" "$d/env" "$d/pid" "$d/samba.log" "$d/password" "$d/hosts" "$d/krb5.conf"

  local t0 t1 src
  t0=$(cs_now_ms)
  if [ -n "$cache" ]; then
    src=$(template "$cache")
    cp -a "$src/ad" "$d/ad"
    cp -p "$src/password" "$d/password"
  else
    provision "$d/prov" "$(new_password)"
    mv "$d/prov/ad" "$d/ad"
    mv "$d/prov/password" "$d/password"
    rm -rf "$d/prov"
  fi
  t1=$(cs_now_ms)
  mkdir -p "$d/ad/run"

  local ip
  ip=$(pick_address "$d")
  "$TOOLS/test_ca.sh" init "$d/tls"
  "$TOOLS/test_ca.sh" server "$d/tls" samba "$ip" "$HOST_NAME.$DNS_DOMAIN"
  write_smb_conf "$d" "$ip" "$services"
  local hosts=""
  if [ "$services" = "$REPL_SERVICES" ]; then
    hosts=$d/hosts
    printf '127.0.0.1 localhost\n' >"$hosts"
    prepare_replication "$d" "$ip" "$hosts" --spn
  fi
  run_dc "$d" "$ip" "$t0" "$([ -n "$cache" ] && echo "template copy" || echo "provision") $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) s" "$hosts"
}

# run_dc DIR IP T0 WHAT [HOSTS]: starts samba from DIR/ad/etc/smb.conf, waits for a simple-bind search,
# writes DIR/env. With HOSTS (a replicating DC): -M prefork, in its own mount namespace with HOSTS over
# /etc/hosts and KRB5_CONFIG=DIR/krb5.conf. Runs under start_failed (cmd_start / cmd_join set the trap).
run_dc() {
  local d=$1 ip=$2 t0=$3 what=$4 hosts=${5:-}
  # setsid: samba leads its own session; stop finds every process of it by session id (setsid, unshare
  # and sh exec in turn, so $! is samba's pid).
  if [ -n "$hosts" ]; then
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
    KRB5_CONFIG=$d/krb5.conf setsid unshare -m --propagation private sh -c \
      'mount --bind "$1" /etc/hosts && exec samba -i -M prefork -s "$2"' sh "$hosts" "$d/ad/etc/smb.conf" \
      </dev/null >"$d/samba.log" 2>&1 &
  else
    setsid samba -i -M single -s "$d/ad/etc/smb.conf" </dev/null >"$d/samba.log" 2>&1 &
  fi
  local pid=$!
  echo "$pid" >"$d/pid"
  # restart runs a replicating DC with the same hosts file (a joined DC's is its first DC's).
  if [ -n "$hosts" ]; then echo "$hosts" >"$d/hosts.path"; else rm -f "$d/hosts.path"; fi

  local bind_dn="CN=Administrator,CN=Users,$BASE"
  if ! cs_wait_port "$ip" 389 30 "$pid"; then
    cs_show_log "$d/samba.log"
    cmd_stop "$d" || true
    cs_die "samba did not listen on $ip:389 within 30 s"
  fi
  local i ok=0
  for ((i = 0; i < 100; i++)); do
    if ldapsearch -x -LLL -H "ldap://$ip/" -D "$bind_dn" -y "$d/password" -b "$BASE" -s base dn \
      >/dev/null 2>"$d/ready.err"; then
      ok=1
      break
    fi
    sleep 0.1
  done
  if [ "$ok" = 0 ]; then
    cat "$d/ready.err" >&2
    cs_show_log "$d/samba.log"
    cmd_stop "$d" || true
    cs_die "samba on $ip does not answer a simple-bind search of $BASE"
  fi
  {
    echo "SAMBA_URL=ldap://$ip"
    echo "SAMBA_LDAPS_URL=ldaps://$ip"
    echo "SAMBA_HOST=$ip"
    echo "SAMBA_BASE=$BASE"
    echo "SAMBA_BIND_DN=$bind_dn"
    echo "SAMBA_BIND_UPN=Administrator@$DNS_DOMAIN"
    echo "SAMBA_PASSWORD_FILE=$d/password"
    echo "SAMBA_CA_FILE=$d/tls/ca.pem"
    echo "SAMBA_REALM=$REALM"
    echo "SAMBA_LOG=$d/samba.log"
    echo "SAMBA_PID=$pid"
  } >"$d/env.tmp"
  mv "$d/env.tmp" "$d/env"
  trap - EXIT
  printf 'samba: pid %s on %s (ldap/ldaps), %s, ready after %s s; env in %s\n' "$pid" "$ip" "$what" \
    "$(cs_since_s "$t0")" "$d/env"
}

cmd_join() {
  local d=$1 first=$2 ip t0 t1 first_host
  [ "$(id -u)" -eq 0 ] || cs_die "samba.sh needs root (Samba's AD DC and the loopback alias); run as root"
  [ -f "$first/env" ] || cs_die "no $first/env: start the first DC with 'samba.sh start $first --replication'"
  first=$(cd "$first" && pwd)
  grep -q "server services = $REPL_SERVICES" "$first/ad/etc/smb.conf" ||
    cs_die "the DC in $first was started without --replication (it serves no DRSUAPI); restart it with it"
  if [ -f "$d/pid" ] && cs_pid_alive "$(cat "$d/pid")"; then
    cs_die "a samba from $d is still running (pid $(cat "$d/pid")); run 'samba.sh stop $d' first"
  fi
  first_host=$(sed -n 's/^SAMBA_HOST=//p' "$first/env")
  mkdir -p "$d"
  d=$(cd "$d" && pwd)
  START_DIR=$d
  trap start_failed EXIT
  remove_address "$d"
  rm -rf "$d/ad" "$d/tls" "$d/env" "$d/pid" "$d/samba.log" "$d/password" "$d/krb5.conf"
  [ -f "$first/hosts" ] || cs_die "no $first/hosts: restart the first DC with this samba.sh ('samba.sh start $first --replication')"
  mkdir -p "$d/ad/etc" "$d/ad/run" "$d/ad/state/sysvol"
  cp -p "$first/password" "$d/password"
  ip=$(pick_address "$d")
  "$TOOLS/test_ca.sh" init "$d/tls"
  "$TOOLS/test_ca.sh" server "$d/tls" samba "$ip" "dc2.$DNS_DOMAIN"
  write_smb_conf "$d" "$ip" "$REPL_SERVICES" DC2
  t0=$(cs_now_ms)
  # PASSWD: samba-tool takes the password of -U from it (not on the command line, where ps shows it).
  PASSWD=$(cat "$d/password") samba-tool domain join "$REALM" DC -U Administrator --server="$first_host" \
    -s "$d/ad/etc/smb.conf" --dns-backend=NONE --option="idmap_ldb:use rfc2307 = yes" >"$d/join.log" 2>&1 || {
    cs_show_log "$d/join.log"
    cs_die "samba-tool domain join via $first_host failed (log $d/join.log)"
  }
  t1=$(cs_now_ms)
  prepare_replication "$d" "$ip" "$first/hosts"
  run_dc "$d" "$ip" "$t0" "joined $REALM via $first_host in $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) s" \
    "$first/hosts"
}

cmd_replicate() {
  local to=$1 from=$2 from_host nb
  [ -f "$to/env" ] && [ -f "$from/env" ] || cs_die "samba.sh replicate TO_DIR FROM_DIR: both must be started DCs (no env)"
  from_host=$(sed -n 's/^SAMBA_HOST=//p' "$from/env")
  nb=$(awk -F' = ' '$1 ~ /netbios name/ { print $2; exit }' "$to/ad/etc/smb.conf")
  PASSWD=$(cat "$to/password") samba-tool drs replicate --local "$nb" "$from_host" "$BASE" -U Administrator \
    -s "$to/ad/etc/smb.conf" >"$to/replicate.log" 2>&1 || {
    cs_show_log "$to/replicate.log"
    cs_die "samba-tool drs replicate --local $nb $from_host failed"
  }
  tail -n 1 "$to/replicate.log"
}

# cmd_stop DIR [--keep-address]: --keep-address (restart) leaves the alias for the same DC's next run.
cmd_stop() {
  local d=$1 keep=${2:-} pid i left
  if [ ! -f "$d/pid" ]; then
    # A start that died before it wrote the pid may still have added its alias.
    if [ -f "$d/address" ] && [ "$keep" != --keep-address ]; then
      remove_address "$d"
      echo "samba: no $d/pid (nothing running); removed the address alias recorded in $d/address"
      return 0
    fi
    cs_die "no $d/pid: nothing started there (or already stopped)"
  fi
  pid=$(cat "$d/pid")
  if cs_pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  # The whole session must go, not only the leader (children of -M single, e.g. winbindd if enabled).
  for ((i = 0; i < 150; i++)); do
    left=$(session_pids "$pid")
    [ -z "$left" ] && break
    sleep 0.1
  done
  left=$(session_pids "$pid")
  [ "$keep" = --keep-address ] || remove_address "$d"
  if [ -n "$left" ]; then
    echo "error: processes of samba session $pid still running 15 s after SIGTERM:" >&2
    # shellcheck disable=SC2086
    ps -o pid,stat,cmd -p "$(echo $left | tr ' ' ,)" >&2 || true
    for i in $left; do kill -KILL "$i" 2>/dev/null || true; done
    exit 1
  fi
  rm -f "$d/pid"
  echo "samba: session $pid stopped, nothing left"
}

cmd_restart() {
  local d=$1 ip t0 hosts=""
  [ "$(id -u)" -eq 0 ] || cs_die "samba.sh needs root (Samba's AD DC and the loopback alias); run as root"
  [ -f "$d/address" ] && [ -f "$d/ad/etc/smb.conf" ] ||
    cs_die "no DC to restart in $d (no address alias or ad/etc/smb.conf: never started, or stopped without" \
      "--keep-address); start one with 'samba.sh start $d'"
  d=$(cd "$d" && pwd)
  ip=$(cat "$d/address")
  if grep -q "server services = $REPL_SERVICES" "$d/ad/etc/smb.conf"; then
    # A DC started before hosts.path was recorded: its own hosts file (a first DC's).
    hosts=$(cat "$d/hosts.path" 2>/dev/null || echo "$d/hosts")
    [ -f "$hosts" ] || cs_die "no hosts file $hosts for the replicating DC in $d; start it again with samba.sh start/join"
  fi
  t0=$(cs_now_ms)
  if [ -f "$d/pid" ]; then cmd_stop "$d" --keep-address >/dev/null; fi
  grep -qw "inet $ip/32" <<<"$(ip -4 addr show dev lo)" ||
    cs_die "the address alias $ip/32 of the DC in $d is gone from lo; start it again with 'samba.sh start $d'"
  [ -f "$d/samba.log" ] && mv "$d/samba.log" "$d/samba.log.prev"
  # A failed run stops what it started and removes the alias (start_failed), as a failed start does.
  START_DIR=$d
  trap start_failed EXIT
  run_dc "$d" "$ip" "$t0" "restarted on its data" "$hosts"
}

[ $# -ge 2 ] || usage
case $1 in
  start)
    shift
    cmd_start "$@"
    ;;
  stop)
    [ $# -eq 2 ] || [ "$3" = --keep-address ] || cs_die "unknown option '$3' for samba.sh stop; use --keep-address"
    cmd_stop "$2" "${3:-}"
    ;;
  restart) cmd_restart "$2" ;;
  join)
    [ $# -eq 3 ] || usage
    cmd_join "$2" "$3"
    ;;
  replicate)
    [ $# -eq 3 ] || usage
    cmd_replicate "$2" "$3"
    ;;
  *) usage ;;
esac
