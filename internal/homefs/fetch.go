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
	if ref.Size <= 0 || ref.Size > tree.ChunkSize {
		return nil, fmt.Errorf("homefs: chunk %s: bad size %d", ref.Hash, ref.Size)
	}
	// At most what a chunk of ref.Size bytes needs, plus one byte to notice a longer object.
	if b, ok, err := f.fromCache(ref.Hash, tree.BlobSize(ref.Size)+1); ok || err != nil {
		return b, err
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
	return blob, f.intoCache(ref.Hash, blob)
}

// fetchBlob returns the whole blob hash of size bytes (a root pointer blob): from the cache,
// or from the store (which verifies the hash), then cached. Not merged with other fetches:
// it is read once per manifest.
func (f *fetcher) fetchBlob(ctx context.Context, hash string, size int64) ([]byte, error) {
	if err := blobstore.CheckHash(hash); err != nil {
		return nil, err
	}
	if b, ok, err := f.fromCache(hash, size+1); err != nil {
		return nil, err
	} else if ok {
		if int64(len(b)) != size {
			return nil, fmt.Errorf("homefs: cached blob %s has %d bytes, want %d", hash, len(b), size)
		}
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
	return b, f.intoCache(hash, b)
}

// fromCache reads at most limit bytes of the cached object hash (the cas verifies it on
// open). A miss, or an object that fails to open (corrupt: logged), is ok == false: fetch it
// instead; a read error of an open object is an error.
func (f *fetcher) fromCache(hash string, limit int64) (b []byte, ok bool, err error) {
	o, err := f.cache.Open(hash)
	if err != nil {
		if !errors.Is(err, cas.ErrNotFound) {
			f.logf("homefs: cache open %s: %v (fetching instead)", hash, err)
		}
		return nil, false, nil
	}
	defer o.Close()
	b = make([]byte, min(o.Size(), limit))
	if _, err := o.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("homefs: cache read %s: %w", hash, err)
	}
	f.cached.Add(1)
	return b, true, nil
}

// intoCache counts a blob fetched upstream and caches it. Bytes that do not hash to their
// name are an error; failing only to cache them (disk full, say) is logged: the blob is
// still good to use.
func (f *fetcher) intoCache(hash string, blob []byte) error {
	f.fetched.Add(1)
	if _, err := f.cache.Put(hash, bytes.NewReader(blob)); err != nil {
		if errors.Is(err, blobstore.ErrHashMismatch) {
			return fmt.Errorf("homefs: fetch %s: %w", hash, err)
		}
		f.logf("homefs: cache put %s: %v", hash, err)
	}
	return nil
}
