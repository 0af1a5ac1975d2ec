.DEFAULT_GOAL := build
GO ?= go
BIN := bin/credport

.PHONY: generate build run test lint bench fuzz clean
FUZZTIME ?= 30s

generate: ## regenerate gen/ from openapi.yaml
	$(GO) generate ./gen

build: ## build bin/credport
	$(GO) build -o $(BIN) ./cmd/credport

run: build ## serve on the embedded SQLite default; on a new database, first show a key
	./$(BIN) bootstrap
	./$(BIN) serve

test: ## every test, on SQLite and on PostgreSQL (skipped locally when it is not reachable)
	$(GO) test -count=1 -race -timeout 20m ./...

lint: ## formatting, vet, and generated code that matches openapi.yaml
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	$(GO) mod verify
	@$(MAKE) --no-print-directory generate
	@git diff --exit-code -- gen/ || { echo 'gen/ is stale: run make generate and commit'; exit 1; }

fuzz: ## fuzz the whole import request path (FUZZTIME, default 30s)
	$(GO) test -run '^$$' -fuzz FuzzImport -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./server

BENCH_FLAGS ?=
BENCH_PRELOAD ?= 1000000

bench: ## benchmarks of the per-request path, then imports/s (beside pgbench), reads and a bulk `credport import` (beside pgbench's 500-row upsert) with BENCH_PRELOAD connections stored, on PostgreSQL and on SQLite; then the imports again with auth webhooks to a local receiver
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./bench --preload $(BENCH_PRELOAD) $(BENCH_FLAGS)
	$(GO) run ./bench --sqlite --preload $(BENCH_PRELOAD) $(BENCH_FLAGS)
	$(GO) run ./bench --webhooks --reads=false --preload $(BENCH_PRELOAD) --out bench/results/webhooks $(BENCH_FLAGS)
	$(GO) run ./bench --webhooks --reads=false --sqlite --preload $(BENCH_PRELOAD) --out bench/results/webhooks $(BENCH_FLAGS)

.PHONY: bench-smoke
bench-smoke: ## every benchmark once, briefly, as CI runs them; fails on any error
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	$(GO) run ./bench --duration 2s --warmup 0s --preload 10000 --bulk-records 2000 --out bench/results/smoke
	$(GO) run ./bench --sqlite --duration 2s --warmup 0s --preload 10000 --bulk-records 2000 --out bench/results/smoke
	$(GO) run ./bench --webhooks --reads=false --duration 2s --warmup 0s --preload 1000 --bulk-records 2000 --out bench/results/smoke-webhooks

.PHONY: test-ha
test-ha: ## a failover of the PostgreSQL primary under load, direct and through pgbouncer (Linux, root; see docs/operations.md)
	ha/test-ha.sh

clean:
	rm -rf bin
