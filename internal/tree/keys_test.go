package tree

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// TestKnownAnswer rebuilds a chunk blob from the formulas of docs/FORMAT.md with raw
// primitives (HKDF written out from RFC 5869) and pins the result, so that any change to the
// derivation or the blob layout fails here.
func TestKnownAnswer(t *testing.T) {
	hk := make([]byte, 32)
	for i := range hk {
		hk[i] = byte(i)
	}
	// HKDF-SHA256 with an empty salt (= 32 zero bytes) and L = 32: one HMAC block.
	prk := hmacSHA256(make([]byte, 32), hk)
	kChunk := hmacSHA256(prk, []byte("nostr-homed/v1/chunk"), []byte{1})
	kRoot := hmacSHA256(prk, []byte("nostr-homed/v1/root"), []byte{1})

	p := []byte("hello world\n")
	id := hmacSHA256(kChunk, []byte{0x00}, p)
	key := hmacSHA256(kChunk, []byte{0x01}, id)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	want := gcm.Seal([]byte{0x01}, make([]byte, 12), p, []byte{0x01})

	k, err := DeriveKeys(hk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.chunk[:], kChunk) || !bytes.Equal(k.root[:], kRoot) {
		t.Fatal("derived keys differ from HKDF written out")
	}
	blob, ref, err := k.SealChunk(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(blob, want) {
		t.Fatalf("blob\n%x\nwant\n%x", blob, want)
	}
	sum := sha256.Sum256(want)
	if ref.Hash != hex.EncodeToString(sum[:]) || ref.ID != hex.EncodeToString(id) || ref.Size != int64(len(p)) {
		t.Fatalf("ref %+v", ref)
	}
	// Pinned: HK = 00 01 .. 1f, P = "hello world\n".
	const (
		pinnedID   = "1bd1acc89e318ac39dbdc2623540b255b47f97d926b9d7ba55f6a98b90b3c274"
		pinnedHash = "03981f9e7a883a4d234c08cec7e72b780c767ae8942bde3f34bccf63ed3e97c9"
	)
	t.Logf("K_chunk %x\nK_root %x\nid %s\nhash %s\nblob %x", kChunk, kRoot, ref.ID, ref.Hash, blob)
	if ref.ID != pinnedID || ref.Hash != pinnedHash {
		t.Fatalf("test vector changed: id %s hash %s", ref.ID, ref.Hash)
	}
}

func TestDeriveKeys(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := DeriveKeys(make([]byte, n)); err == nil {
			t.Errorf("home key of %d bytes accepted", n)
		}
	}
	a, b := testKeys(t, 1), testKeys(t, 2)
	if a.chunk == b.chunk || a.root == b.root || a.chunk == a.root {
		t.Fatal("keys not distinct")
	}
}

func TestWipe(t *testing.T) {
	k := testKeys(t, 1)
	blob, ref, err := k.SealChunk([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := k.SealRoot(Content{Size: 3, Inline: []byte("abc")})
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
	if k.chunk != [32]byte{} || k.root != [32]byte{} {
		t.Fatal("keys not zeroed")
	}
	if _, _, err := k.SealChunk([]byte("x")); !errors.Is(err, ErrWiped) {
		t.Errorf("SealChunk after Wipe: %v", err)
	}
	if _, err := k.OpenChunk(blob, ref); !errors.Is(err, ErrWiped) {
		t.Errorf("OpenChunk after Wipe: %v", err)
	}
	if _, err := k.SealRoot(Content{Size: 1, Inline: []byte("a")}); !errors.Is(err, ErrWiped) {
		t.Errorf("SealRoot after Wipe: %v", err)
	}
	sum := sha256.Sum256(root)
	if _, err := k.OpenRoot(root, hex.EncodeToString(sum[:])); !errors.Is(err, ErrWiped) {
		t.Errorf("OpenRoot after Wipe: %v", err)
	}
	var zero Keys
	if _, _, err := zero.SealChunk([]byte("x")); !errors.Is(err, ErrWiped) {
		t.Errorf("zero Keys: %v", err)
	}
}

func TestChunkRoundTrip(t *testing.T) {
	k := testKeys(t, 1)
	for _, n := range []int{1, 2, 100, MaxInline, MaxInline + 1, ChunkSize - 1, ChunkSize} {
		p := randBytes(n, uint64(n))
		blob, ref, err := k.SealChunk(p)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(blob)) != BlobSize(int64(n)) || blob[0] != 0x01 || ref.Size != int64(n) {
			t.Fatalf("%d: blob of %d bytes, ref %+v", n, len(blob), ref)
		}
		if err := blobstore.CheckHash(ref.Hash); err != nil {
			t.Fatal(err)
		}
		got, err := k.OpenChunk(blob, ref)
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("%d: plaintext differs", n)
		}
	}
	for _, n := range []int{0, ChunkSize + 1} {
		if _, _, err := k.SealChunk(make([]byte, n)); err == nil {
			t.Errorf("chunk of %d bytes sealed", n)
		}
	}
}

