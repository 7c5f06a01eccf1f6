package benchreport

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The workloads on a plain temp directory: they do what they say and count right.
func TestWorkloads(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	if _, err := makeTree(ctx, filepath.Join(dir, "missing"), 10, 4, 100); err == nil {
		t.Error("makeTree into a missing directory succeeded")
	}
	tr := filepath.Join(dir, "tree")
	must(t, os.Mkdir(tr, 0o755))
	if _, err := makeTree(ctx, tr, 10, 4, 100); err != nil {
		t.Fatal(err)
	}
	c, err := countTree(tr)
	must(t, err)
	if want := (treeCount{Files: 10, Dirs: 3, Bytes: 1000}); c != want {
		t.Errorf("countTree: %+v, want %+v", c, want)
	}
	must(t, os.Symlink("d0000/f00000", filepath.Join(tr, "link")))
	if c, _ = countTree(tr); c.Links != 1 || c.entries() != 14 {
		t.Errorf("countTree with a symlink: %+v", c)
	}
	a, _ := os.ReadFile(filepath.Join(tr, "d0000", "f00000"))
	b, _ := os.ReadFile(filepath.Join(tr, "d0000", "f00001"))
	if len(a) != 100 || string(a) == string(b) {
		t.Errorf("makeTree's files: %d bytes, distinct %v", len(a), string(a) != string(b))
	}
	files, bytes, _, err := readAll(tr)
	if err != nil || files != 10 || bytes != 1000 {
		t.Errorf("readAll: %d files %d bytes, %v", files, bytes, err)
	}
	if n, err := walkStat(tr); err != nil || n != 15 { // with tr itself
		t.Errorf("walkStat: %d, %v", n, err)
	}

	cf := filepath.Join(dir, "cf")
	must(t, os.Mkdir(cf, 0o755))
	if _, err := createFsync(cf, 5, 4096); err != nil {
		t.Fatal(err)
	}
	if c, _ := countTree(cf); c.Files != 5 || c.Bytes != 5*4096 {
		t.Errorf("createFsync: %+v", c)
	}
	if _, err := createFsync(cf, 1, 10); err == nil {
		t.Error("createFsync over an existing file succeeded (O_EXCL)")
	}

	big := filepath.Join(dir, "big")
	const size = 3<<20 + 5000
	if _, err := writeFile(big, size, 1); err != nil {
		t.Fatal(err)
	}
	if n, _, err := seqRead(big); err != nil || n != size {
		t.Errorf("seqRead: %d, %v", n, err)
	}
	n, d, err := randRead(big, size, 10*time.Millisecond, 1)
	if err != nil || n < 256 || d < 10*time.Millisecond {
		t.Errorf("randRead: %d reads in %v, %v", n, d, err)
	}
	blk := make([]byte, 1<<20)
	f, _ := os.Open(big)
	defer f.Close()
	f.ReadAt(blk, 1<<20)
	zero := true
	for _, x := range blk {
		if x != 0 {
			zero = false
			break
		}
	}
	if zero {
		t.Error("writeFile wrote a zero MiB (a file system could store it as a hole)")
	}
}

func TestEnvInt(t *testing.T) {
	t.Setenv("BENCH_TEST_N", "")
	if n, err := envInt("BENCH_TEST_N", 7); n != 7 || err != nil {
		t.Errorf("unset: %d, %v", n, err)
	}
	t.Setenv("BENCH_TEST_N", "42")
	if n, err := envInt("BENCH_TEST_N", 7); n != 42 || err != nil {
		t.Errorf("42: %d, %v", n, err)
	}
	for _, bad := range []string{"0", "-1", "x", "1.5"} {
		t.Setenv("BENCH_TEST_N", bad)
		if _, err := envInt("BENCH_TEST_N", 7); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
