// Package ipfs implements blobstore.Store over the HTTP RPC API of a kubo (go-ipfs) node
// (POST /api/v0/...).
//
// # CID mapping
//
// nostr-homed names a blob by the lowercase hex SHA-256 of its bytes. This package stores each
// blob as exactly one IPFS block whose CID is
//
//	CIDv1, codec raw (0x55), multihash sha2-256 (0x12, length 32) of the blob's bytes
//
// written as multibase base32 ('b' + lower-case RFC 4648 base32 without padding of the bytes
// 0x01 0x55 0x12 0x20 <32-byte digest>), which is what kubo prints ("bafkrei..."). Since the
// digest in that CID is the blob's SHA-256, the CID follows from the blob's name alone (see
// CID): any machine holding only the hash can fetch the blob from any IPFS node or gateway,
// and any IPFS implementation verifies the bytes against the same hash nostr-homed uses. A
// UnixFS import ("ipfs add") would not do: its CID hashes a DAG-PB/chunked encoding of the
// file, so it cannot be derived from the SHA-256 of the bytes without the bytes.
//
// # Block size
//
// One blob is one block, so a blob's size is bounded by what IPFS will move as one block.
// kubo's block/put refuses blocks over 2 MiB (BlockLimit) unless allow-big-block is set,
// because peers are only required to exchange blocks up to that size over bitswap. By
// default this client refuses blobs over BlockLimit with an error wrapping ErrTooLarge before
// sending anything; nostr-homed's file chunks (at most 1 MiB) always fit. WithMaxBlockSize
// raises the limit, and the client then passes allow-big-block for larger blobs: that is
// safe when every reader talks to the same node (or a gateway that has the block), but such
// blocks may not be fetchable from other peers (kubo 0.42 moved a 4,194,000-byte block over
// bitswap but not a 4 MiB one).
//
// # Behaviour
//
// Put streams the blob into block/put as a multipart body produced through an io.Pipe, hashing
// as it goes; if the bytes do not hash to the given name, the upload is aborted before the
// closing multipart boundary, so kubo stores nothing, and Put returns an error wrapping
// blobstore.ErrHashMismatch. Blocks are pinned by default (WithPin) so that kubo's garbage
// collector keeps them.
//
// Stat uses block/stat. Unless WithLocalOnly is set, kubo may look for a block it does not
// have on the network for up to the find timeout (WithFindTimeout, passed as kubo's timeout
// option); a node started with --offline, or a local-only client (kubo's offline option),
// answers at once. Either way a missing block is reported as an error wrapping
// blobstore.ErrNotFound. Get and GetRange stat the block first (which also makes an online
// node fetch it) and then stream it from the node's local store with cat (offline), through
// blobstore.VerifyingReader for Get.
//
// Each attempt of a request has a watchdog (WithTimeout) that fires when kubo has not
// answered, or a stream has not moved, for that long; it does not count time the caller
// spends between reads. All requests here are idempotent, so connection errors, watchdog
// timeouts and 5xx answers that are not kubo command errors are retried with exponential
// backoff (WithRetries). Errors name the endpoint and command and quote kubo's message.
package ipfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// BlockLimit is the largest block kubo's block/put accepts without allow-big-block (2 MiB),
// and the largest blob this client stores unless WithMaxBlockSize says otherwise.
const BlockLimit = 2 << 20

// Defaults for a Client made by New.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultFindTimeout = 20 * time.Second
	DefaultRetries     = 3
	DefaultBackoff     = 200 * time.Millisecond
	maxBackoff         = 5 * time.Second
)

// ErrTooLarge means a blob is larger than the client's maximum block size.
var ErrTooLarge = errors.New("blob larger than the maximum IPFS block size")

var _ blobstore.Store = (*Client)(nil)

// Client is a blobstore.Store backed by one kubo node. It is safe for concurrent use.
type Client struct {
	base        string // http://host:port, no trailing slash
	http        *http.Client
	timeout     time.Duration
	findTimeout time.Duration
	retries     int
	backoff     time.Duration
	maxBlock    int64
	pin         bool
	localOnly   bool
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client. Its Timeout field must be zero (or long): it would cut
// off long streams; this package sets its own per-request watchdogs.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTimeout sets how long one attempt of a request may wait for kubo: for the answer to
// begin (after the upload, for Put), and for each read of a stream or upload to progress.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithFindTimeout bounds how long kubo may search the network for a block it does not have
// before Stat, Get and GetRange report blobstore.ErrNotFound.
func WithFindTimeout(d time.Duration) Option { return func(c *Client) { c.findTimeout = d } }

// WithRetries sets how many times a failed request is retried (0: never) and the first
// backoff, which doubles on each retry up to 5 s.
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = n, backoff }
}

