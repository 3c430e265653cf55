#!/usr/bin/env bash
# Two domain controllers of one Samba AD domain (issue 7, "Multi-site", last sentence): real AD replication.
#   DC1 (samba.sh start --replication) and DC2 (samba.sh join: samba-tool domain join, its own 127.88.x.y);
#   Samba's own DRS replication carries DC1's changes to DC2 (drepl notification, ~1 s here; samba.sh's
#   header says what it needs without DNS: a private /etc/hosts in the DCs' mount namespace, krb5.conf, the
#   DRS SPN, -M prefork). Nothing forces it: the test only awaits it.
#   A collector per DC with its own source id (design "Multi-site": one collector per site, own source id, one
#   topic), one publisher with sources.priority [dc1, dc2]. Both DCs hold the same object (same objectGUID),
#   so the publisher sees every change twice, under two keys, with the SAME version stamp (replPropertyMetaData's
#   originating version / time / invocationId survive replication). One ldapmodify on DC1 must give:
#     1. initial sync, DC2's collector started first: one Office 365 write for the object both DCs hold, DC1's
#        later snapshot (its first sighting, no version of its own yet) a duplicate of its replica's write;
#     2. DC2's copy reported after DC1's was written (DC2's collector paused until DC2 has replicated): exactly
#        one write, the copy skipped as STALE by the version gate (pub_state_view: the owner is the same object
#        through another DC, its version equals this one), not by ownership (skipped{reason="not_owner"} unchanged);
#     3. the other order, DC2's copy first (DC1's collector paused): DC2 is not the owner (sources.priority),
#        nothing is written until DC1 reports, then exactly one write (SKIPPED_NOT_OWNER: the owner rule);
#     4. no regressing write over the whole run (the recipient's contents: v1, v2, v3, never back).
# ctest sets CS_KAFKA_ENV, CS_KAFKA_SH, CS_KAFKA_DIR, O365_EMULATOR_ENV, COLLECTOR, PUBLISHER, CS_WORK_DIR.
# The DC pair is the test's own (~10-15 s: template copy + a 5-10 s join), not the shared samba fixture:
# joining a DC changes the domain. Every wait is a bounded poll of an observable state.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export CS_ENV_FILE=${CS_KAFKA_ENV:?CS_KAFKA_ENV is not set; run through ctest}
# shellcheck source=../integration/it_lib.sh
. "$HERE/../integration/it_lib.sh"
it_init
COLLECTOR=${COLLECTOR:?COLLECTOR is not set; run through ctest}
PUBLISHER=${PUBLISHER:?PUBLISHER is not set; run through ctest}
# shellcheck disable=SC1090
. "${O365_EMULATOR_ENV:?O365_EMULATOR_ENV is not set}"
SAMBA_SH=$HERE/../services/samba.sh
PIPE=$HERE/pipeline.py
[ "$(id -u)" -eq 0 ] || { echo "skipped: Samba AD DCs need root"; exit 77; }
# shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
IT_LOG=$W/publisher.log

declare -A PIDS=()
cleanup() {
  local n
  for n in "${!PIDS[@]}"; do
    kill -CONT "${PIDS[$n]}" 2>/dev/null || true # a paused collector must see its SIGTERM
    cs_stop_pid "${PIDS[$n]}" 20 TERM || true
  done
  [ -f "$W/dc2/pid" ] || [ -f "$W/dc2/address" ] && { "$SAMBA_SH" stop "$W/dc2" >/dev/null || true; }
  [ -f "$W/dc1/pid" ] || [ -f "$W/dc1/address" ] && { "$SAMBA_SH" stop "$W/dc1" >/dev/null || true; }
}
trap cleanup EXIT

# --- the DC pair
"$SAMBA_SH" start "$W/dc1" --replication --cache "${CS_CACHE_DIR:-$HOME/.cache/certsync}/samba-template" ||
  it_fail "DC1 did not start"
