#!/usr/bin/env bash
# The S/MIME proof, end to end through the REAL collector and publisher (issue 7):
#   slapd (users from gen_users.py) -> certsync-collector -> Kafka -> certsync-publisher -> Office 365 emulator
#
#   e2e_smime.sh smime    after the initial sync, read a user's certificate back through the emulator's
#                         Exchange admin API (Get-Mailbox with an app token), encrypt a message to it with
#                         `openssl cms -encrypt` and decrypt it with the user's private key from
#                         gen_users.py: the text must come back unchanged (and another key must fail).
#   e2e_smime.sh policy   a certificate the policy refuses (expired; for another address) is not published,
#                         while the same sync publishes the valid ones. Exits 77 (ctest SKIP) with the reason
#                         when the publisher does not apply the certificate policy yet (no policy keys in
#                         --help-config) and the refused values were published.
#
# ctest sets CS_ENV_FILE (slapd fixture), CS_KAFKA_ENV, CS_KAFKA_SH, CS_KAFKA_DIR, O365_EMULATOR_ENV,
# COLLECTOR, PUBLISHER, CS_WORK_DIR. Every wait is a bounded poll of an observable state.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/it_lib.sh
. "$HERE/../integration/it_lib.sh"
it_init
MODE=${1:?usage: e2e_smime.sh smime|policy}
case $MODE in smime | policy) ;; *) cs_die "unknown mode '$MODE'; use smime or policy" ;; esac
COLLECTOR=${COLLECTOR:?COLLECTOR is not set; run through ctest}
PUBLISHER=${PUBLISHER:?PUBLISHER is not set; run through ctest}
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

tag=e2e$RANDOM
OU="ou=$tag,$SLAPD_BASE"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
STRANGER=${tag}x

# --- directory: 6 generated users (seed 7: ${tag}00000 has one valid RSA S/MIME certificate, ${tag}00002 only
# an expired one) and one whose certificate names another address.
"$TOOLS/gen_users.py" --count 6 --seed 7 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" \
  --prefix "$tag" --no-base-entry >/dev/null 2>&1 || it_fail "gen_users.py failed"
python3 "$PIPE" extra-user --data "$W/data" --flavor openldap --base "$SLAPD_BASE" --ou "$tag" --uid "$STRANGER" \
  --address someone.else@elsewhere.example >/dev/null || it_fail "extra-user failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
ldapadd "${auth[@]}" -f "$W/data/extra.ldif" >>"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"

# --- Kafka topics of this test only
for spec in events:3:compact state:1:compact held:1:compact pstate:3:compact results:1: dlq:1: retry:3:; do
  IFS=: read -r t n c <<<"$spec"
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$tag.$t" --partitions "$n" ${c:+--compact} >/dev/null || it_fail "topic $tag.$t"
done

# --- Office 365: the shared emulator, reset, with one mailbox per user (resolved by mail: slapd has no GUID)
curl -sf -X POST "$O365_EMULATOR_ADMIN_URL/reset" >/dev/null || it_fail "emulator reset"
python3 "$PIPE" seed --data "$W/data" --flavor openldap --dir-env "$CS_ENV_FILE" --post "$O365_EMULATOR_ADMIN_URL" \
  >/dev/null || it_fail "seeding the emulator"

# --- the two services
pport=$(cs_free_port)
it_slapd_collector_yaml "$tag" "$OU" 10s "topics: {events: $tag.events, checkpoint: $tag.state, held: $tag.held}" >"$W/collector.yaml"
it_publisher_yaml "$tag" "$pport" 100ms >"$W/publisher.yaml"
"$COLLECTOR" --check-config --config "$W/collector.yaml" >/dev/null 2>"$W/check.err" || it_fail "collector config: $(cat "$W/check.err")"
"$PUBLISHER" --check-config --config "$W/publisher.yaml" >/dev/null 2>"$W/check.err" || it_fail "publisher config: $(cat "$W/check.err")"
POLICY=off
# Not a pipe into grep -q: with pipefail, the publisher's SIGPIPE after an early match would read as "off".
if grep -Eq '^[a-z_]*polic[a-z_]*\.' <<<"$("$PUBLISHER" --help-config)"; then POLICY=on; fi
"$COLLECTOR" --config "$W/collector.yaml" >"$W/collector.log" 2>&1 &
PIDS[collector]=$!
"$PUBLISHER" --config "$W/publisher.yaml" >"$W/publisher.log" 2>&1 &
PIDS[publisher]=$!

# --- initial sync: every user's Office 365 certificates equal the directory's (minus refused values when the
# publisher applies the policy), and the publisher has consumed an event for each of the 7 users.
python3 "$PIPE" status --data "$W/data" --flavor openldap --dir-env "$CS_ENV_FILE" --admin "$O365_EMULATOR_ADMIN_URL" \
  --policy "$POLICY" --wait 60 --metrics "publisher=$pport" --min-events 7 >"$W/table.txt" 2>"$W/progress.txt" || {
  cat "$W/table.txt" "$W/progress.txt" >&2
  tail -5 "$W/collector.log" >&2
  it_fail "the initial sync did not finish within 60 s"
}
cat "$W/table.txt"
it_ok "initial sync through the real collector and publisher (policy in the publisher: $POLICY)"

