package homefs

import (
	"container/list"
	"context"
	"sync"

	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// Reading remote files. A READ is at most 128 KiB (the kernel's readahead window) and a
// chunk is 1 MiB: decrypting the whole chunk for every READ would cost eight decryptions per
// chunk read through. So decrypted chunks are kept in a small LRU in memory (plainCacheSize
// chunks, by chunk id), and a read that reaches into a chunk starts fetching the next
// prefetchChunks chunks in the background, so a cold sequential read waits for the network
// once, not once per chunk. The cache holds plaintext in memory only: never on disk.

const (
	plainCacheSize = 8
	prefetchChunks = 2
	maxPrefetches  = 4
)

type plainCache struct {
	mu sync.Mutex // guards ll and m
	ll *list.List // of *plainEntry, most recent first
	m  map[string]*list.Element
}

type plainEntry struct {
	id string
	p  []byte
}

func newPlainCache() *plainCache { return &plainCache{ll: list.New(), m: map[string]*list.Element{}} }

func (c *plainCache) get(id string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*plainEntry).p
	}
	return nil
}

func (c *plainCache) put(id string, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; ok {
		return
	}
	c.m[id] = c.ll.PushFront(&plainEntry{id: id, p: p})
	for c.ll.Len() > plainCacheSize {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.m, e.Value.(*plainEntry).id)
	}
}

// plain returns the plaintext of chunk ref (not a hole): from memory, or fetched (through
// the cas), verified and decrypted. The slice is shared: callers must not modify it.
func (f *FS) plain(ctx context.Context, ref tree.ChunkRef) ([]byte, error) {
	if p := f.plainC.get(ref.ID); p != nil {
		return p, nil
	}
	blob, err := f.fetch.Fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	p, err := f.opts.Keys.OpenChunk(blob, ref)
	if err != nil {
		return nil, err
	}
	f.plainC.put(ref.ID, p)
	return p, nil
}

// readContent reads remote content c at off into dest, like tree.Keys.ReadAt, through the
// plaintext cache, and prefetches the chunks after the last one read.
func (f *FS) readContent(ctx context.Context, c tree.Content, dest []byte, off int64) (int, error) {
	if off >= c.Size {
		return 0, nil
	}
	if len(c.Chunks) == 0 {
		return copy(dest, c.Inline[off:]), nil
	}
	n := 0
	last := -1
	for n < len(dest) && off+int64(n) < c.Size {
		pos := off + int64(n)
		i := int(pos / tree.ChunkSize)
		if i >= len(c.Chunks) {
			break
		}
		ref := c.Chunks[i]
		within := pos - int64(i)*tree.ChunkSize
		want := min(int64(len(dest)-n), ref.Size-within)
		if ref.IsHole() {
			clear(dest[n : n+int(want)])
		} else {
			p, err := f.plain(ctx, ref)
			if err != nil {
				return n, err
			}
			copy(dest[n:n+int(want)], p[within:within+want])
		}
		n += int(want)
		last = i
	}
	for j := last + 1; j <= last+prefetchChunks && j < len(c.Chunks); j++ {
		f.prefetch(c.Chunks[j])
	}
	return n, nil
}

// prefetch decrypts chunk ref into the plaintext cache in the background, at most
// maxPrefetches at a time (more are dropped: they are only a guess).
func (f *FS) prefetch(ref tree.ChunkRef) {
	if ref.IsHole() || f.plainC.get(ref.ID) != nil {
		return
	}
	select {
	case f.prefetchSem <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-f.prefetchSem }()
		ctx, cancel := context.WithTimeout(context.Background(), f.opts.FetchTimeout)
		defer cancel()
		if _, err := f.plain(ctx, ref); err != nil {
			f.opts.Logf("homefs: prefetch of chunk %s: %v", ref.Hash, err)
		}
	}()
}
