package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/login"
)

// passwordTimeout bounds unlocking an ncryptsec (scrypt) in CompleteLogin.
const passwordTimeout = 2 * time.Minute

// loginRec is what BeginLogin offered for one login ID.
type loginRec struct {
	user, pubkey string
	method       string // events.LoginPassword or events.LoginRemoteSigner
	ncryptsec    string // for password
	bunker       string // for remote-signer
	expires      time.Time
	terminated   bool // set (under Daemon.mu) by TerminateSessions
}

// loginErr turns an error of package login into a homed error with its D-Bus name.
func loginErr(err error, fallback string) error {
	if err == nil {
		return nil
	}
	var he *homed.Error
	if errors.As(err, &he) {
		return err
	}
	name := login.DBusErrorName(err)
	if name == "" {
		name = fallback
	}
	if name == "" {
		return err
	}
	return &homed.Error{Name: name, Err: err}
}

// warmBound bounds the warm a login or a session start does: two rounds of queries.
func (d *Daemon) warmBound() time.Duration { return 2*d.opts.RelayTimeout + time.Second }

// BeginLogin starts a login of user for a PAM service: it issues a fresh challenge and
// names the method of the user's settings (the first one listed).
func (d *Daemon) BeginLogin(ctx context.Context, user, service, rhost string) (homed.LoginStart, error) {
	if d.isClosing() {
		return homed.LoginStart{}, homed.Errorf(homed.ErrUnavailable, "nostr-homectl is shutting down")
	}
	u, err := d.lookup(ctx, user)
	if err != nil {
		return homed.LoginStart{}, err
	}
	if err := d.refuseIfRemoving(user); err != nil {
		return homed.LoginStart{}, err
	}
	ns := d.cfg.Namespace
	npub := npubOf(u.Pubkey)
	s, err := d.cachedSettings(u.Pubkey, ns)
	if err != nil {
		wctx, cancel := context.WithTimeout(ctx, d.warmBound())
		_, werr := d.warm(wctx, u.Pubkey, ns, user)
		cancel()
		s, err = d.cachedSettings(u.Pubkey, ns)
		if err != nil {
			why := err
			if werr != nil {
				why = werr
			}
			return homed.LoginStart{}, homed.Errorf(homed.ErrUnavailable,
				"the settings of %s (%s) could not be fetched, so there is no way to log in yet: %v", user, npub, why)
		}
	}
	m := s.Login[0]
	ch, err := d.issuer.Begin(user, u.Pubkey, d.host, service)
	if err != nil {
		return homed.LoginStart{}, loginErr(err, "")
	}
	rec := &loginRec{user: user, pubkey: u.Pubkey, method: m.Type, ncryptsec: m.Ncryptsec, bunker: m.Bunker,
		expires: ch.ExpiresAt}
	now := d.now()
	d.mu.Lock()
	for id, r := range d.logins { // forget what the issuer has forgotten too
		if now.After(r.expires.Add(d.issuer.TTL())) {
			delete(d.logins, id)
		}
	}
	d.logins[ch.LoginID] = rec
	d.mu.Unlock()
	d.logf("login %s: begin for %s (service %s, rhost %q), method %s", clip(ch.LoginID, 8), user, service, rhost, m.Type)

	switch m.Type {
	case events.LoginPassword:
		return homed.LoginStart{LoginID: ch.LoginID, Method: "password",
			Prompt: fmt.Sprintf("Nostr key password for %s: ", user)}, nil
	case events.LoginRemoteSigner:
		return homed.LoginStart{LoginID: ch.LoginID, Method: "remote-signer",
			Message: fmt.Sprintf("Approve the login for %s (%s) on your signer", user, npub)}, nil
	}
	d.forgetLogin(ch.LoginID)
	d.issuer.Cancel(ch.LoginID)
	return homed.LoginStart{}, homed.Errorf(homed.ErrUnavailable, "login method %q of %s is not supported", m.Type, user)
}

func (d *Daemon) forgetLogin(id string) {
	d.mu.Lock()
	delete(d.logins, id)
	d.mu.Unlock()
}

