package tree

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func sampleListing() Listing {
	big := &Content{Size: 2*ChunkSize + 5, Chunks: []ChunkRef{
		{Hash: hexRepeat('a'), ID: hexRepeat('b'), Size: ChunkSize},
		{Size: ChunkSize},
		{Hash: hexRepeat('c'), ID: hexRepeat('d'), Size: 5},
	}}
	return Listing{V: 1, Entries: []Entry{
		{Name: "src", Type: TypeDir, Mode: 0o755, Mtime: 1795328049000000000, Content: &Content{Size: 812, Chunks: []ChunkRef{{Hash: hexRepeat('1'), ID: hexRepeat('2'), Size: 812}}}},
		{Name: "notes.txt", Type: TypeFile, Mode: 0o644, Mtime: 1795328049123456789, Content: &Content{Size: 12, Inline: []byte("hello world\n")}},
		{Name: "latest", Type: TypeSymlink, Mode: 0o777, Mtime: 1795328049000000000, Target: "src/v2"},
		{Name: "big.iso", Type: TypeFile, Mode: 0o600, Mtime: 0, Content: big, Xattrs: []Xattr{
			{Name: "user.origin", Value: []byte("https://example.org/<&>")},
			{Name: "user.Empty"},
		}},
		{Name: "empty", Type: TypeFile, Mode: 0o4755, Mtime: MaxMtime, Content: &Content{}},
		{Name: "héllo wörld ✓", Type: TypeFile, Content: &Content{Size: 1, Inline: []byte{0}}},
		{Name: "\u2028<tag>&\"quote\"\\", Type: TypeSymlink, Target: "../../\u00e9\t"},
	}}
}

func sortedSample() Listing {
	l := sampleListing()
	e := l.Entries
	// bytewise: "\u2028..." (e2 80 a8) sorts after ASCII and "h\xc3..".
	return Listing{V: 1, Entries: []Entry{e[3], e[4], e[5], e[2], e[1], e[0], e[6]}}
}

func TestListingRoundTrip(t *testing.T) {
	in := sampleListing()
	before := fmt.Sprintf("%+v", in)
	b, err := EncodeListing(in)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", in) != before {
		t.Fatal("EncodeListing modified its argument")
	}
	got, err := DecodeListing(b)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedSample()
	// Attributes are sorted too: "user.Empty" < "user.origin".
	want.Entries[0].Xattrs = []Xattr{{Name: "user.Empty"}, {Name: "user.origin", Value: []byte("https://example.org/<&>")}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	b2, _ := EncodeListing(got)
	if !bytes.Equal(b, b2) {
		t.Fatal("encoding is not deterministic")
	}
	js := inflateRaw(t, b)
	t.Logf("%d bytes of JSON, %d compressed: %s", len(js), len(b), js)
	for _, s := range []string{`"v":1,"entries":[`, `"inline":"aGVsbG8gd29ybGQK"`, `{"hash":"","id":"","size":1048576}`, `"value":""`, `<tag>&`} {
		if !bytes.Contains(js, []byte(s)) {
			t.Errorf("JSON lacks %s", s)
		}
	}
	// An empty listing.
	b, err = EncodeListing(Listing{})
	if err != nil {
		t.Fatal(err)
	}
	if js := inflateRaw(t, b); string(js) != `{"v":1,"entries":[]}` {
		t.Fatalf("empty listing: %s", js)
	}
	if l, err := DecodeListing(b); err != nil || l.V != 1 || len(l.Entries) != 0 {
		t.Fatal(l, err)
	}
}

func TestWriteReadListing(t *testing.T) {
	k := testKeys(t, 1)
	ctx := context.Background()
	// Large enough (random attribute values) to take two chunks.
	var l Listing
	for i := 0; i < 5000; i++ {
		l.Entries = append(l.Entries, Entry{Name: fmt.Sprintf("file-%05d", i), Type: TypeFile, Mode: 0o644, Mtime: int64(i),
			Content: &Content{}, Xattrs: []Xattr{{Name: "user.r", Value: randBytes(300, uint64(i))}}})
	}
	s := newMemStore()
	c, err := k.WriteListing(l, s.put)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Chunks) < 2 {
		t.Fatalf("want a listing of several chunks, got %d bytes", c.Size)
	}
	got, err := k.ReadListing(ctx, s, c)
	if err != nil {
		t.Fatal(err)
	}
	l.V = 1
	if !reflect.DeepEqual(got, l) {
		t.Fatal("listing differs")
	}
	// A small listing is inline and fetches nothing.
	c, err = k.WriteListing(sampleListing(), s.put)
	if err != nil || len(c.Inline) == 0 {
		t.Fatal(c, err)
	}
	n := s.fetches.Load()
	if _, err := k.ReadListing(ctx, s, c); err != nil || s.fetches.Load() != n {
		t.Fatal(err)
	}
	// A directory content over the limit is refused before anything is fetched.
	_, err = k.ReadListing(ctx, s, Content{Size: MaxListingSize + 1, Chunks: make([]ChunkRef, 65)})
	wantRule(t, err, RuleListingSize)
}

