package uploadq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/cas"
)

// PinReason is the cas pin reason the queue holds on every blob that no server has
// acknowledged yet. It belongs to the queue: Open adopts every hash pinned for it.
const PinReason = "unacked"

// Uploader sends one blob to one server. *blossom.Client satisfies it.
type Uploader interface {
	// Servers returns the servers' URLs; every blob is sent to each.
	Servers() []string
	// PutTo uploads size bytes of r under hash to server and returns its receipt only if the
	// server acknowledged the blob with the right hash and size.
	PutTo(ctx context.Context, server, hash string, size int64, r io.ReaderAt) (blobstore.Receipt, error)
}

// Options configure a Queue. Zero values mean the defaults.
type Options struct {
	// Parallel bounds the uploads in flight. Default 2.
	Parallel int
	// MinBackoff is the wait after a (blob, server) pair's first failure; it doubles with
	// each further failure up to MaxBackoff, with jitter. Defaults 1 s and 5 min.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts and MaxAge bound how long a blob that one server has acknowledged is still
	// sent to the others: a pair is given up after MaxAttempts tries in this process or once
	// MaxAge has passed since the blob was enqueued. Defaults 10 and 24 h. A blob that no
	// server has acknowledged is never given up.
	MaxAttempts int
	MaxAge      time.Duration
	// Logf receives notes about repairs and anomalies. Nil discards them.
	Logf func(format string, args ...any)
}

