#!/usr/bin/env bash
# Multi-site end to end (issue 7, docs/architecture.md "Multi-site"): one person in two sources.
#   slapd (source <tag>a) and Samba AD (source <tag>b) each hold the same person (same mail), with different
#   certificates; two real collectors write to one events topic; one real publisher with
#   sources.priority: [<tag>a, <tag>b] writes to the Office 365 emulator. Asserted from the emulator journal
#   (the UserCertificate change entries of that one recipient):
#     1. after the initial sync the recipient holds slapd's certificate (the priority source);
#     2. a change in Samba (the non-owner) writes nothing, and the publisher counts a SKIPPED_NOT_OWNER
#        (certsync_publisher_skipped_total{reason="not_owner"});
#     3. a change in slapd (the owner) writes exactly once, the new certificate;
#     4. removing slapd's certificate hands the recipient over to Samba's newest certificate, in one write;
#     5. the recipient's sequence of contents never flip-flops: [samba v1]? slapd v1, slapd v2, samba v2.
#
# ctest sets CS_ENV_FILE (slapd fixture), SAMBA_ENV (samba fixture), CS_KAFKA_ENV, CS_KAFKA_SH, CS_KAFKA_DIR,
# O365_EMULATOR_ENV, COLLECTOR, PUBLISHER, CS_WORK_DIR. Every wait is a bounded poll of an observable state.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/it_lib.sh
. "$HERE/../integration/it_lib.sh"
it_init
COLLECTOR=${COLLECTOR:?COLLECTOR is not set; run through ctest}
PUBLISHER=${PUBLISHER:?PUBLISHER is not set; run through ctest}
# shellcheck disable=SC1090
. "${SAMBA_ENV:?SAMBA_ENV is not set; run through ctest}"
# shellcheck disable=SC1090
. "${CS_KAFKA_ENV:?CS_KAFKA_ENV is not set}"
# shellcheck disable=SC1090
. "${O365_EMULATOR_ENV:?O365_EMULATOR_ENV is not set}"
PIPE=$HERE/pipeline.py
# shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
IT_LOG=$W/publisher.log

declare -A PIDS=()
cleanup() {
  local n
  for n in "${!PIDS[@]}"; do cs_stop_pid "${PIDS[$n]}" 20 TERM || true; done
}
trap cleanup EXIT

