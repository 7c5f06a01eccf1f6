package main

// Tests of the commands that go through a running daemon: an in-process daemon (package
// daemon) on a private system-like bus, a real relay (devstacktest), and fake-nostrfs
// (internal/daemon/testdata) as the mount helper. The CLI runs in-process (run) and finds the
// bus through DBUS_SYSTEM_BUS_ADDRESS.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip49"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
)

// fakeNostrfs builds internal/daemon/testdata/fake-nostrfs next to the test's binary.
func fakeNostrfs(t *testing.T) string {
	t.Helper()
	binary(t) // the build directory
	p := filepath.Join(buildDir, "fake-nostrfs")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	out, err := exec.Command("go", "build", "-o", p, "../../internal/daemon/testdata/fake-nostrfs").CombinedOutput()
	if err != nil {
		t.Fatalf("go build fake-nostrfs: %v\n%s", err, out)
	}
	return p
}

// liveDaemon is a daemon serving a private bus, configured by a file the CLI reads too.
type liveDaemon struct {
	t     *testing.T
	cfg   string // the configuration file
	base  string
	stack *devstack.Stack
	conn  *dbus.Conn // root's connection, for logins and status
	logs  *syncbuf.Buffer
}

func startDaemon(t *testing.T) *liveDaemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns org.nostr.Homed1 under the root-only bus policy and chowns secrets")
	}
	fake := fakeNostrfs(t)
	stack := devstacktest.Start(t)
	bus := dbustest.Start(t)
	base := t.TempDir()
	cfgPath := writeConfigTop(t, base, `bootstrap_relays = ["`+stack.RelayURL()+`"]`,
		"mount_timeout = \"5s\"\nflush_timeout = \"1s\"\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := daemon.New(cfg, daemon.Options{ConfigPath: cfgPath, NostrfsPath: fake, Hostname: "testhost",
		Log: logs, RelayTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ld := &liveDaemon{t: t, cfg: cfgPath, base: base, stack: stack, conn: conn, logs: logs}
	t.Cleanup(func() {
		cancel()
		select {
		case <-runErr:
		case <-time.After(30 * time.Second):
			t.Errorf("the daemon did not stop within 30s")
		}
		d.Close()
		conn.Close()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		var owned bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, homed.BusName).Store(&owned); err == nil && owned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not own %s within 10s", homed.BusName)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ld
}

func (ld *liveDaemon) call(method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return ld.conn.Object(homed.BusName, homed.ObjectPath).CallWithContext(ctx, homed.Interface+"."+method, 0, args...)
}

func (ld *liveDaemon) mustCall(method string, out []any, args ...any) {
	ld.t.Helper()
	c := ld.call(method, args...)
	if c.Err == nil && len(out) > 0 {
		c.Err = c.Store(out...)
	}
	if c.Err != nil {
		ld.t.Fatalf("%s%v: %v", method, args, c.Err)
	}
}

func (ld *liveDaemon) status(user string) daemon.Status {
	ld.t.Helper()
	var js string
	ld.mustCall("GetStatus", []any{&js}, user)
	var st daemon.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		ld.t.Fatalf("status: %v\n%s", err, js)
	}
	return st
}

// user is a Nostr identity whose settings (password login), secrets and manifest are on
// the relay, enrolled through the CLI.
type user struct{ name, npub, password string }

