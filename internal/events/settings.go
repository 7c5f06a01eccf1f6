package events

import (
	"context"
	"fmt"
	"net/url"
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
	Auth string `json:"auth,omitempty"` // "base64url" (default), or "base64" (also spelled "base64std")
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
	if len(s.Blossom) > maxServers {
		return fmt.Errorf("settings: %d servers, limit %d", len(s.Blossom), maxServers)
	}
	for _, b := range s.Blossom {
		if err := checkURL("blossom server", b.URL, "https", "http"); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
		if _, err := blossom.ParseEncoding(b.Auth); err != nil {
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
			// A bunker's secret lets whoever holds it connect as a client: never publish it.
			if u, err := url.Parse(m.Bunker); err != nil || u.Query().Has("secret") {
				return fmt.Errorf("settings: the bunker:// URI must not carry a secret (it would be public)")
			}
		default:
			return fmt.Errorf("settings: unknown login method %q", m.Type)
		}
	}
	return nil
}

// NewSettingsEvent builds and signs the settings event for namespace ns. prev is the version
// it replaces, if any, so that created_at is strictly greater. Settings are not encrypted (see
// Settings), so k only needs to sign.
func NewSettingsEvent(ctx context.Context, k nostr.Signer, ns string, s Settings, prev *nostr.Event, now time.Time) (*nostr.Event, error) {
	s.V = SchemaVersion
	return newEvent(ctx, signOnly{k}, KindSettings, ns, &s, false, prev, now)
}

// OpenSettings validates a settings event of author in namespace ns and decodes it.
func OpenSettings(ev *nostr.Event, author, ns string) (*Settings, error) {
	var s Settings
	if err := openEvent(context.Background(), nil, ev, KindSettings, author, ns, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// signOnly lets a plain Signer through newEvent, which never encrypts for unsealed content.
type signOnly struct{ nostr.Signer }

func (signOnly) Encrypt(context.Context, string, string) (string, error) {
	return "", fmt.Errorf("events: settings are never encrypted")
}

func (signOnly) Decrypt(context.Context, string, string) (string, error) {
	return "", fmt.Errorf("events: settings are never encrypted")
}
