package ipfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nostr-homed/nostr-homed/internal/heapwatch"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// ---------------------------------------------------------------------------------------
// A real kubo daemon for the tests. The binary comes from NOSTR_HOMED_IPFS_BIN or
// build/ipfs at the repository root (make build/ipfs). The shared offline daemon is started
// once per package run, on first use, and stopped by TestMain.

const skipEnv = "NOSTR_HOMED_SKIP_IPFS"

func TestMain(m *testing.M) {
	code := m.Run()
	stopAllNodes()
	os.Exit(code)
}

type kuboNode struct {
	bin, repo string
	env       []string
	api       string // multiaddr from $IPFS_PATH/api
	cmd       *exec.Cmd
	exited    chan struct{}
	stopOnce  sync.Once
}

var (
	nodesMu    sync.Mutex
	nodes      []*kuboNode
	sharedOnce sync.Once
	shared     *kuboNode
	sharedErr  error
)

func stopAllNodes() {
	nodesMu.Lock()
	all := nodes
	nodes = nil
	nodesMu.Unlock()
	for _, n := range all {
		n.stop()
	}
}

// kuboBin returns the kubo binary or ends the test: it skips only when NOSTR_HOMED_SKIP_IPFS=1.
func kuboBin(t testing.TB) string {
	t.Helper()
	if os.Getenv(skipEnv) == "1" {
		t.Skip(skipEnv + "=1: skipping a test that needs a real kubo (IPFS) daemon")
	}
	p := os.Getenv("NOSTR_HOMED_IPFS_BIN")
	src := "NOSTR_HOMED_IPFS_BIN"
	if p == "" {
		var err error
		if p, err = filepath.Abs(filepath.Join("..", "..", "build", "ipfs")); err != nil {
			t.Fatal(err)
		}
		src = "the default path"
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("no kubo binary at %s (%s): run `make build/ipfs` in the repository root, "+
			"or set NOSTR_HOMED_IPFS_BIN to a kubo v0.42 binary (%s=1 skips these tests)", p, src, skipEnv)
	}
	return p
}

// sharedNode returns the package's offline kubo daemon, starting it on first use.
func sharedNode(t testing.TB) *kuboNode {
	t.Helper()
	bin := kuboBin(t)
	sharedOnce.Do(func() { shared, sharedErr = startNode(bin, true) })
	if sharedErr != nil {
		t.Fatalf("starting kubo: %v", sharedErr)
	}
	return shared
}

// startNode initialises a repository in a new temporary directory and runs a daemon on
// loopback ports chosen by the kernel; offline, it has no swarm at all.
func startNode(bin string, offline bool) (*kuboNode, error) {
	repo, err := os.MkdirTemp("", "nostr-homed-kubo-")
	if err != nil {
		return nil, err
	}
	n := &kuboNode{bin: bin, repo: repo, exited: make(chan struct{}),
		env: append(os.Environ(), "IPFS_PATH="+repo, "IPFS_TELEMETRY=off")}
	nodesMu.Lock()
	nodes = append(nodes, n)
	nodesMu.Unlock()
	fail := func(err error) (*kuboNode, error) {
		n.stop()
		return nil, err
	}
	swarm := `[]`
	if !offline {
		swarm = `["/ip4/127.0.0.1/tcp/0"]`
	}
	for _, args := range [][]string{
		{"init", "--profile=test"},
		{"config", "--json", "Addresses.API", `"/ip4/127.0.0.1/tcp/0"`},
		{"config", "--json", "Addresses.Gateway", `"/ip4/127.0.0.1/tcp/0"`},
		{"config", "--json", "Addresses.Swarm", swarm},
	} {
		if out, err := n.run(nil, args...); err != nil {
			return fail(fmt.Errorf("ipfs %s: %v\n%s", strings.Join(args, " "), err, out))
		}
	}
	args := []string{"daemon"}
	if offline {
		args = append(args, "--offline")
	}
	logf, err := os.Create(filepath.Join(repo, "daemon.log"))
	if err != nil {
		return fail(err)
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = n.env
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = daemonSysProcAttr()
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return fail(err)
	}
	go func() {
		n.cmd.Wait()
		logf.Close()
		close(n.exited)
	}()

	// Ready when $IPFS_PATH/api names the RPC address and it answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(repo, "api")); err == nil {
			n.api = strings.TrimSpace(string(b))
			if base, err := parseEndpoint(n.api); err == nil {
				resp, err := http.Post(base+"/api/v0/version", "", nil)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return n, nil
					}
				}
			}
		}
		select {
		case <-n.exited:
			return fail(fmt.Errorf("kubo daemon exited early: %s\n%s", n.cmd.ProcessState, n.log()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("kubo daemon not ready after 60s\n%s", n.log()))
		}
	}
}

