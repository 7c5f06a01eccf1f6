// Package eventcache keeps the newest valid copy of each event a user's logins depend on
// (settings, manifest, secrets, relay and server lists) on local disk, so that a machine can
// log a user in and mount their home with every relay down.
//
// Events are stored as the JSON the relays served, one file per address (author, kind, d tag),
// in a directory only root can read (0700; files 0600): the settings hold the password-locked
// key, and nothing here should help another local user guess at someone's home. Files are
// replaced atomically (temp file, fsync, rename, fsync of the directory). An event replaces the
// cached one only if it validates and is newer (events.Newer), so a relay serving an old or
// forged event can never roll the cache back.
package eventcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/events"
)

// Cache is a directory of cached events. Safe for concurrent use within one process.
type Cache struct {
	dir string
	mu  sync.Mutex // serialises compare-and-replace of one address against another writer
}

// ErrNotCached means no event is cached for the address.
var ErrNotCached = errors.New("eventcache: nothing cached")

// Open creates dir (0700) if needed and tightens its mode if it is looser.
func Open(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	return &Cache{dir: dir}, nil
}

// path names the file of an address. The author is hex and the kind a number; the d tag is
// hex-encoded so no tag value can reach the file system as a path.
func (c *Cache) path(x events.Expect) (string, error) {
	if len(x.Author) != 64 {
		return "", fmt.Errorf("eventcache: author %q is not a hex public key", x.Author)
	}
	for _, r := range x.Author {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return "", fmt.Errorf("eventcache: author %q is not a hex public key", x.Author)
		}
	}
	name := strconv.Itoa(x.Kind) + "-" + fmt.Sprintf("%x", x.D) + ".json"
	return filepath.Join(c.dir, x.Author, name), nil
}

// Get returns the cached event for the address x describes, validated again against x (the
// file could have been damaged or replaced): a bad file is an error, never a silent success.
func (c *Cache) Get(x events.Expect) (*nostr.Event, error) {
	p, err := c.path(x)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotCached
	}
	if err != nil {
		return nil, err
	}
	var ev nostr.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("eventcache: %s is damaged: %w", p, err)
	}
	if err := events.Validate(&ev, x); err != nil {
		return nil, fmt.Errorf("eventcache: %s: %w", p, err)
	}
	return &ev, nil
}

// Put stores ev for the address x if it validates and is newer than what is cached. It
// reports whether it replaced anything.
func (c *Cache) Put(ev *nostr.Event, x events.Expect) (bool, error) {
	if err := events.Validate(ev, x); err != nil {
		return false, err
	}
	p, err := c.path(x)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, err := c.Get(x); err == nil && !events.Newer(ev, cur) {
		return false, nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return false, err
	}
	if err := writeAtomic(p, b); err != nil {
		return false, err
	}
	return true, nil
}

// Forget removes every cached event of author (when a user is removed).
func (c *Cache) Forget(author string) error {
	p, err := c.path(events.Expect{Author: author})
	if err != nil {
		return err
	}
	return os.RemoveAll(filepath.Dir(p))
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
