# The two commands: `make run` (whole system up on local defaults, then the demo) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUF    := node_modules/.bin/buf

.PHONY: help install proto proto-check proto-descriptor lint test run run-ha stop clean bench-intake bench-feed bench-verify bench-bundle bench-statistics bench-retention bench-capacity clients

help:
	@echo "make run          start Postgres+Redis (private under .run/, unless DATABASE_URL/REDIS_URL are set), migrate,"
	@echo "                  start the services and the gateway, run the demo (log: .run/demo.log), print a short summary;"
	@echo "                  reuses the database an earlier make run left in .run/pg (and says so)"
	@echo "make run-ha       the production topology on this machine, fresh under .run/ha/ (needs Debian's haproxy):"
	@echo "                  Postgres primary + synchronous standby + async read replica behind rw/ro proxies,"
	@echo "                  Redis master + replica + 3 Sentinels behind HAProxy, two replicas of each service;"
	@echo "                  runs the demo through it and prints the topology (tools/topology.py)"
	@echo "make stop         stop everything make run and make run-ha started; .run/ (database, keys, demo files) stays"
	@echo "make clean        make stop, then delete .run/: the next make run starts with a fresh database and keys"
	@echo "make test         make lint, generated-code check, buf breaking against the released contract, the whole pytest suite"
	@echo "make clients      generate and build the reference clients (clients/typescript, clients/go; clients/README.md)"
	@echo "make proto        regenerate services/gen from protos/"
	@echo "make proto-check  fail if services/gen is stale"
	@echo "make proto-descriptor  descriptor set (with imports) for Envoy's gRPC-JSON transcoder: $(DESCRIPTOR)"
	@echo "make lint         buf lint, ruff check, ruff format --check, mypy over services/"
	@echo "make bench-intake RecordResults throughput of the real result_svc (batches of 100 and 500)"
	@echo "make bench-feed   certificates signed and delivered per second, commit-to-consumer lag"
	@echo "make bench-verify Verify with a different QR per call (and repeat scans) vs an echo server, and through the HTTP/JSON gateway (needs libnghttp2-dev)"
	@echo "make bench-bundle checkpoint bundle with 100,000 revoked: size, build time, delta, device verify/apply"
	@echo "make bench-statistics StatisticsService over gRPC at 10 million generated results (summary build, each RPC)"
	@echo "make bench-retention  the retention job's passes over 1 million generated persons (erase, redact, idle pass)"
	@echo "make bench-capacity   per-replica figures on the HA topology (intake, relay, feed, first-scan Verify) and the"
	@echo "                  CPU each component spends per operation: the inputs of docs/capacity.md (needs haproxy)"

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	touch $@

install: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

proto: install
	$(BIN)/python tools/proto.py generate

proto-check: install
	$(BIN)/python tools/proto.py check

# The FileDescriptorSet Envoy's gRPC-JSON transcoder loads (docs/operations.md, "Alternative: Envoy's
# gRPC-JSON transcoder"): protos/ and third_party/ with every import (google/api, google/protobuf) and
# the source info, which buf includes by default (protoc's --include_imports --include_source_info);
# --as-file-descriptor-set drops buf's own image metadata. tests/deploy runs the same command.
DESCRIPTOR ?= .run/covidtest.binpb
proto-descriptor: node_modules/.installed
	@mkdir -p $(dir $(DESCRIPTOR))
	$(BUF) build --as-file-descriptor-set -o $(DESCRIPTOR)

# The habits CI enforces: the contracts' lint, Python lint and format (ruff, 120 columns; see
# pyproject.toml), and types over services/ with the generated .pyi stubs (mypy).
lint: install node_modules/.installed
	$(BUF) lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The contract: generated code current, and nothing that breaks the last released protos (buf breaking
# against protos/released/, see protos/CHANGELOG.md).
test: lint
	$(BIN)/python tools/proto.py check
	$(BIN)/python tools/proto.py breaking
	$(BIN)/python -m pytest

run: install node_modules/.installed
	$(BIN)/python tools/localstack.py up

# The production topology (tools/topology.py): always fresh; `make stop` stops it too.
run-ha: install node_modules/.installed
	@command -v haproxy >/dev/null || { echo "make run-ha needs HAProxy: apt-get install -y haproxy"; exit 2; }
	$(BIN)/python tools/topology.py up

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/topology.py down; $(BIN)/python tools/localstack.py down; \
	else echo "nothing to stop"; fi

clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/topology.py down; $(BIN)/python tools/localstack.py clean; \
	else rm -rf .run; fi
	rm -rf clients/typescript/src/gen clients/go/gen clients/go/bin clients/go/.build

# The reference clients (clients/README.md): TypeScript generated by protoc-gen-es and type-checked (run
# with tsx), Go generated and built offline from Debian's Go packages (clients/go/build.sh). tests/clients
# does the same before running them against the real services.
clients: node_modules/.installed
	$(BUF) generate --template clients/typescript/buf.gen.yaml
	node_modules/.bin/tsc -p clients/typescript
	clients/go/build.sh

bench-intake: install
	$(BIN)/python bench/intake.py

bench-feed: install
	$(BIN)/python bench/feed.py

bench-bundle: install
	$(BIN)/python bench/bundle.py

bench-statistics: install
	$(BIN)/python bench/health_statistics.py

bench-retention: install
	$(BIN)/python bench/retention_job.py

bench-capacity: install
	@test -f /usr/include/nghttp2/nghttp2.h || { echo "grpcload needs libnghttp2-dev: apt-get install -y libnghttp2-dev"; exit 2; }
	@command -v haproxy >/dev/null || { echo "the HA topology needs haproxy: apt-get install -y haproxy"; exit 2; }
	$(BIN)/python bench/capacity.py

bench-verify: install
	@test -f /usr/include/nghttp2/nghttp2.h || { echo "grpcload needs libnghttp2-dev: apt-get install -y libnghttp2-dev"; exit 2; }
	$(BIN)/python bench/verify.py
