#!/usr/bin/env bash
# Installs what is missing and starts what is not running: the real services touchstream
# talks to in development, in tests and in the demo.
#
#   deploy/services.sh start [kafka|clickhouse|prometheus|cluster ...]   (default: kafka clickhouse)
#   deploy/services.sh stop  [...]                   (default: the single node; `stop cluster` for the cluster)
#   deploy/services.sh status [cluster]
#   deploy/services.sh cluster-node start|stop|kill|pause|resume NODE
#                                            NODE: kafka-1..3, zookeeper, clickhouse-1-1, -1-2, -2-1, -2-2
#   deploy/services.sh cluster-env           the cluster's addresses as KEY=VALUE lines
#   deploy/services.sh cluster-check         smoke check: kill a broker, stop a replica (under a minute)
#   deploy/services.sh cluster-reset         stop the cluster and remove its data
#   deploy/services.sh run-prometheus CONFIG PORT DATA_DIR
#                                            a Prometheus of the caller's own, in the foreground (tests)
#   deploy/services.sh install-test-tools    Kafka jars, promtool, chdb (current ClickHouse, embedded), schemathesis, Chromium + playwright-core,
#                                            the Segment and RudderStack SDKs from npm
#   deploy/services.sh logs                  where each service writes its log
#
# Everything lives in a git-ignored state folder, $TOUCHSTREAM_SERVICES_DIR (default: .services/ in the
# repo): the Kafka jars from Maven Central, the KRaft log dirs, ClickHouse's data, and every log file;
# the cluster's (3 Kafka nodes, ZooKeeper, 2x2 ClickHouse servers) under its cluster/ folder.
# It is idempotent and takes a second or two when everything already answers.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TOUCHSTREAM_SERVICES_DIR:-$REPO/.services}"
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
CH_HTTP_PORT=8123
PROM_PORT=9090

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds or the deadline passes.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.3
  done
  log "$name is up"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------- Kafka

KAFKA_DIR="$STATE/kafka"

