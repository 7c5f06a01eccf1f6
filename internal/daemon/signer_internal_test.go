package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/keys"
)

func errName(err error) string {
	var he *homed.Error
	if errors.As(err, &he) {
		return he.Name
	}
	return ""
}

// TestBusKeyerNamesErrors: a payload that does not decrypt is InvalidArgs, and a key wiped
// by the last CloseSession while a call was on its way is Unavailable, not a failure.
func TestBusKeyerNamesErrors(t *testing.T) {
	raw, _ := hex.DecodeString(nostr.GeneratePrivateKey())
	sec, err := keys.FromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	b := &busKeyer{k: sec, user: "alice"}
	ctx := context.Background()
	peer, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	if _, err := b.Decrypt(ctx, "Ag"+strings.Repeat("A", 198), peer); errName(err) != homed.ErrInvalidArgs {
		t.Fatalf("a payload that does not decrypt: %v (%q)", err, errName(err))
	}
	if _, err := b.Encrypt(ctx, "x", "02"); errName(err) != homed.ErrInvalidArgs {
		t.Fatalf("a malformed peer: %v (%q)", err, errName(err))
	}
	sec.Wipe()
	for name, f := range map[string]func() error{
		"GetPublicKey": func() error { _, err := b.GetPublicKey(ctx); return err },
		"SignEvent":    func() error { return b.SignEvent(ctx, &nostr.Event{Kind: 1}) },
		"Encrypt":      func() error { _, err := b.Encrypt(ctx, "x", peer); return err },
		"Decrypt":      func() error { _, err := b.Decrypt(ctx, "Ag"+strings.Repeat("A", 198), peer); return err },
	} {
		if err := f(); errName(err) != homed.ErrUnavailable || !strings.Contains(err.Error(), "session of alice has ended") {
			t.Fatalf("%s with a wiped key: %v (%q)", name, err, errName(err))
		}
	}
}
