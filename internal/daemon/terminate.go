package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// RemovalHold is how long after TerminateSessions the daemon refuses new logins and sessions
// of that user (NotAllowed): long enough for `nostr-homectl remove` to take the user out of
// the database right after, so that no login slips in between; short enough that a removal
// that failed after TerminateSessions does not lock the user out for long.
const RemovalHold = time.Minute

// TerminateSessions ends every session of user whatever its reference count, through the
// same path as the last CloseSession (stop the mount within FlushTimeout, wipe the secrets,
// then the signer), wipes a signer waiting for its first session, and drops the outstanding
// logins of user. It returns how many sessions were open. A user with nothing open, enrolled
// or not, is not an error: `nostr-homectl remove` calls this before it removes the user from
// the database, and must also be able to clean up after a user removed while the daemon
// was not told.
//
// For RemovalHold afterwards, BeginLogin, CheckAccount and OpenSession refuse user, and a
// CompleteLogin that was already running drops the signer it got.
func (d *Daemon) TerminateSessions(ctx context.Context, user string) (uint32, error) {
	if !userdb.ValidName(user) {
		return 0, homed.Errorf(homed.ErrInvalidArgs, "%q is not a user name this machine manages", user)
	}
	// The hold first, then the logins and the signer: a CompleteLogin that keeps its signer
	// after this point sees the hold afterwards and drops it (see CompleteLogin).
	d.mu.Lock()
	if d.removing == nil {
		d.removing = map[string]time.Time{}
	}
	d.removing[user] = d.now()
	var ids []string
	for id, r := range d.logins {
		if r.user == user {
			r.terminated = true
			ids = append(ids, id)
			delete(d.logins, id)
		}
	}
	us := d.users[user]
	d.mu.Unlock()
	for _, id := range ids {
		d.issuer.Cancel(id)
	}
	if us == nil {
		d.logf("session %s: terminate: nothing open, %d outstanding login(s) dropped", user, len(ids))
		return 0, nil
	}

	bctx, cancel := context.WithTimeout(ctx, d.waitBound()+d.cfg.Session.FlushTimeout.Duration)
	defer cancel()
	// Let an opening or closing in progress finish, to count what is then open; shutdown
	// waits again if another one starts in between (new ones are refused by the hold).
	n, err := us.settledCount(bctx)
	if err == nil {
		err = us.shutdown(bctx, d)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return 0, homed.Errorf(homed.ErrTimeout, "the sessions of %s: %v", user, err)
	}
	if err != nil {
		return uint32(n), fmt.Errorf("the sessions of %s are ended, with errors: %w", user, err)
	}
	d.logf("session %s: terminated: %d open session(s) ended, %d outstanding login(s) dropped", user, n, len(ids))
	return uint32(n), nil
}

// settledCount waits until no opening or closing of the session runs and returns its
// reference count.
func (us *userState) settledCount(ctx context.Context) (int, error) {
	for {
		us.mu.Lock()
		if us.phase != phaseOpening && us.phase != phaseClosing {
			n := us.count
			us.mu.Unlock()
			return n, nil
		}
		done := us.done
		us.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return 0, fmt.Errorf("the session is still %s: %w", us.phase, ctx.Err())
		}
	}
}

// refuseIfRemoving fails with NotAllowed if TerminateSessions ended user's sessions less than
// RemovalHold ago.
func (d *Daemon) refuseIfRemoving(user string) error {
	d.mu.Lock()
	since, ok := d.removing[user]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	age := d.now().Sub(since)
	if age >= RemovalHold {
		d.mu.Lock()
		if d.removing[user] == since {
			delete(d.removing, user)
		}
		d.mu.Unlock()
		return nil
	}
	return homed.Errorf(homed.ErrNotAllowed, "%s is being removed (its sessions were ended %s ago): no new logins or sessions for %s",
		user, age.Truncate(time.Second), RemovalHold)
}

// dropPendingSigner wipes s if it is still the signer waiting for user's first session.
func (us *userState) dropPendingSigner(s *sessionSigner) {
	us.mu.Lock()
	take := us.signer == s && us.phase == phaseClosed
	if take {
		us.signer = nil
		if us.signerTimer != nil {
			us.signerTimer.Stop()
			us.signerTimer = nil
		}
	}
	us.mu.Unlock()
	if take {
		s.Wipe()
	}
}