kafka_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  local pom="$REPO/deploy/kafka/pom.xml" stamp
  stamp="$(sha256sum "$pom" | cut -c1-16)"
  if [ "$(cat "$KAFKA_DIR/lib/.pom-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "fetching the Apache Kafka jars from Maven Central (deploy/kafka/pom.xml)"
    rm -rf "$KAFKA_DIR/lib"
    mkdir -p "$KAFKA_DIR/lib"
    (cd "$REPO/deploy/kafka" && mvn -q -B dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_DIR/lib" -DincludeScope=runtime) >"$KAFKA_DIR/maven.log" 2>&1 \
      || die "mvn failed, see $KAFKA_DIR/maven.log"
    echo "$stamp" >"$KAFKA_DIR/lib/.pom-stamp"
  fi
}

kafka_java() { java -Xms256m -Xmx1g -Dlog4j2.configurationFile="$REPO/deploy/kafka/log4j2.properties" \
  -cp "$KAFKA_DIR/lib/*" "$@"; }

kafka_start() {
  if port_open $KAFKA_PORT; then log "kafka already answers on 127.0.0.1:$KAFKA_PORT"; return; fi
  kafka_install
  mkdir -p "$KAFKA_DIR/data"
  sed -e "s#@DATA@#$KAFKA_DIR/data#g" -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    "$REPO/deploy/kafka/server.properties" >"$KAFKA_DIR/server.properties"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    log "formatting the KRaft storage"
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid)"
    kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$KAFKA_DIR/server.properties" >>"$KAFKA_DIR/kafka.log" 2>&1 \
      || die "kafka storage format failed, see $KAFKA_DIR/kafka.log"
  fi
  log "starting kafka (log: $KAFKA_DIR/kafka.log)"
  nohup java -Xms512m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$REPO/deploy/kafka/log4j2.properties" \
    -cp "$KAFKA_DIR/lib/*" kafka.Kafka "$KAFKA_DIR/server.properties" >>"$KAFKA_DIR/kafka.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/kafka.pid"
  wait_for kafka 90 port_open $KAFKA_PORT || die "kafka did not answer within 90 s, see $KAFKA_DIR/kafka.log"
}

# ----------------------------------------------------------------------------------- ClickHouse

CH_DIR="$STATE/clickhouse"

clickhouse_ping() { [ "$(curl -fsS -m 2 "http://127.0.0.1:$CH_HTTP_PORT/ping" 2>/dev/null)" = "Ok." ]; }

clickhouse_start() {
  if clickhouse_ping; then log "clickhouse already answers on 127.0.0.1:$CH_HTTP_PORT"; return; fi
  command -v clickhouse-server >/dev/null || [ -x /usr/sbin/clickhouse-server ] || apt_install clickhouse-server clickhouse-client
  command -v curl >/dev/null || apt_install curl
  mkdir -p "$CH_DIR"/{data,tmp,log,user_files,format_schemas}
  sed "s#@STATE@#$CH_DIR#g" "$REPO/deploy/clickhouse/config.xml" >"$CH_DIR/config.xml"
  cp "$REPO/deploy/clickhouse/users.xml" "$CH_DIR/users.xml"
  log "starting clickhouse (log: $CH_DIR/log/clickhouse-server.log)"
  nohup /usr/sbin/clickhouse-server --config-file="$CH_DIR/config.xml" >>"$CH_DIR/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$CH_DIR/clickhouse.pid"
  wait_for clickhouse 60 clickhouse_ping || die "clickhouse did not answer within 60 s, see $CH_DIR/log/"
}

# ----------------------------------------------------------------------------------- Prometheus

PROM_DIR="$STATE/prometheus"

prometheus_install() { command -v prometheus >/dev/null || apt_install prometheus; }

# The one Prometheus command line, for the shared instance and for a test's own.
prometheus_args() { # CONFIG DATA_DIR LISTEN
  echo --config.file="$1" --storage.tsdb.path="$2" --web.listen-address="$3"
}

prometheus_start() {
  if port_open $PROM_PORT; then log "prometheus already answers on 127.0.0.1:$PROM_PORT"; return; fi
  prometheus_install
  mkdir -p "$PROM_DIR/data"
  log "starting prometheus (log: $PROM_DIR/prometheus.log)"
  # shellcheck disable=SC2046 # the arguments are paths without spaces
  nohup prometheus $(prometheus_args "$REPO/deploy/prometheus/prometheus.yml" "$PROM_DIR/data" "127.0.0.1:$PROM_PORT") \
    >>"$PROM_DIR/prometheus.log" 2>&1 </dev/null &
  echo $! >"$PROM_DIR/prometheus.pid"
  wait_for prometheus 30 port_open $PROM_PORT || die "prometheus did not answer, see $PROM_DIR/prometheus.log"
}

# `run-prometheus CONFIG PORT DATA_DIR`: a Prometheus of the caller's own, in the foreground
# (the script becomes the Prometheus process, so the caller stops it by its pid), on
# 127.0.0.1:PORT with its own config and data dir: what tests/tests/scrape.rs runs, one per test,
# beside the shared one. Installs Prometheus (Debian's package) when it is missing.
prometheus_run() {
  [ $# = 3 ] || die "usage: $0 run-prometheus CONFIG PORT DATA_DIR"
  local config=$1 port=$2 data=$3
  [ -f "$config" ] || die "no prometheus config at $config"
  prometheus_install
  mkdir -p "$data"
  # shellcheck disable=SC2046
  exec prometheus $(prometheus_args "$config" "$data" "127.0.0.1:$port")
}

# -------------------------------------------------------------------------------------- cluster
# `start cluster`: three Kafka KRaft nodes (each broker and controller), one ZooKeeper and four
# ClickHouse servers (2 shards x 2 replicas, cluster `touchstream`), all on 127.0.0.1 beside the
# single node, on ports of their own, with data and logs under $STATE/cluster/<node>/.

CLUSTER_DIR="$STATE/cluster"
# Absolute, because a node is recognised by its folder in its command line.
case "$CLUSTER_DIR" in /*) ;; *) CLUSTER_DIR="$PWD/$CLUSTER_DIR" ;; esac
CLUSTER_KAFKA=(kafka-1 kafka-2 kafka-3)
CLUSTER_CH=(clickhouse-1-1 clickhouse-1-2 clickhouse-2-1 clickhouse-2-2)
CLUSTER_ZK_PORT=12181
ZK_DIR="$CLUSTER_DIR/zookeeper"
ZK_VERSION_POM="$REPO/deploy/zookeeper/pom.xml"

# kafka-N: clients on 19090+2N, its controller on 19091+2N (19092/19093, 19094/19095, 19096/19097).
ck_id() { echo "${1#kafka-}"; }
ck_port() { echo $((19090 + 2 * $(ck_id "$1"))); }
ck_controller_port() { echo $((19091 + 2 * $(ck_id "$1"))); }
ck_bootstrap() { local n out=""; for n in "${CLUSTER_KAFKA[@]}"; do out+="${out:+,}127.0.0.1:$(ck_port "$n")"; done; echo "$out"; }

# clickhouse-S-R, the Kth of the four: HTTP 18122+K, native TCP 19000+K, interserver 19010+K.
ch_index() { case "$1" in clickhouse-1-1) echo 1 ;; clickhouse-1-2) echo 2 ;; clickhouse-2-1) echo 3 ;; clickhouse-2-2) echo 4 ;; esac; }
ch_http_port() { echo $((18122 + $(ch_index "$1"))); }
ch_tcp_port() { echo $((19000 + $(ch_index "$1"))); }
ch_interserver_port() { echo $((19010 + $(ch_index "$1"))); }

# poll SECONDS CHECK...: wait_for without the log line.
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < deadline)) || return 1; sleep 0.3; done
}

# The nodes that already answered when this run looked (they are checked, but quietly).
ALREADY_UP=()
was_up() { local n; for n in "${ALREADY_UP[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

cluster_node_known() {
  local n
  for n in "${CLUSTER_KAFKA[@]}" zookeeper "${CLUSTER_CH[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

# alive PID: the process runs (and is not a zombie waiting to be reaped).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# node_pid NODE: the pid of NODE if this state folder started it and it still runs.
node_pid() {
  local pidfile="$CLUSTER_DIR/$1/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$CLUSTER_DIR/$1/" \
    && echo "$pid"
}

# The Kafka tools (storage format, topics, perf test, console consumer): quiet log, quick start.
ck_tool() { java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="$REPO/deploy/cluster/tools-log4j2.properties" -cp "$KAFKA_DIR/lib/*" "$@"; }

# ck_broker_count PORT: how many live brokers the node on PORT lists in a Metadata answer (v4, no
# topics), read straight off the socket so that the check costs milliseconds, not a JVM start.
ck_broker_count() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
    printf "\x00\x00\x00\x11\x00\x03\x00\x04\x00\x00\x00\x01\x00\x02ts\x00\x00\x00\x00\x00" >&3 &&
    head -c 16 <&3 | od -An -tu1' "$1" 2>/dev/null \
    | awk 'NF == 16 { print $13 * 16777216 + $14 * 65536 + $15 * 256 + $16; found = 1 } END { if (!found) print 0 }'
}
ck_sees_all() { [ "$(ck_broker_count "$(ck_port "$1")")" = "${#CLUSTER_KAFKA[@]}" ]; }
ck_serving() { [ "$(ck_broker_count "$(ck_port "$1")")" -ge 1 ]; }

# A KRaft directory id / cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
kafka_uuid() {
  local u
  while u="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; [ "${u:0:1}" = - ]; do :; done
  echo "$u"
}

# Every node's log dir is formatted with the same cluster id and the same three initial voters
# (node id, controller address, directory id), kept in $CLUSTER_DIR/kafka-quorum so that a node whose
# log dir was removed is formatted into the same quorum again.
ck_format() {
  local quorum="$CLUSTER_DIR/kafka-quorum" todo=() n pids=()
  for n in "${CLUSTER_KAFKA[@]}"; do [ -f "$CLUSTER_DIR/$n/data/meta.properties" ] || todo+=("$n"); done
  [ ${#todo[@]} -gt 0 ] || return 0
  if [ ! -f "$quorum" ]; then
    local voters=""
    for n in "${CLUSTER_KAFKA[@]}"; do voters+="${voters:+,}$(ck_id "$n")@127.0.0.1:$(ck_controller_port "$n"):$(kafka_uuid)"; done
    printf 'cluster_id=%s\ninitial_controllers=%s\n' "$(kafka_uuid)" "$voters" >"$quorum"
  fi
  local cluster_id voters
  cluster_id="$(sed -n 's/^cluster_id=//p' "$quorum")"
  voters="$(sed -n 's/^initial_controllers=//p' "$quorum")"
  [ ${#todo[@]} = ${#CLUSTER_KAFKA[@]} ] || log "formatting ${todo[*]} again into the existing quorum"
  log "formatting the KRaft storage of ${todo[*]} (cluster $cluster_id)"
  for n in "${todo[@]}"; do
    ck_config "$n"
    ck_tool kafka.tools.StorageTool format -t "$cluster_id" --initial-controllers "$voters" \
      -c "$CLUSTER_DIR/$n/server.properties" >>"$CLUSTER_DIR/$n/kafka.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || die "formatting ${todo[$i]} failed, see $CLUSTER_DIR/${todo[$i]}/kafka.log"
  done
}

ck_config() {
  local n=$1 dir="$CLUSTER_DIR/$1" controllers="" m
  for m in "${CLUSTER_KAFKA[@]}"; do controllers+="${controllers:+,}127.0.0.1:$(ck_controller_port "$m")"; done
  mkdir -p "$dir/data"
  sed -e "s#@NODE_ID@#$(ck_id "$n")#g" -e "s#@DATA@#$dir/data#g" -e "s#@PORT@#$(ck_port "$n")#g" \
    -e "s#@CONTROLLER_PORT@#$(ck_controller_port "$n")#g" -e "s#@CONTROLLERS@#$controllers#g" \
    "$REPO/deploy/cluster/kafka.properties" >"$dir/server.properties"
}

# ck_launch NODE: starts the node in the background unless its port answers; does not wait.
ck_launch() {
  local n=$1 dir="$CLUSTER_DIR/$1"
  if port_open "$(ck_port "$n")"; then ALREADY_UP+=("$n"); return; fi
  ck_config "$n"
  ck_format
  log "starting $n (log: $dir/kafka.log)"
  # In a subshell, so that the node is no child of this shell (no job notice when a test kills it).
  (nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Dlog4j2.configurationFile="$REPO/deploy/kafka/log4j2.properties" \
    -cp "$KAFKA_DIR/lib/*" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
   echo $! >"$dir/$n.pid")
}

zk_install() {
  local stamp
  stamp="$(sha256sum "$ZK_VERSION_POM" | cut -c1-16)"
  if [ "$(cat "$ZK_DIR/lib/.pom-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "fetching Apache ZooKeeper from Maven Central (deploy/zookeeper/pom.xml)"
    rm -rf "${ZK_DIR:?}/lib"
    mkdir -p "$ZK_DIR/lib"
    (cd "$REPO/deploy/zookeeper" && mvn -q -B dependency:copy-dependencies \
      -DoutputDirectory="$ZK_DIR/lib" -DincludeScope=runtime) >"$ZK_DIR/maven.log" 2>&1 \
      || die "mvn failed, see $ZK_DIR/maven.log"
    echo "$stamp" >"$ZK_DIR/lib/.pom-stamp"
  fi
}

# zk_word WORD: a four-letter command's answer (they are whitelisted in deploy/cluster/zoo.cfg).
zk_word() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf %s "$1" >&3 && cat <&3' \
    "$CLUSTER_ZK_PORT" "$1" 2>/dev/null
}
# `ruok` says imok before the server serves; `srvr` names its mode only once it does.
zk_serving() { zk_word srvr | grep -q '^Mode: '; }

zk_launch() {
  if zk_serving; then ALREADY_UP+=(zookeeper); return; fi
  zk_install
  mkdir -p "$ZK_DIR/data"
  sed -e "s#@DATA@#$ZK_DIR/data#g" -e "s#@PORT@#$CLUSTER_ZK_PORT#g" "$REPO/deploy/cluster/zoo.cfg" >"$ZK_DIR/zoo.cfg"
  log "starting zookeeper (log: $ZK_DIR/zookeeper.log)"
  (nohup java -Xms64m -Xmx256m -XX:+UseG1GC -Dlog4j2.configurationFile="$REPO/deploy/zookeeper/log4j2.properties" \
    -cp "$ZK_DIR/lib/*" org.apache.zookeeper.server.ZooKeeperServerMain "$ZK_DIR/zoo.cfg" \
    >>"$ZK_DIR/zookeeper.log" 2>&1 </dev/null &
   echo $! >"$ZK_DIR/zookeeper.pid")
}

# ch_query NODE SQL: runs SQL as `default` on NODE over HTTP and prints the answer.
ch_query() { curl -fsS -m 30 "http://127.0.0.1:$(ch_http_port "$1")/" --data-binary "$2"; }
ch_ping() { [ "$(curl -fsS -m 2 "http://127.0.0.1:$(ch_http_port "$1")/ping" 2>/dev/null)" = "Ok." ]; }
# A server is ready when it knows the four servers of `touchstream` and its ZooKeeper session works.
ch_ready() {
  [ "$(ch_query "$1" "SELECT count() FROM system.clusters WHERE cluster = 'touchstream'" 2>/dev/null)" = 4 ] &&
    ch_query "$1" "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null 2>&1
}

ch_launch() {
  local n=$1 dir="$CLUSTER_DIR/$1" shard
  if ch_ping "$n"; then ALREADY_UP+=("$n"); return; fi
  command -v clickhouse-server >/dev/null || [ -x /usr/sbin/clickhouse-server ] || apt_install clickhouse-server clickhouse-client
  command -v curl >/dev/null || apt_install curl
  shard="${n#clickhouse-}"; shard="${shard%-*}"
  mkdir -p "$dir"/{data,tmp,log,user_files,format_schemas,users.d}
  sed -e "s#@STATE@#$dir#g" -e "s#@HTTP_PORT@#$(ch_http_port "$n")#g" -e "s#@TCP_PORT@#$(ch_tcp_port "$n")#g" \
    -e "s#@INTERSERVER_PORT@#$(ch_interserver_port "$n")#g" -e "s#@SHARD@#$shard#g" -e "s#@REPLICA@#$n#g" \
    -e "s#@TCP_1_1@#$(ch_tcp_port clickhouse-1-1)#g" -e "s#@TCP_1_2@#$(ch_tcp_port clickhouse-1-2)#g" \
    -e "s#@TCP_2_1@#$(ch_tcp_port clickhouse-2-1)#g" -e "s#@TCP_2_2@#$(ch_tcp_port clickhouse-2-2)#g" \
    -e "s#@ZK_PORT@#$CLUSTER_ZK_PORT#g" "$REPO/deploy/cluster/clickhouse.xml" >"$dir/config.xml"
  cp "$REPO/deploy/clickhouse/users.xml" "$dir/users.xml"
  cp "$REPO/deploy/cluster/clickhouse-users.xml" "$dir/users.d/cluster.xml"
  log "starting $n (log: $dir/log/clickhouse-server.log)"
  (nohup /usr/sbin/clickhouse-server --config-file="$dir/config.xml" >>"$dir/log/stdout.log" 2>&1 </dev/null &
   echo $! >"$dir/$n.pid")
}

# node_wait NODE: waits until NODE itself serves (a Kafka node: answers Metadata; ClickHouse: /ping).
node_wait() {
  case "$1" in
    kafka-*) wait_for "$1" 120 ck_serving "$1" || die "$1 did not answer within 120 s, see $CLUSTER_DIR/$1/kafka.log" ;;
    zookeeper) wait_for zookeeper 60 zk_serving || die "zookeeper did not answer within 60 s, see $ZK_DIR/zookeeper.log" ;;
    clickhouse-*) wait_for "$1" 60 ch_ping "$1" || die "$1 did not answer within 60 s, see $CLUSTER_DIR/$1/log/" ;;
  esac
}

node_launch() {
  ALREADY_UP=()
  case "$1" in kafka-*) ck_launch "$1" ;; zookeeper) zk_launch ;; clickhouse-*) ch_launch "$1" ;; esac
  if was_up "$1"; then log "$1 already answers"; fi
}

cluster_start() {
  local n t0=$SECONDS
  mkdir -p "$CLUSTER_DIR"
  kafka_install
  # ZooKeeper first: the ClickHouse servers connect to it as they start.
  zk_launch
  was_up zookeeper || node_wait zookeeper
  for n in "${CLUSTER_KAFKA[@]}"; do ck_launch "$n"; done
  for n in "${CLUSTER_CH[@]}"; do ch_launch "$n"; done
  [ ${#ALREADY_UP[@]} = 0 ] || log "already up: ${ALREADY_UP[*]}"
  # The Kafka nodes only serve once a quorum of controllers has formed, so all three start before any is waited for.
  for n in "${CLUSTER_KAFKA[@]}"; do
    if was_up "$n"; then poll 120 ck_sees_all "$n"
    else wait_for "$n (${#CLUSTER_KAFKA[@]} live brokers)" 120 ck_sees_all "$n"; fi \
      || die "$n does not list ${#CLUSTER_KAFKA[@]} live brokers after 120 s, see $CLUSTER_DIR/$n/kafka.log"
  done
  for n in "${CLUSTER_CH[@]}"; do
    if was_up "$n"; then poll 30 ch_ready "$n"
    else node_wait "$n"; wait_for "$n (cluster touchstream, ZooKeeper)" 30 ch_ready "$n"; fi \
      || die "$n does not see the cluster or ZooKeeper, see $CLUSTER_DIR/$n/log/clickhouse-server.err.log"
  done
  log "cluster up in $((SECONDS - t0)) s: ${#CLUSTER_KAFKA[@]} Kafka nodes, zookeeper, ${#CLUSTER_CH[@]} ClickHouse servers" \
    "(deploy/services.sh cluster-env prints the addresses)"
}

# stop_nodes SIGNAL NODE...: sends SIGNAL to every NODE that runs, then waits for all of them (20 s,
# then SIGKILL). The Kafka nodes of a full stop get it together, so that the quorum is still there
# while each asks it for a controlled shutdown; a Kafka node that still runs 5 s after every other one
# has gone is waiting for a controller that no longer exists, and is killed.
stop_nodes() {
  local sig=$1 n pid pids=() names=(); shift
  for n in "$@"; do
    if pid="$(node_pid "$n")"; then
      log "stopping $n (pid $pid${sig:+, $sig})"
      kill -s "$sig" "$pid"; kill -s CONT "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$n")
    elif [ -f "$CLUSTER_DIR/$n/$n.pid" ]; then
      rm -f "$CLUSTER_DIR/$n/$n.pid"
    fi
  done
  local i deadline=$((SECONDS + 20)) alone_since why
  for i in "${!pids[@]}"; do
    alone_since=""; why="did not stop in 20 s"
    while alive "${pids[$i]}" && ((SECONDS < deadline)); do
      if [[ ${names[$i]} == kafka-* ]] && ! other_kafka_runs "${names[$i]}"; then
        alone_since=${alone_since:-$SECONDS}
        if ((SECONDS - alone_since >= 5)); then why="waits for a controller quorum that is gone"; break; fi
      fi
      sleep 0.2
    done
    if alive "${pids[$i]}"; then
      log "${names[$i]} $why, killing it"
      kill -9 "${pids[$i]}"
      while alive "${pids[$i]}"; do sleep 0.1; done
    fi
    rm -f "$CLUSTER_DIR/${names[$i]}/${names[$i]}.pid"
  done
}

# other_kafka_runs NODE: another Kafka node of the cluster still runs.
other_kafka_runs() {
  local n
  for n in "${CLUSTER_KAFKA[@]}"; do [ "$n" = "$1" ] || ! node_pid "$n" >/dev/null || return 0; done
  return 1
}

# ClickHouse and Kafka together, ZooKeeper once the ClickHouse servers have let go of it.
cluster_stop() {
  stop_nodes TERM "${CLUSTER_CH[@]}" "${CLUSTER_KAFKA[@]}"
  stop_nodes TERM zookeeper
}

# cluster-node start|stop|kill|pause|resume NODE, for fault tests.
cluster_node() {
  local action=${1:-} n=${2:-} pid
  cluster_node_known "$n" || die "usage: $0 cluster-node start|stop|kill|pause|resume NODE (NODE: ${CLUSTER_KAFKA[*]} zookeeper ${CLUSTER_CH[*]})"
  case "$action" in
    start)
      mkdir -p "$CLUSTER_DIR"
      case "$n" in kafka-*) kafka_install ;; esac
      node_launch "$n"; node_wait "$n" ;;
    stop) stop_nodes TERM "$n" ;;
    kill)
      pid="$(node_pid "$n")" || { log "$n: not running from $CLUSTER_DIR"; return; }
      log "killing $n (pid $pid, SIGKILL)"
      kill -9 "$pid"
      while alive "$pid"; do sleep 0.1; done
      rm -f "$CLUSTER_DIR/$n/$n.pid" ;;
    pause|resume)
      pid="$(node_pid "$n")" || die "$n: not running from $CLUSTER_DIR"
      log "$action $n (pid $pid)"
      if [ "$action" = pause ]; then kill -s STOP "$pid"; else kill -s CONT "$pid"; fi ;;
    *) die "usage: $0 cluster-node start|stop|kill|pause|resume NODE" ;;
  esac
}

# KEY=VALUE lines (shell- and dotenv-friendly) for tests: `eval "$(deploy/services.sh cluster-env)"`.
cluster_env() {
  local n urls="" tcp=""
  echo "TOUCHSTREAM_CLUSTER_KAFKA=$(ck_bootstrap)"
  for n in "${CLUSTER_KAFKA[@]}"; do echo "TOUCHSTREAM_CLUSTER_KAFKA_$(ck_id "$n")=127.0.0.1:$(ck_port "$n")"; done
  echo "TOUCHSTREAM_CLUSTER_ZOOKEEPER=127.0.0.1:$CLUSTER_ZK_PORT"
  echo "TOUCHSTREAM_CLUSTER_CLICKHOUSE_CLUSTER=touchstream"
  for n in "${CLUSTER_CH[@]}"; do
    urls+="${urls:+,}http://127.0.0.1:$(ch_http_port "$n")"; tcp+="${tcp:+,}127.0.0.1:$(ch_tcp_port "$n")"
  done
  echo "TOUCHSTREAM_CLUSTER_CLICKHOUSE=$urls"
  echo "TOUCHSTREAM_CLUSTER_CLICKHOUSE_TCP=$tcp"
  for n in "${CLUSTER_CH[@]}"; do
    local key="${n#clickhouse-}"; key="${key/-/_}"
    echo "TOUCHSTREAM_CLUSTER_CLICKHOUSE_$key=http://127.0.0.1:$(ch_http_port "$n")"
  done
}

cluster_status() {
  local n pid
  for n in "${CLUSTER_KAFKA[@]}"; do
    pid="$(node_pid "$n")" || pid=-
    if ! port_open "$(ck_port "$n")"; then printf '%-15s down\n' "$n"
    elif ck_serving "$n"; then
      printf '%-15s up   127.0.0.1:%s  pid %s, lists %s live brokers\n' "$n" "$(ck_port "$n")" "$pid" "$(ck_broker_count "$(ck_port "$n")")"
    else printf '%-15s port 127.0.0.1:%s open, no Metadata answer  pid %s\n' "$n" "$(ck_port "$n")" "$pid"; fi
  done
  pid="$(node_pid zookeeper)" || pid=-
  if zk_serving; then
    printf '%-15s up   127.0.0.1:%s  pid %s, %s\n' zookeeper "$CLUSTER_ZK_PORT" "$pid" "$(zk_word srvr | grep '^Mode: ')"
  else printf '%-15s down\n' zookeeper; fi
  for n in "${CLUSTER_CH[@]}"; do
    pid="$(node_pid "$n")" || pid=-
    if ch_ping "$n"; then
      printf '%-15s up   127.0.0.1:%s (tcp %s)  pid %s\n' "$n" "$(ch_http_port "$n")" "$(ch_tcp_port "$n")" "$pid"
    else printf '%-15s down\n' "$n"; fi
  done
}

cluster_logs() {
  local n
  for n in "${CLUSTER_KAFKA[@]}"; do printf '%-15s %s\n' "$n" "$CLUSTER_DIR/$n/kafka.log"; done
  printf '%-15s %s\n' zookeeper "$ZK_DIR/zookeeper.log"
  for n in "${CLUSTER_CH[@]}"; do printf '%-15s %s\n' "$n" "$CLUSTER_DIR/$n/log/clickhouse-server.log, clickhouse-server.err.log"; done
}

# Stops the cluster and removes its data (the downloaded jars stay).
cluster_reset() {
  cluster_stop
  local n
  for n in "${CLUSTER_KAFKA[@]}" "${CLUSTER_CH[@]}"; do rm -rf "${CLUSTER_DIR:?}/$n"; done
  rm -rf "$ZK_DIR/data" "$CLUSTER_DIR/kafka-quorum"
  log "cluster data removed"
}

# ------------------------------------------------------------------------------ cluster-check
# A bounded smoke check of the running cluster (under a minute): Kafka keeps accepting acks=all
# writes and serving reads with one broker SIGKILLed, and the broker rejoins every ISR when it comes
# back; ClickHouse replicates within each shard, answers through a Distributed table with one replica
# stopped, and the replica catches up when it returns. It removes what it creates.

# A topic of its own each run, so that nothing a killed run left behind is counted.
CHECK_TOPIC="touchstream.cluster-check.$(date +%s)"
CHECK_DB=touchstream_cluster_check
CHECK_TMP=""

check_fail() { die "cluster-check: $*"; }


# On any exit: bring back a node the check took down, drop its topic and tables.
check_cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    log "cluster-check failed; restoring the cluster"
    node_pid kafka-2 >/dev/null || { ck_launch kafka-2; node_wait kafka-2; }
    node_pid clickhouse-1-2 >/dev/null || { ch_launch clickhouse-1-2; node_wait clickhouse-1-2; }
  fi
  ck_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(ck_bootstrap)" --delete --if-exists \
    --topic "$CHECK_TOPIC" >/dev/null 2>&1
  ch_query clickhouse-1-1 "DROP DATABASE IF EXISTS $CHECK_DB ON CLUSTER touchstream" >/dev/null 2>&1
  [ -z "$CHECK_TMP" ] || rm -rf "$CHECK_TMP"
  exit "$rc"
}

# isr_sizes TOPIC: reads TopicCommand's describe output, prints the ISR size of each of TOPIC's partitions.
isr_sizes() { { grep -F "Topic: $1"$'\t'"Partition:" || true; } | sed -n 's/.*Isr: \([0-9,]*\).*/\1/p' | awk -F, '{ print NF }'; }
check_isr_sizes() {
  ck_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(ck_bootstrap)" --describe --topic "$CHECK_TOPIC" 2>/dev/null \
    | isr_sizes "$CHECK_TOPIC"
}
check_isr_full() { [ "$(check_isr_sizes | sort -u)" = 3 ]; }

# check_count NODE TABLE: rows of TABLE on NODE after replacing (FINAL).
check_count() { ch_query "$1" "SELECT count() FROM $CHECK_DB.$2 FINAL" 2>/dev/null; }
check_count_is() { [ "$(check_count "$1" "$2")" = "$3" ]; }
check_replaced() { [ "$(ch_query "$1" "SELECT value FROM $CHECK_DB.events FINAL WHERE id = 0" 2>/dev/null)" = b ]; }

cluster_check() {
  local t0=$SECONDS boot out
  cluster_start
  CHECK_TMP="$(mktemp -d)"
  trap check_cleanup EXIT
  boot="$(ck_bootstrap)"

  # --- Kafka
  local tk=$SECONDS
  ck_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$boot" --create --topic "$CHECK_TOPIC" \
    --partitions 6 --replication-factor 3 --config min.insync.replicas=2 >/dev/null \
    || check_fail "could not create $CHECK_TOPIC"
  log "kafka: $CHECK_TOPIC created (6 partitions, RF 3, min ISR 2)"
  # 4000 acks=all records at 500/s, and kafka-2 SIGKILLed three seconds in.
  ck_tool org.apache.kafka.tools.ProducerPerformance --topic "$CHECK_TOPIC" --num-records 4000 --throughput 500 \
    --record-size 100 --producer-props bootstrap.servers="$boot" acks=all linger.ms=5 \
    request.timeout.ms=10000 delivery.timeout.ms=30000 \
    >"$CHECK_TMP/produce.log" 2>&1 &
  local producer=$!
  sleep 3
  cluster_node kill kafka-2
  wait "$producer" || check_fail "the producer failed: $(tail -3 "$CHECK_TMP/produce.log")"
  # The perf test counts a record as sent only once it is acknowledged; retriable errors are only warnings.
  grep -q '^4000 records sent' "$CHECK_TMP/produce.log" \
    || check_fail "not every record was acknowledged: $(tail -3 "$CHECK_TMP/produce.log")"
  log "kafka: 4000 records acknowledged (acks=all) across the kill: $(grep '^4000 records sent' "$CHECK_TMP/produce.log" | cut -d, -f2- | cut -d, -f1-3)"
  out="$(ck_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$boot" --topic "$CHECK_TOPIC" \
    --from-beginning --max-messages 4000 --timeout-ms 20000 2>/dev/null | wc -l)"
  [ "$out" = 4000 ] || check_fail "consumed $out of 4000 records with kafka-2 down"
  # The consumer's group has created __consumer_offsets by now (with kafka-2 down): one describe for both.
  out="$(ck_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$boot" --describe \
    --topic "$CHECK_TOPIC|__consumer_offsets" 2>/dev/null)" || check_fail "could not describe the topics"
  grep -q 'Topic: __consumer_offsets.*ReplicationFactor: 3.*min.insync.replicas=2' <<<"$out" \
    || check_fail "__consumer_offsets is not replicated 3 with min ISR 2: $(grep -m1 'Topic: __consumer_offsets' <<<"$out")"
  out="$(isr_sizes "$CHECK_TOPIC" <<<"$out" | sort -u | tr '\n' ' ')"
  [ "$out" = "2 " ] || check_fail "with kafka-2 down every ISR should have 2 replicas, got: $out"
  log "kafka: with kafka-2 down all 4000 records were consumed; every ISR has 2 replicas; __consumer_offsets RF 3, min ISR 2"
  cluster_node start kafka-2
  poll 30 check_isr_full || check_fail "kafka-2 did not rejoin the ISRs: $(check_isr_sizes | tr '\n' ' ')"
  log "kafka: kafka-2 is back in every ISR"
  ck_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$boot" --delete --topic "$CHECK_TOPIC" >/dev/null
  log "kafka: passed in $((SECONDS - tk)) s"

  # --- ClickHouse
  local tc=$SECONDS n
  ch_query clickhouse-1-1 "DROP DATABASE IF EXISTS $CHECK_DB ON CLUSTER touchstream" >/dev/null \
    || check_fail "DROP DATABASE ON CLUSTER failed (are all four servers up?)"
  out="$(ch_query clickhouse-1-1 "CREATE DATABASE IF NOT EXISTS $CHECK_DB ON CLUSTER touchstream")" || check_fail "CREATE DATABASE ON CLUSTER failed"
  out="$(ch_query clickhouse-1-1 "CREATE TABLE $CHECK_DB.events ON CLUSTER touchstream
      (id UInt64, version UInt32, value String)
      ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{cluster}/{shard}/$CHECK_DB/events', '{replica}', version)
      ORDER BY id")" || check_fail "CREATE TABLE ... ON CLUSTER (ReplicatedReplacingMergeTree) failed"
  [ "$(awk -F'\t' '$3 == 0' <<<"$out" | wc -l)" = 4 ] || check_fail "the replicated table was not created on all four servers: $out"
  out="$(ch_query clickhouse-1-1 "CREATE TABLE $CHECK_DB.events_all ON CLUSTER touchstream AS $CHECK_DB.events
      ENGINE = Distributed(touchstream, $CHECK_DB, events, id)")" || check_fail "CREATE TABLE ... ON CLUSTER (Distributed) failed"
  [ "$(awk -F'\t' '$3 == 0' <<<"$out" | wc -l)" = 4 ] || check_fail "the Distributed table was not created on all four servers: $out"
  log "clickhouse: ReplicatedReplacingMergeTree and Distributed tables created ON CLUSTER touchstream on all four servers"
  # Even ids on shard 1, odd ids on shard 2, as the Distributed table's sharding key (id) would put them.
  ch_query clickhouse-1-1 "INSERT INTO $CHECK_DB.events SELECT number * 2, 1, 'a' FROM system.numbers LIMIT 100" || check_fail "insert into clickhouse-1-1 failed"
  ch_query clickhouse-2-1 "INSERT INTO $CHECK_DB.events SELECT number * 2 + 1, 1, 'a' FROM system.numbers LIMIT 100" || check_fail "insert into clickhouse-2-1 failed"
  # A newer version of row 0 written on the other replica replaces the first.
  ch_query clickhouse-1-2 "INSERT INTO $CHECK_DB.events VALUES (0, 2, 'b')" || check_fail "insert into clickhouse-1-2 failed"
  poll 20 check_count_is clickhouse-1-2 events 100 || check_fail "clickhouse-1-2 has $(check_count clickhouse-1-2 events) rows"
  poll 20 check_count_is clickhouse-2-2 events 100 || check_fail "clickhouse-2-2 has $(check_count clickhouse-2-2 events) rows"
  poll 20 check_replaced clickhouse-1-1 \
    || check_fail "the replacing row did not replicate to clickhouse-1-1"
  for n in "${CLUSTER_CH[@]}"; do
    out="$(check_count "$n" events_all)"
    [ "$out" = 200 ] || check_fail "events_all on $n has $out rows, not 200"
  done
  log "clickhouse: 100 rows into clickhouse-1-1, 100 into clickhouse-2-1, a newer version of one row into clickhouse-1-2:"
  log "clickhouse: every replica has its shard's rows and the newer version; 200 rows through events_all from every server"
  cluster_node stop clickhouse-1-2
  for n in clickhouse-1-1 clickhouse-2-1 clickhouse-2-2 clickhouse-2-1 clickhouse-2-2; do
    out="$(check_count "$n" events_all)"
    [ "$out" = 200 ] || check_fail "with clickhouse-1-2 down events_all on $n has $out rows, not 200"
  done
  ch_query clickhouse-1-1 "INSERT INTO $CHECK_DB.events SELECT 200 + number * 2, 1, 'c' FROM system.numbers LIMIT 50" \
    || check_fail "insert into clickhouse-1-1 with clickhouse-1-2 down failed"
  out="$(check_count clickhouse-2-2 events_all)"
  [ "$out" = 250 ] || check_fail "with clickhouse-1-2 down events_all has $out rows, not 250"
  log "clickhouse: with clickhouse-1-2 stopped, events_all answers from every other server; 50 more rows written to clickhouse-1-1"
  cluster_node start clickhouse-1-2
  poll 30 check_count_is clickhouse-1-2 events 150 \
    || check_fail "clickhouse-1-2 has $(check_count clickhouse-1-2 events) rows, not 150"
  out="$(ch_query clickhouse-1-1 "DROP DATABASE $CHECK_DB ON CLUSTER touchstream")" || check_fail "DROP DATABASE ON CLUSTER failed"
  log "clickhouse: clickhouse-1-2 caught up (150 rows); passed in $((SECONDS - tc)) s"

  trap - EXIT
  rm -rf "$CHECK_TMP"
  log "cluster-check passed in $((SECONDS - t0)) s"
}

