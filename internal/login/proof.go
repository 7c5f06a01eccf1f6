package login

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode"

	"github.com/nbd-wtf/go-nostr"
)

// KindLoginProof is the kind of a login proof. It is in the ephemeral range (20000-29999), so
// relays do not keep it if it ever reaches one, and it is distinct from NIP-42's relay AUTH
// (22242), Blossom's authorization (24242) and NIP-98's HTTP auth (27235): an event a user
// signed for a relay, a Blossom server or a web service can never be accepted as a login, and
// a login proof means nothing to them. It is not registered in any NIP.
const KindLoginProof = 29242

// Defaults of Options.
const (
	DefaultTTL        = 60 * time.Second
	DefaultMaxPerUser = 64
	DefaultMaxTotal   = 1024
	// MaxCreatedAtSkew bounds how far the proof's created_at may be from the issued one (a
	// remote signer may restamp it). Freshness itself comes from the expiration tag.
	MaxCreatedAtSkew = 10 * time.Minute
)

// Challenge is one login attempt: what the user's key must sign. Values are copies; changing
// them does not change what Verify expects.
type Challenge struct {
	LoginID   string // names the attempt in Verify; random, unguessable
	User      string
	PubKey    string // the enrolled key, hex
	Host      string
	Service   string // PAM service
	Nonce     string // 32 random bytes, hex: the challenge tag
	IssuedAt  time.Time
	ExpiresAt time.Time // whole seconds, as in the expiration tag
}

// Content is the proof's content, readable by a person approving it on a remote signer.
func (c *Challenge) Content() string { return "nostr-homed login to " + c.Host }

// Tags are the proof's tags, in the order issued.
func (c *Challenge) Tags() nostr.Tags {
	return nostr.Tags{
		{"challenge", c.Nonce},
		{"host", c.Host},
		{"service", c.Service},
		{"expiration", strconv.FormatInt(c.ExpiresAt.Unix(), 10)},
	}
}

// Unsigned returns a fresh unsigned proof event to be signed by the user's key.
func (c *Challenge) Unsigned() *nostr.Event {
	return &nostr.Event{
		Kind:      KindLoginProof,
		CreatedAt: nostr.Timestamp(c.IssuedAt.Unix()),
		Tags:      c.Tags(),
		Content:   c.Content(),
	}
}

// Options configures an Issuer. Zero values mean the defaults.
type Options struct {
	TTL        time.Duration    // how long a challenge may be answered; default 60 s
	Now        func() time.Time // the clock; default time.Now
	MaxPerUser int              // outstanding logins per user; the oldest is dropped beyond
	MaxTotal   int              // outstanding logins in all; the oldest is dropped beyond
}

// Issuer issues login challenges and verifies their proofs: each is fresh (it expires after
// the TTL), single use (the first Verify consumes it, whatever the outcome) and bound to one
// user's enrolled key, one host and one PAM service.
//
// Locking: one mutex guards the outstanding logins and the records of consumed logins and
// challenges. It is held only for map work (lookup, consume, sweep, bounds), never while
// signatures are checked, so Verify calls run their crypto in parallel. An Issuer is safe
// for concurrent use.
//
// Consumed login IDs and challenges are remembered until their challenge has been expired for
// one TTL, so that a second Verify, or the same signed proof under another login ID, is
// reported as ErrReplayed. Acceptance never depends on that memory: a proof must carry the
// challenge of the very login it answers, each challenge is random and consumed by its first
// Verify, so once forgotten a replay is still refused (as ErrUnknownLogin or ErrBadProof).
type Issuer struct {
	ttl        time.Duration
	now        func() time.Time
	maxPerUser int
	maxTotal   int

	mu         sync.Mutex
	seq        uint64
	pending    map[string]*pendingLogin // login ID -> outstanding
	usedIDs    map[string]time.Time     // consumed login ID -> forget after
	usedNonces map[string]time.Time     // consumed challenge -> forget after
	nextSweep  time.Time
}

type pendingLogin struct {
	ch  Challenge
	seq uint64 // creation order, for dropping the oldest
}

// NewIssuer returns an Issuer with opts.
func NewIssuer(opts Options) *Issuer {
	is := &Issuer{
		ttl:        opts.TTL,
		now:        opts.Now,
		maxPerUser: opts.MaxPerUser,
		maxTotal:   opts.MaxTotal,
		pending:    map[string]*pendingLogin{},
		usedIDs:    map[string]time.Time{},
		usedNonces: map[string]time.Time{},
	}
	if is.ttl <= 0 {
		is.ttl = DefaultTTL
	}
	if is.ttl < time.Second {
		is.ttl = time.Second // the expiration tag has whole seconds
	}
	if is.now == nil {
		is.now = time.Now
	}
	if is.maxPerUser <= 0 {
		is.maxPerUser = DefaultMaxPerUser
	}
	if is.maxTotal <= 0 {
		is.maxTotal = DefaultMaxTotal
	}
	return is
}

