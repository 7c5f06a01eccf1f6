package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/BurntSushi/toml"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds, once per test process, this build's real nostrfs and the test-only
// fake-nostrfs (testdata/fake-nostrfs: a stand-in that speaks the readiness protocol and
// mounts nothing, for the supervisor's own paths: counts, failures, stubborn children).
func binaries(t *testing.T) (nostrfs, fake string) {
	t.Helper()
	requireRoot(t)
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "daemon-test-bin-")
		if binErr != nil {
			return
		}
		root, err := modroot.Find()
		if err != nil {
			binErr = err
			return
		}
		for pkg, name := range map[string]string{"./cmd/nostrfs": "nostrfs", "./internal/daemon/testdata/fake-nostrfs": "fake-nostrfs"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = errors.New("go build " + pkg + ": " + err.Error() + "\n" + string(out))
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "nostrfs"), filepath.Join(binDir, "fake-nostrfs")
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns org.nostr.Homed1 under the root-only bus policy and chowns secrets")
	}
}

// env is a daemon serving a private system-like bus, with a real relay and real files
// under a temp directory.
type env struct {
	t     *testing.T
	bus   *dbustest.Bus
	stack *devstack.Stack
	d     *daemon.Daemon
	cfg   config.Config
	base  string
	rt    string
	home  string
	conn  *dbus.Conn
	logs  *syncbuf.Buffer
}

