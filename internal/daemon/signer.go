package daemon

import (
	"context"
	"errors"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/keys"
	"github.com/nostr-homed/nostr-homed/internal/login"
)

var _ homed.Signers = (*Daemon)(nil)

// SessionSigner implements homed.Signers, which serves the signer of each open session on the
// bus as org.nostr.Signer (/org/nostr/Homed1/signer/UID; homed has already checked that the
// caller is root or that user). It returns the name of the user with this UID and the signer
// of their session while it opens, is open, and closes: nostrfs decrypts the home key
// through it before it can mount, and signs its last manifest after SIGTERM, before the
// mount has stopped and the signer is wiped. Not for the pending signer of a login that has
// no session yet. Otherwise the error is Unavailable.
//
// The signer returned is the one in use by the session; the last CloseSession may wipe it
// while a call is under way, which then fails with Unavailable (keys.ErrWiped,
// login.ErrClosed) rather than use a key that is gone.
func (d *Daemon) SessionSigner(uid uint32) (string, nostr.Keyer, error) {
	if d.isClosing() {
		return "", nil, homed.Errorf(homed.ErrUnavailable, "nostr-homectl is shutting down")
	}
	d.mu.Lock()
	states := make([]*userState, 0, len(d.users))
	for _, us := range d.users {
		states = append(states, us)
	}
	d.mu.Unlock()
	for _, us := range states {
		us.mu.Lock()
		if us.phase != phaseClosed && us.uid == uid && us.signer != nil {
			name, s := us.name, us.signer
			us.mu.Unlock()
			return name, &busKeyer{k: s.keyer, user: name}, nil
		}
		us.mu.Unlock()
	}
	return "", nil, homed.Errorf(homed.ErrUnavailable, "no open session for uid %d", uid)
}

// busKeyer gives a session signer's errors their D-Bus names.
type busKeyer struct {
	k    nostr.Keyer
	user string
}

func (b *busKeyer) signerErr(err error, decrypting bool) error {
	var he *homed.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return err
	case errors.Is(err, keys.ErrWiped), errors.Is(err, login.ErrClosed):
		return homed.Errorf(homed.ErrUnavailable, "the session of %s has ended: its key is gone", b.user)
	case errors.Is(err, keys.ErrMalformed):
		return &homed.Error{Name: homed.ErrInvalidArgs, Err: err}
	}
	if name := login.DBusErrorName(err); name != "" {
		return &homed.Error{Name: name, Err: err}
	}
	if _, local := b.k.(*keys.Secret); local && decrypting {
		// What is left from nip44.Decrypt is about the payload: bad base64, padding or MAC
		// (not for this key and peer).
		return homed.Errorf(homed.ErrInvalidArgs, "the ciphertext does not decrypt with the key of %s and this peer: %v", b.user, err)
	}
	return err
}

func (b *busKeyer) GetPublicKey(ctx context.Context) (string, error) {
	pk, err := b.k.GetPublicKey(ctx)
	return pk, b.signerErr(err, false)
}

func (b *busKeyer) SignEvent(ctx context.Context, ev *nostr.Event) error {
	return b.signerErr(b.k.SignEvent(ctx, ev), false)
}

func (b *busKeyer) Encrypt(ctx context.Context, plaintext, recipient string) (string, error) {
	out, err := b.k.Encrypt(ctx, plaintext, recipient)
	return out, b.signerErr(err, false)
}

func (b *busKeyer) Decrypt(ctx context.Context, ciphertext, sender string) (string, error) {
	out, err := b.k.Decrypt(ctx, ciphertext, sender)
	return out, b.signerErr(err, true)
}