// TTL is how long a challenge can be answered.
func (is *Issuer) TTL() time.Duration { return is.ttl }

// Begin starts a login of user, whose enrolled key is pubkey (hex), on host for a PAM service.
func (is *Issuer) Begin(user, pubkey, host, service string) (*Challenge, error) {
	if err := checkName("user", user, 256); err != nil {
		return nil, err
	}
	if err := checkName("host", host, 253); err != nil {
		return nil, err
	}
	if err := checkName("service", service, 64); err != nil {
		return nil, err
	}
	if !nostr.IsValidPublicKey(pubkey) {
		return nil, newErr(ErrInvalid, nil, "enrolled public key %q is not a valid hex public key", pubkey)
	}
	nonce, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	id, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	now := is.now()
	ch := Challenge{
		LoginID:  id,
		User:     user,
		PubKey:   pubkey,
		Host:     host,
		Service:  service,
		Nonce:    nonce,
		IssuedAt: time.Unix(now.Unix(), 0),
		// Rounded up to the second the expiration tag can say, so a challenge lives at least
		// its TTL (rounding down cut a 1 s TTL to almost nothing).
		ExpiresAt: time.Unix(now.Add(is.ttl).Add(time.Second-1).Unix(), 0),
	}

	is.mu.Lock()
	defer is.mu.Unlock()
	is.sweepLocked(now, false)
	is.dropOldestLocked(func(p *pendingLogin) bool { return p.ch.User == user }, is.maxPerUser-1)
	is.dropOldestLocked(func(*pendingLogin) bool { return true }, is.maxTotal-1)
	is.seq++
	is.pending[id] = &pendingLogin{ch: ch, seq: is.seq}
	out := ch
	return &out, nil
}

// Lookup returns the challenge of an outstanding login without consuming it (CompleteLogin
// needs it to sign with the password). It fails like Verify for consumed, expired and
// unknown logins.
func (is *Issuer) Lookup(loginID string) (*Challenge, error) {
	now := is.now()
	is.mu.Lock()
	defer is.mu.Unlock()
	p, ok := is.pending[loginID]
	if !ok {
		if _, used := is.usedIDs[loginID]; used {
			return nil, newErr(ErrReplayed, nil, "login %s was already completed", shortID(loginID))
		}
		return nil, newErr(ErrUnknownLogin, nil, "no outstanding login %s", shortID(loginID))
	}
	if !now.Before(p.ch.ExpiresAt) {
		return nil, newErr(ErrExpired, nil, "login %s expired at %s", shortID(loginID), p.ch.ExpiresAt.UTC().Format(time.RFC3339))
	}
	out := p.ch
	return &out, nil
}

// Cancel forgets an outstanding login (CancelLogin, or a failed attempt before Verify such as
// a wrong password). It reports whether the login was outstanding.
func (is *Issuer) Cancel(loginID string) bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	_, ok := is.pending[loginID]
	delete(is.pending, loginID)
	return ok
}

// Outstanding is the number of logins waiting for Verify (including expired ones not yet
// swept).
func (is *Issuer) Outstanding() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return len(is.pending)
}