# exo_get IDENTITY OUT: Get-Mailbox through the Exchange admin API with an app token (client secret).
exo_get() {
  local token
  token=$(curl -sf --cacert "$O365_EMULATOR_CA_FILE" "$O365_TOKEN_URL" -d grant_type=client_credentials \
    -d "client_id=$O365_CLIENT_ID" --data-urlencode "client_secret@$O365_CLIENT_SECRET_FILE" \
    -d scope=https://outlook.office365.com/.default | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') ||
    it_fail "no Exchange token from $O365_TOKEN_URL"
  curl -sf --cacert "$O365_EMULATOR_CA_FILE" -X POST "$O365_EXCHANGE_BASE/adminapi/beta/$O365_TENANT_ID/InvokeCommand" \
    -H "Authorization: Bearer $token" -H "Content-Type: application/json" -H "Accept: application/json" \
    -H "X-CmdletName: Get-Mailbox" -H "X-ResponseFormat: json" -H "client-request-id: $(cat /proc/sys/kernel/random/uuid)" \
    -H "X-AnchorMailbox: UPN:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@$O365_TENANT_DOMAIN" \
    -d "{\"CmdletInput\":{\"CmdletName\":\"Get-Mailbox\",\"Parameters\":{\"Identity\":\"$1\"}}}" >"$2" ||
    it_fail "Get-Mailbox $1 failed"
}

# certs_of FILE ATTR: the SHA-256 of each value of ATTR in a Get-Mailbox answer, one per line.
certs_of() {
  python3 -c 'import base64,hashlib,json,sys
for v in json.load(open(sys.argv[1]))["value"][0].get(sys.argv[2]) or []:
    print(hashlib.sha256(base64.b64decode(v)).hexdigest())' "$1" "$2"
}

# value_of USER ATTR VALIDITY: "sha256 pem-file" of USER's first manifest value with that validity.
value_of() {
  python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
u = next(u for u in m["users"] if u["uid"] == sys.argv[2])
v = next(v for v in u["values"] if v["attribute"] == sys.argv[3] and v["kind"]["validity"] == sys.argv[4])
print(v["sha256"], sys.argv[5] + "/" + v["cert"], u["mail"])' "$W/data/manifest.json" "$1" "$2" "$3" "$W/data"
}

if [ "$MODE" = smime ]; then
  user=${tag}00000
  read -r sha pem mail < <(value_of "$user" userCertificate valid)
  exo_get "$mail" "$W/mailbox.json"
  certs_of "$W/mailbox.json" UserCertificate >"$W/published.txt"
  [ "$(cat "$W/published.txt")" = "$sha" ] ||
    it_fail "Get-Mailbox $mail: UserCertificate $(cat "$W/published.txt") is not the directory's $sha"
  python3 -c 'import base64,json,sys
print(json.load(open(sys.argv[1]))["value"][0]["UserCertificate"][0])' "$W/mailbox.json" | base64 -d >"$W/published.der"
  openssl x509 -inform DER -in "$W/published.der" -out "$W/published.pem" || it_fail "the published value is no X.509 certificate"
  printf 'Subject: certsync S/MIME proof\n\nSecret for %s, written %s: %s\n' "$mail" "$(date -u +%FT%TZ)" "$RANDOM$RANDOM" >"$W/msg.txt"
  openssl cms -encrypt -binary -aes-256-cbc -in "$W/msg.txt" -out "$W/msg.p7m" -outform PEM "$W/published.pem" ||
    it_fail "openssl cms -encrypt to the published certificate failed"
  openssl cms -decrypt -in "$W/msg.p7m" -inform PEM -recip "$pem" -inkey "$pem" -out "$W/decrypted.txt" ||
    it_fail "openssl cms -decrypt with $user's private key failed"
  cmp -s "$W/msg.txt" "$W/decrypted.txt" || it_fail "the decrypted text differs from the original"
  it_ok "encrypted to $mail's certificate read back from Exchange (Get-Mailbox), decrypted with its private key: same text"
  # The proof can fail: a key that is not the certificate's does not open the message (a fresh one: gen_users.py
  # reuses a small pool of keys across users).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/other.key" 2>/dev/null || it_fail "openssl genpkey"
  if openssl cms -decrypt -in "$W/msg.p7m" -inform PEM -inkey "$W/other.key" -out "$W/other.txt" 2>/dev/null &&
    cmp -s "$W/msg.txt" "$W/other.txt"; then
    it_fail "another private key decrypted the message: the check proves nothing"
  fi
  it_ok "another private key cannot decrypt it"
  exit 0
fi

# --- policy: the expired value of ${tag}00002 and the stranger's certificate for another address
read -r expired_sha _ expired_mail < <(value_of "${tag}00002" userCertificate expired)
read -r stranger_sha _ stranger_mail < <(value_of "$STRANGER" userCertificate valid)
read -r good_sha _ good_mail < <(value_of "${tag}00000" userCertificate valid)
exo_get "$good_mail" "$W/good.json"
grep -qx "$good_sha" < <(certs_of "$W/good.json" UserCertificate) || it_fail "the valid certificate of $good_mail is missing"
leaked=()
exo_get "$expired_mail" "$W/expired.json"
if grep -qx "$expired_sha" < <(certs_of "$W/expired.json" UserCertificate); then leaked+=("the expired certificate of $expired_mail"); fi
exo_get "$stranger_mail" "$W/stranger.json"
if grep -qx "$stranger_sha" < <(certs_of "$W/stranger.json" UserCertificate); then
  leaked+=("$stranger_mail's certificate for someone.else@elsewhere.example")
fi
if [ "${#leaked[@]}" -gt 0 ]; then
  if [ "$POLICY" = off ]; then
    echo "SKIP: certsync-publisher does not apply the certificate policy yet (no policy keys in --help-config;"
    echo "      common/cs_policy is not wired into publisher/): published ${leaked[*]}"
    exit 77
  fi
  it_fail "refused values were published: ${leaked[*]}"
fi
it_ok "not published: the expired certificate of $expired_mail and $stranger_mail's certificate for another address"
