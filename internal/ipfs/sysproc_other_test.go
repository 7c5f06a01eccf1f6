//go:build !linux

package ipfs

import "syscall"

func daemonSysProcAttr() *syscall.SysProcAttr { return nil }
