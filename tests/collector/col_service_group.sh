#!/usr/bin/env bash
# col_service_group: ldap.group_dn and re-entry into scope, the real certsync-collector against slapd
# (syncrepl; no memberof overlay: membership from the group's `member`) or Samba AD (DirSync).
# Usage: col_service_group.sh slapd|samba
# Asserts, each read back from the events topic read_committed:
#   1. the snapshot holds the group's members only;
#   2. a user with certificates added to the group arrives with its certificates (entering scope);
#   3. a member removed from the group gets an out_of_scope removal;
#   4. re-added, it arrives again and every event of it is newer than the one before (cs_version, as the
#      publisher's gate compares: col_events' "order");
#   5. a user outside the group whose certificate changes never produces an event;
#   6. ldap.filter changed, then a member's attribute so that it leaves the filter while the collector runs
#      (out_of_scope removal, no resync: DirSync too), then back (re-entry, newer again);
#   7. no (object, version) twice and no version going backwards on the whole topic.
set -euo pipefail
FLAVOR=${1:?usage: col_service_group.sh slapd|samba}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
trap svc_stop_all EXIT

tag=cs$RANDOM
TP="it.$tag"
svc_directory "$FLAVOR" "$tag"
GROUP=$(svc_group_dn g)
if [ "$FLAVOR" = slapd ]; then
  FILTER_OUT="(&(objectClass=inetOrgPerson)(!(description=out)))"
else
  FILTER_OUT="(&(objectClass=user)(sAMAccountName=$tag*)(!(description=out)))"
fi

"$TOOLS/gen_users.py" --count 4 --seed 53 --out "$W/data" --flavor "$gen_flavor" --base "$BASE" \
  --ou "$tag" --prefix "$tag" "${gen_extra[@]}" >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
# Users with userCertificate values first: the group's joins must carry certificates.
mapfile -t U < <(svc_user_dns "$W/data/manifest.json")
svc_group_ldif g "${U[0]}" "${U[1]}" | ldapadd "${auth[@]}" >/dev/null || it_fail "ldapadd $GROUP"
svc_topics "$TP"
group_cfg() { # group_cfg FILE FILTER
  svc_config "$1" "$tag" "$TP" "$url" "$bind" "$pw" "$OU" "$2" "batch: {max_wait: 100ms}"
  sed -i "s|^  filter:.*|&\n  group_dn: \"$GROUP\"|" "$1"
}
group_cfg "$W/c.yaml" "$FILTER"
member_mod() { # member_mod add|delete DN
  printf 'dn: %s\nchangetype: modify\n%s: member\nmember: %s\n' "$GROUP" "$1" "$2" | ldapmodify "${auth[@]}" >/dev/null ||
    it_fail "ldapmodify $1 member $2"
}
set_desc() { # set_desc DN VALUE|"" (empty: delete)
  if [ -n "$2" ]; then
    printf 'dn: %s\nchangetype: modify\nreplace: description\ndescription: %s\n' "$1" "$2"
  else
    printf 'dn: %s\nchangetype: modify\ndelete: description\n' "$1"
  fi | ldapmodify "${auth[@]}" >/dev/null || it_fail "ldapmodify description of $1"
}
certs_of() { # the manifest's userCertificate sha256 list of DN as a Python list literal
  python3 -c 'import json,sys
u=[u for u in json.load(open(sys.argv[1]))["users"] if u["dn"].lower()==sys.argv[2].lower()][0]
print(sorted(v["sha256"] for v in u["values"] if v["attribute"]=="userCertificate"))' "$W/data/manifest.json" "$1"
}

# --- 1. snapshot: members only ----------------------------------------------------------------------
svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed"
await_events "$TP.events" "last('${U[0]}') and last('${U[1]}')" 20 || it_fail "the members are not in the snapshot"
await_events "$TP.events" "not last('${U[2]}') and not last('${U[3]}') and len(by_id) == 2" 1 ||
  it_fail "the snapshot holds users outside the group"
it_ok "snapshot: the group's 2 members only"

# --- 2. join ----------------------------------------------------------------------------------------
c2=$(certs_of "${U[2]}")
member_mod add "${U[2]}"
await_events "$TP.events" "last('${U[2]}') and last('${U[2]}')['kind']=='upsert' and sorted(last('${U[2]}')['user_certificate'])==$c2 and $c2" 30 ||
  it_fail "${U[2]} added to the group did not arrive with its certificates"
it_ok "a user added to the group arrives with its certificates"

# --- 3. leave ---------------------------------------------------------------------------------------
member_mod delete "${U[1]}"
await_events "$TP.events" "last('${U[1]}')['kind']=='removal' and last('${U[1]}').get('removal_reason')=='out_of_scope'" 30 ||
  it_fail "${U[1]} removed from the group got no out_of_scope removal"
