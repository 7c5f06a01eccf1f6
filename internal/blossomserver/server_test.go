package blossomserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/nostr-homed/nostr-homed/internal/heapwatch"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
)

func TestUploadAndGetBothEncodings(t *testing.T) {
	ts := startServer(t, Options{})
	alice := newUser(t)
	for i, enc := range []blossom.Encoding{blossom.Base64URL, blossom.Base64Std} {
		t.Run(enc.String(), func(t *testing.T) {
			data := randBytes(uint64(100+i), 100_000+i)
			h := sha(data)
			auth := alice.token(t, blossom.VerbUpload, time.Minute, "", enc, h)
			if enc == blossom.Base64Std && !strings.ContainsAny(auth, "+/=") {
				t.Logf("note: std token has no +/= characters")
			}
			before := time.Now().Unix()
			resp := ts.req(http.MethodPut, "/upload", bytes.NewReader(data),
				"Authorization", auth, "X-SHA-256", h, "Content-Type", "application/pdf")
			d := decodeDescriptor(t, expect(t, resp, http.StatusCreated, "upload"))
			if err := d.Check(h, int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if d.Type != "application/pdf" || d.URL != ts.hs.URL+"/"+h+".pdf" {
				t.Fatalf("descriptor %+v", d)
			}
			if d.Uploaded < before || d.Uploaded > time.Now().Unix() {
				t.Fatalf("uploaded %d not now", d.Uploaded)
			}
			if !fileExists(filepath.Join(ts.dir, "blobs", h[:2], h)) {
				t.Fatalf("blob not at blobs/%s/%s: %v", h[:2], h, ts.files())
			}

			// The same blob again: 200 and the same descriptor.
			resp = ts.req(http.MethodPut, "/upload", bytes.NewReader(data),
				"Authorization", auth, "X-SHA-256", h, "Content-Type", "application/pdf")
			if d2 := decodeDescriptor(t, expect(t, resp, http.StatusOK, "re-upload")); d2 != d {
				t.Fatalf("re-upload descriptor %+v, first %+v", d2, d)
			}

			// Whole GET, with and without an extension.
			for _, p := range []string{"/" + h, "/" + h + ".pdf", "/" + h + ".anything"} {
				resp = ts.req(http.MethodGet, p, nil)
				body := expect(t, resp, http.StatusOK, "GET "+p)
				if !bytes.Equal(body, data) {
					t.Fatalf("GET %s: %d bytes differ from the %d uploaded", p, len(body), len(data))
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/pdf" {
					t.Fatalf("GET %s: Content-Type %q", p, ct)
				}
			}

			// HEAD: same headers, no body.
			resp = ts.req(http.MethodHead, "/"+h, nil)
			if body := expect(t, resp, http.StatusOK, "HEAD"); len(body) != 0 {
				t.Fatalf("HEAD body of %d bytes", len(body))
			}
			if resp.Header.Get("Content-Length") != strconv.Itoa(len(data)) || resp.Header.Get("Accept-Ranges") != "bytes" ||
				resp.Header.Get("Content-Type") != "application/pdf" {
				t.Fatalf("HEAD headers %v", resp.Header)
			}

			// Ranges, byte-exact.
			n := len(data)
			for _, c := range []struct {
				rng        string
				start, end int // inclusive
			}{
				{"bytes=10-19", 10, 19},
				{"bytes=0-0", 0, 0},
				{"bytes=-7", n - 7, n - 1},
				{fmt.Sprintf("bytes=%d-", n-100), n - 100, n - 1},
				{fmt.Sprintf("bytes=%d-%d", n-5, n+1000), n - 5, n - 1},
			} {
				resp = ts.req(http.MethodGet, "/"+h, nil, "Range", c.rng)
				body := expect(t, resp, http.StatusPartialContent, c.rng)
				if !bytes.Equal(body, data[c.start:c.end+1]) {
					t.Fatalf("%s: got %d bytes, not bytes %d-%d", c.rng, len(body), c.start, c.end)
				}
				if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, n) {
					t.Fatalf("%s: Content-Range %q", c.rng, cr)
				}
			}
			resp = ts.req(http.MethodGet, "/"+h, nil, "Range", fmt.Sprintf("bytes=%d-", n))
			expect(t, resp, http.StatusRequestedRangeNotSatisfiable, "range past the end")
		})
	}
}

func TestNotFoundAndBadPaths(t *testing.T) {
	ts := startServer(t, Options{})
	absent := sha([]byte("never uploaded"))
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp := ts.req(m, "/"+absent, nil)
		expect(t, resp, http.StatusNotFound, m+" absent")
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("no CORS header on %s", m)
		}
	}
	expect(t, ts.req(http.MethodGet, "/"+absent+".pdf", nil), http.StatusNotFound, "absent with extension")

	for _, p := range []string{
		"/",
		"/abc",
		"/" + strings.ToUpper(absent),
		"/" + absent[:63] + "g",
		"/" + absent + "/x",
		"/" + absent + ".",
		"/" + absent + "..",
		"/" + absent + "./../../etc/passwd",
		"/" + absent + "%2f..%2f..%2fetc%2fpasswd",
		"/%2e%2e/etc/passwd",
		"/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
		"/blobs/" + absent[:2] + "/" + absent,
	} {
		expect(t, ts.req(http.MethodGet, p, nil), http.StatusBadRequest, "GET "+p)
	}
	// Request targets sent verbatim, so that no client cleans them first.
	for _, target := range []string{
		"/../etc/passwd",
		"/../../../../etc/passwd",
		"/..%2f..%2fetc%2fpasswd",
		"/%2e%2e/%2e%2e/etc/passwd",
		"/./" + absent,
		"//" + absent,
	} {
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			resp := ts.rawRequest(m, target)
			expect(t, resp, http.StatusBadRequest, "raw "+m+" "+target)
		}
	}
	expect(t, ts.req(http.MethodPost, "/"+absent, nil), http.StatusMethodNotAllowed, "POST blob")
	expect(t, ts.req(http.MethodGet, "/upload", nil), http.StatusMethodNotAllowed, "GET /upload")
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("files appeared: %v", files)
	}
}

