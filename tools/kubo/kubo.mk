# kubo.mk builds the kubo (IPFS) daemon that the tests of internal/ipfs run against.
# The top-level Makefile includes it; `make build/ipfs` (or $(BUILD)/ipfs) builds it.
#
# kubo lives in its own module (tools/kubo: go.mod pins github.com/ipfs/kubo v0.42.0 and
# tools.go imports its command) so that its large dependency graph stays out of the main
# module. The module proxy refuses @latest for kubo, so `go install ...@latest` cannot be
# used; the version is pinned in tools/kubo/go.mod. A cold build takes about 2 minutes and
# gives a 121 MB binary.

BUILD ?= build
GO ?= go
KUBO_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

$(BUILD)/ipfs: $(KUBO_DIR)/go.mod $(KUBO_DIR)/go.sum $(KUBO_DIR)/tools.go
	@mkdir -p $(BUILD)
	cd $(KUBO_DIR) && $(GO) build -o $(abspath $(BUILD))/ipfs github.com/ipfs/kubo/cmd/ipfs
