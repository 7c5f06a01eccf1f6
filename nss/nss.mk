# nss/nss.mk: builds and tests libnss_nostr.so.2, the NSS module of nostr-homed.
#
# Included by the top-level Makefile, or used alone from the repository root:
#   make -f nss/nss.mk            # builds $(BUILD)/libnss_nostr.so.2
#   make -f nss/nss.mk test-nss   # runs nss/test.sh (root; needs sqlite3, unshare)
# All paths are relative to the repository root.

BUILD ?= build
CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g -Wall -Wextra -Werror -fPIC -fvisibility=hidden

NSS_SO := $(BUILD)/libnss_nostr.so.2
NSS_TEST_BIN := $(BUILD)/test_nss
# -fPIC and -fvisibility=hidden are required whatever CFLAGS says.
NSS_CFLAGS = $(CFLAGS) -fPIC -fvisibility=hidden $(shell $(PKG_CONFIG) --cflags sqlite3)
NSS_LIBS = $(shell $(PKG_CONFIG) --libs sqlite3) -pthread
NSS_LDFLAGS = -shared -Wl,--version-script=nss/libnss_nostr.map -Wl,-soname,libnss_nostr.so.2 \
	-Wl,-z,defs -Wl,-z,relro -Wl,-z,now

.PHONY: nss test-nss

nss: $(NSS_SO)

$(NSS_SO): nss/nss_nostr.c nss/libnss_nostr.map nss/nss.mk
	@mkdir -p $(@D)
	$(CC) $(NSS_CFLAGS) $(NSS_LDFLAGS) $(LDFLAGS) -o $@ nss/nss_nostr.c $(NSS_LIBS)

$(NSS_TEST_BIN): nss/test_nss.c nss/nss.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ nss/test_nss.c -pthread -ldl

test-nss: $(NSS_SO) $(NSS_TEST_BIN)
	BUILD="$(BUILD)" bash nss/test.sh
