package daemon_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"context"
	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

// TestOpenSessionWithThisBuildsNostrfs: the real nostrfs of this build mounts the home; a
// write reaches the relay and Blossom at the last close; with relay and Blossom down the
// home mounts again from the cache alone. A mount that cannot start is an error that leaves
// nothing behind.
func TestOpenSessionWithThisBuildsNostrfs(t *testing.T) {
	nostrfs, _ := binaries(t)
	e := newEnv(t, envOpts{nostrfs: nostrfs})
	alice := newIdent(t, "alice")
	e.publish(alice, pubOpts{noManifest: true})
	u := e.enroll(alice)
	home := filepath.Join(e.home, "alice")

	// No login: no key to unlock the home with.
	msg := e.callErr(homed.ErrMountFailed, "OpenSession", "alice")
	if !strings.Contains(msg, "no unlocked key") {
		t.Fatalf("OpenSession without a login: %s", msg)
	}

	e.login(alice)
	e.call("OpenSession", "alice")
	if fsType(home) != "fuse.nostrfs" {
		t.Fatalf("%s is not a nostrfs mount after OpenSession (%q)", home, fsType(home))
	}
	must(t, os.WriteFile(filepath.Join(home, "notes.txt"), []byte("written in a session\n"), 0o644))
	// Another local user reads none of it: the mount, the cache, the secrets.
	for _, p := range []string{home, filepath.Join(home, "notes.txt"),
		filepath.Join(e.cfg.Cache.Dir, strconv.Itoa(int(u.UID))), filepath.Join(e.rt, strconv.Itoa(int(u.UID)), "secrets")} {
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", p+"/.").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("uid 65534 reading %s: %v %s (want Permission denied)", p, err, out)
		}
	}
	e.call("CloseSession", "alice")
	if fsType(home) != "" {
		t.Fatalf("%s still mounted after the last CloseSession", home)
	}
	res, err := relayio.FetchNewest(context.Background(), []string{e.stack.RelayURL()},
		events.Expect{Kind: events.KindManifest, Author: alice.pk, D: events.DTag("personal")}, 5*time.Second)
	if err != nil || res.Selection.Newest == nil {
		t.Fatalf("no manifest on the relay after the session: %v", err)
	}

	// Everything down, the cache warm: the login (password, cached settings) and the mount
	// work, and the file is there.
	must(t, e.stack.Close())
	e.login(alice)
	e.call("OpenSession", "alice")
	b, err := os.ReadFile(filepath.Join(home, "notes.txt"))
	if err != nil || string(b) != "written in a session\n" {
		t.Fatalf("the home mounted from the cache reads %q, %v", b, err)
	}
	e.call("CloseSession", "alice")

	// A home that cannot be unlocked (no home key in the secrets): MountFailed, with
	// nostrfs's reason, and nothing left behind.
	bob := newIdent(t, "bob")
	e2 := newEnv(t, envOpts{nostrfs: nostrfs})
	e2.publish(bob, pubOpts{noManifest: true, noSecrets: true})
	ub := e2.enroll(bob)
	e2.login(bob)
	msg = e2.callErr(homed.ErrMountFailed, "OpenSession", "bob")
	if !strings.Contains(msg, "no cached secrets") {
		t.Fatalf("OpenSession of a home without secrets: %s", msg)
	}
	secrets := filepath.Join(e2.rt, strconv.Itoa(int(ub.UID)), "secrets")
	if _, err := os.Lstat(secrets); !os.IsNotExist(err) {
		t.Fatalf("%s left behind after the failed mount: %v", secrets, err)
	}
	st := e2.status("bob")
	if st.Session.Open != 0 || st.Session.State != "closed" || st.Session.Mount != nil || len(st.Secrets) != 0 || st.Signer != "none" {
		t.Fatalf("status after the failed open: %+v secrets %v signer %s", st.Session, st.Secrets, st.Signer)
	}
	if !strings.Contains(st.Session.LastError, "no cached secrets") {
		t.Fatalf("status does not say why: %q", st.Session.LastError)
	}
	// Not open, so it cannot be closed.
	if msg := e2.callErr(errFailed, "CloseSession", "bob"); !strings.Contains(msg, "no session of bob is open") {
		t.Fatalf("closing a session that is not open: %s", msg)
	}
	e2.callErr(homed.ErrUnknownUser, "CloseSession", "carol")
	e2.callErr(homed.ErrUnknownUser, "OpenSession", "carol")
	_ = u
}

// fsType is the file system type mounted exactly at dir ("" if none).
func fsType(dir string) string {
	fstype, _ := mounts.At(dir)
	return fstype
}

