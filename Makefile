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

# Bounded fuzzing of request decoding and validation (gateway and sim) and of
# the HTTP/1.1 readers; the seed corpora in testdata/fuzz also run in every
# plain `go test`. Budgets are execution counts, each about 10 s on the 2-core
# development box: a duration (-fuzztime 10s) can fail at its end with
# "context deadline exceeded" and no failing input, a race in Go 1.26's fuzz
# coordinator (golang/go#75804, fixed in Go 1.27). FUZZTIME=30s (or =1000x)
# replaces every budget.
fuzz1 = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(or $(FUZZTIME),$(2)) ./$(3)
fuzz:
	$(call fuzz1,FuzzValidate,60000x,internal/validate)
	$(call fuzz1,FuzzDecoders,100000x,internal/validate)
	$(call fuzz1,FuzzCompletionFast,100000x,internal/validate)
	$(call fuzz1,FuzzGatewayRefusals,20000x,internal/gateway)
	$(call fuzz1,FuzzGatewayRequest,20000x,internal/gateway)
	$(call fuzz1,FuzzHandler,20000x,internal/sim/server)
	$(call fuzz1,FuzzPromptTokenList,150000x,internal/openai)
	$(call fuzz1,FuzzParseHeader,200000x,internal/httpwire)
	$(call fuzz1,FuzzDechunker,100000x,internal/httpwire)
	$(call fuzz1,FuzzReadResponse,100000x,internal/upstream)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Benchmarks; figures go to docs/results.md with the command that made them.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
