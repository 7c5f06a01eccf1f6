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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Bus is a running private bus.
type Bus struct {
	Address string
	Dir     string
	cmd     *exec.Cmd
}

const config = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <includedir>%s</includedir>
</busconfig>
`

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
	policyDir := filepath.Join(dir, "system.d")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	policies, err := filepath.Glob(filepath.Join(repoRoot(t), "dbus", "*.conf"))
	if err != nil || len(policies) == 0 {
		t.Fatalf("no policy files in dbus/: %v", err)
	}
	for _, p := range append(policies, extraPolicies...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(policyDir, filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(config, sock, policyDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address=1")
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
		b.Address = "unix:path=" + sock // the printed one carries a guid; either works
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