// entryJSON is a valid file entry with name n.
func entryJSON(n string) string {
	return `{"name":"` + n + `","type":"file","mode":420,"mtime":1,"content":{"size":1,"inline":"YQ=="}}`
}

func listingJSON(entries ...string) string {
	return `{"v":1,"entries":[` + strings.Join(entries, ",") + `]}`
}

func TestDecodeListingHostile(t *testing.T) {
	h, i := hexRepeat('a'), hexRepeat('b')
	ref := func(size int) string { return fmt.Sprintf(`{"hash":"%s","id":"%s","size":%d}`, h, i, size) }
	file := func(name, content string) string {
		return `{"name":"` + name + `","type":"file","mode":420,"mtime":1,"content":` + content + `}`
	}
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name, json string
		rule       Rule
		path       string // the entry the error must name ("" = do not check)
	}{
		{"valid", listingJSON(entryJSON("a"), entryJSON("b")), "", ""},
		{"slash", listingJSON(entryJSON("a/b")), RuleName, "a/b"},
		{"NUL", listingJSON(entryJSON(`a\u0000b`)), RuleName, "a\x00b"},
		{"dot", listingJSON(entryJSON(".")), RuleName, "."},
		{"dotdot", listingJSON(entryJSON("..")), RuleName, ".."},
		{"empty name", listingJSON(entryJSON("")), RuleName, ""},
		{"256 bytes", listingJSON(entryJSON(long)), RuleName, long},
		{"255 bytes", listingJSON(entryJSON(long[1:])), "", ""},
		{"invalid UTF-8", listingJSON(entryJSON("a\xffb")), RuleUTF8, ""},
		{"duplicate", listingJSON(entryJSON("a"), entryJSON("a")), RuleDuplicate, "a"},
		{"unsorted", listingJSON(entryJSON("b"), entryJSON("a")), RuleOrder, "a"},
		{"bytewise order", listingJSON(entryJSON("B"), entryJSON("a"), entryJSON("é")), "", ""},
		{"unknown field", listingJSON(`{"name":"a","type":"file","mode":420,"mtime":1,"uid":0,"content":{"size":0}}`), RuleJSON, "a"},
		{"unknown top field", `{"v":1,"entries":[],"extra":1}`, RuleJSON, ""},
		{"unknown content field", listingJSON(file("a", `{"size":0,"x":1}`)), RuleJSON, "a"},
		{"unknown chunk field", listingJSON(file("a", `{"size":1,"chunks":[{"hash":"","id":"","size":1,"x":1}]}`)), RuleJSON, "a"},
		{"upper-case key", listingJSON(`{"Name":"a","type":"file","mode":420,"mtime":1,"content":{"size":0}}`), RuleJSON, ""},
		{"upper-case top key", `{"V":1,"entries":[]}`, RuleJSON, ""},
		{"folded key", listingJSON(`{"name":"a","type":"file","mode":420,"mtime":1,"content":{"ſize":0}}`), RuleJSON, ""},
		{"escaped key", listingJSON(`{"n\u0061me":"a","type":"file","mode":420,"mtime":1,"content":{"size":0}}`), RuleJSON, ""},
		{"repeated key", listingJSON(`{"name":"a","name":"b","type":"file","mode":420,"mtime":1,"content":{"size":0}}`), RuleJSON, ""},
		{"version 2", `{"v":2,"entries":[]}`, RuleVersion, ""},
		{"no version", `{"entries":[]}`, RuleVersion, ""},
		{"entries null", `{"v":1,"entries":null}`, RuleJSON, ""},
		{"trailing", `{"v":1,"entries":[]} {}`, RuleJSON, ""},
		{"not an object", `[]`, RuleJSON, ""},
		{"unknown type", listingJSON(`{"name":"a","type":"fifo","mode":420,"mtime":1}`), RuleType, "a"},
		{"mode 010000", listingJSON(`{"name":"a","type":"file","mode":4096,"mtime":1,"content":{"size":0}}`), RuleMode, "a"},
		{"mode 07777", listingJSON(`{"name":"a","type":"file","mode":4095,"mtime":1,"content":{"size":0}}`), "", ""},
		{"negative mode", listingJSON(`{"name":"a","type":"file","mode":-1,"mtime":1,"content":{"size":0}}`), RuleJSON, "a"},
		{"mtime 2^62+1", listingJSON(`{"name":"a","type":"file","mode":0,"mtime":4611686018427387905,"content":{"size":0}}`), RuleMtime, "a"},
		{"mtime -1", listingJSON(`{"name":"a","type":"file","mode":0,"mtime":-1,"content":{"size":0}}`), RuleMtime, "a"},
		{"mtime float", listingJSON(`{"name":"a","type":"file","mode":0,"mtime":1.5,"content":{"size":0}}`), RuleJSON, "a"},
		{"file without content", listingJSON(`{"name":"a","type":"file","mode":0,"mtime":0}`), RuleContent, "a"},
		{"dir without content", listingJSON(`{"name":"a","type":"dir","mode":0,"mtime":0}`), RuleContent, "a"},
		{"symlink with content", listingJSON(`{"name":"a","type":"symlink","mode":0,"mtime":0,"target":"b","content":{"size":0}}`), RuleContent, "a"},
		{"file with target", listingJSON(`{"name":"a","type":"file","mode":0,"mtime":0,"target":"b","content":{"size":0}}`), RuleTarget, "a"},
		{"symlink without target", listingJSON(`{"name":"a","type":"symlink","mode":0,"mtime":0}`), RuleTarget, "a"},
		{"target with NUL", listingJSON(`{"name":"a","type":"symlink","mode":0,"mtime":0,"target":"b\u0000"}`), RuleTarget, "a"},
		{"target 4096 bytes", listingJSON(`{"name":"a","type":"symlink","mode":0,"mtime":0,"target":"` + strings.Repeat("t", 4096) + `"}`), RuleTarget, "a"},
		{"target 4095 bytes", listingJSON(`{"name":"a","type":"symlink","mode":0,"mtime":0,"target":"` + strings.Repeat("t", 4095) + `"}`), "", ""},
		{"content null", listingJSON(file("a", `null`)), RuleContent, "a"},
		{"sizes do not add up", listingJSON(file("a", `{"size":10,"chunks":[`+ref(9)+`]}`)), RuleSize, "a"},
		{"sizes do not add up, 2 chunks", listingJSON(file("a", `{"size":1048580,"chunks":[`+ref(ChunkSize)+`,`+ref(5)+`]}`)), RuleSize, "a"},
		{"non-final short chunk", listingJSON(file("a", `{"size":1048581,"chunks":[`+ref(5)+`,`+ref(ChunkSize)+`,`+ref(1)+`]}`)), RuleSize, "a"},
		{"empty final chunk", listingJSON(file("a", `{"size":1048576,"chunks":[`+ref(ChunkSize)+`,`+ref(0)+`]}`)), RuleSize, "a"},
		{"chunk of 2 MiB", listingJSON(file("a", `{"size":2097152,"chunks":[`+ref(2<<20)+`]}`)), RuleSize, "a"},
		{"file of 2^51", listingJSON(file("a", `{"size":2251799813685248,"chunks":[`+ref(ChunkSize)+`]}`)), RuleSize, "a"},
		{"half hole", listingJSON(file("a", `{"size":5,"chunks":[{"hash":"","id":"`+i+`","size":5}]}`)), RuleRef, "a"},
		{"upper-case hash", listingJSON(file("a", `{"size":5,"chunks":[{"hash":"`+strings.ToUpper(h)+`","id":"`+i+`","size":5}]}`)), RuleRef, "a"},
		{"inline over 4 KiB", listingJSON(file("a", fmt.Sprintf(`{"size":4097,"inline":"%s"}`, b64(make([]byte, 4097))))), RuleSize, "a"},
		{"inline and chunks", listingJSON(file("a", `{"size":1,"inline":"YQ==","chunks":[`+ref(1)+`]}`)), RuleSize, "a"},
		{"inline size", listingJSON(file("a", `{"size":2,"inline":"YQ=="}`)), RuleSize, "a"},
		{"inline unpadded", listingJSON(file("a", `{"size":1,"inline":"YQ"}`)), RuleBase64, "a"},
		{"inline url alphabet", listingJSON(file("a", `{"size":2,"inline":"-_8="}`)), RuleBase64, "a"},
		{"inline padding bits", listingJSON(file("a", `{"size":1,"inline":"YR=="}`)), RuleBase64, "a"},
		{"inline line break", listingJSON(file("a", `{"size":3,"inline":"YW\nJj"}`)), RuleBase64, "a"},
		{"dir of size 0", listingJSON(`{"name":"a","type":"dir","mode":0,"mtime":0,"content":{"size":0}}`), RuleListingSize, "a"},
		{"dir over 64 MiB", listingJSON(`{"name":"a","type":"dir","mode":0,"mtime":0,"content":{"size":67108865,"chunks":[` + strings.Repeat(ref(ChunkSize)+",", 64) + ref(1) + `]}}`), RuleListingSize, "a"},
		{"xattr", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.a","value":"YQ=="},{"name":"user.b","value":""}]}`), "", ""},
		{"xattr not user.", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"trusted.a","value":""}]}`), RuleXattr, "a"},
		{"xattr user. only", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.","value":""}]}`), RuleXattr, "a"},
		{"xattr User.", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"User.a","value":""}]}`), RuleXattr, "a"},
		{"xattr unsorted", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.b","value":""},{"name":"user.a","value":""}]}`), RuleXattr, "a"},
		{"xattr twice", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.a","value":""},{"name":"user.a","value":""}]}`), RuleXattr, "a"},
		{"xattr no value", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.a"}]}`), RuleXattr, "a"},
		{"xattr value 64 KiB+1", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.a","value":"` + b64(make([]byte, 64<<10+1)) + `"}]}`), RuleXattr, "a"},
		{"xattr total", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[` + xattrsJSON(5, 64<<10) + `]}`), RuleXattr, "a"},
		{"xattr total ok", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[` + xattrsJSON(3, 64<<10) + `]}`), "", ""},
		{"xattr name 256", listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.` + strings.Repeat("x", 251) + `","value":""}]}`), RuleXattr, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeListing(deflateRaw(t, []byte(tc.json)))
			if tc.rule == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantRule(t, err, tc.rule)
			if fe := err.(*FormatError); tc.path != "" && fe.Path != tc.path {
				t.Fatalf("error names %q, want %q: %v", fe.Path, tc.path, err)
			}
		})
	}
}

