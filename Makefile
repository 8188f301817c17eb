# touchstream: `make demo` shows the pipeline, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
SERVICES := deploy/services.sh

.PHONY: test-faults help services services-stop cluster cluster-stop cluster-check test-tools fuzz-tools build test test-rust fuzz lint fmt fmt-check demo bench clean-services

# Seconds each fuzz target runs in `make test` (and `make fuzz`).
FUZZ_SECONDS ?= 30

help:
	@echo "make demo           start Kafka + ClickHouse, run the pipeline on generated traffic, print the source-of-sale report"
	@echo "make test           services + cluster + fmt check + clippy + every test (what CI runs)"
	@echo "make services       install what is missing and start Kafka and ClickHouse (idempotent)"
	@echo "make services-stop  stop them"
	@echo "make cluster        the local cluster: 3 Kafka nodes, ZooKeeper, 2x2 ClickHouse servers (idempotent)"
	@echo "make cluster-stop   stop it; make cluster-check: kill a broker, stop a replica, check they recover"
	@echo "make test-faults    the fault test on the local cluster alone (it is part of make test too)"
	@echo "make fuzz           run every cargo-fuzz target for FUZZ_SECONDS (30) each on its corpus in tests/fuzz/corpus"
	@echo "make build | fmt | lint | bench"

services:
	@$(SERVICES) start kafka clickhouse

services-stop:
	@$(SERVICES) stop

cluster:
	@$(SERVICES) start cluster

cluster-stop:
	@$(SERVICES) stop cluster

cluster-check:
	@$(SERVICES) cluster-check

test-tools:
	@$(SERVICES) install-test-tools

# cargo-fuzz from crates.io when missing; it needs the nightly toolchain (rustup toolchain
# install nightly), which deploy/fuzz.sh checks for.
fuzz-tools:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

fuzz: fuzz-tools
	@deploy/fuzz.sh $(FUZZ_SECONDS)

# The fuzz crate is built by `make fuzz` only (nightly, sanitizers).
build:
	$(CARGO) build --workspace --bins --exclude touchstream-fuzz

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The end-to-end tests start the real binaries, so they are built first; tests/tests/cluster.rs
# needs the local cluster (it starts it too when run alone); the fuzz targets run last,
# FUZZ_SECONDS each.
test: services cluster test-tools fuzz-tools fmt-check lint
	$(CARGO) build --workspace --bins --exclude touchstream-fuzz
	$(CARGO) test --workspace --no-fail-fast --exclude touchstream-fuzz
	@deploy/fuzz.sh $(FUZZ_SECONDS)

# The fault test on the local cluster alone (about 4 minutes); `make test` runs it with the rest.
test-faults: services cluster
	$(CARGO) build --workspace --bins --exclude touchstream-fuzz
	$(CARGO) test -p touchstream-tests --test faults -- --nocapture

demo: services build
	@deploy/demo.sh

bench: services
	@deploy/bench.sh
