# shellcheck shell=bash
# Helpers for the service tests (tests/collector/col_service_*.sh): the real certsync-collector against
# Kafka and a directory. Source after it_lib.sh and it_init.
#
# Every wait here is a bounded poll of something observable (a log line, a committed record, an HTTP
# answer, a process exit), never a fixed sleep standing in for an event.

COLLECTOR=${COLLECTOR:?COLLECTOR (path of certsync-collector) is not set; run through ctest}
EVENTS=${COL_EVENTS:?COL_EVENTS (path of col_events) is not set; run through ctest}
[ -f "${CS_KAFKA_ENV:?CS_KAFKA_ENV is not set}" ] || it_fail "$CS_KAFKA_ENV missing: the kafka fixture did not start"
# shellcheck disable=SC1090
. "$CS_KAFKA_ENV"

# svc_directory slapd|samba TAG: the directory of a group test, with TAG's users in their own OU. Sets
# IT_LOG (exported: it_lib.sh shows it on failure), BASE, OU, auth (ldap* client options), FILTER (TAG's
# users), gen_flavor and gen_extra (gen_users.py), url, bind, pw and SVC_LDAP_EXTRA (svc_config).
# shellcheck disable=SC2034 # every variable set here is read by the calling test
svc_directory() {
  SVC_FLAVOR=$1 SVC_TAG=$2
  if [ "$1" = slapd ]; then
    IT_LOG=$SLAPD_LOG
    BASE=$SLAPD_BASE
    OU="ou=$2,$BASE"
    auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
    FILTER="(objectClass=inetOrgPerson)"
    gen_flavor=openldap
    gen_extra=(--no-base-entry --no-user-files)
    url=$SLAPD_URL bind=$SLAPD_BIND_DN pw=$SLAPD_PASSWORD_FILE
    SVC_LDAP_EXTRA=()
  else
    IT_LOG=$SAMBA_LOG
    BASE=$SAMBA_BASE
    OU="OU=$2,$BASE"
    export LDAPTLS_CACERT=$SAMBA_CA_FILE LDAPTLS_REQCERT=demand
    auth=(-x -D "$SAMBA_BIND_DN" -y "$SAMBA_PASSWORD_FILE" -H "$SAMBA_LDAPS_URL")
    FILTER="(&(objectClass=user)(sAMAccountName=$2*))"
    gen_flavor=ad
    gen_extra=()
    url=$SAMBA_LDAPS_URL bind=$SAMBA_BIND_DN pw=$SAMBA_PASSWORD_FILE
    SVC_LDAP_EXTRA=("tls: {ca_file: \"$SAMBA_CA_FILE\"}")
  fi
  export IT_LOG
}

# svc_group_dn NAME: the DN of group TAG-NAME in svc_directory's OU.
svc_group_dn() {
  if [ "$SVC_FLAVOR" = slapd ]; then echo "cn=$SVC_TAG-$1,$OU"; else echo "CN=$SVC_TAG-$1,$OU"; fi
}

# svc_group_ldif NAME MEMBER...: the LDIF adding group TAG-NAME (groupOfNames on slapd, group on AD).
svc_group_ldif() {
  local name=$1
  shift
  if [ "$SVC_FLAVOR" = slapd ]; then
    printf 'dn: %s\nobjectClass: groupOfNames\ncn: %s-%s\n' "$(svc_group_dn "$name")" "$SVC_TAG" "$name"
  else
    printf 'dn: %s\nobjectClass: group\nsAMAccountName: %s-%s\n' "$(svc_group_dn "$name")" "$SVC_TAG" "$name"
  fi
  local m
  for m in "$@"; do printf 'member: %s\n' "$m"; done
}

# svc_user_dns MANIFEST: the DNs of gen_users.py's users, those with userCertificate values first (a user
# entering scope must carry certificates).
svc_user_dns() {
  python3 -c 'import json,sys
us=json.load(open(sys.argv[1]))["users"]
us.sort(key=lambda u: not any(v["attribute"]=="userCertificate" for v in u["values"]))
[print(u["dn"]) for u in us]' "$1"
}

