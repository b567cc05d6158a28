# gnnmd: two commands on a fresh machine.
#   make run   creates .venv, installs gnnmd, runs the main job (ns/day of 64 chignolin replicas)
#   make test  creates .venv if needed, installs the test extras, runs ruff and pytest (notebooks included)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.gnnmd-installed
TEST_INSTALLED := $(VENV)/.gnnmd-test-installed

.PHONY: run test lint models clean

OPS := gnnmd/kernels/lib/libgnnmd_ops.so

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

# The compiled op library (C++ against the installed torch): part of every install.
$(OPS): $(INSTALLED) $(wildcard gnnmd/kernels/csrc/*.cpp) $(wildcard gnnmd/kernels/csrc/*.h) gnnmd/kernels/build.py
	$(BIN)/python -m gnnmd.kernels.build

$(TEST_INSTALLED): $(INSTALLED) $(OPS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps schnetpack==2.1.1
	touch $@

run: $(INSTALLED) $(OPS)
	$(BIN)/gnnmd bench --system chignolin --model chignolin --replicas 64 --steps 200 --warmup 20 \
		--backend reference,tabulated --json out/bench.json

test: $(TEST_INSTALLED) lint
	$(BIN)/python -m pytest

lint: $(TEST_INSTALLED)
	$(BIN)/ruff check gnnmd tests scripts examples benchmarks hatch_build.py

# Rebuild the shipped untrained models and their continuity reference values.
models: $(INSTALLED) $(OPS)
	$(BIN)/python scripts/build_shipped_models.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache gnnmd/kernels/lib