func (o *Options) fill() {
	if o.Parallel <= 0 {
		o.Parallel = 2
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// ErrClosed means the Queue has been closed.
var ErrClosed = errors.New("uploadq: closed")

// ErrNotInCache means Enqueue was given a hash the cas does not hold.
var ErrNotInCache = errors.New("uploadq: blob not in the cache")

// PendingError is Flush's error when its context ends first.
type PendingError struct {
	Pending    int               // blobs enqueued before the Flush that no server has acknowledged
	First      string            // the oldest of them
	LastErrors map[string]string // each server's last upload error
	Err        error             // the context's error, or ErrClosed
}

func (e *PendingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "uploadq: flush: %d blob(s) not acknowledged by any server (oldest %s)", e.Pending, e.First)
	srvs := make([]string, 0, len(e.LastErrors))
	for s := range e.LastErrors {
		srvs = append(srvs, s)
	}
	sort.Strings(srvs)
	for _, s := range srvs {
		fmt.Fprintf(&b, "; %s: %s", s, e.LastErrors[s])
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *PendingError) Unwrap() error { return e.Err }

// ServerStats is one server's upload accounting since Open.
type ServerStats struct {
	Uploaded    int64     // acknowledged uploads
	Failures    int64     // failed attempts
	GaveUp      int64     // blobs given up for this server (MaxAttempts/MaxAge)
	LastError   string    // the last failure, "" if none
	LastErrorAt time.Time // when
}

// Stats is a snapshot of the queue for status displays.
type Stats struct {
	Queued      int   // enqueued, not acknowledged by any server (= Pending)
	Replicating int   // acknowledged by some server, still being sent to others
	Acked       int64 // blobs acknowledged for the first time since Open
	Replicated  int64 // blobs that reached every server since Open (none given up)
	Servers     map[string]ServerStats
}

// Queue is a durable upload queue in one directory. See the package doc.
type Queue struct {
	dir   string // DIR/queue
	lock  *os.File
	cache *cas.Store
	up    Uploader
	opts  Options

	mu       sync.Mutex
	closed   bool
	started  bool
	entries  map[string]*entry
	order    []*entry // by seq; removed entries are dropped lazily
	seq      uint64
	changed  chan struct{} // closed and replaced whenever an entry gets acknowledged
	wake     chan struct{}
	inflight map[string]int
	running  int
	stats    Stats
	enqWG    sync.WaitGroup
	workWG   sync.WaitGroup
	cancel   context.CancelFunc
}

type entry struct {
	hash     string
	seq      uint64
	enqueued time.Time

	jmu sync.Mutex // serializes journal writes and the removal (before Queue.mu)

	// Guarded by Queue.mu.
	ready    chan struct{} // closed once Enqueue's durable work is done (or failed)
	enqErr   error
	live     bool // durable and visible to the worker
	acked    map[string]bool
	isAcked  bool // acknowledged by some server, durably, and unpinned
	gaveUp   map[string]bool
	removing bool
	removed  bool
	pairs    map[string]*pair
}

type pair struct {
	attempts int
	next     time.Time
	running  bool
}

// Open opens (creating it if needed) the queue in dir over cache, resuming what its journal
// holds and adopting every hash pinned "unacked" in cache without a journal entry. It takes
// an exclusive flock on dir/lock. The worker starts with Start.
func Open(dir string, cache *cas.Store, up Uploader, opts Options) (*Queue, error) {
	opts.fill()
	qdir := filepath.Join(dir, "queue")
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return nil, fmt.Errorf("uploadq: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("uploadq: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("uploadq: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("uploadq: %s is in use by another process: %w", dir, err)
	}
	q := &Queue{
		dir: qdir, lock: lf, cache: cache, up: up, opts: opts,
		entries:  map[string]*entry{},
		changed:  make(chan struct{}),
		wake:     make(chan struct{}, 1),
		inflight: map[string]int{},
		stats:    Stats{Servers: map[string]ServerStats{}},
	}
	if err := q.load(); err != nil {
		lf.Close()
		return nil, err
	}
	return q, nil
}

// load reads the journal and reconciles it with the cas's "unacked" pins.
func (q *Queue) load() error {
	recs, err := readRecords(q.dir, q.opts.Logf)
	if err != nil {
		return err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Enqueued.Before(recs[j].Enqueued) })
	known := map[string]bool{}
	for _, r := range recs {
		known[r.Hash] = true
		e := q.newEntry(r.Hash, r.Enqueued)
		for _, s := range r.Acked {
			e.acked[s] = true
		}
		pins := q.cache.Pins(r.Hash)[PinReason]
		if len(e.acked) > 0 {
			// Acknowledged: drop pins a crash left between the journal write and the Unpin.
			for i := 0; i < pins; i++ {
				if err := q.cache.Unpin(r.Hash, PinReason); err != nil && !errors.Is(err, cas.ErrNotPinned) {
					return fmt.Errorf("uploadq: unpinning acknowledged blob %s: %w", r.Hash, err)
				}
			}
			e.isAcked = true
		} else if pins == 0 {
			q.opts.Logf("uploadq: blob %s is queued but was not pinned; pinning it again", r.Hash)
			if err := q.cache.Pin(r.Hash, PinReason); err != nil {
				return fmt.Errorf("uploadq: pinning queued blob %s: %w", r.Hash, err)
			}
			if !q.cache.Has(r.Hash) {
				q.opts.Logf("uploadq: queued blob %s is missing from the cache", r.Hash)
			}
		}
		e.live = true
		close(e.ready)
		q.entries[r.Hash] = e
		q.order = append(q.order, e)
	}
	// Adopt pins without a journal entry (a crash inside Enqueue).
	for _, h := range q.cache.ListPins(PinReason) {
		if known[h] {
			continue
		}
		e := q.newEntry(h, time.Now())
		if err := writeRecord(q.dir, record{V: journalVersion, Hash: h, Enqueued: e.enqueued}); err != nil {
			return err
		}
		q.opts.Logf("uploadq: adopted blob %s, pinned %q without a journal entry", h, PinReason)
		e.live = true
		close(e.ready)
		q.entries[h] = e
		q.order = append(q.order, e)
	}
	return nil
}

func (q *Queue) newEntry(hash string, enq time.Time) *entry {
	q.seq++
	return &entry{
		hash: hash, seq: q.seq, enqueued: enq,
		ready:  make(chan struct{}),
		acked:  map[string]bool{},
		gaveUp: map[string]bool{},
		pairs:  map[string]*pair{},
	}
}

// Enqueue queues the blob hash, which must be in the cas, for upload. When it returns nil,
// the blob is pinned "unacked" in the cas and journaled, both durably: a crash cannot lose it
// and the cas cannot evict it until a server has acknowledged it. Enqueue is idempotent: a
// blob already queued (acknowledged or not) is not queued again.
func (q *Queue) Enqueue(hash string) error {
	if err := blobstore.CheckHash(hash); err != nil {
		return fmt.Errorf("uploadq: enqueue: %w", err)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if e := q.entries[hash]; e != nil {
		ready := e.ready
		q.mu.Unlock()
		<-ready
		q.mu.Lock()
		err := e.enqErr
		q.mu.Unlock()
		return err
	}
	e := q.newEntry(hash, time.Now())
	q.entries[hash] = e
	q.enqWG.Add(1)
	q.mu.Unlock()
	defer q.enqWG.Done()

	err := q.persistNew(e)
	q.mu.Lock()
	if err != nil {
		e.enqErr = err
		delete(q.entries, hash)
	} else {
		e.live = true
		q.order = append(q.order, e)
	}
	close(e.ready)
	q.mu.Unlock()
	q.kick()
	return err
}

func (q *Queue) persistNew(e *entry) error {
	if err := q.cache.Pin(e.hash, PinReason); err != nil {
		return fmt.Errorf("uploadq: enqueue blob %s: %w", e.hash, err)
	}
	if !q.cache.Has(e.hash) {
		if err := q.cache.Unpin(e.hash, PinReason); err != nil {
			q.opts.Logf("uploadq: unpinning blob %s: %v", e.hash, err)
		}
		return fmt.Errorf("uploadq: enqueue blob %s: %w", e.hash, ErrNotInCache)
	}
	if err := writeRecord(q.dir, record{V: journalVersion, Hash: e.hash, Enqueued: e.enqueued}); err != nil {
		if uerr := q.cache.Unpin(e.hash, PinReason); uerr != nil {
			q.opts.Logf("uploadq: unpinning blob %s: %v", e.hash, uerr)
		}
		return err
	}
	return nil
}

// Pending returns how many queued blobs no server has acknowledged yet.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pendingLocked()
}

func (q *Queue) pendingLocked() int {
	n := 0
	for _, e := range q.entries {
		if e.live && !e.isAcked {
			n++
		}
	}
	return n
}

// Stats returns a snapshot for status displays. Servers lists every configured server.
func (q *Queue) Stats() Stats {
	servers := q.up.Servers()
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Servers = map[string]ServerStats{}
	for _, srv := range servers {
		s.Servers[srv] = ServerStats{}
	}
	for k, v := range q.stats.Servers {
		s.Servers[k] = v
	}
	for _, e := range q.entries {
		switch {
		case !e.live || e.removing || e.removed:
		case e.isAcked:
			s.Replicating++
		default:
			s.Queued++
		}
	}
	return s
}

// Flush waits until every blob enqueued before the call has been acknowledged by at least
// one server, or ctx ends or the queue is closed; then it returns a *PendingError (wrapping
// ctx's error or ErrClosed) that says how many are still pending. It makes their uploads due at once (skipping the backoff).
// Flush needs a started worker to make progress.
func (q *Queue) Flush(ctx context.Context) error {
	q.mu.Lock()
	var wait []*entry
	now := time.Now()
	for _, e := range q.entries {
		if e.live && !e.isAcked {
			wait = append(wait, e)
			for _, p := range e.pairs {
				if !p.running {
					p.next = now
				}
			}
		}
	}
	q.mu.Unlock()
	q.kick()
	for {
		q.mu.Lock()
		var first *entry
		n := 0
		for _, e := range wait {
			if !e.isAcked {
				n++
				if first == nil || e.seq < first.seq {
					first = e
				}
			}
		}
		ch := q.changed
		if n == 0 {
			q.mu.Unlock()
			return nil
		}
		err := ctx.Err()
		if q.closed {
			err = ErrClosed
		}
		if err != nil {
			pe := &PendingError{Pending: n, First: first.hash, LastErrors: map[string]string{}, Err: err}
			for s, st := range q.stats.Servers {
				if st.LastError != "" {
					pe.LastErrors[s] = st.LastError
				}
			}
			q.mu.Unlock()
			return pe
		}
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// Start starts the worker; it stops when ctx ends or at Close. Start is a no-op after the
// first call.
func (q *Queue) Start(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed {
		return
	}
	q.started = true
	ctx, q.cancel = context.WithCancel(ctx)
	q.workWG.Add(1)
	go q.schedule(ctx)
}

// Close stops the worker, waits for uploads and Enqueue calls in flight, and releases the
// queue's lock. It does not close the cas. Close is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.broadcastLocked() // Flush callers return ErrClosed
	if q.cancel != nil {
		q.cancel()
	}
	q.mu.Unlock()
	q.enqWG.Wait()
	q.workWG.Wait()
	return q.lock.Close()
}

func (q *Queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes Flush callers.
func (q *Queue) broadcastLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// schedule is the worker loop: it starts due (blob, server) uploads within the limits.
func (q *Queue) schedule(ctx context.Context) {
	defer q.workWG.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		servers := q.up.Servers()
		perServer := 1
		if len(servers) > 0 {
			perServer = (q.opts.Parallel + len(servers) - 1) / len(servers)
		}
		now := time.Now()
		var finish []*entry
		var earliest time.Time

		q.mu.Lock()
		live := q.order[:0]
		for _, e := range q.order {
			if e.removed {
				continue
			}
			live = append(live, e)
			if e.removing {
				continue
			}
			resolved := true
			for _, srv := range servers {
				if e.acked[srv] || e.gaveUp[srv] {
					continue
				}
				p := e.pairs[srv]
				if p == nil {
					p = &pair{}
					e.pairs[srv] = p
				}
				if e.isAcked && !p.running &&
					(p.attempts >= q.opts.MaxAttempts || now.Sub(e.enqueued) >= q.opts.MaxAge) {
					e.gaveUp[srv] = true
					st := q.stats.Servers[srv]
					st.GaveUp++
					q.stats.Servers[srv] = st
					q.opts.Logf("uploadq: gave up sending blob %s to %s after %d attempts", e.hash, srv, p.attempts)
					continue
				}
				resolved = false
				if p.running {
					continue
				}
				if p.next.After(now) {
					if earliest.IsZero() || p.next.Before(earliest) {
						earliest = p.next
					}
					continue
				}
				if q.running >= q.opts.Parallel || q.inflight[srv] >= perServer {
					continue // a completion will wake us
				}
				p.running = true
				p.attempts++
				q.running++
				q.inflight[srv]++
				q.workWG.Add(1)
				go q.upload(ctx, e, srv, p)
			}
			if resolved && len(servers) > 0 && e.isAcked {
				finish = append(finish, e)
			}
		}
		clear(q.order[len(live):])
		q.order = live
		q.mu.Unlock()

		for _, e := range finish {
			q.finish(e)
		}
		if len(finish) > 0 {
			continue
		}
		wait := time.Hour
		if !earliest.IsZero() {
			wait = max(time.Until(earliest), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// upload makes one attempt to send e to srv.
func (q *Queue) upload(ctx context.Context, e *entry, srv string, p *pair) {
	defer q.workWG.Done()
	err := q.putOne(ctx, e.hash, srv)
	if err == nil {
		err = q.recordAck(e, srv)
	}
	q.mu.Lock()
	p.running = false
	q.running--
	q.inflight[srv]--
	if err != nil && ctx.Err() == nil {
		d := q.opts.MinBackoff << min(p.attempts-1, 30)
		if d > q.opts.MaxBackoff || d <= 0 {
			d = q.opts.MaxBackoff
		}
		d = d/2 + rand.N(d/2+1)
		p.next = time.Now().Add(d)
		st := q.stats.Servers[srv]
		st.Failures++
		st.LastError = err.Error()
		st.LastErrorAt = time.Now()
		q.stats.Servers[srv] = st
		if p.attempts&(p.attempts-1) == 0 { // attempts 1, 2, 4, 8, ...: enough to see, not a flood
			q.opts.Logf("%v (attempt %d, next in %v)", err, p.attempts, d.Round(time.Millisecond))
		}
	}
	q.mu.Unlock()
	q.kick()
}

func (q *Queue) putOne(ctx context.Context, hash, srv string) error {
	obj, err := q.cache.Open(hash)
	if err != nil {
		return fmt.Errorf("uploadq: blob %s to %s: reading the cache: %w", hash, srv, err)
	}
	defer obj.Close()
	size := obj.Size()
	rc, err := q.up.PutTo(ctx, srv, hash, size, obj)
	if err != nil {
		return fmt.Errorf("uploadq: blob %s to %s: %w", hash, srv, err)
	}
	if rc.Size != size {
		return fmt.Errorf("uploadq: blob %s to %s: receipt for %d bytes, sent %d", hash, srv, rc.Size, size)
	}
	return nil
}

// recordAck makes srv's acknowledgement of e durable, then (first acknowledgement) releases
// the cas pin and wakes Flush.
func (q *Queue) recordAck(e *entry, srv string) error {
	e.jmu.Lock()
	defer e.jmu.Unlock()
	q.mu.Lock()
	if e.removing || e.removed {
		q.mu.Unlock()
		return nil
	}
	rec := record{V: journalVersion, Hash: e.hash, Enqueued: e.enqueued}
	for s := range e.acked {
		rec.Acked = append(rec.Acked, s)
	}
	rec.Acked = append(rec.Acked, srv)
	sort.Strings(rec.Acked)
	first := !e.isAcked
	q.mu.Unlock()

	if err := writeRecord(q.dir, rec); err != nil {
		return fmt.Errorf("uploadq: blob %s to %s: uploaded but not recorded: %w", e.hash, srv, err)
	}
	if first {
		if err := q.cache.Unpin(e.hash, PinReason); err != nil && !errors.Is(err, cas.ErrNotPinned) {
			// The acknowledgement is durable; a leftover pin is dropped at the next Open.
			q.opts.Logf("uploadq: unpinning acknowledged blob %s: %v", e.hash, err)
		}
	}
	q.mu.Lock()
	e.acked[srv] = true
	st := q.stats.Servers[srv]
	st.Uploaded++
	q.stats.Servers[srv] = st
	if first {
		e.isAcked = true
		q.stats.Acked++
		q.broadcastLocked()
	}
	q.mu.Unlock()
	return nil
}

// finish removes the journal entry of a blob every server has (or has been given up for).
func (q *Queue) finish(e *entry) {
	e.jmu.Lock()
	defer e.jmu.Unlock()
	q.mu.Lock()
	if e.removing || e.removed {
		q.mu.Unlock()
		return
	}
	e.removing = true
	q.mu.Unlock()
	err := removeRecord(q.dir, e.hash)
	if err != nil {
		q.opts.Logf("%v", err) // the next Open retries the remaining servers; harmless
	}
	q.mu.Lock()
	e.removed = true
	delete(q.entries, e.hash)
	if len(e.gaveUp) == 0 {
		q.stats.Replicated++
	}
	q.mu.Unlock()
}
