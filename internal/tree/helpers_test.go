package tree

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// memStore is an in-memory blob store and Fetcher that counts fetches.
type memStore struct {
	mu      sync.Mutex
	blobs   map[string][]byte
	puts    atomic.Int64
	fetches atomic.Int64
}

func newMemStore() *memStore { return &memStore{blobs: map[string][]byte{}} }

func (m *memStore) put(blob []byte, ref ChunkRef) error {
	m.puts.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[ref.Hash] = bytes.Clone(blob) // Split reuses blob
	return nil
}

func (m *memStore) Fetch(ctx context.Context, ref ChunkRef) ([]byte, error) {
	m.fetches.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[ref.Hash]
	if !ok {
		return nil, fmt.Errorf("%w: %s", blobstore.ErrNotFound, ref.Hash)
	}
	return b, nil
}

var _ Fetcher = (*memStore)(nil)

// Store implementation, for StoreFetcher and StorePut.
func (m *memStore) Put(ctx context.Context, hash string, size int64, r io.ReaderAt) ([]blobstore.Receipt, error) {
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[hash] = b
	return []blobstore.Receipt{{Backend: "mem", Size: size}}, nil
}

func (m *memStore) Get(ctx context.Context, hash string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[hash]
	if !ok {
		return nil, blobstore.ErrNotFound
	}
	return blobstore.VerifyingReader(io.NopCloser(bytes.NewReader(b)), hash, -1), nil
}

func (m *memStore) GetRange(ctx context.Context, hash string, offset, length int64) (io.ReadCloser, error) {
	return nil, errors.New("memStore: package tree reads whole blobs only; GetRange is unused")
}

func (m *memStore) Stat(ctx context.Context, hash string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[hash]
	if !ok {
		return 0, blobstore.ErrNotFound
	}
	return int64(len(b)), nil
}

var _ blobstore.Store = (*memStore)(nil)

// testKeys derives keys from a home key of 32 bytes equal to seed, seed+1, ...
func testKeys(t testing.TB, seed byte) *Keys {
	t.Helper()
	hk := make([]byte, 32)
	for i := range hk {
		hk[i] = seed + byte(i)
	}
	k, err := DeriveKeys(hk)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// deflateRaw compresses b as the listing writer does.
func deflateRaw(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := flate.NewWriter(&out, flate.DefaultCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func inflateRaw(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantRule fails unless err is a *FormatError with rule r.
func wantRule(t testing.TB, err error, r Rule) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want rule %q", r)
	}
	if got := BrokenRule(err); got != r {
		t.Fatalf("rule %q (%v); want %q", got, err, r)
	}
}

func hexRepeat(c byte) string { return string(bytes.Repeat([]byte{c}, 64)) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
