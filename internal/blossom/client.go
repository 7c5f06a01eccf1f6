package blossom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// Server is one Blossom server the client talks to.
type Server struct {
	URL      string   // base URL, e.g. https://blossom.example
	Encoding Encoding // how it wants the Authorization header
}

// Client implements blobstore.Store over one or more Blossom servers.
type Client struct {
	servers  []Server
	signer   nostr.Signer
	http     *http.Client
	attempts int           // tries per server for transient failures
	backoff  time.Duration // first wait between tries; doubles, with jitter
	maxWait  time.Duration // cap on one wait
	idle     time.Duration // a transfer that makes no progress for this long is abandoned
	tokenTTL time.Duration
}

var _ blobstore.Store = (*Client)(nil)

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (its Timeout should be zero: transfers of large blobs
// are bounded by the idle timeout instead).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithRetries sets how many times a transient failure is tried per server, and the first
// backoff between tries.
func WithRetries(attempts int, backoff time.Duration) Option {
	return func(c *Client) { c.attempts, c.backoff = max(attempts, 1), backoff }
}

// WithIdleTimeout bounds how long a request may make no progress (no bytes sent or received,
// no response) before it is abandoned: a slow server gets a timeout, not a hang.
func WithIdleTimeout(d time.Duration) Option { return func(c *Client) { c.idle = d } }

// New returns a client for servers, signing auth tokens with signer.
func New(signer nostr.Signer, servers []Server, opts ...Option) (*Client, error) {
	if len(servers) == 0 {
		return nil, errors.New("blossom: no servers configured")
	}
	c := &Client{
		signer:   signer,
		attempts: 4,
		backoff:  250 * time.Millisecond,
		maxWait:  8 * time.Second,
		idle:     30 * time.Second,
		tokenTTL: 10 * time.Minute,
	}
	for _, s := range servers {
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("blossom: server %q is not an http(s) URL", s.URL)
		}
		s.URL = strings.TrimRight(s.URL, "/")
		c.servers = append(c.servers, s)
	}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return c, nil
}

// Servers returns the configured servers' URLs, in order.
func (c *Client) Servers() []string {
	out := make([]string, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.URL
	}
	return out
}

// ServerError is a server's refusal, with its status and X-Reason.
type ServerError struct {
	Server string
	Op     string
	Status int
	Reason string
}

func (e *ServerError) Error() string {
	r := e.Reason
	if r == "" {
		r = http.StatusText(e.Status)
	}
	return fmt.Sprintf("blossom: %s %s: %d %s", e.Op, e.Server, e.Status, r)
}

// transient reports whether err is worth another try on the same server.
func transient(err error) bool {
	var se *ServerError
	if errors.As(err, &se) {
		return se.Status >= 500 || se.Status == http.StatusTooManyRequests || se.Status == http.StatusRequestTimeout
	}
	if errors.Is(err, blobstore.ErrNotFound) || errors.Is(err, blobstore.ErrHashMismatch) || errors.Is(err, ErrAuth) {
		return false
	}
	return true // network errors, idle timeouts, truncated bodies
}

// retry runs op up to c.attempts times while it fails transiently, waiting with exponential
// backoff and jitter between tries.
func (c *Client) retry(ctx context.Context, op func() error) error {
	wait := c.backoff
	var err error
	for i := 0; i < c.attempts; i++ {
		if err = op(); err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if i == c.attempts-1 {
			break
		}
		d := wait/2 + rand.N(wait/2+1)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		}
		wait = min(wait*2, c.maxWait)
	}
	return err
}

// watchdog cancels a request that makes no progress for c.idle. Every read of the request
// body or the response body counts as progress.
type watchdog struct {
	timer  *time.Timer
	idle   time.Duration
	fired  chan struct{}
	once   sync.Once
	cancel context.CancelFunc
}

func (c *Client) newWatchdog(ctx context.Context) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watchdog{idle: c.idle, fired: make(chan struct{}), cancel: cancel}
	w.timer = time.AfterFunc(c.idle, func() {
		w.once.Do(func() { close(w.fired) })
		cancel()
	})
	return ctx, w
}

func (w *watchdog) kick() { w.timer.Reset(w.idle) }

func (w *watchdog) stop() { w.timer.Stop(); w.cancel() }

// err turns a cancellation caused by the watchdog into a clear timeout error.
func (w *watchdog) err(err error) error {
	select {
	case <-w.fired:
		return fmt.Errorf("blossom: no progress for %s: %w", w.idle, os.ErrDeadlineExceeded)
	default:
		return err
	}
}

type kickReader struct {
	r io.Reader
	w *watchdog
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.w.kick()
	}
	return n, err
}

func (w *watchdog) pause() { w.timer.Stop() }

