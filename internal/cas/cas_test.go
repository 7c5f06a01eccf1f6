package cas

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// content returns n deterministic pseudo-random bytes for seed and their hash.
func content(seed string, n int) ([]byte, string) {
	var key [32]byte
	copy(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b, sum(b)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// logBuf collects a Store's log lines.
type logBuf struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.t.Log(msg)
	l.mu.Lock()
	l.lines = append(l.lines, msg)
	l.mu.Unlock()
}

func (l *logBuf) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *Store, b []byte) string {
	t.Helper()
	h := sum(b)
	n, err := s.Put(h, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put(%s): %v", h[:8], err)
	}
	if n != int64(len(b)) {
		t.Fatalf("Put returned size %d, want %d", n, len(b))
	}
	return h
}

// readAll opens h and returns its bytes, checking Size and that File reads the same.
func readAll(t testing.TB, s *Store, h string) []byte {
	t.Helper()
	o, err := s.Open(h)
	if err != nil {
		t.Fatalf("Open(%s): %v", h[:8], err)
	}
	defer o.Close()
	b := make([]byte, o.Size())
	if _, err := o.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatalf("ReadAt: %v", err)
	}
	return b
}

// objectFiles returns the names of the files under dir/objects (walking, not asking the store).
func objectFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func tmpFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestPutOpenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, h := content("round trip", 300_000)
	if s.Has(h) {
		t.Fatal("Has before Put")
	}
	put(t, s, data)
	if !s.Has(h) {
		t.Fatal("not Has after Put")
	}
	got, err := os.ReadFile(filepath.Join(dir, "objects", h[:2], h))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object file at objects/%s/%s: %v, equal=%v", h[:2], h, err, bytes.Equal(got, data))
	}
	if !bytes.Equal(readAll(t, s, h), data) {
		t.Fatal("ReadAt bytes differ")
	}
	o, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	if o.Hash() != h || o.Size() != int64(len(data)) {
		t.Fatalf("Hash/Size = %s/%d", o.Hash(), o.Size())
	}
	viaFile, err := io.ReadAll(io.NewSectionReader(o.File(), 0, o.Size()))
	if err != nil || !bytes.Equal(viaFile, data) {
		t.Fatalf("File() read: %v", err)
	}
	if st := s.Stats(); st.Objects != 1 || st.Used != int64(len(data)) || st.Open != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	o.Close()
	o.Close() // idempotent
	if st := s.Stats(); st.Open != 0 {
		t.Fatalf("Open after Close = %d", st.Open)
	}
	// A second Put of a present object succeeds without reading.
	n, err := s.Put(h, iotestErrReader{})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("re-Put: %d, %v", n, err)
	}
	if len(tmpFiles(t, dir)) != 0 {
		t.Fatalf("temp files left: %v", tmpFiles(t, dir))
	}
	if _, err := s.Open(strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of absent: %v", err)
	}
	// Empty object.
	put(t, s, nil)
	if b := readAll(t, s, sum(nil)); len(b) != 0 {
		t.Fatal("empty object not empty")
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestPutWrongHashLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, _ := content("a", 100_000)
	_, other := content("b", 100_000)
	n, err := s.Put(other, bytes.NewReader(data))
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("Put with wrong hash: %d, %v", n, err)
	}
	if s.Has(other) || s.Has(sum(data)) {
		t.Fatal("object present after a refused Put")
	}
	if f := objectFiles(t, dir); len(f) != 0 {
		t.Fatalf("object files after a refused Put: %v", f)
	}
	if f := tmpFiles(t, dir); len(f) != 0 {
		t.Fatalf("temp files after a refused Put: %v", f)
	}
	if st := s.Stats(); st.Used != 0 || st.Objects != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	// A reader that fails midway leaves nothing either.
	if _, err := s.Put(sum(data), io.MultiReader(bytes.NewReader(data[:5000]), iotestErrReader{})); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if f := tmpFiles(t, dir); len(f) != 0 {
		t.Fatalf("temp files after a failed read: %v", f)
	}
}