# svc_topics PREFIX: creates PREFIX.events (compacted, 3 partitions), PREFIX.state and PREFIX.held.
svc_topics() {
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$1.events" --partitions 3 --compact >/dev/null || it_fail "create $1.events"
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$1.state" --partitions 1 --compact >/dev/null || it_fail "create $1.state"
  "$CS_KAFKA_SH" topic "$CS_KAFKA_DIR" "$1.held" --partitions 1 --compact >/dev/null || it_fail "create $1.held"
}

# svc_config FILE SOURCE_ID TOPIC_PREFIX URL BIND_DN PWFILE BASE FILTER [extra top-level YAML lines...]
# SVC_LDAP_EXTRA (array): extra lines under ldap:, e.g. ("tls: {ca_file: /x/ca.pem}").
SVC_LDAP_EXTRA=()
svc_config() {
  local f=$1 id=$2 tp=$3 url=$4 dn=$5 pw=$6 base=$7 filter=$8
  shift 8
  {
    echo "source: {id: $id}"
    echo "ldap:"
    echo "  url: \"$url\""
    echo "  bind_dn: \"$dn\""
    echo "  password_file: \"$pw\""
    echo "  base_dns: [\"$base\"]"
    echo "  filter: \"$filter\""
    echo "  allow_plaintext_bind: true"
    echo "  page_size: 3"
    echo "  timeout: 5s"
    echo "  poll_interval: 500ms"
    for l in "${SVC_LDAP_EXTRA[@]}"; do echo "  $l"; done
    echo "topics: {events: $tp.events, checkpoint: $tp.state, held: $tp.held}"
    echo "admin: {listen: \"127.0.0.1:0\"}"
    echo "kafka: {bootstrap.servers: \"$KAFKA_BOOTSTRAP\"}"
    for l in "$@"; do echo "$l"; done
  } >"$f"
}

# svc_start NAME CONFIG [ARGS...]: starts the collector in the background; its log is $W/NAME.log and
# its pid is in SVC_PID[NAME].
declare -A SVC_PID
svc_start() {
  local name=$1 cfg=$2
  shift 2
  "$COLLECTOR" --config "$cfg" "$@" >"$W/$name.log" 2>&1 &
  SVC_PID[$name]=$!
}

# svc_stop_all: SIGKILLs what is still running (test cleanup).
svc_stop_all() {
  local n
  for n in "${!SVC_PID[@]}"; do
    kill -9 "${SVC_PID[$n]}" 2>/dev/null || true
  done
}

# await_log NAME REGEX SECONDS: waits until the collector's log has a line matching REGEX.
await_log() {
  local name=$1 re=$2 secs=$3 end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    grep -Eq "$re" "$W/$name.log" && return 0
    if ! kill -0 "${SVC_PID[$name]}" 2>/dev/null; then
      grep -Eq "$re" "$W/$name.log" && return 0
      echo "collector $name exited; log tail:" >&2
      tail -20 "$W/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "no line matching '$re' in $W/$name.log within $secs s; log tail:" >&2
  tail -20 "$W/$name.log" >&2
  return 1
}

# await_exit NAME SECONDS: waits for the collector to exit; sets SVC_RC.
await_exit() {
  local name=$1 end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ] && kill -0 "${SVC_PID[$name]}" 2>/dev/null; do
    sleep 0.1
  done
  if kill -0 "${SVC_PID[$name]}" 2>/dev/null; then
    echo "collector $name still running after $2 s" >&2
    return 1
  fi
  # SVC_RC is this function's result for the scripts that source this file (they test it).
  # shellcheck disable=SC2034
  {
    SVC_RC=0
    wait "${SVC_PID[$name]}" || SVC_RC=$?
  }
  return 0
}

# admin_port NAME: the admin port from the collector's start-up log line.
admin_port() {
  sed -n 's/.*admin endpoint listening on port \([0-9]*\).*/\1/p' "$W/$1.log" | head -1
}

# dump TOPIC OUT: every committed record of TOPIC into OUT (one JSON line each, then a summary).
dump() {
  "$EVENTS" "$KAFKA_BOOTSTRAP" "$1" dump >"$2" 2>"$2.err" || {
    cat "$2" "$2.err" >&2
    it_fail "reading $1"
  }
}