type envOpts struct {
	nostrfs string // the binary the supervisor runs
	mutate  func(*config.Config)
	// policies are extra bus policy files, next to the project's (dbustest.Start).
	policies []string
	// bus, if set, starts the bus instead of dbustest.Start (systemd's policy too, say).
	bus func(t *testing.T) *dbustest.Bus
	// mounter, if set, replaces the one the configuration selects.
	mounter daemon.Mounter
	// beforeDaemon, if set, runs once the configuration file is written, before the daemon
	// starts (to start what the daemon will talk to).
	beforeDaemon func(e *env, configPath string)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	requireRoot(t)
	base := t.TempDir()
	st := devstacktest.Start(t)
	var bus *dbustest.Bus
	if o.bus != nil {
		bus = o.bus(t)
	} else {
		bus = dbustest.Start(t, o.policies...)
	}
	e := &env{t: t, bus: bus, stack: st, base: base, logs: &syncbuf.Buffer{},
		rt: filepath.Join(base, "run"), home: filepath.Join(base, "home")}
	t.Cleanup(func() { detachMounts(t, base) }) // runs after the daemon has stopped
	must(t, os.WriteFile(filepath.Join(base, "passwd"), []byte("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644))
	must(t, os.Mkdir(e.home, 0o755))

	cfg := config.Default()
	cfg.BootstrapRelays = []string{st.RelayURL()}
	cfg.Users.Database = filepath.Join(base, "lib", "users.db")
	cfg.Users.HomeBase = e.home
	cfg.Session.RuntimeDir = e.rt
	cfg.Session.Supervisor = "builtin"
	cfg.Session.MountTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Session.FlushTimeout = config.Duration{Duration: 3 * time.Second}
	cfg.Login.RemoteSignerTimeout = config.Duration{Duration: 15 * time.Second}
	cfg.Cache.Dir = filepath.Join(base, "cache")
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	e.cfg = cfg
	// The file nostrfs reads (--config): the same configuration.
	cfgPath := filepath.Join(base, "config.toml")
	cf, err := os.Create(cfgPath)
	must(t, err)
	must(t, toml.NewEncoder(cf).Encode(cfg))
	must(t, cf.Close())
	if o.beforeDaemon != nil {
		o.beforeDaemon(e, cfgPath)
	}
	d, err := daemon.New(cfg, daemon.Options{
		PasswdPath: filepath.Join(base, "passwd"), GroupPath: filepath.Join(base, "group"),
		SubUIDPath: filepath.Join(base, "subuid"), SubGIDPath: filepath.Join(base, "subgid"),
		ConfigPath: cfgPath, NostrfsPath: o.nostrfs, Mounter: o.mounter,
		Hostname: "testhost", Log: e.logs, RelayTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d

	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e.conn = conn
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of its context's end")
		}
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		conn.Close()
		if t.Failed() || os.Getenv("DAEMON_TEST_LOG") != "" {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		var owned bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, homed.BusName).Store(&owned); err == nil && owned {
			break
		}
		select {
		case err := <-runErr:
			t.Fatalf("Run returned before owning the name: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not own %s within 10s", homed.BusName)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// call makes a call as root through godbus.
func (e *env) call(method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.conn.Object(homed.BusName, homed.ObjectPath).CallWithContext(ctx, homed.Interface+"."+method, 0, args...)
}

func (e *env) mustCall(method string, args ...any) *dbus.Call {
	e.t.Helper()
	c := e.call(method, args...)
	if c.Err != nil {
		e.t.Fatalf("%s%v: %v", method, args, c.Err)
	}
	return c
}

// callErr makes a call that must fail with the D-Bus error name want; it returns the message.
func (e *env) callErr(want, method string, args ...any) string {
	e.t.Helper()
	c := e.call(method, args...)
	var de dbus.Error
	if !errors.As(c.Err, &de) {
		e.t.Fatalf("%s%v: want error %s, got %v", method, args, want, c.Err)
	}
	if de.Name != want {
		e.t.Fatalf("%s%v: want error %s, got %s: %s", method, args, want, de.Name, de.Error())
	}
	return de.Error()
}

// callAs runs dbus-send as uid (an unprivileged caller).
func (e *env) callAs(uid uint32, method string, args ...string) (string, error) {
	argv := append([]string{"--bus=" + e.bus.Address, "--print-reply", "--dest=" + homed.BusName, string(homed.ObjectPath), homed.Interface + "." + method}, args...)
	cmd := exec.Command("dbus-send", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *env) status(user string) daemon.Status {
	e.t.Helper()
	var js string
	must(e.t, e.mustCall("GetStatus", user).Store(&js))
	var st daemon.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		e.t.Fatalf("status of %s is not JSON: %v\n%s", user, err, js)
	}
	return st
}

// beginLogin returns the login ID after checking BeginLogin's method.
func (e *env) beginLogin(user, wantMethod string) (id, prompt, message string) {
	e.t.Helper()
	var method, uri string
	must(e.t, e.mustCall("BeginLogin", user, "sshd", "192.0.2.1").Store(&id, &method, &prompt, &message, &uri))
	if method != wantMethod || id == "" {
		e.t.Fatalf("BeginLogin(%s): id %q method %q, want method %q", user, id, method, wantMethod)
	}
	return id, prompt, message
}

func (e *env) login(id ident) {
	e.t.Helper()
	lid, _, _ := e.beginLogin(id.name, "password")
	e.mustCall("CompleteLogin", lid, id.password)
}

// ident is a Nostr identity for a test user.
type ident struct {
	name, sk, pk, npub, password string
	keyer                        nostr.Keyer
}

func newIdent(t *testing.T, name string) ident {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	k, err := keyer.NewPlainKeySigner(sk)
	must(t, err)
	pk, _ := nostr.GetPublicKey(sk)
	npub, _ := nip19.EncodePublicKey(pk)
	return ident{name: name, sk: sk, pk: pk, npub: npub, password: "correct horse " + name, keyer: k}
}

// published is what publish put on the relay.
type published struct {
	settings, secrets, manifest *nostr.Event
	files                       []events.SecretFile
}

type pubOpts struct {
	ncryptsecKey string // if set, the ncryptsec in the settings locks this secret key instead
	bunker       string // if set, the login method is remote-signer with this URI
	noSecrets    bool
	noManifest   bool // a new home: nostrfs starts it empty
}

// publish signs and publishes id's settings (password login, ncryptsec at log N 16),
// secrets (two files) and manifest to the env's relay.
func (e *env) publish(id ident, o pubOpts) published {
	e.t.Helper()
	ctx := context.Background()
	relay := e.stack.RelayURL()
	var lm events.LoginMethod
	if o.bunker != "" {
		lm = events.LoginMethod{Type: events.LoginRemoteSigner, Bunker: o.bunker}
	} else {
		key := id.sk
		if o.ncryptsecKey != "" {
			key = o.ncryptsecKey
		}
		ncs, err := nip49.Encrypt(key, id.password, 16, nip49.ClientDoesNotTrackThisData)
		must(e.t, err)
		lm = events.LoginMethod{Type: events.LoginPassword, Ncryptsec: ncs}
	}
	now := time.Now()
	var p published
	var err error
	p.settings, err = events.NewSettingsEvent(ctx, id.keyer, "personal", events.Settings{
		Relays:  events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Blossom: []events.Server{{URL: e.stack.BlossomURL(), Auth: "base64"}},
		Login:   []events.LoginMethod{lm},
	}, nil, now)
	must(e.t, err)
	p.files = []events.SecretFile{
		{Name: "id_ed25519", Data: []byte("-----BEGIN OPENSSH PRIVATE KEY----- of " + id.name + "\n")},
		{Name: "github-token", Data: []byte("ghp_" + id.name)},
	}
	if !o.noSecrets {
		p.secrets, err = events.NewSecretsEvent(ctx, id.keyer, "personal", events.Secrets{
			HomeKey: strings.Repeat("ab", 32), Files: p.files}, nil, now)
		must(e.t, err)
	}
	if !o.noManifest {
		p.manifest, err = events.NewManifestEvent(ctx, id.keyer, "personal", events.Manifest{
			Root: events.BlobRef{Hash: strings.Repeat("cd", 32), Size: 4096}, Machine: "test"}, nil, 0, now)
		must(e.t, err)
	}
	for _, ev := range []*nostr.Event{p.settings, p.secrets, p.manifest} {
		if ev == nil {
			continue
		}
		if _, err := relayio.Publish(ctx, []string{relay}, ev, 5*time.Second); err != nil {
			e.t.Fatalf("publishing kind %d: %v", ev.Kind, err)
		}
	}
	return p
}

func (e *env) enroll(id ident) userdb.User {
	e.t.Helper()
	u, err := e.d.DB().AddUser(context.Background(), userdb.User{Pubkey: id.pk, Name: id.name})
	must(e.t, err)
	return u
}

func cached(st daemon.Status, name string) daemon.CachedEvent {
	for _, c := range st.Cached {
		if c.Name == name {
			return c
		}
	}
	return daemon.CachedEvent{}
}

func pidAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func userdbUser(id ident) userdb.User { return userdb.User{Pubkey: id.pk, Name: id.name} }

// homedName is the D-Bus error name of a service error ("" if it has none).
func homedName(err error) string {
	var he *homed.Error
	if errors.As(err, &he) {
		return he.Name
	}
	return ""
}

// detachMounts lazily unmounts everything mounted under dir, and fails the test if there was
// anything: the code under test should have unmounted it.
func detachMounts(t *testing.T, dir string) {
	left, err := mounts.DetachUnder(dir)
	for _, m := range left {
		t.Errorf("%s (%s) was left mounted; detached it", m.Point, m.FSType)
	}
	if err != nil {
		t.Errorf("detaching what was left under %s: %v", dir, err)
	}
}
