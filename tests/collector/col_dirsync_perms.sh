#!/usr/bin/env bash
# col_dirsync_perms: DirSync permissions against the real Samba DC (issue 6 least privilege; labels collector,
# security). An unprivileged account made with samba-tool runs the real certsync-collector in ldap.mode dirsync:
#   1. without the right and without ldap.dirsync_object_security: Samba refuses DirSync with
#      insufficientAccessRights ("error in module dirsync: insufficient access rights"); the collector exits 2
#      with a message naming "Replicating Directory Changes" on the naming context and the fixes
#      (samba-tool dsacl set --car=get-changes, Delegate Control / dsacls, or the object-security flag);
#   2. with ldap.dirsync_object_security: true it works (snapshot committed), and because Samba (like Windows)
#      lets only SYSTEM and Administrators read CN=Deleted Objects, it warns that deletions are invisible;
#   3. after granting the account List Contents + Read Property on CN=Deleted Objects: no warning, it says
#      deletions are seen;
#   4. after the fix the message names (samba-tool dsacl set ... --car=get-changes), DirSync without the flag
#      works.
# Samba returns the CN=Deleted Objects entry to a base search by any user but strips objectGUID (Windows
# refuses the search): the collector treats both as unreadable (docs/security.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
# shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
IT_LOG=$SAMBA_LOG
trap svc_stop_all EXIT

SDIR=$(dirname "$SAMBA_PASSWORD_FILE") # samba.sh start DIR: the DC's database is DIR/ad
SAM="tdb://$SDIR/ad/private/sam.ldb"
SMBCONF=$SDIR/ad/etc/smb.conf
[ -f "$SDIR/ad/private/sam.ldb" ] || it_fail "$SDIR/ad/private/sam.ldb missing: not a samba.sh instance"

tag=dsp$RANDOM
TP="it.$tag"
pw="Pw-$tag-$(head -c 9 /dev/urandom | base64 | tr -d '/+=')1!"
(umask 077 && printf '%s' "$pw" >"$W/pw")
samba-tool user add "$tag" "$pw" -H "$SAM" -s "$SMBCONF" >"$W/useradd.out" 2>&1 || it_fail "samba-tool user add: $(cat "$W/useradd.out")"
DN="CN=$tag,CN=Users,$SAMBA_BASE"
SID=$(ldbsearch -H "$SAM" -s sub -b "$SAMBA_BASE" "(sAMAccountName=$tag)" objectSid 2>/dev/null | sed -n 's/^objectSid: //p')
[ -n "$SID" ] || it_fail "no objectSid for $tag"
svc_topics "$TP"

# run_collector NAME SOURCE_ID [ldap: lines...]: writes $W/NAME.yaml and starts the collector as $tag.
run_collector() {
  local name=$1 id=$2
  shift 2
  # shellcheck disable=SC2034 # read by svc_config (col_svc_lib.sh)
  SVC_LDAP_EXTRA=("mode: dirsync" "$@")
  svc_config "$W/$name.yaml" "$id" "$TP" "$SAMBA_URL" "$DN" "$W/pw" "$SAMBA_BASE" \
    "(&(objectClass=user)(sAMAccountName=$tag*))" "batch: {max_wait: 100ms}"
  svc_start "$name" "$W/$name.yaml"
}
stop_ok() { # NAME
  kill -TERM "${SVC_PID[$1]}"
  await_exit "$1" 30 || it_fail "collector $1 did not stop on SIGTERM"
  [ "$SVC_RC" -eq 0 ] || it_fail "collector $1 exited $SVC_RC on SIGTERM"
}

# --- 1. refused without the right ---------------------------------------------------------------------------
run_collector norights "$tag"
await_exit norights 60 || it_fail "the collector without Replicating Directory Changes kept running"
[ "$SVC_RC" -eq 2 ] || it_fail "exit code $SVC_RC without the right, want 2 (configuration/permission)"
for want in 'Replicating Directory Changes' "on the naming context $SAMBA_BASE" 'insufficient access' \
  'samba-tool dsacl set' '--car=get-changes' 'Delegate Control' 'ldap.dirsync_object_security: true'; do
  grep -qF -- "$want" "$W/norights.log" || it_fail "the refusal does not say '$want': $(grep -m1 stopping "$W/norights.log")"
done
! grep -q 'directory unavailable' "$W/norights.log" || it_fail "the refusal was retried as an outage"
it_ok "no right: exit 2 naming Replicating Directory Changes on $SAMBA_BASE and the fixes"

# --- 2. object security, CN=Deleted Objects unreadable (the default) -----------------------------------------
run_collector objsec "$tag" "dirsync_object_security: true"
await_log objsec '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot with ldap.dirsync_object_security"
grep -q 'cannot read CN=Deleted Objects, so deletions are invisible' "$W/objsec.log" ||
  it_fail "no warning that deletions are invisible"
grep -q '"level":"warn".*deletions are invisible' "$W/objsec.log" || it_fail "the deletions warning is not at level warn"
stop_ok objsec
it_ok "object security: works; CN=Deleted Objects unreadable -> warned that deletions are invisible"

# --- 3. CN=Deleted Objects made readable (the fix the warning names, Samba form) -----------------------------
sd=$(ldbsearch -H "$SAM" --show-deleted -b "CN=Deleted Objects,$SAMBA_BASE" -s base nTSecurityDescriptor 2>/dev/null |
  python3 -c 'import re,sys; print(re.search(r"^nTSecurityDescriptor: (.*)$", sys.stdin.read().replace("\n ", ""), re.M).group(1))') ||
  it_fail "reading the descriptor of CN=Deleted Objects"
case $sd in *"D:"*) ;; *) it_fail "unexpected descriptor of CN=Deleted Objects: $sd" ;; esac
# The allow ACE goes right after the DACL's flags (D:<flags>), ahead of the others.
newsd=$(python3 -c 'import re,sys; print(re.sub(r"D:([A-Z]*)", lambda m: "D:" + m.group(1) + "(A;;RPLC;;;" + sys.argv[2] + ")", sys.argv[1], count=1))' "$sd" "$SID")
ldbmodify -H "$SAM" --show-deleted >"$W/ldbmodify.out" 2>&1 <<EOF || it_fail "ldbmodify: $(cat "$W/ldbmodify.out")"
dn: CN=Deleted Objects,$SAMBA_BASE
changetype: modify
replace: nTSecurityDescriptor
nTSecurityDescriptor: $newsd
EOF
run_collector readable "$tag" "dirsync_object_security: true"
await_log readable 'CN=Deleted Objects is readable' 60 || it_fail "CN=Deleted Objects not seen as readable after the grant"
! grep -q 'deletions are invisible' "$W/readable.log" || it_fail "warned although CN=Deleted Objects is readable"
stop_ok readable
it_ok "CN=Deleted Objects readable: no warning"

# --- 4. the right granted as the refusal says: DirSync without the flag works --------------------------------
samba-tool dsacl set -H "$SAM" -s "$SMBCONF" --objectdn="$SAMBA_BASE" --trusteedn="$DN" --car=get-changes \
  --action=allow >"$W/dsacl.out" 2>&1 || it_fail "samba-tool dsacl set: $(cat "$W/dsacl.out")"
run_collector granted "$tag-g"
await_log granted '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot after granting Replicating Directory Changes"
! grep -q 'object-security' "$W/granted.log" || it_fail "the object-security check ran without the flag"
stop_ok granted
it_ok "Replicating Directory Changes granted with samba-tool dsacl set --car=get-changes: DirSync works without the flag"