func TestConvergence(t *testing.T) {
	a, a2, b := testKeys(t, 1), testKeys(t, 1), testKeys(t, 2)
	p := randBytes(5000, 7)
	blobA, refA, _ := a.SealChunk(p)
	blobA2, refA2, _ := a2.SealChunk(bytes.Clone(p))
	if !bytes.Equal(blobA, blobA2) || refA != refA2 {
		t.Fatal("same plaintext, same home: different blobs")
	}
	blobB, refB, _ := b.SealChunk(p)
	if bytes.Equal(blobA, blobB) || refA.ID == refB.ID || refA.Hash == refB.Hash {
		t.Fatal("two homes give linked chunks")
	}
	// A blob decrypted with another home's keys fails.
	_, err := b.OpenChunk(blobA, refA)
	wantRule(t, err, RuleDecrypt)
	// And one byte of difference gives an unrelated chunk.
	q := bytes.Clone(p)
	q[0] ^= 1
	_, refQ, _ := a.SealChunk(q)
	if refQ.ID == refA.ID || refQ.Hash == refA.Hash {
		t.Fatal("different plaintexts, same reference")
	}
	// Listings converge too: the same listing gives the same content reference.
	l := sampleListing()
	c1, err := a.WriteListing(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := a2.WriteListing(l, nil)
	j1, _ := json.Marshal(c1)
	j2, _ := json.Marshal(c2)
	if !bytes.Equal(j1, j2) {
		t.Fatal("same listing, different content references")
	}
}

// sealWithID encrypts p under the key of chunk id: a blob that decrypts for ref.ID but is
// not that chunk. Only a holder of K_chunk can make one.
func sealWithID(t *testing.T, k *Keys, id string, p []byte) []byte {
	t.Helper()
	raw, _ := hex.DecodeString(id)
	if err := k.lock(); err != nil {
		t.Fatal(err)
	}
	defer k.mu.RUnlock()
	aead, err := k.chunkAEAD(raw)
	if err != nil {
		t.Fatal(err)
	}
	return aead.Seal([]byte{0x01}, zeroNonce[:], p, adChunk)
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestOpenChunkHostile(t *testing.T) {
	k := testKeys(t, 1)
	p := randBytes(3000, 1)
	blob, ref, _ := k.SealChunk(p)
	q := randBytes(3000, 2)
	blobQ, refQ, _ := k.SealChunk(q)

	t.Run("hash mismatch", func(t *testing.T) {
		_, err := k.OpenChunk(blobQ, ref)
		wantRule(t, err, RuleHash)
		if !errors.Is(err, blobstore.ErrHashMismatch) {
			t.Fatalf("%v does not wrap ErrHashMismatch", err)
		}
		b := bytes.Clone(blob)
		b[len(b)-1] ^= 1
		_, err = k.OpenChunk(b, ref)
		if !errors.Is(err, blobstore.ErrHashMismatch) {
			t.Fatalf("flipped byte: %v", err)
		}
	})
	t.Run("valid blob of another chunk", func(t *testing.T) {
		// Named by its own hash but with this chunk's id and size: the key derives from the
		// id, so it does not decrypt.
		_, err := k.OpenChunk(blobQ, ChunkRef{Hash: refQ.Hash, ID: ref.ID, Size: ref.Size})
		wantRule(t, err, RuleDecrypt)
	})
	t.Run("id mismatch", func(t *testing.T) {
		forged := sealWithID(t, k, ref.ID, q)
		_, err := k.OpenChunk(forged, ChunkRef{Hash: hashOf(forged), ID: ref.ID, Size: ref.Size})
		wantRule(t, err, RuleID)
	})
	t.Run("truncated", func(t *testing.T) {
		b := blob[:len(blob)-1]
		_, err := k.OpenChunk(b, ChunkRef{Hash: hashOf(b), ID: ref.ID, Size: ref.Size})
		wantRule(t, err, RuleDecrypt)
		_, err = k.OpenChunk(b, ChunkRef{Hash: hashOf(b), ID: ref.ID, Size: ref.Size - 1})
		wantRule(t, err, RuleDecrypt)
		_, err = k.OpenChunk(blob[:1], ChunkRef{Hash: hashOf(blob[:1]), ID: ref.ID, Size: 1})
		wantRule(t, err, RuleDecrypt)
	})
	t.Run("garbled", func(t *testing.T) {
		for _, i := range []int{1, 100, len(blob) - 1} {
			b := bytes.Clone(blob)
			b[i] ^= 0x80
			_, err := k.OpenChunk(b, ChunkRef{Hash: hashOf(b), ID: ref.ID, Size: ref.Size})
			wantRule(t, err, RuleDecrypt)
		}
	})
	t.Run("version", func(t *testing.T) {
		for _, v := range []byte{0x00, 0x02, 0xff} {
			b := bytes.Clone(blob)
			b[0] = v
			_, err := k.OpenChunk(b, ChunkRef{Hash: hashOf(b), ID: ref.ID, Size: ref.Size})
			wantRule(t, err, RuleVersion)
		}
		_, err := k.OpenChunk(nil, ChunkRef{Hash: hashOf(nil), ID: ref.ID, Size: 1})
		wantRule(t, err, RuleVersion)
	})
	t.Run("refs", func(t *testing.T) {
		for name, tc := range map[string]struct {
			ref  ChunkRef
			rule Rule
		}{
			"hole":            {ChunkRef{Size: 10}, RuleRef},
			"half hole":       {ChunkRef{Hash: ref.Hash, Size: ref.Size}, RuleRef},
			"upper case hash": {ChunkRef{Hash: strings.ToUpper(ref.Hash), ID: ref.ID, Size: ref.Size}, RuleRef},
			"short id":        {ChunkRef{Hash: ref.Hash, ID: ref.ID[:63], Size: ref.Size}, RuleRef},
			"2 MiB":           {ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: 2 << 20}, RuleSize},
			"size 0":          {ChunkRef{Hash: ref.Hash, ID: ref.ID}, RuleSize},
		} {
			_, err := k.OpenChunk(blob, tc.ref)
			if BrokenRule(err) != tc.rule {
				t.Errorf("%s: %v, want rule %s", name, err, tc.rule)
			}
		}
	})
}

func TestRootRoundTrip(t *testing.T) {
	k := testKeys(t, 1)
	for _, c := range []Content{
		{Size: 12, Inline: []byte("compressed..")},
		{Size: ChunkSize + 5, Chunks: []ChunkRef{{Hash: hexRepeat('a'), ID: hexRepeat('b'), Size: ChunkSize}, {Hash: hexRepeat('c'), ID: hexRepeat('d'), Size: 5}}},
	} {
		b1, err := k.SealRoot(c)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := k.SealRoot(c)
		if bytes.Equal(b1, b2) || b1[0] != 0x02 {
			t.Fatal("root pointers must differ (random nonce) and start with 0x02")
		}
		got, err := k.OpenRoot(b1, hashOf(b1))
		if err != nil {
			t.Fatal(err)
		}
		j1, _ := json.Marshal(c)
		j2, _ := json.Marshal(got)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("%s != %s", j1, j2)
		}
	}
	// The largest root: a 64 MiB listing in 64 chunks, fits well under MaxRootSize.
	big := Content{Size: MaxListingSize}
	for i := 0; i < 64; i++ {
		big.Chunks = append(big.Chunks, ChunkRef{Hash: hexRepeat('a'), ID: hexRepeat('b'), Size: ChunkSize})
	}
	b, err := k.SealRoot(big)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest root pointer: %d bytes", len(b))
	if _, err := k.OpenRoot(b, hashOf(b)); err != nil {
		t.Fatal(err)
	}
}

