# nostr-homed Makefile. `make help` lists the targets with one line each.
#
# Every artifact goes to $(BUILD). Install paths follow Debian: PAM modules in the multiarch
# security directory, the NSS module in the multiarch library directory, units under
# lib/systemd/system, the bus policy under share/dbus-1/system.d, configuration in
# /etc/nostr-homed. DESTDIR and PREFIX are honoured.

BUILD   ?= build
GO      ?= go
PREFIX  ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR  := $(PREFIX)/lib/$(MULTIARCH)
GO_BUILD = CGO_ENABLED=0 $(GO) build -trimpath
# Go test flags; `make test GOTESTFLAGS=-short` skips the long cases.
GOTESTFLAGS ?=
FUZZTIME ?= 10s

.DEFAULT_GOAL := help

GO_BINS := $(BUILD)/nostrfs $(BUILD)/nostr-homectl $(BUILD)/nostr-homed-devstack

include nss/nss.mk
include pam/pam.mk
include tools/kubo/kubo.mk
include bench/bench.mk

.PHONY: help build test test-go test-c test-install demo bench fuzz install clean FORCE

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_\/.$$()-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: $(GO_BINS) $(NSS_SO) $(PAM_SO) ## build every artifact into $(BUILD)/

# The Go binaries are always handed to `go build`, which knows better than make what changed.
$(BUILD)/%: FORCE
	@mkdir -p $(BUILD)
	$(GO_BUILD) -o $@ ./cmd/$*

test: build $(BUILD)/ipfs test-go test-c test-install test-units ## build, then run every test (as root: mounts, PAM, NSS)

test-go: ## run the Go tests
	NOSTR_HOMED_DEVSTACK_BIN=$(abspath $(BUILD))/nostr-homed-devstack \
	NOSTR_HOMED_IPFS_BIN=$(abspath $(BUILD))/ipfs \
	$(GO) test $(GOTESTFLAGS) -count=1 ./...

test-c: test-nss test-pam ## run the NSS and PAM module tests

.PHONY: test-long
test-long: build ## the crash tests in their long mode (50 kill -9 rounds of nostrfs)
	NOSTR_HOMED_LONG=1 $(GO) test -count=1 -timeout 60m -run Kill9 ./internal/homefs/ ./internal/pamtest/

test-install: build ## check `make install` with DESTDIR and PREFIX
	bash scripts/test-install.sh

.PHONY: test-units
test-units: build ## check the systemd units: systemd-analyze verify, exposure scores, install
	BUILD=$(BUILD) bash scripts/test-units.sh

demo: $(BUILD)/nostr-homectl $(BUILD)/nostrfs $(PAM_SO) ## as root (sudo make demo): log in through PAM, write in the mounted home, wipe the cache, read it back; loopback relay and Blossom
	CGO_ENABLED=1 $(GO) build -trimpath -o $(BUILD)/cgo/nostr-homed-devstack ./cmd/nostr-homed-devstack
	$(BUILD)/cgo/nostr-homed-devstack demo --build $(abspath $(BUILD)) --dbus-policy $(abspath dbus/org.nostr.Homed1.conf)

# A missed target is reported in build/bench/report.md, not a failure; BENCH_ONLY=nss,cas picks some.
BENCH_ONLY ?=
bench: build $(BUILD)/nostr-homed-bench $(BENCH_C_BINS) ## run the benchmarks; writes build/bench/report.md and report.json (ratios to a same-run baseline)
	$(BUILD)/nostr-homed-bench --build $(BUILD) --go $(GO) --out $(BUILD)/bench $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

fuzz: ## run every Go fuzz target for FUZZTIME each (default 10s); a failing input goes to the package's testdata/fuzz/
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

# install does not build: build as yourself, install as root (`make build && sudo make install`).
install: ## install the built artifacts into $(DESTDIR)$(PREFIX) (PAM, NSS, binaries, bus policy, config)
	@for f in $(GO_BINS) $(NSS_SO) $(PAM_SO); do test -f $$f || { echo "install: $$f is missing; run 'make build' first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/security $(DESTDIR)$(SYSCONFDIR)/nostr-homed \
	  $(DESTDIR)$(PREFIX)/share/dbus-1/system.d $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0755 $(BUILD)/nostrfs $(BUILD)/nostr-homectl $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(PAM_SO) $(DESTDIR)$(LIBDIR)/security/pam_nostr.so
	install -m 0644 $(NSS_SO) $(DESTDIR)$(LIBDIR)/libnss_nostr.so.2
	install -m 0644 dbus/org.nostr.Homed1.conf $(DESTDIR)$(PREFIX)/share/dbus-1/system.d/
	install -m 0644 dbus/org.nostr.Homed1.xml dbus/org.nostr.Signer.xml $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces/
	test -e $(DESTDIR)$(SYSCONFDIR)/nostr-homed/config.toml || \
	  install -m 0644 config.example.toml $(DESTDIR)$(SYSCONFDIR)/nostr-homed/config.toml
	for u in $(wildcard systemd/*.service); do install -m 0644 $$u $(DESTDIR)$(PREFIX)/lib/systemd/system/; done

clean: ## remove $(BUILD)/
	rm -rf $(BUILD)

FORCE:
