// Package blossomserver is a Blossom server that keeps blobs on disk: BUD-01 (GET and HEAD
// with Range), BUD-02 (PUT /upload), BUD-04 (PUT /mirror), BUD-06 (HEAD /upload), BUD-11
// (kind 24242 authorization, both base64 encodings) and BUD-12 (GET /list/<pubkey>, DELETE).
// It backs nostr-homed's development stack and tests, and is small enough to run for real.
//
// # On-disk layout
//
// Under the data directory given to New:
//
//	blobs/ab/abcd…ef        the blob, named by its lowercase hex sha256, fanned out by its
//	                        first two hex digits so that no directory grows too large
//	blobs/ab/abcd…ef.json   its sidecar: {"size","type","uploaded","owners"}; owners is the
//	                        set of pubkeys that uploaded or mirrored it
//	tmp/                    uploads in progress and sidecars being written; emptied by New
//
// A blob reaches its content path only by rename(2) from tmp/ (same file system, so the
// rename is atomic) after its bytes were hashed and fsynced: a reader never sees a partial
// blob, and two concurrent uploads of the same blob each write their own temp file and the
// second rename replaces identical bytes. Sidecars are replaced the same way. The blob is the
// source of truth; a missing sidecar means "no owners, type unknown". Paths are only ever
// built from hashes validated as 64 lowercase hex digits.
//
// # Why uploads stream
//
// nostr-homed stores whole home directories as encrypted blobs that can be gigabytes long.
// The request body is copied through a fixed 256 KiB buffer into the temp file while being
// hashed, so the server's memory does not depend on blob size (khatru's blossom package, by
// contrast, holds each upload in memory). Downloads are served from the file with
// http.ServeContent, which supports Range requests and uses sendfile where it can. Mirror
// fetches stream the same way.
//
// # Authorization
//
// Tokens are verified with blossom.VerifyRequest's rules against the host name the request
// was addressed to (Host header, port stripped, lowercased), so a token scoped with a
// `server` tag to another host is refused. Uploads, mirrors and deletes need a token by
// default; GET, HEAD and list do not, but a token that is sent is always verified.
// Mirror fetches any http(s) URL, including loopback ones: run it where that is acceptable.
package blossomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/blossom"
)

// DefaultMaxBlobSize is the size limit when Options.MaxBlobSize is zero.
const DefaultMaxBlobSize = 2 << 30

// DefaultMirrorTimeout bounds a mirror fetch when Options.MirrorTimeout is zero.
const DefaultMirrorTimeout = 10 * time.Minute

// Options configures a Server. The zero value is a usable configuration.
type Options struct {
	// PublicURL is the base URL used in descriptors' url fields, e.g. "http://127.0.0.1:7777".
	// Empty means "http://" + the request's Host. It can be changed later with SetPublicURL.
	PublicURL string
	// MaxBlobSize limits uploads and mirrors (413 beyond). Zero means DefaultMaxBlobSize.
	MaxBlobSize int64
	// RequireAuthGet makes GET and HEAD /<sha256> require a `get` token.
	RequireAuthGet bool
	// RequireAuthList makes GET /list/<pubkey> require a `list` token.
	RequireAuthList bool
	// AnonymousUploads lets PUT /upload, HEAD /upload and PUT /mirror proceed without a
	// token (a token that is sent is still verified and its author recorded as an owner).
	// DELETE always needs a token: only owners may delete.
	AnonymousUploads bool
	// HTTPClient fetches mirrored blobs. Nil means a client without a global timeout
	// (MirrorTimeout bounds each fetch).
	HTTPClient *http.Client
	// MirrorTimeout bounds one mirror fetch. Zero means DefaultMirrorTimeout.
	MirrorTimeout time.Duration
	// Logf receives internal errors (those answered with 5xx). Nil discards them.
	Logf func(format string, args ...any)
}

// Server is a Blossom server. It is an http.Handler serving from the root of its URL space.
// Only one Server may use a data directory at a time.
type Server struct {
	st        *store
	opts      Options
	publicURL atomic.Pointer[string]
	client    *http.Client
}

