package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/eventcache"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// phase is where a user's session is in its life.
type phase int

const (
	phaseClosed  phase = iota // no session; maybe a pending signer
	phaseOpening              // the first OpenSession is warming, writing secrets, mounting
	phaseOpen                 // count > 0, mounted
	phaseClosing              // the last CloseSession is stopping the mount and wiping
)

func (p phase) String() string {
	return [...]string{"closed", "opening", "open", "closing"}[p]
}

// sessionSigner is the user's key after a successful login: a keys.Secret in locked memory
// or a connected NIP-46 remote signer.
type sessionSigner struct {
	keyer  nostr.Keyer
	method string
	since  time.Time
	wipe   func()
	once   sync.Once
}

// Wipe zeroes (or disconnects) the signer once.
func (s *sessionSigner) Wipe() { s.once.Do(s.wipe) }

// userState is one user's session. Every field is guarded by mu, which is never held across
// a slow operation (see "Locking" in the package doc).
type userState struct {
	name string

	mu         sync.Mutex
	phase      phase
	count      int
	done       chan struct{} // closed when the running opening or closing ends
	mount      Mount
	mountPoint string
	uid        uint32
	openedAt   time.Time
	lastErr    string
	signer     *sessionSigner // pending (phase closed) or in use
	// next is the signer of a login that completed while the session was closing: the
	// closing session's signer stays in use until its mount has stopped; next then
	// becomes the pending signer.
	next        *sessionSigner
	signerTimer *time.Timer
}

// keepSigner takes the signer of a login that has just succeeded. While a session is open
// the signer in use stays and the new one is wiped; otherwise the new one waits for
// OpenSession, at most SignerGrace.
func (us *userState) keepSigner(d *Daemon, s *sessionSigner) {
	s.since = d.now()
	if d.isClosing() { // Shutdown may have passed this user already
		s.Wipe()
		return
	}
	us.mu.Lock()
	var drop *sessionSigner
	if us.signer != nil && (us.phase == phaseOpen || us.phase == phaseOpening) {
		drop = s
	} else if us.phase == phaseClosing {
		drop, us.next = us.next, s
		if us.signerTimer != nil {
			us.signerTimer.Stop()
		}
		us.signerTimer = time.AfterFunc(d.opts.SignerGrace, func() { us.expireSigner(d, s) })
	} else {
		drop = us.signer
		if us.signerTimer != nil {
			us.signerTimer.Stop()
		}
		us.signer = s
		us.signerTimer = time.AfterFunc(d.opts.SignerGrace, func() { us.expireSigner(d, s) })
	}
	us.mu.Unlock()
	if drop != nil {
		drop.Wipe()
	}
}

// expireSigner wipes s if it is still waiting for a session.
func (us *userState) expireSigner(d *Daemon, s *sessionSigner) {
	us.mu.Lock()
	take := (us.signer == s && us.phase == phaseClosed) || us.next == s
	if take {
		us.signerTimer = nil
		if us.next == s {
			us.next = nil
		} else {
			us.signer = nil
		}
	}
	us.mu.Unlock()
	if take {
		s.Wipe()
		d.logf("session %s: no session opened within %s of the login: the unlocked key is wiped", us.name, d.opts.SignerGrace)
	}
}

// waitBound bounds how long a call waits for another call's opening or closing.
func (d *Daemon) waitBound() time.Duration {
	return d.warmBound() + d.cfg.Session.MountTimeout.Duration + d.cfg.Session.FlushTimeout.Duration + d.cfg.Login.RemoteSignerTimeout.Duration
}

func waitDone(ctx context.Context, done chan struct{}, bound time.Duration) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("another call on this session did not finish within %s", bound)
	}
}