func TestRootHostile(t *testing.T) {
	k, other := testKeys(t, 1), testKeys(t, 2)
	good, _ := k.SealRoot(Content{Size: 3, Inline: []byte("abc")})
	_, err := k.OpenRoot(good, hashOf(good[1:]))
	wantRule(t, err, RuleHash)
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatal(err)
	}
	_, err = other.OpenRoot(good, hashOf(good))
	wantRule(t, err, RuleDecrypt)
	chunk, _, _ := k.SealChunk([]byte("a chunk, not a root"))
	_, err = k.OpenRoot(chunk, hashOf(chunk))
	wantRule(t, err, RuleVersion)
	short := good[:20]
	_, err = k.OpenRoot(short, hashOf(short))
	wantRule(t, err, RuleDecrypt)
	garbled := bytes.Clone(good)
	garbled[5] ^= 1
	_, err = k.OpenRoot(garbled, hashOf(garbled))
	wantRule(t, err, RuleDecrypt)
	huge := append([]byte{0x02}, make([]byte, MaxRootSize)...)
	_, err = k.OpenRoot(huge, hashOf(huge))
	wantRule(t, err, RuleSize)

	for plain, rule := range map[string]Rule{
		`{"v":2,"root":{"size":3,"inline":"YWJj"}}`:                         RuleVersion,
		`{"root":{"size":3,"inline":"YWJj"}}`:                               RuleVersion,
		`{"v":1}`:                                                           RuleContent,
		`{"v":1,"root":null}`:                                               RuleContent,
		`{"v":1,"root":{"size":3,"inline":"YWJj"},"x":1}`:                   RuleJSON,
		`{"v":1,"V":1,"root":{"size":3,"inline":"YWJj"}}`:                   RuleJSON,
		`{"v":1,"root":{"size":3,"inline":"YWJj","size":3}}`:                RuleJSON,
		`{"v":1,"root":{"ſize":3,"inline":"YWJj"}}`:                         RuleJSON,
		`{"v":1,"root":{"size":3,"inline":"YWJj"}} `:                        "",
		`{"v":1,"root":{"size":3,"inline":"YWJj"}}{}`:                       RuleJSON,
		`{"v":1,"root":{"size":0}}`:                                         RuleListingSize,
		`{"v":1,"root":{"size":2251799813685248}}`:                          RuleListingSize,
		`{"v":1,"root":{"size":4,"inline":"YWJj"}}`:                         RuleSize,
		`{"v":1,"root":{"size":5,"chunks":[{"hash":"","id":"","size":6}]}}`: RuleSize,
		"{\"v\":1,\"root\":{\"size\":3,\"inline\":\"YW\nJj\"}}":             RuleJSON,   // a raw line break in a string
		`{"v":1,"root":{"size":3,"inline":"YW\nJj"}}`:                       RuleBase64, // an escaped one, in base64
		`{"v":1,"root":{"size":3,"inline":"YW\\Jj"}}`:                       RuleBase64,
		"{\"v\":1,\"root\":{\"size\":3,\"inline\":\"YWJj\xff\"}}":           RuleUTF8,
	} {
		blob, err := k.sealRootPlain([]byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		_, err = k.OpenRoot(blob, hashOf(blob))
		if rule == "" {
			if err != nil {
				t.Errorf("%s: %v", plain, err)
			}
			continue
		}
		if BrokenRule(err) != rule {
			t.Errorf("%s: %v, want rule %s", plain, err, rule)
		}
	}
}
