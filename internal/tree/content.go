package tree

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

const (
	// ChunkSize is the largest plaintext of a chunk, and the exact size of every chunk of a
	// stream but the last.
	ChunkSize = 1 << 20
	// MaxInline is the largest stream that may be stored inline in its content reference.
	MaxInline = 4 << 10
	// MaxFileSize is the largest stream (file) a content reference may describe.
	MaxFileSize = 1 << 50
	// maxChunks is how many chunks a MaxFileSize stream has.
	maxChunks = MaxFileSize / ChunkSize
)

// ChunkRef names one chunk of a stream: the sha256 of its blob (to fetch it), its identity
// (to derive its key and check its plaintext) and its plaintext size. A hole has an empty Hash
// and ID: Size zero bytes, nothing stored.
type ChunkRef struct {
	Hash string `json:"hash"`
	ID   string `json:"id"`
	Size int64  `json:"size"`
}

// IsHole reports whether r is a hole (empty hash and id).
func (r ChunkRef) IsHole() bool { return r.Hash == "" && r.ID == "" }

// check checks the form of r on its own: a hole, or a lowercase hex sha256 and a 64-digit
// lowercase hex id; a size of 1 to ChunkSize bytes.
func (r ChunkRef) check() error {
	if !r.IsHole() {
		if err := blobstore.CheckHash(r.Hash); err != nil {
			return &FormatError{Rule: RuleRef, Detail: "hash: " + err.Error(), Err: err}
		}
		if err := blobstore.CheckHash(r.ID); err != nil {
			return &FormatError{Rule: RuleRef, Detail: "id: " + err.Error(), Err: err}
		}
	}
	if r.Size < 1 || r.Size > ChunkSize {
		return refuse(RuleSize, "a chunk of %d bytes: must be 1 to %d", r.Size, ChunkSize)
	}
	return nil
}

// Content is a content reference (docs/FORMAT.md, "Content references"): the byte stream of a
// file, or of a directory's listing. Either Inline holds the whole stream (at most MaxInline
// bytes), or Chunks list it: consecutive, every one but the last exactly ChunkSize bytes.
// Size 0 has neither.
type Content struct {
	Size   int64      `json:"size"`
	Chunks []ChunkRef `json:"chunks,omitempty"`
	Inline []byte     `json:"inline,omitempty"`
}

// Check checks every rule of a content reference: a size of 0 to MaxFileSize; inline bytes
// (at most MaxInline, exactly Size of them) only without chunks; otherwise well-formed chunk
// references whose sizes add up to Size, every one but the last exactly ChunkSize and the
// last 1 to ChunkSize bytes.
func (c Content) Check() error {
	if c.Size < 0 || c.Size > MaxFileSize {
		return refuse(RuleSize, "size %d is outside 0 to 2^50", c.Size)
	}
	if len(c.Inline) > 0 {
		switch {
		case len(c.Chunks) > 0:
			return refuse(RuleSize, "inline bytes and chunks together")
		case len(c.Inline) > MaxInline:
			return refuse(RuleSize, "%d inline bytes, over %d", len(c.Inline), MaxInline)
		case int64(len(c.Inline)) != c.Size:
			return refuse(RuleSize, "%d inline bytes, size says %d", len(c.Inline), c.Size)
		}
		return nil
	}
	if want := numChunks(c.Size); int64(len(c.Chunks)) != want {
		// Report the precise rule if one chunk breaks it; otherwise the count.
		var sum int64
		for i, r := range c.Chunks {
			if err := checkChunkAt(r, i, len(c.Chunks)); err != nil {
				return err
			}
			if sum += r.Size; sum > c.Size {
				break
			}
		}
		return refuse(RuleSize, "%d chunks add up to %d bytes or more, size says %d (%d chunks)", len(c.Chunks), sum, c.Size, want)
	}
	var sum int64
	for i, r := range c.Chunks {
		if err := checkChunkAt(r, i, len(c.Chunks)); err != nil {
			return err
		}
		sum += r.Size
	}
	if sum != c.Size {
		return refuse(RuleSize, "chunks add up to %d bytes, size says %d", sum, c.Size)
	}
	return nil
}

