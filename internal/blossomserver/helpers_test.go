package blossomserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
)

// testServer is a Server behind a real loopback HTTP listener.
type testServer struct {
	t   *testing.T
	s   *Server
	hs  *httptest.Server
	dir string
}

func startServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	dir := t.TempDir()
	s, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	if opts.PublicURL == "" {
		s.SetPublicURL(hs.URL)
	}
	return &testServer{t: t, s: s, hs: hs, dir: dir}
}

// user is a key pair that signs BUD-11 tokens.
type user struct {
	signer keyer.KeySigner
	pk     string
}

func newUser(t *testing.T) user {
	t.Helper()
	ks, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ks.GetPublicKey(context.Background())
	return user{signer: ks, pk: pk}
}

// token signs a token and returns the Authorization header value.
func (u user) token(t *testing.T, verb string, ttl time.Duration, server string, enc blossom.Encoding, hashes ...string) string {
	t.Helper()
	ev, err := blossom.SignAuth(context.Background(), u.signer, verb, "test "+verb, server, ttl, hashes...)
	if err != nil {
		t.Fatal(err)
	}
	return blossom.AuthHeader(ev, enc)
}

func (u user) upload(t *testing.T, hashes ...string) string {
	return u.token(t, blossom.VerbUpload, time.Minute, "", blossom.Base64URL, hashes...)
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7}).Read(b)
	return b
}

// req sends a request; hdr is pairs of header names and values ("" values are skipped).
func (ts *testServer) req(method, path string, body io.Reader, hdr ...string) *http.Response {
	ts.t.Helper()
	r, err := http.NewRequest(method, ts.hs.URL+path, body)
	if err != nil {
		ts.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] != "" {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := ts.hs.Client().Do(r)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// readAll reads and closes a response body.
func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expect checks a response's status and, for errors, that X-Reason is set. It returns the body.
func expect(t *testing.T, resp *http.Response, status int, what string) []byte {
	t.Helper()
	body := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d (X-Reason %q), want %d", what, resp.StatusCode, resp.Header.Get("X-Reason"), status)
	}
	if status >= 400 && resp.Header.Get("X-Reason") == "" {
		t.Fatalf("%s: error %d without X-Reason", what, status)
	}
	return body
}

func decodeDescriptor(t *testing.T, body []byte) blossom.Descriptor {
	t.Helper()
	d, err := blossom.DecodeDescriptor(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("descriptor %q: %v", body, err)
	}
	return d
}

func decodeList(t *testing.T, body []byte) []blossom.Descriptor {
	t.Helper()
	var ds []blossom.Descriptor
	if err := json.Unmarshal(body, &ds); err != nil {
		t.Fatalf("list %q: %v", body, err)
	}
	return ds
}

// putBlob uploads data as u with an upload token and X-SHA-256 and returns the response.
func (ts *testServer) putBlob(u user, data []byte, ctype string) *http.Response {
	ts.t.Helper()
	h := sha(data)
	return ts.req(http.MethodPut, "/upload", bytes.NewReader(data),
		"Authorization", u.upload(ts.t, h), "X-SHA-256", h, "Content-Type", ctype)
}

// files lists the regular files under the server's data directory, relative to it.
func (ts *testServer) files() []string {
	ts.t.Helper()
	var out []string
	err := filepath.WalkDir(ts.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(ts.dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	return out
}

// rawRequest sends a request line exactly as given (no client-side path cleaning).
func (ts *testServer) rawRequest(method, target string) *http.Response {
	ts.t.Helper()
	addr := strings.TrimPrefix(ts.hs.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, method+" "+target+" HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		ts.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func newHTTPTest(t *testing.T, h http.Handler) *httptest.Server {
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}
