package cas

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// Object is an open object: a read-only file whose bytes hash to its name. While it is open the
// object is never evicted. It is safe for concurrent use.
type Object struct {
	s     *Store
	hash  string
	f     *os.File
	size  int64
	close sync.Once
}

// File returns the object's open file, for FUSE passthrough (its Fd) or for reading. The file
// belongs to the Object: do not close it; call Object.Close.
func (o *Object) File() *os.File { return o.f }

// Hash returns the object's name.
func (o *Object) Hash() string { return o.hash }

// Size returns the object's size in bytes.
func (o *Object) Size() int64 { return o.size }

// ReadAt implements io.ReaderAt on the object's bytes.
func (o *Object) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }

// Close closes the file and lets the object be evicted again (once no other handle has it open).
// Close is idempotent.
func (o *Object) Close() error {
	var err error
	o.close.Do(func() {
		err = o.f.Close()
		o.s.release(o.hash)
	})
	return err
}

func (s *Store) release(hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[hash] <= 1 {
		delete(s.open, hash)
	} else {
		s.open[hash]--
	}
}

// noatime is cleared once the kernel refuses O_NOATIME (EPERM: not the file's owner).
var noatime atomic.Bool

func init() { noatime.Store(true) }

func openObjectFile(path string) (*os.File, error) {
	if noatime.Load() {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOATIME|syscall.O_NOFOLLOW, 0)
		if !errors.Is(err, syscall.EPERM) {
			return f, err
		}
		noatime.Store(false)
	}
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// corruptError matches ErrCorrupt and ErrNotFound.
type corruptError struct {
	hash   string
	reason error
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("cas: object %s corrupt, removed: %v", e.hash, e.reason)
}

func (e *corruptError) Unwrap() []error { return []error{ErrCorrupt, ErrNotFound, e.reason} }

// Open opens the object named hash and marks it most recently used. The first Open of an object
// in this process (and any Open after its file's inode, size or mtime changed) hashes the whole
// file first; a file that does not match is removed and the error matches both ErrCorrupt and
// ErrNotFound. An absent object gives ErrNotFound. The caller must Close the Object.
func (s *Store) Open(hash string) (*Object, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, fmt.Errorf("cas: %w", err)
	}
	path := s.objPath(hash)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	e := s.index[hash]
	if e == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, hash)
	}
	// Opening under mu: eviction (also under mu) cannot unlink the file between the lookup and
	// the open, and skips it from now on because its open count is not zero.
	f, err := openObjectFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			s.logf("object %s vanished from disk", hash)
			s.dropLocked(e)
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrNotFound, hash)
		}
		s.mu.Unlock()
		return nil, fmt.Errorf("cas: %w", err)
	}
	s.open[hash]++
	fi, err := f.Stat()
	if err != nil {
		s.mu.Unlock()
		f.Close()
		s.release(hash)
		return nil, fmt.Errorf("cas: %w", err)
	}
	id := statID(fi)
	if e.verified == id && s.index[hash] == e {
		s.touchLocked(e)
		s.mu.Unlock()
		return &Object{s: s, hash: hash, f: f, size: id.size}, nil
	}
	s.mu.Unlock()

	if err := s.verify(e, f, id); err != nil {
		f.Close()
		s.release(hash)
		return nil, err
	}
	s.mu.Lock()
	if s.index[hash] == e {
		s.touchLocked(e)
	}
	s.mu.Unlock()
	return &Object{s: s, hash: hash, f: f, size: id.size}, nil
}

var verifyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// verify hashes f (whose identity is id) unless another Open verified the same file meanwhile.
// On a mismatch it removes the object's file, if it is still the file f, and returns a
// corruptError.
func (s *Store) verify(e *entry, f *os.File, id fileID) error {
	e.vmu.Lock()
	defer e.vmu.Unlock()
	s.mu.Lock()
	done := e.verified == id
	s.mu.Unlock()
	if done {
		return nil
	}
	vr := blobstore.VerifyingReader(io.NopCloser(io.NewSectionReader(f, 0, id.size)), e.hash, id.size)
	bp := verifyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(discard{}, vr, *bp) // discard hides io.Discard's small-buffer ReadFrom
	verifyBufs.Put(bp)
	if err == nil {
		s.mu.Lock()
		e.verified = id
		s.mu.Unlock()
		return nil
	}
	if !errors.Is(err, blobstore.ErrHashMismatch) && !errors.Is(err, syscall.EIO) {
		return fmt.Errorf("cas: verify %s: %w", e.hash, err)
	}
	path := s.objPath(e.hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Remove the file only if it is still the one we read: a concurrent Put may have renamed a
	// good copy into its place (renames happen under mu, so this check-and-remove is atomic).
	if fi, serr := os.Lstat(path); serr == nil {
		if cur := statID(fi); cur.dev == id.dev && cur.ino == id.ino {
			if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				s.logf("remove corrupt %s: %v", path, rerr)
			}
			s.dropLocked(e)
		}
	}
	reasons := ""
	for r := range s.pins[e.hash] {
		reasons += " " + r
	}
	if reasons != "" {
		s.logf("object %s is corrupt and was pinned (%s); removed: %v", e.hash, reasons[1:], err)
	} else {
		s.logf("object %s is corrupt; removed: %v", e.hash, err)
	}
	return &corruptError{hash: e.hash, reason: err}
}
