package blossom_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/nostr-homed/nostr-homed/internal/heapwatch"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiatjaf/eventstore/slicestore"
	"github.com/fiatjaf/khatru"
	kblossom "github.com/fiatjaf/khatru/blossom"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	devstacktest.RemoveBinary()
	os.Exit(code)
}

func signer(t testing.TB) nostr.Keyer {
	k, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func blob(n int, seed uint64) ([]byte, string) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	h := sha256.Sum256(b)
	return b, hex.EncodeToString(h[:])
}

func client(t testing.TB, k nostr.Signer, urls []string, opts ...blossom.Option) *blossom.Client {
	t.Helper()
	var servers []blossom.Server
	for _, u := range urls {
		servers = append(servers, blossom.Server{URL: u})
	}
	opts = append([]blossom.Option{blossom.WithRetries(3, 20*time.Millisecond), blossom.WithIdleTimeout(5 * time.Second)}, opts...)
	c, err := blossom.New(k, servers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readAll returns a function that takes a Get's results, so calls read readAll(t)(c.Get(...)).
func readAll(t *testing.T) func(io.ReadCloser, error) []byte {
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

// deadURL returns the URL of a port that nothing listens on.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestRoundTripTwoServers(t *testing.T) {
	a, b := devstacktest.Start(t), devstacktest.Start(t)
	c := client(t, signer(t), []string{a.BlossomURL(), b.BlossomURL()})
	ctx := context.Background()
	data, hash := blob(300_000, 1)

	rcpts, err := c.Put(ctx, hash, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(rcpts) != 2 {
		t.Fatalf("receipts from %d servers, want 2: %+v", len(rcpts), rcpts)
	}
	// Each server really has it: ask each alone.
	for _, u := range []string{a.BlossomURL(), b.BlossomURL()} {
		one := client(t, signer(t), []string{u})
		if got := readAll(t)(one.Get(ctx, hash)); !bytes.Equal(got, data) {
			t.Fatalf("%s served other bytes", u)
		}
		if n, err := one.Stat(ctx, hash); err != nil || n != int64(len(data)) {
			t.Fatalf("stat on %s: %d, %v", u, n, err)
		}
	}
	for _, r := range [][2]int64{{0, 1}, {1000, 4096}, {299_990, 10}, {0, 300_000}} {
		got := readAll(t)(c.GetRange(ctx, hash, r[0], r[1]))
		if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %v differs", r)
		}
	}
	if _, err := c.GetRange(ctx, hash, 299_995, 10); err == nil {
		// A range past the end either fails to open or fails while reading; never short and silent.
		rc, _ := c.GetRange(ctx, hash, 299_995, 10)
		if _, err := io.ReadAll(rc); err == nil {
			t.Fatal("a range past the end read as complete")
		}
	}
	dst := filepath.Join(t.TempDir(), "blob")
	if err := c.FetchFile(ctx, hash, dst, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("FetchFile wrote other bytes")
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Uploading again is a no-op that still yields receipts (the servers have it).
	if rc, err := c.Put(ctx, hash, int64(len(data)), bytes.NewReader(data)); err != nil || len(rc) != 2 {
		t.Fatalf("re-put: %v %v", rc, err)
	}
	// An absent blob is ErrNotFound, not some other error.
	_, other := blob(10, 99)
	if _, err := c.Get(ctx, other); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("absent blob: %v", err)
	}
	if _, err := c.Stat(ctx, other); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("absent stat: %v", err)
	}
	if _, err := c.Get(ctx, "../../etc/passwd"); !errors.Is(err, blobstore.ErrBadHash) {
		t.Fatalf("bad hash: %v", err)
	}
}

func TestPutWithWrongHashIsRefused(t *testing.T) {
	s := devstacktest.Start(t)
	c := client(t, signer(t), []string{s.BlossomURL()})
	data, _ := blob(1000, 2)
	_, wrong := blob(1000, 3)
	if _, err := c.Put(context.Background(), wrong, 1000, bytes.NewReader(data)); err == nil {
		t.Fatal("the server stored bytes under a hash they do not have")
	}
	if _, err := c.Stat(context.Background(), wrong); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("wrongly named blob exists: %v", err)
	}
}

