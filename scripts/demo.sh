#!/usr/bin/env bash
# `make demo-text`: a real Kafka, the three-level textflow app as worker processes,
# one document pushed once every worker has its partitions and followed to its
# reassembled result, then a trace.
#
# ALTO_DEMO_PORT / ALTO_DEMO_DATA_DIR run it on another broker than the local
# dev one (127.0.0.1:9092 in ALTO_HOME/broker); port 0 takes any free port.
set -euo pipefail
cd "$(dirname "$0")/.."
ALTO=.venv/bin/alto-stream
APP=workers.textflow:app
broker_args=()
if [ -n "${ALTO_DEMO_DATA_DIR:-}" ]; then broker_args+=(--data-dir "$ALTO_DEMO_DATA_DIR"); fi
if [ -n "${ALTO_DEMO_PORT:-}" ]; then broker_args+=(--port "$ALTO_DEMO_PORT"); fi
bootstrap=$($ALTO broker start "${broker_args[@]}")
export ALTO_BOOTSTRAP_SERVERS=$bootstrap
echo "demo: Kafka at $bootstrap"
$ALTO topics apply "$APP"
mkdir -p .alto
ready=.alto/demo-ready.json
rm -f "$ready"
began=$(date +%s.%N)
$ALTO up "$APP" --replicas shout=2 --json --duration 120 --log-dir .alto/demo-logs \
  --ready-file "$ready" > .alto/demo-up.json &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
# Push once every stage's consumer group has handed out its partitions (`up`
# writes the file then), not after a guess: the first query does not wait for
# groups to settle.
for _ in $(seq 1200); do
  [ -s "$ready" ] && break
  kill -0 $up 2>/dev/null || { echo "demo: up exited before the workers were ready" >&2; exit 1; }
  sleep 0.1
done
[ -s "$ready" ] || { echo "demo: the workers were not ready after 120 s" >&2; exit 1; }
echo "demo: workers ready $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$began" "$(date +%s.%N)") s after starting them"
text=$'Streams beat barriers. Every fragment flows on at once.\n\nAggregates put the fragments back together. Skip this word.'
$ALTO push "$APP" "$text" --follow --timeout 60 | tee .alto/demo-push.txt
query=$(grep -oE '[0-9a-f]{20}' .alto/demo-push.txt | head -1)
if [ -n "$query" ]; then $ALTO trace "$query" --app "$APP" || true; fi
echo "demo: done. The broker keeps running (make broker-stop stops it)."