# await_events TOPIC PYEXPR SECONDS: re-reads TOPIC (read_committed) until PYEXPR holds; `evs` is the list
# of event dicts in offset order, `last(dn)` the last event whose dn matches (case-insensitive), `by_id`
# the last event per object id.
await_events() {
  local topic=$1 expr=$2 end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    dump "$topic" "$W/await.json"
    if python3 - "$W/await.json" "$expr" <<'PY'; then
import json, sys
evs = [j for j in map(json.loads, open(sys.argv[1])) if j["type"] == "event"]
evs.sort(key=lambda e: (e["partition"], e["offset"]))
by_id = {}
for e in evs:
    by_id[e.get("id")] = e
def last(dn):
    r = [e for e in evs if e.get("dn", "").lower() == dn.lower()]
    return r[-1] if r else None
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
      return 0
    fi
    sleep 0.2
  done
  echo "condition not met on $topic within $3 s: $expr" >&2
  tail -5 "$W/await.json" >&2
  return 1
}

# check_invariants TOPIC: no (object, version) twice, no version going backwards.
check_invariants() {
  dump "$1" "$W/inv.json"
  tail -1 "$W/inv.json"
  python3 - "$W/inv.json" <<'PY' || it_fail "invariants broken on $1 (see $W/inv.json)"
import json, sys
s = [j for j in map(json.loads, open(sys.argv[1])) if j["type"] == "summary"][0]
sys.exit(0 if s["repeated_versions"] == 0 and s["not_newer"] == 0 and s["records"] > 0 else 1)
PY
}

# check_latest_equals_directory OU [COUNT]: after check_invariants (it reads $W/inv.json), the latest event of
# every object equals a fresh snapshot of OU (both certificate attributes and mail), nothing in Kafka is
# missing from the directory, and, with COUNT, the directory holds exactly COUNT objects.
check_latest_equals_directory() {
  cat >"$W/probe.yaml" <<EOF
source: {id: ${tag:?}}
ldap: {url: "$SLAPD_URL", bind_dn: "$SLAPD_BIND_DN", password_file: "$SLAPD_PASSWORD_FILE", base_dns: ["$1"], filter: "(objectClass=inetOrgPerson)", allow_plaintext_bind: true}
kafka: {bootstrap.servers: "127.0.0.1:1"}
EOF
  "$COL_PROBE" "$W/probe.yaml" snapshot >"$W/dir.json" 2>"$W/dir.err" || it_fail "col_probe snapshot"
  python3 - "$W/inv.json" "$W/dir.json" "${2:-}" <<'PY' || it_fail "the latest state in Kafka differs from the directory"
import json, sys
evs = [j for j in map(json.loads, open(sys.argv[1])) if j["type"] == "event"]
evs.sort(key=lambda e: (e["partition"], e["offset"]))
latest = {}
for e in evs:
    latest[e["id"]] = e
d = {j["id"]: j for j in map(json.loads, open(sys.argv[2])) if j["type"] == "upsert"}
bad = 0
for i, j in d.items():
    e = latest.get(i)
    if e is None or e["kind"] != "upsert":
        print("missing or removed in Kafka:", j["dn"]); bad += 1; continue
    for k in ("user_certificate", "user_smime_certificate"):
        if sorted(e.get(k) or []) != sorted(j.get(k) or []):
            print(j["dn"], k, "kafka", e.get(k), "directory", j.get(k)); bad += 1
    if e.get("mail") != j.get("mail"):
        print(j["dn"], "mail kafka", e.get("mail"), "directory", j.get("mail")); bad += 1
for i, e in latest.items():
    if e["kind"] == "upsert" and i not in d:
        print("in Kafka but not in the directory:", e.get("dn")); bad += 1
print(f"compared {len(d)} objects, {len(evs)} events")
if sys.argv[3] and len(d) != int(sys.argv[3]):
    print(f"the directory holds {len(d)} objects, want {sys.argv[3]}"); bad += 1
sys.exit(1 if bad else 0)
PY
}

# metric NAME PORT METRIC_LINE_REGEX: prints the value of the first /metrics line matching the regex.
metric() {
  curl -sf "http://127.0.0.1:$1/metrics" | grep -E "$2" | head -1 | awk '{print $NF}'
}