// corrupting is a proxy in front of a real server that flips one byte of every blob it serves:
// a server that returns wrong bytes.
func corrupting(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == http.MethodGet && r.StatusCode/100 == 2 {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return err
			}
			if len(b) > 0 {
				b[len(b)/2] ^= 0xff
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestServerReturningWrongBytesIsRefused(t *testing.T) {
	s := devstacktest.Start(t)
	ctx := context.Background()
	data, hash := blob(100_000, 4)
	if _, err := client(t, signer(t), []string{s.BlossomURL()}).Put(ctx, hash, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	bad := corrupting(t, s.BlossomURL())

	// Alone, the bad server's bytes are refused, by Get at EOF and by FetchFile, which leaves
	// no file behind.
	only := client(t, signer(t), []string{bad})
	rc, err := only.Get(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("corrupted download read as %v", err)
	}
	dir := t.TempDir()
	if err := only.FetchFile(ctx, hash, filepath.Join(dir, "x"), 0o600); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("FetchFile from a corrupting server: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed fetch left %d files", len(ents))
	}
	// First in the list, the bad server is skipped for the good one.
	both := client(t, signer(t), []string{bad, s.BlossomURL()})
	dst := filepath.Join(dir, "y")
	if err := both.FetchFile(ctx, hash, dst, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after fallback")
	}
}

func TestOneDeadServerOfTwo(t *testing.T) {
	live := devstacktest.Start(t)
	dead := deadURL(t)
	c := client(t, signer(t), []string{dead, live.BlossomURL()})
	ctx := context.Background()
	data, hash := blob(50_000, 5)
	rcpts, err := c.Put(ctx, hash, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(rcpts) != 1 || rcpts[0].Backend != live.BlossomURL() {
		t.Fatalf("receipts %+v, want only the live server", rcpts)
	}
	if got := readAll(t)(c.Get(ctx, hash)); !bytes.Equal(got, data) {
		t.Fatal("live server's bytes differ")
	}
	// Every server dead: a clear error that names them, quickly.
	all := client(t, signer(t), []string{dead})
	start := time.Now()
	_, err = all.Put(ctx, hash, int64(len(data)), bytes.NewReader(data))
	if err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("all dead: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("all dead took %s", d)
	}
}

func TestSlowServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 10)) // then stall
			w.(http.Flusher).Flush()
		}
		<-release
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	c := client(t, signer(t), []string{slow.URL}, blossom.WithIdleTimeout(300*time.Millisecond), blossom.WithRetries(1, 0))
	_, hash := blob(10, 6)
	start := time.Now()
	rc, err := c.Get(context.Background(), hash)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled download: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a stalled server held us %s", d)
	}
	// A stalled upload (the server never answers) also ends.
	start = time.Now()
	data, h := blob(1000, 7)
	if _, err := c.Put(context.Background(), h, 1000, bytes.NewReader(data)); err == nil {
		t.Fatal("upload to a stalled server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a stalled upload held us %s", d)
	}
}

