package cas

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const benchSize = 1 << 20

// BenchmarkPut1MiB measures Put of distinct 1 MiB objects against writing plain files in the
// same run: "plain" is os.WriteFile (no fsync), "plain-fsync" is create, write, fsync, close.
// Put adds hashing, a rename and a directory fsync. Ratios are cas time / baseline time.
func BenchmarkPut1MiB(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(filepath.Join(dir, "cas"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	plain := filepath.Join(dir, "plain")
	os.Mkdir(plain, 0o700)
	data, _ := content("bench put", benchSize)
	b.SetBytes(benchSize)
	var tCas, tPlain, tSync time.Duration
	i := 0
	for b.Loop() {
		binary.LittleEndian.PutUint64(data, uint64(i))
		h := sum(data)

		t0 := time.Now()
		if _, err := s.Put(h, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := os.WriteFile(filepath.Join(plain, fmt.Sprint("p", i)), data, 0o600); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		f, err := os.OpenFile(filepath.Join(plain, fmt.Sprint("s", i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		f.Write(data)
		f.Sync()
		f.Close()
		t3 := time.Now()
		tCas += t1.Sub(t0)
		tPlain += t2.Sub(t1)
		tSync += t3.Sub(t2)
		i++
	}
	n := float64(i)
	b.ReportMetric(float64(tCas.Nanoseconds())/n, "cas-ns/put")
	b.ReportMetric(float64(tPlain.Nanoseconds())/n, "plain-ns/write")
	b.ReportMetric(float64(tSync.Nanoseconds())/n, "plain-fsync-ns/write")
	b.ReportMetric(float64(tCas)/float64(tPlain), "cas/plain")
	b.ReportMetric(float64(tCas)/float64(tSync), "cas/plain-fsync")
}

// BenchmarkOpenReadAt1MiB measures Open + ReadAt of the whole object + Close of verified 1 MiB
// objects against os.Open + ReadAt + Close of plain files with the same bytes, and reports the
// cost of the first, verifying, Open of an object in a process.
func BenchmarkOpenReadAt1MiB(b *testing.B) {
	const objects = 64
	dir := b.TempDir()
	casDir := filepath.Join(dir, "cas")
	s, err := Open(casDir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	os.Mkdir(plain, 0o700)
	var hashes [objects]string
	for i := range hashes {
		data, h := content(fmt.Sprint("bench read ", i), benchSize)
		if _, err := s.Put(h, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(plain, h), data, 0o600)
		hashes[i] = h
	}
	// A new Store has verified nothing: time the first Opens.
	s.Close()
	s, err = Open(casDir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	for _, h := range hashes {
		o, err := s.Open(h)
		if err != nil {
			b.Fatal(err)
		}
		o.Close()
	}
	firstOpen := time.Since(t0) / objects

	buf := make([]byte, benchSize)
	b.SetBytes(benchSize)
	var tCas, tPlain time.Duration
	i := 0
	for b.Loop() {
		h := hashes[i%objects]
		t0 := time.Now()
		o, err := s.Open(h)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.ReadAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		o.Close()
		t1 := time.Now()
		f, err := os.Open(filepath.Join(plain, h))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.ReadAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
		t2 := time.Now()
		tCas += t1.Sub(t0)
		tPlain += t2.Sub(t1)
		i++
	}
	n := float64(i)
	b.ReportMetric(float64(tCas.Nanoseconds())/n, "cas-ns/read")
	b.ReportMetric(float64(tPlain.Nanoseconds())/n, "plain-ns/read")
	b.ReportMetric(float64(tCas)/float64(tPlain), "cas/plain")
	b.ReportMetric(float64(firstOpen.Nanoseconds()), "first-open-verify-ns")
}

// BenchmarkOpenStore10k measures opening a store of 10,000 objects (the directory scan that
// rebuilds sizes and LRU order from the objects' atimes).
func BenchmarkOpenStore10k(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10_000; i++ {
		data := []byte(fmt.Sprint("small object ", i))
		if _, err := s.Put(sum(data), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if s.Stats().Objects != 10_000 {
			b.Fatal("objects missing")
		}
		s.Close()
	}
}