// OpenSession opens a session of user: the first one mounts the home (see the package doc),
// later ones count.
func (d *Daemon) OpenSession(ctx context.Context, user string) error {
	u, err := d.lookup(ctx, user)
	if err != nil {
		return err
	}
	// The login policy holds here too, not only in CheckAccount: a PAM stack whose account
	// phase is satisfied by another module must still not mount an excluded user's home.
	if err := d.CheckAccount(ctx, user); err != nil {
		return err
	}
	us := d.userState(user)
	for {
		if d.isClosing() {
			return homed.Errorf(homed.ErrMountFailed, "nostr-homectl is shutting down")
		}
		us.mu.Lock()
		switch us.phase {
		case phaseOpen:
			us.count++
			n := us.count
			us.mu.Unlock()
			d.logf("session %s: opened (%d open)", user, n)
			return nil
		case phaseOpening, phaseClosing:
			done := us.done
			us.mu.Unlock()
			if err := waitDone(ctx, done, d.waitBound()); err != nil {
				return homed.Errorf(homed.ErrTimeout, "session of %s: %v", user, err)
			}
			continue
		}
		// phaseClosed: this call opens.
		s := us.signer
		if s == nil {
			us.mu.Unlock()
			return homed.Errorf(homed.ErrMountFailed,
				"cannot mount the home of %s: no unlocked key (log in with the Nostr key first: a session needs the key of a login through pam_nostr within %s)",
				user, d.opts.SignerGrace)
		}
		if us.signerTimer != nil {
			us.signerTimer.Stop()
			us.signerTimer = nil
		}
		us.phase = phaseOpening
		us.uid = u.UID // the signer is served from here on: nostrfs needs it to mount
		done := make(chan struct{})
		us.done = done
		us.mu.Unlock()

		m, err := d.startSession(ctx, u, s)

		us.mu.Lock()
		if err != nil {
			us.phase, us.count = phaseClosed, 0
			if us.signer == s {
				us.signer = nil
			}
			us.lastErr = err.Error()
			close(done)
			us.mu.Unlock()
			s.Wipe()
			d.logf("session %s: open failed: %v", user, err)
			return err
		}
		us.phase, us.count = phaseOpen, 1
		us.mount, us.mountPoint, us.uid = m, u.Home, u.UID
		us.openedAt = d.now()
		us.lastErr = ""
		close(done)
		us.mu.Unlock()
		d.logf("session %s: opened, home mounted on %s by %s", user, u.Home, d.mounter.Name())
		return nil
	}
}

// startSession is the slow part of the first OpenSession; no lock is held.
func (d *Daemon) startSession(ctx context.Context, u userdb.User, s *sessionSigner) (Mount, error) {
	ns := d.cfg.Namespace
	wctx, cancel := context.WithTimeout(ctx, d.warmBound())
	_, werr := d.warm(wctx, u.Pubkey, ns, u.Name)
	cancel()
	if _, err := d.cachedSettings(u.Pubkey, ns); err != nil {
		return nil, homed.Errorf(homed.ErrMountFailed, "cannot mount the home of %s: the settings could not be fetched: %v", u.Name, errors.Join(werr, err))
	}

	var files []events.SecretFile
	ev, err := d.cachedEvent(events.KindSecrets, u.Pubkey, ns)
	switch {
	case err == nil:
		sctx, cancel := context.WithTimeout(ctx, d.cfg.Login.RemoteSignerTimeout.Duration)
		sec, err := events.OpenSecrets(sctx, s.keyer, ev, u.Pubkey, ns)
		cancel()
		if err != nil {
			return nil, homed.Errorf(homed.ErrMountFailed, "cannot open the secrets of %s (event %s): %v", u.Name, clip(ev.ID, 16), err)
		}
		files = sec.Files
	case errors.Is(err, eventcache.ErrNotCached):
		// No secrets published: an empty secrets directory.
	default:
		return nil, homed.Errorf(homed.ErrMountFailed, "cannot read the cached secrets of %s: %v", u.Name, err)
	}
	sdir, err := writeSecrets(d.rtDir, u.UID, u.GID, files)
	if err != nil {
		wipeSecrets(d.rtDir, u.UID)
		return nil, homed.Errorf(homed.ErrMountFailed, "cannot write the secrets of %s: %v", u.Name, err)
	}
	if err := makeMountPoint(u.Home, u.UID, u.GID); err != nil {
		wipeSecrets(d.rtDir, u.UID)
		return nil, homed.Errorf(homed.ErrMountFailed, "cannot prepare the mount point of %s: %v", u.Name, err)
	}
	mctx, cancel := context.WithTimeout(ctx, d.cfg.Session.MountTimeout.Duration)
	m, err := d.mounter.Mount(mctx, MountRequest{User: u.Name, UID: u.UID, GID: u.GID, MountPoint: u.Home,
		SecretsDir: sdir, ConfigPath: d.opts.ConfigPath})
	cancel()
	if err != nil {
		if werr := wipeSecrets(d.rtDir, u.UID); werr != nil {
			d.logf("session %s: wiping secrets: %v", u.Name, werr)
		}
		if errors.Is(err, ErrNotReady) {
			return nil, homed.Errorf(homed.ErrTimeout, "the home of %s was not mounted within %s: %v", u.Name, d.cfg.Session.MountTimeout.Duration, err)
		}
		return nil, homed.Errorf(homed.ErrMountFailed, "the home of %s could not be mounted: %v", u.Name, err)
	}
	return m, nil
}

