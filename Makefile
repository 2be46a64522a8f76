# s3mesh: the one task runner. `make run` starts the local stack; `make test` runs every test.
# Installs are idempotent and cached: a second run only rebuilds what changed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
PY       := $(VENV)/bin/python
WASM     := target/wasm32-wasip1/wasm-release/s3mesh_wasm_filter.wasm
AUTHZ    := target/debug/s3mesh-ext-authz
NATIVE   := target/debug/libs3mesh_native.so
STORE    := target/debug/fs-store
MINIO_GO := .tools/bin/minio-go-client
GO_SDK_V2 := .tools/bin/go-sdk-v2-client
JS_CLIENT := tests/js-sdk-client/node_modules/.package-lock.json
RUST_SRC := $(shell find Cargo.toml Cargo.lock clippy.toml sigv4 s3-request access filter wasm-filter native-filter ext-authz -type f \( -name '*.rs' -o -name '*.toml' -o -name Cargo.lock \) 2>/dev/null)

.PHONY: help setup build run test test-rust test-wasm test-integration test-envoy-matrix test-storm .client-debs lint fmt clean crd deploy-render .wasm-target bench-lb bench-instructions .valgrind bench-fleet bench-expect bench-authz bench-chunked bench-analytics soak fuzz bench-overhead

help:
	@echo "make run    - start the local stack (S3 store on 3 endpoints, ext-authz, Envoy) on \$${S3MESH_LISTEN:-127.0.0.1:8480}"
	@echo "make test   - lint, unit tests (host and wasm), integration tests through real Envoy"
	@echo "make build  - build the wasm filter, the native filter (Envoy dynamic module) and ext-authz"
	@echo "make lint   - cargo fmt --check and clippy (host and wasm32-wasip1)"
	@echo "make test-envoy-matrix - the end-to-end set on Envoy 1.36 to 1.40 (Istio 1.28 to 1.31), both shells (8 min)"
	@echo "make test-storm - 200 concurrent 64 MiB uploads through one Envoy, both shells: intact, memory bounded (5 min)"
	@echo "make crd    - regenerate deploy/crds/ from the S3AccessPolicy Rust type"
	@echo "make deploy-render - regenerate deploy/manifests/ from deploy/values.example.yaml"
	@echo "make bench-lb - s3mesh's endpoint selection (wasm and native) vs Envoy's balancers (about 85 min; writes BENCHMARKS.md)"
	@echo "make bench-fleet - 8 sidecars sharing 4 endpoints: s3mesh vs DNS-pinned clients and Envoy's balancers (about 45 min)"
	@echo "make bench-expect - Expect: 100-continue uploads, Envoy answering 100 vs proxying it (2 min)"
	@echo "make bench-authz - ext-authz checks/s on one core and latency at fixed rates (4 min)"
	@echo "make bench-overhead - s3mesh vs plain Envoy vs aws_request_signing, each part alone, audit log and tracing, the native goal in paired rounds (about 38 min)"
	@echo "make fuzz   - every cargo-fuzz target for FUZZ_SECONDS (default 60) each; nightly toolchain"
	@echo "make soak   - the full stack for 10 min at a fixed rate and mix: errors, memory, descriptors"
	@echo "make bench-instructions - instructions, simulated cache misses and branch mispredictions per request of the chains with CPU goals, under callgrind (about 10 min)"
	@echo "make bench-chunked - chunk-signed uploads re-signed vs UNSIGNED-PAYLOAD, and memory over a 4 GiB upload"
	@echo "make bench-analytics - DuckDB and Polars on Parquet through the read cache: on, off and direct"

## Set-up ----------------------------------------------------------------------------------------

setup: $(VENV)/.installed .wasm-target

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

.wasm-target:
	@# (phony: checks the installed targets every time, which is instant)
	rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

## Build -----------------------------------------------------------------------------------------

build: $(WASM) $(AUTHZ) $(NATIVE)

$(WASM): $(RUST_SRC) | .wasm-target
	cargo build --profile wasm-release --target wasm32-wasip1 -p s3mesh-wasm-filter

$(AUTHZ): $(RUST_SRC)
	cargo build -p s3mesh-ext-authz

# The native filter (Envoy dynamic module). A debug build: its panic test hook exists only there,
# and the stack's Envoy finds it through ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
$(NATIVE): $(RUST_SRC)
	cargo build -p s3mesh-native-filter

# The policy CRD is generated from its Rust type; a unit test fails while the copy is stale.
crd: $(AUTHZ)
	$(AUTHZ) crd > deploy/crds/s3accesspolicy.yaml

# The manifests are rendered from envoy/s3mesh.yaml and deploy/values.example.yaml; a test fails
# while the committed copy is stale.
deploy-render: setup
	$(PY) deploy/render.py

## Run -------------------------------------------------------------------------------------------

run: setup build
	$(PY) -m devstack run

## Test ------------------------------------------------------------------------------------------

test: setup build lint test-rust test-wasm test-integration

test-rust:
	cargo test --workspace

# The filter's logic tests again, compiled to wasm32-wasip1 and run under Node's built-in WASI.
test-wasm: .wasm-target
	@command -v node >/dev/null || { echo "node (>= 20) is needed to run the wasm tests"; exit 1; }
	CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $(CURDIR)/tools/wasi-runner.mjs" \
	  cargo test --target wasm32-wasip1 -p s3mesh-sigv4 -p s3mesh-s3-request -p s3mesh-access -p s3mesh-filter