// CompleteLogin answers the challenge of loginID (with the password, or through the remote
// signer), verifies the proof against the enrolled key, and keeps the signer for the
// session on success.
func (d *Daemon) CompleteLogin(ctx context.Context, loginID, secret string) error {
	if d.isClosing() {
		return homed.Errorf(homed.ErrUnavailable, "nostr-homectl is shutting down")
	}
	ch, err := d.issuer.Lookup(loginID)
	if err != nil {
		// Expired, replayed or unknown IDs leave a trace: a replay attempt is worth seeing.
		d.logf("login %s: %v", clip(loginID, 8), err)
		return loginErr(err, homed.ErrAuthFailed)
	}
	d.mu.Lock()
	rec := d.logins[loginID]
	d.mu.Unlock()
	if rec == nil || rec.user != ch.User {
		return homed.Errorf(homed.ErrAuthFailed, "no outstanding login %s", clip(loginID, 8))
	}

	var s *sessionSigner
	switch rec.method {
	case events.LoginPassword:
		pctx, cancel := context.WithTimeout(ctx, passwordTimeout)
		ev, sec, err := login.ProveWithPassword(pctx, ch, rec.ncryptsec, secret)
		cancel()
		if err != nil {
			d.issuer.Cancel(loginID)
			d.forgetLogin(loginID)
			d.logf("login %s of %s: %v", clip(loginID, 8), rec.user, err)
			return loginErr(err, homed.ErrAuthFailed)
		}
		if err := d.issuer.Verify(loginID, ev); err != nil {
			sec.Wipe()
			d.forgetLogin(loginID)
			d.logf("login %s of %s: %v", clip(loginID, 8), rec.user, err)
			return loginErr(err, homed.ErrAuthFailed)
		}
		s = &sessionSigner{keyer: sec, method: events.LoginPassword, wipe: sec.Wipe}
	case events.LoginRemoteSigner:
		rctx, cancel := context.WithTimeout(ctx, d.cfg.Login.RemoteSignerTimeout.Duration)
		ev, rs, err := login.ProveWithBunker(rctx, ch, rec.bunker)
		cancel()
		if err != nil {
			d.issuer.Cancel(loginID)
			d.forgetLogin(loginID)
			d.logf("login %s of %s: %v", clip(loginID, 8), rec.user, err)
			return loginErr(err, homed.ErrAuthFailed)
		}
		if err := d.issuer.Verify(loginID, ev); err != nil {
			rs.Close()
			d.forgetLogin(loginID)
			d.logf("login %s of %s: %v", clip(loginID, 8), rec.user, err)
			return loginErr(err, homed.ErrAuthFailed)
		}
		s = &sessionSigner{keyer: rs, method: events.LoginRemoteSigner, wipe: func() { rs.Close() }}
	default:
		d.issuer.Cancel(loginID)
		d.forgetLogin(loginID)
		return homed.Errorf(homed.ErrUnavailable, "login method %q is not supported", rec.method)
	}
	// The user may have been removed (or removed and enrolled again with another key) while
	// the proof was being made, or TerminateSessions may have dropped this login.
	d.mu.Lock()
	dropped := rec.terminated
	d.mu.Unlock()
	d.forgetLogin(loginID)
	if err := d.stillEnrolled(ctx, rec, dropped); err != nil {
		s.Wipe()
		d.logf("login %s of %s: %v", clip(loginID, 8), rec.user, err)
		return err
	}
	d.logf("login %s: %s authenticated (%s)", clip(loginID, 8), rec.user, rec.method)
	us := d.userState(rec.user)
	us.keepSigner(d, s)
	// TerminateSessions sets its hold before it drops signers: if it ran between the check
	// above and keepSigner, the hold is visible now.
	if d.refuseIfRemoving(rec.user) != nil {
		us.dropPendingSigner(s)
		return homed.Errorf(homed.ErrNotAllowed, "%s is being removed: the login is void", rec.user)
	}
	return nil
}

// stillEnrolled checks, after a successful proof, that the login may still give a signer:
// not dropped by TerminateSessions, the user still enrolled with the same key, not being
// removed.
func (d *Daemon) stillEnrolled(ctx context.Context, rec *loginRec, dropped bool) error {
	if dropped {
		return homed.Errorf(homed.ErrNotAllowed, "the login of %s was ended by TerminateSessions (the user is being removed)", rec.user)
	}
	u, err := d.lookup(ctx, rec.user)
	if err != nil {
		return err
	}
	if u.Pubkey != rec.pubkey {
		return homed.Errorf(homed.ErrUnknownUser, "%s was enrolled again with another key during the login", rec.user)
	}
	return d.refuseIfRemoving(rec.user)
}

// CancelLogin forgets an outstanding login. Cancelling an unknown or finished login is not
// an error (PAM cancels on any conversation failure).
func (d *Daemon) CancelLogin(ctx context.Context, loginID string) error {
	d.issuer.Cancel(loginID)
	d.forgetLogin(loginID)
	return nil
}