func TestHostileNamesRefused(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	s := openStore(t, dir, Options{})
	for _, h := range []string{"../x", "../../etc/passwd", strings.Repeat("A", 64), strings.Repeat("a", 63) + "/", "", strings.Repeat("0", 62) + "/.."} {
		if _, err := s.Put(h, strings.NewReader("x")); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Put(%q): %v", h, err)
		}
		if _, err := s.Open(h); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Open(%q): %v", h, err)
		}
		if err := s.Pin(h, "dirty"); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Pin(%q): %v", h, err)
		}
		if err := s.Remove(h); !errors.Is(err, blobstore.ErrBadHash) {
			t.Errorf("Remove(%q): %v", h, err)
		}
		if s.Has(h) {
			t.Errorf("Has(%q)", h)
		}
	}
	_, h := content("x", 10)
	for _, r := range []string{"", "..", "../x", "Dirty", "a/b", strings.Repeat("a", 65)} {
		if err := s.Pin(h, r); !errors.Is(err, ErrBadReason) {
			t.Errorf("Pin reason %q: %v", r, err)
		}
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Fatalf("something was created next to the store: %v", ents)
	}
}

func TestWriterCommitAbort(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, want := content("writer", 2<<20+17)

	w := s.NewWriter()
	for off := 0; off < len(data); off += 100_000 {
		end := min(off+100_000, len(data))
		if _, err := w.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	h, n, err := w.Commit()
	if err != nil || h != want || n != int64(len(data)) {
		t.Fatalf("Commit = %s, %d, %v; want %s", h, n, err, want)
	}
	if _, _, err := w.Commit(); err == nil {
		t.Fatal("second Commit succeeded")
	}
	w.Abort() // no-op after Commit
	if !bytes.Equal(readAll(t, s, h), data) {
		t.Fatal("committed bytes differ")
	}

	other, oh := content("aborted", 50_000)
	w = s.NewWriter()
	w.Write(other)
	if len(tmpFiles(t, dir)) != 1 {
		t.Fatalf("writer has no temp file: %v", tmpFiles(t, dir))
	}
	w.Abort()
	if _, err := w.Write(other); err == nil {
		t.Fatal("Write after Abort succeeded")
	}
	if _, _, err := w.Commit(); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if s.Has(oh) || len(tmpFiles(t, dir)) != 0 || len(objectFiles(t, dir)) != 1 {
		t.Fatalf("Abort left something: has=%v tmp=%v objects=%v", s.Has(oh), tmpFiles(t, dir), objectFiles(t, dir))
	}

	w = s.NewWriter()
	w.Write(other)
	h, _, err = w.CommitPinned("dirty", "unacked")
	if err != nil || h != oh {
		t.Fatal(err)
	}
	if p := s.Pins(h); p["dirty"] != 1 || p["unacked"] != 1 {
		t.Fatalf("CommitPinned pins = %v", p)
	}
	if _, err := os.Stat(filepath.Join(dir, "pins", "unacked", h)); err != nil {
		t.Fatalf("pin file: %v", err)
	}
}

func TestConcurrentPutsOfTheSameObject(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, h := content("same", 1<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 16; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			n, err := s.Put(h, bytes.NewReader(data))
			if err == nil && n != int64(len(data)) {
				err = fmt.Errorf("size %d", n)
			}
			if err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			o, err := s.Open(h)
			if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
				return // not there yet
			}
			if err != nil {
				errs <- err
				return
			}
			defer o.Close()
			b, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
			if err != nil || !bytes.Equal(b, data) {
				errs <- fmt.Errorf("read during concurrent puts: %v, equal=%v", err, bytes.Equal(b, data))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if f := objectFiles(t, dir); len(f) != 1 || f[0] != h {
		t.Fatalf("objects = %v", f)
	}
	if st := s.Stats(); st.Objects != 1 || st.Used != int64(len(data)) {
		t.Fatalf("Stats = %+v", st)
	}
	if len(tmpFiles(t, dir)) != 0 {
		t.Fatal("temp files left")
	}
	if !bytes.Equal(readAll(t, s, h), data) {
		t.Fatal("bytes differ")
	}
}

// damage modifies the object file of h in place with f, then restores its mtime if keepMtime
// (so only a new process can notice).
func damage(t *testing.T, dir, h string, keepMtime bool, f func(*os.File)) {
	t.Helper()
	p := filepath.Join(dir, "objects", h[:2], h)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f(file)
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	if keepMtime {
		if err := os.Chtimes(p, time.Time{}, fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

func flipByte(off int64) func(*os.File) {
	return func(f *os.File) {
		b := make([]byte, 1)
		f.ReadAt(b, off)
		b[0] ^= 0x40
		f.WriteAt(b, off)
	}
}

func truncateTo(n int64) func(*os.File) {
	return func(f *os.File) { f.Truncate(n) }
}

func TestCorruptObjectDetected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(*os.File)
	}{
		{"flip", flipByte(123_456)},
		{"truncate", truncateTo(200_000)},
		{"truncate to zero", truncateTo(0)},
		{"append", func(f *os.File) { f.WriteAt([]byte("x"), 300_000) }},
	} {
		t.Run(tc.name+"/new process", func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			data, h := content("corrupt", 300_000)
			other, oh := content("healthy", 1000)
			put(t, s, data)
			put(t, s, other)
			s.Close()
			damage(t, dir, h, true, tc.damage)

			logs := &logBuf{t: t}
			s = openStore(t, dir, Options{Logf: logs.logf})
			o, err := s.Open(h)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open of a damaged object: %v, %v", o, err)
			}
			if s.Has(h) {
				t.Fatal("damaged object still Has")
			}
			if _, err := os.Stat(filepath.Join(dir, "objects", h[:2], h)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("damaged object file not removed: %v", err)
			}
			if !logs.has("corrupt") {
				t.Fatal("corruption not logged")
			}
			if st := s.Stats(); st.Objects != 1 || st.Used != int64(len(other)) || st.Open != 0 {
				t.Fatalf("Stats = %+v", st)
			}
			if _, err := s.Open(h); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("second Open: %v", err)
			}
			if !bytes.Equal(readAll(t, s, oh), other) {
				t.Fatal("healthy object harmed")
			}
			// Fetch again: a Put heals it.
			put(t, s, data)
			if !bytes.Equal(readAll(t, s, h), data) {
				t.Fatal("healed object differs")
			}
		})
		t.Run(tc.name+"/same process", func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			data, h := content("corrupt2", 300_000)
			put(t, s, data)
			readAll(t, s, h) // verified now
			damage(t, dir, h, false, tc.damage)
			if _, err := s.Open(h); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open after an in-place change: %v", err)
			}
			if s.Has(h) {
				t.Fatal("still Has")
			}
			// A Put over a damaged (not yet re-verified) copy must rewrite it.
			put(t, s, data)
			s.Close()
			s = openStore(t, dir, Options{})
			if !bytes.Equal(readAll(t, s, h), data) {
				t.Fatal("rewritten object differs")
			}
		})
	}
}

