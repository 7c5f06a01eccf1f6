package demo

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/childproc"
	"github.com/nostr-homed/nostr-homed/internal/privatebus"
)

// bus is a private dbus-daemon.
type bus struct {
	Address string
	proc    *child
}

// startBus runs dbus-daemon in dir (which must exist) with the policy file, and waits until
// it has printed its address.
func startBus(dir, policy string) (*bus, error) {
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		return nil, fmt.Errorf("dbus-daemon not found (Debian package dbus): %w", err)
	}
	addr, args, err := privatebus.Write(dir, []string{policy})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("dbus-daemon", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	p, err := startChild(cmd, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("starting dbus-daemon: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-ready:
		if addr == "" {
			p.stop(syscall.SIGKILL, time.Second)
			return nil, fmt.Errorf("dbus-daemon printed no address: %s", strings.TrimSpace(stderr.String()))
		}
	case <-time.After(10 * time.Second):
		p.stop(syscall.SIGKILL, time.Second)
		return nil, fmt.Errorf("dbus-daemon did not start within 10s: %s", strings.TrimSpace(stderr.String()))
	}
	return &bus{Address: addr, proc: p}, nil
}

// child is a process the demo started and waits for.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's, valid once exited is closed
}

// startChild starts cmd with deathSig as its parent-death signal, so that it does not
// outlive the demo even if the demo is killed, in a process group of its own: a Ctrl-C at
// the terminal reaches the demo alone, which then stops its children in order (the daemon
// before the bus and the relay it needs). See package childproc.
func startChild(cmd *exec.Cmd, deathSig syscall.Signal) (*child, error) {
	c := &child{cmd: cmd, exited: make(chan struct{})}
	err := childproc.Start(cmd, deathSig, func() {
		c.err = cmd.Wait()
		close(c.exited)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// running reports whether the child has not exited yet.
func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits up to grace for the child to exit, then kills it. It returns
// Wait's error, or an error saying it had to be killed.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	if !c.running() {
		return c.err
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
		return c.err
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not exit within %s of %v: killed", filepath.Base(c.cmd.Path), grace, sig)
	}
}
