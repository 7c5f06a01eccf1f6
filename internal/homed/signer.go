package homed

// org.nostr.Signer: the key of a user's open session, on the same bus name, one object per
// session at /org/nostr/Homed1/signer/UID (see dbus/org.nostr.Signer.xml).
//
// The objects are not exported one by one: a single fallback handler serves the whole
// /org/nostr/Homed1/signer subtree (godbus ExportSubtree), reads the UID from the object
// path of each call, and asks the daemon (Signers) for that user's session signer. So there
// is nothing to export at OpenSession or unexport at CloseSession, and this package stays
// stateless: a session that has ended simply has no signer any more (Unavailable).
//
// Every call is authorised by the caller's UID (GetConnectionUnixUser) before anything else:
// root, or the UID the path names. Inputs are checked before they reach the key, and each
// call to the key is bounded (SignerOptions.CallTimeout): a remote signer may wait for its
// user, or never answer.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/strictjson"
)

// Signer names.
const (
	SignerInterface = "org.nostr.Signer"
	// SignerPathPrefix is the root of the signer subtree; a session's signer is
	// SignerPathPrefix + "/" + UID.
	SignerPathPrefix = dbus.ObjectPath("/org/nostr/Homed1/signer")
)

// Limits of the signer's inputs.
const (
	// MaxEventJSON is the largest event_json SignEvent accepts.
	MaxEventJSON = 128 << 10
	// MaxNip44Plaintext is NIP-44 v2's largest plaintext, in bytes.
	MaxNip44Plaintext = 65535
	// MaxNip44Payload is the longest NIP-44 v2 payload (base64 of version, nonce, the padded
	// plaintext of 65536+2 bytes and the MAC).
	MaxNip44Payload = 87472
	// minNip44Payload is the shortest one (the padded plaintext of 32+2 bytes).
	minNip44Payload = 132
)

// DefaultSignerCallTimeout bounds one call to a session's signer.
const DefaultSignerCallTimeout = 30 * time.Second

// SignerPath is the object path of the signer of uid's session.
func SignerPath(uid uint32) dbus.ObjectPath {
	return SignerPathPrefix + dbus.ObjectPath("/"+strconv.FormatUint(uint64(uid), 10))
}

// Signers gives the signer of a user's open session; the daemon implements it.
type Signers interface {
	// SessionSigner returns the name of the user with this UID and the signer of their open
	// session. If the user has no open session with a signer, the error is an *Error named
	// ErrUnavailable. The signer's errors should carry their D-Bus names (*Error) where they
	// have one (a wiped key or closed remote signer: Unavailable; a ciphertext that does not
	// decrypt: InvalidArgs).
	SessionSigner(uid uint32) (user string, signer nostr.Keyer, err error)
}

// SignerOptions tune ExportSigner.
type SignerOptions struct {
	// CallTimeout bounds each call to a signer (all its round trips to a remote signer
	// together). Default DefaultSignerCallTimeout.
	CallTimeout time.Duration
	// Logf receives one line per call other than a successful GetPublicKey: who called, whose
	// signer, the method, the event kind and id or the peer, and the outcome. Never an event's
	// content, a plaintext or a ciphertext. nil: no log.
	Logf func(format string, args ...any)
	// Now is the clock for SignEvent's default created_at. Default time.Now.
	Now func() time.Time
}

// ExportSigner serves org.nostr.Signer for the whole SignerPathPrefix subtree on conn, with
// introspectXML (dbus/org.nostr.Signer.xml) as the introspection data of each signer object.
// Call it before Export, which requests the bus name. ctx is the parent of every call's
// bound and should be cancelled at daemon shutdown.
func ExportSigner(ctx context.Context, conn *dbus.Conn, signers Signers, introspectXML string, opts SignerOptions) error {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultSignerCallTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	o := &signerObject{conn: conn, signers: signers, ctx: ctx, opts: opts}
	if err := conn.ExportSubtree(o, SignerPathPrefix, SignerInterface); err != nil {
		return fmt.Errorf("homed: exporting %s: %w", SignerInterface, err)
	}
	in := &signerIntrospect{xml: introspectXML}
	if err := conn.ExportSubtree(in, SignerPathPrefix, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("homed: exporting the introspection of %s: %w", SignerPathPrefix, err)
	}
	return nil
}

