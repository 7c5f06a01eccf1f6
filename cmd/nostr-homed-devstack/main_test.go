package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip11"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/demo"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
)

func TestMain(m *testing.M) {
	code := m.Run()
	devstacktest.RemoveBinary()
	if demoDir != "" {
		os.RemoveAll(demoDir)
	}
	os.Exit(code)
}

func upload(t *testing.T, base string, data []byte) string {
	t.Helper()
	ks, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	tok, err := blossom.SignAuth(context.Background(), ks, blossom.VerbUpload, "upload", "", time.Minute, h)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/upload", bytes.NewReader(data))
	req.Header.Set("Authorization", blossom.AuthHeader(tok, blossom.Base64Std))
	req.Header.Set("X-SHA-256", h)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, resp.Header.Get("X-Reason"))
	}
	return h
}

func headStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Head(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	p := devstacktest.StartProcess(t)
	ru, err := url.Parse(p.RelayURL)
	if err != nil || ru.Scheme != "ws" || ru.Hostname() != "127.0.0.1" || ru.Port() == "" || ru.Path != "" {
		t.Fatalf("relay URL %q", p.RelayURL)
	}
	if p.BlossomURL != "http://"+ru.Host {
		t.Fatalf("blossom URL %q, relay URL %q: not the same port", p.BlossomURL, p.RelayURL)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := nip11.Fetch(ctx, p.RelayURL)
	if err != nil || info.Name != devstack.RelayName {
		t.Fatalf("NIP-11: %+v, %v", info, err)
	}

	h := upload(t, p.BlossomURL, []byte("a blob in the devstack binary"))
	if s := headStatus(t, p.BlossomURL+"/"+h); s != http.StatusOK {
		t.Fatalf("HEAD uploaded blob: %d", s)
	}
	if s := headStatus(t, p.BlossomURL+"/"+strings.Repeat("ab", 32)); s != http.StatusNotFound {
		t.Fatalf("HEAD absent blob: %d", s)
	}

	// A relay client connected while it stops.
	r, err := nostr.RelayConnect(ctx, p.RelayURL)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("stopped in %v", took)
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if took > devstack.DefaultShutdownTimeout+time.Second {
		t.Fatalf("took %v to stop", took)
	}
	if !strings.Contains(p.Stderr(), "stopped") {
		t.Fatalf("stderr lacks the shutdown log:\n%s", p.Stderr())
	}
}

func TestBinaryStopsOnSIGINT(t *testing.T) {
	p := devstacktest.StartProcess(t)
	if err := p.StopWith(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
}

func TestStartBinary(t *testing.T) {
	relayURL, blossomURL, stop := devstacktest.StartBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := nostr.RelayConnect(ctx, relayURL)
	if err != nil {
		t.Fatal(err)
	}
	ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: "hello devstack"}
	if err := ev.Sign(nostr.GeneratePrivateKey()); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	evs, err := r.QuerySync(ctx, nostr.Filter{IDs: []string{ev.ID}})
	if err != nil || len(evs) != 1 {
		t.Fatalf("query: %v, %v", evs, err)
	}
	r.Close()
	if s := headStatus(t, blossomURL+"/"+strings.Repeat("0", 64)); s != http.StatusNotFound {
		t.Fatalf("HEAD absent: %d", s)
	}
	stop()
	stop() // idempotent
}

// runBinary runs the binary to completion (bounded) and returns its exit code and output.
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, devstacktest.Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%v did not exit", args)
	}
	return code, out.String(), errb.String()
}

func TestRefusesRemoteListen(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		code, stdout, stderr := runBinary(t, "--listen", addr, "--data", t.TempDir())
		if code == 0 || stdout != "" || !strings.Contains(stderr, "--allow-remote") || !strings.Contains(stderr, "refusing to listen") {
			t.Fatalf("--listen %s: exit %d, stdout %q, stderr %q", addr, code, stdout, stderr)
		}
	}
}