func (ld *liveDaemon) addUser(name string) user {
	ld.t.Helper()
	t := ld.t
	sk := nostr.GeneratePrivateKey()
	k, err := keyer.NewPlainKeySigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := nostr.GetPublicKey(sk)
	npub, _ := nip19.EncodePublicKey(pk)
	u := user{name: name, npub: npub, password: "pw of " + name}
	ncs, err := nip49.Encrypt(sk, u.password, 16, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		t.Fatal(err)
	}
	ctx, relay, now := context.Background(), ld.stack.RelayURL(), time.Now()
	set, err := events.NewSettingsEvent(ctx, k, "personal", events.Settings{
		Relays: events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Login:  []events.LoginMethod{{Type: events.LoginPassword, Ncryptsec: ncs}},
	}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := events.NewSecretsEvent(ctx, k, "personal", events.Secrets{HomeKey: strings.Repeat("ab", 32),
		Files: []events.SecretFile{{Name: "token", Data: []byte("secret of " + name)}}}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	man, err := events.NewManifestEvent(ctx, k, "personal", events.Manifest{
		Root: events.BlobRef{Hash: strings.Repeat("cd", 32), Size: 4096}, Machine: "test"}, nil, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*nostr.Event{set, sec, man} {
		if _, err := relayio.Publish(ctx, []string{relay}, ev, 5*time.Second); err != nil {
			t.Fatalf("publishing kind %d: %v", ev.Kind, err)
		}
	}
	if code, _, errOut := runCLI("add", npub, "--name", name, "--config", ld.cfg); code != exitOK {
		t.Fatalf("add %s: %s", name, errOut)
	}
	return u
}

// login logs u in with the password, as pam_nostr does, leaving the key for a session.
func (ld *liveDaemon) login(u user) {
	ld.t.Helper()
	var id, method, prompt, message, uri string
	ld.mustCall("BeginLogin", []any{&id, &method, &prompt, &message, &uri}, u.name, "sshd", "192.0.2.1")
	ld.mustCall("CompleteLogin", nil, id, u.password)
}

func listed(t *testing.T, cfg, name string) bool {
	t.Helper()
	code, out, errOut := runCLI("list", "--json", "--config", cfg)
	var users []userOut
	if code != exitOK || json.Unmarshal([]byte(out), &users) != nil {
		t.Fatalf("list --json: %d %s %s", code, out, errOut)
	}
	for _, u := range users {
		if u.Name == name {
			return true
		}
	}
	return false
}

// TestRemoveEndsSessions: alice has two sessions open; `remove alice` ends both through the
// daemon (the mount helper stops, the secrets go), then removes her: GetStatus has no
// session of hers any more and `list` does not show her. bob, whose session is not touched,
// still has his.
func TestRemoveEndsSessions(t *testing.T) {
	ld := startDaemon(t)
	alice, bob := ld.addUser("alice"), ld.addUser("bob")
	ld.login(alice)
	ld.mustCall("OpenSession", nil, "alice")
	ld.mustCall("OpenSession", nil, "alice")
	ld.login(bob)
	ld.mustCall("OpenSession", nil, "bob")
	st := ld.status("alice")
	if st.Session.Open != 2 || st.Session.Mount == nil || st.Session.Mount.PID == 0 || len(st.Secrets) != 1 {
		t.Fatalf("alice before remove: %+v %v", st.Session, st.Secrets)
	}
	pid := st.Session.Mount.PID
	secrets := filepath.Join(ld.base, "run", strconv.Itoa(int(st.UID)), "secrets")
	if _, err := os.Stat(secrets); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI("remove", "alice", "--config", ld.cfg)
	if code != exitOK || !strings.Contains(out, "ended 2 session(s) of alice") || !strings.Contains(out, "removed alice") {
		t.Fatalf("remove: %d\n%s%s", code, out, errOut)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("alice's mount helper (pid %d) still runs", pid)
	}
	if _, err := os.Lstat(secrets); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", secrets, err)
	}
	if listed(t, ld.cfg, "alice") || !listed(t, ld.cfg, "bob") {
		t.Fatal("list after remove: alice still there, or bob gone")
	}
	var js string
	ld.mustCall("GetStatus", []any{&js}, "")
	var all struct{ Users []daemon.Status }
	if err := json.Unmarshal([]byte(js), &all); err != nil {
		t.Fatal(err)
	}
	if len(all.Users) != 1 || all.Users[0].User != "bob" || all.Users[0].Session.Open != 1 {
		t.Fatalf("status of everyone after removing alice: %s", js)
	}
	var de dbus.Error
	if err := ld.call("GetStatus", "alice").Err; !errors.As(err, &de) || de.Name != homed.ErrUnknownUser {
		t.Fatalf("GetStatus of the removed alice: %v", err)
	}
	ld.mustCall("CloseSession", nil, "bob")
}

// TestRemoveKeepsTheUserIfSessionsCannotEnd: a mount helper that ignores SIGTERM is killed
// after the flush bound; TerminateSessions says so, and remove does not remove the user
// (exit 1). Nothing is open any more, so the second remove succeeds.
func TestRemoveKeepsTheUserIfSessionsCannotEnd(t *testing.T) {
	ld := startDaemon(t)
	u := ld.addUser("stubborn-sam") // fake-nostrfs ignores SIGTERM for stubborn-*
	ld.login(u)
	ld.mustCall("OpenSession", nil, u.name)
	code, out, errOut := runCLI("remove", u.name, "--config", ld.cfg)
	if code != exitFailed || !strings.Contains(errOut, "NOT removed") || !strings.Contains(errOut, homed.ErrMountFailed) {
		t.Fatalf("remove with a helper that must be killed: %d\n%s%s", code, out, errOut)
	}
	if !listed(t, ld.cfg, u.name) {
		t.Fatal("the user was removed although the daemon reported an error")
	}
	code, out, errOut = runCLI("remove", u.name, "--config", ld.cfg)
	if code != exitOK || !strings.Contains(out, "no session of stubborn-sam was open") {
		t.Fatalf("second remove: %d\n%s%s", code, out, errOut)
	}
	if listed(t, ld.cfg, u.name) {
		t.Fatal("still listed after the second remove")
	}
}

// TestRemoveWithoutDaemon: no bus at all, or a bus without the daemon: nothing can be open,
// remove goes on and says so.
func TestRemoveWithoutDaemon(t *testing.T) {
	for _, c := range []struct {
		name string
		bus  func(t *testing.T) string
		says string
	}{
		{"no bus", func(t *testing.T) string { return "unix:path=" + filepath.Join(t.TempDir(), "no-bus") }, "the system bus cannot be reached"},
		{"no daemon", func(t *testing.T) string {
			if os.Geteuid() != 0 {
				t.Skip("needs root for the private bus")
			}
			return dbustest.Start(t).Address
		}, "the daemon is not running"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", c.bus(t))
			cfg := writeConfig(t, t.TempDir())
			if code, _, errOut := runCLI("add", newNpub(t), "--name", "alice", "--config", cfg); code != exitOK {
				t.Fatalf("add: %s", errOut)
			}
			code, out, errOut := runCLI("remove", "alice", "--config", cfg)
			if code != exitOK || !strings.Contains(out, c.says) || !strings.Contains(out, "removed alice") {
				t.Fatalf("remove: %d\n%s%s", code, out, errOut)
			}
			if listed(t, cfg, "alice") {
				t.Fatal("alice still listed")
			}
		})
	}
}

// progressLines returns the stages of the progress lines in stderr ("  0.1s  stage  detail").
func progressLines(stderr string) (stages, lines []string) {
	for _, l := range strings.Split(stderr, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.HasSuffix(f[0], "s") {
			if _, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "s"), 64); err == nil {
				stages = append(stages, f[1])
				lines = append(lines, l)
			}
		}
	}
	return stages, lines
}