// TestSessionsWithFakeNostrfs runs the supervisor's happy path with fake-nostrfs, a
// test-only stand-in for nostrfs (it sends READY=1 and waits for SIGTERM, mounting nothing,
// so the supervisor's own behaviour is tested apart from the file system): two users, secrets with the right modes and owners, counts,
// and everything gone after the last close.
func TestSessionsWithFakeNostrfs(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	alice, bob := newIdent(t, "alice"), newIdent(t, "bob")
	pa := e.publish(alice, pubOpts{})
	e.publish(bob, pubOpts{noSecrets: true})
	ua, ub := e.enroll(alice), e.enroll(bob)
	e.mustCall("WarmCache", "alice")
	e.mustCall("WarmCache", "bob")

	e.login(alice)
	e.mustCall("OpenSession", "alice")

	// Secrets: RuntimeDir/UID 0700 and secrets/ 0700 owned by alice, files 0600 owned by
	// alice with the published contents.
	uidDir := filepath.Join(e.rt, strconv.Itoa(int(ua.UID)))
	sdir := filepath.Join(uidDir, "secrets")
	for _, p := range []string{uidDir, sdir} {
		checkOwnerMode(t, p, ua.UID, os.ModeDir|0o700)
	}
	for _, f := range pa.files {
		p := filepath.Join(sdir, f.Name)
		checkOwnerMode(t, p, ua.UID, 0o600)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != string(f.Data) {
			t.Fatalf("%s: %q, %v; want %q", p, b, err, f.Data)
		}
	}
	// The mount point was created for alice.
	checkOwnerMode(t, filepath.Join(e.home, "alice"), ua.UID, os.ModeDir|0o700)

	st := e.status("alice")
	m := st.Session.Mount
	if st.Session.Open != 1 || st.Session.State != "open" || m == nil || m.State != "ready" || m.PID == 0 || st.Signer != "in use" {
		t.Fatalf("status of the open session: %+v mount %+v signer %s", st.Session, m, st.Signer)
	}
	if want := "fake-nostrfs serving alice on " + filepath.Join(e.home, "alice"); !strings.HasPrefix(m.Message, want) {
		t.Fatalf("mount message %q, want %q...", m.Message, want)
	}
	if strings.Join(st.Secrets, ",") != "github-token,id_ed25519" {
		t.Fatalf("secrets in status: %v", st.Secrets)
	}
	pid := m.PID
	if !pidAlive(pid) {
		t.Fatalf("the mount helper (pid %d) is not running", pid)
	}

	// bob: no secrets published, an empty secrets directory; his own mount.
	e.login(bob)
	e.mustCall("OpenSession", "bob")
	sb := e.status("bob")
	if sb.Session.Open != 1 || sb.Session.Mount == nil || sb.Session.Mount.PID == pid || len(sb.Secrets) != 0 {
		t.Fatalf("bob's session: %+v secrets %v", sb.Session, sb.Secrets)
	}
	checkOwnerMode(t, filepath.Join(e.rt, strconv.Itoa(int(ub.UID)), "secrets"), ub.UID, os.ModeDir|0o700)

	// A second session of alice only counts; closing one keeps the mount.
	e.mustCall("OpenSession", "alice")
	if st := e.status("alice"); st.Session.Open != 2 || st.Session.Mount.PID != pid {
		t.Fatalf("second open: %+v", st.Session)
	}
	e.mustCall("CloseSession", "alice")
	if st := e.status("alice"); st.Session.Open != 1 || !pidAlive(pid) || len(st.Secrets) != 2 {
		t.Fatalf("after closing one of two: %+v alive %v", st.Session, pidAlive(pid))
	}

	// The last close stops the helper and wipes the secrets and the key.
	e.mustCall("CloseSession", "alice")
	if pidAlive(pid) {
		t.Fatalf("the mount helper (pid %d) still runs after the last close", pid)
	}
	if _, err := os.Lstat(sdir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after the last close: %v", sdir, err)
	}
	st = e.status("alice")
	if st.Session.Open != 0 || st.Session.State != "closed" || st.Session.Mount != nil || len(st.Secrets) != 0 || st.Signer != "none" {
		t.Fatalf("status after the last close: %+v secrets %v signer %s", st.Session, st.Secrets, st.Signer)
	}
	e.callErr(errFailed, "CloseSession", "alice")
	// The key was wiped: a new session needs a new login.
	e.callErr(homed.ErrMountFailed, "OpenSession", "alice")

	// bob is untouched by alice's close; his close cleans up too.
	if sb := e.status("bob"); sb.Session.Open != 1 || !pidAlive(sb.Session.Mount.PID) {
		t.Fatalf("bob after alice's close: %+v", sb.Session)
	}
	bobPID := e.status("bob").Session.Mount.PID
	e.mustCall("CloseSession", "bob")
	if pidAlive(bobPID) {
		t.Fatal("bob's mount helper still runs")
	}
}

