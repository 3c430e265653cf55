# shellcheck shell=bash
# Shared helpers for the collector integration tests (tests/collector/*.sh). Source it after it_lib.sh.

PROBE=${COL_PROBE:?COL_PROBE (path of col_probe) is not set; run through ctest}

# write_config FILE URL BIND_DN PWFILE BASE FILTER [extra YAML lines...]
write_config() {
  local f=$1 url=$2 dn=$3 pw=$4 base=$5 filter=$6
  shift 6
  {
    echo "source: {id: coltest}"
    echo "ldap:"
    echo "  url: \"$url\""
    echo "  bind_dn: \"$dn\""
    echo "  password_file: \"$pw\""
    echo "  base_dns: [\"$base\"]"
    echo "  filter: \"$filter\""
    echo "  page_size: 3"
    echo "  timeout: 10s"
    for l in "$@"; do echo "  $l"; done
    echo "kafka: {bootstrap.servers: \"127.0.0.1:1\"}"
  } >"$f"
}

# probe OUT ARGS...: runs col_probe, output to OUT; fails the test on a non-zero exit.
probe() {
  local out=$1
  shift
  "$PROBE" "$@" >"$out" 2>"$out.err" || {
    cat "$out" "$out.err" >&2
    it_fail "col_probe $*"
  }
}

# last_cookie FILE: the hex cookie of the last cookie/position line.
last_cookie() {
  python3 -c '
import json, sys
c = None
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j["type"] in ("cookie", "position") and j.get("cookie"): c = j["cookie"]
if c is None: sys.exit("no cookie in " + sys.argv[1])
print(c)' "$1"
}

# compare_manifest MANIFEST PROBE_OUT: every manifest user appears as an upsert with exactly its values.
compare_manifest() {
  python3 - "$1" "$2" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
got = {}
for l in open(sys.argv[2]):
    j = json.loads(l)
    if j["type"] == "upsert":
        got[j["dn"].lower()] = j
bad = 0
for u in m["users"]:
    j = got.get(u["dn"].lower())
    if j is None:
        print(f"{u['dn']}: not in the snapshot", file=sys.stderr); bad += 1; continue
    for attr, key in (("userCertificate", "user_certificate"), ("userSMIMECertificate", "user_smime_certificate")):
        want = sorted(v["sha256"] for v in u["values"] if v["attribute"] == attr)
        have = sorted(j[key])
        if want != have:
            print(f"{u['dn']} {attr}: want {want} have {have}", file=sys.stderr); bad += 1
    if not j.get("id") or j.get("event_bytes", 0) <= 0:
        print(f"{u['dn']}: no id or empty event", file=sys.stderr); bad += 1
extra = len(got) - len(m["users"])
print(f"compared {len(m['users'])} users, {sum(len(u['values']) for u in m['users'])} values, {extra} other objects")
sys.exit(1 if bad else 0)
PY
}