t=$(cs_now_ms)
"$SAMBA_SH" join "$W/dc2" "$W/dc1" || it_fail "DC2 could not join the domain (output above)"
it_ok "DC2 joined the domain and serves LDAP in $(cs_since_s "$t") s"
# shellcheck disable=SC1091
DC1_URL=$(. "$W/dc1/env" && echo "$SAMBA_LDAPS_URL")
# shellcheck disable=SC1091
DC2_URL=$(. "$W/dc2/env" && echo "$SAMBA_LDAPS_URL")
# shellcheck disable=SC1091
. "$W/dc1/env"
ldap_on() { # DC TOOL ARGS...: ldapsearch/ldapmodify against DC 1 or 2
  local dc=$1 tool=$2
  shift 2
  LDAPTLS_CACERT=$W/dc$dc/tls/ca.pem LDAPTLS_REQCERT=demand "$tool" -x -H "$([ "$dc" = 1 ] && echo "$DC1_URL" || echo "$DC2_URL")" \
    -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" "$@"
}

tag=dc$RANDOM
U=${tag}u
MAIL=$U@${SAMBA_REALM,,}
"$TOOLS/gen_users.py" --count 1 --seed 5 --out "$W/data" --flavor ad --base "$SAMBA_BASE" --ou "$tag" \
  --prefix "${tag}g" >/dev/null 2>&1 || it_fail "gen_users.py failed"
read -r _ SHA1 < <(python3 "$PIPE" extra-user --data "$W/data" --flavor ad --base "$SAMBA_BASE" --ou "$tag" \
  --uid "$U" --address "$MAIL") || it_fail "extra-user"
printf 'dn: OU=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$tag" "$SAMBA_BASE" "$tag" >"$W/ou.ldif"
ldap_on 1 ldapadd -f "$W/ou.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd OU: $(cat "$W/ldapadd.out")"
t=$(cs_now_ms)
ldap_on 1 ldapadd -f "$W/data/extra.ldif" >>"$W/ldapadd.out" 2>&1 || it_fail "ldapadd user: $(cat "$W/ldapadd.out")"
udn="CN=$U,OU=$tag,$SAMBA_BASE"
cert_sha() { # DC: sha256 of the user's userCertificate on that DC ("" if none)
  ldap_on "$1" ldapsearch -LLL -o ldif-wrap=no -b "$udn" -s base userCertificate 2>/dev/null |
    sed -n 's/^userCertificate:: //p' | base64 -d | sha256sum | awk '{print $1}'
}
replicated() { # SHA SECONDS: waits until DC2 holds certificate SHA, by Samba's own replication
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    [ "$(cert_sha 2)" = "$1" ] && return 0
    sleep 0.1
  done
  cs_show_log "$W/dc1/samba.log"
  it_fail "DC1's change did not replicate to DC2 by itself within $2 s (drepl; samba logs in $W/dc1, $W/dc2)"
}
replicated "$SHA1" 30
it_ok "the new user replicated DC1 -> DC2 by itself in $(cs_since_s "$t") s"