func TestPutReplacesDamagedUnverifiedCopy(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, h := content("replace", 100_000)
	put(t, s, data)
	s.Close()
	damage(t, dir, h, true, truncateTo(10))
	s = openStore(t, dir, Options{})
	if st := s.Stats(); st.Used != 10 {
		t.Fatalf("Used = %d, want the damaged size 10", st.Used)
	}
	put(t, s, data) // not verified in this process: rewritten, not trusted
	if st := s.Stats(); st.Used != int64(len(data)) {
		t.Fatalf("Used = %d after the rewrite", st.Used)
	}
	if !bytes.Equal(readAll(t, s, h), data) {
		t.Fatal("bytes differ")
	}
}

// threeObjects returns objects of the same size and a quota that holds exactly three.
func lruSetup(names ...string) (map[string][]byte, map[string]string, int64) {
	const size = 10_000
	data := map[string][]byte{}
	hash := map[string]string{}
	for _, n := range names {
		data[n], hash[n] = content("lru "+n, size)
	}
	return data, hash, 3 * size
}

func present(s *Store, hash map[string]string, names string) string {
	var out []string
	for _, n := range strings.Split(names, "") {
		if s.Has(hash[n]) {
			out = append(out, n)
		}
	}
	return strings.Join(out, "")
}

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	data, hash, quota := lruSetup("A", "B", "C", "D", "E")
	s := openStore(t, t.TempDir(), Options{Quota: quota})
	for _, n := range []string{"A", "B", "C"} {
		put(t, s, data[n])
	}
	readAll(t, s, hash["A"]) // a read counts as use
	put(t, s, data["D"])
	if got := present(s, hash, "ABCDE"); got != "ACD" {
		t.Fatalf("present after put D = %s, want ACD (B least recently used)", got)
	}
	// A Put of a present object counts as use too.
	put(t, s, data["C"])
	put(t, s, data["E"])
	if got := present(s, hash, "ABCDE"); got != "CDE" {
		t.Fatalf("present after re-put C, put E = %s, want CDE", got)
	}
	if st := s.Stats(); st.Evictions != 2 || st.Used != quota || st.OverQuota {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestLRUOrderSurvivesReopen(t *testing.T) {
	data, hash, quota := lruSetup("A", "B", "C", "D", "E", "F")
	dir := t.TempDir()
	s := openStore(t, dir, Options{Quota: quota})
	put(t, s, data["A"])
	put(t, s, data["B"])
	put(t, s, data["C"])
	s.Close()

	s = openStore(t, dir, Options{Quota: quota})
	readAll(t, s, hash["A"]) // order now B C A
	s.Close()

	s = openStore(t, dir, Options{Quota: quota})
	readAll(t, s, hash["B"]) // order now C A B
	s.Close()

	s = openStore(t, dir, Options{Quota: quota})
	put(t, s, data["D"]) // evicts C
	if got := present(s, hash, "ABCDEF"); got != "ABD" {
		t.Fatalf("present = %s, want ABD", got)
	}
	s.Close()

	s = openStore(t, dir, Options{Quota: quota})
	put(t, s, data["E"]) // evicts A
	if got := present(s, hash, "ABCDEF"); got != "BDE" {
		t.Fatalf("present = %s, want BDE", got)
	}
	s.Close()

	// Lowering the quota at Open evicts in LRU order too.
	s = openStore(t, dir, Options{Quota: quota / 3})
	if got := present(s, hash, "ABCDEF"); got != "E" {
		t.Fatalf("present after reopening with a quota of one = %s, want E", got)
	}
}

func TestLRUSurvivesWallClockStepBack(t *testing.T) {
	// Objects whose atimes lie in the future (a clock that stepped back since): new uses must
	// still rank above them.
	data, hash, quota := lruSetup("A", "B", "C", "D")
	dir := t.TempDir()
	s := openStore(t, dir, Options{Quota: quota})
	put(t, s, data["A"])
	put(t, s, data["B"])
	s.Close()
	future := time.Now().Add(24 * time.Hour)
	os.Chtimes(filepath.Join(dir, "objects", hash["A"][:2], hash["A"]), future, time.Time{})
	os.Chtimes(filepath.Join(dir, "objects", hash["B"][:2], hash["B"]), future.Add(time.Second), time.Time{})
	s = openStore(t, dir, Options{Quota: quota})
	readAll(t, s, hash["A"]) // order B A
	put(t, s, data["C"])     // B A C
	put(t, s, data["D"])     // evicts B
	if got := present(s, hash, "ABCD"); got != "ACD" {
		t.Fatalf("present = %s, want ACD", got)
	}
}

func TestNeverEvictsOpenObject(t *testing.T) {
	data, hash, quota := lruSetup("A", "B", "C", "D", "E")
	s := openStore(t, t.TempDir(), Options{Quota: quota})
	put(t, s, data["A"])
	o, err := s.Open(hash["A"])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"B", "C", "D", "E"} {
		put(t, s, data[n])
	}
	if got := present(s, hash, "ABCDE"); got != "ADE" {
		t.Fatalf("present = %s, want ADE (A open)", got)
	}
	if n, _ := s.Evict(); n != 0 {
		t.Fatalf("Evict removed %d", n)
	}
	b := make([]byte, len(data["A"]))
	if _, err := o.ReadAt(b, 0); err != nil || !bytes.Equal(b, data["A"]) {
		t.Fatal("open object unreadable")
	}
	if st := s.Stats(); st.Open != 1 {
		t.Fatalf("Stats.Open = %d", st.Open)
	}
	o.Close()
	put(t, s, data["B"]) // A is now the least recently used and evictable
	if got := present(s, hash, "ABCDE"); got != "BDE" {
		t.Fatalf("present = %s, want BDE", got)
	}
}