// indexOf returns the index of the first line with stage and detail prefix, or -1.
func indexOf(lines []string, stage, prefix string) int {
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == stage && strings.HasPrefix(strings.Join(f[2:], " "), prefix) {
			return i
		}
	}
	return -1
}

// TestWarmProgress: `warm --progress` against a real relay prints the daemon's stages on
// stderr, in order: start, round 1, what round 1 found, round 2, what it found, done. With
// --json, stdout stays one JSON document. Without --progress and with stderr not a terminal,
// nothing is printed; --progress=false turns it off too. A warm that fails ends with
// "failed".
func TestWarmProgress(t *testing.T) {
	ld := startDaemon(t)
	ld.addUser("alice")

	code, out, errOut := runCLI("warm", "alice", "--progress", "--config", ld.cfg)
	if code != exitOK {
		t.Fatalf("warm --progress: %d\n%s%s", code, out, errOut)
	}
	stages, lines := progressLines(errOut)
	t.Logf("warm --progress, stderr:\n%s", errOut)
	if len(stages) == 0 || stages[0] != homed.StageStart || stages[len(stages)-1] != homed.StageDone {
		t.Fatalf("stages %q: want start first and done last", stages)
	}
	ask1 := indexOf(lines, homed.StageAsking, "round 1: settings, relay list from 1 relay(s)")
	answered := indexOf(lines, homed.StageAnswered, "settings: 1 of 1 relay(s) answered")
	settings := indexOf(lines, homed.StageFound, "settings: event")
	ask2 := indexOf(lines, homed.StageAsking, "round 2: manifest, secrets, server list")
	manifest := indexOf(lines, homed.StageFound, "manifest: event")
	secrets := indexOf(lines, homed.StageFound, "secrets: event")
	done := len(lines) - 1
	// Round 2's kinds are asked at once: their lines may come in any order between.
	if !(0 < ask1 && ask1 < answered && answered < settings && settings < ask2 &&
		ask2 < manifest && manifest < done && ask2 < secrets && secrets < done) {
		t.Fatalf("stages out of order or missing:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[len(lines)-1], "1 relay(s) answered") || !strings.Contains(out, "last warm:") {
		t.Fatalf("done line %q, stdout:\n%s", lines[len(lines)-1], out)
	}
	if s, _ := progressLines(out); len(s) != 0 {
		t.Fatalf("progress on stdout:\n%s", out)
	}

	// --json: stdout is one JSON document, the progress is on stderr.
	code, out, errOut = runCLI("warm", "alice", "--json", "--progress", "--config", ld.cfg)
	var st daemon.Status
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.User != "alice" || st.LastWarm == nil {
		t.Fatalf("warm --json --progress: %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if s, _ := progressLines(errOut); len(s) == 0 || s[len(s)-1] != homed.StageDone {
		t.Fatalf("warm --json --progress printed no progress on stderr: %s", errOut)
	}

	// Not a terminal (a buffer), or --progress=false: no progress.
	for _, args := range [][]string{{"warm", "alice"}, {"warm", "alice", "--progress=false"}} {
		code, _, errOut := runCLI(append(args, "--config", ld.cfg)...)
		if s, _ := progressLines(errOut); code != exitOK || len(s) != 0 {
			t.Fatalf("%v: %d, progress %q", args, code, errOut)
		}
	}

	// An npub with nothing on the relay: the warm fails, and says so last.
	code, _, errOut = runCLI("warm", newNpub(t), "--progress", "--config", ld.cfg)
	stages, lines = progressLines(errOut)
	if code != exitUnavailable || len(stages) == 0 || stages[len(stages)-1] != homed.StageFailed ||
		indexOf(lines, homed.StageNotFound, "settings: none") < 0 {
		t.Fatalf("warm of an npub with nothing published: %d\n%s", code, errOut)
	}
}
