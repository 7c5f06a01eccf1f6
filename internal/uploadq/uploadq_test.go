package uploadq_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

// ---- helpers ----

func openCache(t testing.TB, dir string) *cas.Store {
	t.Helper()
	c, err := cas.Open(dir, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newClient(t testing.TB, urls ...string) *blossom.Client {
	t.Helper()
	signer, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	var servers []blossom.Server
	for _, u := range urls {
		servers = append(servers, blossom.Server{URL: u})
	}
	// Idle connections are closed before the servers (cleanups run in reverse): a
	// connection dialed but never used counts as busy for http.Server.Shutdown for 5 s.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	// One try per PutTo: the queue does the retrying.
	c, err := blossom.New(signer, servers, blossom.WithRetries(1, 0), blossom.WithIdleTimeout(5*time.Second),
		blossom.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logf logs through t until the test ends (t.Logf after the end panics).
func logf(t testing.TB) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(f, a...)
		}
	}
}

func testOpts(t testing.TB) uploadq.Options {
	return uploadq.Options{
		Parallel:   2,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Logf:       logf(t),
	}
}

func openQueue(t testing.TB, dir string, c *cas.Store, up uploadq.Uploader, opts uploadq.Options) *uploadq.Queue {
	t.Helper()
	q, err := uploadq.Open(dir, c, up, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Errorf("closing queue: %v", err)
		}
	})
	return q
}

