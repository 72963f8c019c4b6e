# streamrec — every target sets up what it needs; `make demo` and `make test` are all a
# newcomer runs on a fresh machine with Python 3.11+ and Java 17 (+ Maven).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The `gpu` extra swaps in faiss-gpu and onnxruntime-gpu when a GPU is visible.
EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
LOCK := requirements/$(EXTRA).lock
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: install install-worker lock demo test test-fast test-deploy test-gpu bench bench-index bench-engine bench-gpu load profile-worker tune-index lint docs clean kafka-start kafka-stop

install: $(STAMP)

# Exactly what the lock pins (hashes checked, nothing else), then streamrec itself without
# dependencies: a new release of any package cannot change a fresh install.
$(STAMP): $(LOCK) requirements/tools.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements/tools.lock
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes $(LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# A worker that serves from artifacts: FAISS, ONNX Runtime, Faust; no torch, no dev tools.
install-worker:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements/tools.lock
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes requirements/worker-$(EXTRA).lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps .

# After changing a dependency in pyproject.toml: re-resolve every lock (needs uv).
lock:
	UV=$(if $(wildcard $(BIN)/uv),$(BIN)/uv,uv) bash requirements/compile.sh

demo: install
	$(BIN)/python -m streamrec.demo

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow and not integration"

# deploy/ without a Docker engine or a cluster: compose and Kubernetes schemas, hadolint,
# the dashboard's metric names, the health check, a worker that imports no torch.
test-deploy: install
	$(BIN)/pytest tests/deploy

# The GPU backends (FAISS GPU index, CUDA reranker, GPU engine); -rs shows why any skipped.
test-gpu: install
	$(BIN)/pytest -m gpu -rs

# Benchmarks print figures (they assert nothing); 1M-item catalogs take minutes to build
# (once: cached in out/bench-engine). `make bench` is one table: each stage's raw library
# floor beside the engine's cost, in process and through Kafka, batched vs per-event, and
# loadtest/out/bench-engine.json.
bench: bench-engine

bench-engine: install
	$(BIN)/python -m loadtest.bench_engine $(BENCH_ARGS)

# The index kinds at 1M x 64; the HNSW build takes many minutes: INDEX_KINDS=flat,hnsw,ivf.
INDEX_KINDS ?= flat,ivf
bench-index: install
	$(BIN)/streamrec index bench --items 1000000 --dim 64 --queries 2000 --batch 64 --kinds $(INDEX_KINDS)

# nprobe / efSearch by measured recall@200 on ML-1M item embeddings and the synthetic 1M
# catalog, IVF-Flat vs SQ8 vs fast-scan PQ + refine: loadtest/out/tune-index.json.
tune-index: install
	$(BIN)/python -m loadtest.tune_index $(TUNE_ARGS)

# Where one worker's CPU goes per event, by stage and by event-loop callback (a backlog
# through Kafka, the loop sampled): loadtest/out/profile-worker.json.
profile-worker: install
	$(BIN)/python -m loadtest.profile_worker $(PROFILE_ARGS)

# Kafka + one worker on a LOAD_ITEMS synthetic catalog under locust: GET-only at 1,000/s,
# then Kafka event users (event -> recommendation); CSV/HTML and load.json in loadtest/out.
LOAD_ITEMS ?= 1000000
load: install
	$(BIN)/python -m loadtest.load --items $(LOAD_ITEMS) $(LOAD_ARGS)

# GPU and CPU side by side in one run on one machine: index, reranker, engine core (no Kafka).
bench-gpu: install
	$(BIN)/streamrec index bench --items 1000000 --dim 64 --queries 2000 --batch 64 --kinds flat,ivf --device gpu
	$(BIN)/streamrec index bench --items 1000000 --dim 64 --queries 2000 --batch 64 --kinds flat,ivf --device cpu
	$(BIN)/python -m loadtest.bench_scorer --batches 200,2000
	$(BIN)/python -m loadtest.bench_engine --in-process --device gpu
	$(BIN)/python -m loadtest.bench_engine --in-process --device cpu

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy streamrec streams index models
	$(BIN)/mypy --explicit-package-bases loadtest/*.py

docs: install
	$(BIN)/python -m streamrec.cli.readme
	$(BIN)/typer streamrec.cli utils docs --name streamrec --title "streamrec command line" --output docs/CLI.md

kafka-start: install
	$(BIN)/streamrec kafka start

kafka-stop: install
	$(BIN)/streamrec kafka stop

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
