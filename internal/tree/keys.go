package tree

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

const (
	// HomeKeySize is the size of the home key HK.
	HomeKeySize = 32

	// Blob kinds: the first byte of every blob.
	chunkVersion byte = 0x01
	rootVersion  byte = 0x02

	gcmNonceSize = 12
	gcmTagSize   = 16

	// ChunkOverhead is how many bytes a chunk blob has beyond its plaintext: the version byte
	// and the GCM tag.
	ChunkOverhead = 1 + gcmTagSize

	// MaxRootSize bounds a root pointer blob. Its content reference names a directory
	// listing, which is at most MaxListingSize bytes and so at most 64 chunks: the JSON is
	// about 11 KiB at most.
	MaxRootSize = 64 << 10

	infoChunk = "nostr-homed/v1/chunk"
	infoRoot  = "nostr-homed/v1/root"
)

var (
	zeroNonce [gcmNonceSize]byte
	adChunk   = []byte{chunkVersion}
	adRoot    = []byte{rootVersion}
)

// Keys holds the keys derived from a home key (docs/FORMAT.md, "Keys"). Its methods are safe
// for concurrent use. The home key itself is not kept.
type Keys struct {
	mu    sync.RWMutex
	ok    bool
	chunk [32]byte // K_chunk
	root  [32]byte // K_root
}

// DeriveKeys derives K_chunk and K_root from the 32-byte home key with HKDF-SHA256 (RFC 5869,
// empty salt, 32 bytes of output). The caller keeps (and wipes) homeKey.
func DeriveKeys(homeKey []byte) (*Keys, error) {
	if len(homeKey) != HomeKeySize {
		return nil, fmt.Errorf("tree: home key is %d bytes, want %d", len(homeKey), HomeKeySize)
	}
	k := &Keys{ok: true}
	for _, d := range []struct {
		dst  *[32]byte
		info string
	}{{&k.chunk, infoChunk}, {&k.root, infoRoot}} {
		out, err := hkdf.Key(sha256.New, homeKey, nil, d.info, 32)
		if err != nil {
			k.Wipe()
			return nil, fmt.Errorf("tree: deriving keys: %w", err)
		}
		copy(d.dst[:], out)
		clear(out)
	}
	return k, nil
}

// Wipe zeroes the derived keys. Every later call on k fails with ErrWiped. (AES key schedules
// made during a call live in the heap until collected; Go offers no way to zero them.)
func (k *Keys) Wipe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.chunk[:])
	clear(k.root[:])
	k.ok = false
}

// lock takes the read lock and returns ErrWiped if the keys are gone; on success the caller
// must RUnlock.
func (k *Keys) lock() error {
	k.mu.RLock()
	if !k.ok {
		k.mu.RUnlock()
		return ErrWiped
	}
	return nil
}

// chunkAEAD returns the AES-256-GCM instance for the chunk with identity id. Caller holds
// the read lock.
func (k *Keys) chunkAEAD(id []byte) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, k.chunk[:])
	m.Write([]byte{0x01}) // domain: keys (ids use 0x00, so no id can equal a key)
	m.Write(id)
	key := m.Sum(nil)
	defer clear(key)
	return newGCM(key)
}

