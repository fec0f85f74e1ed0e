# docker_logs: a Fluent Bit input plugin for the logs of every Docker container.

GO        ?= go
CC        ?= cc
BUILD     := build
PLUGIN    := $(BUILD)/docker_logs.so
TESTHOST  := $(BUILD)/goproxy-testhost
GOFILES   := $(shell find capture conf docker instance metrics plugin \( -name '*.go' -o -name '*.c' -o -name '*.h' \) -not -name '*_test.go') go.mod go.sum
# Packages whose tests need no daemon; they run with the race detector.
UNIT_PKGS := ./capture/... ./conf/... ./cmd/... ./instance/... ./plugin/... ./metrics/...

.PHONY: all test unit integration fuzz bench run docker-ready vet clean

all: $(PLUGIN)

$(PLUGIN): $(GOFILES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -o $@ ./plugin
	@rm -f $(BUILD)/docker_logs.h

$(TESTHOST): testhost/goproxy_testhost.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -Wall -Wextra -o $@ $< -ldl -lpthread

# Every test: unit tests with the race detector, then the tests against the
# real daemons and the ABI test of the built plugin. The daemons are the
# system's Docker (started when not running), a Docker Engine 29 and a
# Podman service started beside it (see scripts/integration.sh);
# DAEMONS='system' runs against the system's only.
DAEMONS ?= system docker29 podman

test: vet unit integration

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

integration: $(PLUGIN) $(TESTHOST)
	GO=$(GO) scripts/integration.sh $(DAEMONS)

docker-ready:
	@scripts/docker-ready.sh

# A longer run of the stream decoder's fuzz targets (their seeds run in unit).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./capture -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME)
	$(GO) test ./capture -run '^$$' -fuzz '^FuzzResume$$' -fuzztime $(FUZZTIME)
	$(GO) test ./capture/jsonfile -run '^$$' -fuzz '^FuzzParseLine$$' -fuzztime $(FUZZTIME)

# Builds the plugin and runs it in Fluent Bit: the fluent-bit on the PATH,
# else the official image with the Docker socket mounted.
run: docker-ready $(PLUGIN)
	@scripts/run-fluent-bit.sh $(PLUGIN)

clean:
	rm -rf $(BUILD)

# Benchmarks against the performance goals; they never fail on a timing.
# `make bench` runs every suite (capture's BenchmarkPipeline, history
# throughput against a raw read, refresh cost against log size, scale and
# latency, and with fluent-bit on the PATH files against the API and tail)
# and writes build/bench/results.md and results.json; `make soak` churns
# containers for SOAK_DURATION and writes build/bench/soak.{md,json,csv}.
# The bench program is built from bench/, testhost/, internal/ and the
# product's packages, so it depends on all of them. BENCH_FLAGS passes
# flags to it, e.g. BENCH_FLAGS='-suites history,refresh -scale 100x10'
# (see go run ./bench -h).
BENCH_FLAGS   ?=
SOAK_DURATION ?= 30m
BENCH_BIN     := $(BUILD)/bench-runner

.PHONY: soak
$(BENCH_BIN): $(GOFILES) $(wildcard bench/*.go) $(wildcard internal/*/*.go) $(wildcard testhost/*.go)
	@mkdir -p $(BUILD)
	$(GO) build -o $@ ./bench

bench: docker-ready $(PLUGIN) $(TESTHOST) $(BENCH_BIN)
	$(BENCH_BIN) -out $(BUILD)/bench $(BENCH_FLAGS)

soak: docker-ready $(PLUGIN) $(TESTHOST) $(BENCH_BIN)
	$(BENCH_BIN) -soak -soak-duration $(SOAK_DURATION) -out $(BUILD)/bench $(BENCH_FLAGS)
