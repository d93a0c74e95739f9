#!/usr/bin/env bash
# `make demo`: a real Kafka, the three-level textflow app as worker processes,
# one document pushed and followed to its reassembled result, then a trace.
set -euo pipefail
cd "$(dirname "$0")/.."
ALTO=.venv/bin/alto-stream
APP=workers.textflow:app
bootstrap=$($ALTO broker start)
export ALTO_BOOTSTRAP_SERVERS=$bootstrap
echo "demo: Kafka at $bootstrap"
$ALTO topics apply "$APP"
mkdir -p .alto
$ALTO up "$APP" --replicas shout=2 --json --duration 120 --log-dir .alto/demo-logs > .alto/demo-up.json &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
sleep 4  # workers join their groups
text=$'Streams beat barriers. Every fragment flows on at once.\n\nAggregates put the fragments back together. Skip this word.'
$ALTO push "$APP" "$text" --follow --timeout 60 | tee .alto/demo-push.txt
query=$(grep -oE '[0-9a-f]{20}' .alto/demo-push.txt | head -1)
if [ -n "$query" ]; then $ALTO trace "$query" --app "$APP" || true; fi
echo "demo: done. The broker keeps running (make broker-stop stops it)."