// WithMaxBlockSize sets the largest blob Put accepts (default BlockLimit). Blobs larger than
// BlockLimit are sent with allow-big-block; see the package documentation for the caveat.
func WithMaxBlockSize(n int64) Option { return func(c *Client) { c.maxBlock = n } }

// WithPin says whether Put pins the blocks it stores (default true).
func WithPin(pin bool) Option { return func(c *Client) { c.pin = pin } }

// WithLocalOnly makes reads consult only the node's local store (kubo's offline option), so
// that a missing block is reported at once instead of after the find timeout.
func WithLocalOnly(local bool) Option { return func(c *Client) { c.localOnly = local } }

// New returns a client of the kubo RPC API at endpoint: a URL such as
// "http://127.0.0.1:5001", or a multiaddr such as "/ip4/127.0.0.1/tcp/5001" (the form kubo
// writes to $IPFS_PATH/api).
func New(endpoint string, opts ...Option) (*Client, error) {
	base, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:        base,
		http:        &http.Client{},
		timeout:     DefaultTimeout,
		findTimeout: DefaultFindTimeout,
		retries:     DefaultRetries,
		backoff:     DefaultBackoff,
		maxBlock:    BlockLimit,
		pin:         true,
	}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 || c.findTimeout <= 0 || c.retries < 0 || c.backoff < 0 || c.maxBlock < 0 {
		return nil, fmt.Errorf("ipfs: invalid options for %s", base)
	}
	return c, nil
}

// Endpoint returns the base URL of the kubo RPC API the client talks to.
func (c *Client) Endpoint() string { return c.base }

func parseEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "/") {
		p := strings.Split(strings.Trim(s, "/"), "/")
		if len(p) < 4 || len(p) > 5 || p[2] != "tcp" {
			return "", fmt.Errorf("ipfs: unsupported endpoint multiaddr %q (want /ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT[/http])", s)
		}
		host := p[1]
		switch p[0] {
		case "ip4", "dns", "dns4", "dns6":
		case "ip6":
			host = "[" + host + "]"
		default:
			return "", fmt.Errorf("ipfs: unsupported endpoint multiaddr %q", s)
		}
		if _, err := strconv.ParseUint(p[3], 10, 16); err != nil {
			return "", fmt.Errorf("ipfs: bad port in endpoint %q", s)
		}
		scheme := "http"
		if len(p) == 5 {
			switch p[4] {
			case "http":
			case "https", "tls":
				scheme = "https"
			default:
				return "", fmt.Errorf("ipfs: unsupported endpoint multiaddr %q", s)
			}
		}
		return scheme + "://" + host + ":" + p[3], nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("ipfs: bad endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("ipfs: bad endpoint %q (want http://host:port)", s)
	}
	path := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v0")
	return u.Scheme + "://" + u.Host + path, nil
}

// base32Lower is RFC 4648 base32 in lower case without padding: multibase 'b'.
var base32Lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// CID returns the CID under which this package stores the blob named hash (a lowercase hex
// SHA-256): CIDv1, codec raw, multihash sha2-256, in base32.
func CID(hash string) (string, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return "", err
	}
	b := make([]byte, 4, 4+sha256.Size)
	b[0], b[1], b[2], b[3] = 0x01, 0x55, 0x12, 0x20 // CIDv1, raw, sha2-256, 32 bytes
	b, _ = hex.AppendDecode(b, []byte(hash))
	return "b" + base32Lower.EncodeToString(b), nil
}

// APIError is an unsuccessful answer from the RPC endpoint.
type APIError struct {
	Endpoint string // base URL
	Command  string // e.g. "block/put"
	Status   int    // HTTP status (200 for an error reported in a stream trailer)
	Message  string // what the server said
	Kubo     bool   // the message is a kubo command error, not e.g. a proxy's page
}

func (e *APIError) Error() string {
	return fmt.Sprintf("ipfs %s %s: HTTP %d: %s", e.Endpoint, e.Command, e.Status, e.Message)
}

// notFound reports whether kubo's message means that it does not have the block.
func (e *APIError) notFound(searched bool) bool {
	if !e.Kubo {
		return false
	}
	m := e.Message
	return strings.Contains(m, "not found locally") || strings.Contains(m, "could not find") ||
		strings.Contains(m, "block not found") ||
		searched && strings.Contains(m, "context deadline exceeded")
}