tag=ms$RANDOM
SRC_A=${tag}a # slapd: the priority source
SRC_B=${tag}b # Samba AD
UA=${tag}p    # the person's uid in slapd
UB=${tag}q    # ... and sAMAccountName in Samba
slapd_auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
samba_auth=(-x -H "$SAMBA_LDAPS_URL" -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE")

# --- the person: a CA per directory (gen_users.py, its own generated user is not added), then the person
# with one valid S/MIME certificate for the same address in each directory (pipeline.py extra-user).
for d in a b; do
  "$TOOLS/gen_users.py" --count 1 --seed 5 --out "$W/$d" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" \
    --prefix "${tag}g$d" --no-base-entry >/dev/null 2>&1 || it_fail "gen_users.py failed"
done
# The person's address: what extra-user gives the slapd user (uid@<dc parts of the base>, as gen_users.py).
MAIL=$(python3 -c 'import sys
p = [r.split("=", 1)[1] for r in sys.argv[1].split(",") if r.strip().lower().startswith("dc=")]
print(sys.argv[2] + "@" + (".".join(p) or "example.test"))' "$SLAPD_BASE" "$UA")
read -r _ SHA_A1 < <(python3 "$PIPE" extra-user --data "$W/a" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" \
  --uid "$UA" --address "$MAIL") || it_fail "extra-user (slapd)"
read -r _ SHA_B1 < <(python3 "$PIPE" extra-user --data "$W/b" --flavor ad --base "$SAMBA_BASE" --ou "$tag" \
  --uid "$UB" --address "$MAIL") || it_fail "extra-user (samba)"
# The Samba object is the same person: same mail and primary proxy address (its UPN stays in its own domain).
sed -i -e "s/^mail: .*/mail: $MAIL/" -e "s/^proxyAddresses: SMTP:.*/proxyAddresses: SMTP:$MAIL/" \
  -e "s/^userPrincipalName: .*/userPrincipalName: $UB@${SAMBA_REALM,,}/" "$W/b/extra.ldif"
python3 - "$W/b/manifest.json" "$UB" "$MAIL" <<'PY' || it_fail "manifest"
import json, sys
m = json.load(open(sys.argv[1]))
for u in m["users"]:
    if u["uid"] == sys.argv[2]:
        u["mail"] = sys.argv[3]
json.dump(m, open(sys.argv[1], "w"))
PY
printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$tag" "$SLAPD_BASE" "$tag" >"$W/a/ou.ldif"
printf 'dn: OU=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$tag" "$SAMBA_BASE" "$tag" >"$W/b/ou.ldif"
ldapadd "${slapd_auth[@]}" -f "$W/a/ou.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
ldapadd "${slapd_auth[@]}" -f "$W/a/extra.ldif" >>"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
ldapadd "${samba_auth[@]}" -f "$W/b/ou.ldif" >>"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
ldapadd "${samba_auth[@]}" -f "$W/b/extra.ldif" >>"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"

# --- Kafka topics of this test only
for spec in events:3:compact a.state:1:compact a.held:1:compact b.state:1:compact b.held:1:compact \
  pstate:3:compact results:1: dlq:1: retry:3:; do
  IFS=: read -r t n c <<<"$spec"
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$tag.$t" --partitions "$n" ${c:+--compact} >/dev/null || it_fail "topic $tag.$t"
done

# --- Office 365: the shared emulator, reset, with the person's one mailbox (both sources resolve it by mail)
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/reset" >/dev/null || it_fail "emulator reset"
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/state/recipients" -H 'Content-Type: application/json' -d "{
  \"UserPrincipalName\": \"$MAIL\", \"PrimarySmtpAddress\": \"$MAIL\", \"DisplayName\": \"$tag person\",
  \"RecipientTypeDetails\": \"UserMailbox\", \"ExternalDirectoryObjectId\": \"$(cat /proc/sys/kernel/random/uuid)\",
  \"IsDirSynced\": true, \"IsExchangeCloudManaged\": true}" >/dev/null || it_fail "seeding the emulator"

# --- the services: two collectors, one publisher
it_slapd_collector_yaml "$SRC_A" "ou=$tag,$SLAPD_BASE" 10s \
  "topics: {events: $tag.events, checkpoint: $tag.a.state, held: $tag.a.held}" >"$W/a.yaml"
cat >"$W/b.yaml" <<EOF
source: {id: $SRC_B}
ldap:
  url: "$SAMBA_LDAPS_URL"
  bind_dn: "$SAMBA_BIND_DN"
  password_file: "$SAMBA_PASSWORD_FILE"
  base_dns: ["OU=$tag,$SAMBA_BASE"]
  filter: "(&(objectClass=user)(sAMAccountName=$UB))"
  timeout: 10s
  poll_interval: 200ms
  tls: {ca_file: "$SAMBA_CA_FILE"}
topics: {events: $tag.events, checkpoint: $tag.b.state, held: $tag.b.held}
batch: {max_wait: 100ms}
admin: {listen: "127.0.0.1:0"}
kafka: {bootstrap.servers: "$KAFKA_BOOTSTRAP"}
EOF
pport=$(cs_free_port)
it_publisher_yaml "$tag" "$pport" 100ms "sources: {priority: [$SRC_A, $SRC_B]}" "resolve: {order: [mail]}" \
  >"$W/publisher.yaml"
for c in a b; do
  "$COLLECTOR" --check-config --config "$W/$c.yaml" >/dev/null 2>"$W/check.err" || it_fail "collector $c config: $(cat "$W/check.err")"
done
"$PUBLISHER" --check-config --config "$W/publisher.yaml" >/dev/null 2>"$W/check.err" || it_fail "publisher config: $(cat "$W/check.err")"
"$COLLECTOR" --config "$W/a.yaml" >"$W/collector-a.log" 2>&1 &
PIDS[a]=$!
"$COLLECTOR" --config "$W/b.yaml" >"$W/collector-b.log" 2>&1 &
PIDS[b]=$!
"$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher.log" 2>&1 &
PIDS[publisher]=$!

# metric REGEX: the value of the publisher's first /metrics line matching REGEX (0 when absent).
metric() {
  local v
  v=$(curl -sf "http://127.0.0.1:$pport/metrics" 2>/dev/null | grep -E "$1" | head -1 | awk '{print $NF}') || true
  echo "${v:-0}"
}

# writes [SINCE]: the UserCertificate contents written to the person's recipient after journal seq SINCE,
# one line each ("-" for an empty list), in journal order.
writes() {
  python3 - "$O365_EMULATOR_ADMIN_URL" "${1:-0}" "$MAIL" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(f"{sys.argv[1]}/journal?since={sys.argv[2]}&kind=change", timeout=5) as r:
    j = json.loads(r.read())
for e in j["entries"]:
    if (e.get("primary_smtp") or "").lower() == sys.argv[3].lower() and e.get("attribute") == "UserCertificate":
        print(",".join(e.get("after") or []) or "-")
PY
}

# await FUNC SECONDS WHAT: polls the function FUNC until it succeeds (bounded).
await() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    if "$1"; then return 0; fi
    sleep 0.2
  done
  writes 0 >&2 || true
  it_fail "$3 (not within $2 s)"
}

last_write() { writes "${1:-0}" | tail -1; }
seq_now() { python3 "$PIPE" journal-seq --admin "$O365_EMULATOR_ADMIN_URL"; }
handled() { metric '^certsync_publisher_events_total '; }

# --- 1. initial sync: both collectors' snapshots handled, slapd's certificate on the recipient
synced() { [ "$(handled)" -ge 2 ] && [ "$(last_write)" = "$SHA_A1" ]; }
await synced 50 \
  "the initial sync did not leave slapd's certificate $SHA_A1 on $MAIL"
it_ok "initial sync: $MAIL holds the priority source's certificate ($(writes | wc -l) write(s))"

# --- 2. a change in Samba (not the owner): no write, one SKIPPED_NOT_OWNER
seq1=$(seq_now)
skipped0=$(metric 'certsync_publisher_skipped_total\{reason="not_owner"\}')
read -r SHA_B2 _ < <(python3 "$PIPE" change --data "$W/b" --flavor ad --uid "$UB" --out "$W/b2.ldif") || it_fail "change (samba)"
ldapmodify "${samba_auth[@]}" -f "$W/b2.ldif" >/dev/null || it_fail "ldapmodify (samba)"
not_owner_counted() { [ "$(metric 'certsync_publisher_skipped_total\{reason="not_owner"\}')" -gt "$skipped0" ]; }
await not_owner_counted 30 \
  "the Samba change was not counted as SKIPPED_NOT_OWNER"
[ -z "$(writes "$seq1")" ] || it_fail "the non-owner's change wrote to $MAIL: $(writes "$seq1")"
it_ok "a change in the non-owner source: no write, counted as not_owner"

# --- 3. a change in slapd (the owner): exactly one write
read -r SHA_A2 _ < <(python3 "$PIPE" change --data "$W/a" --flavor openldap --uid "$UA" --out "$W/a2.ldif") ||
  it_fail "change (slapd)"
handled0=$(handled)
ldapmodify "${slapd_auth[@]}" -f "$W/a2.ldif" >/dev/null || it_fail "ldapmodify (slapd)"
owner_written() { [ "$(last_write "$seq1")" = "$SHA_A2" ] && [ "$(handled)" -gt "$handled0" ]; }
await owner_written 30 \
  "slapd's new certificate $SHA_A2 did not reach $MAIL"
[ "$(writes "$seq1" | wc -l)" -eq 1 ] || it_fail "the owner's change wrote more than once: $(writes "$seq1")"
it_ok "a change in the owner: exactly one write"

# --- 4. slapd's certificate removed: Samba's newest certificate takes over, in one write
seq2=$(seq_now)
owner0=$(metric '^certsync_publisher_owner_writes_total ')
ldapmodify "${slapd_auth[@]}" >/dev/null <<LDIF || it_fail "ldapmodify (slapd delete)"
dn: uid=$UA,ou=$tag,$SLAPD_BASE
changetype: modify
delete: userCertificate;binary
LDIF
handed_over() {
  [ "$(last_write "$seq2")" = "$SHA_B2" ] && [ "$(metric '^certsync_publisher_owner_writes_total ')" -gt "$owner0" ]
}
await handed_over 30 \
  "the recipient was not handed over to Samba's certificate $SHA_B2"
[ "$(writes "$seq2" | wc -l)" -eq 1 ] || it_fail "the handover wrote more than once: $(writes "$seq2")"
it_ok "owner's certificates removed: handed over to the other source in one write"

# --- 5. no flip-flop over the whole run (consecutive repeats collapsed)
seqs=$(writes 0 | uniq | tr '\n' ' ')
case "$seqs" in
  "$SHA_A1 $SHA_A2 $SHA_B2 " | "$SHA_B1 $SHA_A1 $SHA_A2 $SHA_B2 ") ;;
  *) it_fail "the recipient's contents flip-flopped or went wrong: $seqs (want [b1] a1 a2 b2)" ;;
esac
it_ok "the recipient's sequence never flip-flops: $(writes 0 | wc -l) writes"
grep -q '"level":"error"' "$W/publisher.log" && it_fail "the publisher logged an error"
exit 0
