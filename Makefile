# Build, check and test alqd. Needs GNU make and Go 1.26.
#
#   make test         every test: vet, staticcheck, go test ./... including the
#                     end-to-end tests against a real Kea (root; see README.md)
#   make run          build and run the main job
#   make fuzz         each native fuzz target for FUZZTIME
#   make bench        every benchmark, then the end-to-end harness bin/alqd-bench,
#                     which rewrites its section of docs/BENCHMARKS.md and docs/img/
#   make bench-smoke  each benchmark once, then the harness at small scale (-short);
#                     fails only on a crash or a message that does not decode

GO ?= go
BIN := $(CURDIR)/bin

# staticcheck 2026.2.2 (v0.8.2) is the first release that checks Go 1.26 code.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(BIN)/staticcheck

TEST_TIMEOUT ?= 20m
FUZZTIME ?= 10s
# The number of fuzzing workers; keep 1 on a shared 2-core machine.
FUZZ_PARALLEL ?= 1
BENCHTIME ?= 1s
BENCHCOUNT ?= 1
BENCH_TIMEOUT ?= 60m
# Extra flags for bin/alqd-bench, such as -only fanout or -contenders raw,alqd.
BENCH_ARGS ?=
# Arguments for the main job of make run.
RUN_ARGS ?=

.PHONY: all tools build vet staticcheck test fuzz bench bench-smoke bench-once run clean

all: build

tools: $(STATICCHECK)

# Reinstalled when the Makefile (and so maybe the version) changes.
$(STATICCHECK): Makefile
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@touch $@

# Builds every package, and the commands under cmd/ into bin/ once there are any.
build:
	$(GO) build ./...
	@if ls cmd/*/*.go >/dev/null 2>&1; then \
		mkdir -p $(BIN); \
		echo "CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/..."; \
		CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...; \
	else \
		echo "build: there are no commands under cmd/ yet, so only the packages were built"; \
	fi

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

# The Kea end-to-end tests are ordinary Go tests. They fail when not run as
# root with Kea installed, unless ALQD_SKIP_KEA=1 is set to skip them. The
# benchmark runs come last: they fail only when a benchmark or a contender
# of the harness crashes or a message does not decode, never on a timing.
test: vet staticcheck
	@if [ "$${ALQD_SKIP_KEA:-}" = 1 ]; then \
		echo "test: ALQD_SKIP_KEA=1 is set, so the tests that need root and Kea are skipped"; \
	fi
	$(GO) test -count=1 -timeout=$(TEST_TIMEOUT) ./...
	$(MAKE) bench-once bench-smoke

# Runs every func FuzzXxx found in a _test.go file, one at a time, each for
# FUZZTIME with FUZZ_PARALLEL workers.
fuzz:
	@found=0; \
	for dir in $$(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=bin '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go); do \
			found=1; \
			echo "$(GO) test -run='^$$' -fuzz='^$$name$$' -fuzztime=$(FUZZTIME) -parallel=$(FUZZ_PARALLEL) $$dir"; \
			$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) -parallel=$(FUZZ_PARALLEL) $$dir || exit 1; \
		done; \
	done; \
	if [ $$found = 0 ]; then echo "fuzz: no func Fuzz... was found in any _test.go file" >&2; exit 1; fi

bench: $(BIN)/alqd-bench
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) -timeout=$(BENCH_TIMEOUT) ./...
	$(BIN)/alqd-bench -doc docs/BENCHMARKS.md -img docs/img $(BENCH_ARGS)

# Runs the harness at small scale (about a minute on two cores), to prove
# that every contender still runs and every message still decodes.
bench-smoke: $(BIN)/alqd-bench
	$(BIN)/alqd-bench -short $(BENCH_ARGS)

# Runs every go test benchmark exactly once with -short, to prove that each
# still works (about four minutes on two cores: several build stores of
# 1,000,000 bindings; the Active Leasequery report drops to 2,000
# connections).
bench-once:
	$(GO) test -short -run='^$$' -bench=. -benchmem -benchtime=1x -timeout=$(BENCH_TIMEOUT) ./...

# The harness binary, rebuilt every time because it depends on most packages.
.PHONY: $(BIN)/alqd-bench
$(BIN)/alqd-bench:
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $@ ./cmd/alqd-bench

# The main job: alqd on a live source of binding changes, with alq watch
# printing every change it receives (JSON lines on standard output) for
# RUN_SECONDS (default 30), then everything stops. As root with Kea installed
# the source is Kea with perfdhcp clients in network namespaces; otherwise it
# is alqd-loadgen churn. RUN_MODE=kea or RUN_MODE=loadgen forces one.
run: build
	$(GO) run ./scripts/run -bin $(BIN) $(RUN_ARGS)

clean:
	rm -rf $(BIN)
