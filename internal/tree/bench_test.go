package tree

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// copyTimePerByte measures a plain io.Copy of data into memory, the baseline of the
// benchmarks' ratio.
func copyTimePerByte(data []byte) float64 {
	var dst bytes.Buffer
	dst.Grow(len(data))
	const rounds = 20
	start := time.Now()
	for i := 0; i < rounds; i++ {
		dst.Reset()
		io.Copy(&dst, bytes.NewReader(data))
	}
	return time.Since(start).Seconds() / float64(rounds*len(data))
}

// BenchmarkSplitReadAt stores 16 MiB (Split into an in-memory store) and reads it back with
// 1 MiB ReadAt calls, and reports how many times slower that is than copying the bytes.
func BenchmarkSplitReadAt(b *testing.B) {
	k := testKeys(b, 1)
	ctx := context.Background()
	data := randBytes(16*ChunkSize, 1)
	perByte := copyTimePerByte(data)
	buf := make([]byte, ChunkSize)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		s := newMemStore()
		c, err := k.Split(bytes.NewReader(data), s.put)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < c.Size; off += ChunkSize {
			if _, err := k.ReadAt(ctx, s, c, buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
	tree := b.Elapsed().Seconds() / float64(b.N*len(data))
	b.ReportMetric(tree/perByte, "x-copy-time")
	b.ReportMetric(1/perByte/1e6, "copy-MB/s")
}

func BenchmarkSplit(b *testing.B) {
	k := testKeys(b, 1)
	data := randBytes(16*ChunkSize, 1)
	perByte := copyTimePerByte(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := k.Split(bytes.NewReader(data), func([]byte, ChunkRef) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N*len(data))/perByte, "x-copy-time")
}

// BenchmarkReadAt reads a 16 MiB stream in pieces of several sizes. A piece smaller than a
// chunk still fetches and verifies a whole chunk: readers that read small pieces in order
// (nostrfs) need a cache of opened chunks.
func BenchmarkReadAt(b *testing.B) {
	k := testKeys(b, 1)
	ctx := context.Background()
	data := randBytes(16*ChunkSize, 1)
	s := newMemStore()
	c, err := k.Split(bytes.NewReader(data), s.put)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{4 << 10, 128 << 10, ChunkSize} {
		b.Run(byteSize(n), func(b *testing.B) {
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			off := int64(0)
			for b.Loop() {
				if _, err := k.ReadAt(ctx, s, c, buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				if off += int64(n); off >= c.Size {
					off = 0
				}
			}
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func BenchmarkDecodeListing(b *testing.B) {
	var l Listing
	for i := 0; i < 10000; i++ {
		l.Entries = append(l.Entries, Entry{Name: "file-" + itoa(i), Type: TypeFile, Mode: 0o644, Mtime: int64(i) * 1e9,
			Content: &Content{Size: 5, Inline: []byte("hello")}})
	}
	enc, err := EncodeListing(l)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(inflateRaw(b, enc))))
	for b.Loop() {
		if _, err := DecodeListing(enc); err != nil {
			b.Fatal(err)
		}
	}
}
