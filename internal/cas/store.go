package cas

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

var (
	// ErrNotFound means the store has no object with that hash.
	ErrNotFound = errors.New("cas: object not found")
	// ErrCorrupt means an object's file did not hash to its name; the file has been removed.
	// Errors that wrap it also match ErrNotFound.
	ErrCorrupt = errors.New("cas: object corrupt")
	// ErrBusy means Remove was refused because the object is open or pinned.
	ErrBusy = errors.New("cas: object is open or pinned")
	// ErrNotPinned means Unpin found no pin to drop for that hash and reason.
	ErrNotPinned = errors.New("cas: not pinned")
	// ErrBadReason means a pin reason is not 1 to 64 of [a-z0-9_-].
	ErrBadReason = errors.New("cas: bad pin reason")
	// ErrClosed means the Store (or the Writer) has been closed.
	ErrClosed = errors.New("cas: closed")
)

// Options configure a Store.
type Options struct {
	// Quota is the most bytes of objects the store keeps before evicting the least recently used
	// ones that are neither open nor pinned. Zero or less means no quota.
	Quota int64
	// Logf receives notes about repairs and anomalies (a mode tightened, temp files removed, a
	// corrupt object, an over-quota store that cannot evict). Nil discards them.
	Logf func(format string, args ...any)
}

// Stats is a snapshot of a Store's accounting.
type Stats struct {
	Used         int64 // bytes of objects present
	Quota        int64 // Options.Quota
	Objects      int   // objects present
	Pinned       int   // objects present with at least one pin
	PinnedBytes  int64 // their bytes
	Open         int   // objects present or not with at least one open *Object
	Evictions    int64 // objects evicted since Open
	EvictedBytes int64 // their bytes
	OverQuota    bool  // Quota > 0 and Used > Quota (everything evictable has been evicted)
}

// Store is a content-addressed object store in one directory. See the package doc.
type Store struct {
	dir, objDir, tmpDir, pinDir string
	opts                        Options
	lockFile                    *os.File

	mu        sync.Mutex
	closed    bool
	index     map[string]*entry
	lru       *list.List // of *entry, front = most recently used
	used      int64
	lastStamp int64                     // last recency stamp handed out (ns since the epoch)
	open      map[string]int            // hash -> open *Object count
	pins      map[string]map[string]int // hash -> reason -> count (no zero counts stored)
	pinLocks  map[string]*keyLock       // reason/hash -> lock serializing durable pin writes
	evictions int64
	evictedB  int64
	warnedOQ  bool // over-quota already logged
}

// entry is one object present in the store. Fields are guarded by Store.mu except vmu.
type entry struct {
	hash     string
	size     int64
	stamp    int64 // recency stamp, also the file's atime
	elem     *list.Element
	verified fileID     // the file identity that was last verified; zero: not verified
	vmu      sync.Mutex // serializes verification of this entry
}

// fileID identifies the content of a file cheaply: a change to any field means it may have
// changed since it was verified.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func statID(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// Open opens (creating it if needed) the store in dir. It takes an exclusive flock on dir/lock,
// so one process at a time uses a store; a second Open of the same dir fails until Close.
// It tightens the modes of dir and its subdirectories to 0700 (and objects to 0600), removes
// leftover temp files, loads objects and pins, and evicts if the store is over quota.
func Open(dir string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cas: %w", err)
	}
	s := &Store{
		dir:      abs,
		objDir:   filepath.Join(abs, "objects"),
		tmpDir:   filepath.Join(abs, "tmp"),
		pinDir:   filepath.Join(abs, "pins"),
		opts:     opts,
		index:    map[string]*entry{},
		lru:      list.New(),
		open:     map[string]int{},
		pins:     map[string]map[string]int{},
		pinLocks: map[string]*keyLock{},
	}
	if err := s.mkdirPrivate(abs); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(abs, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cas: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cas: %s is in use by another store (flock): %w", abs, err)
		}
		return nil, fmt.Errorf("cas: flock %s: %w", lf.Name(), err)
	}
	s.lockFile = lf
	ok := false
	defer func() {
		if !ok {
			lf.Close()
		}
	}()
	for _, d := range []string{s.objDir, s.tmpDir, s.pinDir} {
		if err := s.mkdirPrivate(d); err != nil {
			return nil, err
		}
	}
	if err := s.cleanTmp(); err != nil {
		return nil, err
	}
	s.probeTimestamps()
	if err := s.loadObjects(); err != nil {
		return nil, err
	}
	if err := s.loadPins(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.evictLocked("")
	s.mu.Unlock()
	ok = true
	return s, nil
}