func (n *kuboNode) run(stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.Command(n.bin, args...)
	cmd.Env = n.env
	cmd.Stdin = stdin
	return cmd.CombinedOutput()
}

func (n *kuboNode) log() string {
	b, _ := os.ReadFile(filepath.Join(n.repo, "daemon.log"))
	return string(b)
}

// stop interrupts the daemon (kubo shuts down cleanly on SIGINT), kills it if it lingers, and
// removes the repository.
func (n *kuboNode) stop() {
	n.stopOnce.Do(func() {
		if n.cmd != nil && n.cmd.Process != nil {
			n.cmd.Process.Signal(os.Interrupt)
			select {
			case <-n.exited:
			case <-time.After(10 * time.Second):
				n.cmd.Process.Kill()
				<-n.exited
			}
		}
		os.RemoveAll(n.repo)
	})
}

func (n *kuboNode) client(t testing.TB, opts ...Option) *Client {
	t.Helper()
	c, err := New(n.api, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rpc posts to the node directly, without the client under test.
func (n *kuboNode) rpc(t testing.TB, cmd string, out any) {
	t.Helper()
	base, err := parseEndpoint(n.api)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/api/v0/"+cmd, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: %s", cmd, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v: %s", cmd, err, b)
		}
	}
}

// ---------------------------------------------------------------------------------------
// Test data.

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// prngBlob is a reproducible pseudo-random blob that is never held in memory: each 4 KiB
// block comes from a ChaCha8 generator seeded with (seed, block number).
type prngBlob struct {
	seed uint64
	size int64
}

const prngBlock = 4096

func (p prngBlob) block(i int64, buf *[prngBlock]byte) {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[0:], p.seed)
	binary.LittleEndian.PutUint64(s[8:], uint64(i))
	rand.NewChaCha8(s).Read(buf[:])
}

