#!/usr/bin/env bash
# Installs what is missing and starts what is not running: the real services touchstream
# talks to in development, in tests and in the demo.
#
#   deploy/services.sh start [kafka|clickhouse|prometheus ...]   (default: kafka clickhouse)
#   deploy/services.sh stop  [...]
#   deploy/services.sh status
#   deploy/services.sh install-test-tools    Kafka jars, promtool, chdb (current ClickHouse, embedded), schemathesis, Chromium + playwright-core
#   deploy/services.sh logs                  where each service writes its log
#
# Everything lives in a git-ignored state folder, $TOUCHSTREAM_SERVICES_DIR (default: .services/ in the
# repo): the Kafka jars from Maven Central, the KRaft log dirs, ClickHouse's data, and every log file.
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

prometheus_start() {
  if port_open $PROM_PORT; then log "prometheus already answers on 127.0.0.1:$PROM_PORT"; return; fi
  command -v prometheus >/dev/null || apt_install prometheus
  mkdir -p "$PROM_DIR/data"
  log "starting prometheus (log: $PROM_DIR/prometheus.log)"
  (cd "$REPO/deploy/prometheus" && nohup prometheus --config.file=prometheus.yml \
    --storage.tsdb.path="$PROM_DIR/data" --web.listen-address=127.0.0.1:$PROM_PORT \
    >>"$PROM_DIR/prometheus.log" 2>&1 </dev/null &
   echo $! >"$PROM_DIR/prometheus.pid")
  wait_for prometheus 30 port_open $PROM_PORT || die "prometheus did not answer, see $PROM_DIR/prometheus.log"
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
  local browser="$REPO/tests/browser"
  if [ -f "$browser/package.json" ] && [ ! -d "$browser/node_modules/playwright-core" ]; then
    log "installing playwright-core into tests/browser"
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
        *) die "unknown service '$s' (kafka, clickhouse, prometheus)" ;;
      esac
    done ;;
  stop)
    [ ${#services[@]} -gt 0 ] || services=(prometheus clickhouse kafka)
    for s in "${services[@]}"; do
      case "$s" in
        kafka) stop_one kafka "$KAFKA_DIR/kafka.pid" ;;
        clickhouse) stop_one clickhouse "$CH_DIR/clickhouse.pid" ;;
        prometheus) stop_one prometheus "$PROM_DIR/prometheus.pid" ;;
        *) die "unknown service '$s'" ;;
      esac
    done ;;
  status) status ;;
  logs) logs ;;
  install-test-tools) install_test_tools ;;
  *) die "usage: $0 start|stop|status|logs|install-test-tools [service...]" ;;
esac