// New opens (creating if needed) the data directory dir and returns a server for it.
func New(dir string, opts Options) (*Server, error) {
	if dir == "" {
		return nil, errors.New("blossomserver: empty data directory")
	}
	if opts.MaxBlobSize <= 0 {
		opts.MaxBlobSize = DefaultMaxBlobSize
	}
	if opts.MirrorTimeout <= 0 {
		opts.MirrorTimeout = DefaultMirrorTimeout
	}
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{st: st, opts: opts, client: opts.HTTPClient}
	if s.client == nil {
		s.client = &http.Client{}
	}
	s.SetPublicURL(opts.PublicURL)
	return s, nil
}

// SetPublicURL sets the base URL used in descriptors (see Options.PublicURL).
func (s *Server) SetPublicURL(u string) {
	u = strings.TrimRight(u, "/")
	s.publicURL.Store(&u)
}

// Dir returns the data directory.
func (s *Server) Dir() string { return s.st.root }

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// ServeHTTP routes a request:
//
//	PUT  /upload            upload (BUD-02)         HEAD /upload  preflight (BUD-06)
//	PUT  /mirror            mirror (BUD-04)         GET  /list/<pubkey>  list (BUD-12)
//	GET  /<sha256>[.ext]    blob (BUD-01)           HEAD /<sha256>[.ext] blob metadata
//	DELETE /<sha256>[.ext]  delete (BUD-12)         OPTIONS *     CORS preflight
//
// Anything else is 400 (a path that is not a blob name) or 405 (a method the path does not
// take).
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &reasonWriter{ResponseWriter: rw}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "X-Reason, Content-Length, Content-Range, Accept-Ranges, ETag")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Headers", "Authorization, *")
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, DELETE")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}

	p := r.URL.Path
	switch {
	case p == "/upload":
		switch r.Method {
		case http.MethodPut:
			s.handleUpload(w, r)
		case http.MethodHead:
			s.handleUploadPreflight(w, r)
		default:
			methodNotAllowed(w, "PUT, HEAD, OPTIONS")
		}
	case p == "/mirror":
		if r.Method != http.MethodPut {
			methodNotAllowed(w, "PUT, OPTIONS")
			return
		}
		s.handleMirror(w, r)
	case strings.HasPrefix(p, "/list/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD, OPTIONS")
			return
		}
		s.handleList(w, r, p[len("/list/"):])
	default:
		hash, ok := parseBlobPath(p)
		if !ok {
			fail(w, http.StatusBadRequest, "path is not /<sha256>[.ext] (64 lowercase hex digits)")
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.handleGet(w, r, hash)
		case http.MethodDelete:
			s.handleDelete(w, r, hash)
		default:
			methodNotAllowed(w, "GET, HEAD, DELETE, OPTIONS")
		}
	}
}

// parseBlobPath accepts "/<sha256>" with an optional extension of up to 32 characters from
// [A-Za-z0-9._-] (no "..", no "/"). The extension is ignored: the type comes from metadata.
func parseBlobPath(p string) (string, bool) {
	if len(p) < 65 || p[0] != '/' {
		return "", false
	}
	hash, ext := p[1:65], p[65:]
	if !validHash(hash) {
		return "", false
	}
	if ext == "" {
		return hash, true
	}
	if ext[0] != '.' || len(ext) < 2 || len(ext) > 33 || strings.Contains(ext, "..") {
		return "", false
	}
	for i := 1; i < len(ext); i++ {
		c := ext[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", false
		}
	}
	return hash, true
}

func validHash(h string) bool { return blobstore.CheckHash(h) == nil }

// serverHost is the host name a request was addressed to, as BUD-11 `server` tags name it.
func serverHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(host)
}

// authorize verifies the request's token for req. It returns (nil, "", nil) when there is no
// Authorization header and required is false.
func (s *Server) authorize(r *http.Request, req blossom.AuthRequest, required bool) (*nostr.Event, string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if !required {
			return nil, "", nil
		}
		return nil, "", fmt.Errorf("%w: authorization required (kind 24242, t=%s)", blossom.ErrAuth, req.Verb)
	}
	ev, err := blossom.ParseAuthHeader(h)
	if err != nil {
		return nil, "", err
	}
	req.ServerHost = serverHost(r)
	pk, err := blossom.VerifyAuth(ev, req)
	if err != nil {
		return nil, "", err
	}
	return ev, pk, nil
}

// xTags returns the token's `x` tag values.
func xTags(ev *nostr.Event) []string {
	var xs []string
	for _, t := range ev.Tags {
		if len(t) >= 2 && t[0] == "x" {
			xs = append(xs, t[1])
		}
	}
	return xs
}

