GO      ?= go
BIN     ?= bin/llmlab
PKGS    ?= ./...

.PHONY: all build run test lint bench fuzz clean

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
	$(MAKE) fuzz

# Bounded fuzzing of request decoding and validation (gateway and sim); the
# seed corpora in testdata/fuzz also run in every plain `go test`.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./internal/validate
	$(GO) test -run '^$$' -fuzz '^FuzzDecoders$$' -fuzztime $(FUZZTIME) ./internal/validate
	$(GO) test -run '^$$' -fuzz '^FuzzGatewayRefusals$$' -fuzztime $(FUZZTIME) ./internal/gateway
	$(GO) test -run '^$$' -fuzz '^FuzzGatewayRequest$$' -fuzztime $(FUZZTIME) ./internal/gateway
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./internal/sim/server
	$(GO) test -run '^$$' -fuzz '^FuzzPromptTokenList$$' -fuzztime $(FUZZTIME) ./internal/openai
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME) ./internal/httpwire
	$(GO) test -run '^$$' -fuzz '^FuzzReadResponse$$' -fuzztime $(FUZZTIME) ./internal/upstream

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Benchmarks; figures go to docs/results.md with the command that made them.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
