# Developer and CI entry points for the User Service. `make help` lists the targets.
#
# The PostgreSQL, Redis and RabbitMQ that `run` and `test` need are plain local
# processes managed by scripts/devstack.sh (profile "run" or "test", each with its own
# ports and .devstack/<profile>/ folder), so both targets can run at the same time.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO       ?= go
DEVSTACK := scripts/devstack.sh
SERVICE  := bin/userservice

# go test knobs: `make test PKGS=./persistence/... TESTFLAGS='-run Outbox -v'`
PKGS      ?= ./...
TESTFLAGS ?=
FUZZTIME  ?= 20s

# The spec's development secret; override with `JWT_SECRET=... make run`.
JWT_SECRET ?= your-super-secret-jwt-key-change-in-production
export JWT_SECRET

# `make token` claims. EMAIL is taken from the command line only: many shells export an
# unrelated EMAIL.
ROLE    ?=
SUB     ?=
AUTH_ID ?=
TTL     ?=
TOKEN_EMAIL := $(if $(filter command line,$(origin EMAIL)),$(EMAIL))

# Go sources for gofmt, without the state folders (PostgreSQL's data is not ours to read).
GOFILES = $$(find . \( -path ./.devstack -o -path ./.git -o -path ./bin -o -path ./vendor \) -prune -o -name '*.go' -print)

.PHONY: help run cluster test stop status token fmt fmt-check vet lint build fuzz clean clean-data dlq-replay

help: ## list the targets
	@echo 'Usage: make <target> [VAR=value ...]'
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'
	@echo
	@echo '  make token ROLE=admin [SUB=<uuid>] [AUTH_ID=<uuid>] [EMAIL=...] [TTL=24h]'
	@echo '  make test [PKGS=./...] [TESTFLAGS=...]     make fuzz [FUZZTIME=20s]'

run: ## start PostgreSQL/Redis/RabbitMQ (profile run) and serve :3002; Ctrl-C stops all
	$(GO) build -o $(SERVICE) ./cmd/userservice
	$(DEVSTACK) serve run

# Tests named TestOutage* stop and restart a shared test server (Redis, RabbitMQ), so
# they run in a pass of their own, one package at a time, before everything else.
OUTAGE_TESTS := ^TestOutage
# Cluster tests (real etcd, several nodes) run without -race in a pass of their own:
# protoactor-go's cluster packages race on their own state (docs/cluster.md). The
# CLUSTER_PROVIDER=k8s ones (TestClusterK8s*) run a real kube-apiserver, built once by
# scripts/kube-apiserver.sh into .devstack/kube-apiserver/ (several minutes the first time).
CLUSTER_TESTS := ^(TestCluster|TestE2ECluster)

# TEST_PROFILE=test3 (test2..test5) runs the tests on another stack, so several
# checkouts can test at once on one machine.
TEST_PROFILE ?= test
test: ## start the test stack (other ports) and run go test -race ./...
	$(DEVSTACK) up $(TEST_PROFILE)
	eval "$$($(DEVSTACK) env $(TEST_PROFILE))"; \
	$(GO) test -race -count=1 -timeout 15m -p 1 -run '$(OUTAGE_TESTS)' $(TESTFLAGS) $(PKGS) && \
	$(GO) test -race -count=1 -timeout 25m -skip '$(OUTAGE_TESTS)' $(TESTFLAGS) $(PKGS) && \
	KUBE_APISERVER="$$(scripts/kube-apiserver.sh)" && export KUBE_APISERVER && \
	$(GO) test -count=1 -timeout 15m -p 1 -run '$(CLUSTER_TESTS)' $(TESTFLAGS) ./actors/ ./cmd/userservice/

stop: ## stop both stacks (run and test) and the cluster's nodes and etcd
	rc=0; scripts/cluster.sh down || rc=1; $(DEVSTACK) down run || rc=1; $(DEVSTACK) down test || rc=1; exit $$rc

cluster: ## etcd + three cluster-mode nodes on 127.0.0.1 (HTTP :3002-:3004) over the run stack; make stop stops them
	$(GO) build -o $(SERVICE) ./cmd/userservice
	scripts/cluster.sh up

status: ## show which servers of both stacks are up
	-@$(DEVSTACK) status run
	-@$(DEVSTACK) status test

dlq-replay: ## move dead-lettered events back to RABBITMQ_QUEUE after a fix (run stack): make dlq-replay [MAX=N]
	eval "$$($(DEVSTACK) env run)"; $(GO) run ./cmd/userservice dlq-replay $(if $(MAX),-max $(MAX))

token: ## print a signed dev JWT: make token ROLE=admin [SUB= AUTH_ID= EMAIL= TTL=]
	@$(GO) run ./cmd/devtoken -role '$(ROLE)' \
		$(if $(SUB),-sub '$(SUB)') $(if $(AUTH_ID),-auth-id '$(AUTH_ID)') \
		$(if $(TOKEN_EMAIL),-email '$(TOKEN_EMAIL)') $(if $(TTL),-ttl '$(TTL)')

fmt: ## gofmt -w every Go file
	gofmt -w $(GOFILES)