// uploadAuth authorizes an upload or mirror. want is the announced hash ("" if unknown).
// allowed is nil when any hash may be stored, else the token's x tags, one of which the
// stored blob's hash must equal.
func (s *Server) uploadAuth(w http.ResponseWriter, r *http.Request, want string) (owner string, allowed []string, ok bool) {
	ev, pk, err := s.authorize(r, blossom.AuthRequest{Verb: blossom.VerbUpload, Hash: want, RequireX: want != ""}, !s.opts.AnonymousUploads)
	if err != nil {
		fail(w, http.StatusUnauthorized, "%v", err)
		return "", nil, false
	}
	if ev == nil {
		return "", nil, true
	}
	allowed = xTags(ev)
	if len(allowed) == 0 {
		fail(w, http.StatusUnauthorized, "%v: upload token needs an x tag with the blob's sha256", blossom.ErrAuth)
		return "", nil, false
	}
	return pk, allowed, true
}

func (s *Server) handleUploadPreflight(w http.ResponseWriter, r *http.Request) {
	want := strings.TrimSpace(r.Header.Get("X-SHA-256"))
	if want == "" {
		fail(w, http.StatusBadRequest, "X-SHA-256 header required")
		return
	}
	if err := blobstore.CheckHash(want); err != nil {
		fail(w, http.StatusBadRequest, "invalid X-SHA-256: %v", err)
		return
	}
	cl := strings.TrimSpace(r.Header.Get("X-Content-Length"))
	if cl == "" {
		fail(w, http.StatusLengthRequired, "X-Content-Length header required")
		return
	}
	size, err := strconv.ParseInt(cl, 10, 64)
	if err != nil || size < 0 {
		fail(w, http.StatusBadRequest, "invalid X-Content-Length %q", cl)
		return
	}
	if _, _, ok := s.uploadAuth(w, r, want); !ok {
		return
	}
	if size > s.opts.MaxBlobSize {
		fail(w, http.StatusRequestEntityTooLarge, "blob of %d bytes exceeds the limit of %d bytes", size, s.opts.MaxBlobSize)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	want := strings.TrimSpace(r.Header.Get("X-SHA-256"))
	if want != "" {
		if err := blobstore.CheckHash(want); err != nil {
			fail(w, http.StatusBadRequest, "invalid X-SHA-256: %v", err)
			return
		}
	}
	owner, allowed, ok := s.uploadAuth(w, r, want)
	if !ok {
		return
	}
	if r.ContentLength > s.opts.MaxBlobSize {
		fail(w, http.StatusRequestEntityTooLarge, "blob of %d bytes exceeds the limit of %d bytes", r.ContentLength, s.opts.MaxBlobSize)
		return
	}
	rec, err := s.st.receive(r.Body, s.opts.MaxBlobSize)
	if err != nil {
		s.failReceive(w, err, http.StatusBadRequest)
		return
	}
	if r.ContentLength >= 0 && rec.size != r.ContentLength {
		s.st.discard(rec)
		fail(w, http.StatusBadRequest, "received %d bytes, Content-Length said %d", rec.size, r.ContentLength)
		return
	}
	if want != "" && rec.hash != want {
		s.st.discard(rec)
		fail(w, http.StatusConflict, "body hashes to %s, X-SHA-256 says %s", rec.hash, want)
		return
	}
	if allowed != nil && !slices.Contains(allowed, rec.hash) {
		s.st.discard(rec)
		fail(w, http.StatusConflict, "body hashes to %s, which no x tag of the authorization names", rec.hash)
		return
	}
	s.finish(w, r, rec, contentType(r.Header.Get("Content-Type")), owner)
}

// failReceive answers a failed receive. readStatus is the status for a failure to read the
// incoming bytes (400 for a client's body, 502 for a mirror origin).
func (s *Server) failReceive(w http.ResponseWriter, err error, readStatus int) {
	var re *readError
	switch {
	case errors.Is(err, errTooLarge):
		fail(w, http.StatusRequestEntityTooLarge, "blob exceeds the limit of %d bytes", s.opts.MaxBlobSize)
	case errors.As(err, &re):
		fail(w, readStatus, "%v", err)
	case errors.Is(err, syscall.ENOSPC):
		s.logf("blossomserver: storing blob: %v", err)
		fail(w, http.StatusInsufficientStorage, "server is out of space")
	default:
		s.logf("blossomserver: storing blob: %v", err)
		fail(w, http.StatusInternalServerError, "could not store the blob")
	}
}

// finish commits a received blob and answers 201 (new) or 200 (already there) with its
// descriptor.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, rec received, ctype, owner string) {
	m, created, err := s.st.commit(rec, ctype, owner)
	if err != nil {
		s.logf("blossomserver: committing %s: %v", rec.hash, err)
		fail(w, http.StatusInternalServerError, "could not store the blob")
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, s.descriptor(r, rec.hash, m))
}

