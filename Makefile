# Two commands on a fresh machine: `make search` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup search test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The pair that lies on this machine's disk first (pip takes it without a download).
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

search: $(STAMP)
	$(BIN)/drltune search --dataset synthetic --trials 16 --max-epochs 8 --concurrent 2

# Two workers (pytest-xdist): a serial run keeps 0.6-0.7 cores of 2 busy on average (measured);
# its unit tests are single-threaded. --dist loadfile: each file on one worker (its module fixtures, e.g.
# a two-node Ray cluster, are built once); files with end-to-end tests first; the PostgreSQL tests
# take turns through a lock (tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -n 2 --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check drltune tests
	$(BIN)/ruff format --check drltune
	$(BIN)/mypy drltune

bench: $(STAMP)
	$(BIN)/python benchmarks/dr_vs_baseline.py

clean:
	rm -rf $(VENV) studies/*.db studies/*/
