package ipfs

import "syscall"

// daemonSysProcAttr makes the kernel kill a test's kubo daemon if the test binary dies
// without cleaning up (a panic, a timeout, SIGKILL).
func daemonSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