type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("kubo did not answer within %v", e.d) }
func (e *timeoutError) Timeout() bool { return true }

// retryable marks an error after which the request may be sent again.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// uploader makes a fresh request body for one attempt; kick is called whenever the upload
// progresses, and finish (called once the request is over) stops the producer and returns
// its own error (not a transport error), if any.
type uploader func(kick func()) (body io.ReadCloser, contentType string, finish func() error)

// request runs cmd and returns its small (JSON) answer.
func (c *Client) request(ctx context.Context, cmd string, q url.Values, wait time.Duration, up uploader) ([]byte, error) {
	var out []byte
	err := c.retry(ctx, cmd, func() error {
		resp, done, err := c.attempt(ctx, cmd, q, wait, up)
		if err != nil {
			return err
		}
		defer done()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return retryable{c.wrapErr(cmd, err)}
		}
		if m := resp.Trailer.Get("X-Stream-Error"); m != "" {
			return &APIError{c.base, cmd, resp.StatusCode, m, true}
		}
		out = b
		return nil
	})
	return out, err
}

// stream runs cmd and returns its answer as a stream. Retries cover only the time until the
// answer begins.
func (c *Client) stream(ctx context.Context, cmd string, q url.Values, wait time.Duration) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := c.retry(ctx, cmd, func() error {
		actx, cancel := context.WithCancelCause(ctx)
		timer := time.AfterFunc(wait, func() { cancel(&timeoutError{wait}) })
		req, err := c.newRequest(actx, cmd, q, nil, "")
		if err != nil {
			cancel(nil)
			return err
		}
		resp, err := c.do(ctx, actx, req, cmd)
		timer.Stop()
		if err != nil {
			cancel(nil)
			return err
		}
		rc = &streamBody{c: c, cmd: cmd, resp: resp, ctx: actx, cancel: cancel, timer: timer, wait: wait}
		return nil
	})
	return rc, err
}

func (c *Client) retry(ctx context.Context, cmd string, f func() error) error {
	backoff := c.backoff
	for attempt := 0; ; attempt++ {
		err := f()
		var r retryable
		if err == nil || !errors.As(err, &r) {
			return err
		}
		if attempt >= c.retries {
			if c.retries > 0 {
				return fmt.Errorf("%w (gave up after %d attempts)", r.err, attempt+1)
			}
			return r.err
		}
		d := backoff
		if d > 0 {
			d += rand.N(d/2 + 1)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ipfs %s %s: %w (while retrying after: %v)", c.base, cmd, context.Cause(ctx), r.err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attempt sends one request under a watchdog and returns the response; done must be called
// when the body has been read.
func (c *Client) attempt(ctx context.Context, cmd string, q url.Values, wait time.Duration, up uploader) (*http.Response, func(), error) {
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(wait, func() { cancel(&timeoutError{wait}) })
	finish := func() error { return nil }
	var body io.ReadCloser
	var ctype string
	if up != nil {
		body, ctype, finish = up(func() { timer.Reset(wait) })
	}
	req, err := c.newRequest(actx, cmd, q, body, ctype)
	if err != nil {
		cancel(nil)
		return nil, nil, errors.Join(err, finish())
	}
	resp, err := c.do(ctx, actx, req, cmd)
	if err != nil {
		ferr := finish() // first: the upload goroutine may still kick the watchdog
		timer.Stop()
		cancel(nil)
		if ferr != nil {
			return nil, nil, ferr
		}
		return nil, nil, err
	}
	return resp, func() {
		resp.Body.Close()
		finish()
		timer.Stop()
		cancel(nil)
	}, nil
}

func (c *Client) newRequest(ctx context.Context, cmd string, q url.Values, body io.ReadCloser, ctype string) (*http.Request, error) {
	u := c.base + "/api/v0/" + cmd
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var b io.Reader
	if body != nil {
		b = body
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, b)
	if err != nil {
		return nil, fmt.Errorf("ipfs %s %s: %w", c.base, cmd, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return req, nil
}

// do sends req and turns every failure into an error naming the endpoint and command;
// failures worth another attempt are marked retryable. actx is the attempt's context (with
// the watchdog), ctx the caller's.
func (c *Client) do(ctx, actx context.Context, req *http.Request, cmd string) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ipfs %s %s: %w", c.base, cmd, context.Cause(ctx))
		}
		if actx.Err() != nil {
			err = context.Cause(actx) // the watchdog
		}
		return nil, retryable{c.wrapErr(cmd, err)}
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Endpoint: c.base, Command: cmd, Status: resp.StatusCode}
	var k struct{ Message, Type string }
	if json.Unmarshal(b, &k) == nil && k.Type == "error" && k.Message != "" {
		e.Message, e.Kubo = k.Message, true
		return nil, e
	}
	e.Message = strings.TrimSpace(string(b))
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return nil, retryable{e}
	}
	return nil, e
}

func (c *Client) wrapErr(cmd string, err error) error {
	return fmt.Errorf("ipfs %s %s: %w", c.base, cmd, err)
}

// streamBody is the body of a streamed answer. Its watchdog runs only while a Read waits for
// kubo, and it turns kubo's X-Stream-Error trailer into an error at EOF.
type streamBody struct {
	c      *Client
	cmd    string
	resp   *http.Response
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	wait   time.Duration
	err    error
}

func (s *streamBody) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.timer.Reset(s.wait)
	n, err := s.resp.Body.Read(p)
	s.timer.Stop()
	switch {
	case err == io.EOF:
		if m := s.resp.Trailer.Get("X-Stream-Error"); m != "" {
			err = &APIError{s.c.base, s.cmd, s.resp.StatusCode, m, true}
		}
	case err != nil:
		if s.ctx.Err() != nil {
			err = context.Cause(s.ctx)
		}
		err = s.c.wrapErr(s.cmd, err)
	}
	s.err = err
	return n, err
}

