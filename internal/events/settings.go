package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nostr-homed/nostr-homed/internal/blossom"
)

// Settings is the content of a kind 30078 event: where a user's home lives and how they log in.
//
// It is plaintext on purpose: a machine must read it before the user has unlocked anything
// (which relays to ask for the manifest, which login method to offer). It holds no file names,
// no tree root and no secret; the password-locked key (NIP-49) is public by design and its
// strength rests on the password and scrypt's cost (see docs/SECURITY.md).
type Settings struct {
	V       int           `json:"v"`
	Relays  RelaySettings `json:"relays"`
	Blossom []Server      `json:"blossom,omitempty"`
	IPFS    []string      `json:"ipfs,omitempty"` // kubo RPC endpoints
	Login   []LoginMethod `json:"login"`
}

// RelaySettings lists the relays to read from and to write to.
type RelaySettings struct {
	Read  []string `json:"read"`
	Write []string `json:"write"`
}

// Server is a Blossom server and the auth header encoding it wants.
type Server struct {
	URL  string `json:"url"`
	Auth string `json:"auth,omitempty"` // "base64url" (default) or "base64"
}

// Login method types.
const (
	LoginPassword     = "password"      // NIP-49 ncryptsec, unlocked with the user's password
	LoginRemoteSigner = "remote-signer" // NIP-46 bunker
)

// LoginMethod is one way to log in, in order of preference.
type LoginMethod struct {
	Type      string `json:"type"`
	Ncryptsec string `json:"ncryptsec,omitempty"` // for "password"
	Bunker    string `json:"bunker,omitempty"`    // bunker:// URI, for "remote-signer"
}

// Limits on list lengths, so a hostile event cannot make a machine dial a thousand hosts.
const (
	maxRelays  = 16
	maxServers = 8
	maxLogins  = 4
)

// Check validates the settings' fields.
func (s *Settings) Check() error {
	if s.V != SchemaVersion {
		return fmt.Errorf("settings: version %d, want %d", s.V, SchemaVersion)
	}
	if len(s.Relays.Read) == 0 && len(s.Relays.Write) == 0 {
		return fmt.Errorf("settings: no relays")
	}
	for _, l := range [][]string{s.Relays.Read, s.Relays.Write} {
		if len(l) > maxRelays {
			return fmt.Errorf("settings: %d relays, limit %d", len(l), maxRelays)
		}
		for _, r := range l {
			if err := checkURL("relay", r, "wss", "ws"); err != nil {
				return fmt.Errorf("settings: %w", err)
			}
		}
	}
	if len(s.Blossom)+len(s.IPFS) > maxServers {
		return fmt.Errorf("settings: %d servers, limit %d", len(s.Blossom)+len(s.IPFS), maxServers)
	}
	for _, b := range s.Blossom {
		if err := checkURL("blossom server", b.URL, "https", "http"); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
		if _, err := blossom.ParseEncoding(b.Auth); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
	}
	for _, e := range s.IPFS {
		if err := checkURL("ipfs endpoint", e, "https", "http"); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
	}
	if len(s.Login) == 0 || len(s.Login) > maxLogins {
		return fmt.Errorf("settings: %d login methods, want 1 to %d", len(s.Login), maxLogins)
	}
	for _, m := range s.Login {
		switch m.Type {
		case LoginPassword:
			if !strings.HasPrefix(m.Ncryptsec, "ncryptsec1") || len(m.Ncryptsec) > 512 || m.Bunker != "" {
				return fmt.Errorf("settings: a password login needs an ncryptsec1... key and nothing else")
			}
		case LoginRemoteSigner:
			if !strings.HasPrefix(m.Bunker, "bunker://") || len(m.Bunker) > 2048 || m.Ncryptsec != "" {
				return fmt.Errorf("settings: a remote-signer login needs a bunker:// URI and nothing else")
			}
		default:
			return fmt.Errorf("settings: unknown login method %q", m.Type)
		}
	}
	return nil
}

// NewSettingsEvent builds and signs the settings event for namespace ns. prev is the version
// it replaces, if any, so that created_at is strictly greater.
func NewSettingsEvent(ctx context.Context, k nostr.Signer, ns string, s Settings, prev *nostr.Event, now time.Time) (*nostr.Event, error) {
	if err := CheckNamespace(ns); err != nil {
		return nil, err
	}
	s.V = SchemaVersion
	if err := s.Check(); err != nil {
		return nil, err
	}
	content, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	ev := &nostr.Event{
		Kind:      KindSettings,
		CreatedAt: NextCreatedAt(prev, now),
		Tags:      nostr.Tags{{"d", DTag(ns)}},
		Content:   string(content),
	}
	return ev, sign(ctx, k, ev, ns)
}

// OpenSettings validates a settings event of author in namespace ns and decodes it.
func OpenSettings(ev *nostr.Event, author, ns string) (*Settings, error) {
	if err := Validate(ev, Expect{Kind: KindSettings, Author: author, D: DTag(ns)}); err != nil {
		return nil, err
	}
	var s Settings
	if err := decodeVersioned(ev, []byte(ev.Content), &s); err != nil {
		return nil, err
	}
	if err := s.Check(); err != nil {
		return nil, refuse(ev, RuleSchema, "%v", err)
	}
	return &s, nil
}
