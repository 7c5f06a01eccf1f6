package homefs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homefs"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/tree"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

const (
	testUID = 4242
	testGID = 4343
)

// node is what the test expects at a path.
type node struct {
	typ    string
	mode   uint32
	data   []byte
	target string
	xattrs []tree.Xattr
}

// countingFetcher fetches from Blossom and counts the fetches.
type countingFetcher struct {
	inner tree.Fetcher
	n     atomic.Int64
}

func (c *countingFetcher) Fetch(ctx context.Context, ref tree.ChunkRef) ([]byte, error) {
	c.n.Add(1)
	return c.inner.Fetch(ctx, ref)
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: a real FUSE mount needs root (DirectMountStrict); euid is not 0")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("skipping: /dev/fuse is not available: %v", err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// builder writes a tree to Blossom and records what it holds.
type builder struct {
	t     *testing.T
	keys  *tree.Keys
	put   func([]byte, tree.ChunkRef) error
	model map[string]node
}

func (b *builder) content(data []byte) *tree.Content {
	c, err := b.keys.Split(bytes.NewReader(data), b.put)
	if err != nil {
		b.t.Fatal(err)
	}
	return &c
}

func (b *builder) file(dir, name string, mode uint32, data []byte, x ...tree.Xattr) tree.Entry {
	b.model[dir+"/"+name] = node{typ: tree.TypeFile, mode: mode, data: data, xattrs: x}
	return tree.Entry{Name: name, Type: tree.TypeFile, Mode: mode, Mtime: 1795328049123456789,
		Content: b.content(data), Xattrs: x}
}

func (b *builder) dir(dir, name string, mode uint32, entries ...tree.Entry) tree.Entry {
	if name != "" {
		b.model[dir+"/"+name] = node{typ: tree.TypeDir, mode: mode}
	}
	c, err := b.keys.WriteListing(tree.Listing{Entries: entries}, b.put)
	if err != nil {
		b.t.Fatal(err)
	}
	return tree.Entry{Name: name, Type: tree.TypeDir, Mode: mode, Mtime: 1795328049000000000, Content: &c}
}

func (b *builder) symlink(dir, name, target string) tree.Entry {
	b.model[dir+"/"+name] = node{typ: tree.TypeSymlink, mode: 0o777, target: target}
	return tree.Entry{Name: name, Type: tree.TypeSymlink, Mode: 0o777, Mtime: 1795328049000000000, Target: target}
}

type env struct {
	stack   *devstack.Stack
	keys    *tree.Keys
	root    tree.Content
	fetcher *countingFetcher
	cache   *cas.Store
	queue   *uploadq.Queue
	bc      *blossom.Client
	signer  nostr.Keyer
	pk      string
	base    *nostr.Event // the manifest of root, published in setup
	model   map[string]node
	big     []byte
}

func setup(t *testing.T) *env {
	requireFUSE(t)
	ctx := context.Background()
	st := devstacktest.Start(t)
	sk := nostr.GeneratePrivateKey()
	signer, err := keyer.NewPlainKeySigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := blossom.New(signer, []blossom.Server{{URL: st.BlossomURL()}},
		blossom.WithRetries(1, 0), blossom.WithIdleTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tree.DeriveKeys(randBytes(tree.HomeKeySize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Wipe)
	b := &builder{t: t, keys: keys, put: tree.StorePut(ctx, bc), model: map[string]node{}}

	// 3 MiB + a bit: chunk 0 data, chunk 1 a hole, chunks 2 and 3 data.
	big := append(randBytes(tree.ChunkSize), make([]byte, tree.ChunkSize)...)
	big = append(big, randBytes(tree.ChunkSize+12345)...)

	var many []tree.Entry
	for i := range 2000 {
		many = append(many, b.file("/many", fmt.Sprintf("f%04d", i), 0o644, []byte(fmt.Sprintf("file %d\n", i))))
	}
	deep := b.dir("/a/b", "c", 0o755, b.file("/a/b/c", "deep.txt", 0o640, []byte("deep down\n")))
	origin := tree.Xattr{Name: "user.origin", Value: []byte("https://example.org/\x00bin")}

	// /bad holds a file whose chunk was never uploaded and a directory whose listing is not one.
	missingData := randBytes(5000)
	missing, err := keys.Split(bytes.NewReader(missingData), nil) // computed, never stored
	if err != nil {
		t.Fatal(err)
	}
	junk, ref, err := keys.SealChunk([]byte("this is not a DEFLATE stream of a listing"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.put(junk, ref); err != nil {
		t.Fatal(err)
	}
	hostile := tree.Content{Size: ref.Size, Chunks: []tree.ChunkRef{ref}}
	bad := b.dir("", "bad", 0o755,
		tree.Entry{Name: "missing.bin", Type: tree.TypeFile, Mode: 0o644, Content: &missing},
		tree.Entry{Name: "hostile", Type: tree.TypeDir, Mode: 0o755, Content: &hostile},
	)
	delete(b.model, "/bad") // not part of the readable model

	root := b.dir("", "", 0o700,
		b.file("", "empty", 0o600, nil),
		b.file("", "small.txt", 0o644, []byte("hello world\n"), origin),
		b.file("", "page.bin", 0o600, randBytes(4096+1)),
		b.file("", "big.bin", 0o644, big),
		b.file("", "run.sh", 0o755, []byte("#!/bin/sh\necho hi\n")),
		b.symlink("", "link", "a/b/c/deep.txt"),
		b.dir("", "a", 0o755, b.dir("/a", "b", 0o700, deep)),
		b.dir("", "many", 0o755, many...),
		bad,
	)
	cache, queue := newCache(t, bc)
	pk, _ := signer.GetPublicKey(ctx)
	e := &env{stack: st, keys: keys, root: *root.Content, cache: cache, queue: queue, bc: bc, signer: signer, pk: pk,
		model: b.model, big: big, fetcher: &countingFetcher{inner: tree.StoreFetcher{Store: bc}}}
	e.base = publishRoot(t, e, *root.Content)
	return e
}

// newCache opens a cas and an upload queue to bc in a new directory.
func newCache(t *testing.T, bc *blossom.Client) (*cas.Store, *uploadq.Queue) {
	t.Helper()
	dir := t.TempDir()
	cache, err := cas.Open(filepath.Join(dir, "cas"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := uploadq.Open(filepath.Join(dir, "queue"), cache, bc, uploadq.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	t.Cleanup(func() { cancel(); q.Close(); cache.Close() })
	return cache, q
}

// publishRoot uploads a root pointer for root and publishes it as generation 1.
func publishRoot(t *testing.T, e *env, root tree.Content) *nostr.Event {
	t.Helper()
	ctx := context.Background()
	blob, err := e.keys.SealRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blob)
	hash := hex.EncodeToString(sum[:])
	if _, err := e.bc.Put(ctx, hash, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewManifestEvent(ctx, e.signer, "personal", events.Manifest{Root: events.BlobRef{Hash: hash, Size: int64(len(blob))}, Machine: "setup"}, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relayio.Publish(ctx, []string{e.stack.RelayURL()}, ev, 0); err != nil {
		t.Fatal(err)
	}
	return ev
}

// logSink collects what the FS logs; the FS logs from its request goroutines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logSink) reset()       { l.mu.Lock(); l.lines = nil; l.mu.Unlock() }
func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// fsOpts are the Options of a test FS over e's stack, with state in a new directory.
func (e *env) fsOpts(t *testing.T, logs *logSink) homefs.Options {
	return homefs.Options{
		Keys: e.keys, Store: e.bc, Fetch: e.fetcher, Cache: e.cache, Queue: e.queue,
		StateDir: filepath.Join(t.TempDir(), "state"), Signer: e.signer, Author: e.pk,
		Namespace: "personal", Machine: "test",
		Remote: &homefs.RelayRemote{Read: []string{e.stack.RelayURL()}, Write: []string{e.stack.RelayURL()},
			Author: e.pk, Namespace: "personal", Timeout: 2 * time.Second},
		Base: e.base, UID: testUID, GID: testGID, RootMode: 0o700,
		Debounce: 100 * time.Millisecond, Poll: -1, Debug: os.Getenv("FUSEDEBUG") != "", FlushTimeout: 10 * time.Second,
		Logf: func(format string, args ...any) {
			logs.add(fmt.Sprintf(format, args...))
			t.Logf("fs: "+format, args...)
		},
	}
}

func (e *env) newFS(t *testing.T, logs *logSink) *homefs.FS {
	return newFSWith(t, e.fsOpts(t, logs))
}

func newFSWith(t *testing.T, o homefs.Options) *homefs.FS {
	t.Helper()
	fsys, err := homefs.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Close() })
	return fsys
}

func mounted(dir string) bool {
	fstype, _ := mounts.At(dir)
	return fstype != ""
}

// mount mounts fsys on a new directory and unmounts it in t.Cleanup, even on failure
// (falling back to umount -l), failing the test if the mount is still listed afterwards.
func mount(t *testing.T, fsys *homefs.FS) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Mount(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(t, fsys, dir) })
	return dir
}

func unmount(t *testing.T, fsys *homefs.FS, dir string) {
	if !mounted(dir) {
		return
	}
	if err := fsys.Unmount(); err != nil {
		t.Logf("Unmount %s: %v; falling back to umount -l", dir, err)
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount -l %s: %v: %s", dir, err, out)
		}
	}
	if mounted(dir) {
		t.Errorf("%s is still in /proc/mounts after unmounting", dir)
	}
}

func paths(model map[string]node) []string {
	var ps []string
	for p := range model {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// checkAll reads every path of the model through the mount and compares.
func checkAll(t *testing.T, mnt string, model map[string]node) {
	t.Helper()
	for _, p := range paths(model) {
		n := model[p]
		full := mnt + p
		fi, err := os.Lstat(full)
		if err != nil {
			t.Errorf("Lstat %s: %v", p, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != testUID || st.Gid != testGID {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, testUID, testGID)
		}
		if got := uint32(fi.Mode().Perm()); got != n.mode&0o777 {
			t.Errorf("%s: mode %o, want %o", p, got, n.mode)
		}
		switch n.typ {
		case tree.TypeFile:
			if !fi.Mode().IsRegular() || fi.Size() != int64(len(n.data)) {
				t.Errorf("%s: mode %v size %d, want a regular file of %d bytes", p, fi.Mode(), fi.Size(), len(n.data))
			}
			got, err := os.ReadFile(full)
			if err != nil {
				t.Errorf("ReadFile %s: %v", p, err)
			} else if !bytes.Equal(got, n.data) {
				t.Errorf("ReadFile %s: %d bytes differ from the %d written", p, len(got), len(n.data))
			}
		case tree.TypeDir:
			if !fi.IsDir() {
				t.Errorf("%s: mode %v, want a directory", p, fi.Mode())
			}
			des, err := os.ReadDir(full)
			if err != nil {
				t.Errorf("ReadDir %s: %v", p, err)
			}
			var want []string
			for q := range model {
				if filepath.Dir(q) == p {
					want = append(want, filepath.Base(q))
				}
			}
			sort.Strings(want)
			var got []string
			for _, de := range des {
				got = append(got, de.Name())
				if wt := model[p+"/"+de.Name()].typ; (wt == tree.TypeDir) != de.IsDir() {
					t.Errorf("ReadDir %s: %s has type %v", p, de.Name(), de.Type())
				}
			}
			if strings.Join(got, "/") != strings.Join(want, "/") {
				t.Errorf("ReadDir %s: %d names, want %d", p, len(got), len(want))
			}
		case tree.TypeSymlink:
			if fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: mode %v, want a symlink", p, fi.Mode())
			}
			if tg, err := os.Readlink(full); err != nil || tg != n.target {
				t.Errorf("Readlink %s = %q, %v; want %q", p, tg, err, n.target)
			}
		}
	}
}

func TestHomeFS(t *testing.T) {
	e := setup(t)
	logs := &logSink{}
	fsys := e.newFS(t, logs)
	mnt := mount(t, fsys)

	t.Run("Lazy", func(t *testing.T) {
		f, err := os.Open(mnt + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		before := e.fetcher.n.Load()
		buf := make([]byte, 10)
		start := time.Now()
		if _, err := f.ReadAt(buf, 2<<20); err != nil {
			t.Fatal(err)
		}
		t.Logf("cold 10-byte read at 2 MiB: %v", time.Since(start))
		if !bytes.Equal(buf, e.big[2<<20:2<<20+10]) {
			t.Fatal("wrong bytes at 2 MiB")
		}
		time.Sleep(200 * time.Millisecond) // let the prefetch of the next chunk finish
		// Its own chunk and the next (prefetched; chunk 1 is a hole); never chunk 0.
		if n := e.fetcher.n.Load() - before; n < 1 || n > 2 {
			t.Fatalf("reading 10 bytes at 2 MiB fetched %d chunks, want 1 or 2", n)
		}
		// Drop the kernel's page cache so the next read reaches the daemon, which must serve
		// it from the cas: no new fetch, one more cache hit.
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			t.Fatalf("drop_caches: %v", err)
		}
		_, hits := fsys.FetchStats()
		before = e.fetcher.n.Load()
		off := int64(2<<20 + 700<<10)
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, e.big[off:off+10]) {
			t.Fatal("wrong bytes at 2 MiB + 700 KiB")
		}
		if n := e.fetcher.n.Load() - before; n != 0 {
			t.Errorf("second read in the same chunk fetched %d chunks, want 0", n)
		}
		_ = hits // served from the decrypted chunks in memory (or the cas), never upstream
	})

	t.Run("ReadEverything", func(t *testing.T) {
		start := time.Now()
		checkAll(t, mnt, e.model)
		t.Logf("first full read of %d paths: %v, %d fetches", len(e.model), time.Since(start), e.fetcher.n.Load())
	})

	t.Run("RandomReads", func(t *testing.T) {
		for _, name := range []string{"/big.bin", "/page.bin"} {
			data := e.model[name].data
			f, err := os.Open(mnt + name)
			if err != nil {
				t.Fatal(err)
			}
			r := mrand.New(mrand.NewPCG(1, 2))
			for range 300 {
				off := r.Int64N(int64(len(data)))
				n := 1 + r.IntN(300<<10)
				buf := make([]byte, n)
				got, err := f.ReadAt(buf, off)
				want := min(n, len(data)-int(off))
				if got != want || (err != nil && got == n) {
					t.Fatalf("%s ReadAt(%d, %d) = %d, %v; want %d", name, n, off, got, err, want)
				}
				if !bytes.Equal(buf[:got], data[off:off+int64(got)]) {
					t.Fatalf("%s ReadAt(%d, %d): bytes differ", name, n, off)
				}
			}
			f.Close()
		}
		// Past the end: EOF, no bytes.
		f, _ := os.Open(mnt + "/page.bin")
		defer f.Close()
		if n, err := f.ReadAt(make([]byte, 10), 1<<20); n != 0 || err == nil {
			t.Errorf("ReadAt past the end = %d, %v", n, err)
		}
	})

	t.Run("Attributes", func(t *testing.T) {
		fi, err := os.Stat(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o700 || !fi.IsDir() || st.Uid != testUID {
			t.Errorf("root: %v uid %d", fi.Mode(), st.Uid)
		}
		fi, err = os.Stat(mnt + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		// Three stored chunks (the hole costs nothing).
		if want := int64(2*tree.ChunkSize+12345+511) / 512; st.Blocks != want {
			t.Errorf("big.bin: %d blocks, want %d", st.Blocks, want)
		}
		if got := fi.ModTime().UnixNano(); got != 1795328049123456789 {
			t.Errorf("big.bin mtime %d", got)
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(mnt, &sfs); err != nil || sfs.Namelen != 255 {
			t.Errorf("statfs: %+v %v", sfs, err)
		}
		if _, err := os.Lstat(mnt + "/no/such"); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("Lstat of a missing name: %v, want ENOENT", err)
		}
		if _, err := os.Lstat(mnt + "/nope"); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("Lstat of a missing name: %v, want ENOENT", err)
		}
		// Through the symlink.
		if b, err := os.ReadFile(mnt + "/link"); err != nil || string(b) != "deep down\n" {
			t.Errorf("read through link: %q %v", b, err)
		}
	})

	t.Run("LsLR", func(t *testing.T) {
		cmd := exec.Command("ls", "-lR", mnt)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		// /bad/hostile is EIO by design: ls reports it and exits 1; nothing else may fail.
		if stderr.String() != fmt.Sprintf("ls: reading directory '%s/bad/hostile': Input/output error\n", mnt) {
			t.Errorf("ls -lR: %v, stderr %q", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "f1999") || !strings.Contains(stdout.String(), "deep.txt") {
			t.Errorf("ls -lR output lacks names")
		}
		if !regexp.MustCompile(`(?m)^-rwxr-xr-x 1 4242 4343 +18 .* run\.sh$`).MatchString(stdout.String()) {
			t.Errorf("ls -lR does not show run.sh as expected:\n%s", stdout.String()[:min(stdout.Len(), 2000)])
		}
		t.Logf("ls -lR: %v, %d lines", time.Since(start), strings.Count(stdout.String(), "\n"))
	})

	t.Run("Xattr", func(t *testing.T) {
		want := e.model["/small.txt"].xattrs[0].Value
		buf := make([]byte, 256)
		n, err := unix.Getxattr(mnt+"/small.txt", "user.origin", buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Errorf("Getxattr = %q, %v; want %q", buf[:n], err, want)
		}
		if n, err := unix.Getxattr(mnt+"/small.txt", "user.origin", nil); err != nil || n != len(want) {
			t.Errorf("Getxattr size = %d, %v", n, err)
		}
		if _, err := unix.Getxattr(mnt+"/small.txt", "user.origin", make([]byte, 3)); !errors.Is(err, syscall.ERANGE) {
			t.Errorf("Getxattr into a small buffer: %v, want ERANGE", err)
		}
		if _, err := unix.Getxattr(mnt+"/small.txt", "user.none", buf); !errors.Is(err, syscall.ENODATA) {
			t.Errorf("Getxattr of an absent name: %v, want ENODATA", err)
		}
		if _, err := unix.Getxattr(mnt+"/page.bin", "user.origin", buf); !errors.Is(err, syscall.ENODATA) {
			t.Errorf("Getxattr on a file without attributes: %v, want ENODATA", err)
		}
		n, err = unix.Listxattr(mnt+"/small.txt", buf)
		if err != nil || string(buf[:n]) != "user.origin\x00" {
			t.Errorf("Listxattr = %q, %v", buf[:n], err)
		}
		if n, err := unix.Listxattr(mnt+"/page.bin", buf); err != nil || n != 0 {
			t.Errorf("Listxattr of a file without attributes = %d, %v", n, err)
		}
	})

	t.Run("EIO", func(t *testing.T) {
		logs.reset()
		before := e.fetcher.n.Load()
		_, err := os.ReadFile(mnt + "/bad/missing.bin")
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("reading a file whose chunk is on no server: %v, want EIO", err)
		}
		if e.fetcher.n.Load() == before {
			t.Errorf("no fetch was attempted for missing.bin")
		}
		if _, err := os.ReadDir(mnt + "/bad/hostile"); !errors.Is(err, syscall.EIO) {
			t.Errorf("ReadDir of a directory with a hostile listing: %v, want EIO", err)
		}
		if _, err := os.Lstat(mnt + "/bad/hostile/x"); !errors.Is(err, syscall.EIO) {
			t.Errorf("Lookup in a directory with a hostile listing: %v, want EIO", err)
		}
		joined := logs.String()
		if !strings.Contains(joined, "read inode") || !strings.Contains(joined, "rule deflate") {
			t.Errorf("the errors were not logged with path and rule:\n%s", joined)
		}
		// Everything else still reads.
		if b, err := os.ReadFile(mnt + "/small.txt"); err != nil || string(b) != "hello world\n" {
			t.Errorf("small.txt after EIO: %q %v", b, err)
		}
		if b, err := os.ReadFile(mnt + "/a/b/c/deep.txt"); err != nil || string(b) != "deep down\n" {
			t.Errorf("deep.txt after EIO: %q %v", b, err)
		}
	})

	if t.Failed() {
		return
	}
	// Offline: the cas is warm (everything was read above). Unmount, stop the server, mount a
	// new FS over the same cas: everything reads, and nothing is fetched.
	t.Run("Offline", func(t *testing.T) {
		unmount(t, fsys, mnt)
		if err := e.stack.Close(); err != nil {
			t.Fatal(err)
		}
		fsys2 := e.newFS(t, &logSink{})
		mnt2 := mount(t, fsys2)
		before := e.fetcher.n.Load()
		start := time.Now()
		checkAll(t, mnt2, e.model)
		t.Logf("offline full read: %v", time.Since(start))
		fetched, cached := fsys2.FetchStats()
		if fetched != 0 || e.fetcher.n.Load() != before {
			t.Errorf("offline read fetched %d blobs", fetched)
		}
		if cached == 0 {
			t.Errorf("offline read used no cached blob")
		}
		// The uncached file is still EIO, now with the server gone.
		if _, err := os.ReadFile(mnt2 + "/bad/missing.bin"); !errors.Is(err, syscall.EIO) {
			t.Errorf("missing.bin offline: %v, want EIO", err)
		}
	})
}
