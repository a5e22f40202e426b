# Everything runs from a project-local virtualenv, created on first use. The engine
# (engine/, Rust) is built into it by maturin, so a Rust toolchain is needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
ENGINE_SOURCES := engine/Cargo.toml engine/Cargo.lock $(wildcard engine/src/*.rs)

.PHONY: dev test lint engine-test bench differential install fuzz rust
.DEFAULT_GOAL := dev

rust:
	@command -v cargo >/dev/null || { echo "closure-monitor needs a Rust toolchain (cargo) to build its engine: install it from https://rustup.rs"; exit 2; }

$(BIN)/closure-monitor: pyproject.toml | rust
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,rocksdb,report]'
	touch $@

# The editable install does not rebuild the extension when the Rust code changes.
streams/.engine-built: $(BIN)/closure-monitor $(ENGINE_SOURCES) | rust
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/closure-monitor streams/.engine-built

dev: install
	$(BIN)/closure-monitor dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd engine && cargo clippy --all-targets --locked -- -D warnings

engine-test: rust
	cd engine && cargo test --locked --quiet

test: lint engine-test
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/live.py

# The engine against the Python engine (tests/oracle) on a 1,000,000-event log, byte
# for byte, under every test policy (about 10 minutes): before an engine change ships.
differential: install
	$(BIN)/python bench/differential.py

# Fuzzing the engine (engine/fuzz/README.md): each cargo-fuzz target for FUZZ_SECONDS,
# from its seeds (engine/fuzz/seeds/<target>, read only) and the inputs earlier runs
# kept (engine/fuzz/corpus/<target>), with its dictionary (engine/fuzz/dict); a crash
# is written to engine/fuzz/artifacts/<target>/ and fails the run.
# cargo-fuzz passes nightly flags, which the stable toolchain takes with
# RUSTC_BOOTSTRAP=1. Not part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decode state

fuzz: rust
	@cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
	cd engine/fuzz && for target in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$target && \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$target corpus/$$target seeds/$$target -- \
			-dict=dict/$$target.dict -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
