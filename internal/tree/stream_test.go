package tree

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

func holeStream() []byte {
	b := randBytes(5*ChunkSize, 5)
	clear(b[2*ChunkSize : 3*ChunkSize])
	return b
}

func TestSplitReadAt(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		data   []byte
		inline bool
		chunks int
		puts   int64
	}{
		{"0 bytes", nil, false, 0, 0},
		{"1 byte", []byte{7}, true, 0, 0},
		{"4 KiB", randBytes(MaxInline, 1), true, 0, 0},
		{"4 KiB of zeros", make([]byte, MaxInline), true, 0, 0},
		{"4 KiB+1", randBytes(MaxInline+1, 2), false, 1, 1},
		{"1 MiB", randBytes(ChunkSize, 3), false, 1, 1},
		{"1 MiB+1", randBytes(ChunkSize+1, 4), false, 2, 2},
		{"5 MiB with a 1 MiB hole", holeStream(), false, 5, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemStore()
			c, err := k.Split(bytes.NewReader(tc.data), s.put)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Check(); err != nil {
				t.Fatal(err)
			}
			if c.Size != int64(len(tc.data)) || (len(c.Inline) > 0) != tc.inline || len(c.Chunks) != tc.chunks || s.puts.Load() != tc.puts {
				t.Fatalf("size %d, inline %d, %d chunks, %d puts", c.Size, len(c.Inline), len(c.Chunks), s.puts.Load())
			}
			// The same through a reader that does not know its length, in odd pieces.
			c2, err := k.Split(io.MultiReader(bytes.NewReader(tc.data[:len(tc.data)/3]), bytes.NewReader(tc.data[len(tc.data)/3:])), nil)
			if err != nil || !sameContent(c, c2) {
				t.Fatalf("Split depends on the reader: %v", err)
			}
			size := int64(len(tc.data))
			offs := []int64{0, 1, 4095, 4096, 4097, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2*ChunkSize - 3,
				2 * ChunkSize, 2*ChunkSize + ChunkSize/2, 3*ChunkSize - 2, 3 * ChunkSize, size - 1, size, size + 1, size + 100}
			r := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 10 && size > 0; i++ {
				offs = append(offs, r.Int64N(size))
			}
			want := bytes.NewReader(tc.data)
			for _, off := range offs {
				if off < 0 {
					continue
				}
				for _, n := range []int{0, 1, 10, 4096, ChunkSize + 7, 3 * ChunkSize} {
					got := make([]byte, n)
					exp := make([]byte, n)
					gn, gerr := k.ReadAt(ctx, s, c, got, off)
					en, eerr := want.ReadAt(exp, off)
					if gn != en || gerr != eerr || !bytes.Equal(got[:gn], exp[:en]) {
						t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", n, off, gn, gerr, en, eerr)
					}
				}
			}
			if _, err := k.ReadAt(ctx, s, c, make([]byte, 1), -1); err == nil {
				t.Fatal("negative offset accepted")
			}
			var out bytes.Buffer
			n, err := k.WriteTo(ctx, s, c, &out)
			if err != nil || n != size || !bytes.Equal(out.Bytes(), tc.data) {
				t.Fatalf("WriteTo: %d, %v", n, err)
			}
		})
	}
}

func sameContent(a, b Content) bool {
	return a.Size == b.Size && bytes.Equal(a.Inline, b.Inline) && len(a.Chunks) == len(b.Chunks) &&
		(len(a.Chunks) == 0 || string(mustJSON(a)) == string(mustJSON(b)))
}

func TestSplitHoles(t *testing.T) {
	k := testKeys(t, 1)
	s := newMemStore()
	// All zeros, ending in a partial chunk: every chunk is a hole, nothing is stored.
	c, err := k.Split(bytes.NewReader(make([]byte, 3*ChunkSize+5)), s.put)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Chunks) != 4 || s.puts.Load() != 0 || c.Check() != nil {
		t.Fatalf("%d chunks, %d puts", len(c.Chunks), s.puts.Load())
	}
	for _, r := range c.Chunks {
		if !r.IsHole() {
			t.Fatal("not a hole")
		}
	}
	// One non-zero byte at the very end of a chunk makes it a real chunk.
	b := make([]byte, 2*ChunkSize)
	b[ChunkSize-1] = 1
	c, _ = k.Split(bytes.NewReader(b), s.put)
	if c.Chunks[0].IsHole() || !c.Chunks[1].IsHole() || s.puts.Load() != 1 {
		t.Fatalf("%+v", c.Chunks)
	}
}