func TestNeverEvictsPinned(t *testing.T) {
	data, hash, quota := lruSetup("A", "B", "C", "D", "E", "F", "G")
	dir := t.TempDir()
	s := openStore(t, dir, Options{Quota: quota})
	// Pinning before the Put is allowed and closes the window between write and pin.
	if err := s.Pin(hash["A"], "dirty"); err != nil {
		t.Fatal(err)
	}
	put(t, s, data["A"])
	put(t, s, data["B"])
	for i := 0; i < 2; i++ {
		if err := s.Pin(hash["B"], "unacked"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"C", "D", "E"} {
		put(t, s, data[n])
	}
	if got := present(s, hash, "ABCDEFG"); got != "ABE" {
		t.Fatalf("present = %s, want ABE (A, B pinned)", got)
	}
	if err := s.Unpin(hash["B"], "unacked"); err != nil { // one reference left
		t.Fatal(err)
	}
	if err := s.Unpin(hash["A"], "unacked"); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("Unpin of a reason never pinned: %v", err)
	}
	if err := s.Remove(hash["A"]); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove of a pinned object: %v", err)
	}
	s.Close()

	// Pins survive a restart, counts included.
	s = openStore(t, dir, Options{Quota: quota})
	if p := s.Pins(hash["B"]); p["unacked"] != 1 || len(p) != 1 {
		t.Fatalf("pins of B after reopen = %v", p)
	}
	if got := s.ListPins("dirty"); len(got) != 1 || got[0] != hash["A"] {
		t.Fatalf("ListPins(dirty) = %v", got)
	}
	put(t, s, data["F"])
	put(t, s, data["G"])
	if got := present(s, hash, "ABCDEFG"); got != "ABG" {
		t.Fatalf("present after reopen = %s, want ABG", got)
	}

	// Everything pinned: Put still succeeds, over quota is reported.
	for _, n := range []string{"C", "D", "E", "F", "G"} {
		if err := s.Pin(hash[n], "dirty"); err != nil {
			t.Fatal(err)
		}
		put(t, s, data[n])
	}
	st := s.Stats()
	if !st.OverQuota || st.Used != 7*int64(len(data["A"])) || st.Objects != 7 || st.Pinned != 7 || st.Quota != quota {
		t.Fatalf("Stats with everything pinned = %+v", st)
	}
	// Unpin, then Evict brings it under quota, least recently used first.
	for _, n := range []string{"C", "D", "E", "F", "G"} {
		if err := s.Unpin(hash[n], "dirty"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Evict(); err != nil || n != 4 {
		t.Fatalf("Evict = %d, %v; want 4 (C D E F)", n, err)
	}
	st = s.Stats()
	if st.OverQuota || st.Used != quota {
		t.Fatalf("Stats after Evict = %+v", st)
	}
	if got := present(s, hash, "ABCDEFG"); got != "ABG" {
		t.Fatalf("present after Evict = %s, want ABG", got)
	}
	// Unpinning the last reference removes the pin file.
	if err := s.Unpin(hash["B"], "unacked"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pins", "unacked", hash["B"])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin file after the last Unpin: %v", err)
	}
}

