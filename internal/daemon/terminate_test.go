package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/homed"
)

// TestTerminateSessions: alice has two sessions open (fake-nostrfs) and bob one. An
// unprivileged caller is refused; root's TerminateSessions ends both of alice's at once (the
// helper stopped, the secrets and the key wiped) and leaves bob's alone; alice's outstanding
// login is dropped; for a while alice can neither log in nor open a session.
func TestTerminateSessions(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	alice, bob := newIdent(t, "alice"), newIdent(t, "bob")
	e.publish(alice, pubOpts{})
	e.publish(bob, pubOpts{})
	ua := e.enroll(alice)
	e.enroll(bob)

	e.login(alice)
	e.mustCall("OpenSession", "alice")
	e.mustCall("OpenSession", "alice")
	e.login(bob)
	e.mustCall("OpenSession", "bob")
	st := e.status("alice")
	if st.Session.Open != 2 || st.Session.Mount == nil || len(st.Secrets) != 2 {
		t.Fatalf("alice before: %+v %v", st.Session, st.Secrets)
	}
	pid, bobPID := st.Session.Mount.PID, e.status("bob").Session.Mount.PID
	// A login begun before the removal must not give a key after it.
	lid, _, _ := e.beginLogin("alice", "password")

	if out, err := e.callAs(65534, "TerminateSessions", "string:alice"); err == nil || !strings.Contains(out, "AccessDenied") {
		t.Fatalf("TerminateSessions as uid 65534: %v\n%s", err, out)
	}
	if st := e.status("alice"); st.Session.Open != 2 || !pidAlive(pid) {
		t.Fatalf("a refused TerminateSessions changed something: %+v", st.Session)
	}

	var n uint32
	must(t, e.mustCall("TerminateSessions", "alice").Store(&n))
	if n != 2 {
		t.Fatalf("TerminateSessions ended %d sessions, want 2", n)
	}
	if pidAlive(pid) {
		t.Fatalf("alice's mount helper (pid %d) still runs", pid)
	}
	sdir := filepath.Join(e.rt, strconv.Itoa(int(ua.UID)), "secrets")
	if _, err := os.Lstat(sdir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", sdir, err)
	}
	st = e.status("alice")
	if st.Session.Open != 0 || st.Session.State != "closed" || st.Session.Mount != nil || len(st.Secrets) != 0 || st.Signer != "none" {
		t.Fatalf("alice after: %+v secrets %v signer %s", st.Session, st.Secrets, st.Signer)
	}
	if sb := e.status("bob"); sb.Session.Open != 1 || !pidAlive(bobPID) {
		t.Fatalf("bob after alice's end: %+v", sb.Session)
	}

	// The outstanding login is gone; new logins and sessions are refused for now.
	e.callErr(homed.ErrAuthFailed, "CompleteLogin", lid, alice.password)
	if st := e.status("alice"); st.Signer != "none" {
		t.Fatalf("the dropped login left a signer: %s", st.Signer)
	}
	if msg := e.callErr(homed.ErrNotAllowed, "BeginLogin", "alice", "sshd", ""); !strings.Contains(msg, "being removed") {
		t.Fatalf("BeginLogin after TerminateSessions: %s", msg)
	}
	e.callErr(homed.ErrNotAllowed, "OpenSession", "alice")
	e.callErr(homed.ErrNotAllowed, "CheckAccount", "alice")

	// Nothing open is not an error; twice is fine.
	must(t, e.mustCall("TerminateSessions", "alice").Store(&n))
	if n != 0 {
		t.Fatalf("second TerminateSessions: %d", n)
	}
	e.callErr(homed.ErrInvalidArgs, "TerminateSessions", "Not A Name")
	e.mustCall("CloseSession", "bob")
}

// TestLoginOfARemovedUser: the daemon refuses BeginLogin and OpenSession of a user who is no
// longer in the database, and a login that was under way when the user was removed gives
// no key.
func TestLoginOfARemovedUser(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	carol := newIdent(t, "carol")
	e.publish(carol, pubOpts{})
	e.enroll(carol)
	ctx := context.Background()

	lid, _, _ := e.beginLogin("carol", "password")
	must(t, e.d.DB().RemoveUser(ctx, "carol")) // as an older `remove` did, without the daemon
	e.callErr(homed.ErrUnknownUser, "CompleteLogin", lid, carol.password)
	e.callErr(homed.ErrUnknownUser, "BeginLogin", "carol", "sshd", "")
	e.callErr(homed.ErrUnknownUser, "OpenSession", "carol")

	// Enrolled again (same key, same UID): the login above left no key behind.
	e.enroll(carol)
	if st := e.status("carol"); st.Signer != "none" {
		t.Fatalf("a login completed after the removal left a signer: %s", st.Signer)
	}
	e.callErr(homed.ErrMountFailed, "OpenSession", "carol")
}
