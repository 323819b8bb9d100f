# Convenience targets; each mirrors a command in the README.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/bin/anomed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: demo test test-slow lint docs
demo: $(VENV)/bin/anomed
	$(VENV)/bin/anomed demo

test: $(VENV)/bin/anomed
	$(VENV)/bin/pytest -q

test-slow: $(VENV)/bin/anomed
	$(VENV)/bin/pytest -q -m slow

lint: $(VENV)/bin/anomed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

docs: $(VENV)/bin/anomed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
