// Package childproc starts child processes that must not outlive their parent: the daemon's
// nostrfs, the demo's daemons. It holds the one subtle part of that, in one place.
//
// Linux's parent-death signal (PR_SET_PDEATHSIG, SysProcAttr.Pdeathsig) fires when the
// THREAD that forked the child exits, not the process, and the Go runtime ends a thread when
// a goroutine locked to it returns without unlocking. So the child is started and waited for
// on one goroutine locked to its thread: no other goroutine can run there (and lock and
// return) while the child lives. That goroutine unlocks before returning, so the thread is
// not ended either: it may be the parent thread of other children.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd with sig as its parent-death signal, in a process group of its own
// (so that a signal to the group reaches its helpers, and a Ctrl-C at a terminal reaches
// the parent alone), and calls wait on the same locked thread once it has started; wait
// must call cmd.Wait. Start returns cmd.Start's error.
func Start(cmd *exec.Cmd, sig syscall.Signal, wait func()) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	cmd.SysProcAttr.Setpgid = true
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		wait()
	}()
	return <-started
}