// mirrorRequest is BUD-04's request body.
type mirrorRequest struct {
	URL string `json:"url"`
}

func (s *Server) handleMirror(w http.ResponseWriter, r *http.Request) {
	var req mirrorRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "body must be {\"url\": ...}: %v", err)
		return
	}
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail(w, http.StatusBadRequest, "url must be an absolute http(s) URL")
		return
	}
	owner, allowed, ok := s.uploadAuth(w, r, "")
	if !ok {
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.opts.MirrorTimeout)
	defer cancel()
	oreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fail(w, http.StatusBadRequest, "url: %v", err)
		return
	}
	resp, err := s.client.Do(oreq)
	if err != nil {
		fail(w, http.StatusBadGateway, "fetching %s: %v", u.Redacted(), err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fail(w, http.StatusBadGateway, "origin answered %s", resp.Status)
		return
	}
	if resp.ContentLength > s.opts.MaxBlobSize {
		fail(w, http.StatusRequestEntityTooLarge, "origin blob of %d bytes exceeds the limit of %d bytes", resp.ContentLength, s.opts.MaxBlobSize)
		return
	}
	rec, err := s.st.receive(resp.Body, s.opts.MaxBlobSize)
	if err != nil {
		s.failReceive(w, err, http.StatusBadGateway)
		return
	}
	if resp.ContentLength >= 0 && rec.size != resp.ContentLength {
		s.st.discard(rec)
		fail(w, http.StatusBadGateway, "origin sent %d bytes, announced %d", rec.size, resp.ContentLength)
		return
	}
	if allowed != nil && !slices.Contains(allowed, rec.hash) {
		s.st.discard(rec)
		fail(w, http.StatusConflict, "mirrored blob hashes to %s, which no x tag of the authorization names", rec.hash)
		return
	}
	s.finish(w, r, rec, contentType(resp.Header.Get("Content-Type")), owner)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, hash string) {
	if _, _, err := s.authorize(r, blossom.AuthRequest{Verb: blossom.VerbGet, Hash: hash}, s.opts.RequireAuthGet); err != nil {
		fail(w, http.StatusUnauthorized, "%v", err)
		return
	}
	f, err := os.Open(s.st.blobPath(hash))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			fail(w, http.StatusNotFound, "blob not found")
			return
		}
		s.logf("blossomserver: opening %s: %v", hash, err)
		fail(w, http.StatusInternalServerError, "could not open the blob")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.logf("blossomserver: stat %s: %v", hash, err)
		fail(w, http.StatusInternalServerError, "could not open the blob")
		return
	}
	m, _, _ := s.st.readMeta(hash)
	modtime := fi.ModTime()
	if m.Uploaded > 0 {
		modtime = time.Unix(m.Uploaded, 0)
	}
	h := w.Header()
	h.Set("Content-Type", contentType(m.Type))
	h.Set("ETag", `"`+hash+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	// ServeContent answers HEAD without a body, handles Range (206/416), If-Range and
	// conditional requests, and sets Content-Length and Accept-Ranges.
	http.ServeContent(w, r, "", modtime, f)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, hash string) {
	_, pk, err := s.authorize(r, blossom.AuthRequest{Verb: blossom.VerbDelete, Hash: hash, RequireX: true}, true)
	if err != nil {
		fail(w, http.StatusUnauthorized, "%v", err)
		return
	}
	found, err := s.st.removeOwner(hash, pk)
	if err != nil {
		s.logf("blossomserver: deleting %s: %v", hash, err)
		fail(w, http.StatusInternalServerError, "could not delete the blob")
		return
	}
	if !found {
		fail(w, http.StatusNotFound, "blob not found or not owned by %s", pk)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, pubkey string) {
	if !validHash(pubkey) {
		fail(w, http.StatusBadRequest, "pubkey must be 64 lowercase hex digits")
		return
	}
	if _, _, err := s.authorize(r, blossom.AuthRequest{Verb: blossom.VerbList}, s.opts.RequireAuthList); err != nil {
		fail(w, http.StatusUnauthorized, "%v", err)
		return
	}
	q := r.URL.Query()
	cursor := q.Get("cursor")
	if cursor != "" && !validHash(cursor) {
		fail(w, http.StatusBadRequest, "cursor must be a sha256")
		return
	}
	limit, since, until := -1, int64(-1), int64(-1)
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"since", &since}, {"until", &until}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				fail(w, http.StatusBadRequest, "invalid %s", p.name)
				return
			}
			*p.dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, "invalid limit")
			return
		}
		limit = n
	}

	items, err := s.st.ownedBy(pubkey)
	if err != nil {
		s.logf("blossomserver: listing: %v", err)
		fail(w, http.StatusInternalServerError, "could not list blobs")
		return
	}
	// Newest first (BUD-12); the hash breaks ties so that cursors are stable.
	slices.SortFunc(items, func(a, b listed) int {
		if a.meta.Uploaded != b.meta.Uploaded {
			if a.meta.Uploaded > b.meta.Uploaded {
				return -1
			}
			return 1
		}
		return strings.Compare(a.hash, b.hash)
	})
	if cursor != "" {
		i := slices.IndexFunc(items, func(it listed) bool { return it.hash == cursor })
		if i < 0 {
			fail(w, http.StatusBadRequest, "cursor %s is not in this list", cursor)
			return
		}
		items = items[i+1:]
	}
	out := make([]blossom.Descriptor, 0, len(items))
	for _, it := range items {
		if since >= 0 && it.meta.Uploaded < since || until >= 0 && it.meta.Uploaded > until {
			continue
		}
		if limit >= 0 && len(out) >= limit {
			break
		}
		out = append(out, s.descriptor(r, it.hash, it.meta))
	}
	writeJSON(w, http.StatusOK, out)
}

