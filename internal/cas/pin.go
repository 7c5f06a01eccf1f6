package cas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

func checkReason(r string) error {
	if len(r) == 0 || len(r) > 64 {
		return fmt.Errorf("%w: %q", ErrBadReason, r)
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %q", ErrBadReason, r)
		}
	}
	return nil
}

// Pin adds one reference for reason to hash. While any reason holds a reference, the object is
// never evicted; the hash need not be present yet (pin before Put to close the window between
// the write and the pin). The pin is durable when Pin returns.
func (s *Store) Pin(hash, reason string) error {
	if err := blobstore.CheckHash(hash); err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	if err := checkReason(reason); err != nil {
		return err
	}
	kl := s.lockKey(reason, hash)
	defer s.unlockKey(reason, hash, kl)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	n := s.pins[hash][reason]
	// Protect in memory first, so that no eviction runs while the pin is being written.
	s.setPinLocked(hash, reason, n+1)
	s.mu.Unlock()
	if err := s.writePin(hash, reason, n+1); err != nil {
		s.mu.Lock()
		s.setPinLocked(hash, reason, n)
		s.mu.Unlock()
		return fmt.Errorf("cas: pin %s for %s: %w", hash, reason, err)
	}
	return nil
}

// Unpin drops one reference for reason from hash, durably, or returns ErrNotPinned. It does not
// evict; call Evict (or let the next Put do it).
func (s *Store) Unpin(hash, reason string) error {
	if err := blobstore.CheckHash(hash); err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	if err := checkReason(reason); err != nil {
		return err
	}
	kl := s.lockKey(reason, hash)
	defer s.unlockKey(reason, hash, kl)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	n := s.pins[hash][reason]
	s.mu.Unlock()
	if n == 0 {
		return fmt.Errorf("%w: %s for %s", ErrNotPinned, hash, reason)
	}
	// Durable first: if this fails the object stays pinned, in memory and on disk.
	if err := s.writePin(hash, reason, n-1); err != nil {
		return fmt.Errorf("cas: unpin %s for %s: %w", hash, reason, err)
	}
	s.mu.Lock()
	s.setPinLocked(hash, reason, n-1)
	s.mu.Unlock()
	return nil
}

// Pins returns hash's pin counts by reason (empty if it has none).
func (s *Store) Pins(hash string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for r, n := range s.pins[hash] {
		out[r] = n
	}
	return out
}

// ListPins returns, sorted, the hashes pinned for reason (present or not): after a restart, what
// is still dirty or unacknowledged.
func (s *Store) ListPins(reason string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for h, rs := range s.pins {
		if rs[reason] > 0 {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

func (s *Store) setPinLocked(hash, reason string, n int) {
	rs := s.pins[hash]
	if n > 0 {
		if rs == nil {
			rs = map[string]int{}
			s.pins[hash] = rs
		}
		rs[reason] = n
		return
	}
	delete(rs, reason)
	if len(rs) == 0 {
		delete(s.pins, hash)
	}
}

func (s *Store) lockKey(reason, hash string) *keyLock {
	k := reason + "/" + hash
	s.mu.Lock()
	kl := s.pinLocks[k]
	if kl == nil {
		kl = &keyLock{}
		s.pinLocks[k] = kl
	}
	kl.refs++
	s.mu.Unlock()
	kl.mu.Lock()
	return kl
}

func (s *Store) unlockKey(reason, hash string, kl *keyLock) {
	kl.mu.Unlock()
	s.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(s.pinLocks, reason+"/"+hash)
	}
	s.mu.Unlock()
}

// writePin makes pins/reason/hash hold n durably (n == 0: no file).
func (s *Store) writePin(hash, reason string, n int) error {
	dir := filepath.Join(s.pinDir, reason)
	path := filepath.Join(dir, hash)
	if n == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return syncDir(dir)
	}
	if err := os.Mkdir(dir, 0o700); err == nil {
		if err := syncDir(s.pinDir); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	f, err := os.CreateTemp(s.tmpDir, "pin-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.WriteString(strconv.Itoa(n) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func (s *Store) loadPins() error {
	reasons, err := os.ReadDir(s.pinDir)
	if err != nil {
		return fmt.Errorf("cas: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rd := range reasons {
		reason := rd.Name()
		dir := filepath.Join(s.pinDir, reason)
		if !rd.IsDir() || checkReason(reason) != nil {
			s.logf("ignoring %s: not a pin reason", dir)
			continue
		}
		if err := s.tightenDir(dir); err != nil {
			return err
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("cas: %w", err)
		}
		for _, f := range files {
			p := filepath.Join(dir, f.Name())
			if blobstore.CheckHash(f.Name()) != nil || !f.Type().IsRegular() {
				s.logf("ignoring %s: not a pin", p)
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("cas: %w", err)
			}
			n := 1
			if t := strings.TrimSpace(string(b)); t != "" {
				if v, err := strconv.Atoi(t); err == nil && v > 0 {
					n = v
				} else {
					s.logf("%s: bad pin count %q, counted as 1", p, t)
				}
			}
			s.setPinLocked(f.Name(), reason, n)
		}
	}
	return nil
}
