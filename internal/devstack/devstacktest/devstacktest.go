// Package devstacktest gives tests of other packages a real relay and Blossom server:
// Start runs a devstack.Stack in the test process, StartBinary runs the
// nostr-homed-devstack command as a separate process (what a developer runs, and what tests
// of code that must not share the test's process want). Both use a fresh temp data
// directory and stop in t.Cleanup, also when the test fails.
//
// StartBinary uses $NOSTR_HOMED_DEVSTACK_BIN if set; otherwise it builds
// ./cmd/nostr-homed-devstack once per test process with `go build` into a temp directory
// named after the process id. Directories of processes that have exited are removed by the
// next build; a TestMain can call RemoveBinary to remove its own.
package devstacktest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/devstack"
)

// EnvBinary names an already built nostr-homed-devstack binary to use instead of building one.
const EnvBinary = "NOSTR_HOMED_DEVSTACK_BIN"

// ReadyTimeout bounds the wait for the binary's ready line.
const ReadyTimeout = 20 * time.Second

// StopTimeout bounds the wait for the binary to exit after SIGTERM before it is killed.
const StopTimeout = 10 * time.Second

// Start runs a stack in this process on 127.0.0.1 with a temp data directory; it is closed
// in t.Cleanup.
func Start(t testing.TB) *devstack.Stack {
	t.Helper()
	return StartDir(t, t.TempDir())
}

// StartDir is Start with a given data directory, e.g. to restart a stack on the same data.
// The stack is closed in t.Cleanup (Close is idempotent: tests may close it earlier).
func StartDir(t testing.TB, dir string) *devstack.Stack {
	t.Helper()
	logf, silence := testLogf(t)
	st, err := devstack.Start(context.Background(), devstack.Options{Listen: "127.0.0.1:0", DataDir: dir, Logf: logf})
	if err != nil {
		t.Fatalf("devstacktest: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("devstacktest: closing the stack: %v", err)
		}
		silence()
	})
	return st
}

// testLogf logs through t until silenced: t.Logf after the test has finished panics, and
// khatru's goroutines may still log while connections wind down.
func testLogf(t testing.TB) (logf func(string, ...any), silence func()) {
	var mu sync.Mutex
	done := false
	return func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if !done {
				t.Logf("devstack: "+format, args...)
			}
		}, func() {
			mu.Lock()
			done = true
			mu.Unlock()
		}
}

// Process is a running nostr-homed-devstack binary.
type Process struct {
	RelayURL   string
	BlossomURL string
	DataDir    string
	Cmd        *exec.Cmd

	stderr     *syncbuf.Buffer
	exited     chan struct{}
	waitErr    error
	stopOnce   sync.Once
	stopErr    error
	stopCalled atomic.Bool // Stop or StopWith was called by the test: it has the error
}

// StartBinary runs the nostr-homed-devstack binary on 127.0.0.1 with a temp data directory
// and returns its URLs once it has printed them and "ready". stop sends SIGTERM and waits
// (killing it after StopTimeout); it fails the test unless the process exits 0 in time.
// stop is idempotent and also runs in t.Cleanup.
func StartBinary(t testing.TB) (relayURL, blossomURL string, stop func()) {
	t.Helper()
	p := StartProcess(t)
	var once sync.Once
	return p.RelayURL, p.BlossomURL, func() {
		t.Helper()
		once.Do(func() {
			if err := p.Stop(); err != nil {
				t.Errorf("devstacktest: %v", err)
			}
		})
	}
}

