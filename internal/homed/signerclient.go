package homed

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
)

// SignerClient is a nostr.Keyer over org.nostr.Signer: the key of a user's session, used
// without holding it (nostrfs signs manifests and Blossom tokens through it).
type SignerClient struct {
	obj dbus.BusObject
	pk  string
}

var _ nostr.Keyer = (*SignerClient)(nil)

// NewSignerClient returns the signer of uid's session on conn.
func NewSignerClient(conn *dbus.Conn, uid uint32) *SignerClient {
	return &SignerClient{obj: conn.Object(BusName, SignerPath(uid))}
}

func (s *SignerClient) call(ctx context.Context, method string, out *string, args ...any) error {
	if err := s.obj.CallWithContext(ctx, SignerInterface+"."+method, 0, args...).Store(out); err != nil {
		return fmt.Errorf("signer %s: %w", method, err)
	}
	return nil
}

// GetPublicKey implements nostr.Keyer (cached after the first call).
func (s *SignerClient) GetPublicKey(ctx context.Context) (string, error) {
	if s.pk != "" {
		return s.pk, nil
	}
	var pk string
	if err := s.call(ctx, "GetPublicKey", &pk); err != nil {
		return "", err
	}
	s.pk = pk
	return pk, nil
}

// SignEvent implements nostr.Keyer: the bus signs a copy, which is checked and copied back.
func (s *SignerClient) SignEvent(ctx context.Context, ev *nostr.Event) error {
	pk, err := s.GetPublicKey(ctx)
	if err != nil {
		return err
	}
	ev.PubKey = pk
	in, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var out string
	if err := s.call(ctx, "SignEvent", &out, string(in)); err != nil {
		return err
	}
	var signed nostr.Event
	if err := json.Unmarshal([]byte(out), &signed); err != nil {
		return fmt.Errorf("signer SignEvent: %w", err)
	}
	if signed.PubKey != pk || signed.ID != signed.GetID() || signed.Content != ev.Content || signed.Kind != ev.Kind {
		return fmt.Errorf("signer SignEvent: the signed event is not the one sent")
	}
	if ok, _ := signed.CheckSignature(); !ok {
		return fmt.Errorf("signer SignEvent: the signature does not verify")
	}
	*ev = signed
	return nil
}

// Encrypt implements nostr.Cipher (NIP-44).
func (s *SignerClient) Encrypt(ctx context.Context, plaintext, recipient string) (string, error) {
	var out string
	err := s.call(ctx, "Nip44Encrypt", &out, recipient, plaintext)
	return out, err
}

// Decrypt implements nostr.Cipher (NIP-44).
func (s *SignerClient) Decrypt(ctx context.Context, ciphertext, sender string) (string, error) {
	var out string
	err := s.call(ctx, "Nip44Decrypt", &out, sender, ciphertext)
	return out, err
}
