package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
)

func TestMain(m *testing.M) {
	code := m.Run()
	devstacktest.RemoveBinary()
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

// runDemoBinary runs `nostr-homed-devstack demo args...` with TMPDIR set to tmp, bounded
// beyond the demo's own limit.
func runDemoBinary(t *testing.T, tmp string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), demo.DefaultTimeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, devstacktest.Binary(t), append([]string{"demo"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
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
	return code, out.String(), errb.String()
}

func TestDemoSubcommand(t *testing.T) {
	tmp := t.TempDir()
	code, stdout, stderr := runDemoBinary(t, tmp)
	if code != 0 {
		t.Fatalf("demo: exit %d", code)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if last := lines[len(lines)-1]; last != demo.PassedLine {
		t.Fatalf("last line %q, want %q", last, demo.PassedLine)
	}
	for n := 1; n <= 8; n++ {
		if !strings.Contains(stdout, "\n"+strconv.Itoa(n)+". ") {
			t.Errorf("stdout lacks step %d", n)
		}
	}
	if stderr != "" {
		t.Errorf("stderr is not empty: %q", stderr)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("demo left %d entries in TMPDIR", len(left))
	}
}

func TestDemoKeepAndUsage(t *testing.T) {
	tmp := t.TempDir()
	code, stdout, _ := runDemoBinary(t, tmp, "--keep")
	if code != 0 || !strings.HasSuffix(stdout, demo.PassedLine+"\n") {
		t.Fatalf("demo --keep: exit %d", code)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 1 || !strings.Contains(stdout, "kept the demo's files in "+tmp) {
		t.Errorf("demo --keep kept %d entries in TMPDIR", len(left))
	}
	if code, _, stderr := runBinary(t, "demo", "-h"); code != 0 || !strings.Contains(stderr, "Usage: nostr-homed-devstack demo") {
		t.Errorf("demo -h: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runBinary(t, "demo", "extra"); code != 2 || !strings.Contains(stderr, "unexpected arguments") {
		t.Errorf("demo extra: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runBinary(t, "demo", "--no-such-flag"); code != 2 {
		t.Errorf("demo --no-such-flag: exit %d", code)
	}
}