func b64(b []byte) string {
	s, _ := (Xattr{Value: b}).MarshalJSON()
	return strings.TrimSuffix(strings.SplitN(string(s), `"value":"`, 2)[1], `"}`)
}

func xattrsJSON(n, size int) string {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, fmt.Sprintf(`{"name":"user.%d","value":"%s"}`, i, b64(make([]byte, size))))
	}
	return strings.Join(parts, ",")
}

func TestEncodeListingRefuses(t *testing.T) {
	file := func(name string) Entry { return Entry{Name: name, Type: TypeFile, Content: &Content{}} }
	for _, tc := range []struct {
		name string
		l    Listing
		rule Rule
	}{
		{"invalid UTF-8", Listing{Entries: []Entry{file("a\xffb")}}, RuleName},
		{"slash", Listing{Entries: []Entry{file("a/b")}}, RuleName},
		{"NUL", Listing{Entries: []Entry{file("a\x00")}}, RuleName},
		{"dotdot", Listing{Entries: []Entry{file("..")}}, RuleName},
		{"duplicate", Listing{Entries: []Entry{file("b"), file("a"), file("b")}}, RuleDuplicate},
		{"version", Listing{V: 2}, RuleVersion},
		{"type", Listing{Entries: []Entry{{Name: "a", Type: "socket"}}}, RuleType},
		{"mode", Listing{Entries: []Entry{{Name: "a", Type: TypeFile, Mode: 0o10000, Content: &Content{}}}}, RuleMode},
		{"target not UTF-8", Listing{Entries: []Entry{{Name: "a", Type: TypeSymlink, Target: "\xff"}}}, RuleTarget},
		{"xattr name not UTF-8", Listing{Entries: []Entry{{Name: "a", Type: TypeSymlink, Target: "b", Xattrs: []Xattr{{Name: "user.\xff"}}}}}, RuleXattr},
		{"xattr twice", Listing{Entries: []Entry{{Name: "a", Type: TypeSymlink, Target: "b", Xattrs: []Xattr{{Name: "user.a"}, {Name: "user.a"}}}}}, RuleXattr},
		{"bad content", Listing{Entries: []Entry{{Name: "a", Type: TypeFile, Content: &Content{Size: 3}}}}, RuleSize},
	} {
		_, err := EncodeListing(tc.l)
		if BrokenRule(err) != tc.rule {
			t.Errorf("%s: %v, want rule %s", tc.name, err, tc.rule)
		}
	}
}