func TestPinFileForms(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	s.Close()
	_, h1 := content("p1", 10)
	_, h2 := content("p2", 10)
	os.MkdirAll(filepath.Join(dir, "pins", "dirty"), 0o700)
	os.WriteFile(filepath.Join(dir, "pins", "dirty", h1), nil, 0o600)             // empty: 1
	os.WriteFile(filepath.Join(dir, "pins", "dirty", h2), []byte("3\n"), 0o600)   // 3
	os.WriteFile(filepath.Join(dir, "pins", "dirty", "junk"), []byte("1"), 0o600) // ignored
	s = openStore(t, dir, Options{})
	if a, b := s.Pins(h1)["dirty"], s.Pins(h2)["dirty"]; a != 1 || b != 3 {
		t.Fatalf("pin counts %d %d, want 1 3", a, b)
	}
}

func TestLeftoverTempRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, h := content("kept", 5000)
	put(t, s, data)
	s.Close()
	// What a crash in the middle of a Put, a Commit or a Pin leaves.
	partial, ph := content("partial", 1<<20)
	for name, b := range map[string][]byte{"obj-123456": partial[:4096], "pin-99": []byte("2"), "obj-empty": nil} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logBuf{t: t}
	s = openStore(t, dir, Options{Logf: logs.logf})
	if f := tmpFiles(t, dir); len(f) != 0 {
		t.Fatalf("leftover temp files not removed: %v", f)
	}
	if !logs.has("removed 3 leftover temp file") {
		t.Fatal("cleanup not logged")
	}
	if s.Has(ph) || !s.Has(h) {
		t.Fatal("objects wrong after cleanup")
	}
}

