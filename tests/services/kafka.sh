#!/usr/bin/env bash
# A real Apache Kafka (KRaft, no ZooKeeper) for the integration tests. See tests/services/lib.sh.
#
#   kafka.sh fetch [--secure|--all]          resolve the broker jars with Maven into the cache (idempotent);
#                                            --secure: those of --secure's version, --all: both
#   kafka.sh start DIR [--nodes 1|3]         start 1 or 3 broker+controller nodes on free 127.0.0.1 ports;
#                                            write DIR/env (KAFKA_BOOTSTRAP, KAFKA_NODES, and per node
#                                            KAFKA_NODE<i>_PID / KAFKA_NODE<i>_PORT) and DIR/pid
#   kafka.sh start DIR --secure              one node whose client listener is SASL_SSL (SCRAM-SHA-512, TLS
#                                            certificate from tests/tools/test_ca.sh), with ACLs (see
#                                            secure_config); DIR/env adds KAFKA_CA_FILE, KAFKA_SASL_MECHANISM,
#                                            KAFKA_SECURITY_PROTOCOL and per user (ADMIN, COLLECTOR, PUBLISHER)
#                                            KAFKA_<USER>_USERNAME / KAFKA_<USER>_PASSWORD_FILE;
#                                            Kafka $KAFKA_SECURE_VERSION (default 3.9.1, see below)
#                                            DIR must be new, empty, or made by an earlier start (it holds
#                                            the marker DIR/.certsync-kafka): start wipes it, and refuses
#                                            to wipe anything else
#   kafka.sh stop DIR                        stop every node by PID; non-zero if one is left
#   kafka.sh node-start DIR I                start node I of DIR again with its data (after a failover
#                                            test killed it); updates DIR/pid and KAFKA_NODE<I>_PID
#   kafka.sh topic DIR NAME --partitions N [--compact] [--replication R]
#                                            create a topic (tests prefer librdkafka's Admin API from C)
#
# Version: Kafka 4.1.2 (KAFKA_VERSION overrides), Java 17. Checked against librdkafka 2.0.2 (Debian 12), whose
# request versions are all still served after KIP-896 removed the oldest ones in 4.0: transactions,
# read_committed, consumer groups and send_offsets_to_transaction pass tests/integration/test_kafka_txn.c.
#
# Jars live outside git in ${CS_CACHE_DIR:-$HOME/.cache/certsync}/kafka-<version>/lib; never commit them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

KAFKA_VERSION=${KAFKA_VERSION:-4.1.2}
# --secure runs Kafka 3.9.1, not 4.x: librdkafka before 2.6.1 (we have 2.0.2) appends the client nonce twice
# in the SCRAM client-final-message, which Kafka 4.x rejects as invalid credentials (RFC 5802 strict nonce
# check; fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895). 3.9.x accepts it.
KAFKA_SECURE_VERSION=${KAFKA_SECURE_VERSION:-3.9.1}
CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}/kafka-$KAFKA_VERSION
LIB=$CACHE/lib
PROBE=$HERE/kafka/kafka_probe.py
SECURE_SETUP=$HERE/kafka/KafkaSecureSetup.java
TEST_CA=$HERE/../tools/test_ca.sh
# Per node: enough for a test broker; 2 cores / 24 GiB are shared with the tests and other servers.
KAFKA_HEAP=${KAFKA_HEAP:--Xms64m -Xmx448m}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}

