package blossom

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// KindAuth is the kind of a BUD-11 authorization token.
const KindAuth = 24242

// Verbs of the `t` tag (BUD-11).
const (
	VerbGet    = "get"
	VerbUpload = "upload"
	VerbList   = "list"
	VerbDelete = "delete"
)

// Encoding is how the token is encoded in the Authorization header.
type Encoding int

const (
	// Base64URL is BUD-11's encoding: base64url without padding. The default.
	Base64URL Encoding = iota
	// Base64Std is standard base64 with padding, which older servers (khatru v0.19.1) expect.
	Base64Std
)

// ParseEncoding reads "base64url" or "base64" (as written in configuration files).
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "", "base64url":
		return Base64URL, nil
	case "base64", "base64std":
		return Base64Std, nil
	}
	return 0, fmt.Errorf("blossom: unknown auth encoding %q (want base64url or base64)", s)
}

func (e Encoding) String() string {
	if e == Base64Std {
		return "base64"
	}
	return "base64url"
}

// SignAuth creates and signs a kind 24242 token for verb, valid for ttl, scoped to the given
// blob hashes (x tags) and, if server is not empty, to that server's host name.
func SignAuth(ctx context.Context, signer nostr.Signer, verb, content, server string, ttl time.Duration, hashes ...string) (*nostr.Event, error) {
	now := time.Now()
	ev := &nostr.Event{
		Kind: KindAuth,
		// One second in the past: BUD-11 requires created_at to be in the past, and a server
		// whose clock is a little behind ours would otherwise refuse a fresh token.
		CreatedAt: nostr.Timestamp(now.Add(-time.Second).Unix()),
		Content:   content,
		Tags: nostr.Tags{
			{"t", verb},
			{"expiration", strconv.FormatInt(now.Add(ttl).Unix(), 10)},
		},
	}
	for _, h := range hashes {
		ev.Tags = append(ev.Tags, nostr.Tag{"x", h})
	}
	if server != "" {
		// BUD-11: a lowercase domain name.
		ev.Tags = append(ev.Tags, nostr.Tag{"server", strings.ToLower(server)})
	}
	if err := signer.SignEvent(ctx, ev); err != nil {
		return nil, fmt.Errorf("blossom: signing %s token: %w", verb, err)
	}
	return ev, nil
}

// AuthHeader encodes a signed token as an Authorization header value.
func AuthHeader(ev *nostr.Event, enc Encoding) string {
	raw, _ := json.Marshal(ev)
	if enc == Base64Std {
		return "Nostr " + base64.StdEncoding.EncodeToString(raw)
	}
	return "Nostr " + base64.RawURLEncoding.EncodeToString(raw)
}

// ErrAuth is wrapped by every token verification failure.
var ErrAuth = errors.New("blossom auth")

// ParseAuthHeader decodes an Authorization header. It accepts both encodings, with or
// without padding, because clients in the wild send both (khatru v0.19.1, for one, sends and expects
// padded standard base64).
func ParseAuthHeader(h string) (*nostr.Event, error) {
	const prefix = "Nostr "
	if !strings.HasPrefix(h, prefix) {
		return nil, fmt.Errorf("%w: missing 'Nostr' authorization", ErrAuth)
	}
	b64 := strings.TrimSpace(h[len(prefix):])
	if len(b64) > 64<<10 {
		return nil, fmt.Errorf("%w: token too large", ErrAuth)
	}
	var raw []byte
	var err error
	trimmed := strings.TrimRight(b64, "=")
	if strings.ContainsAny(trimmed, "-_") {
		raw, err = base64.RawURLEncoding.DecodeString(trimmed)
	} else {
		raw, err = base64.RawStdEncoding.DecodeString(trimmed)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: token is not base64: %v", ErrAuth, err)
	}
	var ev nostr.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("%w: token is not an event: %v", ErrAuth, err)
	}
	return &ev, nil
}

// AuthRequest is what an endpoint requires of a token.
type AuthRequest struct {
	Verb       string    // required `t`
	Hash       string    // implied blob hash, "" if none
	RequireX   bool      // an `x` tag matching Hash is required
	ServerHost string    // this server's host name, checked against `server` tags
	Now        time.Time // zero means time.Now()
}

// VerifyAuth checks a token per BUD-11's validation rules and returns its author.
func VerifyAuth(ev *nostr.Event, req AuthRequest) (string, error) {
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	if ev.Kind != KindAuth {
		return "", fmt.Errorf("%w: kind %d, want %d", ErrAuth, ev.Kind, KindAuth)
	}
	if !ev.CheckID() {
		return "", fmt.Errorf("%w: id does not match the event", ErrAuth)
	}
	if ok, err := ev.CheckSignature(); err != nil || !ok {
		return "", fmt.Errorf("%w: bad signature", ErrAuth)
	}
	if ev.CreatedAt.Time().After(now) {
		return "", fmt.Errorf("%w: created_at is in the future", ErrAuth)
	}
	exp := ev.Tags.Find("expiration")
	if exp == nil {
		return "", fmt.Errorf("%w: no expiration tag", ErrAuth)
	}
	expAt, err := strconv.ParseInt(exp[1], 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: bad expiration %q", ErrAuth, exp[1])
	}
	if expAt <= now.Unix() {
		return "", fmt.Errorf("%w: token expired", ErrAuth)
	}
	if t := ev.Tags.Find("t"); t == nil || t[1] != req.Verb {
		return "", fmt.Errorf("%w: t tag must be %q", ErrAuth, req.Verb)
	}
	servers := 0
	serverOK := false
	for _, tag := range ev.Tags {
		if len(tag) >= 2 && tag[0] == "server" {
			servers++
			if req.ServerHost != "" && strings.EqualFold(tag[1], req.ServerHost) {
				serverOK = true
			}
		}
	}
	if servers > 0 && !serverOK {
		return "", fmt.Errorf("%w: token is scoped to other servers", ErrAuth)
	}
	if req.RequireX || req.Hash != "" {
		xs, match := 0, false
		for _, tag := range ev.Tags {
			if len(tag) >= 2 && tag[0] == "x" {
				xs++
				if tag[1] == req.Hash {
					match = true
				}
			}
		}
		if (req.RequireX || xs > 0) && !match {
			return "", fmt.Errorf("%w: no x tag for blob %s", ErrAuth, req.Hash)
		}
	}
	return ev.PubKey, nil
}

// VerifyRequest reads and verifies the Authorization header of r.
func VerifyRequest(r *http.Request, req AuthRequest) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fmt.Errorf("%w: authorization required", ErrAuth)
	}
	ev, err := ParseAuthHeader(h)
	if err != nil {
		return "", err
	}
	return VerifyAuth(ev, req)
}