func (p prngBlob) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	var buf [prngBlock]byte
	n := 0
	for n < len(b) && off < p.size {
		p.block(off/prngBlock, &buf)
		within := off % prngBlock
		end := min(int64(prngBlock), within+p.size-off)
		c := copy(b[n:], buf[within:end])
		n += c
		off += int64(c)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// readAll(t)(c.Get(...)) reads a whole stream or ends the test.
func readAll(t testing.TB) func(io.ReadCloser, error) []byte {
	return func(rc io.ReadCloser, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ---------------------------------------------------------------------------------------
// Tests without kubo.

func TestCIDKnownVectors(t *testing.T) {
	for _, tc := range []struct{ data, cid string }{
		// Both printed by kubo 0.42's block/put for these bytes.
		{"hello", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"},
		{"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"},
	} {
		got, err := CID(sha([]byte(tc.data)))
		if err != nil || got != tc.cid {
			t.Errorf("CID(sha256(%q)) = %q, %v; want %q", tc.data, got, err, tc.cid)
		}
	}
	for _, bad := range []string{"", "abc", strings.Repeat("A", 64), strings.Repeat("0", 63) + "g", strings.Repeat("0", 65)} {
		if _, err := CID(bad); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("CID(%q) = %v, want ErrBadHash", bad, err)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"/ip4/127.0.0.1/tcp/5001":        "http://127.0.0.1:5001",
		"/ip6/::1/tcp/5001":              "http://[::1]:5001",
		"/dns4/ipfs.local/tcp/443/https": "https://ipfs.local:443",
		"http://127.0.0.1:5001":          "http://127.0.0.1:5001",
		"http://127.0.0.1:5001/":         "http://127.0.0.1:5001",
		"http://127.0.0.1:5001/api/v0/":  "http://127.0.0.1:5001",
		"https://node.example/kubo":      "https://node.example/kubo",
	} {
		got, err := parseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("parseEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:5001", "/unix/tmp/sock", "/ip4/1.2.3.4/udp/1", "ftp://x", "/ip4/1.2.3.4/tcp/99999"} {
		if got, err := parseEndpoint(bad); err == nil {
			t.Errorf("parseEndpoint(%q) = %q, want an error", bad, got)
		}
	}
}

// fake is a scripted stand-in for kubo, for failures a real node does not produce on demand.
type fake struct {
	*httptest.Server
	calls atomic.Int32
}

func newFake(t *testing.T, h func(n int32, w http.ResponseWriter, r *http.Request)) *fake {
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(f.calls.Add(1), w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func kuboError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	json.NewEncoder(w).Encode(map[string]any{"Message": msg, "Code": 0, "Type": "error"})
}

var hello = sha([]byte("hello"))

func TestRetryOn5xx(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, `{"Key":"x","Size":5}`)
	})
	c, _ := New(f.URL, WithRetries(3, time.Millisecond))
	size, err := c.Stat(context.Background(), hello)
	if err != nil || size != 5 {
		t.Fatalf("Stat = %d, %v", size, err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestRetriesExhausted(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	})
	c, _ := New(f.URL, WithRetries(2, time.Millisecond))
	_, err := c.Stat(context.Background(), hello)
	if err == nil || !strings.Contains(err.Error(), "overloaded") || !strings.Contains(err.Error(), "block/stat") ||
		!strings.Contains(err.Error(), f.URL) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestNoRetryOnKuboError(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		kuboError(w, "some deterministic failure")
	})
	c, _ := New(f.URL, WithRetries(3, time.Millisecond))
	_, err := c.Stat(context.Background(), hello)
	var ae *APIError
	if !errors.As(err, &ae) || !ae.Kubo || ae.Message != "some deterministic failure" || ae.Command != "block/stat" {
		t.Fatalf("err = %#v", err)
	}
	if errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("%v is not a not-found error", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, _ := New("http://"+addr, WithRetries(2, time.Millisecond))
	_, err = c.Stat(context.Background(), hello)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
}

func TestWatchdogTimeout(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answer
	})
	c, _ := New(f.URL, WithTimeout(200*time.Millisecond), WithRetries(1, time.Millisecond), WithLocalOnly(true))
	start := time.Now()
	_, err := c.Stat(context.Background(), hello)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 200ms") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

func TestContextCancel(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	c, _ := New(f.URL, WithTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, hello)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d calls, want 1 (no retry after cancellation)", n)
	}
}

func TestStreamStall(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v0/block/stat" {
			fmt.Fprintf(w, `{"Key":"x","Size":5}`)
			return
		}
		w.Write([]byte("he"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c, _ := New(f.URL, WithTimeout(300*time.Millisecond))
	rc, err := c.Get(context.Background(), hello)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start := time.Now()
	b, err := io.ReadAll(rc)
	if string(b) != "he" || err == nil || !strings.Contains(err.Error(), "did not answer within") {
		t.Fatalf("read %q, %v", b, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

// A slow reader is not a stalled stream: the watchdog runs only while waiting for kubo.
func TestSlowReaderIsNotTimedOut(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v0/block/stat" {
			fmt.Fprintf(w, `{"Key":"x","Size":5}`)
			return
		}
		w.Write([]byte("hello"))
	})
	c, _ := New(f.URL, WithTimeout(100*time.Millisecond))
	rc, err := c.Get(context.Background(), hello)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []byte
	for {
		time.Sleep(150 * time.Millisecond)
		var b [2]byte
		n, err := rc.Read(b[:])
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
}

// An untrusted node that serves other bytes is caught at EOF.
func TestCorruptNode(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v0/block/stat" {
			fmt.Fprintf(w, `{"Key":"x","Size":5}`)
			return
		}
		w.Write([]byte("jello"))
	})
	c, _ := New(f.URL)
	rc, err := c.Get(context.Background(), hello)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("err = %v, want ErrHashMismatch", err)
	}
}

func TestStreamErrorTrailer(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v0/block/stat" {
			fmt.Fprintf(w, `{"Key":"x","Size":5}`)
			return
		}
		w.Header().Set("Trailer", "X-Stream-Error")
		w.Write([]byte("hel"))
		w.Header().Set("X-Stream-Error", "disk on fire")
	})
	c, _ := New(f.URL)
	rc, err := c.GetRange(context.Background(), hello, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
}