test-integration: setup build $(STORE) $(MINIO_GO) $(GO_SDK_V2) $(JS_CLIENT) .client-debs
	cargo build -p s3mesh-aws-sdk-client
	$(PY) -m pytest tests -q
	$(PY) tests/envoy_matrix.py --smoke

# The representative end-to-end set on every Envoy release a supported Istio ships (each
# installed once into .tools/envoy/); writes the README's table and tests/results/.
test-envoy-matrix: setup build $(STORE)
	$(PY) tests/envoy_matrix.py

# 200 concurrent 64 MiB uploads through one Envoy, each shell: every object read back and
# compared, Envoy's memory against its bound (`make test` runs the same at 32 × 16 MiB); writes
# tests/results/upload-storm-*.json. Needs 13 GiB of free disk.
test-storm: setup build $(STORE)
	S3MESH_STORM_UPLOADS=200 S3MESH_STORM_MIB=64 $(PY) -m pytest tests/test_upload_storm.py -q -s

# minio-go, a real client that chunk-signs uploads, built with Debian's Go from Debian's
# minio-go sources (GOPATH mode: no module download).
GO_DEBS := golang-go golang-github-minio-minio-go-v7-dev
$(MINIO_GO): tests/minio-go-client/main.go
	dpkg -s $(GO_DEBS) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(GO_DEBS))
	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/.tools/go-cache go build -o $@ ./tests/minio-go-client

# The AWS SDK for Go v2 the same way, from Debian's sources of it.
GO_SDK_DEBS := golang-go golang-github-aws-aws-sdk-go-v2-dev
$(GO_SDK_V2): tests/go-sdk-v2-client/main.go
	dpkg -s $(GO_SDK_DEBS) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(GO_SDK_DEBS))
	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/.tools/go-cache go build -o $@ ./tests/go-sdk-v2-client

# rclone and s3cmd, S3 clients many users run, from Debian (phony: dpkg answers at once when
# they are installed).
CLIENT_DEBS := rclone s3cmd
.client-debs:
	@dpkg -s $(CLIENT_DEBS) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(CLIENT_DEBS))

# The AWS SDK for JavaScript v3 at the versions its lockfile pins, from the npm registry, run
# with the machine's Node.js.
$(JS_CLIENT): tests/js-sdk-client/package.json tests/js-sdk-client/package-lock.json
	cd tests/js-sdk-client && npm ci --no-audit --no-fund --silent

# A second, independent SigV4-verifying store for the integration tests: s3s-fs, one process
# serving every endpoint (tests/fs-store).
$(STORE): $(wildcard tests/fs-store/src/*.rs) tests/fs-store/Cargo.toml $(RUST_SRC)
	cargo build -p s3mesh-fs-store

## Benchmarks (not part of `make test`) ------------------------------------------------------

$(VENV)/.installed-bench: $(VENV)/.installed requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench-lb: setup $(VENV)/.installed-bench $(WASM)
	cargo build --release -p s3mesh-bench -p s3mesh-native-filter
	$(PY) bench/lb.py $(BENCH_ARGS)

# A fleet of 8 sidecars on 4 endpoints: s3mesh against DNS-pinned clients and Envoy's balancers.
bench-fleet: setup $(VENV)/.installed-bench $(WASM)
	cargo build --release -p s3mesh-bench -p s3mesh-native-filter
	$(PY) bench/fleet.py $(BENCH_ARGS)

bench-expect: setup build
	$(PY) bench/expect.py

CARGO_FUZZ := .tools/bin/cargo-fuzz
$(CARGO_FUZZ):
	cargo install cargo-fuzz@0.13.2 --locked --root .tools

fuzz: setup $(CARGO_FUZZ)
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	$(PY) fuzz/run.py

soak: setup build $(VENV)/.installed-bench
	$(PY) bench/soak.py

bench-analytics: setup build $(VENV)/.installed-bench
	cargo build --release -p s3mesh-fs-store -p s3mesh-native-filter
	S3MESH_FS_STORE=target/release/fs-store $(PY) bench/analytics.py

bench-chunked: setup build
	cargo build --release -p s3mesh-bench -p s3mesh-native-filter
	$(PY) bench/chunked.py

bench-overhead: setup build $(VENV)/.installed-bench
	cargo build --release -p s3mesh-ext-authz -p s3mesh-bench -p s3mesh-native-filter
	$(PY) bench/overhead.py

# valgrind from Debian (phony: dpkg answers at once when it is installed).
.valgrind:
	@dpkg -s valgrind >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends valgrind)

bench-instructions: setup build $(VENV)/.installed-bench .valgrind
	cargo build --release -p s3mesh-ext-authz -p s3mesh-bench -p s3mesh-native-filter
	$(PY) bench/instructions.py

bench-authz: setup $(VENV)/.installed-bench
	cargo build --release -p s3mesh-ext-authz -p s3mesh-bench
	$(PY) bench/authz.py

lint: .wasm-target
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p s3mesh-filter -p s3mesh-wasm-filter -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV) .run
