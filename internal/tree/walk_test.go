package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// testTree stores a 3-level tree and returns the root pointer blob and the files' bytes.
//
//	/a.txt  /big.bin  /d1/b.txt  /d1/d2/c.txt  /d1/d2/link -> ../b.txt  /z-empty/
func testTree(t *testing.T, k *Keys, s *memStore) ([]byte, map[string][]byte) {
	t.Helper()
	files := map[string][]byte{
		"/a.txt":       []byte("hello\n"),
		"/big.bin":     randBytes(3*ChunkSize+17, 11),
		"/d1/b.txt":    randBytes(10000, 12),
		"/d1/d2/c.txt": []byte("deep"),
	}
	file := func(name, path string) Entry {
		c, err := k.Split(bytes.NewReader(files[path]), s.put)
		if err != nil {
			t.Fatal(err)
		}
		return Entry{Name: name, Type: TypeFile, Mode: 0o644, Mtime: 1, Content: &c}
	}
	dir := func(name string, entries ...Entry) Entry {
		c, err := k.WriteListing(Listing{Entries: entries}, s.put)
		if err != nil {
			t.Fatal(err)
		}
		return Entry{Name: name, Type: TypeDir, Mode: 0o755, Mtime: 2, Content: &c}
	}
	d2 := dir("d2", file("c.txt", "/d1/d2/c.txt"), Entry{Name: "link", Type: TypeSymlink, Mode: 0o777, Target: "../b.txt"})
	d1 := dir("d1", d2, file("b.txt", "/d1/b.txt"))
	root := dir("", file("big.bin", "/big.bin"), dir("z-empty"), d1, file("a.txt", "/a.txt"))
	blob, err := k.SealRoot(*root.Content)
	if err != nil {
		t.Fatal(err)
	}
	return blob, files
}

