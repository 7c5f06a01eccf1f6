package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

// Manifest is the decrypted content of a kind 30081 event: a pointer to the root of the home's
// tree, which lives in encrypted blobs (docs/FORMAT.md). It stays a few hundred bytes whatever
// the size of the home, and it is NIP-44 encrypted to the owner so that relays cannot learn the
// root, and from it walk the tree's structure or tell which blobs belong to the current version.
// (Blossom servers can still tell which blobs one user uploaded, from the upload tokens.)
type Manifest struct {
	V    int     `json:"v"`
	Root BlobRef `json:"root"`
	// Generation counts publications of this home: parent's generation plus one.
	Generation uint64 `json:"generation"`
	// Parent is the id of the manifest event this one was based on ("" for the first). A
	// writer publishes only if the newest manifest on the relays is still its parent, so a
	// concurrent writer's work is never overwritten.
	Parent string `json:"parent"`
	// Machine says which machine published, for status and conflict reports.
	Machine string `json:"machine,omitempty"`
}

// BlobRef names a blob of the tree by the sha256 of its (encrypted) bytes and its size.
type BlobRef struct {
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// MaxBlobSize bounds any size a manifest may claim, so an absurd size is refused before
// anything is allocated or fetched for it.
const MaxBlobSize = 1 << 40

// Check validates the manifest's fields.
func (m *Manifest) Check() error {
	if m.V != SchemaVersion {
		return fmt.Errorf("manifest: version %d, want %d", m.V, SchemaVersion)
	}
	if err := blobstore.CheckHash(m.Root.Hash); err != nil {
		return fmt.Errorf("manifest: root: %w", err)
	}
	if m.Root.Size <= 0 || m.Root.Size > MaxBlobSize {
		return fmt.Errorf("manifest: root size %d out of range", m.Root.Size)
	}
	if m.Parent != "" && !isHex(m.Parent, 64) {
		return fmt.Errorf("manifest: parent %q is not an event id", m.Parent)
	}
	if m.Generation < 1 {
		return fmt.Errorf("manifest: generation %d, must be at least 1", m.Generation)
	}
	if (m.Parent == "") != (m.Generation == 1) {
		return fmt.Errorf("manifest: generation %d with parent %q: only generation 1 has no parent", m.Generation, m.Parent)
	}
	if len(m.Machine) > 255 {
		return fmt.Errorf("manifest: machine name longer than 255 bytes")
	}
	return nil
}

// NewManifestEvent encrypts m to the owner and signs it as the manifest of namespace ns.
// parent is the manifest event this one replaces (nil for the first): it sets Parent,
// Generation and a strictly greater created_at.
func NewManifestEvent(ctx context.Context, k nostr.Keyer, ns string, m Manifest, parent *nostr.Event, parentGen uint64, now time.Time) (*nostr.Event, error) {
	m.V = SchemaVersion
	m.Parent, m.Generation = "", 1
	if parent != nil {
		m.Parent, m.Generation = parent.ID, parentGen+1
	}
	return newEvent(ctx, k, KindManifest, ns, &m, true, parent, now)
}

// OpenManifest validates a manifest event of author in namespace ns, decrypts it with c (the
// owner's key) and checks its schema.
func OpenManifest(ctx context.Context, c nostr.Cipher, ev *nostr.Event, author, ns string) (*Manifest, error) {
	var m Manifest
	if err := openEvent(ctx, c, ev, KindManifest, author, ns, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