func TestUsage(t *testing.T) {
	code, stdout, stderr := runBinary(t, "-h")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "Usage: nostr-homed-devstack") || !strings.Contains(stderr, "-allow-remote") {
		t.Fatalf("-h: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := runBinary(t, "--no-such-flag"); code != 2 || !strings.Contains(stderr, "Usage") {
		t.Fatalf("bad flag: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runBinary(t, "extra"); code != 2 || !strings.Contains(stderr, "unexpected arguments") {
		t.Fatalf("extra argument: exit %d, stderr %q", code, stderr)
	}
}

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:7777", false, true},
		{"127.0.0.1:0", false, true},
		{"127.1.2.3:0", false, true},
		{"[::1]:0", false, true},
		{"localhost:7777", false, true},
		{"0.0.0.0:0", false, false},
		{":7777", false, false},
		{"[::]:0", false, false},
		{"192.168.1.10:7777", false, false},
		{"example.com:7777", false, false},
		{"0.0.0.0:0", true, true},
		{"no-port", false, false},
		{"no-port", true, false},
	} {
		err := checkListen(c.addr, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("checkListen(%q, %v) = %v", c.addr, c.remote, err)
		}
	}
}

func TestDefaultDataDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/lib/state-test")
	if d, err := defaultDataDir(); err != nil || d != "/var/lib/state-test/nostr-homed-devstack" {
		t.Fatalf("with XDG_STATE_HOME: %q, %v", d, err)
	}
	t.Setenv("XDG_STATE_HOME", "relative/is/ignored")
	t.Setenv("HOME", "/home/tester")
	if d, err := defaultDataDir(); err != nil || d != "/home/tester/.local/state/nostr-homed-devstack" {
		t.Fatalf("without XDG_STATE_HOME: %q, %v", d, err)
	}
}

// ---- the demo subcommand ------------------------------------------------------------------

var (
	demoOnce sync.Once
	demoDir  string
	demoErr  error
)

// demoParts builds, once per test process, what the demo subcommand needs into a temp
// directory: this command with cgo (the demo drives libpam), nostr-homectl and nostrfs as
// `make build` does, and a copy of the built pam_nostr.so. It returns the directory.
func demoParts(t *testing.T) string {
	t.Helper()
	demoOnce.Do(func() {
		root, err := modroot.Find()
		if err != nil {
			demoErr = err
			return
		}
		if demoDir, demoErr = os.MkdirTemp("", "devstack-demo-test-"); demoErr != nil {
			return
		}
		for name, cgo := range map[string]string{"nostr-homed-devstack": "1", "nostr-homectl": "0", "nostrfs": "0"} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(demoDir, name), "./cmd/"+name)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
			if out, err := cmd.CombinedOutput(); err != nil {
				demoErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
				return
			}
		}
		mod, err := os.ReadFile(filepath.Join(root, "build", "pam_nostr.so"))
		if err != nil {
			demoErr = fmt.Errorf("build/pam_nostr.so: %w (run make build)", err)
			return
		}
		demoErr = os.WriteFile(filepath.Join(demoDir, "pam_nostr.so"), mod, 0o644)
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return demoDir
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the demo runs the daemon, mounts a home and writes /etc/pam.d")
	}
}

// runDemoBinary runs `BIN demo args...` with TMPDIR set to tmp, bounded beyond the demo's
// own limit, with cred if not nil.
func runDemoBinary(t *testing.T, bin, tmp string, cred *syscall.Credential, args ...string) (code int, stdout, stderr string) {
	code, stdout, stderr, _ = runDemoBinaryPID(t, bin, tmp, cred, args...)
	return code, stdout, stderr
}

// runDemoBinaryPID is runDemoBinary that also returns the demo's process ID.
func runDemoBinaryPID(t *testing.T, bin, tmp string, cred *syscall.Credential, args ...string) (code int, stdout, stderr string, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), demo.DefaultTimeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"demo"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo %v: %v in %v\nstdout:\n%s\nstderr:\n%s", args, err, time.Since(start), out.String(), errb.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("demo %v did not exit", args)
	}
	return code, out.String(), errb.String(), cmd.Process.Pid
}