// StartProcess is StartBinary returning the Process, for tests that inspect how it stops.
// extra arguments are appended after --listen 127.0.0.1:0 --data <temp dir>.
func StartProcess(t testing.TB, extra ...string) *Process {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--data", dir}, extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{DataDir: dir, Cmd: cmd, stderr: &syncbuf.Buffer{Limit: 4 << 20}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("devstacktest: starting %s: %v", bin, err)
	}
	lines := make(chan string, 16)
	stdoutDone := make(chan struct{})
	go func() {
		defer close(stdoutDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody listens after "ready"; keep draining the pipe
			}
		}
		close(lines)
	}()
	go func() {
		// cmd.Wait closes stdout's pipe: let the scanner finish first.
		<-stdoutDone
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		// Report here only what no Stop call has returned to the test already.
		if err := p.stopWith(syscall.SIGTERM); err != nil && !p.stopCalled.Load() {
			t.Errorf("devstacktest: %v", err)
		}
		if t.Failed() {
			t.Logf("devstacktest: nostr-homed-devstack stderr:\n%s", p.stderr.String())
		}
	})

	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.exited
				t.Fatalf("devstacktest: nostr-homed-devstack exited before ready (%v); stderr:\n%s", p.waitErr, p.stderr.String())
			}
			switch {
			case strings.HasPrefix(line, "relay: "):
				p.RelayURL = strings.TrimPrefix(line, "relay: ")
			case strings.HasPrefix(line, "blossom: "):
				p.BlossomURL = strings.TrimPrefix(line, "blossom: ")
			case line == "ready":
				if p.RelayURL == "" || p.BlossomURL == "" {
					t.Fatalf("devstacktest: ready without both URLs (relay %q, blossom %q)", p.RelayURL, p.BlossomURL)
				}
				return p
			default:
				t.Fatalf("devstacktest: unexpected line on stdout: %q", line)
			}
		case <-timer.C:
			t.Fatalf("devstacktest: no ready line within %v; stderr:\n%s", ReadyTimeout, p.stderr.String())
		}
	}
}

// Stop sends SIGTERM and waits up to StopTimeout, then SIGKILLs. It returns nil only if
// the process exited with status 0 in time. Idempotent: later calls return the first result.
func (p *Process) Stop() error { return p.StopWith(syscall.SIGTERM) }

// StopWith is Stop with another signal (SIGINT, say). Only the first Stop or StopWith call
// signals; later ones return its result.
func (p *Process) StopWith(sig syscall.Signal) error {
	p.stopCalled.Store(true)
	return p.stopWith(sig)
}

func (p *Process) stopWith(sig syscall.Signal) error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			p.stopErr = fmt.Errorf("nostr-homed-devstack had already exited before stop: %v", p.waitErr)
			return
		default:
		}
		if err := p.Cmd.Process.Signal(sig); err != nil {
			p.stopErr = fmt.Errorf("sending %v: %w", sig, err)
		}
		select {
		case <-p.exited:
			if p.waitErr != nil && p.stopErr == nil {
				p.stopErr = fmt.Errorf("nostr-homed-devstack exited with %v after %v", p.waitErr, sig)
			}
		case <-time.After(StopTimeout):
			p.Cmd.Process.Kill()
			<-p.exited
			p.stopErr = fmt.Errorf("nostr-homed-devstack did not exit within %v of %v; killed", StopTimeout, sig)
		}
	})
	return p.stopErr
}

// Stderr is what the process has written to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// binDirPrefix starts the names of build directories; the process id follows.
const binDirPrefix = "nostr-homed-devstack-bin-"

// Binary returns the path of a nostr-homed-devstack binary: $NOSTR_HOMED_DEVSTACK_BIN, or
// one built once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("devstacktest: %v", buildErr)
	}
	return buildPath
}

// RemoveBinary removes the binary this process built, if any. For TestMain, after m.Run.
func RemoveBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

func build() (string, error) {
	root, err := modroot.Find()
	if err != nil {
		return "", fmt.Errorf("%w; set %s to a built nostr-homed-devstack", err, EnvBinary)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building nostr-homed-devstack needs the go command (or set %s): %w", EnvBinary, err)
	}
	removeStaleBuilds()
	dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	out := filepath.Join(dir, "nostr-homed-devstack")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./cmd/nostr-homed-devstack")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/nostr-homed-devstack in %s: %v\n%s", root, err, msg)
	}
	return out, nil
}

// removeStaleBuilds removes build directories of test processes that no longer run.
func removeStaleBuilds() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), binDirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(m)
		}
	}
}

var _ io.Writer = (*syncbuf.Buffer)(nil)
