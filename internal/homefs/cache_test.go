package homefs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

// TestCorruptCacheObject: a cached blob whose bytes were damaged on disk is detected when
// read, and fetched again; the file reads right.
func TestCorruptCacheObject(t *testing.T) {
	e := setup(t)
	fsys := e.newFS(t, &logSink{})
	mnt := mount(t, fsys)
	if b, err := os.ReadFile(mnt + "/big.bin"); err != nil || !bytes.Equal(b, e.big) {
		t.Fatalf("first read: %v", err)
	}
	unmount(t, fsys, mnt) // so the kernel's page cache of the mount is gone with it
	// Damage every cached object (flip one byte in the middle of each).
	n := 0
	filepath.Walk(e.cache.Dir(), func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || len(fi.Name()) != 64 || fi.Size() < 100 {
			return nil
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		b := []byte{0}
		f.ReadAt(b, fi.Size()/2)
		b[0] ^= 0xff
		f.WriteAt(b, fi.Size()/2)
		n++
		return nil
	})
	if n == 0 {
		t.Fatal("no cached object found to damage")
	}
	before := e.fetcher.n.Load()
	fsys2 := e.newFS(t, &logSink{})
	mnt2 := mount(t, fsys2)
	if b, err := os.ReadFile(mnt2 + "/big.bin"); err != nil || !bytes.Equal(b, e.big) {
		t.Fatalf("read after damaging %d cached objects: %v (equal %v)", n, err, bytes.Equal(b, e.big))
	}
	if e.fetcher.n.Load() == before {
		t.Errorf("the damaged objects were not fetched again")
	}
}

// TestQuotaKeepsUnacknowledged: with a cache quota far smaller than what is written while
// the servers are down, nothing unacknowledged is evicted: everything reaches the server when
// it returns. And reading a file larger than the quota works (clean blobs are evicted while
// it is open).
func TestQuotaKeepsUnacknowledged(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	st := devstacktest.StartDir(t, dir)
	addr := st.Addr()
	e := emptyEnv(t, st, nil, nil)
	// A small cache for this FS: 2 MiB.
	cdir := t.TempDir()
	small, err := cas.Open(filepath.Join(cdir, "cas"), cas.Options{Quota: 2 << 20})
	must(t, err)
	q, err := uploadq.Open(filepath.Join(cdir, "queue"), small, e.bc, uploadq.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	t.Cleanup(func() { cancel(); q.Close(); small.Close() })
	e.cache, e.queue = small, q
	fsys := e.newFS(t, &logSink{})
	mnt := mount(t, fsys)

	must(t, st.Close())
	data := randBytes(9 << 20)
	must(t, os.WriteFile(filepath.Join(mnt, "big-offline.bin"), data, 0o600))
	// The last close seals the file; FUSE sends that release after close(2) returns.
	deadline := time.Now().Add(10 * time.Second)
	for small.Stats().PinnedBytes < 9<<20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := small.Stats(); s.Used <= 2<<20 || s.PinnedBytes < 9<<20 {
		t.Errorf("cache while offline: %+v (want everything pinned, over the quota)", s)
	}
	st2, err := devstack.Start(context.Background(), devstack.Options{Listen: addr, DataDir: dir})
	must(t, err)
	t.Cleanup(func() { st2.Close() })
	e.stack = st2
	drain(t, fsys)
	if s := small.Stats(); s.PinnedBytes != 0 {
		t.Errorf("still pinned after the drain: %+v", s)
	}

	// Another machine with the same small quota reads the 9 MiB file through an open handle.
	e2 := emptyEnv(t, st2, e.signer, e.keys)
	e2.base = newestManifest(t, e)
	c2dir := t.TempDir()
	small2, err := cas.Open(filepath.Join(c2dir, "cas"), cas.Options{Quota: 2 << 20})
	must(t, err)
	t.Cleanup(func() { small2.Close() })
	e2.cache = small2
	fsys2 := e2.newFS(t, &logSink{})
	m2 := mount(t, fsys2)
	f, err := os.Open(filepath.Join(m2, "big-offline.bin"))
	must(t, err)
	defer f.Close()
	got := make([]byte, len(data))
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := f.ReadAt(got[off:off+1<<20], int64(off)); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Error("the file read under a small quota differs")
	}
	if s := small2.Stats(); s.Evictions == 0 || s.Used > 3<<20 {
		t.Errorf("the reader's cache: %+v (want evictions, within about the quota)", s)
	}
}

// TestDiskFull: with the cache and working copies on a full disk, a write fails with ENOSPC
// and what was written before stays, is published, and reads back elsewhere.
func TestDiskFull(t *testing.T) {
	requireFUSE(t)
	st := devstacktest.Start(t)
	e := emptyEnv(t, st, nil, nil)
	tdir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", tdir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", tdir).Run() })
	c, err := cas.Open(filepath.Join(tdir, "cas"), cas.Options{})
	must(t, err)
	q, err := uploadq.Open(filepath.Join(tdir, "queue"), c, e.bc, uploadq.Options{MinBackoff: 50 * time.Millisecond})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	t.Cleanup(func() { cancel(); q.Close(); c.Close() })
	e.cache, e.queue = c, q
	o := e.fsOpts(t, &logSink{})
	o.StateDir = filepath.Join(tdir, "state")
	fsys := newFSWith(t, o)
	mnt := mount(t, fsys)

	must(t, os.WriteFile(filepath.Join(mnt, "kept.txt"), []byte("written before the disk filled"), 0o644))
	err = os.WriteFile(filepath.Join(mnt, "huge.bin"), randBytes(8<<20), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 8 MiB into a 6 MiB cache: %v, want ENOSPC", err)
	}
	must(t, os.Remove(filepath.Join(mnt, "huge.bin")))
	drain(t, fsys)
	_, fsys2 := e.roam(t)
	m2 := mount(t, fsys2)
	if b, err := os.ReadFile(filepath.Join(m2, "kept.txt")); err != nil || string(b) != "written before the disk filled" {
		t.Errorf("kept.txt elsewhere: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(m2, "huge.bin")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("huge.bin elsewhere: %v", err)
	}
}
