#!/usr/bin/env bash
# col_service_secrets: the collector never prints a secret (issue 6, label security).
#   1. the real certsync-collector against slapd (bind password: the fixture's random one) takes a snapshot
#      of generated users; /metrics, /healthz and /readyz are scraped while it runs, then SIGTERM;
#   2. it starts again with a wrong, distinctive password, fails to bind (error path), and is stopped;
#   3. every log line of both runs and every scrape is searched for both passwords and their base64: any
#      hit fails. The search is first proven to find a planted password.
# Also checks that the collector reports the certificate policy (certsync_collector_policy_refusals_total).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/it_lib.sh"
it_init
. "$HERE/col_svc_lib.sh"
# shellcheck disable=SC2034 # read by it_fail (it_lib.sh)
IT_LOG=$SLAPD_LOG
trap svc_stop_all EXIT

tag=sec$RANDOM
OU="ou=$tag,$SLAPD_BASE"
TP="it.$tag"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")

"$TOOLS/gen_users.py" --count 4 --seed 47 --out "$W/data" --flavor openldap --base "$SLAPD_BASE" \
  --ou "$tag" --prefix "$tag" --no-base-entry --no-user-files >/dev/null || it_fail "gen_users.py failed"
ldapadd "${auth[@]}" -f "$W/data/users.ldif" >"$W/ldapadd.out" 2>&1 || it_fail "ldapadd $(cat "$W/ldapadd.out")"
svc_topics "$TP"

# Needles: each password as is and base64-encoded (as an HTTP Basic header or a dump would show it).
wrong=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
wrong="WrongPw-$wrong"
(umask 077 && printf '%s' "$wrong" >"$W/wrong-password")
: >"$W/needles"
for f in "$SLAPD_PASSWORD_FILE" "$W/wrong-password"; do
  pw=$(cat "$f")
  [ ${#pw} -ge 12 ] || it_fail "$f: the password is too short to be a distinctive needle"
  printf '%s\n' "$pw" >>"$W/needles"
  printf '%s' "$pw" | base64 -w0 >>"$W/needles"
  echo >>"$W/needles"
done

# scan FILE...: fails when any needle occurs in any file.
scan() {
  if grep -F -n -f "$W/needles" "$@" >"$W/leaks" 2>/dev/null; then
    sed 's/\(.\{60\}\).*/\1.../' "$W/leaks" >&2
    return 1
  fi
  return 0
}
# The scan can fail: a planted password is found.
printf '{"msg":"bind failed","password":"%s"}\n' "$(head -1 "$W/needles")" >"$W/planted.log"
if scan "$W/planted.log" 2>/dev/null; then it_fail "the scan missed a planted password"; fi
it_ok "the scan finds a planted password"

# --- 1. a real run, scraped while it works ------------------------------------------------------------
svc_config "$W/c.yaml" "$tag" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$SLAPD_PASSWORD_FILE" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}" "log.level: debug"
svc_start a "$W/c.yaml"
await_log a '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed"
port=$(admin_port a)
[ -n "$port" ] || it_fail "no admin port in the log"
for p in metrics healthz readyz; do
  curl -s "http://127.0.0.1:$port/$p" >"$W/scrape-$p.txt" || it_fail "/$p"
done
grep -q '^# TYPE certsync_collector_policy_refusals_total counter' "$W/scrape-metrics.txt" ||
  it_fail "/metrics lacks certsync_collector_policy_refusals_total"
grep -q "^certsync_collector_policy_refusals_total{source=\"$tag\",rule=\"expired\"}" "$W/scrape-metrics.txt" ||
  it_fail "/metrics lacks the expired rule's series"
kill -TERM "${SVC_PID[a]}"
await_exit a 30 || it_fail "the collector did not stop on SIGTERM"
[ "$SVC_RC" -eq 0 ] || it_fail "the collector exited $SVC_RC on SIGTERM"
it_ok "snapshot taken, scraped, stopped"

# --- 2. the bind error path with a wrong password --------------------------------------------------------
svc_config "$W/wrong.yaml" "$tag-w" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$W/wrong-password" "$OU" \
  "(objectClass=inetOrgPerson)" "log.level: debug"
svc_start b "$W/wrong.yaml"
await_log b 'Invalid credentials' 30 || it_fail "no bind failure logged with the wrong password"
kill -TERM "${SVC_PID[b]}" 2>/dev/null || true
await_exit b 30 || it_fail "the collector with the wrong password did not stop"
it_ok "bind failure logged"

# --- 3. nothing printed ----------------------------------------------------------------------------------
scan "$W/a.log" "$W/b.log" "$W"/scrape-*.txt || it_fail "a password appears in the collector's output (above)"
[ -s "$W/a.log" ] && [ -s "$W/b.log" ] && [ -s "$W/scrape-metrics.txt" ] || it_fail "nothing was scanned"
it_ok "no password in $(wc -l <"$W/a.log") + $(wc -l <"$W/b.log") log lines and 3 scrapes"
