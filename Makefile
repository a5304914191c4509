# `make demo` and `make test` do all set-up on a fresh machine: a .venv with pinned dependencies.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
DATA    ?= data
# training episodes whose true actions the demo's LAM may use (the few-label mode); 0 = unsupervised
LABELS  ?= 1
STAMP   := .venv/.installed

.PHONY: demo test lint install clean bench

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

lint: $(STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf .venv .pytest_cache .ruff_cache