fmt-check: ## fail if a Go file is not gofmt-formatted
	@files=$$(gofmt -l $(GOFILES)); \
	if [ -n "$$files" ]; then echo "not gofmt-formatted (run make fmt):"; echo "$$files"; exit 1; fi

vet: ## go vet ./...
	$(GO) vet ./...

lint: fmt-check vet ## fmt-check + vet

build: ## go build ./... and bin/userservice
	$(GO) build ./...
	$(GO) build -o $(SERVICE) ./cmd/userservice

# Fuzz targets are found with `go test -list`, whose output names each package's tests
# before an "ok <pkg> <time>" line; every target then runs for FUZZTIME. Both run the
# packages' TestMain, which may need the test stack, hence `up test`.
fuzz: ## run every Fuzz target for FUZZTIME (default 20s) each
	@$(DEVSTACK) up test
	@eval "$$($(DEVSTACK) env test)"; \
	targets=$$($(GO) test -list '^Fuzz' $(PKGS) | awk '/^Fuzz/ {f[n++]=$$1; next} /^ok / {for (i = 0; i < n; i++) print $$2, f[i]; n = 0}'); \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	while read -r pkg fn; do \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null; \
	done <<< "$$targets"

clean: ## remove bin/ and test/coverage artifacts (keeps .devstack; see clean-data)
	rm -rf bin
	rm -f coverage.out coverage.html cover.out cpu.pprof mem.pprof *.test

clean-data: ## stop both stacks and delete their data (.devstack)
	$(DEVSTACK) destroy run
	$(DEVSTACK) destroy test
	rm -rf .devstack

# ---------------------------------------------------------------------------------------
# Evidence (issue 7): seeding, k6 load tests, the whole-stack benchmark and the fault
# tests. docs/benchmarks.md explains each.

# `make seed` fills the database that `make run` serves (profile run, its default
# schema); SEED_PROFILE=test SEED_SCHEMA=bench seeds the test stack instead.
USERS        ?= 100000
SEED_PROFILE ?= run
SEED_SCHEMA  ?=
TOKENS       ?= $(CURDIR)/loadtest/.data/tokens.json
# `make loadtest` knobs: SCENARIO is a loadtest/*.js name or "all"; MODE closed|rate.
SCENARIO     ?= mix
MODE         ?= closed
BASE_URL     ?= http://127.0.0.1:3002
DURATION     ?= 20s
VUS          ?= 64
RATE         ?= 1000
K6           ?= $(shell command -v k6 2>/dev/null)
LOADTESTS    := get_me get_preferences put_me put_preference post_enrollment put_progress admin_search mix

.PHONY: seed bench bench-compare bench-pgwrites loadtest faulttest

seed: ## seed USERS (100000) users with tokens in loadtest/.data/ (for make run; see docs/benchmarks.md)
	$(DEVSTACK) up $(SEED_PROFILE)
	eval "$$($(DEVSTACK) env $(SEED_PROFILE) | sed 's/^export TEST_/export /')"; \
	$(GO) run ./cmd/seed -database-url "$$DATABASE_URL" $(if $(SEED_SCHEMA),-schema $(SEED_SCHEMA)) \
		-users $(USERS) -out $(TOKENS)

loadtest: ## k6 against a running service: make loadtest SCENARIO=get_me|…|mix|all MODE=closed|rate
	@k6='$(K6)'; \
	if [ -z "$$k6" ]; then \
		k6="$$($(GO) env GOPATH)/bin/k6"; \
		[ -x "$$k6" ] || { echo 'installing k6 (about 3 minutes)'; $(GO) install go.k6.io/k6@v1.8.1; }; \
	fi; \
	for s in $(if $(filter all,$(SCENARIO)),$(LOADTESTS),$(SCENARIO)); do \
		echo "== $$s ($(MODE))"; \
		MODE=$(MODE) BASE_URL=$(BASE_URL) TOKENS=$(TOKENS) DURATION=$(DURATION) VUS=$(VUS) RATE=$(RATE) \
			"$$k6" run loadtest/$$s.js; \
	done

bench: ## whole-stack benchmark against a bare fasthttp baseline: bench/results/<date>-<host>.md
	bench/run.sh

# BASE (required) and HEAD (default HEAD) are commits; see bench/compare.sh for knobs.
BASE ?=
HEAD ?= HEAD
bench-compare: ## two commits alternately with wrk, ratios in bench/results/: make bench-compare BASE=<commit>
	BASE='$(BASE)' HEAD='$(HEAD)' bench/compare.sh

bench-pgwrites: ## PostgreSQL per write (pg_stat_statements, HOT updates, WAL) under wrk: bench/results/<date>-pgwrites.md
	bench/pgwrites.sh

# FAULT_PROFILE=test2 runs them on a second stack, beside `make test`.
FAULT_PROFILE ?= test
faulttest: ## kill -9, outages, SIGTERM, fuzzing (stops the servers of FAULT_PROFILE, default test)
	$(DEVSTACK) up $(FAULT_PROFILE)
	eval "$$($(DEVSTACK) env $(FAULT_PROFILE))"; \
	$(GO) test -tags faulttest -count=1 -v -timeout 20m $(TESTFLAGS) ./faulttest/