func TestDecodeListingDeflate(t *testing.T) {
	good, _ := EncodeListing(sampleListing())
	if _, err := DecodeListing(good); err != nil {
		t.Fatal(err)
	}
	_, err := DecodeListing(append(bytes.Clone(good), 0, 1, 2))
	wantRule(t, err, RuleDeflate)
	_, err = DecodeListing(good[:len(good)/2])
	wantRule(t, err, RuleDeflate)
	_, err = DecodeListing(nil)
	wantRule(t, err, RuleDeflate)
	_, err = DecodeListing([]byte{0xff, 0xff, 0xff})
	wantRule(t, err, RuleDeflate)
	_, err = DecodeListing(make([]byte, MaxListingSize+1))
	wantRule(t, err, RuleListingSize)
	// A listing of exactly 64 MiB is accepted; one byte more is not.
	pad := func(n int) []byte {
		s := []byte(`{"v":1,"entries":[` + entryJSON("a") + `]}`)
		return append(s, bytes.Repeat([]byte(" "), n-len(s))...)
	}
	if _, err := DecodeListing(deflateRaw(t, pad(MaxListingSize))); err != nil {
		t.Fatal(err)
	}
	_, err = DecodeListing(deflateRaw(t, pad(MaxListingSize+1)))
	wantRule(t, err, RuleListingSize)
}