func TestUploadAuthFailures(t *testing.T) {
	ts := startServer(t, Options{})
	alice := newUser(t)
	data := randBytes(1, 4096)
	h := sha(data)
	other := sha([]byte("other"))

	tampered := func() string {
		ev, err := blossom.SignAuth(context.Background(), alice.signer, blossom.VerbUpload, "x", "", time.Minute, h)
		if err != nil {
			t.Fatal(err)
		}
		ev.Tags = append(ev.Tags, nostr.Tag{"x", other}) // id and signature no longer match
		return blossom.AuthHeader(ev, blossom.Base64URL)
	}()
	future := func() string {
		ev := &nostr.Event{Kind: blossom.KindAuth, CreatedAt: nostr.Timestamp(time.Now().Add(time.Hour).Unix()),
			Tags: nostr.Tags{{"t", "upload"}, {"expiration", strconv.FormatInt(time.Now().Add(2*time.Hour).Unix(), 10)}, {"x", h}}}
		if err := alice.signer.SignEvent(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		return blossom.AuthHeader(ev, blossom.Base64URL)
	}()
	noExpiration := func() string {
		ev := &nostr.Event{Kind: blossom.KindAuth, CreatedAt: nostr.Now() - 5, Tags: nostr.Tags{{"t", "upload"}, {"x", h}}}
		if err := alice.signer.SignEvent(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		return blossom.AuthHeader(ev, blossom.Base64Std)
	}()

	for _, c := range []struct{ name, auth string }{
		{"missing", ""},
		{"not nostr", "Bearer abc"},
		{"not base64", "Nostr !!!not-base64!!!"},
		{"not an event", "Nostr " + "eyJmb28iOjF9"},
		{"expired", alice.token(t, blossom.VerbUpload, -time.Minute, "", blossom.Base64URL, h)},
		{"expired std", alice.token(t, blossom.VerbUpload, -time.Minute, "", blossom.Base64Std, h)},
		{"created in the future", future},
		{"no expiration", noExpiration},
		{"wrong verb", alice.token(t, blossom.VerbDelete, time.Minute, "", blossom.Base64URL, h)},
		{"wrong verb get", alice.token(t, blossom.VerbGet, time.Minute, "", blossom.Base64Std, h)},
		{"wrong x", alice.token(t, blossom.VerbUpload, time.Minute, "", blossom.Base64URL, other)},
		{"no x", alice.token(t, blossom.VerbUpload, time.Minute, "", blossom.Base64URL)},
		{"foreign server", alice.token(t, blossom.VerbUpload, time.Minute, "cdn.example.com", blossom.Base64URL, h)},
		{"foreign server std", alice.token(t, blossom.VerbUpload, time.Minute, "cdn.example.com", blossom.Base64Std, h)},
		{"tampered", tampered},
	} {
		resp := ts.req(http.MethodPut, "/upload", bytes.NewReader(data), "Authorization", c.auth, "X-SHA-256", h)
		expect(t, resp, http.StatusUnauthorized, c.name)
		t.Logf("%s: %s", c.name, resp.Header.Get("X-Reason"))
	}
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("refused uploads left files: %v", files)
	}

	// Positive controls: a token scoped to this server (among others), in both encodings.
	for i, enc := range []blossom.Encoding{blossom.Base64URL, blossom.Base64Std} {
		ev, err := blossom.SignAuth(context.Background(), alice.signer, blossom.VerbUpload, "x", "cdn.example.com", time.Minute, h)
		if err != nil {
			t.Fatal(err)
		}
		ev.Tags = append(ev.Tags, nostr.Tag{"server", "127.0.0.1"})
		if err := alice.signer.SignEvent(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		resp := ts.req(http.MethodPut, "/upload", bytes.NewReader(data), "Authorization", blossom.AuthHeader(ev, enc), "X-SHA-256", h)
		expect(t, resp, []int{http.StatusCreated, http.StatusOK}[i], "scoped to this server, "+enc.String())
	}
}

func TestHashMismatchStoresNothing(t *testing.T) {
	ts := startServer(t, Options{})
	alice := newUser(t)
	data := randBytes(2, 70_000)
	claimed := sha([]byte("something else"))

	resp := ts.req(http.MethodPut, "/upload", bytes.NewReader(data),
		"Authorization", alice.upload(t, claimed), "X-SHA-256", claimed)
	expect(t, resp, http.StatusConflict, "body not matching X-SHA-256")
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("a refused upload left files: %v", files)
	}

	// Without X-SHA-256 the body's hash must be one of the token's x tags.
	resp = ts.req(http.MethodPut, "/upload", bytes.NewReader(data), "Authorization", alice.upload(t, claimed))
	expect(t, resp, http.StatusConflict, "body not matching the x tag")
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("a refused upload left files: %v", files)
	}
	resp = ts.req(http.MethodPut, "/upload", bytes.NewReader(data), "Authorization", alice.upload(t, claimed, sha(data)))
	d := decodeDescriptor(t, expect(t, resp, http.StatusCreated, "no X-SHA-256, matching x tag"))
	if err := d.Check(sha(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, want := ts.files(), []string{filepath.Join("blobs", d.SHA256[:2], d.SHA256), filepath.Join("blobs", d.SHA256[:2], d.SHA256+".json")}; !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
}

// chunked hides a reader's length so that the client sends it chunked.
type chunked struct{ io.Reader }

func TestMaxSize(t *testing.T) {
	ts := startServer(t, Options{MaxBlobSize: 1024})
	alice := newUser(t)
	big := randBytes(3, 2048)
	h := sha(big)

	resp := ts.req(http.MethodPut, "/upload", bytes.NewReader(big), "Authorization", alice.upload(t, h), "X-SHA-256", h)
	expect(t, resp, http.StatusRequestEntityTooLarge, "Content-Length over the limit")
	resp = ts.req(http.MethodPut, "/upload", chunked{bytes.NewReader(big)}, "Authorization", alice.upload(t, h), "X-SHA-256", h)
	expect(t, resp, http.StatusRequestEntityTooLarge, "chunked body over the limit")
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("refused uploads left files: %v", files)
	}

	exact := big[:1024]
	resp = ts.req(http.MethodPut, "/upload", chunked{bytes.NewReader(exact)}, "Authorization", alice.upload(t, sha(exact)), "X-SHA-256", sha(exact))
	expect(t, resp, http.StatusCreated, "exactly the limit")
}

func TestUploadPreflight(t *testing.T) {
	ts := startServer(t, Options{MaxBlobSize: 1 << 20})
	alice := newUser(t)
	h := sha([]byte("preflight"))
	good := alice.upload(t, h)
	for _, c := range []struct {
		name, auth, x, length string
		want                  int
	}{
		{"ok", good, h, "1000", http.StatusOK},
		{"ok at the limit", good, h, strconv.Itoa(1 << 20), http.StatusOK},
		{"no X-SHA-256", good, "", "1000", http.StatusBadRequest},
		{"bad X-SHA-256", good, "xyz", "1000", http.StatusBadRequest},
		{"uppercase X-SHA-256", good, strings.ToUpper(h), "1000", http.StatusBadRequest},
		{"no X-Content-Length", good, h, "", http.StatusLengthRequired},
		{"bad X-Content-Length", good, h, "12abc", http.StatusBadRequest},
		{"negative X-Content-Length", good, h, "-1", http.StatusBadRequest},
		{"too large", good, h, strconv.Itoa(1<<20 + 1), http.StatusRequestEntityTooLarge},
		{"no auth", "", h, "1000", http.StatusUnauthorized},
		{"wrong x", alice.upload(t, sha([]byte("other"))), h, "1000", http.StatusUnauthorized},
		{"wrong verb", alice.token(t, blossom.VerbList, time.Minute, "", blossom.Base64URL, h), h, "1000", http.StatusUnauthorized},
		{"std encoding", alice.token(t, blossom.VerbUpload, time.Minute, "", blossom.Base64Std, h), h, "1000", http.StatusOK},
	} {
		resp := ts.req(http.MethodHead, "/upload", nil, "Authorization", c.auth, "X-SHA-256", c.x, "X-Content-Length", c.length,
			"X-Content-Type", "application/octet-stream")
		expect(t, resp, c.want, c.name)
	}
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("preflight left files: %v", files)
	}
}

