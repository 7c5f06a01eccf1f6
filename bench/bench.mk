# bench/bench.mk: builds the programs that `make bench` runs besides nostr-homed-bench itself.
#
# Included by the top-level Makefile. All paths are relative to the repository root.
#   $(BUILD)/nss_bench                 getpwnam_r through libnss_nostr.so.2 against nss files (bench/nss_bench.c)
#   $(BUILD)/nostr-homed-bench-homefs  the mount benchmarks' helper: homefs (nostrfs's file system) in a
#                                      process of its own (internal/benchreport/homefsd)
#   $(BUILD)/go-fuse-loopback          go-fuse's example loopback file system, the FUSE peer of the mount
#                                      benchmarks, built from the go-fuse module go.mod requires
#   $(BUILD)/nostr-homed-bench         built with cgo (unlike the other Go binaries): the session benchmark
#                                      drives libpam in-process (github.com/msteinert/pam/v2)

BUILD ?= build
CC ?= cc
GO ?= go
BENCH_CFLAGS ?= -O2 -g -Wall -Wextra -Werror

NSS_BENCH_BIN := $(BUILD)/nss_bench
BENCH_C_BINS := $(NSS_BENCH_BIN)
BENCH_GO_BINS := $(BUILD)/nostr-homed-bench-homefs $(BUILD)/go-fuse-loopback

$(NSS_BENCH_BIN): bench/nss_bench.c bench/bench.mk
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ bench/nss_bench.c -ldl

# Go decides what is stale (as for the other Go binaries); these explicit rules take
# precedence over the Makefile's $(BUILD)/% pattern rule.
$(BUILD)/nostr-homed-bench-homefs: FORCE
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./internal/benchreport/homefsd

$(BUILD)/go-fuse-loopback: FORCE
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ github.com/hanwen/go-fuse/v2/example/loopback

# The runner's helpers are its prerequisites: `make bench` builds them through it.
$(BUILD)/nostr-homed-bench: FORCE $(BENCH_GO_BINS)
	@mkdir -p $(@D)
	CGO_ENABLED=1 $(GO) build -trimpath -o $@ ./cmd/nostr-homed-bench
