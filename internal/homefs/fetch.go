package homefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// fetcher is the tree.Fetcher every read goes through: the cas first, then the upstream
// Fetcher, whose blob is put into the cas. Concurrent fetches of one hash are merged.
type fetcher struct {
	cache *cas.Store
	up    tree.Fetcher
	store blobstore.Store // for whole blobs (fetchBlob)
	logf  func(string, ...any)
	// timeout bounds one upstream fetch; set by the FS.
	timeout time.Duration

	fetched, cached atomic.Int64

	mu       sync.Mutex // guards inflight; never held across a fetch
	inflight map[string]*call
}

type call struct {
	done chan struct{}
	blob []byte
	err  error
}

var _ tree.Fetcher = (*fetcher)(nil)

// Fetch returns the blob of ref, from the cache or upstream. The bytes are not trusted here:
// the caller (tree) verifies them. The returned slice may be shared with concurrent callers
// and must not be modified (tree does not).
func (f *fetcher) Fetch(ctx context.Context, ref tree.ChunkRef) ([]byte, error) {
	if err := blobstore.CheckHash(ref.Hash); err != nil {
		return nil, err
	}
	f.mu.Lock()
	c, ok := f.inflight[ref.Hash]
	if !ok {
		c = &call{done: make(chan struct{})}
		f.inflight[ref.Hash] = c
	}
	f.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.blob, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c.blob, c.err = f.fetch(ref)
	f.mu.Lock()
	delete(f.inflight, ref.Hash)
	f.mu.Unlock()
	close(c.done)
	return c.blob, c.err
}

func (f *fetcher) fetch(ref tree.ChunkRef) ([]byte, error) {
	// At most what a chunk of ref.Size bytes needs, plus one byte to notice a longer object.
	limit := tree.BlobSize(ref.Size) + 1
	if ref.Size <= 0 || ref.Size > tree.ChunkSize {
		return nil, fmt.Errorf("homefs: chunk %s: bad size %d", ref.Hash, ref.Size)
	}
	o, err := f.cache.Open(ref.Hash)
	if err == nil {
		defer o.Close()
		n := min(o.Size(), limit)
		b := make([]byte, n)
		if _, err := o.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("homefs: cache read %s: %w", ref.Hash, err)
		}
		f.cached.Add(1)
		return b, nil
	}
	if !errors.Is(err, cas.ErrNotFound) {
		f.logf("homefs: cache open %s: %v (fetching instead)", ref.Hash, err)
	}
	timeout := f.timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	blob, err := f.up.Fetch(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("homefs: fetch %s: %w", ref.Hash, err)
	}
	f.fetched.Add(1)
	if _, err := f.cache.Put(ref.Hash, bytes.NewReader(blob)); err != nil {
		if errors.Is(err, blobstore.ErrHashMismatch) {
			return nil, fmt.Errorf("homefs: fetch %s: %w", ref.Hash, err)
		}
		// The blob is still good to use; only caching it failed (disk full, say).
		f.logf("homefs: cache put %s: %v", ref.Hash, err)
	}
	return blob, nil
}

// fetchBlob returns the whole blob hash of size bytes (a root pointer blob): from the cache,
// or from the store (which verifies the hash), then cached. Not merged with other fetches:
// it is read once per manifest.
func (f *fetcher) fetchBlob(ctx context.Context, hash string, size int64) ([]byte, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, err
	}
	if o, err := f.cache.Open(hash); err == nil {
		defer o.Close()
		if o.Size() != size {
			return nil, fmt.Errorf("homefs: cached blob %s has %d bytes, want %d", hash, o.Size(), size)
		}
		b := make([]byte, size)
		if _, err := o.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		f.cached.Add(1)
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	rc, err := f.store.Get(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("homefs: fetch %s: %w", hash, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, fmt.Errorf("homefs: fetch %s: %w", hash, err)
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("homefs: blob %s has %d bytes, the manifest says %d", hash, len(b), size)
	}
	f.fetched.Add(1)
	if _, err := f.cache.Put(hash, bytes.NewReader(b)); err != nil {
		if errors.Is(err, blobstore.ErrHashMismatch) {
			return nil, fmt.Errorf("homefs: fetch %s: %w", hash, err)
		}
		f.logf("homefs: cache put %s: %v", hash, err)
	}
	return b, nil
}
