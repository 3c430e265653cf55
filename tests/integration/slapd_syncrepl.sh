#!/usr/bin/env bash
# slapd_syncrepl: a refreshAndPersist search (ldapsearch -E '!sync=rp') sees a modify made after
# its refresh phase delivered the entry. Both steps are awaited by reading the search's output.
set -euo pipefail
. "$(dirname "$0")/it_lib.sh"
it_init
IT_LOG=$SLAPD_LOG
OU="ou=sync,$SLAPD_BASE"
auth=(-x -H "$SLAPD_URL" -D "$SLAPD_BIND_DN" -y "$SLAPD_PASSWORD_FILE")
ldapdelete "${auth[@]}" -r "$OU" 2>/dev/null || true
ldapadd "${auth[@]}" >/dev/null <<LDIF || it_fail "ldapadd of $OU"
dn: $OU
objectClass: organizationalUnit
ou: sync

dn: uid=syncuser,$OU
objectClass: inetOrgPerson
uid: syncuser
cn: syncuser
sn: syncuser
mail: before@example.test
LDIF

mkfifo "$W/out"
# stdbuf: ldapsearch's stdout is a pipe, so without it entries would sit in stdio's buffer.
stdbuf -oL ldapsearch "${auth[@]}" -LLL -o ldif-wrap=no -E '!sync=rp' -b "$OU" '(uid=syncuser)' mail \
  >"$W/out" 2>"$W/search.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
exec 3<"$W/out"

# await LINE SECONDS: read the search output until LINE shows up (bounded by SECONDS).
await() {
  local want=$1 secs=$2 line end
  end=$((SECONDS + secs))
  while [ $SECONDS -lt $end ]; do
    if ! IFS= read -r -t 1 -u 3 line; then
      kill -0 "$pid" 2>/dev/null || { cat "$W/search.err" >&2; return 1; }
      continue
    fi
    echo "  sync> $line"
    [ "$line" = "$want" ] && return 0
  done
  return 1
}
await "mail: before@example.test" 10 || it_fail "the refresh phase did not deliver uid=syncuser"
it_ok "refresh phase delivered the entry"
t0=$(cs_now_ms)
ldapmodify "${auth[@]}" >/dev/null <<LDIF || it_fail "ldapmodify"
dn: uid=syncuser,$OU
changetype: modify
replace: mail
mail: after@example.test
LDIF
await "mail: after@example.test" 10 || it_fail "the persist phase did not deliver the modify"
printf 'ok: persist phase delivered the modify %d ms after it was sent\n' $(($(cs_now_ms) - t0))
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT
