.DEFAULT_GOAL := build
GO ?= go
BIN := bin/credport

.PHONY: generate build run test lint bench clean

generate: ## regenerate gen/ from openapi.yaml
	$(GO) generate ./gen

build: ## build bin/credport
	$(GO) build -o $(BIN) ./cmd/credport

run: build ## serve on the embedded SQLite default; on a new database, first show a key
	./$(BIN) bootstrap
	./$(BIN) serve

test: ## every test, on SQLite and on PostgreSQL (skipped locally when it is not reachable)
	$(GO) test -count=1 -race -timeout 8m ./...

lint: ## formatting, vet, and generated code that matches openapi.yaml
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	$(GO) mod verify
	@$(MAKE) --no-print-directory generate
	@git diff --exit-code -- gen/ || { echo 'gen/ is stale: run make generate and commit'; exit 1; }

bench: ## benchmarks of the per-request path
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