// countingReader produces n pseudo-random bytes without holding them, and counts what it
// gave.
type countingReader struct {
	r    *rand.PCG
	n    int64
	read int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), c.n-c.read)]
	for i := range p {
		if i%8 == 0 {
			v := c.r.Uint64()
			for j := 0; j < 8 && i+j < len(p); j++ {
				p[i+j] = byte(v >> (8 * j))
			}
		}
	}
	c.read += int64(len(p))
	return len(p), nil
}

// TestSplitStreams: each chunk is stored as soon as it has been read, and a 64 MiB stream
// costs about two chunks of memory, not 64.
func TestSplitStreams(t *testing.T) {
	k := testKeys(t, 1)
	src := &countingReader{r: rand.NewPCG(1, 1), n: 64 * ChunkSize}
	var puts int64
	put := func(blob []byte, ref ChunkRef) error {
		puts++
		if src.read != puts*ChunkSize {
			t.Fatalf("chunk %d stored after reading %d bytes", puts-1, src.read)
		}
		return nil
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := k.Split(src, put)
	runtime.ReadMemStats(&after)
	if err != nil || c.Size != 64*ChunkSize || puts != 64 {
		t.Fatal(c.Size, puts, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Split of 64 MiB allocated %.2f MiB", float64(alloc)/(1<<20))
	if alloc > 4*ChunkSize {
		t.Fatalf("Split of 64 MiB allocated %d bytes", alloc)
	}
	// put's error stops Split.
	src = &countingReader{r: rand.NewPCG(1, 1), n: 3 * ChunkSize}
	boom := errors.New("boom")
	_, err = k.Split(src, func([]byte, ChunkRef) error { return boom })
	if !errors.Is(err, boom) || src.read != ChunkSize {
		t.Fatalf("%v after %d bytes", err, src.read)
	}
}

// TestLazyRead: a small read fetches only the chunks it covers.
func TestLazyRead(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	c, err := k.Split(bytes.NewReader(holeStream()), s.put)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off     int64
		n       int
		fetches int64
	}{
		{3*ChunkSize + 100, 10, 1},
		{0, 10, 1},
		{ChunkSize - 5, 10, 2},    // across a boundary
		{2*ChunkSize + 10, 10, 0}, // in the hole
		{3*ChunkSize - 5, 10, 1},  // from the hole into chunk 3
		{5*ChunkSize - 5, 10, 1},  // to the end (io.EOF)
		{5 * ChunkSize, 10, 0},    // at the end
		{0, 5 * ChunkSize, 4},     // everything: 4 blobs and a hole
	} {
		before := s.fetches.Load()
		k.ReadAt(ctx, s, c, make([]byte, tc.n), tc.off)
		if got := s.fetches.Load() - before; got != tc.fetches {
			t.Errorf("ReadAt(%d bytes at %d) fetched %d chunks, want %d", tc.n, tc.off, got, tc.fetches)
		}
	}
}

func TestReadHostile(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	data := randBytes(3*ChunkSize, 3)
	c, _ := k.Split(bytes.NewReader(data), s.put)

	// A server answering with another blob.
	swapped := FetcherFunc(func(ctx context.Context, ref ChunkRef) ([]byte, error) {
		return s.Fetch(ctx, c.Chunks[0])
	})
	buf := make([]byte, 10)
	n, err := k.ReadAt(ctx, swapped, c, buf, ChunkSize+1)
	wantRule(t, err, RuleHash)
	if !errors.Is(err, blobstore.ErrHashMismatch) || n != 0 {
		t.Fatal(n, err)
	}
	// A full-chunk read decrypts in place: on failure the caller's buffer holds no plaintext.
	big := make([]byte, 2*ChunkSize)
	forged := sealWithID(t, k, c.Chunks[1].ID, data[:ChunkSize])
	bad := FetcherFunc(func(ctx context.Context, ref ChunkRef) ([]byte, error) {
		if ref.ID == c.Chunks[1].ID {
			return forged, nil
		}
		return s.Fetch(ctx, ref)
	})
	c2 := c
	c2.Chunks = append([]ChunkRef(nil), c.Chunks...)
	c2.Chunks[1].Hash = hashOf(forged)
	n, err = k.ReadAt(ctx, bad, c2, big, 0)
	wantRule(t, err, RuleID)
	if n != ChunkSize || !bytes.Equal(big[:ChunkSize], data[:ChunkSize]) || !allZero(big[ChunkSize:]) {
		t.Fatalf("n = %d; the refused chunk's plaintext must not stay in the buffer", n)
	}
	_, err = k.WriteTo(ctx, bad, c2, io.Discard)
	wantRule(t, err, RuleID)

	// Inconsistent content references.
	for name, bc := range map[string]Content{
		"missing chunk":   {Size: c.Size, Chunks: c.Chunks[:2]},
		"short middle":    {Size: 2*ChunkSize + 5, Chunks: []ChunkRef{c.Chunks[0], {Hash: c.Chunks[1].Hash, ID: c.Chunks[1].ID, Size: 5}, c.Chunks[2]}},
		"inline too long": {Size: 2, Inline: []byte("abc")},
	} {
		_, err := k.ReadAt(ctx, s, bc, make([]byte, 3*ChunkSize), 0)
		wantRule(t, err, RuleSize)
		_, err = k.WriteTo(ctx, s, bc, io.Discard)
		wantRule(t, err, RuleSize)
		_ = name
	}
	// A missing blob, a cancelled context.
	empty := newMemStore()
	_, err = k.ReadAt(ctx, empty, c, buf, 0)
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.ReadAt(cctx, s, c, buf, 0); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// A different home's keys cannot read the chunks.
	_, err = testKeys(t, 2).ReadAt(ctx, s, c, buf, 0)
	wantRule(t, err, RuleDecrypt)
}

func TestStoreFetcher(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	data := randBytes(ChunkSize+100, 1)
	c, err := k.Split(bytes.NewReader(data), StorePut(ctx, s))
	if err != nil {
		t.Fatal(err)
	}
	f := StoreFetcher{Store: s}
	var out bytes.Buffer
	if _, err := k.WriteTo(ctx, f, c, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatal(err)
	}
	// A server that sends more than the chunk's blob.
	s.blobs[c.Chunks[1].Hash] = append(s.blobs[c.Chunks[1].Hash], 0)
	if _, err := f.Fetch(ctx, c.Chunks[1]); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatal(err)
	}
	// One that sends other bytes.
	s.blobs[c.Chunks[1].Hash] = s.blobs[c.Chunks[0].Hash][:BlobSize(100)]
	_, err = k.ReadAt(ctx, f, c, make([]byte, 10), ChunkSize)
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx, ChunkRef{Size: 5}); BrokenRule(err) != RuleRef {
		t.Fatal(err)
	}
}

// TestConcurrent: Keys is used from many goroutines at once (run with -race), and Wipe
// during use makes later calls fail cleanly.
func TestConcurrent(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	data := randBytes(3*ChunkSize+5, 8)
	c, err := k.Split(bytes.NewReader(data), s.put)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			buf := make([]byte, 1000)
			for i := 0; i < 10; i++ {
				off := int64((g*10+i)*40000) % int64(len(data)-1000)
				_, err := k.ReadAt(ctx, s, c, buf, off)
				if err != nil && !errors.Is(err, ErrWiped) {
					errs <- err
					return
				}
				if err == nil && !bytes.Equal(buf, data[off:off+1000]) {
					errs <- errors.New("wrong bytes")
					return
				}
				if _, err := k.Split(bytes.NewReader(data[:5000]), s.put); err != nil && !errors.Is(err, ErrWiped) {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if g == 4 {
			k.Wipe()
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.ReadAt(ctx, s, c, make([]byte, 10), 0); !errors.Is(err, ErrWiped) {
		t.Fatal(err)
	}
}
