// Package dbustest runs a private dbus-daemon configured like the system bus, for tests of
// the D-Bus service and of the PAM module's client side. The bus gets system.conf's default
// policy (deny owning names and method calls unless allowed) plus the project's own policy
// files from dbus/, so a test exercises the policy that ships, not a permissive stand-in.
//
// The daemon is the real dbus-daemon (Debian package dbus); tests point clients at it through
// Bus.Address (or DBUS_SYSTEM_BUS_ADDRESS).
package dbustest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/privatebus"
)

// Bus is a running private bus.
type Bus struct {
	Address string
	Dir     string
	cmd     *exec.Cmd
}

// Start runs dbus-daemon with the project's policy files (dbus/*.conf) and any extra policy
// files given, and stops it when the test ends.
func Start(t testing.TB, extraPolicies ...string) *Bus {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Fatalf("dbus-daemon not found (Debian package dbus): %v", err)
	}
	// Not t.TempDir(): its parent is 0700, and unprivileged test callers must reach the socket.
	dir, err := os.MkdirTemp("", "dbustest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	policies, err := privatebus.Policies(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	busAddr, args, err := privatebus.Write(dir, append(policies, extraPolicies...))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", args...)
	// No Pdeathsig: it fires when the OS thread that started the child exits, which a Go
	// program cannot control (a goroutine that ends locked to that thread kills the bus
	// mid-test). t.Cleanup stops the daemon instead.
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &Bus{Dir: dir, cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-ready:
		if addr == "" {
			t.Fatalf("dbus-daemon printed no address: %s", stderr.String())
		}
		b.Address = busAddr // the printed one carries a guid; either works
	case <-time.After(10 * time.Second):
		t.Fatalf("dbus-daemon did not start within 10s: %s", stderr.String())
	}
	return b
}

// repoRoot finds the module root from this source file's location.
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate dbustest's source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