// signerUID reads the UID from a signer object path: SignerPathPrefix/UID, UID in decimal
// without leading zeros.
func signerUID(path dbus.ObjectPath) (uint32, bool) {
	s, ok := strings.CutPrefix(string(path), string(SignerPathPrefix)+"/")
	if !ok || s == "" || strings.Contains(s, "/") {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return 0, false
	}
	return uint32(v), true
}

func msgPath(msg dbus.Message) dbus.ObjectPath {
	p, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	return p
}

func noObject(path dbus.ObjectPath) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.UnknownObject",
		[]any{fmt.Sprintf("no signer at %s: signers are %s/UID", path, SignerPathPrefix)})
}

// signerIntrospect answers Introspect in the subtree: the Signer interface for a signer
// path, an empty node for the subtree's root.
type signerIntrospect struct{ xml string }

func (i *signerIntrospect) Introspect(msg dbus.Message) (string, *dbus.Error) {
	path := msgPath(msg)
	if _, ok := signerUID(path); ok {
		return i.xml, nil
	}
	if path == SignerPathPrefix {
		return `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!-- One org.nostr.Signer object per open session: ` + string(SignerPathPrefix) + `/UID -->
<node/>`, nil
	}
	return "", noObject(path)
}

// signerObject is exported for the subtree; its exported methods are exactly the D-Bus
// methods of org.nostr.Signer.
type signerObject struct {
	conn    *dbus.Conn
	signers Signers
	ctx     context.Context
	opts    SignerOptions
}

// signerCall is one authorised call: who asked, whose signer.
type signerCall struct {
	o      *signerObject
	method string
	caller uint32
	uid    uint32
	user   string // set once the session is found
}

func (c *signerCall) logf(format string, args ...any) {
	if c.o.opts.Logf == nil {
		return
	}
	who := fmt.Sprintf("uid %d", c.uid)
	if c.user != "" {
		who = fmt.Sprintf("%s (uid %d)", c.user, c.uid)
	}
	c.o.opts.Logf("signer of %s: %s by uid %d: %s", who, c.method, c.caller, fmt.Sprintf(format, args...))
}

// fail logs err (its message is about the call, never its content) and returns it as a
// D-Bus error.
func (c *signerCall) fail(err error) *dbus.Error {
	de := toDBus(err)
	c.logf("refused: %s: %v", strings.TrimPrefix(de.Name, Interface+".Error."), err)
	return de
}

// begin authorises a call by the object path and the caller's UID.
func (o *signerObject) begin(sender dbus.Sender, msg dbus.Message, method string) (*signerCall, *dbus.Error) {
	path := msgPath(msg)
	uid, ok := signerUID(path)
	if !ok {
		return nil, noObject(path)
	}
	var caller uint32
	err := o.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&caller)
	if err != nil {
		return nil, toDBus(Errorf(ErrAccessDenied, "cannot tell who is calling: %v", err))
	}
	c := &signerCall{o: o, method: method, caller: caller, uid: uid}
	if caller != 0 && caller != uid {
		// The same answer whether uid has a session or not: no probing who is logged in.
		return nil, c.fail(Errorf(ErrAccessDenied, "the signer of uid %d is for root and that user only (caller uid %d)", uid, caller))
	}
	return c, nil
}

// signer looks up the session's signer.
func (c *signerCall) signer() (nostr.Keyer, *dbus.Error) {
	user, k, err := c.o.signers.SessionSigner(c.uid)
	if err == nil && k == nil {
		err = Errorf(ErrUnavailable, "no open session for uid %d", c.uid)
	}
	if err != nil {
		return nil, c.fail(err)
	}
	c.user = user
	return k, nil
}