func TestModes(t *testing.T) {
	parent := t.TempDir()
	fresh := filepath.Join(parent, "fresh", "uid")
	s := openStore(t, fresh, Options{})
	data, h := content("modes", 100)
	put(t, s, data)
	if err := s.Pin(h, "dirty"); err != nil {
		t.Fatal(err)
	}
	checkMode := func(p string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %#o, want %#o", p, fi.Mode().Perm(), want)
		}
	}
	for _, d := range []string{"", "objects", "objects/" + h[:2], "tmp", "pins", "pins/dirty"} {
		checkMode(filepath.Join(fresh, d), 0o700)
	}
	checkMode(filepath.Join(fresh, "objects", h[:2], h), 0o600)
	checkMode(filepath.Join(fresh, "pins", "dirty", h), 0o600)
	s.Close()

	// A looser existing directory (and object) is tightened, and the store says so.
	for _, p := range []string{fresh, filepath.Join(fresh, "objects"), filepath.Join(fresh, "objects", h[:2])} {
		os.Chmod(p, 0o755)
	}
	os.Chmod(filepath.Join(fresh, "objects", h[:2], h), 0o644)
	logs := &logBuf{t: t}
	s = openStore(t, fresh, Options{Logf: logs.logf})
	checkMode(fresh, 0o700)
	checkMode(filepath.Join(fresh, "objects"), 0o700)
	checkMode(filepath.Join(fresh, "objects", h[:2]), 0o700)
	checkMode(filepath.Join(fresh, "objects", h[:2], h), 0o600)
	if !logs.has(fresh+" had mode 0755, tightened to 0700") || !logs.has("had mode 0644, tightened to 0600") {
		t.Fatalf("tightening not logged: %q", logs.lines)
	}

	// A store directory that is a file is refused.
	f := filepath.Join(parent, "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Open(f, Options{}); err == nil {
		t.Fatal("Open of a file succeeded")
	}
}

