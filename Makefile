# ironblade build, test and benchmark entry points. Run `make help` for a list.
#
# The end-to-end tests create network namespaces and veth pairs, so `make
# test` must run as root (on Debian 12: `sudo bash .ci/run` installs what the
# tests need first); without root they skip and say so.

# sudo's secure_path leaves out /usr/local/go/bin, where Go is usually installed.
GO         ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN        ?= bin
VERSION    ?= $(shell sh scripts/package/version.sh 2>/dev/null || echo devel)
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

.PHONY: all help build test test-short fuzz bench lint demo clean install

all: build

help:
	@echo "make build       build every command into $(BIN)/ (version $(VERSION))"
	@echo "make test        go vet, then every test (run as root for the end-to-end tests)"
	@echo "make test-short  the quick tests only (go test -short)"
	@echo "make fuzz        run each fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make bench       benchmarks"
	@echo "make lint        go vet and staticcheck"
	@echo "make demo        the failover demo on VM nodes: vblade and ironblade, with and without -s (root)"
	@echo "make test-kernel the kernel's own AoE and NBD clients in a qemu guest (root, ~4 min)"
	@echo "make test-cluster crash consistency on two qemu guest nodes with DRBD, one fenced (root, ~3 min)"
	@echo "make install     install commands, OCF agents, units, man pages, completion (PREFIX=, DESTDIR=)"
	@echo "make man         man pages from docs/ into out/package/man"
	@echo "make deb         a Debian package (nfpm) into out/package"
	@echo "make version     the version (semver from git tags)"
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

# compare measures every cell pinned and then unpinned (on a machine with
# two CPUs and taskset), and the link's ceiling in each cell without -s:
# 120 cells of 3 s with the default set, about 8 minutes on 2 CPUs;
# BENCH_ARGS="--pin on" measures pinned only, in half the time.
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
# make demo DEMO_ARGS="--nodes process" or DEMO_ARGS="--targets ironblade-s --repeat 20".
demo: build
	bash scripts/demo.sh --bin $(BIN) $(DEMO_ARGS)

# test-kernel boots Debian's kernel under qemu and checks ironblade and
# ironaoe against its aoe and nbd drivers: docs/kernel-tests.md.
.PHONY: test-kernel
test-kernel:
	bash scripts/kernel/run.sh

# test-cluster fences a qemu guest target node mid-write and checks on the
# survivor that nothing acknowledged as durable was lost: docs/demo.md.
.PHONY: test-cluster
test-cluster:
	bash scripts/cluster-test.sh

clean:
	rm -rf $(BIN) out

# install puts the commands into $(DESTDIR)$(PREFIX)/sbin (ironbench, a
# tool rather than a daemon, into bin) and the OCF resource agents into
# $(DESTDIR)$(OCFDIR)/resource.d/ironblade, where Pacemaker finds them as
# ocf:ironblade:ironblade and ocf:ironblade:ironaoe (docs/pacemaker.md).
PREFIX     ?= /usr/local
DESTDIR    ?=
OCFDIR     ?= /usr/lib/ocf
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(OCFDIR)/resource.d/ironblade
	install -m 755 $(BIN)/ironblade $(BIN)/ironbladectl $(BIN)/ironaoe $(DESTDIR)$(PREFIX)/sbin/
	install -m 755 $(BIN)/ironbench $(DESTDIR)$(PREFIX)/bin/
	install -m 755 scripts/ocf/ironblade scripts/ocf/ironaoe $(DESTDIR)$(OCFDIR)/resource.d/ironblade/

# man pages, completion, units, the Debian package and the version.
include scripts/package.mk