func (s *streamBody) Close() error {
	s.timer.Stop()
	err := s.resp.Body.Close()
	s.cancel(nil)
	return err
}

// Put implements blobstore.Store.
func (c *Client) Put(ctx context.Context, hash string, size int64, r io.ReaderAt) ([]blobstore.Receipt, error) {
	cid, err := CID(hash)
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("ipfs: blob %s: negative size %d", hash, size)
	}
	if size > c.maxBlock {
		return nil, fmt.Errorf("%w: blob %s is %d bytes, over the %d-byte limit of %s (one blob is one IPFS block)",
			ErrTooLarge, hash, size, c.maxBlock, c.base)
	}
	q := url.Values{
		"cid-codec": {"raw"},
		"mhtype":    {"sha2-256"},
		"mhlen":     {"32"},
		"pin":       {strconv.FormatBool(c.pin)},
	}
	if size > BlockLimit {
		q.Set("allow-big-block", "true")
	}
	b, err := c.request(ctx, "block/put", q, c.timeout, func(kick func()) (io.ReadCloser, string, func() error) {
		return uploadBlob(hash, size, r, kick)
	})
	if err != nil {
		return nil, err
	}
	var res struct {
		Key  string
		Size int64
	}
	if err := json.Unmarshal(firstLine(b), &res); err != nil {
		return nil, fmt.Errorf("ipfs %s block/put: bad answer %q: %w", c.base, truncate(b), err)
	}
	if res.Key != cid {
		return nil, fmt.Errorf("%w: ipfs %s block/put stored %s as %s, want %s", blobstore.ErrHashMismatch, c.base, hash, res.Key, cid)
	}
	if res.Size != size {
		return nil, fmt.Errorf("ipfs %s block/put: stored %d bytes of %d for %s", c.base, res.Size, size, hash)
	}
	return []blobstore.Receipt{{Backend: c.base, URL: "ipfs://" + cid, Size: size}}, nil
}

// uploadBlob streams the size bytes of r as a multipart form through a pipe. It hashes them
// as it goes and writes the closing boundary only if they hash to want, so that a wrongly
// named blob reaches kubo as a truncated request and is not stored.
func uploadBlob(want string, size int64, r io.ReaderAt, kick func()) (io.ReadCloser, string, func() error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan error, 1)
	go func() {
		own, err := writeBlob(mw, want, size, r, kick)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err) // nil: EOF
		if own {
			done <- err
		} else {
			done <- nil // a transport problem; the HTTP client reports it
		}
	}()
	return pr, mw.FormDataContentType(), func() error {
		pr.CloseWithError(errors.New("upload abandoned"))
		return <-done
	}
}