usage() {
  sed -n '2,24p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# Written into DIR by start: only a directory carrying it (or an empty one) is ever wiped.
MARKER=.certsync-kafka

# wipe_dir DIR: deletes DIR if it is empty or was made by an earlier start; refuses anything else (a
# mistyped DIR must not cost a source tree). A DIR whose env file an earlier start wrote (before the
# marker existed) counts as made by kafka.sh too.
wipe_dir() {
  local dir=$1
  [ -e "$dir" ] || return 0
  [ -d "$dir" ] || cs_die "kafka.sh start: $dir is not a directory; give a new or empty directory"
  if [ -f "$dir/$MARKER" ] || [ -z "$(ls -A "$dir")" ] ||
    { [ -f "$dir/env" ] && grep -q '^KAFKA_BOOTSTRAP=' "$dir/env"; }; then
    rm -rf "$dir"
    return 0
  fi
  cs_die "kafka.sh start: refusing to wipe $dir: it is not empty and no earlier 'kafka.sh start' made it" \
    "(no $dir/$MARKER); give a new or empty directory, or remove that one yourself"
}

# The JVM flags for every Kafka process. Serial GC and C1 only: a test broker lives for minutes, and
# this shortens start-up and keeps CPU for the tests on a 2-core machine.
java_flags() {
  echo "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true"
}

cmd_fetch() {
  if [ -f "$CACHE/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null || cs_die "mvn not found: run scripts/install-deps.sh (it installs maven)"
  command -v java >/dev/null || cs_die "java not found: run scripts/install-deps.sh (openjdk-17)"
  local t0=$SECONDS tmp
  tmp=$(mktemp -d "${CACHE}.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$(dirname "$CACHE")" && mktemp -d "${CACHE}.tmp.XXXXXX"; })
  echo "kafka.sh: fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and dependencies with Maven" >&2
  if ! mvn -q -B -f "$HERE/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
    cat "$tmp/mvn.log" >&2
    rm -rf "$tmp"
    cs_die "maven could not resolve Kafka $KAFKA_VERSION (see above); check KAFKA_VERSION and network access"
  fi
  ls "$tmp/lib/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || cs_die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
  # Write to a temp dir, then rename: an interrupted fetch never looks complete.
  : >"$tmp/.complete"
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"
  echo "kafka.sh: fetched $(ls "$LIB" | wc -l) jars into $LIB in $((SECONDS - t0))s" >&2
}

# A Kafka cluster id: 16 random bytes, base64url without padding (what StorageTool random-uuid prints).
# Never starting with '-': StorageTool's argument parser would take it for an option (Kafka's own
# Uuid.randomUuid() skips those too).
new_cluster_id() {
  python3 -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

# write_config DIR NODE_ID NODES BROKER_PORT CONTROLLER_PORT VOTERS [SECURE_DIR]
# With SECURE_DIR (the start DIR of --secure, holding the certificates and password files), the client
# listener is SASL_SSL with ACLs instead of PLAINTEXT (secure_config).
write_config() {
  local d=$1 id=$2 nodes=$3 bport=$4 cport=$5 voters=$6 sdir=${7:-} rf isr
  if [ "$nodes" -eq 1 ]; then rf=1; isr=1; else rf=3; isr=2; fi
  mkdir -p "$d/data"
  {
    echo "process.roles=broker,controller"
    echo "node.id=$id"
    if [ -n "$sdir" ]; then
      secure_config "$sdir" "$bport" "$cport"
    else
      echo "listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bport"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
      echo "inter.broker.listener.name=PLAINTEXT"
    fi
    echo "controller.listener.names=CONTROLLER"
    if [ "$nodes" -eq 1 ]; then
      # Dynamic quorum, formatted with --standalone.
      echo "controller.quorum.bootstrap.servers=127.0.0.1:$cport"
    else
      # Static quorum: every node knows all voters; formatted with one shared cluster id.
      echo "controller.quorum.voters=$voters"
    fi
    echo "log.dirs=$d/data"
    # Topics are created explicitly with a fixed partition count (design.md), as in production.
    echo "auto.create.topics.enable=false"
    echo "num.partitions=1"
    echo "default.replication.factor=$rf"
    echo "min.insync.replicas=$isr"
    echo "offsets.topic.replication.factor=$rf"
    echo "offsets.topic.num.partitions=5"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$isr"
    echo "transaction.state.log.num.partitions=5"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$isr"
    echo "group.initial.rebalance.delay.ms=0"
    # Tests that leave a transaction open see it aborted soon after transaction.timeout.ms.
    echo "transaction.abort.timed.out.transaction.cleanup.interval.ms=2000"
    # Compaction visible within a test run.
    echo "log.cleaner.backoff.ms=1000"
    echo "num.network.threads=2"
    echo "num.io.threads=2"
    echo "background.threads=2"
    echo "num.recovery.threads.per.data.dir=1"
    echo "controlled.shutdown.enable=true"
  } >"$d/server.properties"
  cat >"$d/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $d/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

# secure_config SECURE_DIR BROKER_PORT CONTROLLER_PORT: the listener and security lines of a --secure node.
#  - Clients: SASL_SSL with SCRAM-SHA-512 only; the server certificate (SAN IP:127.0.0.1) is from the test CA.
#  - Inter-broker (the transaction coordinator sends its commit markers over it, even to itself): the same
#    listener, as the admin super user.
#  - Controller: SASL_PLAINTEXT with PLAIN as admin. Not SCRAM: the controller must authenticate before it
#    has read the SCRAM credentials from the metadata log, and KRaft does not support SCRAM there (KIP-631).
#    Authenticated, so a client on the controller port is not an anonymous super user; loopback only.
#  - StandardAuthorizer, deny when no ACL matches; only User:admin is a super user.
# The admin password is in this file, so it is written 0600 (the caller's umask).
secure_config() {
  local sdir=$1 bport=$2 cport=$3 apw
  apw=$(cat "$sdir/admin.password")
  echo "listeners=SASL_SSL://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport"
  echo "advertised.listeners=SASL_SSL://127.0.0.1:$bport"
  echo "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
  echo "inter.broker.listener.name=SASL_SSL"
  echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
  echo "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
  echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$apw\";"
  echo "sasl.mechanism.controller.protocol=PLAIN"
  echo "listener.name.controller.sasl.enabled.mechanisms=PLAIN"
  echo "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$apw\" user_admin=\"$apw\";"
  echo "ssl.keystore.type=PEM"
  echo "ssl.keystore.location=$sdir/tls/broker-keystore.pem"
  echo "ssl.truststore.type=PEM"
  echo "ssl.truststore.location=$sdir/tls/ca.pem"
  echo "ssl.client.auth=none"
  echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
  echo "allow.everyone.if.no.acl.found=false"
  echo "super.users=User:admin"
}

# secure_prepare DIR: the test CA and broker certificate, and a random password per user (0600 files).
# Hex passwords: safe inside JAAS quotes and StorageTool's --add-scram syntax.
secure_prepare() {
  local dir=$1 u
  "$TEST_CA" init "$dir/tls" || cs_die "kafka.sh: could not create the test CA in $dir/tls"
  "$TEST_CA" server "$dir/tls" broker IP:127.0.0.1 || cs_die "kafka.sh: could not create the broker certificate"
  "$TEST_CA" other "$dir/tls" || cs_die "kafka.sh: could not create the unrelated CA"
  (
    umask 077
    # Kafka's PEM key store: the unencrypted PKCS#8 key followed by the certificate chain.
    cat "$dir/tls/broker.key" "$dir/tls/broker-chain.pem" >"$dir/tls/broker-keystore.pem"
    for u in admin collector publisher; do
      openssl rand -hex 24 >"$dir/$u.password"
    done
  ) || cs_die "kafka.sh: could not write the key store and password files in $dir"
}

# format DIR [--standalone]: kafka.tools.StorageTool format with the shared cluster id.
format_node() {
  local d=$1 cid=$2
  shift 2
  # shellcheck disable=SC2046
  java $(java_flags) -Xmx256m -Dlog4j2.configurationFile="$d/log4j2.properties" -cp "$LIB/*" \
    kafka.tools.StorageTool format -t "$cid" -c "$d/server.properties" "$@" >"$d/format.log" 2>&1 || {
    cs_show_log "$d/format.log"
    return 1
  }
}

# launch_node NODE_DIR: starts one broker+controller JVM from NODE_DIR/server.properties in the background;
# its pid goes to NODE_DIR/pid (stdout.log is appended to, so a restarted node keeps its earlier output).
launch_node() {
  local nd=$1
  # setsid: the broker must not die with the ctest process group that started it.
  # shellcheck disable=SC2046,SC2086
  setsid java $(java_flags) $KAFKA_HEAP -Dlog4j2.configurationFile="$nd/log4j2.properties" \
    -Dkafka.logs.dir="$nd" -cp "$LIB/*" kafka.Kafka "$nd/server.properties" \
    </dev/null >>"$nd/stdout.log" 2>&1 &
  echo $! >"$nd/pid"
}

# node-start DIR I: starts node I of a cluster made by 'start DIR' again, with its data (a failover test
# killed it), then waits until every bootstrap address lists all nodes. DIR/pid and KAFKA_NODE<I>_PID in
# DIR/env name the new process, so 'stop DIR' stops it. Refuses while node I is still running.
cmd_node_start() {
  local dir=${1:-} i=${2:-} old p
  [ -n "$dir" ] && [[ $i =~ ^[1-9]$ ]] || cs_die "kafka.sh node-start: usage: node-start DIR I (I = 1, 2 or 3)"
  [ -f "$dir/env" ] && [ -f "$dir/node$i/server.properties" ] ||
    cs_die "kafka.sh node-start: no node $i in $dir (start the cluster with 'kafka.sh start $dir --nodes 3' first)"
  grep -q '^KAFKA_SECURITY_PROTOCOL=' "$dir/env" && cs_die "kafka.sh node-start: $dir is a --secure node; not supported"
  old=$(cat "$dir/node$i/pid" 2>/dev/null || true)
  if [ -n "$old" ] && cs_pid_alive "$old"; then
    cs_die "kafka.sh node-start: node $i in $dir is still running (pid $old); kill it first"
  fi
  # shellcheck disable=SC1091
  . "$dir/env"
  cmd_fetch
  launch_node "$dir/node$i"
  p=$(cat "$dir/node$i/pid")
  # Replace the old pid in DIR/pid and DIR/env atomically (write, then rename).
  { grep -vx "${old:-none}" "$dir/pid" || true; echo "$p"; } >"$dir/pid.tmp"
  mv "$dir/pid.tmp" "$dir/pid"
  sed "s/^KAFKA_NODE${i}_PID=.*/KAFKA_NODE${i}_PID=$p/" "$dir/env" >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  if ! python3 "$PROBE" wait "$KAFKA_BOOTSTRAP" "$KAFKA_NODES" "$START_TIMEOUT"; then
    cs_show_log "$dir/node$i/server.log"
    cs_die "kafka.sh node-start: node $i in $dir did not rejoin within $START_TIMEOUT s (log above)"
  fi
  echo "kafka.sh: node $i in $dir restarted as pid $p"
}

cmd_start() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  shift
  local nodes=1 secure=0
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=${2:-}; shift 2 ;;
      --secure) secure=1; shift ;;
      *) cs_die "kafka.sh start: unknown option '$1' (expected --nodes 1|3 or --secure)" ;;
    esac
  done
  case $nodes in 1 | 3) ;; *) cs_die "kafka.sh start: --nodes must be 1 or 3, got '$nodes'" ;; esac
  if [ "$secure" -eq 1 ]; then
    [ "$nodes" -eq 1 ] || cs_die "kafka.sh start: --secure supports one node only; drop --nodes $nodes"
    KAFKA_VERSION=$KAFKA_SECURE_VERSION
    CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}/kafka-$KAFKA_VERSION
    LIB=$CACHE/lib
  fi
  if [ -f "$dir/pid" ]; then
    local p
    for p in $(cat "$dir/pid"); do
      cs_pid_alive "$p" && cs_die "kafka already running in $dir (pid $p): run 'kafka.sh stop $dir' first"
    done
  fi
  cmd_fetch
  local t0
  t0=$(date +%s.%N)
  wipe_dir "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  echo "made by tests/services/kafka.sh start: the next start may wipe this directory" >"$dir/$MARKER"

  local i cid voters="" bootstrap=""
  local -a bports cports
  cid=$(new_cluster_id)
  for ((i = 1; i <= nodes; i++)); do
    bports[i]=$(cs_free_port)
    cports[i]=$(cs_free_port)
    voters+="${voters:+,}$i@127.0.0.1:${cports[i]}"
    bootstrap+="${bootstrap:+,}127.0.0.1:${bports[i]}"
  done
  if [ "$secure" -eq 1 ]; then
    secure_prepare "$dir"
    # server.properties holds the admin password: 0600.
    (umask 077 && write_config "$dir/node1" 1 1 "${bports[1]}" "${cports[1]}" "$voters" "$dir")
  else
    for ((i = 1; i <= nodes; i++)); do
      write_config "$dir/node$i" "$i" "$nodes" "${bports[i]}" "${cports[i]}" "$voters"
    done
  fi
  # --secure: SCRAM credentials must exist before the first start in KRaft (they live in the metadata log),
  # so the format step writes them.
  local -a fargs=()
  if [ "$secure" -eq 1 ]; then
    local u
    for u in admin collector publisher; do
      fargs+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$(cat "$dir/$u.password")]")
    done
  fi
  # Format all nodes in parallel: each is a JVM start (~1 s).
  local -a fpids
  for ((i = 1; i <= nodes; i++)); do
    if [ "$nodes" -eq 1 ]; then
      format_node "$dir/node$i" "$cid" --standalone "${fargs[@]}" &
    else
      format_node "$dir/node$i" "$cid" &
    fi
    fpids[i]=$!
  done
  local failed=0
  for ((i = 1; i <= nodes; i++)); do
    wait "${fpids[i]}" || failed=1
  done
  [ "$failed" -eq 0 ] || cs_die "kafka.sh: formatting the storage in $dir failed (log above)"

  : >"$dir/pid"
  for ((i = 1; i <= nodes; i++)); do
    launch_node "$dir/node$i"
    cat "$dir/node$i/pid" >>"$dir/pid"
  done

  local ready=0
  if [ "$secure" -eq 1 ]; then
    # The plaintext probe cannot speak SASL_SSL: the setup tool waits for an authenticated answer as admin,
    # then creates the ACLs (one JVM).
    # shellcheck disable=SC2046
    java $(java_flags) -Xmx128m -cp "$LIB/*" "$SECURE_SETUP" "$bootstrap" "$dir/tls/ca.pem" admin \
      "$dir/admin.password" "$(cat "$dir/node1/pid")" "$START_TIMEOUT" >"$dir/setup.log" 2>&1 && ready=1
    [ "$ready" -eq 1 ] || cs_show_log "$dir/setup.log"
  elif python3 "$PROBE" wait "$bootstrap" "$nodes" "$START_TIMEOUT"; then
    ready=1
  fi
  if [ "$ready" -eq 0 ]; then
    for ((i = 1; i <= nodes; i++)); do
      cs_show_log "$dir/node$i/stdout.log"
      cs_show_log "$dir/node$i/server.log"
    done
    cmd_stop "$dir" || true
    cs_die "kafka.sh: $nodes-node Kafka in $dir did not start (logs above)"
  fi

  {
    echo "KAFKA_BOOTSTRAP=$bootstrap"
    echo "KAFKA_NODES=$nodes"
    echo "KAFKA_VERSION=$KAFKA_VERSION"
    for ((i = 1; i <= nodes; i++)); do
      echo "KAFKA_NODE${i}_PID=$(cat "$dir/node$i/pid")"
      echo "KAFKA_NODE${i}_PORT=${bports[i]}"
    done
    if [ "$secure" -eq 1 ]; then
      echo "KAFKA_SECURITY_PROTOCOL=SASL_SSL"
      echo "KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
      echo "KAFKA_CA_FILE=$dir/tls/ca.pem"
      echo "KAFKA_OTHER_CA_FILE=$dir/tls/other-ca.pem"
      local u
      for u in admin collector publisher; do
        echo "KAFKA_${u^^}_USERNAME=$u"
        echo "KAFKA_${u^^}_PASSWORD_FILE=$dir/$u.password"
      done
    fi
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  local t1
  t1=$(date +%s.%N)
  echo "kafka.sh: $nodes-node Kafka $KAFKA_VERSION serving at $bootstrap in $(python3 -c "print(f'{$t1-$t0:.1f}')")s (env: $dir/env)"
}