func TestDemoSubcommand(t *testing.T) {
	requireRoot(t)
	dir := demoParts(t)
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	code, stdout, stderr, pid := runDemoBinaryPID(t, filepath.Join(dir, "nostr-homed-devstack"), tmp, nil,
		"--build", dir, "--dbus-policy", filepath.Join(root, "dbus", "org.nostr.Homed1.conf"))
	if code != 0 {
		t.Fatalf("demo: exit %d", code)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if last := lines[len(lines)-1]; last != demo.PassedLine {
		t.Fatalf("last line %q, want %q", last, demo.PassedLine)
	}
	for n := 1; n <= 12; n++ {
		if !strings.Contains(stdout, "\n"+strconv.Itoa(n)+". ") {
			t.Errorf("stdout lacks step %d", n)
		}
	}
	for _, want := range []string{"is mounted: fuse.nostrfs", "the same text as written before the cache was wiped", filepath.Join(dir, "nostr-homectl") + " serve"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if stderr != "" {
		t.Errorf("stderr is not empty: %q", stderr)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("demo left %d entries in TMPDIR", len(left))
	}
	// Each file says which process wrote it: other demos (internal/demo's tests) may run now.
	files, _ := filepath.Glob("/etc/pam.d/" + demo.PAMServicePrefix + "*")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), fmt.Sprintf("(pid %d)", pid)) {
			t.Errorf("PAM service file left: %s", f)
		}
	}
}

// A build dir without the programs: the demo fails at step 1, says to build, exits 1.
func TestDemoMissingBuild(t *testing.T) {
	requireRoot(t)
	tmp := t.TempDir()
	code, stdout, _ := runDemoBinary(t, filepath.Join(demoParts(t), "nostr-homed-devstack"), tmp, nil, "--build", t.TempDir())
	if code != 1 || !strings.Contains(stdout, "demo: FAILED at step 1 ") || !strings.Contains(stdout, "make build") {
		t.Fatalf("demo --build EMPTY: exit %d", code)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("demo left %d entries in TMPDIR", len(left))
	}
}

// Not root: the demo refuses at once and says to use sudo. (As root the test runs the binary
// as nobody.)
func TestDemoNeedsRoot(t *testing.T) {
	bin := devstacktest.Binary(t)
	var cred *syscall.Credential
	tmp := t.TempDir()
	if os.Geteuid() == 0 {
		// nobody must reach the binary and TMPDIR.
		dir, err := os.MkdirTemp("", "devstack-demo-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "nostr-homed-devstack")
		tmp = filepath.Join(dir, "tmp")
		for _, err := range []error{os.Chmod(dir, 0o755), os.WriteFile(bin, b, 0o755), os.Mkdir(tmp, 0o777), os.Chmod(tmp, 0o777)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	start := time.Now()
	code, stdout, _ := runDemoBinary(t, bin, tmp, cred)
	if code != 1 || !strings.Contains(stdout, "demo: FAILED before step 1: the demo needs root") || !strings.Contains(stdout, "`sudo make demo`") {
		t.Fatalf("demo as non-root: exit %d", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to refuse", took)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("demo left %d entries in TMPDIR", len(left))
	}
}

// A build without cgo (what `make build` makes) cannot drive PAM: it says so, and how to run
// the demo instead.
func TestDemoWithoutCgo(t *testing.T) {
	requireRoot(t)
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "nostr-homed-devstack")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/nostr-homed-devstack")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	code, stdout, _ := runDemoBinary(t, bin, t.TempDir(), nil)
	if code != 1 || !strings.Contains(stdout, "built without cgo") || !strings.Contains(stdout, "`sudo make demo`") {
		t.Fatalf("demo without cgo: exit %d", code)
	}
}

func TestDemoUsage(t *testing.T) {
	if code, _, stderr := runBinary(t, "demo", "-h"); code != 0 || !strings.Contains(stderr, "Usage: nostr-homed-devstack demo") || !strings.Contains(stderr, "-build") {
		t.Errorf("demo -h: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runBinary(t, "demo", "extra"); code != 2 || !strings.Contains(stderr, "unexpected arguments") {
		t.Errorf("demo extra: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runBinary(t, "demo", "--no-such-flag"); code != 2 {
		t.Errorf("demo --no-such-flag: exit %d", code)
	}
}
