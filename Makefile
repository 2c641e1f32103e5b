# One command per task; CI runs the same ones (.ci/run -> make test).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
HOST ?= 127.0.0.1

export BENTOML_DO_NOT_TRACK := True
export BENTOML_CONFIG := $(CURDIR)/configuration.yaml
export UV_PYTHON_DOWNLOADS := never
# use the machine's CA store (a TLS-inspecting proxy adds its own CA there)
export UV_SYSTEM_CERTS := true

.PHONY: serve train promote models report test test-fast build lint promtool requirements clean bench \
	loadtest container container-test

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# The environment, exactly as the lock file says (training extras and dev tools included).
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python "$(PYTHON)"
	@touch $@

## serve: train a default model if the store has none, then serve on http://$(HOST):$(PORT)
serve: export FRAUD_ENV_FILE ?= .env
serve: $(VENV)/.synced
	@$(BIN)/python -m fraudscore.devtools ensure-key
	@$(BIN)/python -m fraudscore.devtools has-model || $(BIN)/python train.py
	$(BIN)/bentoml serve service:FraudScorer --host "$(HOST)" --port "$(PORT)"

## train: train on the generated stand-in (ARGS="--data creditcard.csv" for the real file)
train: $(VENV)/.synced
	$(BIN)/python train.py $(ARGS)

## promote: gate a candidate and make it the production model (the one `make build` packages):
## TAG=fraud_detector:<version> [ARGS="--data holdout.csv" | ARGS="--allow-standin"]
promote: $(VENV)/.synced
	@test -n "$(TAG)" || { echo "usage: make promote TAG=fraud_detector:<version>  (make models lists them)" >&2; exit 2; }
	$(BIN)/python -m fraudscore promote "$(TAG)" $(ARGS)

## models: the model store's entries and their stage (candidate, production, retired)
models: $(VENV)/.synced
	$(BIN)/python -m fraudscore models

## report: decision quality per model version, shadow vs primary, from FRAUD_STORE_URL (default:
## SQLite in data/); ARGS="--window 7d --format json --store postgresql://..."
report: $(VENV)/.synced
	$(BIN)/python -m fraudscore report $(ARGS)

## test: the whole suite (unit, in-process HTTP, real `bentoml serve` processes, local Spark)
test: $(VENV)/.synced
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: unit and in-process HTTP tests only (no real servers, no Spark)
test-fast: $(VENV)/.synced
	$(BIN)/python -m pytest -m "not process and not spark" $(PYTEST_ARGS)

## build: the bento (service, package, configuration; no secrets) with the PRODUCTION model pinned by
## its tag (`make promote`); fails when none is promoted. MODEL_TAG=fraud_detector:<version> insists
## on that one (it must be the production model). Never trains.
BUILD_DIR := .build
build: $(VENV)/.synced requirements.txt
	@$(BIN)/python -m fraudscore.devtools production-bentofile $(BUILD_DIR)/bentofile.yaml $(MODEL_TAG)
	$(BIN)/bentoml build -f $(BUILD_DIR)/bentofile.yaml

## requirements: the bento's pinned serving requirements, exported from uv.lock
requirements.txt: uv.lock | $(UV)
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --format requirements-txt -o $@ --quiet
requirements: requirements.txt

## bench: the service under load, engines / batching / concurrency / endpoints side by side (wrk)
bench: $(VENV)/.synced
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## loadtest: the release gate (Locust): p99 <= LOADTEST_P99_MS and no failure, else exit 1;
## starts the service here, or targets HOST=https://... (a URL; FRAUD_API_KEY set)
LOADTEST_USERS ?= 40
LOADTEST_SPAWN_RATE ?= 20
LOADTEST_DURATION ?= 60s
LOADTEST_P99_MS ?= 200
loadtest: $(VENV)/.synced
	$(BIN)/python loadtest/gate.py --users $(LOADTEST_USERS) --spawn-rate $(LOADTEST_SPAWN_RATE) \
	  --duration $(LOADTEST_DURATION) --p99-ms $(LOADTEST_P99_MS) $(if $(findstring ://,$(HOST)),--host $(HOST))

IMAGE ?= fraud_scorer:latest

## container: the bento, then its OCI image $(IMAGE) (Docker if an engine runs, else buildah)
container: build
	BENTO_BUILD=0 deploy/container/build.sh "$(IMAGE)"

## container-test: build the image and smoke-test it read-only (CI runs it after the tests). With no
## production model (a fresh clone) it trains the stand-in if the store is empty and promotes the
## newest entry with --allow-standin, for this smoke test only: never ship that image.
container-test: $(VENV)/.synced
	@$(BIN)/python -m fraudscore models --production >/dev/null 2>&1 || { \
	  $(BIN)/python -m fraudscore.devtools has-model || $(BIN)/python train.py --quiet; \
	  $(BIN)/python -m fraudscore promote fraud_detector:latest --allow-standin; }
	$(MAKE) --no-print-directory container
	SMOKE_BUILD=0 deploy/container/smoke.sh "$(IMAGE)"

## lint: ruff; cfn-lint on deploy/ and actionlint on .github/workflows/ (deploy/lint.sh); promtool
lint: $(VENV)/.synced promtool
	$(BIN)/ruff check .
	bash deploy/lint.sh

## promtool: check the Prometheus alert rules and run their unit tests (Debian: apt-get install prometheus)
promtool:
	@command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus" >&2; exit 2; }
	promtool check rules deploy/prometheus/rules.yml
	cd deploy/prometheus && promtool test rules tests.yml

clean:
	rm -rf .venv .tools .pytest_cache results $(BUILD_DIR)
