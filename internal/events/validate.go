// Package events defines every Nostr event nostr-homed reads or writes, their versioned
// content schemas, and the checks an event from a relay must pass before anything uses it.
// docs/EVENTS.md is the prose description of the same formats; keep the two in step.
//
// Relays are untrusted. An event is used only after Validate has checked, in this order, its
// size, kind, author, `d` tag, id, signature and created_at, and its Open* function has
// decrypted (where the content is encrypted) and checked the schema and version. Each refusal
// is a *RuleError naming the rule it broke, so a status page can say why an event was ignored.
//
// Kinds 30078, 30079 and 30081 are addressable and other applications use them too: every
// query filters by author and by our `d` tag ("nostr-homed/<namespace>"), and content that does
// not parse as our schema is refused, not guessed at.
//
// Of several valid versions of the same address the newest wins: the greatest created_at, then
// the lowest id (NIP-01). A republished event therefore needs a created_at strictly greater
// than the one it replaces, which NextCreatedAt gives even when clocks disagree.
package events

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Kinds nostr-homed uses.
const (
	KindSettings   = 30078 // NIP-78 application data: relays, servers, login methods (plaintext)
	KindSecrets    = 30079 // secrets and the home key, NIP-44 encrypted to the owner
	KindManifest   = 30081 // the home manifest: a pointer to the tree's root, NIP-44 encrypted
	KindRelayList  = 10002 // NIP-65 relay list, read when present
	KindServerList = 10063 // BUD-03 user server list, read when present
)

// DefaultNamespace is the namespace a user's home lives in unless configured otherwise.
const DefaultNamespace = "personal"

// dPrefix keeps our addresses apart from other applications' use of the same kinds.
const dPrefix = "nostr-homed/"

var namespaceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// CheckNamespace refuses namespaces that are not 1 to 64 of [a-z0-9_-], starting alphanumeric.
func CheckNamespace(ns string) error {
	if !namespaceRE.MatchString(ns) {
		return fmt.Errorf("events: namespace %q must be 1-64 characters of a-z, 0-9, '_' and '-'", ns)
	}
	return nil
}

// DTag is the `d` tag of the namespace's settings, secrets and manifest events.
func DTag(ns string) string { return dPrefix + ns }

// Size limits. A manifest points at the tree and stays a few KiB whatever the size of the home;
// secrets are bounded by NIP-44's 65535-byte plaintext limit.
const (
	MaxEventBytes       = 128 << 10 // id, pubkey, sig, content and tag values added up
	MaxTags             = 64
	MaxSettingsContent  = 64 << 10 // what Settings.Check allows at its limits, with JSON escaping
	MaxManifestContent  = 8 << 10
	MaxSecretsContent   = 96 << 10 // base64 NIP-44 payload of up to 65535 plaintext bytes
	MaxListContent      = 8 << 10
	MaxFutureSkew       = 10 * time.Minute // created_at further ahead than this is refused
	maxTagValue         = 1024
	maxReasonableCreate = 1 << 40
)

// Rule names one of the checks an event must pass.
type Rule string

const (
	RuleSize       Rule = "size"
	RuleKind       Rule = "kind"
	RuleAuthor     Rule = "author"
	RuleDTag       Rule = "d-tag"
	RuleID         Rule = "id"
	RuleSignature  Rule = "signature"
	RuleCreatedAt  Rule = "created_at"
	RuleEncryption Rule = "encryption"
	RuleSchema     Rule = "schema"
	RuleVersion    Rule = "version"
)

// RuleError says which rule an event broke.
type RuleError struct {
	Rule    Rule
	EventID string // as the event claims it; may be forged
	Detail  string
}

func (e *RuleError) Error() string {
	id := e.EventID
	if len(id) > 16 {
		id = id[:16]
	}
	if id == "" {
		id = "(no id)"
	}
	return fmt.Sprintf("event %s refused by rule %q: %s", id, e.Rule, e.Detail)
}

// BrokenRule returns the rule err reports, or "" if err is not a *RuleError.
func BrokenRule(err error) Rule {
	var re *RuleError
	if errors.As(err, &re) {
		return re.Rule
	}
	return ""
}

func refuse(ev *nostr.Event, rule Rule, format string, args ...any) error {
	return &RuleError{Rule: rule, EventID: ev.ID, Detail: fmt.Sprintf(format, args...)}
}

