# pam/pam.mk: builds and tests pam_nostr.so, the PAM module of nostr-homed.
#
# Included by the top-level Makefile, or used alone from the repository root:
#   make -f pam/pam.mk            # builds $(BUILD)/pam_nostr.so
#   make -f pam/pam.mk test-pam   # runs pam/test.sh (root; needs pamtester, dbus-daemon,
#                                 # python3-dbus and python3-gi for the fake daemon, qrencode
#                                 # and python3-zbar to check QR codes)
# Building needs libsystemd, pam and libqrencode (pkg-config).
# All paths are relative to the repository root.

BUILD ?= build
CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g -Wall -Wextra -Werror -fPIC -fvisibility=hidden

PAM_SO := $(BUILD)/pam_nostr.so
# -fPIC and -fvisibility=hidden are required whatever CFLAGS says.
PAM_CFLAGS = $(CFLAGS) -fPIC -fvisibility=hidden $(shell $(PKG_CONFIG) --cflags libsystemd pam libqrencode)
PAM_LIBS = $(shell $(PKG_CONFIG) --libs libsystemd pam libqrencode)
PAM_LDFLAGS = -shared -Wl,--version-script=pam/pam_nostr.map -Wl,-soname,pam_nostr.so \
	-Wl,-z,defs -Wl,-z,relro -Wl,-z,now

.PHONY: pam test-pam

pam: $(PAM_SO)

$(PAM_SO): pam/pam_nostr.c pam/pam_nostr.map pam/pam.mk
	@mkdir -p $(@D)
	$(CC) $(PAM_CFLAGS) $(PAM_LDFLAGS) $(LDFLAGS) -o $@ pam/pam_nostr.c $(PAM_LIBS)

test-pam: $(PAM_SO)
	BUILD="$(BUILD)" bash pam/test.sh
