package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// SchemaVersion is the content version this code writes and the only one it reads.
const SchemaVersion = 1

// decodeVersioned checks the content's "v" and then decodes it strictly into dst: unknown
// fields are refused, so a different application's use of the same kind and d tag, or a newer
// format this code does not understand, is never half-read.
func decodeVersioned(ev *nostr.Event, content []byte, dst any) error {
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(content, &head); err != nil {
		return refuse(ev, RuleSchema, "content is not a JSON object: %v", err)
	}
	if head.V == nil {
		return refuse(ev, RuleVersion, "content has no schema version \"v\"")
	}
	if *head.V != SchemaVersion {
		return refuse(ev, RuleVersion, "schema version %d is not supported (this build reads %d)", *head.V, SchemaVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return refuse(ev, RuleSchema, "content does not match schema v%d: %v", SchemaVersion, err)
	}
	if dec.More() {
		return refuse(ev, RuleSchema, "trailing data after the JSON object")
	}
	return nil
}

// decryptSelf opens NIP-44 content the owner encrypted to themself.
func decryptSelf(ctx context.Context, c nostr.Cipher, ev *nostr.Event) ([]byte, error) {
	pt, err := c.Decrypt(ctx, ev.Content, ev.PubKey)
	if err != nil {
		return nil, refuse(ev, RuleEncryption, "cannot decrypt with the owner's key: %v", err)
	}
	return []byte(pt), nil
}

// encryptSelf encrypts plaintext to the signer's own key (NIP-44), so only the owner can read it.
func encryptSelf(ctx context.Context, k nostr.Keyer, plaintext []byte) (string, error) {
	if len(plaintext) > 65535 {
		return "", fmt.Errorf("events: %d bytes is over NIP-44's 65535-byte limit", len(plaintext))
	}
	pk, err := k.GetPublicKey(ctx)
	if err != nil {
		return "", fmt.Errorf("events: signer's public key: %w", err)
	}
	ct, err := k.Encrypt(ctx, string(plaintext), pk)
	if err != nil {
		return "", fmt.Errorf("events: NIP-44 encrypt: %w", err)
	}
	return ct, nil
}

// sign fills in the author and signs ev, then checks the result validates as x would, so a
// writer can never publish what a reader would refuse.
func sign(ctx context.Context, k nostr.Signer, ev *nostr.Event, ns string) error {
	pk, err := k.GetPublicKey(ctx)
	if err != nil {
		return fmt.Errorf("events: signer's public key: %w", err)
	}
	ev.PubKey = pk
	if err := k.SignEvent(ctx, ev); err != nil {
		return fmt.Errorf("events: signing kind %d: %w", ev.Kind, err)
	}
	x := Expect{Kind: ev.Kind, Author: pk}
	if ns != "" {
		x.D = DTag(ns)
	}
	if err := Validate(ev, x); err != nil {
		return fmt.Errorf("events: the event we built does not validate: %w", err)
	}
	return nil
}

func checkURL(field, raw string, schemes ...string) error {
	if len(raw) > 512 {
		return fmt.Errorf("%s: URL longer than 512 bytes", field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %q is not a URL: %v", field, raw, err)
	}
	ok := false
	for _, s := range schemes {
		if u.Scheme == s {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("%s: %q must use %s", field, raw, strings.Join(schemes, " or "))
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%s: %q must have a host and no user info", field, raw)
	}
	return nil
}
