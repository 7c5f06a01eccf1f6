package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
	"github.com/nostr-homed/nostr-homed/internal/homed"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds this command once per test process, in a directory other users can enter
// (a test runs it as uid 65534).
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "nostr-homectl-test-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "nostr-homectl"), ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "nostr-homectl")
}

// writeConfig writes a configuration whose files all live under base.
func writeConfig(t *testing.T, base string) string {
	t.Helper()
	return writeConfigTop(t, base, "", "")
}

// writeConfigTop is writeConfig with top-level settings (top) and more [session] settings.
func writeConfigTop(t *testing.T, base, top, session string) string {
	t.Helper()
	for _, d := range []string{"home", "run"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := `# test configuration
` + top + `
[users]
database = "` + filepath.Join(base, "lib", "users.db") + `"
home_base = "` + filepath.Join(base, "home") + `"

[session]
runtime_dir = "` + filepath.Join(base, "run") + `"
supervisor = "builtin"
` + session
	p := filepath.Join(base, "config.toml")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newNpub(t *testing.T) string {
	pk, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	n, err := nip19.EncodePublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageAndExitCodes(t *testing.T) {
	code, out, _ := runCLI()
	if code != exitOK || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "4  access denied") || !strings.Contains(out, "serve") {
		t.Fatalf("help: %d\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"add", newNpub(t)}, exitUsage},                   // no --name
		{[]string{"add", "not-an-npub", "--name", "x"}, exitUsage}, // bad npub
		{[]string{"add", newNpub(t), "--name", "Bad Name"}, exitUsage},
		{[]string{"serve", "extra"}, exitUsage},
		{[]string{"status", "a", "b"}, exitUsage},
		{[]string{"open"}, exitUsage},
		{[]string{"list", "--bogus"}, exitUsage},
		{[]string{"remove", "Bad Name"}, exitUsage},
		{[]string{"warm", "alice", "--progress=maybe"}, exitUsage},
	} {
		if code, _, errOut := runCLI(c.args...); code != c.want {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.want, errOut)
		}
	}
	// The daemon cannot be reached: 3.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	if code, _, errOut := runCLI("status", "alice"); code != exitUnavailable || !strings.Contains(errOut, "system bus") {
		t.Fatalf("status without a bus: %d %s", code, errOut)
	}
}

func TestAddListRemove(t *testing.T) {
	// Not the machine's system bus: no daemon here, so remove goes on without one.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	base := t.TempDir()
	cfg := writeConfig(t, base)
	alice := newNpub(t)
	code, out, errOut := runCLI("add", alice, "--name", "alice", "--gecos", "Alice A", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "enrolled alice") {
		t.Fatalf("add: %d %s %s", code, out, errOut)
	}
	if st, err := os.Stat(filepath.Join(base, "lib", daemon.UIDKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the generated UID key: %v %v", st, err)
	}
	for _, args := range [][]string{
		{"add", alice, "--name", "alice2"},     // key already enrolled
		{"add", newNpub(t), "--name", "alice"}, // name taken
		{"add", newNpub(t), "--name", "root"},  // a local account's name
		{"remove", "nobody-here"},              // not enrolled
	} {
		if code, _, errOut := runCLI(append(args, "--config", cfg)...); code != exitFailed {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitFailed, errOut)
		}
	}
	code, out, _ = runCLI("list", "--json", "--config", cfg)
	var users []userOut
	if code != exitOK || json.Unmarshal([]byte(out), &users) != nil || len(users) != 1 ||
		users[0].Name != "alice" || users[0].Npub != alice || users[0].Gecos != "Alice A" || users[0].UID < 65536 {
		t.Fatalf("list --json: %d %s", code, out)
	}
	if code, out, _ := runCLI("list", "--config", cfg); code != exitOK || !strings.Contains(out, "alice") || !strings.Contains(out, alice) {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, _, errOut := runCLI("remove", "alice", "--config", cfg); code != exitOK {
		t.Fatalf("remove: %d %s", code, errOut)
	}
	if code, out, _ := runCLI("list", "--json", "--config", cfg); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list after remove: %d %s", code, out)
	}
}

// TestServeEndToEnd runs the built binary as the daemon on a private system-like bus and
// talks to it with the same binary.
func TestServeEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns org.nostr.Homed1 under the root-only bus policy")
	}
	bin := binary(t)
	bus := dbustest.Start(t)
	base := t.TempDir()
	cfg := writeConfig(t, base)
	alice := newNpub(t)
	if code, _, errOut := runCLI("add", alice, "--name", "alice", "--config", cfg); code != exitOK {
		t.Fatalf("add: %s", errOut)
	}
	code, out, _ := runCLI("list", "--json", "--config", cfg)
	var users []userOut
	if code != exitOK || json.Unmarshal([]byte(out), &users) != nil || len(users) != 1 {
		t.Fatalf("list: %s", out)
	}

	// A NOTIFY_SOCKET of our own, to see READY=1.
	notifyPath := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	notes := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()

	env := append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus.Address)
	serve := exec.Command(bin, "serve", "--config", cfg)
	serve.Env = append(env, "NOTIFY_SOCKET="+notifyPath)
	var serveErr bytes.Buffer
	serve.Stderr = &serveErr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() {
		serve.Process.Kill()
		if t.Failed() {
			t.Logf("serve's stderr:\n%s", serveErr.String())
		}
	})

	select {
	case n := <-notes:
		if n != "READY=1" {
			t.Fatalf("first notification %q, want READY=1", n)
		}
	case err := <-exited:
		t.Fatalf("serve exited: %v\n%s", err, serveErr.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("no READY=1 within 15s\n%s", serveErr.String())
	}
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var owned bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, homed.BusName).Store(&owned); err != nil || !owned {
		t.Fatalf("READY=1 but %s is not owned: %v", homed.BusName, err)
	}

	cli := func(uid uint32, args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, o.String(), e.String()
	}

	code, out, errOut := cli(0, "status", "alice", "--json")
	var st daemon.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: %d %s %s", code, out, errOut)
	}
	if st.User != "alice" || st.Npub != alice || st.UID != users[0].UID || !st.Enrolled || st.Session.State != "closed" || st.Session.Open != 0 {
		t.Fatalf("status: %+v", st)
	}
	if code, out, _ := cli(0, "status", "alice"); code != 0 || !strings.Contains(out, "alice ("+alice+")") || !strings.Contains(out, "session: closed") {
		t.Fatalf("status (human): %d\n%s", code, out)
	} else {
		t.Logf("nostr-homectl status alice:\n%s", out)
	}
	if code, out, _ := cli(0, "status"); code != 0 || !strings.Contains(out, "1 user(s)") {
		t.Fatalf("status of everyone: %d\n%s", code, out)
	}
	for _, c := range []struct {
		uid  uint32
		args []string
		want int
		msg  string
	}{
		{0, []string{"status", "carol"}, exitFailed, "UnknownUser"},
		{0, []string{"open", "alice"}, exitFailed, "no unlocked key"},
		{0, []string{"close", "alice"}, exitFailed, "no session of alice is open"},
		{0, []string{"warm", "alice"}, exitUnavailable, "no relay to ask"},
		{65534, []string{"status", "alice"}, exitDenied, "AccessDenied"},
		{65534, []string{"open", "alice"}, exitDenied, "AccessDenied"},
	} {
		code, _, errOut := cli(c.uid, c.args...)
		if code != c.want || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v as uid %d: exit %d (want %d): %s", c.args, c.uid, code, c.want, errOut)
		}
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, serveErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not exit within 20s of SIGTERM")
	}
	if n := <-notes; n != "STOPPING=1" {
		t.Fatalf("notification at stop %q", n)
	}
	// The daemon is gone, the bus is still there: not available.
	if code, _, errOut := cli(0, "status", "alice"); code != exitUnavailable {
		t.Fatalf("status with no daemon: exit %d: %s", code, errOut)
	}
}

// TestIsTerminal: warm's progress is on by default only when stderr is a terminal.
func TestIsTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if !isTerminal(pts) || isTerminal(file) || isTerminal(&bytes.Buffer{}) {
		t.Fatalf("isTerminal: pts %v, file %v, buffer %v", isTerminal(pts), isTerminal(file), isTerminal(&bytes.Buffer{}))
	}
}