func TestSlowReaderIsNotTimedOut(t *testing.T) {
	s := devstacktest.Start(t)
	c := client(t, signer(t), []string{s.BlossomURL()}, blossom.WithIdleTimeout(200*time.Millisecond))
	ctx := context.Background()
	data, hash := blob(64<<10, 8)
	if _, err := c.Put(ctx, hash, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Get(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 100)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // the caller is slow, not the server
	rest, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(append(buf, rest...), data) {
		t.Fatalf("slow reader: %v", err)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	s := devstacktest.Start(t)
	u, _ := url.Parse(s.BlossomURL())
	proxy := httputil.NewSingleHostReverseProxy(u)
	var puts atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && puts.Add(1) <= 2 {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(flaky.Close)
	c := client(t, signer(t), []string{flaky.URL})
	data, hash := blob(10_000, 9)
	if _, err := c.Put(context.Background(), hash, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	if n := puts.Load(); n != 3 {
		t.Fatalf("%d PUTs, want 3", n)
	}
}

func TestLyingDescriptorIsRefused(t *testing.T) {
	s := devstacktest.Start(t)
	u, _ := url.Parse(s.BlossomURL())
	proxy := httputil.NewSingleHostReverseProxy(u)
	_, other := blob(10, 10)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == http.MethodPut {
			body := `{"url":"x","sha256":"` + other + `","size":10,"type":"","uploaded":0}`
			r.Body = io.NopCloser(strings.NewReader(body))
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Length", "")
		}
		return nil
	}
	liar := httptest.NewServer(proxy)
	t.Cleanup(liar.Close)
	c := client(t, signer(t), []string{liar.URL})
	data, hash := blob(10_000, 11)
	if _, err := c.Put(context.Background(), hash, int64(len(data)), bytes.NewReader(data)); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("lying descriptor: %v", err)
	}
}

func TestMirrorAndPreflight(t *testing.T) {
	a, b := devstacktest.Start(t), devstacktest.Start(t)
	k := signer(t)
	c := client(t, k, []string{a.BlossomURL(), b.BlossomURL()})
	ctx := context.Background()
	data, hash := blob(20_000, 12)
	rc, err := c.PutTo(ctx, a.BlossomURL(), hash, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	onlyB := client(t, k, []string{b.BlossomURL()})
	if _, err := onlyB.Stat(ctx, hash); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("B has the blob before mirroring: %v", err)
	}
	d, err := c.Mirror(ctx, b.BlossomURL(), hash, int64(len(data)), rc.URL)
	if err != nil {
		t.Fatal(err)
	}
	if d.SHA256 != hash {
		t.Fatalf("descriptor %+v", d)
	}
	if got := readAll(t)(onlyB.Get(ctx, hash)); !bytes.Equal(got, data) {
		t.Fatal("mirrored bytes differ")
	}
	// Preflight says no to a blob over the server's limit, before any byte is sent.
	if err := c.Preflight(ctx, a.BlossomURL(), hash, 1<<50); err == nil {
		t.Fatal("preflight accepted a 1 PiB blob")
	} else {
		var se *blossom.ServerError
		if !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("preflight: %v", err)
		}
	}
	if err := c.Preflight(ctx, a.BlossomURL(), hash, int64(len(data))); err != nil {
		t.Fatalf("preflight of an acceptable blob: %v", err)
	}
}

// TestStandardBase64ForKhatru uploads to khatru v0.19.1's own Blossom server, which decodes
// only padded standard base64, with the option made for it. (Our default, unpadded
// base64url, passes there only by luck: the JSON of a token rarely yields the two characters
// where the alphabets differ, so it fails only when padding would be needed.)
func TestStandardBase64ForKhatru(t *testing.T) {
	relay := khatru.NewRelay()
	srv := httptest.NewServer(relay)
	t.Cleanup(srv.Close)
	store := &slicestore.SliceStore{}
	if err := store.Init(); err != nil {
		t.Fatal(err)
	}
	bl := kblossom.New(relay, srv.URL)
	bl.Store = kblossom.EventStoreBlobIndexWrapper{Store: store, ServiceURL: srv.URL}
	var mu sync.Mutex
	blobs := map[string][]byte{}
	bl.StoreBlob = append(bl.StoreBlob, func(ctx context.Context, sha string, ext string, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		blobs[sha] = bytes.Clone(body)
		return nil
	})
	bl.LoadBlob = append(bl.LoadBlob, func(ctx context.Context, sha string, ext string) (io.ReadSeeker, error) {
		mu.Lock()
		defer mu.Unlock()
		b, ok := blobs[sha]
		if !ok {
			return nil, errors.New("not found")
		}
		return bytes.NewReader(b), nil
	})
	k := signer(t)
	data, hash := blob(5000, 13)
	ctx := context.Background()

	std, _ := blossom.New(k, []blossom.Server{{URL: srv.URL, Encoding: blossom.Base64Std}}, blossom.WithRetries(1, 0))
	if _, err := std.Put(ctx, hash, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("standard base64 upload to khatru: %v", err)
	}
	if got := readAll(t)(std.Get(ctx, hash)); !bytes.Equal(got, data) {
		t.Fatal("khatru served other bytes")
	}
}

// TestLargeStreamingRoundTrip sends 256 MiB through the real dev stack binary and back, and
// checks the client never holds more than a sliver of it in memory.
func TestLargeStreamingRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB transfer skipped in -short mode")
	}
	_, blossomURL, _ := devstacktest.StartBinary(t)
	const size = 256 << 20
	src := filepath.Join(t.TempDir(), "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(42, 42))
	buf := make([]byte, 1<<20)
	h := sha256.New()
	for i := 0; i < size/len(buf); i++ {
		for j := 0; j < len(buf); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		f.Write(buf)
		h.Write(buf)
	}
	hash := hex.EncodeToString(h.Sum(nil))
	buf = nil
	defer f.Close()

	stop := heapwatch.Start()
	c := client(t, signer(t), []string{blossomURL})
	ctx := context.Background()
	if _, err := c.Put(ctx, hash, size, f); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Get(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, rc)
	rc.Close()
	peak := stop()
	if err != nil || n != size || hex.EncodeToString(got.Sum(nil)) != hash {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	t.Logf("peak client HeapInuse during 256 MiB up+down: %.1f MiB", float64(peak)/(1<<20))
	if peak > 64<<20 {
		t.Fatalf("client heap reached %.1f MiB, limit 64 MiB", float64(peak)/(1<<20))
	}
}