// errNotOpen is CloseSession's error for a session that is not open. It has no name of its
// own in the interface, so it goes out as org.nostr.Homed1.Error.Failed.
func errNotOpen(user string) error {
	return fmt.Errorf("no session of %s is open: nothing to close", user)
}

// CloseSession closes one session of user; the last one unmounts the home, wipes the
// secrets and then the signer.
func (d *Daemon) CloseSession(ctx context.Context, user string) error {
	d.mu.Lock()
	us := d.users[user]
	d.mu.Unlock()
	if us == nil {
		if _, err := d.lookup(ctx, user); err != nil {
			return err
		}
		return errNotOpen(user)
	}
	for {
		us.mu.Lock()
		switch us.phase {
		case phaseOpening, phaseClosing:
			done := us.done
			us.mu.Unlock()
			if err := waitDone(ctx, done, d.waitBound()); err != nil {
				return homed.Errorf(homed.ErrTimeout, "session of %s: %v", user, err)
			}
			continue
		case phaseClosed:
			us.mu.Unlock()
			if _, err := d.lookup(ctx, user); err != nil {
				return err
			}
			return errNotOpen(user)
		}
		us.count--
		if us.count > 0 {
			n := us.count
			us.mu.Unlock()
			d.logf("session %s: closed (%d still open)", user, n)
			return nil
		}
		// The signer stays served while closing: nostrfs signs its last manifest after
		// SIGTERM. endSession wipes it once the mount has stopped.
		m, s, uid := us.mount, us.signer, us.uid
		us.phase = phaseClosing
		done := make(chan struct{})
		us.done = done
		us.mu.Unlock()

		err := d.endSession(user, m, uid, s)

		us.mu.Lock()
		if us.signer == s {
			us.signer, us.next = us.next, nil
		}
		us.phase, us.count, us.mount = phaseClosed, 0, nil
		if err != nil {
			us.lastErr = err.Error()
		}
		close(done)
		us.mu.Unlock()
		return err
	}
}

// endSession stops the mount (bounded by FlushTimeout), wipes the secrets and the signer,
// in that order: the mount may still need the signer to flush. No lock is held.
func (d *Daemon) endSession(user string, m Mount, uid uint32, s *sessionSigner) error {
	var errs []error
	if m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Session.FlushTimeout.Duration)
		if err := m.Stop(ctx); err != nil {
			errs = append(errs, homed.Errorf(homed.ErrMountFailed, "the mount of %s did not stop cleanly: %v", user, err))
		}
		cancel()
	}
	if err := wipeSecrets(d.rtDir, uid); err != nil {
		errs = append(errs, fmt.Errorf("wiping the secrets of %s: %w", user, err))
	}
	if s != nil {
		s.Wipe()
	}
	err := errors.Join(errs...)
	if err != nil {
		d.logf("session %s: closed with errors: %v", user, err)
	} else {
		d.logf("session %s: last session closed: unmounted, secrets and key wiped", user)
	}
	return err
}

// shutdown ends this user's session whatever its count, and wipes a pending signer.
func (us *userState) shutdown(ctx context.Context, d *Daemon) error {
	for {
		us.mu.Lock()
		switch us.phase {
		case phaseOpening, phaseClosing:
			done := us.done
			us.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return fmt.Errorf("session still %s at shutdown: %w", us.phase, ctx.Err())
			}
		case phaseClosed:
			s := us.signer
			us.signer = nil
			if us.signerTimer != nil {
				us.signerTimer.Stop()
				us.signerTimer = nil
			}
			us.mu.Unlock()
			if s != nil {
				s.Wipe()
			}
			return nil
		}
		m, s, uid := us.mount, us.signer, us.uid
		us.phase = phaseClosing
		done := make(chan struct{})
		us.done = done
		us.mu.Unlock()
		err := d.endSession(us.name, m, uid, s)
		us.mu.Lock()
		if us.signer == s {
			us.signer, us.next = us.next, nil
		}
		us.phase, us.count, us.mount = phaseClosed, 0, nil
		close(done)
		us.mu.Unlock()
		return err
	}
}
