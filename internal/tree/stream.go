package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// Fetcher fetches the blob of a chunk (never a hole) by ref.Hash. It returns the blob's bytes
// as stored; the caller verifies them (OpenChunk), so a Fetcher need not, and must not trust
// them either. The returned slice is neither modified nor retained by this package.
type Fetcher interface {
	Fetch(ctx context.Context, ref ChunkRef) ([]byte, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, ref ChunkRef) ([]byte, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context, ref ChunkRef) ([]byte, error) { return f(ctx, ref) }

// StoreFetcher fetches chunk blobs from a blobstore.Store, reading at most the size a chunk of
// ref.Size bytes has (plus one byte, to notice a longer blob).
type StoreFetcher struct{ Store blobstore.Store }

// Fetch gets the blob named ref.Hash.
func (s StoreFetcher) Fetch(ctx context.Context, ref ChunkRef) ([]byte, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	if ref.IsHole() {
		return nil, refuse(RuleRef, "a hole has no blob to fetch")
	}
	rc, err := s.Store.Get(ctx, ref.Hash)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	want := BlobSize(ref.Size)
	buf := make([]byte, want+1)
	n, err := io.ReadFull(rc, buf)
	switch {
	case err == nil:
		return nil, fmt.Errorf("%w: blob %s is longer than the %d bytes of a %d-byte chunk", blobstore.ErrHashMismatch, ref.Hash, want, ref.Size)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return buf[:n], nil // OpenChunk checks the length and the hash
	}
	return nil, err
}

// StorePut returns a put function for Split and WriteListing that uploads each blob to s.
func StorePut(ctx context.Context, s blobstore.Store) func(blob []byte, ref ChunkRef) error {
	return func(blob []byte, ref ChunkRef) error {
		_, err := s.Put(ctx, ref.Hash, int64(len(blob)), bytes.NewReader(blob))
		return err
	}
}

var (
	_ Fetcher = FetcherFunc(nil)
	_ Fetcher = StoreFetcher{}
)

// zeros serves holes and all-zero checks.
var zeros [64 << 10]byte

func allZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeros))
		if !bytes.Equal(p[:n], zeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// chunkBufs holds ChunkSize buffers for partial chunk reads (cleared before they go back).
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// Split reads r to its end and stores it as a content reference: inline if the whole stream
// is at most MaxInline bytes; otherwise in ChunkSize pieces, each all-zero piece a hole (not
// stored), every other one sealed (SealChunk) and handed to put. put may be nil (nothing is
// stored: e.g. to compute the reference only).
//
// Split streams: it holds one plaintext piece and one blob at a time. The blob passed to put
// is reused for the next chunk once put returns: put must copy it to keep it.
func (k *Keys) Split(r io.Reader, put func(blob []byte, ref ChunkRef) error) (Content, error) {
	// A reader that knows its length (bytes.Reader, as in WriteListing) gets a buffer of that
	// size when it is under a chunk: most listings are small.
	size := ChunkSize
	if l, ok := r.(interface{ Len() int }); ok {
		size = min(ChunkSize, max(l.Len()+1, MaxInline+1))
	}
	buf := make([]byte, size)
	defer func() { clear(buf) }()
	n, err := io.ReadFull(r, buf)
	if err == nil && size < ChunkSize {
		// The reader had more than it said: go on with a whole chunk.
		buf = append(buf, make([]byte, ChunkSize-size)...)
		var m int
		m, err = io.ReadFull(r, buf[n:])
		n += m
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	last := false
	switch {
	case err == io.EOF:
		return Content{}, nil
	case err == io.ErrUnexpectedEOF:
		last = true
	case err != nil:
		return Content{}, err
	}
	if last && n <= MaxInline {
		return Content{Size: int64(n), Inline: bytes.Clone(buf[:n])}, nil
	}
	var c Content
	var blob []byte
	defer func() { clear(blob) }()
	for {
		if c.Size+int64(n) > MaxFileSize {
			return Content{}, refuse(RuleSize, "stream over 2^50 bytes")
		}
		p := buf[:n]
		if allZero(p) {
			c.Chunks = append(c.Chunks, ChunkRef{Size: int64(n)})
		} else {
			var ref ChunkRef
			if blob, ref, err = k.sealChunk(blob, p); err != nil {
				return Content{}, err
			}
			if put != nil {
				if err := put(blob, ref); err != nil {
					return Content{}, fmt.Errorf("tree: storing chunk %d (%s): %w", len(c.Chunks), ref.Hash, err)
				}
			}
			c.Chunks = append(c.Chunks, ref)
		}
		c.Size += int64(n)
		if last {
			return c, nil
		}
		n, err = io.ReadFull(r, buf)
		switch {
		case err == io.EOF:
			return c, nil
		case err == io.ErrUnexpectedEOF:
			last = true
		case err != nil:
			return Content{}, err
		}
	}
}

// checkShape checks what ReadAt needs in O(1): the size's range, the inline length, the
// number of chunks. Each chunk used is checked when it is used (checkChunk).
func (c Content) checkShape() error {
	if c.Size < 0 || c.Size > MaxFileSize {
		return refuse(RuleSize, "size %d is outside 0 to 2^50", c.Size)
	}
	if len(c.Inline) > 0 {
		if len(c.Chunks) > 0 || len(c.Inline) > MaxInline || int64(len(c.Inline)) != c.Size {
			return c.Check()
		}
		return nil
	}
	if int64(len(c.Chunks)) != numChunks(c.Size) {
		return c.Check()
	}
	return nil
}

// chunkAt returns chunk i of c after checking it has the size its place requires.
func (c Content) chunkAt(i int64) (ChunkRef, error) {
	ref := c.Chunks[i]
	want := min(int64(ChunkSize), c.Size-i*ChunkSize)
	if err := ref.check(); err != nil {
		return ref, withDetail(err, fmt.Sprintf("chunk %d", i))
	}
	if ref.Size != want {
		return ref, refuse(RuleSize, "chunk %d has %d bytes, its place needs %d", i, ref.Size, want)
	}
	return ref, nil
}

// fetchOpen fetches chunk i (ref) and decrypts it into dst (whose capacity must be at least
// ref.Size and which may be overwritten up to its capacity).
func (k *Keys) fetchOpen(ctx context.Context, f Fetcher, ref ChunkRef, i int64, dst []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	blob, err := f.Fetch(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("tree: fetching chunk %d (%s): %w", i, ref.Hash, err)
	}
	p, err := k.openChunk(dst, blob, ref)
	if err != nil {
		return nil, withDetail(err, fmt.Sprintf("chunk %d", i))
	}
	return p, nil
}

// ReadAt reads len(p) bytes of c's stream from offset off, with io.ReaderAt's semantics: it
// returns io.EOF with fewer bytes at the end of the stream. It fetches (through f) and
// verifies only the chunks that cover [off, off+len(p)); holes read as zeros. c should have
// passed Check; ReadAt checks only what it uses.
func (k *Keys) ReadAt(ctx context.Context, f Fetcher, c Content, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("tree: ReadAt at a negative offset")
	}
	if err := c.checkShape(); err != nil {
		return 0, err
	}
	if off >= c.Size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > c.Size-off {
		n = int(c.Size - off)
	}
	if len(c.Inline) > 0 {
		copy(p[:n], c.Inline[off:])
	} else {
		done := 0
		for done < n {
			pos := off + int64(done)
			i := pos / ChunkSize
			ref, err := c.chunkAt(i)
			if err != nil {
				return done, err
			}
			lo := int(pos - i*ChunkSize)
			m := min(int(ref.Size)-lo, n-done)
			dst := p[done : done+m : done+m]
			switch {
			case ref.IsHole():
				clear(dst)
			case lo == 0 && m == int(ref.Size):
				if _, err := k.fetchOpen(ctx, f, ref, i, dst[:0]); err != nil {
					return done, err
				}
			default:
				bp := chunkBufs.Get().(*[]byte)
				pt, err := k.fetchOpen(ctx, f, ref, i, (*bp)[:0])
				if err == nil {
					copy(dst, pt[lo:lo+m])
				}
				clear(*bp)
				chunkBufs.Put(bp)
				if err != nil {
					return done, err
				}
			}
			done += m
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteTo writes c's whole stream to w, one chunk at a time, and returns the number of bytes
// written. c is checked first (Check).
func (k *Keys) WriteTo(ctx context.Context, f Fetcher, c Content, w io.Writer) (int64, error) {
	if err := c.Check(); err != nil {
		return 0, err
	}
	if len(c.Inline) > 0 {
		n, err := w.Write(c.Inline)
		return int64(n), err
	}
	var total int64
	bp := chunkBufs.Get().(*[]byte)
	defer func() { clear(*bp); chunkBufs.Put(bp) }()
	for i, ref := range c.Chunks {
		if ref.IsHole() {
			for left := ref.Size; left > 0; {
				m := min(left, int64(len(zeros)))
				n, err := w.Write(zeros[:m])
				total += int64(n)
				if err != nil {
					return total, err
				}
				left -= m
			}
			continue
		}
		pt, err := k.fetchOpen(ctx, f, ref, int64(i), (*bp)[:0])
		if err != nil {
			return total, err
		}
		n, err := w.Write(pt)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