func (s *Store) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("cas: "+format, args...)
	}
}

// mkdirPrivate creates d with mode 0700, or tightens an existing d to 0700, refusing a d that is
// not a directory or that another user owns.
func (s *Store) mkdirPrivate(d string) error {
	created := false
	if err := os.Mkdir(d, 0o700); err == nil {
		created = true
	} else if !errors.Is(err, os.ErrExist) {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("cas: %w", err)
		}
		created = true
	}
	fi, err := os.Stat(d)
	if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cas: %s is not a directory", d)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("cas: %s is owned by uid %d, not by this process (uid %d)", d, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("cas: tighten mode of %s: %w", d, err)
		}
		if !created {
			s.logf("%s had mode %#o, tightened to 0700", d, fi.Mode().Perm())
		}
	}
	if created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("cas: %w", err)
		}
	}
	return nil
}

func (s *Store) cleanTmp() error {
	ents, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.tmpDir, e.Name())); err != nil {
			return fmt.Errorf("cas: remove leftover temp file: %w", err)
		}
	}
	if len(ents) > 0 {
		s.logf("removed %d leftover temp file(s) from %s", len(ents), s.tmpDir)
	}
	return nil
}

// probeTimestamps logs a warning if the file system cannot store nanosecond atimes, which makes
// the LRU order across restarts approximate within one timestamp tick.
func (s *Store) probeTimestamps() {
	f, err := os.CreateTemp(s.tmpDir, "probe-*")
	if err != nil {
		return
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	want := time.Unix(1700000000, 123456789)
	if err := os.Chtimes(name, want, time.Time{}); err != nil {
		s.logf("cannot set atime (%v): LRU order will not survive a restart", err)
		return
	}
	fi, err := os.Stat(name)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Atim.Nano() != want.UnixNano() {
		s.logf("file system stores atime %d for %d: LRU order across restarts is approximate", st.Atim.Nano(), want.UnixNano())
	}
}

func isHexByte(name string) bool {
	if len(name) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Store) loadObjects() error {
	subs, err := os.ReadDir(s.objDir)
	if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	var all []*entry
	for _, sub := range subs {
		if !sub.IsDir() || !isHexByte(sub.Name()) {
			s.logf("ignoring %s: not an object directory", filepath.Join(s.objDir, sub.Name()))
			continue
		}
		subPath := filepath.Join(s.objDir, sub.Name())
		if err := s.tightenDir(subPath); err != nil {
			return err
		}
		names, err := os.ReadDir(subPath)
		if err != nil {
			return fmt.Errorf("cas: %w", err)
		}
		for _, n := range names {
			p := filepath.Join(subPath, n.Name())
			h := n.Name()
			if blobstore.CheckHash(h) != nil || h[:2] != sub.Name() || !n.Type().IsRegular() {
				s.logf("ignoring %s: not an object", p)
				continue
			}
			fi, err := os.Lstat(p)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return fmt.Errorf("cas: %w", err)
			}
			if fi.Mode().Perm() != 0o600 {
				if err := os.Chmod(p, 0o600); err != nil {
					return fmt.Errorf("cas: %w", err)
				}
				s.logf("%s had mode %#o, tightened to 0600", p, fi.Mode().Perm())
			}
			st := fi.Sys().(*syscall.Stat_t)
			all = append(all, &entry{hash: h, size: fi.Size(), stamp: st.Atim.Nano()})
		}
	}
	// Oldest first, so that PushFront leaves the most recent at the front.
	sort.Slice(all, func(i, j int) bool {
		if all[i].stamp != all[j].stamp {
			return all[i].stamp < all[j].stamp
		}
		return all[i].hash < all[j].hash
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range all {
		e.elem = s.lru.PushFront(e)
		s.index[e.hash] = e
		s.used += e.size
		if e.stamp > s.lastStamp {
			s.lastStamp = e.stamp
		}
	}
	return nil
}

func (s *Store) tightenDir(d string) error {
	fi, err := os.Lstat(d)
	if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("cas: %w", err)
		}
		s.logf("%s had mode %#o, tightened to 0700", d, fi.Mode().Perm())
	}
	return nil
}

