# Quick start: `make demo` (set up + run the main job on the embedded default) and `make test`.
# Set-up is idempotent: a second run reuses .venv and only reinstalls when pyproject.toml changed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.emer-installed
ARCH := $(shell uname -m)
# CPU-friendly torch pairs that this project's machines carry on local disk (transformers' video
# processors need torchvision; PyPI's torchvision does not import next to the torch 2.13.0 CPU build).
ifeq ($(ARCH),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
export RAY_USAGE_STATS_ENABLED ?= 0
export DS_ACCELERATOR ?= cpu
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench system-deps apt

setup: $(STAMP)

system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || $(MAKE) -s apt PKG=ffmpeg
	@command -v java >/dev/null 2>&1 || $(MAKE) -s apt PKG=default-jre-headless

apt:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing $(PKG) (apt-get)"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PKG) >/dev/null; \
	else echo "emer needs '$(PKG)': install it with your package manager (e.g. sudo apt-get install $(PKG))"; exit 1; fi

$(STAMP): pyproject.toml | system-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || { echo "installing $(TORCH_SPEC)"; $(PIP) install -q $(TORCH_SPEC); }
	@$(PIP) freeze | grep -E '^(torch|torchvision)==' > $(VENV)/constraints.txt
	@echo "installing emer and its dependencies into $(VENV)"
	@$(PIP) install -q -c $(VENV)/constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/emer demo --out runs/demo

test: $(STAMP)
	@RAY_AUTH_MODE=disabled $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
