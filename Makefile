# jetsaga — `make` alone lists the targets.

GO        ?= go
BIN       := $(CURDIR)/bin
NATSCLI   := github.com/nats-io/natscli/nats@v0.5.0
PKGS      := ./...
TESTFLAGS ?= -count=1 -timeout 30m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build every binary into ./bin (services, jetsaga CLI, nats-server)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

.PHONY: demo
demo: build ## the whole saga on a fresh throwaway stack: 240 orders, outcome table, invariant check, teardown
	$(BIN)/jetsaga demo

.PHONY: chaos
chaos: build ## the saga under fire: 2,000 orders, injected crashes/duplicates/redeliveries, kill -9s, a NATS and a Postgres crash, then the invariants (CHAOS_FLAGS="--seed 7")
	$(BIN)/jetsaga chaos $(CHAOS_FLAGS)

.PHONY: up
up: build ## start the stack in .run/ and leave it running (JETSAGA_NATS_PORT, JETSAGA_PG_PORT, JETSAGA_*_ADDR, JETSAGA_*_FLAGS)
	$(BIN)/jetsaga up

.PHONY: cluster-up
cluster-up: build ## three nats-servers (deploy/nats/cluster, identities, streams R3) and two instances of every service in .run/cluster (JETSAGA_CLUSTER_*_PORT)
	$(BIN)/jetsaga up --cluster

.PHONY: cluster-down
cluster-down: ## stop the cluster started by make cluster-up (data stays in .run/cluster)
	@if [ -x $(BIN)/jetsaga ]; then $(BIN)/jetsaga down --cluster; else echo "nothing to stop: bin/jetsaga is not built"; fi

.PHONY: cluster-smoke
cluster-smoke: build ## make cluster-up, 300 orders while a nats-server and an instance of each service are killed -9, jetsaga check, make cluster-down
	deploy/cluster-smoke.sh

.PHONY: screenshot
screenshot: build ## the README's pictures of the dashboard (docs/dashboard*.png): the demo's orders on a fresh stack in .run/screenshot, shot by headless Chromium (SCREENSHOT_FLAGS="--duration 30s")
	$(BIN)/jetsaga screenshot $(SCREENSHOT_FLAGS)

.PHONY: down
down: ## stop the stack started by make up (data stays in .run/)
	@if [ -x $(BIN)/jetsaga ]; then $(BIN)/jetsaga down; else echo "nothing to stop: bin/jetsaga is not built"; fi

.PHONY: test
test: ## run every test (embedded NATS, throwaway Postgres; installs nothing)
	$(GO) test $(TESTFLAGS) $(PKGS)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: tools
tools: ## install the nats CLI into ./bin
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install $(NATSCLI)

.PHONY: bench
bench: build ## the saga's throughput on a fresh stack in .run/bench: ceilings, max sustained rate, 500/s offered; one table (BENCH_FLAGS="--duration 5s"; ports as for make up)
	$(BIN)/jetsaga bench $(BENCH_FLAGS)

.PHONY: bench-history
bench-history: build ## throughput as history grows: fill a fresh stack in .run/history to 0, 100k, 1M sagas, measure each (HISTORY_FLAGS="--levels 0,10000 --duration 10s")
	$(BIN)/jetsaga bench-history $(HISTORY_FLAGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of the outbox relay, the consumer loop, the subject layout and a durable publish (figures in BENCHMARKS.md)
	$(GO) test ./internal/outbox -run '^$$' -bench Relay -benchtime 5000x
	$(GO) test ./internal/consume -run '^$$' -bench Loop -benchtime 3000x
	$(GO) test ./internal/stream -run '^$$' -bench BacklogByShards -benchtime 3x
	$(GO) test ./internal/stream -run '^$$' -bench PublishDurable -benchtime 20000x
	$(GO) test ./trace -run '^$$' -bench LoadInLongHistory -benchtime 5x

.PHONY: fuzz
fuzz: ## fuzz the event decoder for 30s
	$(GO) test ./internal/event -run '^$$' -fuzz FuzzFromMsg -fuzztime 30s

.PHONY: clean
clean: ## remove ./bin
	rm -rf $(BIN)