it_ok "a user removed from the group gets an out_of_scope removal"

# --- 4. re-join: newer than the removal -------------------------------------------------------------
c1=$(certs_of "${U[1]}")
member_mod add "${U[1]}"
await_events "$TP.events" "last('${U[1]}')['kind']=='upsert' and sorted(last('${U[1]}')['user_certificate'])==$c1" 30 ||
  it_fail "${U[1]} added back did not arrive"
await_events "$TP.events" "[e['order'] for e in evs if e.get('dn','').lower()=='${U[1]}'.lower()]==['new','newer','newer']" 1 ||
  it_fail "the re-entry of ${U[1]} is not newer than its removal (cs_version)"
it_ok "re-added: upsert, removal, upsert, each newer than the one before"

# --- 5. outside the group: a certificate change produces nothing ----------------------------------------
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=outside $tag" -days 30 \
  -keyout "$W/k.pem" -outform DER -out "$W/c.der" 2>/dev/null || it_fail "openssl req"
attr=userCertificate
[ "$FLAVOR" = slapd ] && attr="userCertificate;binary"
printf 'dn: %s\nchangetype: modify\nadd: %s\n%s:: %s\n' "${U[3]}" "$attr" "$attr" "$(base64 -w0 "$W/c.der")" |
  ldapmodify "${auth[@]}" >/dev/null || it_fail "add a certificate to ${U[3]}"
# A later change to a member: once it is in Kafka, the earlier change outside the group was read too.
# (A certificate: AD stamps only the certificate attributes, so a mail change alone is no newer version.)
printf 'dn: %s\nchangetype: modify\nadd: %s\n%s:: %s\n' "${U[0]}" "$attr" "$attr" "$(base64 -w0 "$W/c.der")" |
  ldapmodify "${auth[@]}" >/dev/null || it_fail "add a certificate to ${U[0]}"
sha=$(sha256sum "$W/c.der" | cut -d' ' -f1)
await_events "$TP.events" "'$sha' in last('${U[0]}')['user_certificate']" 30 ||
  it_fail "the change to member ${U[0]} did not arrive"
await_events "$TP.events" "not last('${U[3]}')" 1 || it_fail "${U[3]} (not a member) produced an event"
it_ok "a certificate change outside the group produces no event"

# --- 6. filter: leave and re-enter scope, live ---------------------------------------------------------
# ldap.filter excludes description=out; U0 gets it (leaves), then loses it (re-enters), while the collector
# runs. syncrepl reports both; DirSync searches with the broad filter, requests description (the filter
# tests it) and re-reads with the real filter, so the removal arrives without a resync. The restart with the
# new filter runs one resync (the scope hash moved); no second one may explain the events.
# A removal by syncrepl delete carries the id only (no DN): follow U0 by its id.
id0=$(python3 -c 'import json,sys
print([j for j in map(json.loads, open(sys.argv[1])) if j.get("dn","").lower()==sys.argv[2].lower()][-1]["id"])' \
  "$W/await.json" "${U[0]}")
kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "SIGTERM did not stop the collector"
group_cfg "$W/c2.yaml" "$FILTER_OUT"
svc_start b "$W/c2.yaml"
await_log b 'full pass \(resync\) committed|resuming from the checkpoint' 60 ||
  it_fail "the collector with the new filter did not start"
set_desc "${U[0]}" out
# syncrepl sends an entry leaving its content as a delete (RFC 4533); the entry still exists, so the
# collector reports it out_of_scope all the same.
await_events "$TP.events" "by_id['$id0']['kind']=='removal' and by_id['$id0'].get('removal_reason')=='out_of_scope'" 30 ||
  it_fail "${U[0]} leaving the filter got no out_of_scope removal"
set_desc "${U[0]}" ""
await_events "$TP.events" "by_id['$id0']['kind']=='upsert' and by_id['$id0']['order']=='newer'" 30 ||
  it_fail "${U[0]} matching the filter again did not arrive as newer"
n_resync=$(grep -c 'full pass (resync) committed' "$W/b.log" || true)
[ "$n_resync" -le 1 ] || it_fail "leaving / re-entering the filter ran a resync ($n_resync full passes)"
kill -TERM "${SVC_PID[b]}"
await_exit b 30 || it_fail "SIGTERM did not stop the collector"
it_ok "filter: leaves scope (removal) and re-enters (newer upsert)"

# --- 7. invariants -------------------------------------------------------------------------------------
check_invariants "$TP.events"
it_ok "no (object, version) twice, no version going backwards"