// checkChunkAt checks chunk i of n on its own and its size for its place.
func checkChunkAt(r ChunkRef, i, n int) error {
	if err := r.check(); err != nil {
		return withDetail(err, fmt.Sprintf("chunk %d", i))
	}
	if i < n-1 && r.Size != ChunkSize {
		return refuse(RuleSize, "chunk %d of %d has %d bytes: every chunk but the last has %d", i, n, r.Size, ChunkSize)
	}
	return nil
}

// checkDir checks c as a directory's content: Check, and a listing of 1 to MaxListingSize
// bytes (a DEFLATE stream is never empty).
func (c Content) checkDir() error {
	if c.Size < 1 || c.Size > MaxListingSize {
		return refuse(RuleListingSize, "a directory listing of %d bytes: must be 1 to %d", c.Size, MaxListingSize)
	}
	return c.Check()
}

// numChunks returns how many chunks a stream of size bytes has.
func numChunks(size int64) int64 { return (size + ChunkSize - 1) / ChunkSize }

// ChunkIndex returns the index in c.Chunks of the chunk holding byte off (off / ChunkSize), or
// -1 if c has no chunks (it is inline or empty) or off is outside [0, c.Size).
func (c Content) ChunkIndex(off int64) int {
	if off < 0 || off >= c.Size || len(c.Chunks) == 0 {
		return -1
	}
	i := off / ChunkSize
	if i >= int64(len(c.Chunks)) {
		return -1
	}
	return int(i)
}

// identity returns a digest of everything c names, for cycle detection.
func (c Content) identity() [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(c.Size))
	h.Write(n[:])
	if len(c.Inline) > 0 {
		h.Write([]byte{'i'})
		h.Write(c.Inline)
	}
	for _, r := range c.Chunks {
		h.Write([]byte{'c'})
		h.Write([]byte(r.Hash))
		h.Write([]byte(r.ID))
		binary.BigEndian.PutUint64(n[:], uint64(r.Size))
		h.Write(n[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// wireContent is Content as it is decoded from untrusted JSON.
type wireContent struct {
	Size   int64     `json:"size"`
	Chunks chunkList `json:"chunks"`
	Inline *string   `json:"inline"`
}

// UnmarshalJSON decodes a content reference strictly: unknown fields and null are refused,
// inline bytes must be canonical standard base64, and each chunk reference is checked as it is
// decoded (so a hostile list cannot make many empty references). It does not call Check. Decode
// documents with package strictjson, which also checks the keys.
func (c *Content) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return refuse(RuleJSON, "content is null")
	}
	var w wireContent
	if err := decodeInner(b, &w); err != nil {
		return err
	}
	*c = Content{Size: w.Size, Chunks: []ChunkRef(w.Chunks)}
	if w.Inline != nil {
		in, err := decodeBase64(*w.Inline, MaxInline)
		if err != nil {
			return withDetail(err, "inline")
		}
		c.Inline = in
	}
	return nil
}

// chunkList decodes a list of chunk references one by one, checking each.
type chunkList []ChunkRef

func (l *chunkList) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return refuse(RuleJSON, "chunks is null")
	}
	var out []ChunkRef
	err := decodeArray(b, func(dec jsonDecoder) error {
		if len(out) >= maxChunks {
			return refuse(RuleSize, "more than %d chunks", maxChunks)
		}
		var r ChunkRef
		if err := dec.Decode(&r); err != nil {
			return jsonError(err)
		}
		if err := r.check(); err != nil {
			return withDetail(err, fmt.Sprintf("chunk %d", len(out)))
		}
		out = append(out, r)
		return nil
	})
	*l = out
	return err
}

// decodeBase64 decodes canonical standard base64 (padded, no line breaks, zero padding
// bits) of at most max bytes. An empty string gives nil.
func decodeBase64(s string, max int) ([]byte, error) {
	if len(s) > base64.StdEncoding.EncodedLen(max) {
		return nil, refuse(RuleSize, "more than %d bytes", max)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, &FormatError{Rule: RuleBase64, Detail: err.Error(), Err: err}
	}
	if base64.StdEncoding.EncodedLen(len(b)) != len(s) {
		return nil, refuse(RuleBase64, "not canonical base64 (line breaks)")
	}
	if len(b) > max {
		return nil, refuse(RuleSize, "%d bytes, more than %d", len(b), max)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}
