package daemon_test

import (
	"context"
	"encoding/json"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/homed"
)

// TestTwoUsersEnrolledAndWarmed enrolls two users whose events are on a real relay, warms
// them over the bus (one by name, one by npub) and checks the status JSON at each step.
func TestTwoUsersEnrolledAndWarmed(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob := newIdent(t, "alice"), newIdent(t, "bob")
	pa, pb := e.publish(alice, pubOpts{}), e.publish(bob, pubOpts{})
	ua, ub := e.enroll(alice), e.enroll(bob)
	if ua.UID == ub.UID || ua.UID < 65536 || ub.UID < 65536 {
		t.Fatalf("UIDs %d and %d", ua.UID, ub.UID)
	}

	// Enrolled, nothing cached yet.
	st := e.status("alice")
	if !st.Enrolled || st.User != "alice" || st.UID != ua.UID || st.Npub != alice.npub || st.Home != filepath.Join(e.home, "alice") {
		t.Fatalf("status before warm: %+v", st)
	}
	for _, c := range st.Cached {
		if c.Present {
			t.Fatalf("cached before any warm: %+v", c)
		}
	}
	if st.LastWarm != nil || st.Session.State != "closed" || st.Session.Open != 0 || len(st.Secrets) != 0 || st.Signer != "none" || st.LoginMethod != "" {
		t.Fatalf("status before warm: %+v", st)
	}

	e.mustCall("WarmCache", "alice")
	e.mustCall("WarmCache", bob.npub)

	for _, c := range []struct {
		user string
		uid  uint32
		p    published
	}{{"alice", ua.UID, pa}, {"bob", ub.UID, pb}} {
		st := e.status(c.user)
		if !st.Enrolled || st.UID != c.uid || st.LoginMethod != "password" {
			t.Fatalf("%s after warm: %+v", c.user, st)
		}
		for name, ev := range map[string]*nostr.Event{"settings": c.p.settings, "secrets": c.p.secrets, "manifest": c.p.manifest} {
			ce := cached(st, name)
			if !ce.Present || ce.ID != ev.ID || ce.CreatedAt != int64(ev.CreatedAt) || ce.Age == "" {
				t.Fatalf("%s: cached %s = %+v, want id %s", c.user, name, ce, ev.ID)
			}
		}
		if ce := cached(st, "relay list"); ce.Present {
			t.Fatalf("%s: a relay list is cached but none was published: %+v", c.user, ce)
		}
		w := st.LastWarm
		if w == nil || w.Stale || len(w.Answered) != 1 || w.Answered[0] != e.stack.RelayURL() || len(w.Failed) != 0 || w.Error != "" {
			t.Fatalf("%s: last warm %+v", c.user, w)
		}
		if st.Session.State != "closed" || st.Session.Open != 0 || st.Session.Mount != nil || len(st.Secrets) != 0 {
			t.Fatalf("%s: session after warm: %+v, secrets %v", c.user, st.Session, st.Secrets)
		}
	}

	// Every user, for root.
	var js string
	must(t, e.mustCall("GetStatus", "").Store(&js))
	var all struct {
		Host  string          `json:"host"`
		Users []daemon.Status `json:"users"`
	}
	must(t, json.Unmarshal([]byte(js), &all))
	if all.Host != "testhost" || len(all.Users) != 2 {
		t.Fatalf("status of everyone: %s", js)
	}

	// Unknown targets and users.
	e.callErr(homed.ErrUnknownUser, "WarmCache", "carol")
	e.callErr(homed.ErrUnknownUser, "GetStatus", "carol")
	e.callErr(homed.ErrInvalidArgs, "WarmCache", "alice/Not-A-Namespace")
	e.callErr(homed.ErrInvalidArgs, "WarmCache", "npub1notanpub")
}