cmd_stop() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  [ -f "$dir/pid" ] || { echo "kafka.sh: no $dir/pid: nothing to stop"; return 0; }
  local p left=0
  # SIGTERM all nodes first so they shut down together (a controlled shutdown of the last
  # node waits for the others otherwise), then wait for each.
  for p in $(cat "$dir/pid"); do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in $(cat "$dir/pid"); do
    cs_stop_pid "$p" 30 || true
    if cs_pid_alive "$p"; then
      echo "kafka.sh: pid $p still running" >&2
      left=1
    fi
  done
  [ "$left" -eq 0 ] || cs_die "kafka.sh stop: some Kafka nodes in $dir are still running"
  rm -f "$dir/pid"
  echo "kafka.sh: stopped Kafka in $dir"
}

cmd_topic() {
  local dir=${1:-} name=${2:-}
  [ -n "$dir" ] && [ -n "$name" ] || usage
  shift 2
  local partitions="" rf="" compact=0
  while [ $# -gt 0 ]; do
    case $1 in
      --partitions) partitions=${2:-}; shift 2 ;;
      --replication) rf=${2:-}; shift 2 ;;
      --compact) compact=1; shift ;;
      *) cs_die "kafka.sh topic: unknown option '$1'" ;;
    esac
  done
  [[ $partitions =~ ^[0-9]+$ ]] || cs_die "kafka.sh topic: --partitions N is required (a positive number)"
  [ -f "$dir/env" ] || cs_die "kafka.sh topic: no $dir/env: start Kafka with 'kafka.sh start $dir' first"
  # shellcheck disable=SC1091
  . "$dir/env"
  [ -n "$rf" ] || rf=$KAFKA_NODES
  local -a cfg=()
  if [ "$compact" -eq 1 ]; then cfg+=("cleanup.policy=compact"); fi
  python3 "$PROBE" create-topic "$KAFKA_BOOTSTRAP" "$name" "$partitions" "$rf" "${cfg[@]}"
}

# fetch [--secure|--all]: the default version's jars, --secure's, or both (scripts/test.sh fetches both
# up front so no test downloads during its run).
fetch_versions() {
  case ${1:-} in
    "") cmd_fetch ;;
    --secure | --all)
      [ "$1" = --secure ] || cmd_fetch
      KAFKA_VERSION=$KAFKA_SECURE_VERSION
      CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}/kafka-$KAFKA_VERSION
      LIB=$CACHE/lib
      cmd_fetch
      ;;
    *) cs_die "kafka.sh fetch: unknown option '$1' (expected --secure or --all)" ;;
  esac
}

case ${1:-} in
  fetch) shift; fetch_versions "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  node-start) shift; cmd_node_start "$@" ;;
  topic) shift; cmd_topic "$@" ;;
  *) usage ;;
esac