// chunkID returns HMAC-SHA256(K_chunk, 0x00 || p). Caller holds the read lock.
func (k *Keys) chunkID(p []byte) []byte {
	m := hmac.New(sha256.New, k.chunk[:])
	m.Write([]byte{0x00}) // domain: ids
	m.Write(p)
	return m.Sum(nil)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// BlobSize returns the size of the blob of a chunk of size plaintext bytes.
func BlobSize(size int64) int64 { return size + ChunkOverhead }

// SealChunk encrypts p (1 to ChunkSize bytes) as a chunk blob and returns the blob with its
// reference. The same p always gives the same blob under the same keys.
func (k *Keys) SealChunk(p []byte) (blob []byte, ref ChunkRef, err error) {
	return k.sealChunk(nil, p)
}

// sealChunk is SealChunk appending to dst[:0] (reusing its memory when large enough).
func (k *Keys) sealChunk(dst, p []byte) ([]byte, ChunkRef, error) {
	if len(p) == 0 || len(p) > ChunkSize {
		return nil, ChunkRef{}, fmt.Errorf("tree: chunk of %d bytes: must be 1 to %d", len(p), ChunkSize)
	}
	if err := k.lock(); err != nil {
		return nil, ChunkRef{}, err
	}
	defer k.mu.RUnlock()
	id := k.chunkID(p)
	aead, err := k.chunkAEAD(id)
	if err != nil {
		return nil, ChunkRef{}, err
	}
	blob := append(dst[:0], chunkVersion)
	blob = aead.Seal(blob, zeroNonce[:], p, adChunk)
	sum := sha256.Sum256(blob)
	return blob, ChunkRef{Hash: hex.EncodeToString(sum[:]), ID: hex.EncodeToString(id), Size: int64(len(p))}, nil
}

// OpenChunk checks and decrypts a chunk blob fetched for ref: sha256(blob) must be ref.Hash
// (else an error wrapping blobstore.ErrHashMismatch), the version byte 0x01, the length that
// of a ref.Size-byte chunk, the GCM tag valid, and HMAC-SHA256(K_chunk, 0x00 || plaintext) ref.ID. It
// returns the plaintext (ref.Size bytes, newly allocated). A hole has no blob: it is refused.
// blob is not modified.
func (k *Keys) OpenChunk(blob []byte, ref ChunkRef) ([]byte, error) {
	return k.openChunk(nil, blob, ref)
}

// openChunk is OpenChunk writing the plaintext to dst[:0] when it has the capacity. On error
// nothing of the plaintext is left in dst.
func (k *Keys) openChunk(dst, blob []byte, ref ChunkRef) ([]byte, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	if ref.IsHole() {
		return nil, refuse(RuleRef, "a hole has no blob to open")
	}
	sum := sha256.Sum256(blob)
	if got := hex.EncodeToString(sum[:]); got != ref.Hash {
		return nil, &FormatError{Rule: RuleHash, Detail: fmt.Sprintf("blob %s hashes to %s", ref.Hash, got), Err: blobstore.ErrHashMismatch}
	}
	if len(blob) == 0 || blob[0] != chunkVersion {
		return nil, refuse(RuleVersion, "blob %s is not a version 1 chunk blob", ref.Hash)
	}
	if int64(len(blob)) != BlobSize(ref.Size) {
		return nil, refuse(RuleDecrypt, "blob %s is %d bytes; a %d-byte chunk's is %d", ref.Hash, len(blob), ref.Size, BlobSize(ref.Size))
	}
	id, _ := hex.DecodeString(ref.ID) // checked by ref.check
	if err := k.lock(); err != nil {
		return nil, err
	}
	defer k.mu.RUnlock()
	aead, err := k.chunkAEAD(id)
	if err != nil {
		return nil, err
	}
	p, err := aead.Open(dst[:0], zeroNonce[:], blob[1:], adChunk)
	if err != nil {
		clear(dst[:cap(dst)])
		return nil, &FormatError{Rule: RuleDecrypt, Detail: fmt.Sprintf("blob %s does not decrypt with this home's keys", ref.Hash), Err: err}
	}
	if !hmac.Equal(k.chunkID(p), id) {
		clear(p)
		return nil, refuse(RuleID, "blob %s decrypts to a chunk other than %s", ref.Hash, ref.ID)
	}
	if int64(len(p)) != ref.Size { // implied by the length check; kept as a guard
		clear(p)
		return nil, refuse(RuleSize, "chunk %s has %d bytes, the reference says %d", ref.ID, len(p), ref.Size)
	}
	return p, nil
}

// rootJSON is the root pointer's plaintext R.
type rootJSON struct {
	V    int      `json:"v"`
	Root *Content `json:"root"`
}

// SealRoot makes a root pointer blob naming c, the root directory's content reference. Each
// call uses a fresh random nonce, so two calls give different blobs.
func (k *Keys) SealRoot(c Content) ([]byte, error) {
	if err := c.checkDir(); err != nil {
		return nil, atEntry(err, "/")
	}
	r, err := json.Marshal(rootJSON{V: 1, Root: &c})
	if err != nil {
		return nil, err
	}
	return k.sealRootPlain(r)
}

// sealRootPlain encrypts R as is (the fuzz test uses it to feed OpenRoot arbitrary plaintext).
func (k *Keys) sealRootPlain(r []byte) ([]byte, error) {
	if 1+gcmNonceSize+len(r)+gcmTagSize > MaxRootSize {
		return nil, refuse(RuleSize, "root pointer of %d bytes is over %d", len(r), MaxRootSize)
	}
	if err := k.lock(); err != nil {
		return nil, err
	}
	defer k.mu.RUnlock()
	aead, err := newGCM(k.root[:])
	if err != nil {
		return nil, err
	}
	blob := make([]byte, 1+gcmNonceSize, 1+gcmNonceSize+len(r)+gcmTagSize)
	blob[0] = rootVersion
	if _, err := rand.Read(blob[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(blob, blob[1:1+gcmNonceSize], r, adRoot), nil
}

// OpenRoot checks and decrypts a root pointer blob fetched by hash (the manifest's
// root.hash) and returns the root directory's content reference, checked.
func (k *Keys) OpenRoot(blob []byte, hash string) (Content, error) {
	if len(blob) > MaxRootSize {
		return Content{}, &FormatError{Path: "/", Rule: RuleSize, Detail: fmt.Sprintf("root pointer blob of %d bytes is over %d", len(blob), MaxRootSize)}
	}
	sum := sha256.Sum256(blob)
	if got := hex.EncodeToString(sum[:]); got != hash {
		return Content{}, &FormatError{Path: "/", Rule: RuleHash, Detail: fmt.Sprintf("root blob %.64q hashes to %s", hash, got), Err: blobstore.ErrHashMismatch}
	}
	if len(blob) == 0 || blob[0] != rootVersion {
		return Content{}, &FormatError{Path: "/", Rule: RuleVersion, Detail: "not a version 1 root pointer blob"}
	}
	if len(blob) < 1+gcmNonceSize+gcmTagSize {
		return Content{}, &FormatError{Path: "/", Rule: RuleDecrypt, Detail: fmt.Sprintf("root pointer blob of %d bytes is too short", len(blob))}
	}
	r, err := k.openRootPlain(blob)
	if err != nil {
		return Content{}, err
	}
	var doc rootJSON
	if err := decodeJSON(r, &doc); err != nil {
		return Content{}, atEntry(err, "/")
	}
	if doc.V != 1 {
		return Content{}, &FormatError{Path: "/", Rule: RuleVersion, Detail: fmt.Sprintf("root pointer version %d, want 1", doc.V)}
	}
	if doc.Root == nil {
		return Content{}, &FormatError{Path: "/", Rule: RuleContent, Detail: "root pointer without a root"}
	}
	if err := doc.Root.checkDir(); err != nil {
		return Content{}, atEntry(err, "/")
	}
	return *doc.Root, nil
}

func (k *Keys) openRootPlain(blob []byte) ([]byte, error) {
	if err := k.lock(); err != nil {
		return nil, err
	}
	defer k.mu.RUnlock()
	aead, err := newGCM(k.root[:])
	if err != nil {
		return nil, err
	}
	r, err := aead.Open(nil, blob[1:1+gcmNonceSize], blob[1+gcmNonceSize:], adRoot)
	if err != nil {
		return nil, &FormatError{Path: "/", Rule: RuleDecrypt, Detail: "root pointer does not decrypt with this home's keys", Err: err}
	}
	return r, nil
}