func TestMirror(t *testing.T) {
	a := startServer(t, Options{})
	b := startServer(t, Options{})
	alice := newUser(t)
	data := randBytes(4, 300_000)
	h := sha(data)
	d := decodeDescriptor(t, expect(t, a.putBlob(alice, data, "image/png"), http.StatusCreated, "upload to A"))

	body := func(u string) io.Reader { return strings.NewReader(`{"url":"` + u + `"}`) }
	resp := b.req(http.MethodPut, "/mirror", body(d.URL), "Authorization", alice.upload(t, h))
	md := decodeDescriptor(t, expect(t, resp, http.StatusCreated, "mirror"))
	if err := md.Check(h, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if md.Type != "image/png" || md.URL != b.hs.URL+"/"+h+".png" {
		t.Fatalf("mirror descriptor %+v", md)
	}
	if got := expect(t, b.req(http.MethodGet, "/"+h, nil), http.StatusOK, "GET mirrored"); !bytes.Equal(got, data) {
		t.Fatal("mirrored bytes differ")
	}
	resp = b.req(http.MethodPut, "/mirror", body(d.URL), "Authorization", alice.token(t, blossom.VerbUpload, time.Minute, "", blossom.Base64Std, h))
	expect(t, resp, http.StatusOK, "mirror again")
	ds := decodeList(t, expect(t, b.req(http.MethodGet, "/list/"+alice.pk, nil), http.StatusOK, "list B"))
	if len(ds) != 1 || ds[0].SHA256 != h {
		t.Fatalf("B lists %+v", ds)
	}

	// Origin bytes that do not match the token's x tag.
	other := randBytes(5, 1000)
	od := decodeDescriptor(t, expect(t, a.putBlob(alice, other, ""), http.StatusCreated, "upload other"))
	resp = b.req(http.MethodPut, "/mirror", body(od.URL), "Authorization", alice.upload(t, sha([]byte("not it"))))
	expect(t, resp, http.StatusConflict, "mirror hash mismatch")
	if fileExists(filepath.Join(b.dir, "blobs", od.SHA256[:2], od.SHA256)) {
		t.Fatal("mismatched mirror was stored")
	}

	// Origin failures.
	absent := sha([]byte("absent"))
	resp = b.req(http.MethodPut, "/mirror", body(a.hs.URL+"/"+absent), "Authorization", alice.upload(t, absent))
	expect(t, resp, http.StatusBadGateway, "origin 404")
	resp = b.req(http.MethodPut, "/mirror", body("http://127.0.0.1:1/"+absent), "Authorization", alice.upload(t, absent))
	expect(t, resp, http.StatusBadGateway, "origin unreachable")

	// Bad requests and auth.
	expect(t, b.req(http.MethodPut, "/mirror", strings.NewReader("nope"), "Authorization", alice.upload(t, h)), http.StatusBadRequest, "bad body")
	expect(t, b.req(http.MethodPut, "/mirror", body("file:///etc/passwd"), "Authorization", alice.upload(t, h)), http.StatusBadRequest, "file URL")
	expect(t, b.req(http.MethodPut, "/mirror", body(d.URL)), http.StatusUnauthorized, "mirror without auth")
	expect(t, b.req(http.MethodPut, "/mirror", body(d.URL), "Authorization", alice.upload(t)), http.StatusUnauthorized, "mirror without x")

	if files, _ := filepath.Glob(filepath.Join(b.dir, "tmp", "*")); len(files) != 0 {
		t.Fatalf("temp files left: %v", files)
	}
}

func TestListAndDelete(t *testing.T) {
	ts := startServer(t, Options{})
	alice, bob := newUser(t), newUser(t)
	b1, b2, b3 := randBytes(11, 100), randBytes(12, 200), randBytes(13, 300)
	h1, h2, h3 := sha(b1), sha(b2), sha(b3)
	expect(t, ts.putBlob(alice, b1, ""), http.StatusCreated, "alice b1")
	expect(t, ts.putBlob(alice, b2, ""), http.StatusCreated, "alice b2")
	expect(t, ts.putBlob(bob, b2, ""), http.StatusOK, "bob b2")
	expect(t, ts.putBlob(bob, b3, ""), http.StatusCreated, "bob b3")

	list := func(u user, query string, auth string) []string {
		t.Helper()
		ds := decodeList(t, expect(t, ts.req(http.MethodGet, "/list/"+u.pk+query, nil, "Authorization", auth), http.StatusOK, "list"))
		var hs []string
		for i, d := range ds {
			hs = append(hs, d.SHA256)
			if i > 0 && (d.Uploaded > ds[i-1].Uploaded || d.Uploaded == ds[i-1].Uploaded && d.SHA256 < ds[i-1].SHA256) {
				t.Fatalf("list not sorted newest first: %+v", ds)
			}
		}
		return hs
	}
	sorted := func(hs ...string) []string { slices.Sort(hs); return hs }

	if got := list(alice, "", ""); !slices.Equal(sorted(slices.Clone(got)...), sorted(h1, h2)) {
		t.Fatalf("alice lists %v", got)
	}
	if got := list(bob, "", alice.token(t, blossom.VerbList, time.Minute, "", blossom.Base64Std)); !slices.Equal(sorted(got...), sorted(h2, h3)) {
		t.Fatalf("bob lists %v", got)
	}
	if got := list(newUser(t), "", ""); len(got) != 0 {
		t.Fatalf("a stranger lists %v", got)
	}
	// Pagination: limit and cursor walk the same order.
	all := list(alice, "", "")
	first := list(alice, "?limit=1", "")
	rest := list(alice, "?cursor="+first[0], "")
	if len(first) != 1 || !slices.Equal(append(first, rest...), all) {
		t.Fatalf("pages %v + %v, all %v", first, rest, all)
	}
	expect(t, ts.req(http.MethodGet, "/list/"+alice.pk, nil, "Authorization", alice.upload(t)), http.StatusUnauthorized, "list with an upload token")
	expect(t, ts.req(http.MethodGet, "/list/"+alice.pk, nil, "Authorization",
		alice.token(t, blossom.VerbList, -time.Minute, "", blossom.Base64URL)), http.StatusUnauthorized, "list with an expired token")
	expect(t, ts.req(http.MethodGet, "/list/npub1xyz", nil), http.StatusBadRequest, "list of a bad pubkey")
	expect(t, ts.req(http.MethodGet, "/list/"+alice.pk+"?limit=x", nil), http.StatusBadRequest, "bad limit")

	del := func(u user, h string, auth string, want int, what string) {
		t.Helper()
		if auth == "" {
			auth = u.token(t, blossom.VerbDelete, time.Minute, "", blossom.Base64URL, h)
		}
		expect(t, ts.req(http.MethodDelete, "/"+h, nil, "Authorization", auth), want, what)
	}
	blobFile := func(h string) string { return filepath.Join(ts.dir, "blobs", h[:2], h) }

	del(bob, h1, "", http.StatusNotFound, "bob deletes alice's b1")
	del(alice, h1, alice.token(t, blossom.VerbDelete, time.Minute, "", blossom.Base64URL, h2), http.StatusUnauthorized, "delete token for another blob")
	del(alice, h1, alice.token(t, blossom.VerbDelete, time.Minute, "", blossom.Base64URL), http.StatusUnauthorized, "delete token without x")
	del(alice, h1, alice.upload(t, h1), http.StatusUnauthorized, "delete with an upload token")
	expect(t, ts.req(http.MethodDelete, "/"+h1, nil), http.StatusUnauthorized, "delete without a token")
	if !fileExists(blobFile(h1)) {
		t.Fatal("b1 gone after refused deletes")
	}

	del(alice, h2, "", http.StatusNoContent, "alice deletes shared b2")
	expect(t, ts.req(http.MethodGet, "/"+h2, nil), http.StatusOK, "b2 still served for bob")
	if got := list(alice, "", ""); !slices.Equal(got, []string{h1}) {
		t.Fatalf("alice lists %v after deleting b2", got)
	}
	del(alice, h2, "", http.StatusNotFound, "alice deletes b2 again")
	del(bob, h2, bob.token(t, blossom.VerbDelete, time.Minute, "", blossom.Base64Std, h2), http.StatusNoContent, "bob deletes b2 (std base64)")
	expect(t, ts.req(http.MethodGet, "/"+h2, nil), http.StatusNotFound, "b2 after both deleted")
	if fileExists(blobFile(h2)) || fileExists(blobFile(h2)+".json") {
		t.Fatal("b2's files remain")
	}
	del(alice, h1, "", http.StatusNoContent, "alice deletes b1")
	del(bob, h3, "", http.StatusNoContent, "bob deletes b3")
	if files := ts.files(); len(files) != 0 {
		t.Fatalf("files after deleting everything: %v", files)
	}
}

func TestConcurrentUploadsOfOneBlob(t *testing.T) {
	ts := startServer(t, Options{})
	data := randBytes(20, 3<<20)
	h := sha(data)
	const n = 8
	users := make([]user, n)
	auths := make([]string, n)
	for i := range users {
		users[i] = newUser(t)
		auths[i] = users[i].upload(t, h)
	}
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			r, _ := http.NewRequest(http.MethodPut, ts.hs.URL+"/upload", bytes.NewReader(data))
			r.Header.Set("Authorization", auths[i])
			r.Header.Set("X-SHA-256", h)
			resp, err := ts.hs.Client().Do(r)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for i, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Fatalf("upload %d: status %d", i, s)
		}
	}
	if created != 1 {
		t.Fatalf("%d uploads answered 201, want exactly 1 (statuses %v)", created, statuses)
	}
	if got := expect(t, ts.req(http.MethodGet, "/"+h, nil), http.StatusOK, "GET"); sha(got) != h {
		t.Fatal("stored blob is damaged")
	}
	for i, u := range users {
		ds := decodeList(t, expect(t, ts.req(http.MethodGet, "/list/"+u.pk, nil), http.StatusOK, "list"))
		if len(ds) != 1 || ds[0].SHA256 != h {
			t.Fatalf("user %d is not an owner: %+v", i, ds)
		}
	}
	want := []string{filepath.Join("blobs", h[:2], h), filepath.Join("blobs", h[:2], h+".json")}
	if got := ts.files(); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
}

func TestLargeUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB upload")
	}
	const size = 256 << 20
	const limit = 64 << 20
	ts := startServer(t, Options{})
	alice := newUser(t)
	stream := func() io.Reader {
		return io.LimitReader(rand.NewChaCha8([32]byte{'b', 'i', 'g'}), size)
	}
	hasher := sha256.New()
	if _, err := io.Copy(hasher, stream()); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(hasher.Sum(nil))

	runtime.GC()
	stop := heapwatch.Start()
	pr, pw := io.Pipe()
	go func() { _, err := io.Copy(pw, stream()); pw.CloseWithError(err) }()
	r, _ := http.NewRequest(http.MethodPut, ts.hs.URL+"/upload", pr)
	r.ContentLength = size
	r.Header.Set("Authorization", alice.upload(t, h))
	r.Header.Set("X-SHA-256", h)
	start := time.Now()
	resp, err := ts.hs.Client().Do(r)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	d := decodeDescriptor(t, expect(t, resp, http.StatusCreated, "256 MiB upload"))
	upPeak := stop()
	t.Logf("upload: %v, peak HeapInuse %.1f MiB", time.Since(start), float64(upPeak)/(1<<20))
	if err := d.Check(h, size); err != nil {
		t.Fatal(err)
	}
	if upPeak >= limit {
		t.Fatalf("heap peaked at %d bytes during the upload, limit %d", upPeak, limit)
	}

	runtime.GC()
	stop = heapwatch.Start()
	start = time.Now()
	resp = ts.req(http.MethodGet, "/"+h, nil)
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	downPeak := stop()
	t.Logf("download: %v, peak HeapInuse %.1f MiB", time.Since(start), float64(downPeak)/(1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: status %d, %v", resp.StatusCode, err)
	}
	if n != size || hex.EncodeToString(got.Sum(nil)) != h {
		t.Fatalf("GET returned %d bytes hashing to %x", n, got.Sum(nil))
	}
	if downPeak >= limit {
		t.Fatalf("heap peaked at %d bytes during the download, limit %d", downPeak, limit)
	}
}