// Close releases the store's lock. Objects still open stay readable; every other method fails
// with ErrClosed afterwards. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lockFile.Close()
}

// Dir returns the store's directory (absolute).
func (s *Store) Dir() string { return s.dir }

func (s *Store) objPath(hash string) string {
	return filepath.Join(s.objDir, hash[:2], hash)
}

// nextStampLocked returns a recency stamp larger than every stamp handed out or loaded before.
func (s *Store) nextStampLocked() int64 {
	now := time.Now().UnixNano()
	if now <= s.lastStamp {
		now = s.lastStamp + 1
	}
	s.lastStamp = now
	return now
}

// touchLocked makes e the most recently used object and persists that in its atime.
func (s *Store) touchLocked(e *entry) {
	e.stamp = s.nextStampLocked()
	s.lru.MoveToFront(e.elem)
	if err := os.Chtimes(s.objPath(e.hash), time.Unix(0, e.stamp), time.Time{}); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logf("record use of %s: %v", e.hash, err)
	}
}

// dropLocked forgets e (its file is gone or is being removed).
func (s *Store) dropLocked(e *entry) {
	if s.index[e.hash] != e {
		return
	}
	delete(s.index, e.hash)
	s.lru.Remove(e.elem)
	s.used -= e.size
}

// Has reports whether the object is present. It does not count as a use.
func (s *Store) Has(hash string) bool {
	if blobstore.CheckHash(hash) != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index[hash] != nil
}

// Stats returns a snapshot of the store's accounting.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Used:         s.used,
		Quota:        s.opts.Quota,
		Objects:      len(s.index),
		Open:         len(s.open),
		Evictions:    s.evictions,
		EvictedBytes: s.evictedB,
		OverQuota:    s.opts.Quota > 0 && s.used > s.opts.Quota,
	}
	for h := range s.pins {
		if e := s.index[h]; e != nil {
			st.Pinned++
			st.PinnedBytes += e.size
		}
	}
	return st
}

// Evict runs an eviction pass: it removes least recently used objects that are neither open nor
// pinned until the store is within its quota, and returns how many it removed.
func (s *Store) Evict() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.evictLocked(""), nil
}

func (s *Store) evictableLocked(hash, protect string) bool {
	return hash != protect && s.open[hash] == 0 && s.pins[hash] == nil
}

// evictLocked removes unprotected objects from the LRU end until used <= quota.
func (s *Store) evictLocked(protect string) int {
	q := s.opts.Quota
	if q <= 0 || s.used <= q {
		s.warnedOQ = false
		return 0
	}
	n := 0
	for el := s.lru.Back(); el != nil && s.used > q; {
		e := el.Value.(*entry)
		prev := el.Prev()
		if s.evictableLocked(e.hash, protect) {
			err := os.Remove(s.objPath(e.hash))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				s.logf("evict %s: %v", e.hash, err)
			} else {
				s.dropLocked(e)
				s.evictions++
				s.evictedB += e.size
				n++
			}
		}
		el = prev
	}
	if s.used > q {
		if !s.warnedOQ {
			s.logf("over quota: %d bytes used, quota %d; everything left is open or pinned", s.used, q)
			s.warnedOQ = true
		}
	} else {
		s.warnedOQ = false
	}
	return n
}

// Remove deletes an object now. It refuses (ErrBusy) an object that is open or pinned, and
// returns ErrNotFound for one that is absent.
func (s *Store) Remove(hash string) error {
	if err := blobstore.CheckHash(hash); err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	e := s.index[hash]
	if e == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, hash)
	}
	if !s.evictableLocked(hash, "") {
		return fmt.Errorf("%w: %s", ErrBusy, hash)
	}
	if err := os.Remove(s.objPath(hash)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cas: %w", err)
	}
	s.dropLocked(e)
	return nil
}

// syncDir fsyncs a directory, making the creation, rename or removal of its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
