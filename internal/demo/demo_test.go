package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
)

// The demo runs the real daemon, nostrfs and PAM module: it needs root, cgo (libpam) and a
// built pam_nostr.so (`make build`). nostr-homectl and nostrfs are built afresh for the test
// process, so a test never runs stale binaries.

var (
	partsOnce sync.Once
	partsDir  string
	partsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if partsDir != "" {
		os.RemoveAll(partsDir)
	}
	os.Exit(code)
}

// requireDemo skips unless the demo can run here.
func requireDemo(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the demo runs the daemon under the root-only bus policy, mounts a home and writes /etc/pam.d")
	}
	if !pamAvailable {
		t.Skip("built without cgo: the demo drives PAM through libpam")
	}
}

// parts returns a directory with this tree's nostr-homectl and nostrfs and the built
// pam_nostr.so, as the demo's BuildDir.
func parts(t *testing.T) string {
	t.Helper()
	partsOnce.Do(func() {
		root, err := modroot.Find()
		if err != nil {
			partsErr = err
			return
		}
		if partsDir, partsErr = os.MkdirTemp("", "demo-test-bin-"); partsErr != nil {
			return
		}
		for _, name := range []string{"nostr-homectl", "nostrfs"} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(partsDir, name), "./cmd/"+name)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				partsErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
				return
			}
		}
		mod, err := os.ReadFile(filepath.Join(root, "build", "pam_nostr.so"))
		if err != nil {
			partsErr = fmt.Errorf("build/pam_nostr.so: %w (run make build)", err)
			return
		}
		partsErr = os.WriteFile(filepath.Join(partsDir, "pam_nostr.so"), mod, 0o644)
	})
	if partsErr != nil {
		t.Fatal(partsErr)
	}
	return partsDir
}

// runDemo runs the demo in a fresh temp parent directory and returns its output, the secrets
// it revealed and the parent.
func runDemo(t *testing.T, opts Options) (out string, s Secrets, parent string, err error) {
	t.Helper()
	requireDemo(t)
	opts.BuildDir = parts(t)
	opts.Reveal = func(got Secrets) { s = got }
	// Not t.TempDir(): the demo must remove its own directory; the test checks that.
	parent, perr := os.MkdirTemp("", "demo-test-")
	if perr != nil {
		t.Fatal(perr)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	opts.TempDir = parent
	var buf bytes.Buffer
	start := time.Now()
	err = Run(context.Background(), &buf, opts)
	t.Logf("demo took %v; output:\n%s", time.Since(start), buf.String())
	return buf.String(), s, parent, err
}

// checkCleanedUp checks that a run left nothing behind: no mount under its temp parent, no
// process working there, no PAM service file, an empty parent (unless kept).
func checkCleanedUp(t *testing.T, parent string, kept bool) {
	t.Helper()
	if left, err := mounts.Under(parent); err != nil || len(left) != 0 {
		t.Errorf("mounts left under %s: %v %v", parent, left, err)
	}
	if files := pamFilesOf(os.Getpid()); len(files) != 0 {
		t.Errorf("PAM service files left: %v", files)
	}
	if procs := processesMentioning(parent); len(procs) != 0 {
		t.Errorf("processes left running: %q", procs)
	}
	left, _ := os.ReadDir(parent)
	if kept {
		if len(left) != 1 {
			t.Errorf("kept %d entries in the temp parent, want 1", len(left))
		}
	} else if len(left) != 0 {
		t.Errorf("the demo left %d entries in its temp parent", len(left))
	}
	if v, ok := os.LookupEnv("DBUS_SYSTEM_BUS_ADDRESS"); ok && strings.Contains(v, parent) {
		t.Errorf("DBUS_SYSTEM_BUS_ADDRESS still points at the demo's bus: %s", v)
	}
}

// pamFilesOf lists the demo's PAM service files written by process pid (each says which
// process wrote it; other demos, e.g. another package's tests, may run at the same time).
func pamFilesOf(pid int) []string {
	var mine []string
	files, _ := filepath.Glob("/etc/pam.d/" + PAMServicePrefix + "*")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), fmt.Sprintf("(pid %d)", pid)) {
			mine = append(mine, f)
		}
	}
	return mine
}

// processesMentioning lists the command lines that mention s (the demo's children name its
// temp directory: dbus-daemon's config, the daemon's and nostrfs's --config).
func processesMentioning(s string) []string {
	var found []string
	pids, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, s) {
			found = append(found, cmd)
		}
	}
	return found
}

