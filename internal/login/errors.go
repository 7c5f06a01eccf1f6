package login

import (
	"errors"
	"fmt"
)

// Sentinels. Every error this package returns is an *Error whose Kind is one of them, so
// callers test with errors.Is. ErrWrongKey, ErrBadProof and ErrSignerRefused are also
// ErrAuthFailed: errors.Is(err, ErrAuthFailed) holds for every "the answer was not good
// enough" case.
var (
	// ErrUnknownLogin: the login ID was never issued here, was cancelled, was dropped to keep
	// the bounds, or expired long enough ago to be swept.
	ErrUnknownLogin = errors.New("unknown login")
	// ErrReplayed: the login ID, or the proof's challenge, was already used.
	ErrReplayed = errors.New("proof replayed")
	// ErrExpired: the challenge expired before it was answered.
	ErrExpired = errors.New("proof expired")
	// ErrAuthFailed: wrong password, bad or foreign signature, a proof that is not the one
	// issued, or a remote signer that said no.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrWrongKey: the proof (or the remote signer, or the unlocked ncryptsec) is of another
	// key than the user's enrolled one.
	ErrWrongKey = errors.New("signed by another key")
	// ErrBadProof: the signed event is not the proof that was issued (kind, tags, content,
	// created_at, id or signature).
	ErrBadProof = errors.New("not the issued proof")
	// ErrSignerRefused: the remote signer answered with an error (its policy or its user
	// said no).
	ErrSignerRefused = errors.New("remote signer refused")
	// ErrTimeout: a bound ran out (the context's deadline), e.g. waiting for a remote signer.
	ErrTimeout = errors.New("timed out")
	// ErrUnavailable: no relay of the remote signer could be reached.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalid: an argument is malformed (user, host, service, public key, URI).
	ErrInvalid = errors.New("invalid argument")
	// ErrClosed: the remote signer connection was closed.
	ErrClosed = errors.New("remote signer closed")
)

// Error is the error type of this package: a sentinel Kind, a detail for people, and the
// underlying cause if any.
type Error struct {
	Kind   error
	Detail string
	Cause  error
}

func (e *Error) Error() string {
	s := "login: " + e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap gives the Kind, ErrAuthFailed for the authentication family, and the cause.
func (e *Error) Unwrap() []error {
	errs := []error{e.Kind}
	switch e.Kind {
	case ErrWrongKey, ErrBadProof, ErrSignerRefused:
		errs = append(errs, ErrAuthFailed)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

func newErr(kind error, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...), Cause: cause}
}

// D-Bus error names of org.nostr.Homed1 (dbus/org.nostr.Homed1.xml).
const (
	DBusAuthFailed    = "org.nostr.Homed1.Error.AuthFailed"
	DBusProofExpired  = "org.nostr.Homed1.Error.ProofExpired"
	DBusProofReplayed = "org.nostr.Homed1.Error.ProofReplayed"
	DBusUnavailable   = "org.nostr.Homed1.Error.Unavailable"
	DBusTimeout       = "org.nostr.Homed1.Error.Timeout"
	DBusInvalidArgs   = "org.nostr.Homed1.Error.InvalidArgs"
)

// DBusErrorName maps an error of this package to the org.nostr.Homed1 error to return, or ""
// if err is not one of ours. An unknown login ID is AuthFailed: it may be a forged ID or one
// swept after expiry, and the caller learns nothing more useful either way.
func DBusErrorName(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrReplayed):
		return DBusProofReplayed
	case errors.Is(err, ErrExpired):
		return DBusProofExpired
	case errors.Is(err, ErrTimeout):
		return DBusTimeout
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return DBusUnavailable
	case errors.Is(err, ErrInvalid):
		return DBusInvalidArgs
	case errors.Is(err, ErrAuthFailed), errors.Is(err, ErrUnknownLogin):
		return DBusAuthFailed
	}
	return ""
}
