# `make demo` and `make test` do all set-up on a fresh machine: a .venv with pinned dependencies.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
DATA    ?= data
# training episodes whose true actions the demo's LAM may use (the few-label mode); 0 = unsupervised
LABELS  ?= 1
STAMP   := .venv/.installed

.PHONY: demo test lint install clean bench bench-memory gpu-bundle

$(STAMP): pyproject.toml requirements.txt
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements.txt torch==2.13.0
	$(PIP) install -q -c requirements.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m genie.demo --data_dir $(DATA) --labelled_episodes $(LABELS)

# MFU of every tiny stage against this machine's measured matmul peak (~3 min on 2 cores)
bench: $(STAMP)
	$(PY) benchmarks/mfu.py --data_dir $(DATA) --out benchmarks/results/mfu-$$(hostname)-$$(date +%Y%m%d).json

# Memory of each tiny stage at step 200 vs 2,000 of a real run (~35 min on 2 cores; `--steps` for less)
bench-memory: $(STAMP)
	$(PY) benchmarks/memory_flat.py --data_dir $(DATA) --out benchmarks/results/memory-$$(hostname)-$$(date +%Y%m%d).json

# What benchmarks/gpu.sh needs on the GPU machine, which has Python 3.12 and torch but no network: the
# wheels of the project's dependencies it lacks (not PyAV, 36 MB, for videos only; not the play server's)
# and a compressed Pong subset (~1 MiB). Carry .gpu_bundle with the run (benchmarks/README.md).
# experiments/gpu_long_play.sh evaluates with `genie eval`, which writes videos: `make gpu-bundle GPU_EXTRA=av==18.1.0`.
GPU_EXTRA ?=
GPU_WHEELS := gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1 $(GPU_EXTRA)
gpu-bundle: $(STAMP)
	rm -rf .gpu_bundle/wheels
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
		--platform any -d .gpu_bundle/wheels $(GPU_WHEELS)
	$(PY) benchmarks/gpu_bench.py bundle --data_dir $(DATA) --out .gpu_bundle/pong.npz
	du -sh .gpu_bundle

lint: $(STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf .venv .pytest_cache .ruff_cache