// TestDecodeListingBomb: 200 MiB of spaces inside a JSON string compress to a few hundred
// KiB; inflating must stop at the limit, quickly and without holding more than about the
// limit in memory.
func TestDecodeListingBomb(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write([]byte(`{"v":1,"entries":[{"name":"`))
	spaces := bytes.Repeat([]byte(" "), 1<<20)
	for i := 0; i < 200; i++ {
		w.Write(spaces)
	}
	w.Write([]byte(`","type":"file","mode":0,"mtime":0,"content":{"size":0}}]}`))
	w.Close()
	bomb := buf.Bytes()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := DecodeListing(bomb)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	wantRule(t, err, RuleListingSize)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("bomb: %d bytes compressed, 200 MiB inflated; refused in %v after allocating %.1f MiB", len(bomb), elapsed, float64(alloc)/(1<<20))
	if alloc > 3*MaxListingSize {
		t.Errorf("allocated %d bytes for a bomb: not cut off at the limit", alloc)
	}
	if elapsed > 5*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

func TestDecodeListingTooManyEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 50 MB listing")
	}
	build := func(n int) []byte {
		var js bytes.Buffer
		js.WriteString(`{"v":1,"entries":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				js.WriteByte(',')
			}
			fmt.Fprintf(&js, `{"name":"%07d","type":"symlink","target":"t"}`, i)
		}
		js.WriteString(`]}`)
		return js.Bytes()
	}
	js := build(MaxEntries + 1)
	comp := deflateRaw(t, js)
	start := time.Now()
	_, err := DecodeListing(comp)
	wantRule(t, err, RuleEntries)
	t.Logf("%d entries (%d bytes of JSON): refused in %v", MaxEntries+1, len(js), time.Since(start))
	// One fewer is fine.
	comp = deflateRaw(t, build(MaxEntries))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	l, err := DecodeListing(comp)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil || len(l.Entries) != MaxEntries {
		t.Fatal(len(l.Entries), err)
	}
	t.Logf("%d entries decoded in %v; allocated %d MiB in all, heap grew by %d MiB", MaxEntries, elapsed,
		(after.TotalAlloc-before.TotalAlloc)>>20, (after.HeapSys-before.HeapSys)>>20)
}

func TestErrorMessages(t *testing.T) {
	_, err := DecodeListing(deflateRaw(t, []byte(listingJSON(entryJSON(`\u001b[31mred`)))))
	if err != nil {
		t.Fatalf("an escape character is a valid name: %v", err)
	}
	_, err = DecodeListing(deflateRaw(t, []byte(listingJSON(entryJSON(`\u001b[31m/red`)))))
	wantRule(t, err, RuleName)
	if strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("raw escape in message: %q", err)
	}
	t.Log(err)
}
