# twittercore: `make demo` and `make test` work from a fresh clone on a machine
# with Python 3.11, gcc and the package index.  Everything lands in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SO     := src/twittercore/_merge.stamp
PYTEST := $(BIN)/python -m pytest

.PHONY: all install build lint test test-fast test-pure test-long test-redis-faults demo bench bench-quick bench-redis bench-nodes bench-scale bench-group-commit redis lab lab-smoke lab-smoke-cluster lab-smoke-nodes lab-partition clean

all: build

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# Compile the Cython kernel in place (the editable install imports from src/).
$(SO): $(STAMP) $(wildcard src/twittercore/*.pyx src/twittercore/*.pxd src/twittercore/backends/lmdb/*.pyx) setup.py
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

build: $(SO)

# redis-server for the Redis baseline and backend, and haproxy for the tests and
# lab rows that put serve processes behind a real load balancer: installed from
# the system package manager where we may (root with apt); otherwise those
# parts skip.
SYSTEM_TOOLS = redis-server haproxy
redis:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "redis: could not install$$missing; the parts that need them will skip"; \
	  else echo "redis: not found:$$missing; the parts that need them will skip"; fi; fi

# Lint, format, types (strict for src/) and the compiled modules' stubs.
lint: build
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/python -m mypy
	$(BIN)/python -m mypy.stubtest twittercore._merge twittercore._codec twittercore.backends.lmdb._txn --allowlist stubtest-allowlist.txt

test: build redis
	$(MAKE) --no-print-directory lint
	$(PYTEST) -q -p no:cacheprovider
	$(BIN)/python -m twittercore demo --users 500 --posts 5000 --reads 2000 --out $(VENV)/demo-ci
	$(MAKE) --no-print-directory bench-quick

# The long runs: 30 s of the multi-process test per strategy, a thorough
# state machine, and whatever is marked slow.
test-long: build redis
	TWITTERCORE_CONCURRENCY_SECONDS=30 $(PYTEST) -q -p no:cacheprovider tests/test_concurrency.py
	HYPOTHESIS_PROFILE=thorough $(PYTEST) -q -p no:cacheprovider tests/test_state_machine.py
	$(PYTEST) -q -p no:cacheprovider -m slow tests

# Faults on a real Redis Cluster (docs/reliability.md): kill -9 a publisher, freeze a master until
# its replica takes over, move slots under load.  Bounded: 10 kills and 7 fixed-length trials, ~4 min.
test-redis-faults: build redis
	$(PYTEST) -q -p no:cacheprovider -m slow tests/test_redis_faults.py

demo: build
	$(BIN)/python -m twittercore demo

bench: build redis
	$(BIN)/python benchmarks/compare.py

bench-quick: build redis
	$(BIN)/python benchmarks/compare.py --quick --out $(VENV)/bench-quick

# The Redis backend's price of order: commands, round trips and server CPU per
# operation, the ordering step alone per master (about a minute; skipped without redis-server).
bench-redis: build redis
	$(BIN)/python benchmarks/bench_redis.py --out reports/bench-redis

# Home-read cost against store size at fixed k: 10k, 100k, 1M users (1M: 100M follows, ~35 min).
bench-scale: build
	$(BIN)/python benchmarks/bench_scale.py --out reports/bench-scale

# Durable publishes with group commit on and off (threads and 2 processes; ~1 min).
bench-group-commit: build
	$(BIN)/python benchmarks/bench_group_commit.py --out reports/group-commit

# Decentralised nodes over the Mastodon API (docs/nodes.md): publish-to-visible on a follower's node,
# deliveries/s and bytes per publish for 3 and 5 nodes (about 40 s; each run bounded by its flags).
bench-nodes: build
	timeout -s INT 300 $(BIN)/python benchmarks/bench_nodes_mastodon.py

# The failure-point lab (docs/lab.md): every deployment in lab/deployments under the same load and
# faults, side by side in lab-report/comparison.md; then the two ladders (the kernel's language, the
# fan-out strategy).  Deployments whose backend is not built yet are skipped rows.  Bounded: each run's
# ramp, load and faults are fixed in lab/scenarios/*.toml, and `timeout` ends the comparison (tearing
# every deployment down) after 15 minutes, each ladder after 5-7.
lab: build redis
	timeout -s INT 900 $(BIN)/python -m twittercore lab run matrix --out lab-report
	timeout -s INT 300 $(BIN)/python -m twittercore lab run ladder --out lab-report/ladder
	timeout -s INT 400 $(BIN)/python -m twittercore lab run fanout-ladder --out lab-report/fanout-ladder
	timeout -s INT 600 $(BIN)/python -m twittercore lab run partition --out lab-report/partition

# Real partitions (docs/lab.md, "Network namespaces"): the deployments whose processes live in network
# namespaces; needs root, and is a row of skips without it.
lab-partition: build
	timeout -s INT 600 $(BIN)/python -m twittercore lab run partition --out lab-report/partition

# Seconds, not minutes: one worker of the embedded deployment killed under load.
lab-smoke: build
	timeout -s INT 120 $(BIN)/python -m twittercore lab run smoke --out lab-report/smoke

# smoke on lmdb-1, lmdb-haproxy and redis-cluster (needs redis-server and haproxy): about a minute.
lab-smoke-cluster: build redis
	timeout -s INT 300 $(BIN)/python -m twittercore lab run smoke-cluster --out lab-report/smoke-cluster

# smoke on nodes-3 (3 decentralised nodes, node3 killed under load): about 10 s.
lab-smoke-nodes: build
	timeout -s INT 120 $(BIN)/python -m twittercore lab run smoke-nodes --out lab-report/smoke-nodes

clean:
	rm -rf $(VENV) build src/*.egg-info src/twittercore/*.so src/twittercore/_merge.c $(SO)