func TestAuthOptions(t *testing.T) {
	ts := startServer(t, Options{RequireAuthGet: true, RequireAuthList: true, AnonymousUploads: true})
	alice := newUser(t)
	data := []byte("anonymous blob")
	h := sha(data)
	d := decodeDescriptor(t, expect(t, ts.req(http.MethodPut, "/upload", bytes.NewReader(data)), http.StatusCreated, "anonymous upload"))
	if d.SHA256 != h || d.Type != "application/octet-stream" || !strings.HasSuffix(d.URL, ".bin") {
		t.Fatalf("descriptor %+v", d)
	}
	expect(t, ts.req(http.MethodGet, "/"+h, nil), http.StatusUnauthorized, "GET without a get token")
	expect(t, ts.req(http.MethodGet, "/"+h, nil, "Authorization", alice.token(t, blossom.VerbGet, time.Minute, "", blossom.Base64URL, sha([]byte("x")))),
		http.StatusUnauthorized, "GET with a token for another blob")
	got := expect(t, ts.req(http.MethodGet, "/"+h, nil, "Authorization", alice.token(t, blossom.VerbGet, time.Minute, "", blossom.Base64Std)), http.StatusOK, "GET with a get token")
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	expect(t, ts.req(http.MethodGet, "/list/"+alice.pk, nil), http.StatusUnauthorized, "list without a token")
	expect(t, ts.req(http.MethodGet, "/list/"+alice.pk, nil, "Authorization", alice.token(t, blossom.VerbList, time.Minute, "", blossom.Base64URL)), http.StatusOK, "list with a token")
	// An anonymous blob has no owner: nobody can delete it.
	expect(t, ts.req(http.MethodDelete, "/"+h, nil, "Authorization", alice.token(t, blossom.VerbDelete, time.Minute, "", blossom.Base64URL, h)), http.StatusNotFound, "delete an unowned blob")
	// A token sent with an anonymous upload is still verified.
	expect(t, ts.req(http.MethodPut, "/upload", bytes.NewReader(data), "Authorization", alice.token(t, blossom.VerbUpload, -time.Minute, "", blossom.Base64URL, h)),
		http.StatusUnauthorized, "anonymous-allowed upload with an expired token")
}