// TestLoginOverTheBus runs the PAM module's calls as root against real password logins.
func TestLoginOverTheBus(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, mallory := newIdent(t, "alice"), newIdent(t, "mallory")
	other := newIdent(t, "other")
	e.publish(alice, pubOpts{})
	// mallory's settings lock another key with her password: the key unlocks, but it is not
	// the enrolled one.
	e.publish(mallory, pubOpts{ncryptsecKey: other.sk})
	e.enroll(alice)
	e.enroll(mallory)

	// BeginLogin warms by itself when nothing is cached.
	id, prompt, _ := e.beginLogin("alice", "password")
	if prompt != "Nostr key password for alice: " {
		t.Fatalf("prompt %q", prompt)
	}
	if st := e.status("alice"); !cached(st, "settings").Present || st.LastWarm == nil {
		t.Fatalf("BeginLogin did not warm: %+v", st)
	}
	e.mustCall("CompleteLogin", id, alice.password)
	if st := e.status("alice"); st.Signer != "pending" {
		t.Fatalf("after login the signer is %q, want pending", st.Signer)
	}
	// The same login ID again: replayed.
	e.callErr(homed.ErrProofReplayed, "CompleteLogin", id, alice.password)

	// Wrong password: AuthFailed, and the login is gone.
	id2, _, _ := e.beginLogin("alice", "password")
	msg := e.callErr(homed.ErrAuthFailed, "CompleteLogin", id2, "wrong password")
	if !strings.Contains(msg, "wrong password") {
		t.Fatalf("wrong password message: %s", msg)
	}
	e.callErr(homed.ErrAuthFailed, "CompleteLogin", id2, alice.password)

	// Cancelled: gone.
	id3, _, _ := e.beginLogin("alice", "password")
	e.mustCall("CancelLogin", id3)
	e.callErr(homed.ErrAuthFailed, "CompleteLogin", id3, alice.password)
	// A login ID never issued.
	e.callErr(homed.ErrAuthFailed, "CompleteLogin", strings.Repeat("0", 32), alice.password)

	// Unknown user: UnknownUser, so PAM answers PAM_USER_UNKNOWN.
	e.callErr(homed.ErrUnknownUser, "BeginLogin", "carol", "sshd", "")
	e.callErr(homed.ErrUnknownUser, "BeginLogin", "root", "sshd", "")

	// An ncryptsec that belongs to another key: AuthFailed.
	id4, _, _ := e.beginLogin("mallory", "password")
	msg = e.callErr(homed.ErrAuthFailed, "CompleteLogin", id4, mallory.password)
	if !strings.Contains(msg, "another key") {
		t.Fatalf("foreign ncryptsec message: %s", msg)
	}
	if st := e.status("mallory"); st.Signer != "none" {
		t.Fatalf("a failed login left a signer: %q", st.Signer)
	}

	// Account checks.
	e.mustCall("CheckAccount", "alice")
	e.callErr(homed.ErrUnknownUser, "CheckAccount", "carol")
}

// TestLoginExpired uses a short challenge TTL from the configuration.
func TestLoginExpired(t *testing.T) {
	e := newEnv(t, envOpts{mutate: func(c *config.Config) { c.Login.ChallengeTTL = config.Duration{Duration: time.Second} }})
	alice := newIdent(t, "alice")
	e.publish(alice, pubOpts{})
	e.enroll(alice)
	e.mustCall("WarmCache", "alice")
	id, _, _ := e.beginLogin("alice", "password")
	time.Sleep(2100 * time.Millisecond)
	e.callErr(homed.ErrProofExpired, "CompleteLogin", id, alice.password)
	if st := e.status("alice"); st.Signer != "none" {
		t.Fatalf("an expired login left a signer: %q", st.Signer)
	}
}

// TestUnprivilegedCallerRefused: uid 65534 may not open sessions nor read another user's
// status; the daemon's own check answers (AccessDenied), and nothing happens.
func TestUnprivilegedCallerRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice := newIdent(t, "alice")
	e.publish(alice, pubOpts{})
	e.enroll(alice)
	for _, c := range [][]string{
		{"OpenSession", "string:alice"},
		{"CloseSession", "string:alice"},
		{"GetStatus", "string:alice"},
		{"WarmCache", "string:alice"},
		{"BeginLogin", "string:alice", "string:sshd", "string:"},
	} {
		out, err := e.callAs(65534, c[0], c[1:]...)
		if err == nil || !strings.Contains(out, "AccessDenied") {
			t.Fatalf("%s as uid 65534: %v\n%s", c[0], err, out)
		}
	}
	st := e.status("alice")
	if st.Session.Open != 0 || st.LastWarm != nil {
		t.Fatalf("refused calls had effects: %+v", st)
	}
}

