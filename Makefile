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

.PHONY: demo test setup install cluster stop unit pgtest regress client bench bench-latency bench-scale clean-scratch

setup:
	@.ci/setup

install: setup
	cargo pgrx install --release --pg-config $(PG_CONFIG)

cluster: install
	@.ci/cluster start

stop:
	@.ci/cluster stop

demo: cluster
	@tests/demo.sh "$(DATA)"

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

test: unit pgtest regress client
	@echo "make test: all suites passed"

# The side-by-side report against peers (benches/REPORT.md), then the engine kernels (criterion).
# Serving latency and throughput with pgbench (ML-100K models and a 20M-shaped ALS model).
bench-latency: cluster
	@benches/latency.sh

# Training at MovieLens-20M shape: read/fit/write seconds and peak RSS per algorithm (benches/SCALE.md).
bench-scale: cluster
	@benches/scale.sh

bench: cluster
	@benches/report.sh
	cargo bench --no-default-features --bench engine