func TestRestartKeepsBlobs(t *testing.T) {
	dir := t.TempDir()
	alice := newUser(t)
	data := randBytes(30, 5000)
	h := sha(data)
	s1, err := New(dir, Options{PublicURL: "http://blobs.test/"})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, s: s1, dir: dir}
	ts.hs = newHTTPTest(t, s1)
	d := decodeDescriptor(t, expect(t, ts.putBlob(alice, data, "text/plain"), http.StatusCreated, "upload"))
	if d.URL != "http://blobs.test/"+h+".txt" {
		t.Fatalf("url %q", d.URL)
	}
	ts.hs.Close()

	s2, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts.hs = newHTTPTest(t, s2)
	got := expect(t, ts.req(http.MethodGet, "/"+h, nil), http.StatusOK, "GET after restart")
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ after restart")
	}
	ds := decodeList(t, expect(t, ts.req(http.MethodGet, "/list/"+alice.pk, nil), http.StatusOK, "list after restart"))
	if len(ds) != 1 || ds[0].Type != "text/plain" || ds[0].Uploaded != d.Uploaded || ds[0].URL != ts.hs.URL+"/"+h+".txt" {
		t.Fatalf("after restart %+v, before %+v", ds, d)
	}
}

func TestCORSPreflight(t *testing.T) {
	ts := startServer(t, Options{})
	resp := ts.req(http.MethodOptions, "/upload", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "PUT")
	expect(t, resp, http.StatusNoContent, "OPTIONS")
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight headers %v", resp.Header)
	}
}
