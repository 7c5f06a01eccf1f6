package tree

import (
	"encoding/json"
	"reflect"
	"sync"
	"testing"
)

// reencode checks that a decoded listing encodes again and decodes to the same listing.
func reencode(t *testing.T, l Listing) {
	t.Helper()
	enc, err := EncodeListing(l)
	if err != nil {
		t.Fatalf("a decoded listing does not encode: %v", err)
	}
	l2, err := DecodeListing(enc)
	if err != nil {
		t.Fatalf("a re-encoded listing does not decode: %v", err)
	}
	if !reflect.DeepEqual(l, l2) {
		t.Fatalf("decode(encode(l)) != l:\n%+v\n%+v", l, l2)
	}
}

func FuzzDecodeListing(f *testing.F) {
	good, _ := EncodeListing(sampleListing())
	f.Add(good)
	f.Add(inflateRaw(f, good))
	empty, _ := EncodeListing(Listing{})
	f.Add(empty)
	for _, js := range []string{
		listingJSON(entryJSON("a"), entryJSON("b")),
		listingJSON(entryJSON("b"), entryJSON("a")),
		listingJSON(entryJSON("a/b")),
		listingJSON(`{"name":"a","type":"symlink","target":"b","xattrs":[{"name":"user.a","value":"YQ=="},{"name":"user.b","value":""}]}`),
		listingJSON(`{"name":"a","type":"file","mode":420,"mtime":1,"content":{"size":1048581,"chunks":[{"hash":"","id":"","size":1048576},{"hash":"` + hexRepeat('a') + `","id":"` + hexRepeat('b') + `","size":5}]}}`),
		listingJSON(`{"name":"a","type":"dir","mode":493,"mtime":1,"content":{"size":3,"inline":"YWJj"}}`),
		`{"v":1,"entries":[{"name":"a","type":"file","mode":420,"mtime":1,"content":{"ſize":0}}]}`,
	} {
		f.Add([]byte(js))
		f.Add(deflateRaw(f, []byte(js)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// As a stored listing (DEFLATE), and as the JSON inside one, so that the fuzzer can
		// reach the JSON rules without having to write DEFLATE.
		l, err := DecodeListing(b)
		if err == nil {
			reencode(t, l)
		} else if BrokenRule(err) == "" {
			t.Fatalf("refusal without a rule: %v", err)
		}
		l, err = decodeListingJSON(b)
		if err == nil {
			reencode(t, l)
		} else if BrokenRule(err) == "" {
			t.Fatalf("refusal without a rule: %v", err)
		}
	})
}

var fuzzKeys = sync.OnceValue(func() *Keys {
	k, _ := DeriveKeys(make([]byte, 32))
	return k
})

func FuzzOpenRoot(f *testing.F) {
	k := fuzzKeys()
	for _, js := range []string{
		`{"v":1,"root":{"size":3,"inline":"YWJj"}}`,
		`{"v":1,"root":{"size":5,"chunks":[{"hash":"` + hexRepeat('a') + `","id":"` + hexRepeat('b') + `","size":5}]}}`,
		`{"v":1,"root":{"size":1048581,"chunks":[{"hash":"","id":"","size":1048576},{"hash":"` + hexRepeat('a') + `","id":"` + hexRepeat('b') + `","size":5}]}}`,
		`{"v":2,"root":{"size":3,"inline":"YWJj"}}`,
		`{"v":1}`,
	} {
		f.Add([]byte(js))
		blob, _ := k.sealRootPlain([]byte(js))
		f.Add(blob)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// As a blob off a server (the seeds include valid blobs; mutations of them must fail
		// the hash or the tag), and as the plaintext of a root pointer.
		openRoundTrip(t, k, b)
		if blob, err := k.sealRootPlain(b); err == nil {
			openRoundTrip(t, k, blob)
		}
	})
}

// openRoundTrip opens blob as a root pointer; if that works, the content must seal and open
// again to the same content.
func openRoundTrip(t *testing.T, k *Keys, blob []byte) {
	c, err := k.OpenRoot(blob, hashOf(blob))
	if err != nil {
		if BrokenRule(err) == "" {
			t.Fatalf("refusal without a rule: %v", err)
		}
		return
	}
	{
		if err := c.checkDir(); err != nil {
			t.Fatalf("OpenRoot returned a content that fails checkDir: %v", err)
		}
		blob2, err := k.SealRoot(c)
		if err != nil {
			t.Fatalf("an opened root does not seal: %v", err)
		}
		c2, err := k.OpenRoot(blob2, hashOf(blob2))
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("seal(open(r)) differs: %v\n%+v\n%+v", err, c, c2)
		}
	}
}

func FuzzContentCheck(f *testing.F) {
	h, i := hexRepeat('a'), hexRepeat('b')
	for _, js := range []string{
		`{"size":0}`,
		`{"size":3,"inline":"YWJj"}`,
		`{"size":5,"chunks":[{"hash":"` + h + `","id":"` + i + `","size":5}]}`,
		`{"size":1048581,"chunks":[{"hash":"","id":"","size":1048576},{"hash":"` + h + `","id":"` + i + `","size":5}]}`,
		`{"size":1048581,"chunks":[{"hash":"","id":"","size":5},{"hash":"` + h + `","id":"` + i + `","size":1048576}]}`,
		`{"size":2251799813685248,"chunks":[]}`,
		`{"size":3,"inline":"YWJj","chunks":[{"hash":"","id":"","size":3}]}`,
	} {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Content
		if err := decodeJSON(b, &c); err != nil {
			if BrokenRule(err) == "" {
				t.Fatalf("refusal without a rule: %v", err)
			}
			return
		}
		if err := c.Check(); err != nil {
			if BrokenRule(err) == "" {
				t.Fatalf("refusal without a rule: %v", err)
			}
			return
		}
		if err := c.checkShape(); err != nil {
			t.Fatalf("Check passes, checkShape fails: %v", err)
		}
		for _, off := range []int64{0, c.Size / 2, c.Size - 1} {
			if off < 0 || len(c.Chunks) == 0 {
				continue
			}
			j := c.ChunkIndex(off)
			start := int64(j) * ChunkSize
			if j < 0 || off < start || off >= start+c.Chunks[j].Size {
				t.Fatalf("ChunkIndex(%d) = %d", off, j)
			}
			if _, err := c.chunkAt(int64(j)); err != nil {
				t.Fatalf("Check passes, chunk %d fails: %v", j, err)
			}
		}
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var c2 Content
		if err := decodeJSON(js, &c2); err != nil {
			t.Fatalf("re-encoded content %s does not decode: %v", js, err)
		}
		if !reflect.DeepEqual(c, c2) || c2.Check() != nil {
			t.Fatalf("decode(encode(c)) differs:\n%+v\n%+v", c, c2)
		}
	})
}
