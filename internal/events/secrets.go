package events

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Secrets is the decrypted content of a kind 30079 event: the key the home's tree is
// encrypted with, and small files (SSH keys, tokens) that a session gets on tmpfs under
// /run/nostr-homed/UID/secrets/. The event is NIP-44 encrypted to the owner; the plaintext
// must fit NIP-44's 65535 bytes, so large secrets belong in the home instead.
type Secrets struct {
	V int `json:"v"`
	// HomeKey is 32 bytes of hex: the root of the keys that encrypt the home (docs/FORMAT.md).
	HomeKey string       `json:"home_key,omitempty"`
	Files   []SecretFile `json:"files,omitempty"`
}

// SecretFile is one file in the session's secrets directory.
type SecretFile struct {
	Name string `json:"name"` // a plain file name: no '/', no leading '.'
	Data []byte `json:"data"` // base64 in JSON
}

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

const maxSecretFiles = 64

// Check validates the secrets' fields; file names are safe to join to a directory.
func (s *Secrets) Check() error {
	if s.V != SchemaVersion {
		return fmt.Errorf("secrets: version %d, want %d", s.V, SchemaVersion)
	}
	if s.HomeKey != "" {
		if b, err := hex.DecodeString(s.HomeKey); err != nil || len(b) != 32 {
			return fmt.Errorf("secrets: home_key must be 32 bytes of hex")
		}
	}
	if len(s.Files) > maxSecretFiles {
		return fmt.Errorf("secrets: %d files, limit %d", len(s.Files), maxSecretFiles)
	}
	seen := map[string]bool{}
	for _, f := range s.Files {
		if !secretNameRE.MatchString(f.Name) {
			return fmt.Errorf("secrets: file name %q is not a plain name (A-Z a-z 0-9 . _ -, not starting with '.')", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("secrets: file %q appears twice", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// NewSecretsEvent encrypts s to the owner and signs it for namespace ns.
func NewSecretsEvent(ctx context.Context, k nostr.Keyer, ns string, s Secrets, prev *nostr.Event, now time.Time) (*nostr.Event, error) {
	s.V = SchemaVersion
	return newEvent(ctx, k, KindSecrets, ns, &s, true, prev, now)
}

// OpenSecrets validates a secrets event of author in namespace ns and decrypts it with c.
func OpenSecrets(ctx context.Context, c nostr.Cipher, ev *nostr.Event, author, ns string) (*Secrets, error) {
	var s Secrets
	if err := openEvent(ctx, c, ev, KindSecrets, author, ns, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