// checkNoSecrets checks that no secret, nor any 16-character piece of one, is in out.
func checkNoSecrets(t *testing.T, out string, s Secrets) {
	t.Helper()
	secrets := map[string]string{
		"nsec":           s.Nsec,
		"secret key hex": s.SecretKeyHex,
		"password":       s.Password,
		"home key":       s.HomeKeyHex,
	}
	lower := strings.ToLower(out)
	for what, v := range secrets {
		if len(v) < 16 {
			t.Errorf("the %s was not revealed to the test (%q)", what, v)
			continue
		}
		for i := 0; i+16 <= len(v); i++ {
			if strings.Contains(lower, strings.ToLower(v[i:i+16])) {
				t.Errorf("the output contains part of the %s", what)
				break
			}
		}
	}
	if !strings.HasPrefix(s.Nsec, "nsec1") {
		t.Errorf("revealed nsec %q", s.Nsec)
	}
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestRunPasses(t *testing.T) {
	out, s, parent, err := runDemo(t, Options{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, title := range stepTitles {
		if want := fmt.Sprintf("\n%d. %s", i+1, title); !strings.Contains(out, want) {
			t.Errorf("output lacks step %q", strings.TrimSpace(want))
		}
	}
	if !strings.Contains(out, "\n1. Starting a relay and a Blossom server on 127.0.0.1:") {
		t.Error("step 1 does not say where the stack listens")
	}
	if last := lastLine(out); last != PassedLine {
		t.Errorf("last line %q, want %q", last, PassedLine)
	}
	for _, want := range []string{
		"npub: npub1",
		"ws://127.0.0.1:",
		"$ nostr-homectl add npub1",
		"$ nostr-homectl warm demo",
		"pam_authenticate...",
		"the demo typed the password (not shown)",
		"pam_acct_mgmt...",
		"pam_open_session...",
		"is mounted: fuse.nostrfs (/proc/mounts)",
		"wrote ", "/home/demo/notes.txt (as root): \"hello from the nostr-homed demo",
		"pam_close_session...",
		"is no longer mounted",
		"kind 30081; the relay had none before the login",
		"       generation 1 from machine",
		"ciphertext only",
		"/cache/", // the wiped cache
		"the same text as written before the cache was wiped",
		"daemon stopped (SIGTERM, exit status 0)",
		"dbus-daemon stopped",
		"removed /etc/pam.d/" + PAMServicePrefix,
		"nothing is mounted under",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The text is shown when written and when read back after the wipe.
	if n := strings.Count(out, "hello from the nostr-homed demo, written on"); n != 2 {
		t.Errorf("the file's text appears %d times, want 2 (written, read back)", n)
	}
	if strings.Contains(out, "FAILED") {
		t.Error("output says FAILED")
	}
	checkNoSecrets(t, out, s)
	checkCleanedUp(t, parent, false)
}

func TestKeep(t *testing.T) {
	out, _, parent, err := runDemo(t, Options{Keep: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(parent, "nostr-homed-demo-*"))
	if len(dirs) != 1 {
		t.Fatalf("kept directories: %v", dirs)
	}
	for _, sub := range []string{"config.toml", "devstack/relay", "devstack/blossom/blobs", "lib/users.db", "home/demo"} {
		if _, err := os.Stat(filepath.Join(dirs[0], sub)); err != nil {
			t.Errorf("kept directory lacks %s: %v", sub, err)
		}
	}
	if !strings.Contains(out, "kept the demo's files in "+dirs[0]) {
		t.Error("output does not say where the files were kept")
	}
	if last := lastLine(out); last != PassedLine {
		t.Errorf("last line %q, want %q", last, PassedLine)
	}
	checkCleanedUp(t, parent, true)
}

// A wrong password fails the login (step 6) and everything is still cleaned up.
func TestWrongPasswordFailsAndCleansUp(t *testing.T) {
	out, s, parent, err := runDemo(t, Options{LoginPassword: "not the demo password"})
	var se *StepError
	if !errors.As(err, &se) || se.Step != 6 {
		t.Fatalf("Run with a wrong password: %v, want a StepError at step 6", err)
	}
	if last := lastLine(out); !strings.HasPrefix(last, "demo: FAILED at step 6 (Logging in through PAM with the password): pam_authenticate: ") {
		t.Errorf("last line %q", last)
	}
	if !strings.Contains(out, "(cleaning up after the failure)") || !strings.Contains(out, "the end of the daemon's log:") {
		t.Error("a failed run does not clean up visibly or show the daemon's log")
	}
	if strings.Contains(out, PassedLine) {
		t.Error("a failed run says it passed")
	}
	checkNoSecrets(t, out, s)
	checkCleanedUp(t, parent, false)
}

// A failure while the home is mounted and written: the open session is closed, the daemon
// and the bus stopped, nothing left mounted.
func TestFailureWithTheHomeMounted(t *testing.T) {
	out, s, parent, err := runDemo(t, Options{failAfter: 7})
	var se *StepError
	if !errors.As(err, &se) || se.Step != 7 {
		t.Fatalf("Run failing after step 7: %v, want a StepError at step 7", err)
	}
	if !strings.HasPrefix(lastLine(out), "demo: FAILED at step 7 (Writing a file in the home): ") {
		t.Errorf("last line %q", lastLine(out))
	}
	for _, want := range []string{"closed the open PAM session", "daemon stopped", "nothing is mounted under"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkNoSecrets(t, out, s)
	checkCleanedUp(t, parent, false)
}

func TestFailureBeforeTheStack(t *testing.T) {
	out, _, parent, err := runDemo(t, Options{Timeout: time.Nanosecond})
	var se *StepError
	if !errors.As(err, &se) || se.Step != 1 {
		t.Fatalf("Run with an expired timeout: %v, want a StepError at step 1", err)
	}
	if last := lastLine(out); !strings.HasPrefix(last, "demo: FAILED at step 1 ") {
		t.Errorf("last line %q", last)
	}
	checkCleanedUp(t, parent, false)
}

func TestMissingParts(t *testing.T) {
	requireDemo(t)
	parent := t.TempDir()
	var buf bytes.Buffer
	err := Run(context.Background(), &buf, Options{BuildDir: t.TempDir(), TempDir: parent})
	var se *StepError
	if !errors.As(err, &se) || se.Step != 1 || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("Run with an empty build dir: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left %d entries", len(left))
	}
}

func TestShorten(t *testing.T) {
	for in, want := range map[string]string{
		"short":                               "short",
		"0123456789abcdef0123456789abcdef":    "01234567...cdef",
		"npub1qqqqqqqqqqqqqqqqqqqqqqqqqqzzzz": "npub1qqqqqq...zzzz",
	} {
		if got := shorten(in); got != want {
			t.Errorf("shorten(%q) = %q, want %q", in, got, want)
		}
	}
}
