# Every setup step lives here: a fresh clone needs only python3 (3.11+) and, for the
# control-plane tests, Go. `make demo` and `make test` are the two commands a new user runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEV_STAMP := $(VENV)/.dev-installed
MODELS_STAMP := examples/models/.generated

.PHONY: demo test test-runtime lint format proto models profiles bench bench-overload bench-cores bench-scaler bench-local bench-variants bench-split cluster-build cluster-up cluster-down kind-up kind-down clean

$(DEV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(MODELS_STAMP): $(DEV_STAMP) examples/make_models.py
	$(PY) examples/make_models.py --out examples/models
	touch $@

models: $(MODELS_STAMP)

## demo: local mode: the example pipeline as processes under real CPU quotas and the hybrid
## scaler, 90 s of bursty load, then the report table and the plot (without root: no quotas)
DEMO_QUOTA := $(if $(filter 0,$(shell id -u)),,--no-quota)
demo: $(MODELS_STAMP)
	$(VENV)/bin/sluice up examples/pipelines/dialogue.yaml --profiles examples/profiles/dialogue.json \
		--model-root examples/models --rate 60 --mmpp --duration-s 90 --policy hybrid \
		--out demo-output $(DEMO_QUOTA)

## test: the whole suite (runtime, control plane, operator)
test: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -rs

test-runtime: $(DEV_STAMP)
	$(PY) -m pytest -rs tests/runtime

## lint: ruff, and the import-linter contracts of the layers (pyproject.toml)
lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

format: $(DEV_STAMP)
	$(PY) -m ruff format .

## proto: regenerate the Open Inference Protocol stubs (committed; a test checks they are current)
proto: $(DEV_STAMP)
	cd runtime && ../$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		sluice_runtime/protocol/inference.proto

## profiles: regenerate examples/profiles/dialogue.json under real CPU quotas (needs root; a
## few minutes; docs/profiles.md). Batches to 1024 rows: the planner may choose them.
profiles: $(MODELS_STAMP)
	$(PY) -m sluice_local profile examples/pipelines/dialogue.yaml --model-root examples/models \
		--batches 1,2,4,8,16,32,64,128,256,512,1024 --out examples/profiles/dialogue.json

## bench: runtime benchmark against raw onnxruntime, a null gRPC server and MLServer (docs/bench.md)
bench: $(MODELS_STAMP)
	bench/setup_mlserver.sh $(PYTHON)
	$(PY) bench/runtime.py --models examples/models

## bench-overload: goodput, late answers and refusals at 0.7x, 2x and 3x capacity (docs/bench.md)
bench-overload: $(MODELS_STAMP)
	$(PY) bench/overload.py --models examples/models

## bench-cores: an in-place resize 1 -> 2 -> 1 core: lone latency, saturation, memory, spin policy (needs root; docs/bench.md)
bench-cores: $(MODELS_STAMP)
	$(PY) bench/cores.py --models examples/models

## bench-scaler: every scaling policy in the simulator on the Twitter windows (docs/decisions.md);
## TRACES=dir of the traces (a synthetic MMPP stands in when absent), DAY=1 adds the whole day
bench-scaler: $(DEV_STAMP)
	$(PY) bench/scaler.py $(if $(TRACES),--traces $(TRACES)) $(if $(DAY),--day)

## bench-local: local mode's four policies on Twitter window a, measured here (needs root;
## TRACES=dir of the traces, a synthetic stand-in when absent; docs/local.md)
bench-local: $(MODELS_STAMP)
	$(PY) bench/local.py $(if $(TRACES),--traces $(TRACES))

## bench-variants: quantized variants of Magika and the example CNN beside the originals: size,
## agreement, latency under real CPU quotas (needs root; docs/bench.md#variants)
bench-variants: $(MODELS_STAMP)
	$(PY) bench/variants.py --models examples/models

## bench-split: the example CNN cut into 2 and 4 parts by `sluice split`, served whole, fused and
## isolated: per-part latency, bytes per cut, end-to-end latency and throughput (docs/split.md)
bench-split: $(MODELS_STAMP)
	$(PY) bench/split.py --models examples/models

## cluster-up / cluster-down: the real control plane the operator tests use, by hand
cluster-build: $(DEV_STAMP)
	$(PY) -m tests.controlplane build

cluster-up: $(DEV_STAMP)
	$(PY) -m tests.controlplane up

cluster-down: $(DEV_STAMP)
	$(PY) -m tests.controlplane down

## image-tools / images: both images without Docker (needs root; docs/images.md): podman,
## runc and debootstrap from Debian's packages, a debootstrapped Debian Python 3.11 base
## image, then runtime/Dockerfile and operator/Dockerfile built on it; each step only when
## out of date, everything cached in $SLUICE_CACHE_DIR/images (~/.cache/sluice/images)
.PHONY: image-tools images images-clean
image-tools: $(DEV_STAMP)
	$(PY) -m tests.images tools

images: $(DEV_STAMP)
	$(PY) -m tests.images build

images-clean: $(DEV_STAMP)
	$(PY) -m tests.images clean

## kind-up / kind-down: the whole product on a local kind cluster (needs Docker; docs/kind.md)
kind-up:
	hack/kind-up.sh

kind-down:
	hack/kind-down.sh

clean:
	rm -rf $(VENV) examples/models .pytest_cache .ruff_cache bench/.venv-mlserver bench/results