# ------------------------------------------------------------------------------------ test tools

install_test_tools() {
  # The Kafka jars also serve tests that run a private broker, and the benchmarks' baselines.
  kafka_install
  command -v promtool >/dev/null || apt_install prometheus
  [ -x /usr/bin/chromium ] || apt_install chromium
  command -v npm >/dev/null || apt_install npm
  # chdb: current ClickHouse embedded in Python, to check migrations and report SQL against it.
  local venv="$STATE/python"
  if ! "$venv/bin/python" -c 'import chdb, schemathesis' 2>/dev/null; then
    log "installing chdb and schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$REPO/tests/python-requirements.txt" \
      >"$STATE/pip.log" 2>&1 || die "pip install failed, see $STATE/pip.log"
  fi
  local browser="$REPO/tests/browser" pkg missing=""
  # Every package the browser and SDK tests load (package.json pins them, the lock file too).
  for pkg in playwright-core @segment/analytics-node @rudderstack/rudder-sdk-node @segment/analytics-next; do
    [ -d "$browser/node_modules/$pkg" ] || missing="$missing $pkg"
  done
  if [ -f "$browser/package.json" ] && [ -n "$missing" ]; then
    log "installing into tests/browser:$missing"
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error) >"$STATE/npm.log" 2>&1 \
      || die "npm ci failed, see $STATE/npm.log"
  fi
}