// bodyCloser is a response body read under a watchdog that runs only while a Read waits for
// the server, so a caller that consumes slowly is never timed out. Closing it stops the
// watchdog.
type bodyCloser struct {
	kickReader
	body io.Closer
}

func (b *bodyCloser) Read(p []byte) (int, error) {
	b.w.kick()
	n, err := b.kickReader.Read(p)
	b.w.pause()
	if err != nil && err != io.EOF {
		err = b.w.err(err)
	}
	return n, err
}

func (b *bodyCloser) Close() error {
	b.w.stop()
	return b.body.Close()
}

func (c *Client) authHeader(ctx context.Context, s Server, verb, content string, hashes ...string) (string, error) {
	u, _ := url.Parse(s.URL)
	ev, err := SignAuth(ctx, c.signer, verb, content, u.Hostname(), c.tokenTTL, hashes...)
	if err != nil {
		return "", err
	}
	return AuthHeader(ev, s.Encoding), nil
}

func serverError(s Server, op string, resp *http.Response) error {
	// The body of an error is advice for a person; read a little of it if X-Reason is absent.
	reason := resp.Header.Get("X-Reason")
	if reason == "" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		reason = strings.TrimSpace(string(b))
	}
	if resp.StatusCode == http.StatusNotFound && (op == "get" || op == "head") {
		return fmt.Errorf("%w on %s", blobstore.ErrNotFound, s.URL)
	}
	return &ServerError{Server: s.URL, Op: op, Status: resp.StatusCode, Reason: reason}
}

// Put uploads the blob to every server concurrently and returns the receipts of those that
// stored it with the right hash and size. It fails only if none did; the error then joins
// every server's failure.
func (c *Client) Put(ctx context.Context, hash string, size int64, r io.ReaderAt) ([]blobstore.Receipt, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("blossom: negative size %d", size)
	}
	type result struct {
		rc  blobstore.Receipt
		err error
	}
	results := make([]result, len(c.servers))
	var wg sync.WaitGroup
	for i, s := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := c.putOne(ctx, s, hash, size, r)
			results[i] = result{rc, err}
		}()
	}
	wg.Wait()
	var receipts []blobstore.Receipt
	var errs []error
	for _, res := range results {
		if res.err != nil {
			errs = append(errs, res.err)
		} else {
			receipts = append(receipts, res.rc)
		}
	}
	if len(receipts) == 0 {
		return nil, fmt.Errorf("blossom: upload of %s failed on every server: %w", hash, errors.Join(errs...))
	}
	return receipts, nil
}

// PutTo uploads to one server (by URL, which must be configured), e.g. to complete a blob's
// replication later.
func (c *Client) PutTo(ctx context.Context, server, hash string, size int64, r io.ReaderAt) (blobstore.Receipt, error) {
	s, err := c.server(server)
	if err != nil {
		return blobstore.Receipt{}, err
	}
	return c.putOne(ctx, s, hash, size, r)
}

func (c *Client) server(u string) (Server, error) {
	u = strings.TrimRight(u, "/")
	for _, s := range c.servers {
		if s.URL == u {
			return s, nil
		}
	}
	return Server{}, fmt.Errorf("blossom: %s is not a configured server", u)
}

func (c *Client) putOne(ctx context.Context, s Server, hash string, size int64, r io.ReaderAt) (blobstore.Receipt, error) {
	// A server that already has the blob needs no upload (content addressing makes this safe:
	// the bytes are defined by the hash, and a later GET is verified anyway).
	if n, err := c.statOne(ctx, s, hash); err == nil && n == size {
		return blobstore.Receipt{Backend: s.URL, URL: s.URL + "/" + hash, Size: size}, nil
	}
	if err := c.Preflight(ctx, s.URL, hash, size); err != nil {
		return blobstore.Receipt{}, err
	}
	var d Descriptor
	err := c.retry(ctx, func() error {
		var err error
		d, err = c.upload(ctx, s, hash, size, r)
		return err
	})
	if err != nil {
		return blobstore.Receipt{}, err
	}
	return blobstore.Receipt{Backend: s.URL, URL: d.URL, Size: d.Size}, nil
}

