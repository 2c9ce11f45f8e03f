# pdfchat: `make up` runs the whole suite, `make test` runs everything CI runs.
SHELL := /bin/bash
PY := .venv/bin/python
BIN := .venv/bin
SRC := libs/common/src services/*/src tools

.PHONY: setup proto check-generated lint test test-unit test-integration test-e2e up down bench-ingest bench-orchestrator clean

setup:
	@bash tools/setup_system.sh
	@bash tools/setup_venv.sh

proto: setup
	@bash tools/gen_proto.sh

# Generated code is committed; CI regenerates it and fails on any difference.
check-generated: setup
	@tmp=$$(mktemp -d) && bash tools/gen_proto.sh $$tmp && \
	  diff -r -q $$tmp/pdfchat/v1 libs/common/src/pdfchat/v1 -x __pycache__ \
	  || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(SRC)
	$(BIN)/buf lint
	@if git rev-parse --verify -q main >/dev/null; then \
	  $(BIN)/buf breaking --against '.git#branch=main'; \
	else echo "buf breaking: no main branch to compare against"; fi

test: setup check-generated lint
	@bash tools/setup_system.sh --tests
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not integration and not e2e"

test-integration: setup
	$(PY) -m pytest -m integration

test-e2e: setup
	$(PY) -m pytest -m e2e

up: setup
	$(PY) -m pdfchat_tools.devstack up

down: setup
	$(PY) -m pdfchat_tools.devstack down

# The suite vs the same work in one process: pages/s, chunks/s, upload->READY, memory; BENCH_ARGS=--quick for a small corpus.
bench-ingest: setup
	$(PY) -m bench.ingest $(BENCH_ARGS)

# Ours vs LiteLLM's proxy on the LLM simulator: added latency and a 2,000-request burst (~10 min); QUICK=1 for ~4 min.
bench-orchestrator: setup
	$(PY) bench/orchestrator/run.py $(if $(QUICK),--quick) --json bench/results/orchestrator.json

clean:
	rm -rf .venv .data
