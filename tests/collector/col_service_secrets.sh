#!/usr/bin/env bash
# col_service_secrets: the collector never prints a secret (issue 6, label security).
#   1. the real certsync-collector against slapd (bind password: the fixture's random one) takes a snapshot
#      of generated users; /metrics, /healthz and /readyz are scraped while it runs, then SIGTERM;
#   2. it starts again with a wrong, distinctive password, fails to bind (error path), and is stopped;
#   3. rotation (issue 6, "reloaded when the file changes"): a service account's password is changed in
#      slapd and in its password file (a Kubernetes Secret layout: the ..data symlink is swapped) while the
#      collector runs: it logs the reload naming the file, reconnects with the new password and carries a
#      change on; then the file gets a wrong password (bind refused: it keeps retrying and re-reading), and
#      the right one again (SIGHUP): it binds and carries a change on. No restart anywhere;
#   4. every log line of all runs and every scrape is searched for every password and their base64: any
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
# The rotation's passwords: the service account's first and second, and a wrong one put in its file.
for n in rot1 rot2 rotwrong; do
  (umask 077 && printf 'Rot-%s-%s' "$n" "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >"$W/$n.pw")
done
: >"$W/needles"
for f in "$SLAPD_PASSWORD_FILE" "$W/wrong-password" "$W/rot1.pw" "$W/rot2.pw" "$W/rotwrong.pw"; do
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

# --- 3. rotation while running ------------------------------------------------------------------------
SVC_DN="cn=svc-$tag,$OU"
ldapadd "${auth[@]}" >/dev/null <<LDIF || it_fail "adding the service account"
dn: $SVC_DN
objectClass: person
cn: svc-$tag
sn: svc
userPassword: $(cat "$W/rot1.pw")
LDIF
# A Kubernetes Secret volume: sec/password -> ..data/password, ..data -> ..v1 (the kubelet swaps ..data).
SEC="$W/sec"
mkdir -p "$SEC/..v1"
cp "$W/rot1.pw" "$SEC/..v1/password"
ln -s ..v1 "$SEC/..data"
ln -s ..data/password "$SEC/password"
k8s_swap() { # VERSION FILE: the new secret, published atomically
  mkdir "$SEC/$1" && cp "$2" "$SEC/$1/password" && ln -s "$1" "$SEC/..data_tmp" && mv -T "$SEC/..data_tmp" "$SEC/..data"
}
set_dir_password() { # FILE: the service account's password in slapd
  ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "changing the service account's password"
dn: $SVC_DN
changetype: modify
replace: userPassword
userPassword: $(cat "$1")
LDIF
}
modify_mail() { # N VALUE
  ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "modify ${U[$1]}"
dn: ${U[$1]}
changetype: modify
replace: mail
mail: $2
LDIF
}
mapfile -t U < <(python3 -c 'import json,sys; [print(u["dn"]) for u in json.load(open(sys.argv[1]))["users"]]' \
  "$W/data/manifest.json")
svc_config "$W/rot.yaml" "$tag-r" "$TP-r" "$SLAPD_URL" "$SVC_DN" "$SEC/password" "$OU" \
  "(objectClass=inetOrgPerson)" "batch: {max_wait: 100ms}"
svc_topics "$TP-r"
svc_start r "$W/rot.yaml"
await_log r '"full pass \(snapshot\) committed' 60 || it_fail "no snapshot committed as the service account"
# 3a. directory first, then the Secret; found by the timer (no signal).
set_dir_password "$W/rot2.pw"
k8s_swap ..v2 "$W/rot2.pw"
await_log r '"secret file reloaded.*"key":"ldap.password_file".*'"$SEC/password" 30 ||
  it_fail "the rotated password file was not noticed within 30 s"
await_log r 'reconnecting to the directory with the new ldap.password_file' 10 || it_fail "no reconnect after the rotation"
modify_mail 0 "rotated-$tag@example.test"
await_events "$TP-r.events" "(last('${U[0]}') or {}).get('mail')=='rotated-$tag@example.test'" 30 ||
  it_fail "no change carried after the rotation"
[ "$(grep -c '"directory connected"' "$W/r.log")" -ge 2 ] || it_fail "the collector did not bind again with the new password"
it_ok "password rotated in slapd and in the Secret: reloaded, reconnected, changes flow (no restart)"
# 3b. a wrong password in the Secret: the bind is refused, the collector keeps running and re-reading.
k8s_swap ..v3 "$W/rotwrong.pw"
kill -HUP "${SVC_PID[r]}"
await_log r 'bind refused with invalidCredentials after a rotation' 30 || it_fail "no retry on invalidCredentials"
kill -0 "${SVC_PID[r]}" || it_fail "the collector stopped on invalidCredentials after a rotation"
# ... and the right one (SIGHUP): bound again, changes flow.
k8s_swap ..v4 "$W/rot2.pw"
kill -HUP "${SVC_PID[r]}"
modify_mail 1 "after-fix-$tag@example.test"
await_events "$TP-r.events" "(last('${U[1]}') or {}).get('mail')=='after-fix-$tag@example.test'" 60 ||
  it_fail "no change carried after the password file was fixed"
grep -q '"SIGHUP: comparing' "$W/r.log" || it_fail "SIGHUP was not logged"
kill -TERM "${SVC_PID[r]}"
await_exit r 30 || it_fail "the rotated collector did not stop"
[ "$SVC_RC" -eq 0 ] || it_fail "the rotated collector exited $SVC_RC"
it_ok "wrong password in the Secret: retried without stopping; fixed with SIGHUP: changes flow"

# --- 2. the bind error path with a wrong password --------------------------------------------------------
svc_config "$W/wrong.yaml" "$tag-w" "$TP" "$SLAPD_URL" "$SLAPD_BIND_DN" "$W/wrong-password" "$OU" \
  "(objectClass=inetOrgPerson)" "log.level: debug"
svc_start b "$W/wrong.yaml"
await_log b 'Invalid credentials' 30 || it_fail "no bind failure logged with the wrong password"
kill -TERM "${SVC_PID[b]}" 2>/dev/null || true
await_exit b 30 || it_fail "the collector with the wrong password did not stop"
it_ok "bind failure logged"

# --- 3. nothing printed ----------------------------------------------------------------------------------
scan "$W/a.log" "$W/b.log" "$W/r.log" "$W"/scrape-*.txt || it_fail "a password appears in the collector's output (above)"
[ -s "$W/a.log" ] && [ -s "$W/b.log" ] && [ -s "$W/scrape-metrics.txt" ] || it_fail "nothing was scanned"
it_ok "no password in $(wc -l <"$W/a.log") + $(wc -l <"$W/b.log") log lines and 3 scrapes"
