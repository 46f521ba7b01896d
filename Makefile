# mcpfleet developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install lint typecheck test unit integration e2e system-deps consul tools tools-sync crds check-crds dashboards image-check bench bench-k8s-ops bench-gateway bench-catalog clean run doctor

help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_-]+:.*?## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install mcpfleet with its dev tools (re-runs when pyproject.toml changes)

lint: $(STAMP) ## ruff (lint + format check) and the import-linter boundaries
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict over every package, the tests and the benchmarks
	$(BIN)/mypy contracts/mcpfleet_contracts operator/mcpfleet_operator servers cli/mcpfleet_cli tests benchmarks hack/tools/tools.py hack/dashboards/dashboards.py

test: $(STAMP) system-deps consul ## Unit and integration tests
	MCPFLEET_TOOLS_BIN="$$($(PYTHON) hack/tools/tools.py bindir consul)" $(BIN)/pytest tests/unit tests/integration

unit: $(STAMP) ## Unit tests only (fast)
	$(BIN)/pytest tests/unit

integration: $(STAMP) system-deps consul ## Integration tests only (operator, servers and gateway against the emulator, real Redis and Consul)
	MCPFLEET_TOOLS_BIN="$$($(PYTHON) hack/tools/tools.py bindir consul)" $(BIN)/pytest tests/integration

e2e: $(STAMP) tools ## End-to-end tests on a real control plane (builds the toolchain first; see docs/testing.md)
	MCPFLEET_TOOLS_BIN="$$($(PYTHON) hack/tools/tools.py bindir)" $(BIN)/pytest tests/e2e

system-deps: ## Install the system packages tests run for real (redis-server, Debian package) when missing
	hack/system-deps.sh

consul: ## Build only consul (the integration tier runs a real agent; cached in ~/.cache/mcpfleet)
	$(PYTHON) hack/tools/tools.py build consul

tools: ## Build kube-apiserver, kube-controller-manager, kubectl, etcd, helm and consul into ~/.cache/mcpfleet (cached)
	$(PYTHON) hack/tools/tools.py build

tools-sync: ## Regenerate hack/tools/modules/ after changing hack/tools/versions.env
	$(PYTHON) hack/tools/tools.py sync

crds: $(STAMP) ## Regenerate crds/ and the chart's copies (CRD, operator RBAC) from the typed models
	$(BIN)/mcpfleet crd print > crds/mcpfleet.io_mcpservers.yaml
	cp crds/mcpfleet.io_mcpservers.yaml charts/mcpfleet/files/crds/mcpfleet.io_mcpservers.yaml
	$(BIN)/mcpfleet rbac print > charts/mcpfleet/files/operator-rbac.yaml

check-crds: $(STAMP) ## Fail when crds/ or the chart's copies differ from what the models generate
	diff -u crds/mcpfleet.io_mcpservers.yaml <($(BIN)/mcpfleet crd print)
	diff -u charts/mcpfleet/files/crds/mcpfleet.io_mcpservers.yaml crds/mcpfleet.io_mcpservers.yaml
	diff -u charts/mcpfleet/files/operator-rbac.yaml <($(BIN)/mcpfleet rbac print)

dashboards: $(STAMP) ## Regenerate the Grafana dashboards (charts/mcpfleet/dashboards/*.json) from their code
	$(BIN)/python hack/dashboards/dashboards.py

image-check: $(STAMP) ## Check the Dockerfile statically and run its install steps (hack/image-install.sh) into a temporary venv
	$(BIN)/pytest tests/unit/test_dockerfile.py tests/integration/test_image_install.py

bench: $(STAMP) ## Operator scale benchmark (1,000 MCPServers in the emulator); see docs/benchmarks.md
	$(BIN)/python benchmarks/operator_scale.py

bench-k8s-ops: $(STAMP) tools ## k8s-ops server benchmark (5,000 pods on a real control plane); see docs/benchmarks.md
	MCPFLEET_TOOLS_BIN="$$($(PYTHON) hack/tools/tools.py bindir)" $(BIN)/python benchmarks/k8s_ops.py

bench-gateway: $(STAMP) system-deps ## Gateway overhead: direct vs mcpfleet vs ContextForge at 1/10/50 clients; see docs/benchmarks.md
	$(BIN)/python benchmarks/gateway_overhead.py

bench-catalog: $(STAMP) tools ## Catalog latency: a server's tool change to the gateway serving it, on a real control plane; see docs/benchmarks.md
	MCPFLEET_TOOLS_BIN="$$($(PYTHON) hack/tools/tools.py bindir)" $(BIN)/python benchmarks/catalog_latency.py

run: $(STAMP) system-deps ## The whole platform on this machine until Ctrl-C (first run builds the control plane, ~7 min; docs/dev.md)
	$(BIN)/mcpfleet dev

doctor: $(STAMP) ## Check the platform `make run` started (or any, with options): one PASS/FAIL/SKIP line per part
	$(BIN)/mcpfleet doctor

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
