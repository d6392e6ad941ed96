GO      ?= go
BIN     ?= bin/llmlab
PKGS    ?= ./...

.PHONY: all build run test lint bench clean

all: lint build test

build:
	$(GO) build -o $(BIN) ./cmd/llmlab

# The main job on the embedded default (see README).
run: build
	LLMLAB_BIN=$(BIN) scripts/quickstart.sh

# Unit tests beside the code plus end-to-end tests in test/e2e, which build
# the binary themselves and drive real processes on loopback.
test: lint
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Benchmarks; figures go to docs/results.md with the command that made them.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
