# Two commands do all set-up: `make demo` (the main job on the embedded default) and `make test`.
# Each creates the virtual environment on first use: a CPU torch where no GPU is present, CUDA where one is.

VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")
PYTEST_ARGS ?=

.PHONY: demo test lint bench tui clean-venv

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/difflens triage --base gemma-3-270m --ft demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/mkdocs build --strict --quiet

test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/difflens bench

tui: $(VENV)/.installed
	$(VENV)/bin/difflens demo

clean-venv:
	rm -rf $(VENV)