# --- topics, emulator, services
for spec in events:3:compact 1.state:1:compact 1.held:1:compact 2.state:1:compact 2.held:1:compact \
  pstate:3:compact results:1: dlq:1: retry:3:; do
  IFS=: read -r tp n c <<<"$spec"
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$tag.$tp" --partitions "$n" ${c:+--compact} >/dev/null || it_fail "topic $tag.$tp"
done
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/reset" >/dev/null || it_fail "emulator reset"
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/state/recipients" -H 'Content-Type: application/json' -d "{
  \"UserPrincipalName\": \"$MAIL\", \"PrimarySmtpAddress\": \"$MAIL\", \"DisplayName\": \"$tag\",
  \"RecipientTypeDetails\": \"UserMailbox\", \"ExternalDirectoryObjectId\": \"$(cat /proc/sys/kernel/random/uuid)\",
  \"IsDirSynced\": true, \"IsExchangeCloudManaged\": true}" >/dev/null || it_fail "seeding the emulator"
for dc in 1 2; do
  cat >"$W/c$dc.yaml" <<EOF
source: {id: ${tag}-dc$dc}
ldap:
  url: "$([ "$dc" = 1 ] && echo "$DC1_URL" || echo "$DC2_URL")"
  bind_dn: "$SAMBA_BIND_DN"
  password_file: "$SAMBA_PASSWORD_FILE"
  base_dns: ["$SAMBA_BASE"]
  filter: "(&(objectClass=user)(sAMAccountName=$U))"
  mode: dirsync
  poll_interval: 200ms
  timeout: 10s
  tls: {ca_file: "$W/dc$dc/tls/ca.pem"}
topics: {events: $tag.events, checkpoint: $tag.$dc.state, held: $tag.$dc.held}
batch: {max_wait: 50ms}
admin: {listen: "127.0.0.1:0"}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP"}
EOF
done
pport=$(cs_free_port)
it_publisher_yaml "$tag" "$pport" 50ms "sources: {priority: [${tag}-dc1, ${tag}-dc2]}" "resolve: {order: [mail]}" \
  >"$W/publisher.yaml"
for dc in 1 2; do
  "$COLLECTOR" --check-config --config "$W/c$dc.yaml" >/dev/null 2>"$W/check.err" || it_fail "collector $dc config: $(cat "$W/check.err")"
done
start_collector() { # DC
  "$COLLECTOR" --config "$W/c$1.yaml" >"$W/collector-$1.log" 2>&1 &
  PIDS[c$1]=$!
}
# DC2's collector first: its snapshot is the object's first sighting (see 1.)
start_collector 2
"$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher.log" 2>&1 &
PIDS[publisher]=$!

metric() {
  local v
  v=$(curl -sf "http://127.0.0.1:$pport/metrics" 2>/dev/null | grep -E "$1" | head -1 | awk '{print $NF}') || true
  echo "${v:-0}"
}
handled() { metric '^certsync_publisher_events_total '; }
writes() { # [SINCE]: UserCertificate contents written to the recipient after journal seq SINCE, in order
  python3 - "$O365_EMULATOR_ADMIN_URL" "${1:-0}" "$MAIL" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(f"{sys.argv[1]}/journal?since={sys.argv[2]}&kind=change", timeout=5) as r:
    j = json.loads(r.read())
for e in j["entries"]:
    if (e.get("primary_smtp") or "").lower() == sys.argv[3].lower() and e.get("attribute") == "UserCertificate":
        print(",".join(e.get("after") or []) or "-")
PY
}
await() { # FUNC SECONDS WHAT
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    if "$1"; then return 0; fi
    sleep 0.2
  done
  writes 0 >&2 || true
  it_fail "$3 (not within $2 s)"
}

skipped() { metric "^certsync_publisher_skipped_total\\{reason=\"$1\"\\} "; }

# --- 1. initial sync, the lower-ranked DC's snapshot first: DC2 alone claims the recipient and writes it;
# DC1's snapshot (its first sighting: no version of its own to gate on) takes the recipient over with the
# same content, recorded as a duplicate of its replica's write, not written again.
synced2() { [ "$(handled)" -ge 1 ] && [ "$(writes | tail -1)" = "$SHA1" ]; }
await synced2 60 "DC2's snapshot did not put $SHA1 on $MAIL"
dup0=$(skipped duplicate)
start_collector 1
synced() { [ "$(handled)" -ge 2 ]; }
await synced 60 "the publisher did not consume DC1's snapshot"
[ "$(writes | wc -l)" -eq 1 ] || it_fail "the initial sync wrote more than once for one object on two DCs: $(writes)"
[ "$(skipped duplicate)" -eq $((dup0 + 1)) ] ||
  it_fail "DC1's snapshot was not recorded as a duplicate of DC2's write: skipped duplicate $dup0 -> $(skipped duplicate)"
it_ok "initial sync: one write for the object both DCs hold (DC1's later copy: a duplicate of its replica's write)"

# change N COLLECTOR_TO_PAUSE: one certificate change on DC1, with that DC's collector stopped until DC2 holds
# the change and the other collector's copy is consumed; then it resumes and its copy is consumed too.
# Sets SHA (the new certificate's) and SEQ (journal position before it).
change() {
  local n=$1 paused=$2 other h0 t0
  other=$([ "$paused" = c1 ] && echo c2 || echo c1)
  SEQ=$(python3 "$PIPE" journal-seq --admin "$O365_EMULATOR_ADMIN_URL")
  read -r SHA _ < <(python3 "$PIPE" change --data "$W/data" --flavor ad --uid "$U" --out "$W/c$n.ldif") ||
    it_fail "change $n"
  h0=$(handled)
  kill -STOP "${PIDS[$paused]}"
  t0=$(cs_now_ms)
  ldap_on 1 ldapmodify -f "$W/c$n.ldif" >/dev/null || it_fail "ldapmodify on DC1"
  replicated "$SHA" 30
  it_ok "change $n replicated DC1 -> DC2 by itself in $(cs_since_s "$t0") s"
  one_seen() { [ "$(handled)" -ge $((h0 + 1)) ]; }
  await one_seen 30 "the publisher did not consume collector $other's copy of change $n"
  kill -CONT "${PIDS[$paused]}"
  both_seen() { [ "$(handled)" -ge $((h0 + 2)) ]; }
  await both_seen 30 "the publisher did not consume collector $paused's copy of change $n after it resumed"
}
last_write() { [ "$(writes "$SEQ" | tail -1)" = "$SHA" ]; }

# --- 2. DC1's copy first, DC2's after the write: the version gate skips it (stale), not the owner rule
stale0=$(skipped stale)
owner0=$(skipped not_owner)
change 2 c2
await last_write 20 "change 2 was not written"
SHA2=$SHA
n=$(writes "$SEQ" | wc -l)
[ "$n" -eq 1 ] || it_fail "change 2 seen on two DCs gave $n writes: $(writes "$SEQ" | tr '\n' ' ')"
[ "$(skipped stale)" -eq $((stale0 + 1)) ] ||
  it_fail "DC2's copy of change 2 was not skipped by the version gate: skipped stale $stale0 -> $(skipped stale)"
[ "$(skipped not_owner)" -eq "$owner0" ] ||
  it_fail "DC2's copy of change 2 was skipped by ownership, not by version: not_owner $owner0 -> $(skipped not_owner)"
it_ok "change 2: one write; DC2's replicated copy (same stamps) skipped as stale by the version gate"

# --- 3. DC2's copy first: not the owner (sources.priority), written once DC1 reports
owner0=$(skipped not_owner)
change 3 c1
await last_write 20 "change 3 was not written after DC1's collector reported it"
SHA3=$SHA
n=$(writes "$SEQ" | wc -l)
[ "$n" -eq 1 ] || it_fail "change 3 seen on two DCs gave $n writes: $(writes "$SEQ" | tr '\n' ' ')"
[ "$(skipped not_owner)" -eq $((owner0 + 1)) ] ||
  it_fail "DC2's early copy of change 3 was not skipped as not_owner: $owner0 -> $(skipped not_owner)"
it_ok "change 3: DC2's copy first is not the owner's (sources.priority); one write when DC1 reports it"

# --- 4. never a regressing write
seqs=$(writes 0 | tr '\n' ' ')
[ "$seqs" = "$SHA1 $SHA2 $SHA3 " ] || it_fail "the recipient's writes went back or repeated: $seqs (want v1 v2 v3)"
it_ok "no regressing write: v1, v2, v3"
exit 0