// bounded runs f with the call's bound. If the bound runs out first, the answer is Timeout
// whether or not f has noticed (f is left to finish on its own: a signer that ignores its
// context cannot hold the caller longer than the bound).
func (c *signerCall) bounded(f func(ctx context.Context) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(c.o.ctx, c.o.opts.CallTimeout)
	defer cancel()
	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := f(ctx)
		done <- result{s, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	if r.err == nil {
		return r.s, nil
	}
	var he *Error
	switch {
	case errors.As(r.err, &he):
		return "", r.err
	case errors.Is(r.err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", Errorf(ErrTimeout, "the signer did not answer within %s: %v", c.o.opts.CallTimeout, r.err)
	case c.o.ctx.Err() != nil:
		return "", Errorf(ErrUnavailable, "nostr-homectl is shutting down")
	}
	return "", r.err
}

// checkPubkey is the strict check of a hex public key: 64 lowercase hex digits, x-only, on
// the curve.
func checkPubkey(what, pk string) error {
	if len(pk) != 64 || !nostr.IsValidPublicKey(pk) {
		// Not echoed: a caller who swapped the arguments would see (and log) a plaintext.
		return Errorf(ErrInvalidArgs, "%s is not a public key: want 64 lowercase hex digits of a point on secp256k1, got %d characters", what, len(pk))
	}
	return nil
}

func (o *signerObject) GetPublicKey(sender dbus.Sender, msg dbus.Message) (string, *dbus.Error) {
	c, derr := o.begin(sender, msg, "GetPublicKey")
	if derr != nil {
		return "", derr
	}
	k, derr := c.signer()
	if derr != nil {
		return "", derr
	}
	pk, err := c.bounded(func(ctx context.Context) (string, error) { return k.GetPublicKey(ctx) })
	if err != nil {
		return "", c.fail(err)
	}
	return pk, nil
}

// eventIn is what SignEvent accepts (see the XML).
type eventIn struct {
	Kind      *int64      `json:"kind"`
	Content   string      `json:"content"`
	Tags      [][]*string `json:"tags"`
	CreatedAt *int64      `json:"created_at"`
	PubKey    string      `json:"pubkey"`
	ID        string      `json:"id"`
	Sig       string      `json:"sig"`
}

func parseEvent(js string, now time.Time) (nostr.Event, string, error) {
	if len(js) > MaxEventJSON {
		return nostr.Event{}, "", Errorf(ErrInvalidArgs, "the event is %d bytes of JSON, more than the %d allowed", len(js), MaxEventJSON)
	}
	var in eventIn
	if err := strictjson.Decode([]byte(js), &in); err != nil {
		return nostr.Event{}, "", Errorf(ErrInvalidArgs, "the event is not a JSON object of kind, content, tags, created_at (and pubkey): %v", err)
	}
	if in.Kind == nil {
		return nostr.Event{}, "", Errorf(ErrInvalidArgs, "the event has no kind")
	}
	if *in.Kind < 0 || *in.Kind > 65535 {
		return nostr.Event{}, "", Errorf(ErrInvalidArgs, "the event's kind %d is not in 0-65535", *in.Kind)
	}
	ev := nostr.Event{Kind: int(*in.Kind), Content: in.Content, Tags: nostr.Tags{}}
	for i, t := range in.Tags {
		if t == nil {
			return nostr.Event{}, "", Errorf(ErrInvalidArgs, "tag %d of the event is null", i)
		}
		tag := make(nostr.Tag, len(t))
		for j, v := range t {
			if v == nil {
				return nostr.Event{}, "", Errorf(ErrInvalidArgs, "tag %d of the event has a null at %d", i, j)
			}
			tag[j] = *v
		}
		ev.Tags = append(ev.Tags, tag)
	}
	switch {
	case in.CreatedAt == nil:
		ev.CreatedAt = nostr.Timestamp(now.Unix())
	case *in.CreatedAt < 0:
		return nostr.Event{}, "", Errorf(ErrInvalidArgs, "the event's created_at %d is negative", *in.CreatedAt)
	default:
		ev.CreatedAt = nostr.Timestamp(*in.CreatedAt)
	}
	if in.PubKey != "" {
		if err := checkPubkey("the event's pubkey", in.PubKey); err != nil {
			return nostr.Event{}, "", err
		}
	}
	return ev, in.PubKey, nil
}

func (o *signerObject) SignEvent(sender dbus.Sender, msg dbus.Message, eventJSON string) (string, *dbus.Error) {
	c, derr := o.begin(sender, msg, "SignEvent")
	if derr != nil {
		return "", derr
	}
	ev, wantPK, err := parseEvent(eventJSON, o.opts.Now())
	if err != nil {
		return "", c.fail(err)
	}
	c.method = fmt.Sprintf("SignEvent (kind %d)", ev.Kind)
	k, derr := c.signer()
	if derr != nil {
		return "", derr
	}
	out, err := c.bounded(func(ctx context.Context) (string, error) {
		pk, err := k.GetPublicKey(ctx)
		if err != nil {
			return "", err
		}
		if wantPK != "" && wantPK != pk {
			return "", Errorf(ErrInvalidArgs, "the event's pubkey %s is not the key of this session (%s)", wantPK, pk)
		}
		if err := k.SignEvent(ctx, &ev); err != nil {
			return "", err
		}
		if ev.PubKey != pk || ev.ID != ev.GetID() {
			return "", fmt.Errorf("the signer returned an event of another key or another id")
		}
		if ok, err := ev.CheckSignature(); !ok {
			return "", fmt.Errorf("the signer's signature does not verify: %v", err)
		}
		b, err := json.Marshal(ev)
		return string(b), err
	})
	if err != nil {
		return "", c.fail(err)
	}
	c.logf("signed, id %s", ev.ID)
	return out, nil
}

func checkPlaintext(p string) error {
	if len(p) == 0 || len(p) > MaxNip44Plaintext {
		return Errorf(ErrInvalidArgs, "the plaintext is %d bytes: NIP-44 takes 1 to %d", len(p), MaxNip44Plaintext)
	}
	return nil
}

func checkPayload(p string) error {
	if len(p) < minNip44Payload || len(p) > MaxNip44Payload {
		return Errorf(ErrInvalidArgs, "the ciphertext is %d characters: a NIP-44 v2 payload has %d to %d", len(p), minNip44Payload, MaxNip44Payload)
	}
	if p[0] == '#' {
		return Errorf(ErrInvalidArgs, "the ciphertext is of an unsupported NIP-44 version")
	}
	return nil
}

func (o *signerObject) Nip44Encrypt(sender dbus.Sender, msg dbus.Message, peer, plaintext string) (string, *dbus.Error) {
	c, derr := o.begin(sender, msg, "Nip44Encrypt")
	if derr != nil {
		return "", derr
	}
	if err := checkPubkey("the peer", peer); err != nil {
		return "", c.fail(err)
	}
	if err := checkPlaintext(plaintext); err != nil {
		return "", c.fail(err)
	}
	c.method = "Nip44Encrypt (peer " + peer[:16] + "…)"
	k, derr := c.signer()
	if derr != nil {
		return "", derr
	}
	out, err := c.bounded(func(ctx context.Context) (string, error) { return k.Encrypt(ctx, plaintext, peer) })
	if err != nil {
		return "", c.fail(err)
	}
	c.logf("encrypted")
	return out, nil
}

func (o *signerObject) Nip44Decrypt(sender dbus.Sender, msg dbus.Message, peer, ciphertext string) (string, *dbus.Error) {
	c, derr := o.begin(sender, msg, "Nip44Decrypt")
	if derr != nil {
		return "", derr
	}
	if err := checkPubkey("the peer", peer); err != nil {
		return "", c.fail(err)
	}
	if err := checkPayload(ciphertext); err != nil {
		return "", c.fail(err)
	}
	c.method = "Nip44Decrypt (peer " + peer[:16] + "…)"
	k, derr := c.signer()
	if derr != nil {
		return "", derr
	}
	out, err := c.bounded(func(ctx context.Context) (string, error) { return k.Decrypt(ctx, ciphertext, peer) })
	if err != nil {
		return "", c.fail(err)
	}
	c.logf("decrypted")
	return out, nil
}
