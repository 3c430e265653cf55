#!/usr/bin/env bash
# A real Apache Kafka (KRaft, no ZooKeeper) for the integration tests. See tests/services/lib.sh.
#
#   kafka.sh fetch                           resolve the broker jars with Maven into the cache (idempotent)
#   kafka.sh start DIR [--nodes 1|3]         start 1 or 3 broker+controller nodes on free 127.0.0.1 ports;
#                                            write DIR/env (KAFKA_BOOTSTRAP, KAFKA_NODES, and per node
#                                            KAFKA_NODE<i>_PID / KAFKA_NODE<i>_PORT) and DIR/pid
#   kafka.sh stop DIR                        stop every node by PID; non-zero if one is left
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
CACHE=${CS_CACHE_DIR:-$HOME/.cache/certsync}/kafka-$KAFKA_VERSION
LIB=$CACHE/lib
PROBE=$HERE/kafka/kafka_probe.py
# Per node: enough for a test broker; 2 cores / 24 GiB are shared with the tests and other servers.
KAFKA_HEAP=${KAFKA_HEAP:--Xms64m -Xmx448m}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" >&2
  exit 2
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

# write_config DIR NODE_ID NODES BROKER_PORT CONTROLLER_PORT VOTERS
write_config() {
  local d=$1 id=$2 nodes=$3 bport=$4 cport=$5 voters=$6 rf isr
  if [ "$nodes" -eq 1 ]; then rf=1; isr=1; else rf=3; isr=2; fi
  mkdir -p "$d/data"
  {
    echo "process.roles=broker,controller"
    echo "node.id=$id"
    echo "listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bport"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "inter.broker.listener.name=PLAINTEXT"
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

cmd_start() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  shift
  local nodes=1
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=${2:-}; shift 2 ;;
      *) cs_die "kafka.sh start: unknown option '$1' (expected --nodes 1|3)" ;;
    esac
  done
  case $nodes in 1 | 3) ;; *) cs_die "kafka.sh start: --nodes must be 1 or 3, got '$nodes'" ;; esac
  if [ -f "$dir/pid" ]; then
    local p
    for p in $(cat "$dir/pid"); do
      cs_pid_alive "$p" && cs_die "kafka already running in $dir (pid $p): run 'kafka.sh stop $dir' first"
    done
  fi
  cmd_fetch
  local t0
  t0=$(date +%s.%N)
  rm -rf "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  local i cid voters="" bootstrap=""
  local -a bports cports
  cid=$(new_cluster_id)
  for ((i = 1; i <= nodes; i++)); do
    bports[i]=$(cs_free_port)
    cports[i]=$(cs_free_port)
    voters+="${voters:+,}$i@127.0.0.1:${cports[i]}"
    bootstrap+="${bootstrap:+,}127.0.0.1:${bports[i]}"
  done
  for ((i = 1; i <= nodes; i++)); do
    write_config "$dir/node$i" "$i" "$nodes" "${bports[i]}" "${cports[i]}" "$voters"
  done
  # Format all nodes in parallel: each is a JVM start (~1 s).
  local -a fpids
  for ((i = 1; i <= nodes; i++)); do
    if [ "$nodes" -eq 1 ]; then
      format_node "$dir/node$i" "$cid" --standalone &
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
    local nd=$dir/node$i
    # setsid: the broker must not die with the ctest process group that started it.
    # shellcheck disable=SC2046,SC2086
    setsid java $(java_flags) $KAFKA_HEAP -Dlog4j2.configurationFile="$nd/log4j2.properties" \
      -Dkafka.logs.dir="$nd" -cp "$LIB/*" kafka.Kafka "$nd/server.properties" \
      </dev/null >"$nd/stdout.log" 2>&1 &
    echo $! >>"$dir/pid"
    echo $! >"$nd/pid"
  done

  if ! python3 "$PROBE" wait "$bootstrap" "$nodes" "$START_TIMEOUT"; then
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

case ${1:-} in
  fetch) cmd_fetch ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  topic) shift; cmd_topic "$@" ;;
  *) usage ;;
esac
