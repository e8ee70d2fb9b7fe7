# pg_recsys — the README's two commands: `make demo` and `make test`. Both install what is
# missing (apt packages, cargo-pgrx, pgrx init), build, and use a scratch cluster.

SHELL := /bin/bash
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGPORT ?= 28915
SCRATCH ?= $(CURDIR)/target/scratch-pg
export PGRX_SCRATCH := $(SCRATCH)
export PGPORT
export PGHOST := $(SCRATCH)
export PGUSER := postgres
export CARGO_PROFILE_DEV_DEBUG ?= false
PSQL := psql -X -v ON_ERROR_STOP=1 -q
PG_REGRESS = $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)/pgxs/src/test/regress/pg_regress
DATA ?=

.PHONY: demo test setup install cluster stop psql unit pgtest regress client stress bench bench-latency bench-scale bench-cancel bench-dense bench-frontier bench-memory bench-neural check-cuda clean-scratch

setup:
	@.ci/setup

# pgrx installs this version's script and the upgrade scripts (sql/pg_recsys--A--B.sql); the
# 0.1.0 install script is kept so that an old install can be created and upgraded (tests).
install: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	install -m 644 sql/pg_recsys--0.1.0.sql $(shell $(PG_CONFIG) --sharedir)/extension/

cluster: install
	@.ci/cluster start

stop:
	@.ci/cluster stop

# A psql session on the scratch cluster, in a database of its own for trying the quick start
# (created when missing; pg_recsys is not installed in it until you CREATE EXTENSION).
psql: cluster
	@psql -X -q -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'pg_recsys_quickstart'" | grep -q 1 \
	  || psql -X -q -d postgres -c "CREATE DATABASE pg_recsys_quickstart"
	@psql -d pg_recsys_quickstart

demo: cluster
	@tests/demo.sh "$(DATA)"

# The engine's tests alone, without PostgreSQL (quick while developing; `make test` runs them
# inside `cargo pgrx test`, which runs every test of the library).
unit: setup
	cargo test --no-default-features --lib

# #[pg_test]s run in pgrx's own throw-away cluster, as the postgres user.
pgtest: setup
	mkdir -p target/pgrx-test-data && chown postgres: target/pgrx-test-data
	cargo pgrx test pg15 --runas postgres --pgdata $(CURDIR)/target/pgrx-test-data

regress: cluster
	@tests/regress.sh "$(PG_REGRESS)"

client: cluster
	@for t in tests/client_*.sh; do echo "== $$t"; $$t || exit 1; done

test: pgtest regress client
	@echo "make test: all suites passed"

# The long version of the concurrency test: 5 minutes of 8 connections recommending while
# another retrains and deploys.
stress: cluster
	@DURATION=300 tests/client_concurrency.sh

# How long each long call takes to stop after a cancel or statement_timeout (benches/REPORT.md).
bench-cancel: cluster
	@benches/cancel.sh

# The side-by-side report against peers (benches/REPORT.md), then the engine kernels (criterion).
# Serving latency and throughput with pgbench (ML-100K models and a 20M-shaped ALS model).
bench-latency: cluster
	@benches/latency.sh

# Training at MovieLens-20M shape: read/fit/write seconds and peak RSS per algorithm (benches/REPORT.md).
bench-scale: cluster
	@benches/scale.sh

# EASE and PureSVD fit against numpy/LAPACK on three shapes (benches/REPORT.md, section dense).
bench-dense: cluster
	@benches/dense.sh

# rp3beta, slim and auto against numpy RP3beta and scikit-learn SLIM; diversity (benches/REPORT.md).
bench-frontier: cluster
	@benches/frontier.sh

# First-call seconds and private memory per backend for every algorithm (benches/REPORT.md).
bench-memory: cluster
	@benches/backend_memory.sh

# Epoch time of ncf, sequential and two_tower against the same architectures in PyTorch (CPU).
bench-neural: setup
	@benches/neural.sh

# Builds the extension and the neural example with --features cuda, no GPU needed: fetches the
# CUDA 13.0 toolkit wheels from PyPI into target/cuda-13.0 (README: CUDA). Not part of `make test`.
check-cuda: setup
	@.ci/check-cuda

bench: cluster
	@benches/report.sh
	@benches/dense.sh
	@benches/frontier.sh
	@benches/backend_memory.sh
	@benches/neural.sh
	cargo bench --no-default-features --bench engine