func (c *Client) upload(ctx context.Context, s Server, hash string, size int64, r io.ReaderAt) (Descriptor, error) {
	auth, err := c.authHeader(ctx, s, VerbUpload, "Upload Blob", hash)
	if err != nil {
		return Descriptor{}, err
	}
	rctx, wd := c.newWatchdog(ctx)
	defer wd.stop()
	body := &kickReader{r: io.NewSectionReader(r, 0, size), w: wd}
	req, err := http.NewRequestWithContext(rctx, http.MethodPut, s.URL+"/upload", body)
	if err != nil {
		return Descriptor{}, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	// GetBody lets the transport resend the body itself on a reused connection that died.
	req.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(&kickReader{r: io.NewSectionReader(r, 0, size), w: wd}), nil
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-SHA-256", hash)
	resp, err := c.http.Do(req)
	if err != nil {
		return Descriptor{}, fmt.Errorf("blossom: upload to %s: %w", s.URL, wd.err(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return Descriptor{}, serverError(s, "upload", resp)
	}
	d, err := DecodeDescriptor(&kickReader{r: resp.Body, w: wd})
	if err != nil {
		return Descriptor{}, fmt.Errorf("blossom: upload to %s: %w", s.URL, wd.err(err))
	}
	if err := d.Check(hash, size); err != nil {
		return Descriptor{}, fmt.Errorf("blossom: upload to %s: %w", s.URL, err)
	}
	return d, nil
}

// Preflight asks server (BUD-06 HEAD /upload) whether it would accept the blob. A server that
// does not implement the endpoint (404, 405, 501) is taken as willing.
func (c *Client) Preflight(ctx context.Context, server, hash string, size int64) error {
	s, err := c.server(server)
	if err != nil {
		return err
	}
	auth, err := c.authHeader(ctx, s, VerbUpload, "Upload Blob", hash)
	if err != nil {
		return err
	}
	return c.retry(ctx, func() error {
		rctx, wd := c.newWatchdog(ctx)
		defer wd.stop()
		req, err := http.NewRequestWithContext(rctx, http.MethodHead, s.URL+"/upload", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("X-SHA-256", hash)
		req.Header.Set("X-Content-Length", strconv.FormatInt(size, 10))
		req.Header.Set("X-Content-Type", "application/octet-stream")
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("blossom: preflight %s: %w", s.URL, wd.err(err))
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return nil
		}
		return serverError(s, "preflight", resp)
	})
}

// Stat returns the blob's size on the first server that has it.
func (c *Client) Stat(ctx context.Context, hash string) (int64, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return 0, err
	}
	var errs []error
	for _, s := range c.servers {
		n, err := c.statOne(ctx, s, hash)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
	}
	return 0, notFoundOr(hash, errs)
}

func (c *Client) statOne(ctx context.Context, s Server, hash string) (int64, error) {
	var n int64
	err := c.retry(ctx, func() error {
		resp, wd, err := c.get(ctx, s, http.MethodHead, hash, "")
		if err != nil {
			return err
		}
		resp.Body.Close()
		wd.stop()
		if resp.ContentLength < 0 {
			return &ServerError{Server: s.URL, Op: "head", Status: resp.StatusCode, Reason: "no Content-Length"}
		}
		n = resp.ContentLength
		return nil
	})
	return n, err
}

// get sends a GET or HEAD for hash with an optional Range, under a watchdog that the caller
// stops (by closing the body it gets). A 401 is answered once with a `get` token: most
// servers serve blobs without one.
func (c *Client) get(ctx context.Context, s Server, method, hash, rng string) (*http.Response, *watchdog, error) {
	op := strings.ToLower(method)
	auth := ""
	for try := 0; try < 2; try++ {
		rctx, wd := c.newWatchdog(ctx)
		req, err := http.NewRequestWithContext(rctx, method, s.URL+"/"+hash, nil)
		if err != nil {
			wd.stop()
			return nil, nil, err
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			wd.stop()
			return nil, nil, fmt.Errorf("blossom: %s %s: %w", op, s.URL, wd.err(err))
		}
		if resp.StatusCode == http.StatusUnauthorized && auth == "" {
			resp.Body.Close()
			wd.stop()
			if auth, err = c.authHeader(ctx, s, VerbGet, "Get Blob", hash); err != nil {
				return nil, nil, err
			}
			continue
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
			err := serverError(s, op, resp)
			resp.Body.Close()
			wd.stop()
			return nil, nil, err
		}
		wd.pause() // until the caller reads the body
		return resp, wd, nil
	}
	return nil, nil, &ServerError{Server: s.URL, Op: op, Status: http.StatusUnauthorized, Reason: "refused our get token"}
}

// Get streams the whole blob from the first server that has it. The reader fails at EOF with
// blobstore.ErrHashMismatch if the server sent other bytes; use FetchFile to fall back to the
// next server in that case.
func (c *Client) Get(ctx context.Context, hash string) (io.ReadCloser, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range c.servers {
		var body io.ReadCloser
		err := c.retry(ctx, func() error {
			resp, wd, err := c.get(ctx, s, http.MethodGet, hash, "")
			if err != nil {
				return err
			}
			body = &bodyCloser{kickReader{resp.Body, wd}, resp.Body}
			return nil
		})
		if err == nil {
			return blobstore.VerifyingReader(body, hash, -1), nil
		}
		errs = append(errs, err)
	}
	return nil, notFoundOr(hash, errs)
}

// GetRange streams length bytes of the blob from offset, from the first server that has it.
// The bytes are not verified (blobstore's package doc says why).
func (c *Client) GetRange(ctx context.Context, hash string, offset, length int64) (io.ReadCloser, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("blossom: bad range %d+%d", offset, length)
	}
	if length == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)
	var errs []error
	for _, s := range c.servers {
		var body io.ReadCloser
		err := c.retry(ctx, func() error {
			resp, wd, err := c.get(ctx, s, http.MethodGet, hash, rng)
			if err != nil {
				return err
			}
			var r io.Reader = resp.Body
			if resp.StatusCode == http.StatusOK {
				// The server ignored Range and sends the whole blob: skip to the offset.
				if _, err := io.CopyN(io.Discard, &kickReader{resp.Body, wd}, offset); err != nil {
					resp.Body.Close()
					wd.stop()
					return fmt.Errorf("blossom: get %s: skipping to %d: %w", s.URL, offset, wd.err(err))
				}
			} else if want := fmt.Sprintf("bytes %d-%d/", offset, offset+length-1); !strings.HasPrefix(resp.Header.Get("Content-Range"), want) {
				resp.Body.Close()
				wd.stop()
				return &ServerError{Server: s.URL, Op: "get", Status: resp.StatusCode, Reason: "wrong Content-Range " + resp.Header.Get("Content-Range")}
			}
			body = &bodyCloser{kickReader{&exactReader{r: io.LimitReader(r, length), left: length}, wd}, resp.Body}
			return nil
		})
		if err == nil {
			return body, nil
		}
		errs = append(errs, err)
	}
	return nil, notFoundOr(hash, errs)
}

