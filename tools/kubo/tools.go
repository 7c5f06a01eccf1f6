//go:build tools

// Package kubo pins the version of kubo (the IPFS daemon) that nostr-homed's tests run
// against. It is a separate module so that kubo's large dependency graph stays out of the
// main module. Build the binary with `make build/ipfs` (see kubo.mk).
package kubo

import _ "github.com/ipfs/kubo/cmd/ipfs"
