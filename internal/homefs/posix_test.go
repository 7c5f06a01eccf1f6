package homefs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homefs"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// setupEmpty is a home with no manifest yet, on a fresh stack.
func setupEmpty(t *testing.T) *env {
	requireFUSE(t)
	st := devstacktest.Start(t)
	return emptyEnv(t, st, nil, nil)
}

// emptyEnv makes an env on st for the identity and home key given (new ones if nil).
func emptyEnv(t *testing.T, st *devstack.Stack, signer nostr.Keyer, keys *tree.Keys) *env {
	t.Helper()
	if signer == nil {
		var err error
		if signer, err = keyer.NewPlainKeySigner(nostr.GeneratePrivateKey()); err != nil {
			t.Fatal(err)
		}
	}
	if keys == nil {
		var err error
		if keys, err = tree.DeriveKeys(randBytes(tree.HomeKeySize)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(keys.Wipe)
	}
	bc, err := blossom.New(signer, []blossom.Server{{URL: st.BlossomURL()}},
		blossom.WithRetries(1, 0), blossom.WithIdleTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cache, queue := newCache(t, bc)
	pk, _ := signer.GetPublicKey(context.Background())
	return &env{stack: st, keys: keys, cache: cache, queue: queue, bc: bc, signer: signer, pk: pk,
		model: map[string]node{}, fetcher: &countingFetcher{inner: tree.StoreFetcher{Store: bc}}}
}

// roam is another machine of the same user: a fresh cache and state, knowing only what the
// relay says now.
func (e *env) roam(t *testing.T) (*env, *homefs.FS) {
	t.Helper()
	e2 := emptyEnv(t, e.stack, e.signer, e.keys)
	e2.base = newestManifest(t, e)
	return e2, e2.newFS(t, &logSink{})
}

func newestManifest(t *testing.T, e *env) *nostr.Event {
	t.Helper()
	res, err := relayio.FetchNewest(context.Background(), []string{e.stack.RelayURL()},
		events.Expect{Kind: events.KindManifest, Author: e.pk, D: events.DTag("personal")}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return res.Selection.Newest
}

func drain(t *testing.T, fsys *homefs.FS) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fsys.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

func mustErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot describes every path under dir: type, mode, size, contents, target, xattrs.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, dir)
		desc := fmt.Sprintf("%v", fi.Mode())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			tg, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + tg
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d %x mtime %d", len(b), sha256.Sum256(b), fi.ModTime().UnixNano())
		}
		if rel != "" {
			buf := make([]byte, 4096)
			if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
				names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
				sort.Strings(names)
				for _, nm := range names {
					v := make([]byte, 4096)
					m, _ := unix.Lgetxattr(p, nm, v)
					desc += fmt.Sprintf(" %s=%q", nm, v[:max(m, 0)])
				}
			}
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

func compareSnapshots(t *testing.T, a, b map[string]string) {
	t.Helper()
	for p, d := range a {
		if b[p] != d {
			t.Errorf("%s: %q on the first machine, %q on the second", p, d, b[p])
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			t.Errorf("%s: only on the second machine", p)
		}
	}
}

// TestPOSIX runs the operations a home needs on a real mount, then reads the result back on
// a second "machine" (fresh cache and state) from the relay and Blossom alone.
func TestPOSIX(t *testing.T) {
	e := setupEmpty(t)
	logs := &logSink{}
	fsys := e.newFS(t, logs)
	mnt := mount(t, fsys)
	p := func(name string) string { return filepath.Join(mnt, name) }

	t.Run("CreateReadWrite", func(t *testing.T) {
		must(t, os.WriteFile(p("hello.txt"), []byte("hello world\n"), 0o644))
		b, err := os.ReadFile(p("hello.txt"))
		if err != nil || string(b) != "hello world\n" {
			t.Fatalf("read back %q %v", b, err)
		}
		fi, err := os.Stat(p("hello.txt"))
		must(t, err)
		if fi.Size() != 12 || fi.Mode().Perm() != 0o644 || fi.Sys().(*syscall.Stat_t).Uid != testUID {
			t.Errorf("stat: %v %d uid %d", fi.Mode(), fi.Size(), fi.Sys().(*syscall.Stat_t).Uid)
		}
		f, err := os.OpenFile(p("hello.txt"), os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteAt([]byte("W"), 6)
		must(t, err)
		must(t, f.Close())
		if b, _ := os.ReadFile(p("hello.txt")); string(b) != "hello World\n" {
			t.Errorf("after overwrite: %q", b)
		}
		_, err = os.OpenFile(p("hello.txt"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		mustErrno(t, "O_EXCL on an existing file", err, syscall.EEXIST)
	})

	t.Run("Append", func(t *testing.T) {
		for _, s := range []string{"one\n", "two\n", "three\n"} {
			f, err := os.OpenFile(p("log.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			must(t, err)
			_, err = f.WriteString(s)
			must(t, err)
			must(t, f.Close())
		}
		if b, _ := os.ReadFile(p("log.txt")); string(b) != "one\ntwo\nthree\n" {
			t.Errorf("appended: %q", b)
		}
	})

	t.Run("Truncate", func(t *testing.T) {
		data := randBytes(3<<20 + 17)
		must(t, os.WriteFile(p("trunc.bin"), data, 0o644))
		must(t, os.Truncate(p("trunc.bin"), 1<<20+5))
		b, _ := os.ReadFile(p("trunc.bin"))
		if !bytes.Equal(b, data[:1<<20+5]) {
			t.Errorf("after truncate: %d bytes", len(b))
		}
		f, err := os.OpenFile(p("trunc.bin"), os.O_RDWR, 0)
		must(t, err)
		must(t, f.Truncate(2<<20)) // ftruncate, growing: zeros
		must(t, f.Close())
		b, _ = os.ReadFile(p("trunc.bin"))
		want := append(append([]byte{}, data[:1<<20+5]...), make([]byte, 2<<20-(1<<20+5))...)
		if !bytes.Equal(b, want) {
			t.Errorf("after ftruncate up: %d bytes", len(b))
		}
		f, err = os.OpenFile(p("trunc.bin"), os.O_WRONLY|os.O_TRUNC, 0)
		must(t, err)
		must(t, f.Close())
		if fi, _ := os.Stat(p("trunc.bin")); fi.Size() != 0 {
			t.Errorf("O_TRUNC left %d bytes", fi.Size())
		}
	})

	t.Run("Sparse", func(t *testing.T) {
		f, err := os.Create(p("sparse.bin"))
		must(t, err)
		_, err = f.WriteAt([]byte("end"), 5<<20)
		must(t, err)
		must(t, f.Close())
		fi, err := os.Stat(p("sparse.bin"))
		must(t, err)
		if fi.Size() != 5<<20+3 {
			t.Errorf("size %d", fi.Size())
		}
		if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks > 64 {
			t.Errorf("a 5 MiB hole takes %d blocks", blocks)
		}
		b, _ := os.ReadFile(p("sparse.bin"))
		if !bytes.Equal(b[:5<<20], make([]byte, 5<<20)) || string(b[5<<20:]) != "end" {
			t.Errorf("sparse contents wrong")
		}
	})

	t.Run("Directories", func(t *testing.T) {
		must(t, os.MkdirAll(p("a/b/c"), 0o755))
		must(t, os.WriteFile(p("a/b/c/deep.txt"), []byte("deep\n"), 0o600))
		mustErrno(t, "rmdir of a non-empty directory", unix.Rmdir(p("a/b")), syscall.ENOTEMPTY)
		mustErrno(t, "mkdir of an existing name", os.Mkdir(p("a"), 0o755), syscall.EEXIST)
		must(t, os.Mkdir(p("gone"), 0o755))
		must(t, unix.Rmdir(p("gone")))
		if _, err := os.Stat(p("gone")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("removed directory: %v", err)
		}
		mustErrno(t, "unlink of a directory", unix.Unlink(p("a")), syscall.EISDIR)
		mustErrno(t, "rmdir of a file", unix.Rmdir(p("hello.txt")), syscall.ENOTDIR)
		must(t, os.WriteFile(p("tmp.txt"), []byte("x"), 0o644))
		must(t, os.Remove(p("tmp.txt")))
		if _, err := os.Stat(p("tmp.txt")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("removed file: %v", err)
		}
	})

	t.Run("Rename", func(t *testing.T) {
		must(t, os.WriteFile(p("r1"), []byte("first"), 0o644))
		must(t, os.WriteFile(p("r2"), []byte("second"), 0o644))
		must(t, os.Rename(p("r1"), p("r2"))) // over an existing file
		if b, _ := os.ReadFile(p("r2")); string(b) != "first" {
			t.Errorf("rename over: %q", b)
		}
		if _, err := os.Stat(p("r1")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("old name after rename: %v", err)
		}
		must(t, os.MkdirAll(p("d1/sub"), 0o755))
		must(t, os.WriteFile(p("d1/sub/f"), []byte("in d1"), 0o644))
		must(t, os.Rename(p("d1"), p("a/d2"))) // a directory, with contents, into another
		if b, _ := os.ReadFile(p("a/d2/sub/f")); string(b) != "in d1" {
			t.Errorf("moved directory contents: %q", b)
		}
		must(t, os.WriteFile(p("n1"), []byte("n1"), 0o644))
		mustErrno(t, "RENAME_NOREPLACE", unix.Renameat2(unix.AT_FDCWD, p("n1"), unix.AT_FDCWD, p("r2"), unix.RENAME_NOREPLACE), syscall.EEXIST)
		must(t, unix.Renameat2(unix.AT_FDCWD, p("n1"), unix.AT_FDCWD, p("r2"), unix.RENAME_EXCHANGE))
		b1, _ := os.ReadFile(p("n1"))
		b2, _ := os.ReadFile(p("r2"))
		if string(b1) != "first" || string(b2) != "n1" {
			t.Errorf("RENAME_EXCHANGE: n1=%q r2=%q", b1, b2)
		}
		must(t, os.Mkdir(p("full"), 0o755))
		must(t, os.WriteFile(p("full/x"), nil, 0o644))
		must(t, os.Mkdir(p("empty"), 0o755))
		// unix.Rename, not os.Rename: Go's refuses any directory as the target itself.
		mustErrno(t, "rename over a non-empty directory", unix.Rename(p("empty"), p("full")), syscall.ENOTEMPTY)
		mustErrno(t, "rename a file over a directory", unix.Rename(p("n1"), p("full")), syscall.EISDIR)
		must(t, unix.Rename(p("full"), p("empty"))) // over an empty directory
		if _, err := os.Stat(p("empty/x")); err != nil {
			t.Errorf("directory renamed over an empty one: %v", err)
		}
	})

	t.Run("Symlink", func(t *testing.T) {
		must(t, os.Symlink("a/b/c/deep.txt", p("link")))
		if tg, err := os.Readlink(p("link")); err != nil || tg != "a/b/c/deep.txt" {
			t.Errorf("readlink %q %v", tg, err)
		}
		if b, _ := os.ReadFile(p("link")); string(b) != "deep\n" {
			t.Errorf("through the link: %q", b)
		}
		mustErrno(t, "hard link", os.Link(p("hello.txt"), p("hard")), syscall.EPERM)
	})

	t.Run("Attributes", func(t *testing.T) {
		must(t, os.Chmod(p("hello.txt"), 0o600))
		must(t, os.Chmod(p("a"), 0o711))
		if fi, _ := os.Stat(p("hello.txt")); fi.Mode().Perm() != 0o600 {
			t.Errorf("chmod: %v", fi.Mode())
		}
		must(t, os.Chown(p("hello.txt"), testUID, testGID))
		mustErrno(t, "chown to another user", os.Chown(p("hello.txt"), testUID+1, testGID), syscall.EPERM)
		when := time.Date(2024, 2, 29, 12, 0, 0, 123456789, time.UTC)
		must(t, os.Chtimes(p("hello.txt"), when, when))
		must(t, os.Chtimes(p("a/b"), when, when))
		for _, name := range []string{"hello.txt", "a/b"} {
			if fi, _ := os.Stat(p(name)); !fi.ModTime().Equal(when) {
				t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), when)
			}
		}
		var sfs unix.Statfs_t
		must(t, unix.Statfs(mnt, &sfs))
		if sfs.Namelen != 255 || sfs.Blocks == 0 || sfs.Bfree > sfs.Blocks {
			t.Errorf("statfs: %+v", sfs)
		}
	})

	t.Run("Names", func(t *testing.T) {
		mustErrno(t, "a 256-byte name", os.WriteFile(p(strings.Repeat("n", 256)), nil, 0o644), syscall.ENAMETOOLONG)
		must(t, os.WriteFile(p(strings.Repeat("n", 255)), nil, 0o644))
		mustErrno(t, "a name that is not UTF-8", os.WriteFile(p("bad\xff"), nil, 0o644), syscall.EILSEQ)
		must(t, os.WriteFile(p("ünïcødé ✓"), []byte("u"), 0o644))
	})

	t.Run("Xattr", func(t *testing.T) {
		must(t, unix.Setxattr(p("hello.txt"), "user.origin", []byte("https://example.org/\x00bin"), 0))
		must(t, unix.Setxattr(p("hello.txt"), "user.b", []byte("2"), 0))
		mustErrno(t, "XATTR_CREATE on an existing name", unix.Setxattr(p("hello.txt"), "user.b", []byte("3"), unix.XATTR_CREATE), syscall.EEXIST)
		mustErrno(t, "XATTR_REPLACE on a missing name", unix.Setxattr(p("hello.txt"), "user.c", []byte("3"), unix.XATTR_REPLACE), syscall.ENODATA)
		buf := make([]byte, 100)
		n, err := unix.Getxattr(p("hello.txt"), "user.origin", buf)
		if err != nil || string(buf[:n]) != "https://example.org/\x00bin" {
			t.Errorf("getxattr %q %v", buf[:n], err)
		}
		n, err = unix.Listxattr(p("hello.txt"), buf)
		if err != nil || string(buf[:n]) != "user.b\x00user.origin\x00" {
			t.Errorf("listxattr %q %v", buf[:n], err)
		}
		must(t, unix.Removexattr(p("hello.txt"), "user.b"))
		mustErrno(t, "removexattr of a missing name", unix.Removexattr(p("hello.txt"), "user.b"), syscall.ENODATA)
		mustErrno(t, "setxattr outside user.", unix.Setxattr(p("hello.txt"), "trusted.x", []byte("1"), 0), syscall.EOPNOTSUPP)
	})

	t.Run("FsyncAndLocks", func(t *testing.T) {
		f, err := os.Create(p("locked"))
		must(t, err)
		defer f.Close()
		_, err = f.WriteString("synced")
		must(t, err)
		must(t, f.Sync())
		g, err := os.Open(p("locked"))
		must(t, err)
		defer g.Close()
		must(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
		mustErrno(t, "a second flock", unix.Flock(int(g.Fd()), unix.LOCK_SH|unix.LOCK_NB), syscall.EWOULDBLOCK)
		must(t, unix.Flock(int(f.Fd()), unix.LOCK_UN))
		// fcntl locks conflict between processes: take one here, test from flock(1)'s
		// sibling, python's fcntl.lockf, in a child.
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		must(t, unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk))
		out, err := exec.Command("python3", "-c", `
import fcntl, sys
f = open(sys.argv[1], "r+")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("got it")
except OSError as e:
    print("refused", e.errno)
`, p("locked")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprint("refused ", int(syscall.EAGAIN))) {
			t.Errorf("fcntl lock from another process: %s %v", out, err)
		}
	})

	t.Run("Mmap", func(t *testing.T) {
		// In a child process: this process serves the mount, and a page fault of its own
		// on it could wait for a goroutine that the fault stops (go-fuse's deadlock list).
		must(t, os.WriteFile(p("mapped"), bytes.Repeat([]byte("."), 8192), 0o644))
		out, err := exec.Command("python3", "-c", `
import mmap, sys
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[4096:4101] = b"MMAP!"
    m.flush()
    m.close()
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    print(m[4090:4110].decode())
`, p("mapped")).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "......MMAP!........." {
			t.Errorf("mmap: %q %v", out, err)
		}
		b, _ := os.ReadFile(p("mapped"))
		if string(b[4096:4101]) != "MMAP!" {
			t.Errorf("after mmap writes: %q", b[4090:4110])
		}
	})

	t.Run("TenThousand", func(t *testing.T) {
		must(t, os.Mkdir(p("many"), 0o755))
		for i := range 10000 {
			must(t, os.WriteFile(p(fmt.Sprintf("many/f%05d", i)), []byte(fmt.Sprint(i)), 0o644))
		}
		des, err := os.ReadDir(p("many"))
		must(t, err)
		if len(des) != 10000 || des[0].Name() != "f00000" || des[9999].Name() != "f09999" {
			t.Errorf("readdir of 10,000: %d entries", len(des))
		}
	})

	if t.Failed() {
		return
	}
	before := snapshot(t, mnt)
	drain(t, fsys)
	if st := fsys.Status(); st.State != "clean" || st.Generation < 1 || st.Uploads != 0 {
		t.Errorf("status after drain: %+v", st)
	}
	ev := newestManifest(t, e)
	if ev == nil || ev.ID != fsys.Status().Manifest {
		t.Fatalf("the relay's newest manifest %v is not the published one %s", ev, fsys.Status().Manifest)
	}

	// Another machine, with nothing but the relay and Blossom.
	_, fsys2 := e.roam(t)
	mnt2 := mount(t, fsys2)
	compareSnapshots(t, before, snapshot(t, mnt2))

	// A change there reaches a third machine; and this one still sees its own view.
	must(t, os.WriteFile(filepath.Join(mnt2, "from-2.txt"), []byte("second machine"), 0o644))
	must(t, os.Remove(filepath.Join(mnt2, "hello.txt")))
	drain(t, fsys2)
	if st := fsys2.Status(); st.Generation <= fsys.Status().Generation {
		t.Errorf("second machine's status: %+v", st)
	}
	_, fsys3 := e.roam(t)
	mnt3 := mount(t, fsys3)
	if b, err := os.ReadFile(filepath.Join(mnt3, "from-2.txt")); err != nil || string(b) != "second machine" {
		t.Errorf("third machine reads %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt3, "hello.txt")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("a file removed on the second machine is still on the third: %v", err)
	}
}

// TestConflict: two machines on the same base; the second publishes first; the first
// must not overwrite it, keeps its changes, and says so.
func TestConflict(t *testing.T) {
	e := setupEmpty(t)
	fsA := e.newFS(t, &logSink{})
	mA := mount(t, fsA)
	must(t, os.WriteFile(filepath.Join(mA, "base.txt"), []byte("base"), 0o644))
	drain(t, fsA)

	_, fsB := e.roam(t)
	mB := mount(t, fsB)
	must(t, os.WriteFile(filepath.Join(mB, "b.txt"), []byte("from B"), 0o644))
	drain(t, fsB)
	bID := fsB.Status().Manifest

	must(t, os.WriteFile(filepath.Join(mA, "a.txt"), []byte("from A"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := fsA.Drain(ctx)
	if !errors.Is(err, homefs.ErrConflict) {
		t.Fatalf("publishing on top of another machine's manifest: %v, want ErrConflict", err)
	}
	if st := fsA.Status(); st.State != "conflict" || !strings.Contains(st.Message, bID) {
		t.Errorf("status: %+v", st)
	}
	if ev := newestManifest(t, e); ev.ID != bID {
		t.Errorf("the newest manifest is %s, want B's %s: A overwrote it", ev.ID, bID)
	}
	if b, err := os.ReadFile(filepath.Join(mA, "a.txt")); err != nil || string(b) != "from A" {
		t.Errorf("A's own change after the conflict: %q %v", b, err)
	}
}

// TestOfflineWrites: with relay and Blossom down, writes are kept and queued; when the
// network returns, they are uploaded and published.
func TestOfflineWrites(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	st := devstacktest.StartDir(t, dir)
	addr := st.Addr()
	e := emptyEnv(t, st, nil, nil)
	fsys := e.newFS(t, &logSink{})
	mnt := mount(t, fsys)
	must(t, os.WriteFile(filepath.Join(mnt, "online.txt"), []byte("1"), 0o644))
	drain(t, fsys)

	must(t, st.Close())
	data := randBytes(3 << 20)
	must(t, os.WriteFile(filepath.Join(mnt, "offline.bin"), data, 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := fsys.Drain(ctx)
	cancel()
	if err == nil {
		t.Fatal("Drain succeeded with the stack down")
	}
	if s := fsys.Status(); s.State != "offline" || s.Uploads == 0 {
		t.Errorf("status offline: %+v", s)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "offline.bin")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("reading the offline write: %v", err)
	}

	st2, err := devstack.Start(context.Background(), devstack.Options{Listen: addr, DataDir: dir})
	must(t, err)
	t.Cleanup(func() { st2.Close() })
	e.stack = st2
	drain(t, fsys)
	_, fsys2 := e.roam(t)
	mnt2 := mount(t, fsys2)
	if b, err := os.ReadFile(filepath.Join(mnt2, "offline.bin")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("the offline write on another machine: %v", err)
	}
}

// TestRoamingLarge: a 256 MiB file read at random offsets on another machine before it is
// fetched whole; only the chunks read are fetched.
func TestRoamingLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB round trip")
	}
	e := setupEmpty(t)
	fsys := e.newFS(t, &logSink{})
	mnt := mount(t, fsys)
	const size = 256 << 20
	r := mrand.New(mrand.NewPCG(7, 8))
	f, err := os.Create(filepath.Join(mnt, "big.bin"))
	must(t, err)
	buf := make([]byte, 1<<20)
	for off := 0; off < size; off += len(buf) {
		for i := 0; i < len(buf); i += 8 {
			v := r.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		_, err := f.Write(buf)
		must(t, err)
	}
	must(t, f.Close())
	drain(t, fsys)

	e2, fsys2 := e.roam(t)
	mnt2 := mount(t, fsys2)
	// Regenerate expected bytes for the chunks we read.
	want := func(off int64, n int) []byte {
		r := mrand.New(mrand.NewPCG(7, 8))
		// Skip to the chunk of off: each 8 bytes is one Uint64.
		start := off &^ 7
		for range start / 8 {
			r.Uint64()
		}
		b := make([]byte, 0, n+16)
		for int64(len(b)) < int64(n)+(off-start) {
			v := r.Uint64()
			for j := range 8 {
				b = append(b, byte(v>>(8*j)))
			}
		}
		return b[off-start : off-start+int64(n)]
	}
	g, err := os.Open(filepath.Join(mnt2, "big.bin"))
	must(t, err)
	defer g.Close()
	rr := mrand.New(mrand.NewPCG(1, 1))
	for range 20 {
		off := rr.Int64N(size - 4096)
		got := make([]byte, 4096)
		_, err := g.ReadAt(got, off)
		must(t, err)
		if !bytes.Equal(got, want(off, 4096)) {
			t.Fatalf("bytes at %d differ", off)
		}
	}
	if n := e2.fetcher.n.Load(); n > 60 {
		t.Errorf("20 random 4 KiB reads fetched %d blobs: not lazy", n)
	}
	t.Logf("20 random reads fetched %d blobs (of 256 chunks)", e2.fetcher.n.Load())
}

// TestAdoptNewerManifest: a mount with no changes of its own picks up another machine's
// newer manifest (Poll) and the kernel forgets what it cached: new names appear, removed
// ones go, and a rewritten file reads its new content.
func TestAdoptNewerManifest(t *testing.T) {
	e := setupEmpty(t)
	fsA := e.newFS(t, &logSink{})
	mA := mount(t, fsA)
	must(t, os.WriteFile(filepath.Join(mA, "shared.txt"), []byte("version 1"), 0o644))
	must(t, os.WriteFile(filepath.Join(mA, "old.txt"), []byte("old"), 0o644))
	drain(t, fsA)

	// B polls every 200 ms; it reads (and so caches) both files first.
	e2 := emptyEnv(t, e.stack, e.signer, e.keys)
	e2.base = newestManifest(t, e)
	o := e2.fsOpts(t, &logSink{})
	o.Poll = 200 * time.Millisecond
	fsB := newFSWith(t, o)
	mB := mount(t, fsB)
	for _, n := range []string{"shared.txt", "old.txt"} {
		if _, err := os.ReadFile(filepath.Join(mB, n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(mB, "new.txt")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("new.txt before: %v", err)
	}

	must(t, os.WriteFile(filepath.Join(mA, "shared.txt"), []byte("version 2, longer"), 0o644))
	must(t, os.WriteFile(filepath.Join(mA, "new.txt"), []byte("new"), 0o644))
	must(t, os.Remove(filepath.Join(mA, "old.txt")))
	drain(t, fsA)
	want := fsA.Status().Manifest

	deadline := time.Now().Add(15 * time.Second)
	for fsB.Status().Manifest != want {
		if time.Now().After(deadline) {
			t.Fatalf("B did not adopt %s: %+v", want, fsB.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(mB, "shared.txt")); err != nil || string(b) != "version 2, longer" {
		t.Errorf("shared.txt on B after adopting: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(mB, "new.txt")); err != nil || string(b) != "new" {
		t.Errorf("new.txt on B after adopting: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mB, "old.txt")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("old.txt on B after adopting: %v", err)
	}
}