// Verify checks signed as the answer to loginID, in this order: the login is outstanding
// (ErrUnknownLogin; ErrReplayed if it was already used), and it is consumed now, whatever
// follows; the proof's challenge was not used by another login (ErrReplayed); the login has
// not expired (ErrExpired); the event is the issued proof: kind, tags exactly as issued
// (challenge, host, service, expiration), content, created_at near the issued one, valid id
// and signature (ErrBadProof); and its author is the enrolled key (ErrWrongKey). nil means
// the user proved possession of the enrolled key for this login, once.
func (is *Issuer) Verify(loginID string, signed *nostr.Event) error {
	now := is.now()

	is.mu.Lock()
	is.sweepLocked(now, false)
	p, ok := is.pending[loginID]
	if !ok {
		_, used := is.usedIDs[loginID]
		is.mu.Unlock()
		if used {
			return newErr(ErrReplayed, nil, "login %s was already completed", shortID(loginID))
		}
		return newErr(ErrUnknownLogin, nil, "no outstanding login %s", shortID(loginID))
	}
	delete(is.pending, loginID)
	forget := p.ch.ExpiresAt.Add(is.ttl)
	is.usedIDs[loginID] = forget
	replayed := false
	if c := challengeOf(signed); c != "" {
		_, replayed = is.usedNonces[c]
	}
	is.usedNonces[p.ch.Nonce] = forget
	is.trimUsedLocked(now)
	is.mu.Unlock()

	if replayed {
		return newErr(ErrReplayed, nil, "the proof answers an earlier login's challenge")
	}
	if !now.Before(p.ch.ExpiresAt) {
		return newErr(ErrExpired, nil, "login %s expired at %s", shortID(loginID), p.ch.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return checkProof(&p.ch, signed)
}

// checkProof is Verify's check of the event itself against the issued challenge.
func checkProof(ch *Challenge, ev *nostr.Event) error {
	if ev == nil {
		return newErr(ErrBadProof, nil, "no signed event")
	}
	if ev.Kind != KindLoginProof {
		return newErr(ErrBadProof, nil, "kind %d, want %d", ev.Kind, KindLoginProof)
	}
	want := ch.Tags()
	if len(ev.Tags) != len(want) {
		return newErr(ErrBadProof, nil, "%d tags, want exactly %d (challenge, host, service, expiration)", len(ev.Tags), len(want))
	}
	// Exactly the issued tags, each once, in any order.
	seen := make([]bool, len(want))
	for _, t := range ev.Tags {
		i := slices.IndexFunc(want, func(w nostr.Tag) bool { return len(t) >= 1 && w[0] == t[0] })
		if i < 0 {
			return newErr(ErrBadProof, nil, "unexpected tag %q", clip(firstOf(t)))
		}
		if seen[i] {
			return newErr(ErrBadProof, nil, "tag %q appears twice", want[i][0])
		}
		seen[i] = true
		if len(t) != 2 || t[1] != want[i][1] {
			return newErr(ErrBadProof, nil, "tag %q is not the issued one", want[i][0])
		}
	}
	if ev.Content != ch.Content() {
		return newErr(ErrBadProof, nil, "content is not the issued one")
	}
	if d := ev.CreatedAt.Time().Sub(ch.IssuedAt); d > MaxCreatedAtSkew || d < -MaxCreatedAtSkew {
		return newErr(ErrBadProof, nil, "created_at is %s away from the issue time", d)
	}
	if !isLowerHex(ev.ID, 64) || !ev.CheckID() {
		return newErr(ErrBadProof, nil, "id does not match the event")
	}
	if !isLowerHex(ev.PubKey, 64) || !isLowerHex(ev.Sig, 128) {
		return newErr(ErrBadProof, nil, "malformed pubkey or signature")
	}
	if ok, err := ev.CheckSignature(); !ok || err != nil {
		return newErr(ErrBadProof, nil, "signature does not verify against the event's pubkey")
	}
	if ev.PubKey != ch.PubKey {
		return newErr(ErrWrongKey, nil, "proof signed by %s, enrolled key is %s", clip(ev.PubKey), clip(ch.PubKey))
	}
	return nil
}

// sweepLocked forgets logins expired for more than one TTL and consumed records past their
// time. Unless forced it runs at most once a second (of the Issuer's clock).
func (is *Issuer) sweepLocked(now time.Time, force bool) {
	if !force && now.Before(is.nextSweep) {
		return
	}
	is.nextSweep = now.Add(time.Second)
	for id, p := range is.pending {
		if now.After(p.ch.ExpiresAt.Add(is.ttl)) {
			delete(is.pending, id)
		}
	}
	for _, m := range []map[string]time.Time{is.usedIDs, is.usedNonces} {
		for k, t := range m {
			if now.After(t) {
				delete(m, k)
			}
		}
	}
}

// dropOldestLocked removes the oldest outstanding logins matching match until at most keep
// remain.
func (is *Issuer) dropOldestLocked(match func(*pendingLogin) bool, keep int) {
	var ids []string
	for id, p := range is.pending {
		if match(p) {
			ids = append(ids, id)
		}
	}
	if len(ids) <= keep {
		return
	}
	slices.SortFunc(ids, func(a, b string) int {
		sa, sb := is.pending[a].seq, is.pending[b].seq
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	for _, id := range ids[:len(ids)-keep] {
		delete(is.pending, id)
	}
}

// trimUsedLocked bounds the consumed records (4 × MaxTotal each), forgetting the soonest to
// expire first. Forgetting only weakens the error reported for a replay, not the refusal.
func (is *Issuer) trimUsedLocked(now time.Time) {
	limit := 4 * is.maxTotal
	for _, m := range []map[string]time.Time{is.usedIDs, is.usedNonces} {
		if len(m) <= limit {
			continue
		}
		is.sweepLocked(now, true)
		if len(m) <= limit {
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return m[a].Compare(m[b]) })
		for _, k := range keys[:len(keys)-limit] {
			delete(m, k)
		}
	}
}

func challengeOf(ev *nostr.Event) string {
	if ev == nil {
		return ""
	}
	for _, t := range ev.Tags {
		if len(t) >= 2 && t[0] == "challenge" {
			return t[1]
		}
	}
	return ""
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("login: reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// checkName refuses empty, overlong, and whitespace- or control-containing values: they end
// up in tags a person reads on a remote signer.
func checkName(what, s string, max int) error {
	if s == "" || len(s) > max {
		return newErr(ErrInvalid, nil, "%s must be 1 to %d bytes", what, max)
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return newErr(ErrInvalid, nil, "%s %q has a space, control or invalid character", what, clip(s))
		}
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func firstOf(t nostr.Tag) string {
	if len(t) == 0 {
		return ""
	}
	return t[0]
}

func clip(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func shortID(id string) string { return clip(id) }