// putBlobs stores n random blobs of up to maxSize bytes in c and returns their hashes.
func putBlobs(t testing.TB, c *cas.Store, n, maxSize int) []string {
	t.Helper()
	var hashes []string
	for i := 0; i < n; i++ {
		b := make([]byte, 1+i*7919%maxSize)
		rand.Read(b)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		if _, err := c.Put(h, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	return hashes
}

func enqueueAll(t testing.TB, q *uploadq.Queue, hashes []string) {
	t.Helper()
	for _, h := range hashes {
		if err := q.Enqueue(h); err != nil {
			t.Fatal(err)
		}
	}
}

// missingOn returns the hashes that server (checked with its own client) does not have.
func missingOn(t testing.TB, server string, hashes []string) []string {
	t.Helper()
	c := newClient(t, server)
	var out []string
	for _, h := range hashes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Stat(ctx, h)
		cancel()
		if err != nil {
			out = append(out, h)
		}
	}
	return out
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deadURL returns the URL of a port that nothing listens on (one we bound and closed).
func deadURL(t testing.TB) (addr, u string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	return addr, "http://" + addr
}

func journalFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// ---- tests ----

func TestFlushTwoServers(t *testing.T) {
	a, b := devstacktest.Start(t), devstacktest.Start(t)
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	up := newClient(t, a.BlossomURL(), b.BlossomURL())
	q := openQueue(t, filepath.Join(dir, "q"), c, up, testOpts(t))

	hashes := putBlobs(t, c, 20, 64<<10)
	enqueueAll(t, q, hashes)
	enqueueAll(t, q, hashes[:3]) // idempotent
	if got := len(c.ListPins(uploadq.PinReason)); got != 20 {
		t.Fatalf("%d blobs pinned %q after Enqueue, want 20", got, uploadq.PinReason)
	}
	if n := c.Pins(hashes[0])[uploadq.PinReason]; n != 1 {
		t.Fatalf("pin count %d after a repeated Enqueue, want 1", n)
	}
	if q.Pending() != 20 {
		t.Fatalf("Pending = %d, want 20", q.Pending())
	}
	q.Start(context.Background())
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("flushed 20 blobs in %v", time.Since(start))
	if q.Pending() != 0 {
		t.Fatalf("Pending = %d after Flush", q.Pending())
	}
	if p := c.ListPins(uploadq.PinReason); len(p) != 0 {
		t.Fatalf("%d blobs still pinned after Flush", len(p))
	}
	waitFor(t, 20*time.Second, "full replication", func() bool { return q.Stats().Replicated == 20 })
	for _, srv := range []string{a.BlossomURL(), b.BlossomURL()} {
		if m := missingOn(t, srv, hashes); len(m) != 0 {
			t.Fatalf("%s lacks %d blobs, e.g. %s", srv, len(m), m[0])
		}
	}
	st := q.Stats()
	if st.Queued != 0 || st.Replicating != 0 || st.Acked != 20 {
		t.Fatalf("stats %+v", st)
	}
	for srv, ss := range st.Servers {
		if ss.Uploaded != 20 {
			t.Errorf("%s: %+v, want 20 uploaded", srv, ss)
		}
	}
	if f := journalFiles(t, filepath.Join(dir, "q")); len(f) != 0 {
		t.Fatalf("journal not emptied: %v", f)
	}
}

func TestDeadServer(t *testing.T) {
	live := devstacktest.Start(t)
	_, dead := deadURL(t)
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	opts := testOpts(t)
	opts.MaxAttempts = 3
	q := openQueue(t, filepath.Join(dir, "q"), c, newClient(t, dead, live.BlossomURL()), opts)
	hashes := putBlobs(t, c, 10, 32<<10)
	enqueueAll(t, q, hashes)
	q.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if m := missingOn(t, live.BlossomURL(), hashes); len(m) != 0 {
		t.Fatalf("live server lacks %d blobs", len(m))
	}
	if p := c.ListPins(uploadq.PinReason); len(p) != 0 {
		t.Fatalf("%d blobs still pinned after Flush", len(p))
	}
	ds := q.Stats().Servers[dead]
	if ds.Failures == 0 || !strings.Contains(ds.LastError, dead) || ds.Uploaded != 0 {
		t.Fatalf("dead server stats %+v", ds)
	}
	if !strings.Contains(ds.LastError, "blob ") {
		t.Fatalf("last error does not name the blob: %s", ds.LastError)
	}
	t.Logf("dead server: %+v", ds)
	// After MaxAttempts the dead server is given up and the journal emptied.
	waitFor(t, 20*time.Second, "giving up on the dead server", func() bool {
		return q.Stats().Servers[dead].GaveUp == 10
	})
	waitFor(t, 5*time.Second, "the journal to empty", func() bool {
		return len(journalFiles(t, filepath.Join(dir, "q"))) == 0
	})
	if st := q.Stats(); st.Replicated != 0 || st.Replicating != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOffline(t *testing.T) {
	addr, u := deadURL(t)
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	q := openQueue(t, filepath.Join(dir, "q"), c, newClient(t, u), testOpts(t))
	hashes := putBlobs(t, c, 5, 16<<10)
	enqueueAll(t, q, hashes)
	q.Start(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := q.Flush(ctx)
	cancel()
	var pe *uploadq.PendingError
	if !errors.As(err, &pe) || pe.Pending != 5 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("offline Flush: %v", err)
	}
	t.Logf("offline Flush: %v", err)
	if !strings.Contains(err.Error(), u) {
		t.Fatalf("Flush error does not name the server: %v", err)
	}
	if p := c.ListPins(uploadq.PinReason); len(p) != 5 {
		t.Fatalf("%d pins while offline, want 5", len(p))
	}
	// Let the backoff grow to its cap, then bring the server up on the reserved port.
	time.Sleep(500 * time.Millisecond)
	var st *devstack.Stack
	for i := 0; ; i++ {
		st, err = devstack.Start(context.Background(), devstack.Options{Listen: addr, DataDir: t.TempDir()})
		if err == nil {
			break
		}
		if i == 20 {
			t.Fatalf("starting the server on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { st.Close() })
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("flushed %v after the server came up", time.Since(start))
	if m := missingOn(t, u, hashes); len(m) != 0 {
		t.Fatalf("server lacks %d blobs", len(m))
	}
	if p := c.ListPins(uploadq.PinReason); len(p) != 0 {
		t.Fatalf("%d pins after Flush", len(p))
	}
}

// lyingProxy forwards to target but rewrites PUT /upload descriptors to name another hash,
// and answers HEAD/GET of blobs with 404 (so the client cannot take a HEAD as the receipt).
func lyingProxy(t testing.TB, target string) string {
	tu, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(tu) },
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method != http.MethodPut || resp.Request.URL.Path != "/upload" || resp.StatusCode/100 != 2 {
				return nil
			}
			var d blossom.Descriptor
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				return err
			}
			resp.Body.Close()
			sum := sha256.Sum256([]byte("not " + d.SHA256))
			d.SHA256 = hex.EncodeToString(sum[:])
			b, _ := json.Marshal(d)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
			return nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodHead || r.Method == http.MethodGet) && r.URL.Path != "/upload" {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWrongDescriptor(t *testing.T) {
	backend, honest := devstacktest.Start(t), devstacktest.Start(t)
	liar := lyingProxy(t, backend.BlossomURL())
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	hashes := putBlobs(t, c, 5, 16<<10)

	// Phase 1: the liar alone. Nothing may count as acknowledged.
	q, err := uploadq.Open(filepath.Join(dir, "q"), c, newClient(t, liar), testOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	enqueueAll(t, q, hashes)
	q.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = q.Flush(ctx)
	cancel()
	var pe *uploadq.PendingError
	if !errors.As(err, &pe) || pe.Pending != 5 {
		t.Fatalf("Flush against a lying server: %v", err)
	}
	ls := q.Stats().Servers[liar]
	if ls.Uploaded != 0 || ls.Failures == 0 || !strings.Contains(ls.LastError, "server stored") {
		t.Fatalf("liar stats %+v", ls)
	}
	t.Logf("liar: %s", ls.LastError)
	if p := c.ListPins(uploadq.PinReason); len(p) != 5 {
		t.Fatalf("%d pins, want 5", len(p))
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// The backend really received the bytes: the lie is the only reason for the refusal.
	if m := missingOn(t, backend.BlossomURL(), hashes); len(m) != 0 {
		t.Fatalf("backend lacks %d blobs", len(m))
	}

	// Phase 2: restart with an honest server too; it alone acknowledges.
	q = openQueue(t, filepath.Join(dir, "q"), c, newClient(t, liar, honest.BlossomURL()), testOpts(t))
	if q.Pending() != 5 {
		t.Fatalf("Pending after reopen = %d, want 5", q.Pending())
	}
	q.Start(context.Background())
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Servers[liar].Uploaded != 0 || st.Servers[honest.BlossomURL()].Uploaded != 5 {
		t.Fatalf("stats %+v", st)
	}
	if m := missingOn(t, honest.BlossomURL(), hashes); len(m) != 0 {
		t.Fatalf("honest server lacks %d blobs", len(m))
	}
	// The journal still lists only the honest server.
	for _, h := range hashes {
		b, err := os.ReadFile(filepath.Join(dir, "q", "queue", h))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(liar)) || !bytes.Contains(b, []byte(honest.BlossomURL())) {
			t.Fatalf("journal of %s: %s", h, b)
		}
	}
}

func TestEnqueueNotInCache(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	q := openQueue(t, filepath.Join(dir, "q"), c, newClient(t, "http://127.0.0.1:1"), testOpts(t))
	h := strings.Repeat("ab", 32)
	if err := q.Enqueue(h); !errors.Is(err, uploadq.ErrNotInCache) || !strings.Contains(err.Error(), h) {
		t.Fatalf("Enqueue of a missing blob: %v", err)
	}
	if len(c.ListPins(uploadq.PinReason)) != 0 || q.Pending() != 0 {
		t.Fatal("a failed Enqueue left a pin or an entry")
	}
	if err := q.Enqueue("nothex"); err == nil {
		t.Fatal("Enqueue accepted a bad hash")
	}
	// A second Open of the same directory is refused.
	if _, err := uploadq.Open(filepath.Join(dir, "q"), c, newClient(t, "http://127.0.0.1:1"), testOpts(t)); err == nil {
		t.Fatal("second Open succeeded")
	}
}

// TestAdoptPin: a crash inside Enqueue after the pin and before the journal write leaves a
// pin alone; Open adopts it and uploads the blob.
func TestAdoptPin(t *testing.T) {
	st := devstacktest.Start(t)
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	hashes := putBlobs(t, c, 3, 4<<10)
	if err := c.Pin(hashes[1], uploadq.PinReason); err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, filepath.Join(dir, "q"), c, newClient(t, st.BlossomURL()), testOpts(t))
	if q.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1 (the adopted pin)", q.Pending())
	}
	q.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if m := missingOn(t, st.BlossomURL(), hashes[1:2]); len(m) != 0 {
		t.Fatal("adopted blob not uploaded")
	}
	if len(c.ListPins(uploadq.PinReason)) != 0 {
		t.Fatal("adopted pin not released")
	}
}

// ---- kill -9 ----

const (
	envChild  = "UPLOADQ_TEST_CHILD_DIR"
	envServer = "UPLOADQ_TEST_CHILD_SERVER"
)

// slowPut is a fault injector around the real client: every PutTo waits first, so that the
// child is killed with uploads in flight and blobs still queued.
type slowPut struct {
	*blossom.Client
	delay time.Duration
}

func (s slowPut) PutTo(ctx context.Context, server, hash string, size int64, r io.ReaderAt) (blobstore.Receipt, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return blobstore.Receipt{}, ctx.Err()
	}
	return s.Client.PutTo(ctx, server, hash, size, r)
}

// TestKill9Child is the child process of TestKill9; it does nothing in a normal run.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv(envChild)
	if dir == "" {
		t.Skip("child of TestKill9 only")
	}
	c, err := cas.Open(filepath.Join(dir, "cas"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := slowPut{Client: newClient(t, os.Getenv(envServer)), delay: 100 * time.Millisecond}
	q, err := uploadq.Open(filepath.Join(dir, "q"), c, up, uploadq.Options{MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	q.Start(context.Background())
	for i := 0; i < 200; i++ {
		b := make([]byte, 256<<10)
		rand.Read(b)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		if _, err := c.Put(h, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(h); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(os.Stdout, "enqueued %s\n", h)
		time.Sleep(5 * time.Millisecond)
	}
	select {} // wait for the kill
}

func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	st := devstacktest.Start(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"="+dir, envServer+"="+st.BlossomURL())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var hashes []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(hashes) < 30 {
		if h, ok := strings.CutPrefix(sc.Text(), "enqueued "); ok {
			hashes = append(hashes, h)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Read what the child printed before it died: those Enqueues returned too.
	for sc.Scan() {
		if h, ok := strings.CutPrefix(sc.Text(), "enqueued "); ok {
			hashes = append(hashes, h)
		}
	}
	werr := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", werr, stderr.String())
	}
	if len(hashes) < 30 {
		t.Fatalf("child enqueued only %d blobs\n%s", len(hashes), stderr.String())
	}
	already := len(hashes) - len(missingOn(t, st.BlossomURL(), hashes))
	t.Logf("child killed after %d Enqueues; %d already on the server", len(hashes), already)

	c := openCache(t, filepath.Join(dir, "cas"))
	q := openQueue(t, filepath.Join(dir, "q"), c, newClient(t, st.BlossomURL()), testOpts(t))
	if q.Pending() == 0 {
		t.Fatal("nothing pending after the kill: the test did not interrupt the uploads")
	}
	t.Logf("resuming %d pending blobs", q.Pending())
	q.Start(context.Background())
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("flushed after restart in %v", time.Since(start))
	if m := missingOn(t, st.BlossomURL(), hashes); len(m) != 0 {
		t.Fatalf("%d of %d enqueued blobs missing from the server after restart, e.g. %s", len(m), len(hashes), m[0])
	}
	if p := c.ListPins(uploadq.PinReason); len(p) != 0 {
		t.Fatalf("%d pins left", len(p))
	}
}

func TestFlushReturnsOnClose(t *testing.T) {
	_, u := deadURL(t)
	dir := t.TempDir()
	c := openCache(t, filepath.Join(dir, "cas"))
	q, err := uploadq.Open(filepath.Join(dir, "q"), c, newClient(t, u), testOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	enqueueAll(t, q, putBlobs(t, c, 2, 1024))
	q.Start(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Flush(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		var pe *uploadq.PendingError
		if !errors.Is(err, uploadq.ErrClosed) || !errors.As(err, &pe) || pe.Pending != 2 {
			t.Fatalf("Flush after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not return after Close")
	}
	if err := q.Enqueue(strings.Repeat("00", 32)); !errors.Is(err, uploadq.ErrClosed) {
		t.Fatalf("Enqueue after Close: %v", err)
	}
	// The pins survive Close: the blobs are still unacknowledged.
	if len(c.ListPins(uploadq.PinReason)) != 2 {
		t.Fatal("pins lost at Close")
	}
}
