// Package blossom speaks the Blossom protocol: BUD-01 (GET/HEAD with Range), BUD-02 (PUT
// /upload), BUD-04 (PUT /mirror), BUD-06 (HEAD /upload preflight) and BUD-11 (kind 24242
// authorization). It holds the parts both sides share (tokens, descriptors) and the client,
// which implements blobstore.Store over a list of servers; the server is package
// blossomserver.
//
// The client streams in both directions: uploads read from an io.ReaderAt once per attempt and
// per server, downloads hash as they read. It uploads to every configured server and reads
// from the first that answers with the right bytes. Servers are untrusted: every download is
// checked against its sha256 and every upload's descriptor against the hash and size sent.
package blossom

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// Descriptor is a BUD-02 blob descriptor.
type Descriptor struct {
	URL      string `json:"url"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	Uploaded int64  `json:"uploaded"`
}

// maxDescriptor bounds what we read of a descriptor: it is a few hundred bytes.
const maxDescriptor = 64 << 10

// DecodeDescriptor reads one descriptor and checks its fields' form.
func DecodeDescriptor(r io.Reader) (Descriptor, error) {
	var d Descriptor
	dec := json.NewDecoder(io.LimitReader(r, maxDescriptor))
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("blossom: malformed descriptor: %w", err)
	}
	if err := blobstore.CheckHash(d.SHA256); err != nil {
		return d, fmt.Errorf("blossom: descriptor sha256: %w", err)
	}
	if d.Size < 0 {
		return d, fmt.Errorf("blossom: descriptor size %d is negative", d.Size)
	}
	return d, nil
}

// Check verifies that d names the blob that was sent.
func (d Descriptor) Check(hash string, size int64) error {
	if d.SHA256 != hash {
		return fmt.Errorf("%w: server stored %s, we sent %s", blobstore.ErrHashMismatch, d.SHA256, hash)
	}
	if d.Size != size {
		return fmt.Errorf("%w: server stored %d bytes, we sent %d", blobstore.ErrHashMismatch, d.Size, size)
	}
	return nil
}