func TestSecondOpenOfTheSameDirRefused(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of a store in use succeeded")
	}
	s.Close()
	s2 := openStore(t, dir, Options{})
	s2.Close()
	if _, err := s.Open(strings.Repeat("0", 64)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := s.Put(sum(nil), bytes.NewReader(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
}

func TestOpenObjectSurvivesRemoval(t *testing.T) {
	// An object opened before its file is removed stays readable through its descriptor.
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data, h := content("fd", 200_000)
	put(t, s, data)
	o, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := s.Remove(h); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove of an open object: %v", err)
	}
	os.Remove(filepath.Join(dir, "objects", h[:2], h)) // behind the store's back
	b := make([]byte, len(data))
	if _, err := o.ReadAt(b, 0); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("read after unlink: %v", err)
	}
	if _, err := s.Open(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a vanished object: %v", err)
	}
	if s.Has(h) || s.Stats().Used != 0 {
		t.Fatal("vanished object still counted")
	}
}

// TestConcurrentStress runs Puts, Opens, Pins and Evicts from many goroutines under a small
// quota (run with -race): no Open may see wrong bytes or a corrupt object, and the accounting
// must match the files at the end.
func TestConcurrentStress(t *testing.T) {
	dir := t.TempDir()
	const n = 40
	var data [n][]byte
	var hash [n]string
	for i := range data {
		data[i], hash[i] = content(fmt.Sprint("stress ", i), 20_000+i*1000)
	}
	s := openStore(t, dir, Options{Quota: 200_000})
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	report := func(err error) {
		select {
		case errc <- err:
		default: // enough errors already
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for time.Now().Before(deadline) {
				i := rng.IntN(n)
				switch rng.IntN(6) {
				case 0, 1:
					if _, err := s.Put(hash[i], bytes.NewReader(data[i])); err != nil {
						report(err)
						return
					}
				case 2, 3:
					o, err := s.Open(hash[i])
					if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
						continue
					}
					if err != nil {
						report(err)
						return
					}
					s.Evict() // must not remove it while open
					b := make([]byte, o.Size())
					_, err = o.ReadAt(b, 0)
					if _, serr := os.Stat(filepath.Join(dir, "objects", hash[i][:2], hash[i])); serr != nil {
						report(fmt.Errorf("open object's file gone: %v", serr))
					}
					o.Close()
					if err != nil || !bytes.Equal(b, data[i]) {
						report(fmt.Errorf("object %d read wrong: %v", i, err))
						return
					}
				case 4:
					if err := s.Pin(hash[i], "dirty"); err != nil {
						report(err)
						return
					}
					if _, err := s.Put(hash[i], bytes.NewReader(data[i])); err != nil {
						report(err)
						return
					}
					s.Evict()
					if !s.Has(hash[i]) {
						report(fmt.Errorf("pinned object %d evicted", i))
					}
					if err := s.Unpin(hash[i], "dirty"); err != nil {
						report(err)
						return
					}
				case 5:
					w := s.NewWriter()
					w.Write(data[i])
					if h, _, err := w.Commit(); err != nil || h != hash[i] {
						report(fmt.Errorf("commit: %s %v", h, err))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	st := s.Stats()
	var onDisk int64
	files := objectFiles(t, dir)
	for _, f := range files {
		fi, _ := os.Stat(filepath.Join(dir, "objects", f[:2], f))
		onDisk += fi.Size()
	}
	if st.Used != onDisk || st.Objects != len(files) || st.Open != 0 || st.Pinned != 0 {
		t.Fatalf("Stats %+v, on disk %d bytes in %d files", st, onDisk, len(files))
	}
	if st.Used > 200_000 {
		t.Fatalf("over quota with nothing pinned: %+v", st)
	}
	if st.Evictions == 0 {
		t.Fatal("stress never evicted: the test proved little")
	}
	if len(tmpFiles(t, dir)) != 0 {
		t.Fatal("temp files left")
	}
	t.Logf("stats: %+v", st)
}
