# Two commands from a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench wheel clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/python examples/quickstart.py --plot out/quickstart.png
	$(BIN)/python cli.py validate --checkpoint gp-rbf --tasks 64 --plots out --json out/validate.json --no-progress

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/inference.py

# dist/pfnkit-VERSION-py3-none-any.whl: pfnkit, priors, the checkpoints and the `pfnkit` command
wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --wheel-dir dist .
	rm -rf build

clean:
	rm -rf out runs .pytest_cache build dist