// A Put retried after a 5xx sends the whole blob again from the ReaderAt.
func TestPutRetryResends(t *testing.T) {
	data := randomBytes(300 << 10)
	h := sha(data)
	cid, _ := CID(h)
	var got []string
	var mu sync.Mutex
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		p, err := mr.NextPart()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, err := io.ReadAll(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, sha(b))
		mu.Unlock()
		if n == 1 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		if q.Get("cid-codec") != "raw" || q.Get("mhtype") != "sha2-256" || q.Get("mhlen") != "32" || q.Get("pin") != "true" || q.Has("allow-big-block") {
			kuboError(w, "unexpected options "+r.URL.RawQuery)
			return
		}
		fmt.Fprintf(w, `{"Key":%q,"Size":%d}`+"\n", cid, len(b))
	})
	c, _ := New(f.URL, WithRetries(2, time.Millisecond))
	rs, err := c.Put(context.Background(), h, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].URL != "ipfs://"+cid || rs[0].Size != int64(len(data)) || rs[0].Backend != f.URL {
		t.Errorf("receipts %+v", rs)
	}
	if len(got) != 2 || got[0] != h || got[1] != h {
		t.Errorf("server received %v, want %s twice", got, h)
	}
}

// failReaderAt fails the test if Put reads it.
type failReaderAt struct{ t *testing.T }

func (f failReaderAt) ReadAt(p []byte, off int64) (int, error) {
	f.t.Error("blob read although it should have been refused")
	return 0, io.EOF
}

func TestTooLargeRefusedBeforeSending(t *testing.T) {
	f := newFake(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		t.Error("request sent for a blob over the limit")
	})
	c, _ := New(f.URL)
	_, err := c.Put(context.Background(), hello, BlockLimit+1, failReaderAt{t})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// ---------------------------------------------------------------------------------------
// Tests against a real kubo.

func TestSmallRoundTrip(t *testing.T) {
	n := sharedNode(t)
	c := n.client(t)
	ctx := ctxT(t)
	for _, data := range [][]byte{[]byte("small blob for nostr-homed " + time.Now().String()), {}} {
		h := sha(data)
		cid, _ := CID(h)
		rs, err := c.Put(ctx, h, int64(len(data)), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].Size != int64(len(data)) || rs[0].URL != "ipfs://"+cid || rs[0].Backend != c.Endpoint() {
			t.Errorf("receipts %+v", rs)
		}
		// Idempotent.
		if _, err := c.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t)(c.Get(ctx, h)); !bytes.Equal(got, data) {
			t.Fatalf("Get = %q, want %q", got, data)
		}
		if size, err := c.Stat(ctx, h); err != nil || size != int64(len(data)) {
			t.Fatalf("Stat = %d, %v", size, err)
		}
		if len(data) > 10 {
			if got := readAll(t)(c.GetRange(ctx, h, 3, 7)); !bytes.Equal(got, data[3:10]) {
				t.Fatalf("GetRange = %q, want %q", got, data[3:10])
			}
		}
		// Pinned, directly.
		var pins struct {
			Keys map[string]struct{ Type string }
		}
		n.rpc(t, "pin/ls?arg="+cid, &pins)
		if pins.Keys[cid].Type != "recursive" {
			t.Errorf("pin/ls %s = %+v", cid, pins)
		}
	}
}

func TestLargeStreamingRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB transfer skipped in -short mode")
	}
	n := sharedNode(t)
	const size = 64 << 20
	const heapLimit = 32 << 20
	c := n.client(t, WithMaxBlockSize(128<<20))
	ctx := ctxT(t)
	src := prngBlob{seed: rand.Uint64(), size: size}
	h, err := blobstore.HashReaderAt(src, size)
	if err != nil {
		t.Fatal(err)
	}

	stop := heapwatch.Start()
	start := time.Now()
	rs, err := c.Put(ctx, h, size, src)
	putTime := time.Since(start)
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Size != size {
		t.Errorf("receipt %+v", rs)
	}
	t.Logf("Put 64 MiB: %v, peak HeapInuse %.1f MiB", putTime, float64(peak)/(1<<20))
	if peak > heapLimit {
		t.Errorf("Put: peak HeapInuse %d bytes, want < %d", peak, heapLimit)
	}

	stop = heapwatch.Start()
	start = time.Now()
	rc, err := c.Get(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	got, err := io.Copy(sum, rc)
	rc.Close()
	getTime := time.Since(start)
	peak = stop()
	if err != nil || got != size || hex.EncodeToString(sum.Sum(nil)) != h {
		t.Fatalf("Get: %d bytes, %v", got, err)
	}
	t.Logf("Get 64 MiB: %v, peak HeapInuse %.1f MiB", getTime, float64(peak)/(1<<20))
	if peak > heapLimit {
		t.Errorf("Get: peak HeapInuse %d bytes, want < %d", peak, heapLimit)
	}

	if s, err := c.Stat(ctx, h); err != nil || s != size {
		t.Fatalf("Stat = %d, %v", s, err)
	}
	for _, r := range []struct{ off, n int64 }{
		{0, 1}, {0, 4096}, {1, 100_000}, {4095, 2}, {1<<20 - 7, 1 << 20}, {33_333_333, 777_777},
		{size - 10, 10}, {size - 1, 1}, {size, 0},
	} {
		want := make([]byte, r.n)
		if _, err := src.ReadAt(want, r.off); err != nil && r.n > 0 {
			t.Fatal(err)
		}
		got := readAll(t)(c.GetRange(ctx, h, r.off, r.n))
		if !bytes.Equal(got, want) {
			t.Errorf("GetRange(%d, %d): %d bytes differ from the source", r.off, r.n, len(got))
		}
	}
	for _, r := range []struct{ off, n int64 }{{size - 10, 11}, {size + 1, 0}, {0, size + 1}} {
		if _, err := c.GetRange(ctx, h, r.off, r.n); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GetRange(%d, %d) beyond the end: %v", r.off, r.n, err)
		}
	}
	if _, err := c.GetRange(ctx, h, -1, 1); err == nil {
		t.Error("GetRange with a negative offset succeeded")
	}
}

func TestNotFound(t *testing.T) {
	n := sharedNode(t)
	c := n.client(t)
	ctx := ctxT(t)
	absent := sha([]byte("never stored " + time.Now().String()))
	start := time.Now()
	if _, err := c.Get(ctx, absent); !errors.Is(err, blobstore.ErrNotFound) || !strings.Contains(err.Error(), "not found locally") {
		t.Errorf("Get: %v, want ErrNotFound quoting kubo", err)
	}
	if _, err := c.Stat(ctx, absent); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat: %v, want ErrNotFound", err)
	}
	if _, err := c.GetRange(ctx, absent, 0, 1); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("GetRange: %v, want ErrNotFound", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("not-found answers took %v", d)
	}
}

func TestHashMismatch(t *testing.T) {
	n := sharedNode(t)
	c := n.client(t)
	ctx := ctxT(t)
	data := randomBytes(100_000)
	claimed := sha([]byte("something else " + time.Now().String()))
	_, err := c.Put(ctx, claimed, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("Put with a wrong hash: %v, want ErrHashMismatch", err)
	}
	// Neither the claimed name nor the bytes' true name is stored: the upload was aborted.
	for _, h := range []string{claimed, sha(data)} {
		if _, err := c.Stat(ctx, h); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("Stat(%s) after the refused Put: %v, want ErrNotFound", h, err)
		}
	}
	// A reader shorter than the size given.
	_, err = c.Put(ctx, sha(data), int64(len(data))+1, bytes.NewReader(data))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Put with a short reader: %v", err)
	}
	if _, err := c.Stat(ctx, sha(data)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat after the short Put: %v, want ErrNotFound", err)
	}
}

func TestBadHash(t *testing.T) {
	n := sharedNode(t)
	c := n.client(t)
	ctx := ctxT(t)
	for _, bad := range []string{"", "xyz", strings.ToUpper(hello), hello + "00", hello[:63]} {
		if _, err := c.Put(ctx, bad, 5, strings.NewReader("hello")); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Put(%q): %v", bad, err)
		}
		if _, err := c.Get(ctx, bad); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Get(%q): %v", bad, err)
		}
		if _, err := c.GetRange(ctx, bad, 0, 1); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("GetRange(%q): %v", bad, err)
		}
		if _, err := c.Stat(ctx, bad); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Stat(%q): %v", bad, err)
		}
	}
}

