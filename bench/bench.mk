# bench/bench.mk: builds the C benchmark programs that `make bench` runs.
#
# Included by the top-level Makefile. All paths are relative to the repository root.
#   $(BUILD)/nss_bench   getpwnam_r through libnss_nostr.so.2 against nss files (bench/nss_bench.c)

BUILD ?= build
CC ?= cc
BENCH_CFLAGS ?= -O2 -g -Wall -Wextra -Werror

NSS_BENCH_BIN := $(BUILD)/nss_bench
BENCH_C_BINS := $(NSS_BENCH_BIN)

$(NSS_BENCH_BIN): bench/nss_bench.c bench/bench.mk
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ bench/nss_bench.c -ldl