// descriptor builds a blob's BUD-02 descriptor.
func (s *Server) descriptor(r *http.Request, hash string, m meta) blossom.Descriptor {
	base := *s.publicURL.Load()
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	t := contentType(m.Type)
	return blossom.Descriptor{
		URL:      base + "/" + hash + extension(t),
		SHA256:   hash,
		Size:     m.Size,
		Type:     t,
		Uploaded: m.Uploaded,
	}
}

// contentType normalises a Content-Type header value; unknown or malformed is
// application/octet-stream.
func contentType(v string) string {
	if v == "" {
		return "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || !strings.Contains(mt, "/") {
		return "application/octet-stream"
	}
	if t := mime.FormatMediaType(mt, params); t != "" {
		return t
	}
	return "application/octet-stream"
}

var extensions = map[string]string{
	"application/octet-stream": ".bin",
	"application/json":         ".json",
	"application/pdf":          ".pdf",
	"application/gzip":         ".gz",
	"application/zstd":         ".zst",
	"text/plain":               ".txt",
	"image/png":                ".png",
	"image/jpeg":               ".jpg",
	"image/gif":                ".gif",
	"image/webp":               ".webp",
}

// extension picks the file extension for a descriptor URL (BUD-02 wants one): a fixed table
// so that URLs do not depend on the machine's mime.types, ".bin" for anything else.
func extension(ctype string) string {
	mt, _, _ := mime.ParseMediaType(ctype)
	if ext, ok := extensions[mt]; ok {
		return ext
	}
	return ".bin"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail(w, http.StatusInternalServerError, "encoding response: %v", err)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	fail(w, http.StatusMethodNotAllowed, "method not allowed here (allowed: %s)", allow)
}

// fail answers an error with its message in X-Reason (BUD-01) and in a text body.
func fail(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h := w.Header()
	h.Set("X-Reason", headerSafe(msg))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// headerSafe keeps a header value printable ASCII and short.
func headerSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	if len(b) > 300 {
		b = append(b[:297], "..."...)
	}
	return string(b)
}

// reasonWriter makes sure every error response carries X-Reason, including those written by
// net/http itself (ServeContent's 416, for one).
type reasonWriter struct {
	http.ResponseWriter
}

func (w *reasonWriter) WriteHeader(code int) {
	if code >= 400 && w.Header().Get("X-Reason") == "" {
		w.Header().Set("X-Reason", http.StatusText(code))
	}
	w.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps net/http's sendfile path for blob downloads.
func (w *reasonWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *reasonWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
