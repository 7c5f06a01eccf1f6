package cas

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and unmounts it at cleanup,
// even if the test fails. Register store cleanups after calling it (cleanups run last first).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs to fill it needs root; run the tests as root to check ENOSPC handling")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v (detaching)", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	s := openStore(t, dir, Options{})

	a, ha := content("full a", 1<<20)
	put(t, s, a)
	freeAfterA := freeBytes(t, dir)

	big, hbig := content("full big", 3<<20)
	_, err := s.Put(hbig, bytes.NewReader(big))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put of 3 MiB into a 2 MiB tmpfs: %v, want ENOSPC", err)
	}
	t.Logf("the error: %v", err)
	if s.Has(hbig) {
		t.Fatal("failed object present")
	}
	if f := tmpFiles(t, dir); len(f) != 0 {
		t.Fatalf("temp files after ENOSPC: %v", f)
	}
	if f := objectFiles(t, dir); len(f) != 1 || f[0] != ha {
		t.Fatalf("objects after ENOSPC: %v", f)
	}
	if got := freeBytes(t, dir); got != freeAfterA {
		t.Fatalf("free space %d after the failed Put, %d before: space leaked", got, freeAfterA)
	}

	// The same through a Writer.
	w := s.NewWriter()
	_, err = w.Write(big)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Writer.Write: %v", err)
	}
	if _, _, err := w.Commit(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Commit after ENOSPC: %v", err)
	}
	if f := tmpFiles(t, dir); len(f) != 0 {
		t.Fatalf("temp files after a failed Commit: %v", f)
	}

	// The store stays usable: a smaller Put fits.
	b, hb := content("full b", 512<<10)
	put(t, s, b)
	c, hc := content("full c", 1<<20)
	if _, err := s.Put(hc, bytes.NewReader(c)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put of 1 MiB with about 0.5 MiB free: %v, want ENOSPC", err)
	}
	// Free space, and it fits.
	if err := s.Remove(ha); err != nil {
		t.Fatal(err)
	}
	put(t, s, c)
	if err := s.Pin(hc, "dirty"); err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string][]byte{hb: b, hc: c} {
		if !bytes.Equal(readAll(t, s, h), want) {
			t.Fatalf("%s differs", h[:8])
		}
	}
	if f := tmpFiles(t, dir); len(f) != 0 {
		t.Fatalf("temp files: %v", f)
	}
	if st := s.Stats(); st.Used != int64(len(b)+len(c)) || st.Objects != 2 {
		t.Fatalf("Stats = %+v", st)
	}
}
