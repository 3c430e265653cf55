#!/usr/bin/env bash
# col_service_nested: ldap.group_nested, the real certsync-collector against slapd (syncrepl; groupOfNames)
# or Samba AD (DirSync; the server filter uses the in-chain memberOf rule).
# Usage: col_service_nested.sh slapd|samba
# The groups: G (ldap.group_dn) = {U0, S1}, S1 = {U1, S2}, S2 = {U2, G}: a cycle G -> S1 -> S2 -> G.
# Asserts, each read back from the events topic read_committed:
#   1. the snapshot holds U0, U1, U2 (members through two levels of nesting) and not U3, U4; the cycle ends
#      (the snapshot commits);
#   2. U3 added to S2 (two levels down) enters scope with its certificates: the nested group is watched;
#   3. S1 removed from G: U1, U2 and U3 get out_of_scope removals, U0 stays;
#   4. S1 added back while the collector is down: the restart sees another closure (the scope hash) and
#      runs a resync: U1, U2, U3 are back, each newer than its removal;
#   5. no (object, version) twice and no version going backwards on the whole topic.
set -euo pipefail
FLAVOR=${1:?usage: col_service_nested.sh slapd|samba}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
trap svc_stop_all EXIT

tag=cs$RANDOM
TP="it.$tag"
svc_directory "$FLAVOR" "$tag"

"$TOOLS/gen_users.py" --count 5 --seed 59 --out "$W/data" --flavor "$gen_flavor" --base "$BASE" \
  --ou "$tag" --prefix "$tag" "${gen_extra[@]}" >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
# Users with userCertificate values first: the entering users must carry certificates.
mapfile -t U < <(svc_user_dns "$W/data/manifest.json")
G=$(svc_group_dn g) S1=$(svc_group_dn s1) S2=$(svc_group_dn s2)
# Members must exist on AD (linked values): S2, S1, G, then the edge that closes the cycle.
{
  svc_group_ldif s2 "${U[2]}"
  echo
  svc_group_ldif s1 "${U[1]}" "$S2"
  echo
  svc_group_ldif g "${U[0]}" "$S1"
} | ldapadd "${auth[@]}" >"$W/groups.out" 2>&1 || it_fail "ldapadd groups: $(cat "$W/groups.out")"
member_mod() { # member_mod GROUP add|delete DN
  printf 'dn: %s\nchangetype: modify\n%s: member\nmember: %s\n' "$1" "$2" "$3" | ldapmodify "${auth[@]}" >/dev/null ||
    it_fail "ldapmodify $1: $2 member $3"
}
member_mod "$S2" add "$G"

svc_topics "$TP"
svc_config "$W/c.yaml" "$tag" "$TP" "$url" "$bind" "$pw" "$OU" "$FILTER" "batch: {max_wait: 100ms}"
sed -i "s|^  filter:.*|&\n  group_dn: \"$G\"\n  group_nested: true|" "$W/c.yaml"
certs_of() { # the manifest's userCertificate sha256 list of DN as a Python list literal
  python3 -c 'import json,sys
u=[u for u in json.load(open(sys.argv[1]))["users"] if u["dn"].lower()==sys.argv[2].lower()][0]
print(sorted(v["sha256"] for v in u["values"] if v["attribute"]=="userCertificate"))' "$W/data/manifest.json" "$1"
}

# --- 1. snapshot: members through nesting, the cycle cut -------------------------------------------------
svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed (a nesting cycle hangs?)"
await_events "$TP.events" "last('${U[0]}') and last('${U[1]}') and last('${U[2]}')" 20 ||
  it_fail "the members of the nested groups are not in the snapshot"
await_events "$TP.events" "not last('${U[3]}') and not last('${U[4]}') and len(by_id) == 3" 1 ||
  it_fail "the snapshot holds users outside the nested groups"
it_ok "snapshot: U0, U1 (S1), U2 (S2, two levels down); the cycle S2 -> G is cut"

# --- 2. a user added two levels down enters scope ------------------------------------------------------------
c3=$(certs_of "${U[3]}")
member_mod "$S2" add "${U[3]}"
await_events "$TP.events" "last('${U[3]}') and last('${U[3]}')['kind']=='upsert' and sorted(last('${U[3]}')['user_certificate'])==$c3 and $c3" 30 ||
  it_fail "${U[3]} added to the nested group S2 did not arrive with its certificates"
it_ok "a user added to a nested group (two levels down) enters scope"

# --- 3. the nested group removed: its users leave ---------------------------------------------------------
member_mod "$G" delete "$S1"
for u in "${U[1]}" "${U[2]}" "${U[3]}"; do
  await_events "$TP.events" "last('$u')['kind']=='removal' and last('$u').get('removal_reason')=='out_of_scope'" 30 ||
    it_fail "$u (in S1's closure) got no out_of_scope removal when S1 left G"
done
await_events "$TP.events" "last('${U[0]}')['kind']=='upsert'" 1 || it_fail "${U[0]} (a direct member) left scope"
it_ok "S1 removed from G: U1, U2, U3 get out_of_scope removals, U0 stays"

# --- 4. the closure changed while down: resync ----------------------------------------------------------
kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "SIGTERM did not stop the collector"
member_mod "$G" add "$S1"
svc_start b "$W/c.yaml" --once
await_exit b 60 || it_fail "--once after the closure changed did not finish"
[ "$SVC_RC" = 0 ] || it_fail "--once exit code $SVC_RC: $(tail -3 "$W/b.log")"
grep -q 'full pass (resync) committed' "$W/b.log" || it_fail "another closure at restart ran no resync"
for u in "${U[1]}" "${U[2]}" "${U[3]}"; do
  await_events "$TP.events" "last('$u')['kind']=='upsert' and last('$u')['order']=='newer'" 10 ||
    it_fail "$u back in the closure did not arrive as newer than its removal"
done
it_ok "S1 added back while down: the restart resyncs and U1, U2, U3 re-enter, newer"

# --- 5. invariants -------------------------------------------------------------------------------------
check_invariants "$TP.events"
it_ok "no (object, version) twice, no version going backwards"
