package pamtest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/nostr-homed/nostr-homed/internal/homed"
)

// sub is e with t as its test (for subtests: FailNow must run on the subtest's goroutine).
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// TestPAM: the real module against the real daemon, each case in-process (msteinert/pam) and
// through pamtester. The subtests run in order; the last one stops the daemon.
func TestPAM(t *testing.T) {
	alice, bob := newIdent(t, "alice"), newIdent(t, "bob")
	other := newIdent(t, "other")
	e := newEnv(t, envOpts{users: []ident{alice, bob}})

	t.Run("right password", func(t *testing.T) {
		e := e.sub(t)
		e.both("alice", alice.password, 0, nil, 0, msgAuthOK, "authenticate")
		r := e.goPAM("alice", alice.password, 0, "authenticate")
		if want := []string{"Nostr key password for alice: "}; r.err != nil || strings.Join(r.prompts, "|") != want[0] {
			t.Errorf("the daemon's prompt: got %q (err %v), want %q", r.prompts, r.err, want)
		}
		if _, _, out := e.pamtester("alice", alice.password, 0, "authenticate"); !strings.Contains(out, "Nostr key password for alice: ") {
			t.Errorf("pamtester did not show the daemon's prompt:\n%s", out)
		}
		if st := e.status("alice"); st.Signer != "pending" {
			t.Errorf("after a successful login the daemon's signer is %q, want pending", st.Signer)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		e.sub(t).both("alice", "not the password", 0, pam.ErrAuth, 1, msgAuthErr, "authenticate")
	})

	t.Run("unknown user", func(t *testing.T) {
		e := e.sub(t)
		e.both("carol", "whatever", 0, pam.ErrUserUnknown, 1, msgUserUnknown, "authenticate")
		if r := e.goPAM("carol", "whatever", 0, "authenticate"); len(r.prompts) != 0 {
			t.Errorf("an unknown user was prompted: %q", r.prompts)
		}
		e.both("carol", "", 0, pam.ErrUserUnknown, 1, msgUserUnknown, "acct_mgmt")
	})

	t.Run("account allowed", func(t *testing.T) {
		e.sub(t).both("alice", "", 0, nil, 0, msgAcctOK, "acct_mgmt")
	})

	t.Run("proof signed by another key", func(t *testing.T) {
		e := e.sub(t)
		// bob's password works with his own settings...
		e.both("bob", bob.password, 0, nil, 0, msgAuthOK, "authenticate")
		// ...then newer settings carry an ncryptsec of ANOTHER key under the same password:
		// it decrypts, the proof is signed, but not by bob's enrolled key.
		ev := e.publish(bob, other.sk, time.Now())
		e.mustCall("WarmCache", "bob")
		var got string
		for _, c := range e.status("bob").Cached {
			if c.Name == "settings" {
				got = c.ID
			}
		}
		if got != ev.ID {
			t.Fatalf("after WarmCache the cached settings are %q, want the newer %s", got, ev.ID)
		}
		e.both("bob", bob.password, 0, pam.ErrAuth, 1, msgAuthErr, "authenticate")
		// The same at the bus: the daemon's reason is the foreign key, not the password.
		id, method := e.beginLoginDBusSend("bob")
		if method != "password" {
			t.Fatalf("BeginLogin(bob) method %q", method)
		}
		c := e.call("CompleteLogin", id, bob.password)
		if errName(c.Err) != homed.ErrAuthFailed || !strings.Contains(c.Err.Error(), "another key") {
			t.Errorf("CompleteLogin with another key's ncryptsec: %v, want %s about another key", c.Err, homed.ErrAuthFailed)
		}
	})

	// A replayed proof cannot be produced through PAM: the module never sees the proof or
	// the challenge, and every pam_authenticate runs a fresh BeginLogin and CompleteLogin
	// on a new login ID. What an attacker could replay is a login ID on the bus (the module's
	// own interface to the daemon), so single use is checked there: a BeginLogin made by
	// dbus-send, independent of the module, completed twice.
	t.Run("replayed proof (bus level)", func(t *testing.T) {
		e := e.sub(t)
		id, method := e.beginLoginDBusSend("alice")
		if method != "password" || id == "" {
			t.Fatalf("BeginLogin(alice): id %q method %q", id, method)
		}
		e.mustCall("CompleteLogin", id, alice.password)
		c := e.call("CompleteLogin", id, alice.password)
		if errName(c.Err) != homed.ErrProofReplayed {
			t.Errorf("CompleteLogin twice with one login ID: %v, want %s", c.Err, homed.ErrProofReplayed)
		}
	})

	// open_session mounts the home (this build's nostrfs), close_session unmounts it; from Go
	// with checks in between, and with pamtester in two runs.
	t.Run("session mounts the home", func(t *testing.T) {
		e := e.sub(t)
		home := filepath.Join(e.dir, "home", "alice")
		r := e.goPAM("alice", alice.password, 0, "authenticate", "acct_mgmt", "open_session", "mounted", "close_session", "unmounted")
		if r.err != nil {
			t.Fatalf("msteinert/pam session: %v (infos %q)", describe(r.err), r.infos)
		}
		rc, last, out := e.pamtester("alice", alice.password, 0, "authenticate", "open_session")
		if rc != 0 {
			t.Fatalf("pamtester authenticate open_session: exit %d %q\n%s", rc, last, out)
		}
		if got := fsType(home); got != "fuse.nostrfs" {
			t.Errorf("after pamtester open_session: %s has %q mounted", home, got)
		}
		if rc, last, out := e.pamtester("alice", "", 0, "close_session"); rc != 0 {
			t.Fatalf("pamtester close_session: exit %d %q\n%s", rc, last, out)
		}
		if got := fsType(home); got != "" {
			t.Errorf("after pamtester close_session: %s still has %q mounted", home, got)
		}
		st := e.status("alice")
		if st.Session.Open != 0 || st.Session.State != "closed" || len(st.Secrets) != 0 || st.Signer != "none" {
			t.Errorf("after close_session the daemon shows a session: %+v, secrets %q, signer %q", st.Session, st.Secrets, st.Signer)
		}
	})

	t.Run("daemon down", func(t *testing.T) {
		e := e.sub(t)
		e.stopDaemon()
		e.both("alice", alice.password, 0, pam.ErrAuthinfoUnavail, 1, msgAuthinfo, "authenticate")
		e.both("alice", "", 0, pam.ErrAuthinfoUnavail, 1, msgAuthinfo, "acct_mgmt")
	})
}

// TestPAMExpiredProof: with a short login.challenge_ttl, a user who answers the password
// prompt after the TTL gets PAM_AUTH_ERR (the daemon's ProofExpired), one who answers at once
// gets in.
//
// The TTL is 2 s, not 1 s: the issuer truncates a challenge's expiry to whole seconds
// (internal/login, Issuer.Begin: ExpiresAt = time.Unix(now.Add(ttl).Unix(), 0)), so a TTL of
// N s lives between N-1 and N s, and with 1 s an immediate answer (BeginLogin plus ~100 ms of
// scrypt) was refused as expired in about a third of the runs.
func TestPAMExpiredProof(t *testing.T) {
	const ttl, wait = "2s", 3 * time.Second
	alice := newIdent(t, "alice")
	e := newEnv(t, envOpts{users: []ident{alice}, challengeTTL: ttl})
	e.mustCall("WarmCache", "alice") // so that BeginLogin does not spend the TTL warming
	e.both("alice", alice.password, 0, nil, 0, msgAuthOK, "authenticate")
	e.both("alice", alice.password, wait, pam.ErrAuth, 1, msgAuthErr, "authenticate")
	// The same wait at the bus names the reason (the module's syslog line does too, but
	// the in-process test cannot read it).
	id, _ := e.beginLoginDBusSend("alice")
	time.Sleep(wait)
	if c := e.call("CompleteLogin", id, alice.password); errName(c.Err) != homed.ErrProofExpired {
		t.Errorf("CompleteLogin after the TTL: %v, want %s", c.Err, homed.ErrProofExpired)
	}
}

// TestPAMAccountPolicy: with policy.allow_npubs naming someone else, an enrolled user's
// acct_mgmt is PAM_PERM_DENIED.
func TestPAMAccountPolicy(t *testing.T) {
	alice, other := newIdent(t, "alice"), newIdent(t, "other")
	e := newEnv(t, envOpts{users: []ident{alice}, allowNpubs: []string{other.npub}})
	e.both("alice", "", 0, pam.ErrPermDenied, 1, msgPermDenied, "acct_mgmt")
	e.both("alice", alice.password, 0, nil, 0, msgAuthOK, "authenticate")
}