// TestWarmOffline: with the relay stopped, a warm cache makes WarmCache succeed with a stale
// flag; no cache makes it (and BeginLogin) fail with Unavailable.
func TestWarmOffline(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, carol := newIdent(t, "alice"), newIdent(t, "carol")
	p := e.publish(alice, pubOpts{})
	e.enroll(alice)
	e.enroll(carol) // enrolled, never warmed
	e.mustCall("WarmCache", "alice")

	relay := e.stack.RelayURL()
	must(t, e.stack.Close())

	e.mustCall("WarmCache", "alice")
	st := e.status("alice")
	w := st.LastWarm
	if w == nil || !w.Stale || len(w.Answered) != 0 || w.Failed[relay] == "" || w.Error != "" {
		t.Fatalf("offline warm with a cache: %+v", w)
	}
	if ce := cached(st, "settings"); !ce.Present || ce.ID != p.settings.ID {
		t.Fatalf("the cache was lost: %+v", ce)
	}
	if ce := cached(st, "secrets"); !ce.Present || ce.ID != p.secrets.ID {
		t.Fatalf("the cache was lost: %+v", ce)
	}

	msg := e.callErr(homed.ErrUnavailable, "WarmCache", "carol")
	if !strings.Contains(msg, "could not be fetched") || !strings.Contains(msg, relay) {
		t.Fatalf("offline warm without a cache: %s", msg)
	}
	if st := e.status("carol"); st.LastWarm == nil || !st.LastWarm.Stale || st.LastWarm.Error == "" {
		t.Fatalf("carol's warm report: %+v", st.LastWarm)
	}
	msg = e.callErr(homed.ErrUnavailable, "BeginLogin", "carol", "sshd", "")
	if !strings.Contains(msg, "could not be fetched") {
		t.Fatalf("BeginLogin offline without settings: %s", msg)
	}

	// A password login works offline from the cache.
	e.login(alice)
}

// TestWarmFindsNothing: relays answer but hold no settings: Unavailable that says so.
func TestWarmFindsNothing(t *testing.T) {
	e := newEnv(t, envOpts{})
	dave := newIdent(t, "dave")
	e.enroll(dave)
	msg := e.callErr(homed.ErrUnavailable, "WarmCache", "dave")
	if !strings.Contains(msg, "no nostr-homed settings") {
		t.Fatalf("warm of a user with no events: %s", msg)
	}
	if st := e.status("dave"); st.LastWarm == nil || st.LastWarm.Stale || len(st.LastWarm.Answered) != 1 {
		t.Fatalf("report: %+v", st.LastWarm)
	}
}

func newDaemon(t *testing.T, mutate func(*config.Config)) (*daemon.Daemon, error) {
	base := t.TempDir()
	os.WriteFile(filepath.Join(base, "passwd"), []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(base, "group"), []byte("root:x:0:\n"), 0o644)
	cfg := config.Default()
	cfg.Users.Database = filepath.Join(base, "lib", "users.db")
	cfg.Users.HomeBase = filepath.Join(base, "home")
	cfg.Session.RuntimeDir = filepath.Join(base, "run")
	cfg.Session.Supervisor = "builtin"
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := daemon.New(cfg, daemon.Options{PasswdPath: filepath.Join(base, "passwd"), GroupPath: filepath.Join(base, "group"),
		SubUIDPath: filepath.Join(base, "none"), SubGIDPath: filepath.Join(base, "none"), Hostname: "h", Log: &syncbuf.Buffer{}})
	if err == nil {
		t.Cleanup(func() { d.Close() })
	}
	return d, err
}