// The CID derived from the hash alone is the one kubo's own command line computes.
func TestCIDMatchesKubo(t *testing.T) {
	n := sharedNode(t)
	for _, size := range []int{0, 1, 1000, 1 << 20} {
		data := randomBytes(size)
		out, err := n.run(bytes.NewReader(data), "block", "put", "--cid-codec=raw", "--mhtype=sha2-256", "--mhlen=32")
		if err != nil {
			t.Fatalf("ipfs block put: %v\n%s", err, out)
		}
		want := strings.TrimSpace(string(out))
		got, err := CID(sha(data))
		if err != nil || got != want {
			t.Errorf("%d bytes: CID = %q, %v; kubo says %q", size, got, err, want)
		}
		// And the client reads what the command line stored.
		c := n.client(t)
		if b := readAll(t)(c.Get(ctxT(t), sha(data))); !bytes.Equal(b, data) {
			t.Errorf("%d bytes: Get differs", size)
		}
	}
}

func TestBlockLimit(t *testing.T) {
	n := sharedNode(t)
	ctx := ctxT(t)
	data := randomBytes(BlockLimit)
	// Exactly BlockLimit is stored with the default options (no allow-big-block).
	if _, err := n.client(t).Put(ctx, sha(data), BlockLimit, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// One more byte is refused by the client, or by kubo if the client is told to ignore the
	// limit but kubo is not told to allow it, which this checks through the raw API.
	big := append(data, 1)
	if _, err := n.client(t).Put(ctx, sha(big), BlockLimit+1, bytes.NewReader(big)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put of BlockLimit+1 bytes: %v, want ErrTooLarge", err)
	}
	if _, err := n.client(t, WithMaxBlockSize(BlockLimit+1)).Put(ctx, sha(big), BlockLimit+1, bytes.NewReader(big)); err != nil {
		t.Errorf("Put of BlockLimit+1 bytes with a higher limit: %v", err)
	}
}

// Another node fetches a blob knowing only its hash, over bitswap between two online nodes.
func TestFetchFromPeer(t *testing.T) {
	bin := kuboBin(t)
	a, err := startNode(bin, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	b, err := startNode(bin, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	var id struct {
		ID        string
		Addresses []string
	}
	a.rpc(t, "id", &id)
	addr := ""
	for _, s := range id.Addresses {
		if strings.HasPrefix(s, "/ip4/127.0.0.1/tcp/") {
			addr = s
		}
	}
	if addr == "" {
		t.Fatalf("no loopback address in %+v", id)
	}
	if !strings.Contains(addr, "/p2p/") {
		addr += "/p2p/" + id.ID
	}
	b.rpc(t, "swarm/connect?arg="+addr, nil)

	ctx := ctxT(t)
	data := randomBytes(BlockLimit) // the largest blob the default client stores
	h := sha(data)
	if _, err := a.client(t).Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	cb := b.client(t, WithFindTimeout(3*time.Second))
	if got := readAll(t)(cb.GetRange(ctx, h, 1000, 5000)); !bytes.Equal(got, data[1000:6000]) {
		t.Fatal("GetRange from the peer differs")
	}
	if got := readAll(t)(cb.Get(ctx, h)); !bytes.Equal(got, data) {
		t.Fatal("Get from the peer differs")
	}

	// A local-only client of b does not look on the network.
	other := randomBytes(1000)
	if _, err := a.client(t).Put(ctx, sha(other), 1000, bytes.NewReader(other)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := b.client(t, WithLocalOnly(true)).Stat(ctx, sha(other)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("local-only Stat of a peer's blob: %v, want ErrNotFound", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("local-only Stat took %v", d)
	}

	// A blob nobody has: ErrNotFound once the find timeout is over.
	start = time.Now()
	_, err = cb.Get(ctx, sha([]byte("nobody has this "+time.Now().String())))
	d := time.Since(start)
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Get of a blob nobody has: %v, want ErrNotFound", err)
	}
	if d < 2*time.Second || d > 10*time.Second {
		t.Errorf("Get of a blob nobody has took %v, want about the 3s find timeout", d)
	}
}