// TestSessionAfterShutdown: stopping the daemon closes open sessions (the helper is stopped,
// secrets wiped).
func TestSessionClosedAtShutdown(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	alice := newIdent(t, "alice")
	e.publish(alice, pubOpts{})
	u := e.enroll(alice)
	e.login(alice)
	e.mustCall("OpenSession", "alice")
	pid := e.status("alice").Session.Mount.PID
	must(t, e.d.Shutdown(t.Context()))
	if pidAlive(pid) {
		t.Fatal("the mount helper survived the daemon's shutdown")
	}
	if _, err := os.Lstat(filepath.Join(e.rt, strconv.Itoa(int(u.UID)), "secrets")); !os.IsNotExist(err) {
		t.Fatalf("secrets survived the shutdown: %v", err)
	}
	e.callErr(homed.ErrMountFailed, "OpenSession", "alice")
}

// TestMountFailures: a helper that never gets ready (Timeout), one that crashes (MountFailed
// with its message), one that ignores SIGTERM (killed after the flush bound).
func TestMountFailures(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake, mutate: func(c *config.Config) {
		c.Session.MountTimeout = config.Duration{Duration: 1500 * time.Millisecond}
		c.Session.FlushTimeout = config.Duration{Duration: time.Second}
	}})
	hang, crash, stubborn := newIdent(t, "hang-user"), newIdent(t, "crash-user"), newIdent(t, "stubborn-user")
	for _, id := range []ident{hang, crash, stubborn} {
		e.publish(id, pubOpts{})
		e.enroll(id)
	}

	e.login(hang)
	start := time.Now()
	msg := e.callErr(homed.ErrTimeout, "OpenSession", "hang-user")
	if d := time.Since(start); d > 10*time.Second || !strings.Contains(msg, "READY=1") {
		t.Fatalf("hanging helper: %s after %s", msg, d)
	}
	if st := e.status("hang-user"); st.Session.Open != 0 || len(st.Secrets) != 0 {
		t.Fatalf("after the timeout: %+v %v", st.Session, st.Secrets)
	}

	e.login(crash)
	msg = e.callErr(homed.ErrMountFailed, "OpenSession", "crash-user")
	if !strings.Contains(msg, "crashing on purpose") || !strings.Contains(msg, "exit status 4") {
		t.Fatalf("crashing helper: %s", msg)
	}

	e.login(stubborn)
	e.mustCall("OpenSession", "stubborn-user")
	pid := e.status("stubborn-user").Session.Mount.PID
	msg = e.callErr(homed.ErrMountFailed, "CloseSession", "stubborn-user")
	if !strings.Contains(msg, "killed") {
		t.Fatalf("stubborn helper: %s", msg)
	}
	if pidAlive(pid) {
		t.Fatal("the stubborn helper survived SIGKILL")
	}
	if st := e.status("stubborn-user"); st.Session.Open != 0 || st.Session.State != "closed" || len(st.Secrets) != 0 || st.Signer != "none" {
		t.Fatalf("after the forced close: %+v %v %s", st.Session, st.Secrets, st.Signer)
	}
}

// TestOpenSessionOffline: every relay down, the cache warm: the session opens from the cache.
func TestOpenSessionOffline(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	alice := newIdent(t, "alice")
	e.publish(alice, pubOpts{})
	e.enroll(alice)
	e.mustCall("WarmCache", "alice")
	must(t, e.stack.Close())
	e.login(alice)
	e.mustCall("OpenSession", "alice")
	st := e.status("alice")
	if st.Session.Open != 1 || st.LastWarm == nil || !st.LastWarm.Stale || len(st.Secrets) != 2 {
		t.Fatalf("offline session: %+v warm %+v secrets %v", st.Session, st.LastWarm, st.Secrets)
	}
	e.mustCall("CloseSession", "alice")
}

// errFailed is the name of an error the interface has no specific name for.
const errFailed = homed.Interface + ".Error.Failed"

func checkOwnerMode(t *testing.T, path string, uid uint32, mode os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode() != mode || sys.Uid != uid || sys.Gid != uid {
		t.Fatalf("%s: mode %v owner %d:%d, want %v owner %d:%d", path, st.Mode(), sys.Uid, sys.Gid, mode, uid, uid)
	}
}
