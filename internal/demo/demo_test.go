package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runDemo runs the demo in a temp parent directory and returns its output and the secrets it
// revealed.
func runDemo(t *testing.T, opts Options) (string, Secrets, error) {
	t.Helper()
	var buf bytes.Buffer
	var got Secrets
	opts.Reveal = func(s Secrets) { got = s }
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	start := time.Now()
	err := Run(context.Background(), &buf, opts)
	t.Logf("demo took %v; output:\n%s", time.Since(start), buf.String())
	return buf.String(), got, err
}

func TestRunPasses(t *testing.T) {
	parent := t.TempDir()
	out, _, err := runDemo(t, Options{TempDir: parent})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, title := range stepTitles {
		if want := fmt.Sprintf("\n%d. %s\n", i+1, title); !strings.Contains(out, want) {
			t.Errorf("output lacks step %q", strings.TrimSpace(want))
		}
	}
	if n := len(stepTitles); n != 8 {
		t.Errorf("%d steps, want 8", n)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != PassedLine {
		t.Errorf("last line %q, want %q", last, PassedLine)
	}
	for _, want := range []string{"hello from machine A at", "same text as machine A wrote", `rule "author"`, `rule "signature"`, "ws://127.0.0.1:", "npub1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "FAILED") {
		t.Error("output says FAILED")
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("the demo left %d entries in its temp parent (want none without Keep)", len(left))
	}
}

func TestOutputHasNoSecrets(t *testing.T) {
	out, s, err := runDemo(t, Options{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	secrets := map[string]string{
		"nsec":             s.Nsec,
		"secret key hex":   s.SecretKeyHex,
		"password":         s.Password,
		"home key":         s.HomeKeyHex,
		"derived file key": s.FileKeyHex,
	}
	for what, v := range secrets {
		if len(v) < 16 {
			t.Fatalf("the %s was not revealed to the test (%q)", what, v)
		}
		lower := strings.ToLower(out)
		// The whole value, and any 16-character piece of it, in any case.
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

func TestKeep(t *testing.T) {
	parent := t.TempDir()
	out, _, err := runDemo(t, Options{TempDir: parent, Keep: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(parent, "nostr-homed-demo-*"))
	if len(dirs) != 1 {
		t.Fatalf("kept directories: %v", dirs)
	}
	for _, sub := range []string{"devstack/relay", "devstack/blossom", "machine-a/home/hello.txt", "machine-b/cache"} {
		if _, err := os.Stat(filepath.Join(dirs[0], sub)); err != nil {
			t.Errorf("kept directory lacks %s: %v", sub, err)
		}
	}
	if !strings.Contains(out, "kept the demo's files in "+dirs[0]) {
		t.Error("output does not say where the files were kept")
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != PassedLine {
		t.Errorf("last line %q, want %q", last, PassedLine)
	}
}

func TestFailureNamesTheStep(t *testing.T) {
	parent := t.TempDir()
	out, _, err := runDemo(t, Options{TempDir: parent, Timeout: time.Nanosecond})
	var se *StepError
	if !errors.As(err, &se) || se.Step != 1 {
		t.Fatalf("Run with an expired timeout: %v, want a StepError at step 1", err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "demo: FAILED at step 1: ") {
		t.Errorf("last line %q", last)
	}
	if strings.Contains(out, PassedLine) {
		t.Error("a failed run says it passed")
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("a failed run left %d entries in its temp parent", len(left))
	}
}

// Machine B with the wrong password gets nowhere: NIP-49 refuses to unlock the key.
func TestMachineBWrongPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	r := &run{out: &buf, opts: Options{TempDir: t.TempDir()}, reveal: func(Secrets) {}}
	defer r.cleanup()
	for i, step := range []func(context.Context) error{r.startStack, r.createIdentity, r.publishAccount, r.machineA} {
		if err := step(ctx); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
	work := t.TempDir()
	if _, err := machineB(ctx, &buf, work, r.npub, r.password+"x", r.stack.RelayURL()); err == nil || !strings.Contains(err.Error(), "unlocking the key") {
		t.Fatalf("wrong password: %v", err)
	}
	got, err := machineB(ctx, &buf, work, r.npub, r.password, r.stack.RelayURL())
	if err != nil || got.Text != r.text || got.ManifestID != r.manifestEv.ID {
		t.Fatalf("right password: %+v, %v", got, err)
	}
}

func TestFileEncryption(t *testing.T) {
	key, err := fileKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("hello from machine A")
	a, err := encryptFile(key, pt)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := encryptFile(key, pt)
	if bytes.Equal(a, b) || bytes.Contains(a, pt) {
		t.Fatal("encryption is deterministic or shows the plaintext")
	}
	if got, err := decryptFile(key, a); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	a[len(a)-1] ^= 1
	if _, err := decryptFile(key, a); err == nil {
		t.Fatal("a flipped bit decrypted")
	}
	other, _ := fileKey(bytes.Repeat([]byte{8}, 32))
	if _, err := decryptFile(other, b); err == nil {
		t.Fatal("another home key decrypted")
	}
	if _, err := decryptFile(key, b[:10]); err == nil {
		t.Fatal("a truncated file decrypted")
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
