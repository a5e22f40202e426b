# Everything runs from a project-local virtualenv, created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test lint bench install
.DEFAULT_GOAL := dev

$(BIN)/closure-monitor: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,rocksdb]'
	touch $@

install: $(BIN)/closure-monitor

dev: install
	$(BIN)/closure-monitor dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/live.py
