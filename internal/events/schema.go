package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nostr-homed/nostr-homed/internal/strictjson"
)

// SchemaVersion is the content version this code writes and the only one it reads.
const SchemaVersion = 1

// content is what every schema type does: check its own fields.
type content interface{ Check() error }

// newEvent checks c, serialises it (encrypted to the owner if sealed), and signs it as kind
// in namespace ns with a created_at strictly after prev's.
func newEvent(ctx context.Context, k nostr.Keyer, kind int, ns string, c content, sealed bool, prev *nostr.Event, now time.Time) (*nostr.Event, error) {
	if err := CheckNamespace(ns); err != nil {
		return nil, err
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	text := string(body)
	if sealed {
		if text, err = encryptSelf(ctx, k, body); err != nil {
			return nil, err
		}
	}
	ev := &nostr.Event{
		Kind:      kind,
		CreatedAt: NextCreatedAt(prev, now),
		Tags:      nostr.Tags{{"d", DTag(ns)}},
		Content:   text,
	}
	return ev, sign(ctx, k, ev, ns)
}

// openEvent validates ev as kind by author in namespace ns, decrypts it with c if cipher is
// not nil, and decodes and checks its content into dst.
func openEvent(ctx context.Context, cipher nostr.Cipher, ev *nostr.Event, kind int, author, ns string, dst content) error {
	if err := Validate(ev, Expect{Kind: kind, Author: author, D: DTag(ns)}); err != nil {
		return err
	}
	body := []byte(ev.Content)
	if cipher != nil {
		var err error
		if body, err = decryptSelf(ctx, cipher, ev); err != nil {
			return err
		}
	}
	if err := decodeVersioned(ev, body, dst); err != nil {
		return err
	}
	if err := dst.Check(); err != nil {
		return refuse(ev, RuleSchema, "%v", err)
	}
	return nil
}

// decodeVersioned checks the content's "v" and then decodes it strictly into dst (package
// strictjson: unknown, repeated or mis-cased keys are refused), so a different application's use of the same kind and d tag, or a newer
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
	if err := strictjson.Decode(content, dst); err != nil {
		return refuse(ev, RuleSchema, "content does not match schema v%d: %v", SchemaVersion, err)
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