# ------------------------------------------------------------------------------------ stop, status

stop_one() {
  local name=$1 pidfile=$2 pid
  [ -f "$pidfile" ] || { log "$name: not started by this script"; return; }
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 20 s, killing it"; kill -9 "$pid"; }
  fi
  rm -f "$pidfile"
}

status() {
  port_open $KAFKA_PORT && echo "kafka       up   127.0.0.1:$KAFKA_PORT" || echo "kafka       down"
  clickhouse_ping && echo "clickhouse  up   127.0.0.1:$CH_HTTP_PORT" || echo "clickhouse  down"
  port_open $PROM_PORT && echo "prometheus  up   127.0.0.1:$PROM_PORT" || echo "prometheus  down"
}

logs() {
  echo "kafka       $KAFKA_DIR/kafka.log"
  echo "clickhouse  $CH_DIR/log/clickhouse-server.log, $CH_DIR/log/clickhouse-server.err.log"
  echo "prometheus  $PROM_DIR/prometheus.log"
}

cmd="${1:-start}"; shift || true
services=("$@")
mkdir -p "$STATE"
case "$cmd" in
  start)
    [ ${#services[@]} -gt 0 ] || services=(kafka clickhouse)
    for s in "${services[@]}"; do
      case "$s" in
        kafka) kafka_start ;; clickhouse) clickhouse_start ;; prometheus) prometheus_start ;;
        cluster) cluster_start ;;
        *) die "unknown service '$s' (kafka, clickhouse, prometheus, cluster)" ;;
      esac
    done ;;
  stop)
    [ ${#services[@]} -gt 0 ] || services=(prometheus clickhouse kafka)
    for s in "${services[@]}"; do
      case "$s" in
        kafka) stop_one kafka "$KAFKA_DIR/kafka.pid" ;;
        clickhouse) stop_one clickhouse "$CH_DIR/clickhouse.pid" ;;
        prometheus) stop_one prometheus "$PROM_DIR/prometheus.pid" ;;
        cluster) cluster_stop ;;
        *) die "unknown service '$s'" ;;
      esac
    done ;;
  status)
    if [ "${services[*]}" = cluster ]; then cluster_status
    else status; [ ! -d "$CLUSTER_DIR" ] || cluster_status; fi ;;
  logs) logs; [ ! -d "$CLUSTER_DIR" ] || cluster_logs ;;
  install-test-tools) install_test_tools ;;
  run-prometheus) prometheus_run "${services[@]}" ;;
  cluster-node) cluster_node "${services[@]}" ;;
  cluster-env) cluster_env ;;
  cluster-check) cluster_check ;;
  cluster-reset) cluster_reset ;;
  *) die "usage: $0 start|stop|status|logs|install-test-tools [service...] | run-prometheus CONFIG PORT DATA_DIR | cluster-node ACTION NODE | cluster-env | cluster-check | cluster-reset" ;;
esac
