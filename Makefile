# ironblade build, test and benchmark entry points. Run `make help` for a list.
#
# The end-to-end tests create network namespaces and veth pairs, so `make
# test` must run as root (on Debian 12: `sudo bash .ci/run` installs what the
# tests need first); without root they skip and say so.

# sudo's secure_path leaves out /usr/local/go/bin, where Go is usually installed.
GO         ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN        ?= bin
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS    := -X main.version=$(VERSION)
TEST_FLAGS ?=
# Time given to each fuzz target by `make fuzz`.
FUZZTIME   ?= 20s
# ironblade and vblade side by side over a veth pair, then the Go
# micro-benchmarks (allocations per frame).
BENCH_CMD  ?= $(BIN)/ironbench compare --ironblade $(BIN)/ironblade $(BENCH_ARGS)
# gotestsum runs go test and ends with a summary: every skipped test with
# its reason, every failure, and the totals.
GOTESTSUM  ?= $(GO) run gotest.tools/gotestsum@v1.13.0 --format pkgname
# staticcheck 2026.2.2; it understands Go 1.26.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all help build test test-short fuzz bench lint demo clean

all: build

help:
	@echo "make build       build every command into $(BIN)/ (version $(VERSION))"
	@echo "make test        go vet, then every test (run as root for the end-to-end tests)"
	@echo "make test-short  the quick tests only (go test -short)"
	@echo "make fuzz        run each fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make bench       benchmarks"
	@echo "make lint        go vet and staticcheck"
	@echo "make demo        the failover demo (root; DEMO_ARGS=--quick for a short one)"
	@echo "make test-kernel the kernel's own AoE and NBD clients in a qemu guest (root, ~4 min)"
	@echo "make clean       remove build outputs"

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

test:
	@[ "$$(id -u)" = 0 ] || echo "make test: not root, so the end-to-end tests will skip (run: sudo make test)"
	$(GO) vet ./...
	$(GOTESTSUM) -- -count=1 -timeout 14m $(TEST_FLAGS) ./...

test-short:
	$(GOTESTSUM) -- -short -count=1 -timeout 5m $(TEST_FLAGS) ./...

# Each package's fuzz targets are found with `go test -list`, so new ones are
# picked up without editing this file.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg) || exit 1; \
		for target in $$(echo "$$list" | grep '^Fuzz'); do \
			echo "=== fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

bench: build
	$(BENCH_CMD)
	$(BIN)/ironbench nbd --ironblade $(BIN)/ironblade --ironaoe $(BIN)/ironaoe --repeat 3 $(NBD_BENCH_ARGS)
	$(GO) test -run '^$$' -bench . -benchmem ./aoe/ ./target/ ./initiator/ ./initiator/nbd/
	$(BIN)/ironbench auth --ironblade $(BIN)/ironblade $(AUTH_BENCH_ARGS)
	$(GO) test -run '^$$' -bench . -benchmem ./crypto/seal/

lint:
	$(GO) vet ./...
	$(STATICCHECK) ./...

# The failover demo (docs/demo.md), as root; options in DEMO_ARGS, e.g.
# make demo DEMO_ARGS="--quick" or DEMO_ARGS="--async --mode cold".
demo: build
	bash scripts/demo.sh --bin $(BIN) $(DEMO_ARGS)

# test-kernel boots Debian's kernel under qemu and checks ironblade and
# ironaoe against its aoe and nbd drivers: docs/kernel-tests.md.
.PHONY: test-kernel
test-kernel:
	bash scripts/kernel/run.sh

clean:
	rm -rf $(BIN) out