// exactReader turns a body that ends early into io.ErrUnexpectedEOF instead of a short read
// that looks complete.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// FetchFile downloads the blob to path: into a temporary file beside it, verified against the
// hash, synced, then renamed into place, so path either holds the right bytes or does not
// exist. A server that sends wrong bytes is skipped for the next one.
func (c *Client) FetchFile(ctx context.Context, hash, path string, perm os.FileMode) error {
	if err := blobstore.CheckHash(hash); err != nil {
		return err
	}
	var errs []error
	for _, s := range c.servers {
		err := c.retry(ctx, func() error { return c.fetchOne(ctx, s, hash, path, perm) })
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return notFoundOr(hash, errs)
}

func (c *Client) fetchOne(ctx context.Context, s Server, hash, path string, perm os.FileMode) error {
	resp, wd, err := c.get(ctx, s, http.MethodGet, hash, "")
	if err != nil {
		return err
	}
	body := blobstore.VerifyingReader(&bodyCloser{kickReader{resp.Body, wd}, resp.Body}, hash, -1)
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fetch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := io.Copy(tmp, body); err != nil {
		tmp.Close()
		return fmt.Errorf("blossom: get %s from %s: %w", hash, s.URL, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Mirror asks server (BUD-04) to copy the blob from sourceURL, and checks its descriptor.
func (c *Client) Mirror(ctx context.Context, server, hash string, size int64, sourceURL string) (Descriptor, error) {
	s, err := c.server(server)
	if err != nil {
		return Descriptor{}, err
	}
	if err := blobstore.CheckHash(hash); err != nil {
		return Descriptor{}, err
	}
	auth, err := c.authHeader(ctx, s, VerbUpload, "Mirror Blob", hash)
	if err != nil {
		return Descriptor{}, err
	}
	reqBody, _ := json.Marshal(map[string]string{"url": sourceURL})
	var d Descriptor
	err = c.retry(ctx, func() error {
		rctx, wd := c.newWatchdog(ctx)
		defer wd.stop()
		req, err := http.NewRequestWithContext(rctx, http.MethodPut, s.URL+"/mirror", bytes.NewReader(reqBody))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("blossom: mirror to %s: %w", s.URL, wd.err(err))
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
			return serverError(s, "mirror", resp)
		}
		if d, err = DecodeDescriptor(resp.Body); err != nil {
			return err
		}
		return d.Check(hash, size)
	})
	return d, err
}

// notFoundOr summarises per-server failures: ErrNotFound if every server said so, else all
// the errors joined.
func notFoundOr(hash string, errs []error) error {
	all := len(errs) > 0
	for _, e := range errs {
		if !errors.Is(e, blobstore.ErrNotFound) {
			all = false
		}
	}
	if all {
		return fmt.Errorf("blossom: %s: %w on any server", hash, blobstore.ErrNotFound)
	}
	return fmt.Errorf("blossom: %s: %w", hash, errors.Join(errs...))
}
