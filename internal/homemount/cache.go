package homemount

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

// Cache is one user's cache directory, as nostrfs lays it out: cas/ (the encrypted blobs),
// queue/ (the upload journal) and state/ (homefs's state.db and working copies).
type Cache struct {
	Store    *cas.Store
	Queue    *uploadq.Queue // started: it uploads until Close
	StateDir string
	cancel   context.CancelFunc
}

// CacheOptions configure OpenCache.
type CacheOptions struct {
	Quota int64
	// WaitLock bounds the wait for a previous process that still holds the cache (its
	// lock); zero fails at once.
	WaitLock time.Duration
	// Waiting, if set, is called once if OpenCache has to wait for the lock.
	Waiting func()
	Logf    func(format string, args ...any)
}

// OpenCache creates dir (0700) if need be, opens its cas and upload queue (uploading to up)
// and starts the queue.
func OpenCache(dir string, up uploadq.Uploader, o CacheOptions) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	var store *cas.Store
	var err error
	waitUntil := time.Now().Add(o.WaitLock)
	for waited := false; ; waited = true {
		store, err = cas.Open(filepath.Join(dir, "cas"), cas.Options{Quota: o.Quota, Logf: o.Logf})
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(waitUntil) {
			break
		}
		if !waited && o.Waiting != nil {
			o.Waiting()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	q, err := uploadq.Open(filepath.Join(dir, "queue"), store, up, uploadq.Options{Logf: o.Logf})
	if err != nil {
		store.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	return &Cache{Store: store, Queue: q, StateDir: filepath.Join(dir, "state"), cancel: cancel}, nil
}

// Close stops the queue (what is queued stays journaled) and closes the cas.
func (c *Cache) Close() {
	c.cancel()
	c.Queue.Close()
	c.Store.Close()
}
