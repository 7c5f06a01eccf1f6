package cas

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// Put stores the bytes of r under hash, their lowercase hex SHA-256, and returns their number.
// The bytes are streamed to a temp file while hashed; if they do not hash to hash, Put returns an
// error wrapping blobstore.ErrHashMismatch and stores nothing. Otherwise the file is fsynced,
// renamed into place and its directory fsynced before Put returns: the object is durable. If the
// object is already present and verified, Put marks it used and returns without reading r.
//
// Put marks the object most recently used and then runs an eviction pass that spares it. To keep
// it from later eviction, Pin the hash before calling Put.
func (s *Store) Put(hash string, r io.Reader) (int64, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return 0, fmt.Errorf("cas: %w", err)
	}
	if size, ok, err := s.reuse(hash); err != nil || ok {
		return size, err
	}
	w := s.NewWriter()
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		if w.err != nil {
			return 0, w.err
		}
		return 0, fmt.Errorf("cas: put %s: read: %w", hash, err)
	}
	_, size, err := w.commit(hash, nil)
	return size, err
}

// reuse marks a present, verified, unchanged object used and reports its size.
func (s *Store) reuse(hash string) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, ErrClosed
	}
	e := s.index[hash]
	if e == nil || e.verified == (fileID{}) {
		return 0, false, nil
	}
	fi, err := os.Lstat(s.objPath(hash))
	if err != nil || statID(fi) != e.verified {
		return 0, false, nil
	}
	s.touchLocked(e)
	return e.size, true, nil
}

// Writer writes an object whose hash is known only at the end. It is not safe for concurrent
// use. Call Commit (or CommitPinned) to store it, or Abort to drop it; `defer w.Abort()` is safe
// after a Commit.
type Writer struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	err  error // sticky: the first failure
	done bool
}

var errWriterDone = errors.New("cas: writer already committed or aborted")

// NewWriter starts a new object in a temp file. Errors (such as a closed store, or no space for
// the temp file) are returned by Write and Commit.
func (s *Store) NewWriter() *Writer {
	w := &Writer{s: s, h: sha256.New()}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		w.err = ErrClosed
		return w
	}
	f, err := os.CreateTemp(s.tmpDir, "obj-*")
	if err != nil {
		w.err = fmt.Errorf("cas: create temp file: %w", err)
		return w
	}
	w.f = f
	return w
}

// Write appends p to the object.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errWriterDone
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("cas: write: %w", err)
		return n, w.err
	}
	return n, nil
}

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Abort drops the object and removes its temp file. It does nothing after Commit or Abort.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.cleanup()
}

func (w *Writer) cleanup() {
	if w.f == nil {
		return
	}
	name := w.f.Name()
	w.f.Close()
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.s.logf("remove temp file: %v", err)
	}
	w.f = nil
}

// Commit stores the object written so far, with the guarantees of Put, and returns its hash and
// size. The Writer is finished afterwards, whatever the outcome.
func (w *Writer) Commit() (hash string, size int64, err error) {
	return w.commit("", nil)
}

// CommitPinned is Commit that first pins the object's hash for each of reasons (durably, before
// the object becomes visible), so that no eviction can come between the commit and the pins. If
// the commit fails, the pins it added are removed again.
func (w *Writer) CommitPinned(reasons ...string) (hash string, size int64, err error) {
	for _, r := range reasons {
		if err := checkReason(r); err != nil {
			w.Abort()
			return "", 0, err
		}
	}
	return w.commit("", reasons)
}

func (w *Writer) commit(expect string, reasons []string) (hash string, size int64, err error) {
	if w.done {
		return "", 0, errWriterDone
	}
	defer w.Abort() // removes the temp file on any failure; a no-op once renamed
	if w.err != nil {
		return "", 0, w.err
	}
	s := w.s
	hash = hex.EncodeToString(w.h.Sum(nil))
	size = w.n
	if expect != "" && hash != expect {
		return "", 0, fmt.Errorf("cas: put %s: %w: the bytes hash to %s", expect, blobstore.ErrHashMismatch, hash)
	}
	for i, r := range reasons {
		if err := s.Pin(hash, r); err != nil {
			for _, done := range reasons[:i] {
				s.Unpin(hash, done)
			}
			return "", 0, err
		}
	}
	defer func() {
		if err != nil {
			for _, r := range reasons {
				s.Unpin(hash, r)
			}
		}
	}()
	if sz, ok, err := s.reuse(hash); err != nil || ok {
		return hash, sz, err
	}
	if err := w.f.Sync(); err != nil {
		return "", 0, fmt.Errorf("cas: fsync: %w", err)
	}
	if err := w.f.Chmod(0o600); err != nil {
		return "", 0, fmt.Errorf("cas: %w", err)
	}
	tmp := w.f.Name()
	if err := w.f.Close(); err != nil {
		w.f = nil
		os.Remove(tmp)
		return "", 0, fmt.Errorf("cas: close: %w", err)
	}
	w.f = nil
	w.done = true
	if err := s.publish(tmp, hash, size); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	if err := syncDir(filepath.Dir(s.objPath(hash))); err != nil {
		return "", 0, fmt.Errorf("cas: fsync directory: %w", err)
	}
	s.mu.Lock()
	s.evictLocked(hash)
	s.mu.Unlock()
	return hash, size, nil
}

// publish stamps the temp file's times, renames it into place and records the object, all under
// mu so that the name appears atomically with respect to Open, eviction and removal.
func (s *Store) publish(tmp, hash string, size int64) error {
	final := s.objPath(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	stamp := s.nextStampLocked()
	t := time.Unix(0, stamp)
	// The mtime is set too, to a nanosecond value no later write by the kernel is likely to
	// reproduce: a file modified in place then shows a new mtime, and is verified again.
	if err := os.Chtimes(tmp, t, t); err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	fi, err := os.Lstat(tmp)
	if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	id := statID(fi)
	if err := os.Rename(tmp, final); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cas: %w", err)
		}
		// The fan-out directory does not exist yet.
		if err := os.Mkdir(filepath.Dir(final), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cas: %w", err)
		}
		if err := syncDir(s.objDir); err != nil {
			return fmt.Errorf("cas: %w", err)
		}
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("cas: %w", err)
		}
	}
	e := s.index[hash]
	if e == nil {
		e = &entry{hash: hash, size: size}
		e.elem = s.lru.PushFront(e)
		s.index[hash] = e
		s.used += size
	} else {
		// Normally the same size; not if the old file was damaged (and not yet verified).
		s.used += size - e.size
		e.size = size
		s.lru.MoveToFront(e.elem)
	}
	e.stamp = stamp
	e.verified = id
	return nil
}

var _ io.Writer = (*Writer)(nil)
