package login

import (
	"context"
	"errors"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/keys"
)

// ProveWithPassword answers ch with the user's NIP-49 ncryptsec and password (the "password"
// method): it unlocks the key into locked memory, checks that it is the enrolled key, and
// signs the proof. The caller verifies the proof with Issuer.Verify and keeps the Secret for
// the session (org.nostr.Signer), or Wipes it if Verify fails. On error nothing is returned
// and any unlocked key has been wiped.
//
// Errors: a wrong password is ErrAuthFailed (also errors.Is keys.ErrWrongPassword); an
// ncryptsec of another key is ErrWrongKey; a malformed ncryptsec is ErrInvalid; ctx ending
// before scrypt finishes is ErrTimeout (the key is wiped when scrypt completes).
func ProveWithPassword(ctx context.Context, ch *Challenge, ncryptsec, password string) (*nostr.Event, *keys.Secret, error) {
	if ch == nil {
		return nil, nil, newErr(ErrInvalid, nil, "no challenge")
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, newErr(ErrTimeout, err, "before unlocking the key")
	}

	type result struct {
		s   *keys.Secret
		err error
	}
	res := make(chan result, 1)
	go func() {
		s, err := keys.UnlockNcryptsec(ncryptsec, password)
		res <- result{s, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		go func() { // scrypt cannot be interrupted: wipe whatever it yields
			if r := <-res; r.s != nil {
				r.s.Wipe()
			}
		}()
		return nil, nil, newErr(ErrTimeout, ctx.Err(), "unlocking the key")
	}
	if r.err != nil {
		switch {
		case errors.Is(r.err, keys.ErrWrongPassword):
			return nil, nil, newErr(ErrAuthFailed, r.err, "wrong password")
		case errors.Is(r.err, keys.ErrMalformed):
			return nil, nil, newErr(ErrInvalid, r.err, "the enrolled ncryptsec is unusable")
		case errors.Is(r.err, keys.ErrLockedMemory):
			return nil, nil, newErr(ErrUnavailable, r.err, "no locked memory for the key")
		}
		return nil, nil, newErr(ErrAuthFailed, r.err, "unlocking the key")
	}
	sec := r.s
	ev, err := ProveWithSigner(ctx, ch, sec)
	if err != nil {
		sec.Wipe()
		return nil, nil, err
	}
	return ev, sec, nil
}

// ProveWithSigner signs ch's proof with signer after checking that signer's key is the
// enrolled one (ErrWrongKey otherwise). It is the last step of every method; use it with the
// RemoteSigner a nostrconnect:// wait returns.
func ProveWithSigner(ctx context.Context, ch *Challenge, signer nostr.Signer) (*nostr.Event, error) {
	if ch == nil || signer == nil {
		return nil, newErr(ErrInvalid, nil, "no challenge or no signer")
	}
	pk, err := signer.GetPublicKey(ctx)
	if err != nil {
		return nil, asLoginErr(err, "getting the signer's public key")
	}
	if pk != ch.PubKey {
		return nil, newErr(ErrWrongKey, nil, "the key is %s, enrolled key is %s", clip(pk), clip(ch.PubKey))
	}
	ev := ch.Unsigned()
	if err := signer.SignEvent(ctx, ev); err != nil {
		return nil, asLoginErr(err, "signing the login proof")
	}
	return ev, nil
}

// asLoginErr keeps our own errors and wraps others as ErrAuthFailed.
func asLoginErr(err error, what string) error {
	var le *Error
	if errors.As(err, &le) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return newErr(ErrTimeout, err, "%s", what)
	}
	return newErr(ErrAuthFailed, err, "%s", what)
}