func TestPolicy(t *testing.T) {
	requireRoot(t)
	alice, bob := newIdent(t, "alice"), newIdent(t, "bob")
	ctx := context.Background()
	enroll := func(d *daemon.Daemon) {
		for _, id := range []ident{alice, bob} {
			if _, err := d.DB().AddUser(ctx, userdbUser(id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	d, err := newDaemon(t, func(c *config.Config) { c.Policy.AllowNpubs = []string{alice.npub} })
	must(t, err)
	enroll(d)
	if err := d.CheckAccount(ctx, "alice"); err != nil {
		t.Fatalf("alice is in allow_npubs: %v", err)
	}
	if err := d.CheckAccount(ctx, "bob"); homedName(err) != homed.ErrNotAllowed {
		t.Fatalf("bob is not in allow_npubs: %v", err)
	}
	if err := d.CheckAccount(ctx, "carol"); homedName(err) != homed.ErrUnknownUser {
		t.Fatalf("carol: %v", err)
	}
	// OpenSession enforces the policy itself, whatever the account phase said.
	if err := d.OpenSession(ctx, "bob"); homedName(err) != homed.ErrNotAllowed {
		t.Fatalf("OpenSession for bob, excluded by policy: %v", err)
	}

	d2, err := newDaemon(t, func(c *config.Config) {
		c.Policy.AllowNpubs = []string{alice.npub}
		c.Policy.AllowNIP05Domains = []string{"example.org"}
	})
	must(t, err)
	enroll(d2)
	if err := d2.CheckAccount(ctx, "alice"); err != nil {
		t.Fatalf("alice is in allow_npubs: %v", err)
	}
	err = d2.CheckAccount(ctx, "bob")
	if homedName(err) != homed.ErrNotAllowed || !strings.Contains(err.Error(), "not supported yet") {
		t.Fatalf("NIP-05 policy must refuse clearly, not allow: %v", err)
	}
}

func TestUIDKeyGeneratedOnceAndKept(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	db := filepath.Join(base, "lib", "users.db")
	alice := newIdent(t, "alice")
	mk := func() uint32 {
		d, err := newDaemonAt(t, base, db)
		must(t, err)
		defer d.Close()
		u, err := d.DB().AddUser(context.Background(), userdbUser(alice))
		must(t, err)
		must(t, d.DB().RemoveUser(context.Background(), "alice"))
		return u.UID
	}
	uid1 := mk()
	keyFile := filepath.Join(base, "lib", daemon.UIDKeyFile)
	st, err := os.Stat(keyFile)
	must(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %o", keyFile, st.Mode().Perm())
	}
	key1, _ := os.ReadFile(keyFile)
	uid2 := mk()
	key2, _ := os.ReadFile(keyFile)
	if string(key1) != string(key2) || len(strings.TrimSpace(string(key1))) != 32 || uid1 != uid2 {
		t.Fatalf("key %q then %q, uid %d then %d", key1, key2, uid1, uid2)
	}
	// The event cache is private.
	st, err = os.Stat(filepath.Join(base, "lib", "private", "events"))
	must(t, err)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("event cache mode %o", st.Mode().Perm())
	}
	// A loose key file is refused.
	must(t, os.Chmod(keyFile, 0o644))
	if _, err := newDaemonAt(t, base, db); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a world-readable key file was accepted: %v", err)
	}
}

func newDaemonAt(t *testing.T, base, db string) (*daemon.Daemon, error) {
	os.WriteFile(filepath.Join(base, "passwd"), []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(base, "group"), []byte("root:x:0:\n"), 0o644)
	cfg := config.Default()
	cfg.Users.Database = db
	cfg.Session.RuntimeDir = filepath.Join(base, "run")
	cfg.Session.Supervisor = "builtin"
	return daemon.New(cfg, daemon.Options{PasswdPath: filepath.Join(base, "passwd"), GroupPath: filepath.Join(base, "group"),
		SubUIDPath: filepath.Join(base, "none"), SubGIDPath: filepath.Join(base, "none"), Hostname: "h", Log: &syncbuf.Buffer{}})
}

func TestSystemdSupervisorWithoutSystemd(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd is running here")
	}
	_, err := newDaemon(t, func(c *config.Config) { c.Session.Supervisor = "systemd" })
	if err == nil || !strings.Contains(err.Error(), "systemd is not running") {
		t.Fatalf("supervisor=systemd without systemd: %v", err)
	}
	d, err := newDaemon(t, func(c *config.Config) { c.Session.Supervisor = "auto" })
	must(t, err)
	if js, err := d.Status(context.Background(), ""); err != nil || !strings.Contains(js, `"supervisor":"builtin"`) {
		t.Fatalf("auto without systemd must be builtin: %v %s", err, js)
	}
	if got := daemon.UnitName("a-b_c"); got != `nostrfs@a\x2db_c.service` {
		t.Fatalf("unit name %q", got)
	}
}