func TestWalk(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	rootBlob, files := testTree(t, k, s)
	root, err := k.OpenRoot(rootBlob, hashOf(rootBlob))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = k.Walk(ctx, s, root, func(path string, e Entry) error {
		got = append(got, e.Type+" "+path)
		if e.Type == TypeFile {
			var out bytes.Buffer
			if _, err := k.WriteTo(ctx, s, *e.Content, &out); err != nil {
				return err
			}
			if !bytes.Equal(out.Bytes(), files[path]) {
				return fmt.Errorf("%s: contents differ", path)
			}
		}
		if e.Type == TypeSymlink && e.Target != "../b.txt" {
			return fmt.Errorf("%s: target %q", path, e.Target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"file /a.txt", "file /big.bin", "dir /d1", "file /d1/b.txt", "dir /d1/d2", "file /d1/d2/c.txt", "symlink /d1/d2/link", "dir /z-empty"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("walked %q\nwant %q", got, want)
	}

	walk := func(fn func(string, Entry) error) ([]string, error) {
		var seen []string
		err := k.Walk(ctx, s, root, func(p string, e Entry) error { seen = append(seen, p); return fn(p, e) })
		return seen, err
	}
	seen, err := walk(func(p string, e Entry) error {
		if p == "/d1" {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil || strings.Join(seen, " ") != "/a.txt /big.bin /d1 /z-empty" {
		t.Fatal(seen, err)
	}
	seen, err = walk(func(p string, e Entry) error {
		if p == "/d1/b.txt" {
			return fs.SkipDir // on a file: skip the rest of /d1
		}
		return nil
	})
	if err != nil || strings.Join(seen, " ") != "/a.txt /big.bin /d1 /d1/b.txt /z-empty" {
		t.Fatal(seen, err)
	}
	seen, err = walk(func(p string, e Entry) error {
		if p == "/d1/d2" {
			return fs.SkipAll
		}
		return nil
	})
	if err != nil || strings.Join(seen, " ") != "/a.txt /big.bin /d1 /d1/b.txt /d1/d2" {
		t.Fatal(seen, err)
	}
	boom := errors.New("boom")
	_, err = walk(func(p string, e Entry) error {
		if p == "/d1/d2/c.txt" {
			return boom
		}
		return nil
	})
	if err != boom {
		t.Fatalf("fn's error not returned as is: %v", err)
	}
}

func TestWalkErrorsNamePaths(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	rootBlob, _ := testTree(t, k, s)
	root, _ := k.OpenRoot(rootBlob, hashOf(rootBlob))

	// Find /d1/d2's listing chunk... by removing every blob that is not needed above it.
	var d2 Content
	k.Walk(ctx, s, root, func(p string, e Entry) error {
		if p == "/d1/d2" {
			d2 = *e.Content
		}
		return nil
	})
	if len(d2.Inline) > 0 {
		// Small listings are inline: make /d1/d2's listing a missing blob instead by
		// building a tree that references an absent chunk.
		d2 = Content{Size: 100, Chunks: []ChunkRef{{Hash: hexRepeat('0'), ID: hexRepeat('1'), Size: 100}}}
	}
	d1, _ := k.WriteListing(Listing{Entries: []Entry{{Name: "d2", Type: TypeDir, Content: &d2}}}, s.put)
	// A directory whose listing breaks a rule, crafted as raw JSON.
	raw := deflateRaw(t, []byte(listingJSON(entryJSON("ok"), entryJSON("x/y"))))
	bad, _ := k.Split(bytes.NewReader(raw), s.put)
	top, _ := k.WriteListing(Listing{Entries: []Entry{
		{Name: "bad", Type: TypeDir, Content: &bad},
		{Name: "d1", Type: TypeDir, Content: &d1},
	}}, s.put)

	err := k.Walk(ctx, s, top, func(string, Entry) error { return nil })
	wantRule(t, err, RuleName)
	if fe := err.(*FormatError); fe.Path != "/bad/x/y" {
		t.Fatalf("path %q: %v", fe.Path, err)
	}
	t.Log(err)

	top, _ = k.WriteListing(Listing{Entries: []Entry{{Name: "d1", Type: TypeDir, Content: &d1}}}, s.put)
	err = k.Walk(ctx, s, top, func(string, Entry) error { return nil })
	if !errors.Is(err, blobstore.ErrNotFound) || !strings.Contains(err.Error(), "/d1/d2") {
		t.Fatalf("want a not-found error naming /d1/d2: %v", err)
	}
	t.Log(err)

	// A corrupted listing blob.
	big := Listing{}
	for i := 0; i < 300; i++ {
		big.Entries = append(big.Entries, Entry{Name: fmt.Sprintf("f%03d", i), Type: TypeFile, Content: &Content{Size: 100, Inline: randBytes(100, uint64(i))}})
	}
	bc, _ := k.WriteListing(big, s.put)
	if len(bc.Chunks) != 1 {
		t.Fatal("want a chunked listing")
	}
	blob := s.blobs[bc.Chunks[0].Hash]
	blob[10] ^= 1
	top, _ = k.WriteListing(Listing{Entries: []Entry{{Name: "sub", Type: TypeDir, Content: &bc}}}, s.put)
	err = k.Walk(ctx, s, top, func(string, Entry) error { return nil })
	wantRule(t, err, RuleHash)
	if fe := err.(*FormatError); fe.Path != "/sub" || !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("path %q: %v", fe.Path, err)
	}
}

// fakeTree maps directory contents to listings directly, so that a test can build what
// sha256 names make impossible: a directory that contains itself.
type fakeTree map[[32]byte]Listing

func (f fakeTree) read(ctx context.Context, c Content) (Listing, error) {
	l, ok := f[c.identity()]
	if !ok {
		return Listing{}, errors.New("no such listing")
	}
	return l, nil
}

func fakeDir(name string) Content {
	return Content{Size: int64(len(name)), Inline: []byte(name)}
}

func TestWalkCycle(t *testing.T) {
	ctx := context.Background()
	a, b, c, shared := fakeDir("A"), fakeDir("B"), fakeDir("C"), fakeDir("S")
	dirEntry := func(name string, c Content) Entry { return Entry{Name: name, Type: TypeDir, Content: &c} }
	tree := fakeTree{
		a.identity():      {V: 1, Entries: []Entry{dirEntry("b", b), dirEntry("s1", shared), dirEntry("s2", shared)}},
		b.identity():      {V: 1, Entries: []Entry{dirEntry("c", c)}},
		c.identity():      {V: 1, Entries: []Entry{dirEntry("back-to-a", a)}},
		shared.identity(): {V: 1},
	}
	calls := 0
	err := walkTree(ctx, tree.read, a, func(p string, e Entry) error {
		calls++
		if calls > 100 {
			t.Fatal("Walk loops")
		}
		return nil
	})
	wantRule(t, err, RuleCycle)
	if fe := err.(*FormatError); fe.Path != "/b/c/back-to-a" {
		t.Fatalf("path %q", fe.Path)
	}
	// A directory containing itself.
	self := fakeDir("self")
	tree[self.identity()] = Listing{V: 1, Entries: []Entry{dirEntry("me", self)}}
	err = walkTree(ctx, tree.read, self, func(string, Entry) error { return nil })
	wantRule(t, err, RuleCycle)
	// Shared subtrees (the same directory twice, not on one path) are not cycles.
	delete(tree, c.identity())
	tree[c.identity()] = Listing{V: 1}
	var seen []string
	err = walkTree(ctx, tree.read, a, func(p string, e Entry) error { seen = append(seen, p); return nil })
	if err != nil || strings.Join(seen, " ") != "/b /b/c /s1 /s2" {
		t.Fatal(seen, err)
	}
}

// TestWalkDepth builds real chains of nested directories: 4096 levels are fine, 5000 are
// refused at level 4097.
func TestWalkDepth(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	s := newMemStore()
	chain := func(levels int) Content {
		c, err := k.WriteListing(Listing{}, s.put)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < levels; i++ {
			cc := c
			if c, err = k.WriteListing(Listing{Entries: []Entry{{Name: "d", Type: TypeDir, Content: &cc}}}, s.put); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	n := 0
	if err := k.Walk(ctx, s, chain(MaxDepth), func(string, Entry) error { n++; return nil }); err != nil || n != MaxDepth {
		t.Fatalf("%d levels: %d entries, %v", MaxDepth, n, err)
	}
	n = 0
	err := k.Walk(ctx, s, chain(5000), func(string, Entry) error { n++; return nil })
	wantRule(t, err, RuleDepth)
	if fe := err.(*FormatError); fe.Path != strings.Repeat("/d", MaxDepth+1) || n != MaxDepth {
		t.Fatalf("refused at %d components after %d entries", strings.Count(fe.Path, "/"), n)
	}
}

// TestWalkContext: a cancelled context stops a walk (a tree of shared subtrees can have
// exponentially many paths; ctx is what bounds it).
func TestWalkContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	// Each level holds the next one twice: 2^64 paths.
	tree := fakeTree{}
	next := fakeDir("leaf")
	tree[next.identity()] = Listing{V: 1}
	for i := 0; i < 64; i++ {
		d := fakeDir(fmt.Sprint("level", i))
		n := next
		tree[d.identity()] = Listing{V: 1, Entries: []Entry{{Name: "x", Type: TypeDir, Content: &n}, {Name: "y", Type: TypeDir, Content: &n}}}
		next = d
	}
	calls := 0
	err := walkTree(ctx, tree.read, next, func(string, Entry) error {
		if calls++; calls == 1000 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls > 1100 {
		t.Fatal(calls, err)
	}
}
