#!/usr/bin/env bash
# Two domain controllers of one Samba AD domain (issue 7, "Multi-site", last sentence): real AD replication.
#   DC1 (samba.sh start --replication) and DC2 (samba.sh join: samba-tool domain join, its own 127.88.x.y);
#   a collector per DC with its own source id (docs: design "Multi-site": one collector per site, own source
#   id, one topic; both DCs hold the same objects, so the publisher sees every change twice, under two keys,
#   with the SAME version stamp: replPropertyMetaData's originating invocationId / USN / time survive
#   replication) and one publisher with sources.priority [dc1, dc2] (the owner rule of e2e_multisite).
#   One ldapmodify on DC1, replicated to DC2 (samba.sh replicate: DRS GetNCChanges), must give:
#     1. the new certificate on DC2 too (replication happened), both collectors' events consumed;
#     2. exactly one Office 365 write for the change (journal), the other copy a no-op;
#     3. no regressing write over the whole run (the recipient's contents: v1 then v2, never back).
# ctest sets CS_KAFKA_ENV, CS_KAFKA_SH, CS_KAFKA_DIR, O365_EMULATOR_ENV, COLLECTOR, PUBLISHER, CS_WORK_DIR.
# The DC pair is the test's own (~15 s: template copy + a 5-10 s join), not the shared samba fixture:
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
  for n in "${!PIDS[@]}"; do cs_stop_pid "${PIDS[$n]}" 20 TERM || true; done
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
ldap_on 1 ldapadd -f "$W/data/extra.ldif" >>"$W/ldapadd.out" 2>&1 || it_fail "ldapadd user: $(cat "$W/ldapadd.out")"
"$SAMBA_SH" replicate "$W/dc2" "$W/dc1" >/dev/null || it_fail "replication DC1 -> DC2 failed"
udn="CN=$U,OU=$tag,$SAMBA_BASE"
cert_sha() { # DC: sha256 of the user's userCertificate on that DC ("" if none)
  ldap_on "$1" ldapsearch -LLL -o ldif-wrap=no -b "$udn" -s base userCertificate 2>/dev/null |
    sed -n 's/^userCertificate:: //p' | base64 -d | sha256sum | awk '{print $1}'
}
[ "$(cert_sha 2)" = "$SHA1" ] || it_fail "the user did not replicate to DC2"

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
  "$COLLECTOR" --config "$W/c$dc.yaml" >"$W/collector-$dc.log" 2>&1 &
  PIDS[c$dc]=$!
done
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

# --- 1. initial sync: both snapshots consumed, the certificate on the recipient
synced() { [ "$(handled)" -ge 2 ] && [ "$(writes | tail -1)" = "$SHA1" ]; }
await synced 60 "the initial sync did not put $SHA1 on $MAIL"
[ "$(writes | wc -l)" -eq 1 ] || it_fail "the initial sync wrote more than once for one object on two DCs: $(writes)"
it_ok "initial sync: one write for the object both DCs hold"

# --- 2. one change on DC1, replicated to DC2: one write
seq=$(python3 "$PIPE" journal-seq --admin "$O365_EMULATOR_ADMIN_URL")
read -r SHA2 _ < <(python3 "$PIPE" change --data "$W/data" --flavor ad --uid "$U" --out "$W/c2.ldif") || it_fail "change"
handled0=$(handled)
ldap_on 1 ldapmodify -f "$W/c2.ldif" >/dev/null || it_fail "ldapmodify on DC1"
"$SAMBA_SH" replicate "$W/dc2" "$W/dc1" >/dev/null || it_fail "replication DC1 -> DC2 failed"
[ "$(cert_sha 2)" = "$SHA2" ] || it_fail "the change did not replicate to DC2"
both_seen() { [ "$(handled)" -ge $((handled0 + 2)) ] && [ "$(writes "$seq" | tail -1)" = "$SHA2" ]; }
await both_seen 40 "the publisher did not consume both DCs' events for the change and write $SHA2"
# Settle on the publisher's own count: both copies consumed means both decisions are made.
n=$(writes "$seq" | wc -l)
[ "$n" -eq 1 ] || it_fail "one change seen on two DCs gave $n writes: $(writes "$seq" | tr '\n' ' ')"
it_ok "one ldapmodify, replicated to DC2, seen by both collectors: exactly one write"

# --- 3. never a regressing write
seqs=$(writes 0 | tr '\n' ' ')
[ "$seqs" = "$SHA1 $SHA2 " ] || it_fail "the recipient's writes went back or repeated: $seqs (want v1 v2)"
it_ok "no regressing write: v1, v2"
exit 0