// Expect is what an event must be to be accepted.
type Expect struct {
	Kind   int
	Author string // hex public key; required
	// D is the required `d` tag. For addressable kinds (30000-39999) it must be set; for
	// others it must be empty.
	D string
	// MaxContent bounds the content; 0 means the default for Kind.
	MaxContent int
	// Now is the reference time for the created_at check; zero means time.Now().
	Now time.Time
}

func defaultMaxContent(kind int) int {
	switch kind {
	case KindSettings:
		return MaxSettingsContent
	case KindManifest:
		return MaxManifestContent
	case KindSecrets:
		return MaxSecretsContent
	}
	return MaxListContent
}

// Validate checks ev against x: size, kind, author, d tag, id, signature and created_at, in
// that order, so the cheap and most telling checks come first. It does not look inside the
// content; the Open* functions do.
func Validate(ev *nostr.Event, x Expect) error {
	if ev == nil {
		return &RuleError{Rule: RuleSchema, Detail: "no event"}
	}
	if err := checkSize(ev, x); err != nil {
		return err
	}
	if ev.Kind != x.Kind {
		return refuse(ev, RuleKind, "kind %d, want %d", ev.Kind, x.Kind)
	}
	if x.Author == "" || ev.PubKey != x.Author {
		return refuse(ev, RuleAuthor, "author %s, want %s", short(ev.PubKey), short(x.Author))
	}
	addressable := x.Kind >= 30000 && x.Kind < 40000
	if !addressable && x.D != "" {
		return refuse(ev, RuleDTag, "d tag %q expected for non-addressable kind %d (caller error)", x.D, x.Kind)
	}
	if addressable {
		if x.D == "" {
			return refuse(ev, RuleDTag, "no d tag expected for addressable kind %d (caller error)", x.Kind)
		}
		if n := countTags(ev, "d"); n != 1 {
			return refuse(ev, RuleDTag, "%d d tags, want exactly one", n)
		}
		if d := ev.Tags.GetD(); d != x.D {
			return refuse(ev, RuleDTag, "d tag %q, want %q", d, x.D)
		}
	}
	if !isHex(ev.ID, 64) || !ev.CheckID() {
		return refuse(ev, RuleID, "id does not match the event's contents")
	}
	if !isHex(ev.Sig, 128) {
		return refuse(ev, RuleSignature, "signature is not 64 bytes of hex")
	}
	if ok, err := ev.CheckSignature(); err != nil || !ok {
		return refuse(ev, RuleSignature, "signature does not verify against the author's key")
	}
	now := x.Now
	if now.IsZero() {
		now = time.Now()
	}
	if ev.CreatedAt <= 0 || int64(ev.CreatedAt) > maxReasonableCreate {
		return refuse(ev, RuleCreatedAt, "created_at %d is not a plausible time", ev.CreatedAt)
	}
	if ev.CreatedAt.Time().After(now.Add(MaxFutureSkew)) {
		return refuse(ev, RuleCreatedAt, "created_at %s is more than %s in the future",
			ev.CreatedAt.Time().UTC().Format(time.RFC3339), MaxFutureSkew)
	}
	return nil
}

func checkSize(ev *nostr.Event, x Expect) error {
	maxContent := x.MaxContent
	if maxContent == 0 {
		maxContent = defaultMaxContent(x.Kind)
	}
	if len(ev.Content) > maxContent {
		return refuse(ev, RuleSize, "content is %d bytes, limit %d", len(ev.Content), maxContent)
	}
	if len(ev.Tags) > MaxTags {
		return refuse(ev, RuleSize, "%d tags, limit %d", len(ev.Tags), MaxTags)
	}
	total := len(ev.Content) + len(ev.ID) + len(ev.PubKey) + len(ev.Sig)
	for _, t := range ev.Tags {
		for _, v := range t {
			if len(v) > maxTagValue {
				return refuse(ev, RuleSize, "a tag value is %d bytes, limit %d", len(v), maxTagValue)
			}
			total += len(v)
		}
	}
	if total > MaxEventBytes {
		return refuse(ev, RuleSize, "event is %d bytes, limit %d", total, MaxEventBytes)
	}
	return nil
}

func countTags(ev *nostr.Event, name string) int {
	n := 0
	for _, t := range ev.Tags {
		if len(t) >= 1 && t[0] == name {
			n++
		}
	}
	return n
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false // NIP-01: lowercase hex only
		}
	}
	return true
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	if s == "" {
		return "(none)"
	}
	return s
}