// writeBlob writes the form part. own reports whether err is the blob's fault (a read error or
// a mismatch) rather than a failed write into the pipe.
func writeBlob(mw *multipart.Writer, want string, size int64, r io.ReaderAt, kick func()) (own bool, err error) {
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+want+`"`)
	h.Set("Content-Type", "application/octet-stream")
	part, err := mw.CreatePart(h)
	if err != nil {
		return false, err
	}
	sum := sha256.New()
	src := io.NewSectionReader(r, 0, size)
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, rerr := src.Read(buf)
		if m > 0 {
			sum.Write(buf[:m])
			n += int64(m)
			if _, werr := part.Write(buf[:m]); werr != nil {
				return false, werr
			}
			kick()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return true, fmt.Errorf("ipfs: reading blob %s: %w", want, rerr)
		}
	}
	if n != size {
		return true, fmt.Errorf("ipfs: blob %s: read %d of %d bytes: %w", want, n, size, io.ErrUnexpectedEOF)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return true, fmt.Errorf("%w: ipfs: the bytes given for %s hash to %s; not stored", blobstore.ErrHashMismatch, want, got)
	}
	return false, nil
}

// Stat implements blobstore.Store.
func (c *Client) Stat(ctx context.Context, hash string) (int64, error) {
	cid, err := CID(hash)
	if err != nil {
		return 0, err
	}
	q := url.Values{"arg": {cid}}
	wait := c.timeout
	if c.localOnly {
		q.Set("offline", "true")
	} else {
		q.Set("timeout", c.findTimeout.String())
		wait += c.findTimeout
	}
	b, err := c.request(ctx, "block/stat", q, wait, nil)
	if err != nil {
		return 0, c.mapNotFound(hash, err, !c.localOnly)
	}
	var res struct {
		Key  string
		Size int64
	}
	if err := json.Unmarshal(firstLine(b), &res); err != nil {
		return 0, fmt.Errorf("ipfs %s block/stat: bad answer %q: %w", c.base, truncate(b), err)
	}
	if res.Size < 0 {
		return 0, fmt.Errorf("ipfs %s block/stat: bad size %d for %s", c.base, res.Size, hash)
	}
	return res.Size, nil
}

func (c *Client) mapNotFound(hash string, err error, searched bool) error {
	var e *APIError
	if errors.As(err, &e) && e.notFound(searched) {
		return fmt.Errorf("%w: %s: %w", blobstore.ErrNotFound, hash, err)
	}
	return err
}

// cat streams bytes of a block the node has (offline: Stat has fetched it if needed).
func (c *Client) cat(ctx context.Context, hash string, q url.Values) (io.ReadCloser, error) {
	rc, err := c.stream(ctx, "cat", q, c.timeout)
	if err != nil {
		return nil, c.mapNotFound(hash, err, false)
	}
	return rc, nil
}

// Get implements blobstore.Store.
func (c *Client) Get(ctx context.Context, hash string) (io.ReadCloser, error) {
	size, err := c.Stat(ctx, hash)
	if err != nil {
		return nil, err
	}
	cid, _ := CID(hash)
	rc, err := c.cat(ctx, hash, url.Values{"arg": {cid}, "offline": {"true"}})
	if err != nil {
		return nil, err
	}
	return blobstore.VerifyingReader(rc, hash, size), nil
}

// GetRange implements blobstore.Store. A range that reaches past the end of the blob is an
// error wrapping io.ErrUnexpectedEOF.
func (c *Client) GetRange(ctx context.Context, hash string, offset, length int64) (io.ReadCloser, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("ipfs: bad range %d+%d for %s", offset, length, hash)
	}
	size, err := c.Stat(ctx, hash)
	if err != nil {
		return nil, err
	}
	if offset > size || length > size-offset {
		return nil, fmt.Errorf("ipfs: range %d+%d is beyond the end of blob %s (%d bytes): %w",
			offset, length, hash, size, io.ErrUnexpectedEOF)
	}
	if length == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	cid, _ := CID(hash)
	rc, err := c.cat(ctx, hash, url.Values{
		"arg":     {cid},
		"offset":  {strconv.FormatInt(offset, 10)},
		"length":  {strconv.FormatInt(length, 10)},
		"offline": {"true"},
	})
	if err != nil {
		return nil, err
	}
	return &exact{rc: rc, left: length, what: hash}, nil
}

// exact passes exactly left bytes and fails if the stream ends early or runs over.
type exact struct {
	rc   io.ReadCloser
	left int64
	what string
}

func (e *exact) Read(p []byte) (int, error) {
	if e.left == 0 {
		// Expect EOF from the stream (and its trailer check) without passing more bytes.
		var one [1]byte
		n, err := e.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("ipfs: cat %s: more bytes than the requested range", e.what)
		}
		if err == nil {
			return 0, nil
		}
		return 0, err
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.rc.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = fmt.Errorf("ipfs: cat %s: stream ended %d bytes early: %w", e.what, e.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (e *exact) Close() error { return e.rc.Close() }

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
