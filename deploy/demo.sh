#!/usr/bin/env bash
# `make demo`: the three binaries on generated traffic, then the answer from ClickHouse, in the
# terminal and as the web report (`touchstream serve`).
# Uses its own topics (touchstream.demo-<time>.*) and database (touchstream_demo, recreated),
# and stops what it started. In a terminal it ends by serving the web report until Ctrl-C;
# without one (CI, a pipe) or with DEMO_SERVE=0 it prints the command that serves it and exits.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug"
RUN="$REPO/.services/demo"
VISITORS="${VISITORS:-300}"
SERVE_LISTEN="${SERVE_LISTEN:-127.0.0.1:8090}"
DB=touchstream_demo
PREFIX="touchstream.demo-$(date +%s)"
mkdir -p "$RUN"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ch() { curl -fsS "http://127.0.0.1:8123/?database=$DB" --data-binary "$1"; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_ready() {
  local url=$1 name=$2
  for _ in $(seq 1 300); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$name did not become ready; see $RUN/$name.log" >&2
  tail -20 "$RUN/$name.log" >&2
  exit 1
}

export TOUCHSTREAM_CONFIG="$REPO/deploy/demo.toml"
for bin in PRODUCER ENRICHER SINK; do
  export "TOUCHSTREAM_${bin}__TOPICS__RAW=$PREFIX.events.raw"
  export "TOUCHSTREAM_${bin}__TOPICS__ATTRIBUTED=$PREFIX.events.attributed"
  export "TOUCHSTREAM_${bin}__TOPICS__DLQ=$PREFIX.events.dlq"
  export "TOUCHSTREAM_${bin}__TOPICS__CHANGELOG=$PREFIX.enricher.state"
  export "TOUCHSTREAM_${bin}__LOG__FORMAT=text"
done
export TOUCHSTREAM_SINK__CLICKHOUSE__DATABASE=$DB
export TOUCHSTREAM_ENRICHER__SITE_HOSTS='[shop.example]'
export TOUCHSTREAM_ENRICHER__TRANSACTIONAL_ID="$PREFIX-enricher"
export RUST_LOG="info,librdkafka=warn,rdkafka=warn"

say "fresh demo database $DB, topics $PREFIX.*"
curl -fsS http://127.0.0.1:8123/ --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null

say "starting sink (migrates ClickHouse), enricher, producer"
"$BIN/sink" >"$RUN/sink.log" 2>&1 & pids+=($!)
wait_ready http://127.0.0.1:9102/readyz sink
"$BIN/enricher" >"$RUN/enricher.log" 2>&1 & pids+=($!)
wait_ready http://127.0.0.1:9101/readyz enricher
"$BIN/producer" >"$RUN/producer.log" 2>&1 & pids+=($!)
wait_ready http://127.0.0.1:8080/readyz producer
echo "logs: $RUN/{sink,enricher,producer}.log"

say "generating traffic: $VISITORS visitors from social networks, search, e-mail, AI assistants and direct"
accepted=$("$BIN/touchstream" generate --url http://127.0.0.1:8080 --visitors "$VISITORS" 2>&1 | tee /dev/stderr | sed -n 's/.*accepted \([0-9]*\).*/\1/p')

say "waiting until ClickHouse holds all $accepted events"
for _ in $(seq 1 300); do
  n=$(ch "SELECT count() FROM (SELECT event_id FROM events GROUP BY event_id)" 2>/dev/null || echo 0)
  [ "$n" -ge "$accepted" ] && break
  sleep 0.5
done
echo "ClickHouse: $n events"

say "visitors, customers and clients per first-touch network: touchstream report lifecycle"
"$BIN/touchstream" report lifecycle --database "$DB"

say "followers are not customers: micro- vs macro-conversions per social network"
"$BIN/touchstream" report social-micro-macro --database "$DB"

say "the same purchases under every model (revenue credited to each network, EUR)"
ch "SELECT ifNull(social_network, '(not social)') AS network, model, round(sum(revenue_credit) / 100, 2) AS revenue_eur
    FROM conversion_credits FINAL WHERE conversion_type = 'purchase'
    GROUP BY network, model HAVING countIf(retracted = 0) > 0 ORDER BY network, model FORMAT PrettyCompactMonoBlock" | head -60

say "touches and days to conversion: touchstream report path-length"
"$BIN/touchstream" report path-length --database "$DB" --model linear

say "the answer: source of sale (last_non_direct): touchstream report source-of-sale"
"$BIN/touchstream" report source-of-sale --database "$DB" --model last_non_direct

say "the charts: touchstream report <name> --format svg > chart.svg, or the web report"
"$BIN/touchstream" report path-length --database "$DB" --model linear --format svg >"$RUN/path-length.svg"
echo "wrote $RUN/path-length.svg"

say "stopping the pipeline (the web report only reads ClickHouse)"
cleanup
pids=()
url="http://$SERVE_LISTEN/site/default"
if [ -t 0 ] && [ -t 1 ] && [ "${DEMO_SERVE:-1}" != 0 ]; then
  say "the web report of the demo's data: $url"
  "$BIN/touchstream" serve --database "$DB" --listen "$SERVE_LISTEN" >"$RUN/serve.log" 2>&1 & pids+=($!)
  trap 'cleanup; printf "\nweb report stopped\n"; exit 0' INT TERM
  wait_ready "http://$SERVE_LISTEN/healthz" serve
  echo "open $url in a browser; serving until Ctrl-C (log: $RUN/serve.log; DEMO_SERVE=0 make demo skips this)"
  wait
else
  say "the web report of the demo's data"
  echo "run:   $BIN/touchstream serve --database $DB --listen $SERVE_LISTEN"
  echo "open:  $url"
fi
