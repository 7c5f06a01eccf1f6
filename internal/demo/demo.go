// Package demo is `nostr-homed-devstack demo` (and `make demo`): a short, narrated run of the
// whole nostr-homed story on this machine, with the real parts and no setup.
//
// It starts a relay and a Blossom server in-process (package devstack) on a free loopback
// port, creates a throw-away identity with a password (NIP-49), publishes its settings
// (kind 30078) and secrets (kind 30079, a fresh home key), starts a private system-like
// dbus-daemon with the project's bus policy and the real daemon (`nostr-homectl serve`, the
// built binary, with the builtin supervisor and every path under a temp directory), enrolls
// and warms the user with `nostr-homectl add` and `warm`, and logs in through PAM in this
// process (libpam, github.com/msteinert/pam, a throw-away /etc/pam.d/nostr-homed-demo-*
// service of the built pam_nostr.so): authenticate with the password, acct_mgmt,
// open_session. The home is then a FUSE mount (fuse.nostrfs); the demo writes a file in it
// and logs out, which makes nostrfs upload the file's encrypted blobs and publish a new
// manifest (kind 30081). It checks that the relay has that manifest and that no blob on
// the Blossom server shows the file's text or name, wipes this machine's cache of the home,
// logs in again and reads the file back, fetched from Blossom.
//
// Everything it started is stopped and everything it created is removed at the end, on
// success and on failure: the daemon (which stops nostrfs), the bus, the PAM service file,
// the mounts (checked in /proc/mounts), the temp directory (unless Keep).
//
// It needs root (the daemon owns org.nostr.Homed1 under the root-only bus policy, mounts
// homes, and /etc/pam.d is written) and a build with cgo (libpam); `sudo make demo` has both.
//
// Run prints numbered steps to its writer, ends with PassedLine or "demo: FAILED at step
// N (title): ...", and never prints a secret: not the nsec, the password or the home key
// (Options.Reveal lets a test check that).
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip49"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
)

// DefaultTimeout bounds the whole demo.
const DefaultTimeout = 2 * time.Minute

// PassedLine is the last line of a successful run.
const PassedLine = "demo: all steps passed"

// User is the demo's login name.
const User = "demo"

// PAMServicePrefix starts the name of the demo's PAM service file in /etc/pam.d.
const PAMServicePrefix = "nostr-homed-demo-"

// FileName is the file the demo writes in the home.
const FileName = "notes.txt"

// demoLogN is the scrypt cost (2^logn) of the demo's NIP-49 key. 16 keeps the demo quick
// (about 0.1 s per lock or unlock); a real account's default must be higher (NIP-49
// suggests 20 or more), because the ncryptsec is public in the settings event and its
// strength rests on the password and this cost alone.
const demoLogN = 16

// ns is the namespace of the demo's events: the daemon's default.
const ns = events.DefaultNamespace

// ErrNotRoot is Run's error when it does not run as root.
var ErrNotRoot = errors.New("the demo needs root: it runs the daemon, which owns org.nostr.Homed1 under the root-only bus policy and mounts the home, and it writes a PAM service file in /etc/pam.d; run it as `sudo make demo`")

// Options configures Run.
type Options struct {
	// BuildDir holds the built nostr-homectl, nostrfs (next to it: the daemon runs that one)
	// and pam_nostr.so (`make build`). Empty means build/ in the module root above the
	// working directory.
	BuildDir string
	// DBusPolicy is the bus policy file, dbus/org.nostr.Homed1.conf. Empty means that file in
	// the module root above the working directory.
	DBusPolicy string
	// Keep leaves the temp directory (the stack's data, the user database and event cache,
	// the home's cache) in place and prints where it is. Everything is stopped either way.
	Keep bool
	// TempDir is the parent of the demo's temp directory; empty means os.TempDir().
	TempDir string
	// Timeout bounds the whole demo; zero means DefaultTimeout.
	Timeout time.Duration
	// Logf receives the dev stack's and the daemon's log lines; nil discards them (the end
	// of the daemon's log is printed if a step fails).
	Logf func(format string, args ...any)
	// Reveal, if set, is called with the secrets the demo creates as soon as they exist, so a
	// test can check that none of them ever reaches the output. The demo never prints them.
	Reveal func(Secrets)
	// LoginPassword, if not empty, is what the demo types at the PAM password prompt instead
	// of the demo password (a test's way to make a login fail).
	LoginPassword string

	failAfter int // tests: fail right after this step succeeded
}

// Secrets are the values the demo must never print.
type Secrets struct {
	Nsec         string // the demo identity's secret key, NIP-19
	SecretKeyHex string // the same key in hex
	Password     string // the demo password that locks the key (NIP-49)
	HomeKeyHex   string // the home key published in the secrets event
}

// StepError is how Run fails: the step that failed and why.
type StepError struct {
	Step  int
	Title string
	Err   error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %d (%s): %v", e.Step, e.Title, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Step titles, in order. Run prints them numbered from 1; the first is completed with the
// stack's address when it is known.
var stepTitles = []string{
	"Starting a relay and a Blossom server",
	"Creating a demo identity with a password",
	"Publishing its settings and secrets to the relay",
	"Starting a private system bus and the daemon (nostr-homectl serve)",
	"Enrolling the identity as user \"demo\" and warming its cache",
	"Logging in through PAM with the password",
	"Writing a file in the home",
	"Logging out: the file goes to Blossom, a new manifest to the relay",
	"What the servers hold",
	"Wiping this machine's cache of the home",
	"Logging in again and reading the file back",
	"Stopping everything and cleaning up",
}

// run is one demo's state, handed from step to step.
type run struct {
	out    io.Writer
	opts   Options
	reveal func(Secrets)

	buildDir string
	policy   string
	homectl  string
	module   string

	dir   string // the temp directory (resolved)
	stack *devstack.Stack

	secrets  Secrets
	npub     string
	pubkey   string
	signer   keyer.KeySigner
	password string

	bus       *bus
	envBus    *string // DBUS_SYSTEM_BUS_ADDRESS before the demo set it (nil: unset)
	envSet    bool
	daemon    *child
	daemonLog *syncbuf.Buffer
	cfgPath   string
	cacheDir  string
	homeBase  string

	uid      uint32
	home     string
	pamFile  string
	service  string
	tx       *pamTx // the open PAM transaction, if any
	txOpen   bool   // its session is open
	text     string // what the demo wrote
	before   *nostr.Event
	manifest *nostr.Event

	cleaned bool
}

// Run runs the demo, writing its narration to out. It returns nil only if every step passed;
// otherwise a *StepError (also printed as "demo: FAILED at step N (...): ...") or ErrNotRoot.
func Run(ctx context.Context, out io.Writer, opts Options) (err error) {
	if os.Geteuid() != 0 {
		fmt.Fprintf(out, "demo: FAILED before step 1: %v\n", ErrNotRoot)
		return ErrNotRoot
	}
	if !pamAvailable {
		fmt.Fprintf(out, "demo: FAILED before step 1: %v\n", errNoPAMBuild)
		return errNoPAMBuild
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	r := &run{out: out, opts: opts, reveal: opts.Reveal}
	if r.reveal == nil {
		r.reveal = func(Secrets) {}
	}
	defer r.cleanup() // also on a panic; a no-op after the explicit calls below

	fmt.Fprintln(out, "nostr-homed demo: log in to this machine with a Nostr identity, find the home mounted,")
	fmt.Fprintln(out, "write a file, and get it back after this machine's copy is gone. Real parts only: a relay,")
	fmt.Fprintln(out, "a Blossom server, the daemon, nostrfs and the PAM module, all on loopback and in a temp")
	fmt.Fprintln(out, "directory that is removed at the end.")
	steps := []func(context.Context) error{
		r.startStack,
		r.createIdentity,
		r.publishAccount,
		r.startDaemon,
		r.enroll,
		r.login,
		r.writeFile,
		r.logout,
		r.serversView,
		r.wipeCache,
		r.loginAgain,
		r.finish,
	}
	for i, step := range steps {
		n, title := i+1, stepTitles[i]
		if i == 0 {
			// The address is known only once the stack listens: the title comes with it.
			fmt.Fprintf(out, "\n%d. ", n)
		} else {
			fmt.Fprintf(out, "\n%d. %s\n", n, title)
		}
		err := ctx.Err() // a signal or the time limit, noticed between steps
		if err == nil {
			err = step(ctx)
		}
		if err == nil && n == opts.failAfter {
			err = errors.New("failing here as the test asked")
		}
		if err != nil {
			if i == 0 {
				fmt.Fprintf(out, "%s\n", title)
			}
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				err = fmt.Errorf("%w (the demo is limited to %s)", err, timeout)
			case ctx.Err() != nil:
				err = fmt.Errorf("%w (interrupted)", err)
			}
			r.showDaemonLog()
			if n < len(steps) {
				fmt.Fprintf(out, "\n(cleaning up after the failure)\n")
				if cerr := r.cleanup(); cerr != nil {
					err = fmt.Errorf("%w; and cleaning up: %v", err, cerr)
				}
			}
			fmt.Fprintf(out, "demo: FAILED at step %d (%s): %v\n", n, title, err)
			return &StepError{Step: n, Title: title, Err: err}
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, PassedLine)
	return nil
}

// errNoPAMBuild is Run's error in a build without cgo.
var errNoPAMBuild = errors.New("this program was built without cgo, so it cannot drive PAM (libpam) in-process; `make build` builds the Go programs with CGO_ENABLED=0, `sudo make demo` builds the demo with cgo")

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.out, "   "+format+"\n", args...)
}

// sayBlock prints each line of s indented under a step.
func (r *run) sayBlock(s string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		r.say("  %s", l)
	}
}

// showDaemonLog prints the end of the daemon's log (nostrfs's lines are in it), for a
// failed step.
func (r *run) showDaemonLog() {
	if r.daemonLog == nil {
		return
	}
	lines := strings.Split(strings.TrimRight(r.daemonLog.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return
	}
	const max = 25
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	r.say("the end of the daemon's log:")
	for _, l := range lines {
		r.say("  | %s", l)
	}
}

// ---- step 1 ----------------------------------------------------------------------------

func (r *run) startStack(ctx context.Context) error {
	if err := r.findParts(); err != nil {
		return err
	}
	parent := r.opts.TempDir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "nostr-homed-demo-")
	if err != nil {
		return err
	}
	r.dir = dir
	// /proc/mounts shows resolved absolute paths.
	if abs, err := filepath.Abs(dir); err == nil {
		if res, err := filepath.EvalSymlinks(abs); err == nil {
			r.dir = res
		}
	}
	st, err := devstack.Start(ctx, devstack.Options{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(r.dir, "devstack"),
		Logf:    r.opts.Logf,
	})
	if err != nil {
		return err
	}
	r.stack = st
	fmt.Fprintf(r.out, "%s on %s\n", stepTitles[0], st.Addr())
	r.say("relay   %s", st.RelayURL())
	r.say("blossom %s (same port)", st.BlossomURL())
	r.say("their data, and everything else the demo creates, in %s", r.dir)
	return nil
}

// findParts locates the built programs and the bus policy.
func (r *run) findParts() error {
	r.buildDir, r.policy = r.opts.BuildDir, r.opts.DBusPolicy
	if r.buildDir == "" || r.policy == "" {
		root, err := modroot.Find()
		if err != nil {
			return fmt.Errorf("finding build/ and dbus/ (give them as options): %w", err)
		}
		if r.buildDir == "" {
			r.buildDir = filepath.Join(root, "build")
		}
		if r.policy == "" {
			r.policy = filepath.Join(root, "dbus", "org.nostr.Homed1.conf")
		}
	}
	var err error
	if r.buildDir, err = filepath.Abs(r.buildDir); err != nil {
		return err
	}
	r.homectl = filepath.Join(r.buildDir, "nostr-homectl")
	r.module = filepath.Join(r.buildDir, "pam_nostr.so")
	for _, p := range []string{r.homectl, filepath.Join(r.buildDir, "nostrfs"), r.module, r.policy} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (run `make build` first; `make demo` does)", err)
		}
	}
	return nil
}

// ---- step 2 ----------------------------------------------------------------------------

func (r *run) createIdentity(context.Context) error {
	sk := nostr.GeneratePrivateKey()
	nsec, err := nip19.EncodePrivateKey(sk)
	if err != nil {
		return err
	}
	r.password = rand.Text()
	r.secrets = Secrets{Nsec: nsec, SecretKeyHex: sk, Password: r.password}
	r.reveal(r.secrets)

	r.signer, err = keyer.NewPlainKeySigner(sk)
	if err != nil {
		return err
	}
	if r.pubkey, err = nostr.GetPublicKey(sk); err != nil {
		return err
	}
	if r.npub, err = nip19.EncodePublicKey(r.pubkey); err != nil {
		return err
	}
	r.say("npub: %s (a fresh key pair, only for this demo)", r.npub)
	r.say("its secret key is locked with a one-time demo password (NIP-49; neither is shown)")
	return nil
}

// ---- step 3 ----------------------------------------------------------------------------

func (r *run) publishAccount(ctx context.Context) error {
	ncryptsec, err := nip49.Encrypt(r.secrets.SecretKeyHex, r.password, demoLogN, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		return fmt.Errorf("locking the key: %w", err)
	}
	relay := r.stack.RelayURL()
	settings := events.Settings{
		Relays:  events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Blossom: []events.Server{{URL: r.stack.BlossomURL()}},
		Login:   []events.LoginMethod{{Type: events.LoginPassword, Ncryptsec: ncryptsec}},
	}
	// A little in the past: whatever this machine publishes later is strictly newer.
	at := time.Now().Add(-time.Minute)
	setEv, err := events.NewSettingsEvent(ctx, r.signer, ns, settings, nil, at)
	if err != nil {
		return err
	}
	homeKey := make([]byte, 32)
	rand.Read(homeKey)
	r.secrets.HomeKeyHex = hex.EncodeToString(homeKey)
	clear(homeKey)
	r.reveal(r.secrets)
	secEv, err := events.NewSecretsEvent(ctx, r.signer, ns, events.Secrets{HomeKey: r.secrets.HomeKeyHex}, nil, at)
	if err != nil {
		return err
	}
	for _, ev := range []*nostr.Event{setEv, secEv} {
		if _, err := relayio.Publish(ctx, []string{relay}, ev, relayio.DefaultTimeout); err != nil {
			return err
		}
	}
	r.say("settings %s (kind %d, public by design): relays read/write %s, Blossom %s,", shorten(setEv.ID), setEv.Kind, relay, r.stack.BlossomURL())
	r.say("         login by password with the locked key %s", shorten(ncryptsec))
	r.say("secrets  %s (kind %d, encrypted to the npub): a fresh random 32-byte home key", shorten(secEv.ID), secEv.Kind)
	return nil
}

// ---- step 4 ----------------------------------------------------------------------------

func (r *run) startDaemon(ctx context.Context) error {
	busDir := filepath.Join(r.dir, "bus")
	if err := os.Mkdir(busDir, 0o755); err != nil {
		return err
	}
	b, err := startBus(busDir, r.policy)
	if err != nil {
		return err
	}
	r.bus = b
	// The PAM module, loaded into this process, finds the bus through the environment.
	if old, ok := os.LookupEnv("DBUS_SYSTEM_BUS_ADDRESS"); ok {
		r.envBus = &old
	}
	r.envSet = true
	os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", b.Address)
	r.say("dbus-daemon on %s, system bus policy plus %s", b.Address, r.policy)

	r.homeBase = filepath.Join(r.dir, "home")
	r.cacheDir = filepath.Join(r.dir, "cache")
	for _, d := range []string{r.homeBase, filepath.Join(r.dir, "lib")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf(`# nostr-homed demo: everything under %[1]s
bootstrap_relays = [%[2]q]

[users]
database  = %[3]q
home_base = %[4]q

[cache]
dir = %[5]q

[session]
runtime_dir   = %[6]q
supervisor    = "builtin"
mount_timeout = "15s"
flush_timeout = "10s"
`, r.dir, r.stack.RelayURL(), filepath.Join(r.dir, "lib", "users.db"), r.homeBase, r.cacheDir, filepath.Join(r.dir, "run"))
	r.cfgPath = filepath.Join(r.dir, "config.toml")
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}

	r.daemonLog = &syncbuf.Buffer{Limit: 4 << 20}
	logw := io.Writer(r.daemonLog)
	if r.opts.Logf != nil {
		logw = io.MultiWriter(r.daemonLog, &lineWriter{prefix: "nostr-homectl serve: ", logf: r.opts.Logf})
	}
	cmd := exec.Command(r.homectl, "serve", "--config", r.cfgPath)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+b.Address)
	cmd.Stdout, cmd.Stderr = logw, logw
	// SIGTERM if the demo dies: the daemon then closes the session, and nostrfs unmounts.
	d, err := startChild(cmd, syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("starting %s serve: %w", r.homectl, err)
	}
	r.daemon = d
	if err := r.waitForName(ctx); err != nil {
		return err
	}
	r.say("%s serve --config %s", r.homectl, r.cfgPath)
	r.say("  users database, event cache, home cache, runtime dir and home base all in the temp dir;")
	r.say("  session.supervisor = \"builtin\": the daemon runs %s itself", filepath.Join(r.buildDir, "nostrfs"))
	r.say("the daemon owns %s on the bus (pid %d)", homed.BusName, d.cmd.Process.Pid)
	return nil
}

// waitForName waits until the daemon owns its bus name.
func (r *run) waitForName(ctx context.Context) error {
	conn, err := dbus.Connect(r.bus.Address)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		var owned bool
		if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, homed.BusName).Store(&owned); err == nil && owned {
			return nil
		}
		if !r.daemon.running() {
			return fmt.Errorf("nostr-homectl serve exited before owning %s (%v)", homed.BusName, r.daemon.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the daemon did not own %s in time: %w", homed.BusName, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// homectlRun runs `nostr-homectl ARGS... --config CFG` on the demo's bus and returns its
// output (stdout and stderr).
func (r *run) homectlRun(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.homectl, append(args, "--config", r.cfgPath)...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+r.bus.Address)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("nostr-homectl %s: %v: %s", args[0], err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// ---- step 5 ----------------------------------------------------------------------------

func (r *run) enroll(ctx context.Context) error {
	out, err := r.homectlRun(ctx, "add", r.npub, "--name", User, "--json")
	if err != nil {
		return err
	}
	var u struct {
		Name string `json:"name"`
		UID  uint32 `json:"uid"`
		GID  uint32 `json:"gid"`
		Home string `json:"home"`
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		return fmt.Errorf("nostr-homectl add --json: %v: %q", err, out)
	}
	r.uid, r.home = u.UID, u.Home
	if want := filepath.Join(r.homeBase, User); r.home != want {
		return fmt.Errorf("the user's home is %s, want %s", r.home, want)
	}
	r.say("$ nostr-homectl add %s --name %s", shorten(r.npub), User)
	r.say("  enrolled %s: uid %d, gid %d, home %s", u.Name, u.UID, u.GID, u.Home)

	out, err = r.homectlRun(ctx, "warm", User, "--progress=false")
	if err != nil {
		return err
	}
	r.say("$ nostr-homectl warm %s", User)
	r.sayBlock(out)
	return nil
}

// ---- step 6 ----------------------------------------------------------------------------

func (r *run) login(ctx context.Context) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	r.service = PAMServicePrefix + hex.EncodeToString(rnd[:])
	r.pamFile = filepath.Join("/etc/pam.d", r.service)
	content := fmt.Sprintf("# written by nostr-homed's demo (pid %d); removed when it ends\n"+
		"auth     required %[2]s\naccount  required %[2]s\nsession  required %[2]s\n", os.Getpid(), r.module)
	if err := os.WriteFile(r.pamFile, []byte(content), 0o644); err != nil {
		return err
	}
	r.say("PAM service %s: auth, account and session by %s", r.pamFile, r.module)

	// A little before, for "newer" in step 9: the relay's manifest before this login.
	before, err := r.newestManifest(ctx)
	if err != nil {
		return err
	}
	r.before = before

	if err := r.openSession(ctx, "authenticate", "acct_mgmt", "open_session"); err != nil {
		return err
	}
	return nil
}

// openSession starts a PAM transaction and runs ops, which end with open_session; then it
// checks that the home is mounted.
func (r *run) openSession(ctx context.Context, ops ...string) error {
	password := r.password
	if r.opts.LoginPassword != "" {
		password = r.opts.LoginPassword
	}
	tx, err := pamStart(r.service, User, pamConv{
		password: password,
		onPrompt: func(msg string) {
			r.say("  the module asked %q: the demo typed the password (not shown)", msg)
		},
		onInfo: func(msg string) { r.say("  the module says: %s", msg) },
	})
	if err != nil {
		return err
	}
	r.tx = tx
	for _, op := range ops {
		start := time.Now()
		r.say("pam_%s...", op)
		if err := tx.do(op); err != nil {
			return err
		}
		if op == "open_session" {
			r.txOpen = true
		}
		r.say("  ok (%s)", time.Since(start).Round(time.Millisecond))
	}
	fstype, err := mounts.At(r.home)
	if err != nil {
		return err
	}
	if fstype != "fuse.nostrfs" {
		return fmt.Errorf("after open_session %s is not a fuse.nostrfs mount (/proc/mounts says %q)", r.home, fstype)
	}
	r.say("%s is mounted: %s (/proc/mounts)", r.home, fstype)
	return nil
}

// closeSession runs close_session and pam_end on the open transaction, then checks that the
// home is no longer mounted.
func (r *run) closeSession() error {
	tx := r.tx
	start := time.Now()
	r.say("pam_close_session...")
	err := tx.do("close_session")
	r.txOpen = false
	r.tx = nil
	err = errors.Join(err, tx.end())
	if err != nil {
		return err
	}
	r.say("  ok (%s)", time.Since(start).Round(time.Millisecond))
	if fstype, err := mounts.At(r.home); err != nil {
		return err
	} else if fstype != "" {
		return fmt.Errorf("after close_session %s is still mounted (%s)", r.home, fstype)
	}
	return nil
}

// ---- step 7 ----------------------------------------------------------------------------

func (r *run) writeFile(context.Context) error {
	host, _ := os.Hostname()
	r.text = fmt.Sprintf("hello from the nostr-homed demo, written on %s at %s\n", host, time.Now().Format(time.RFC3339Nano))
	path := filepath.Join(r.home, FileName)
	if err := os.WriteFile(path, []byte(r.text), 0o644); err != nil {
		return err
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if string(got) != r.text {
		return fmt.Errorf("read back %q, wrote %q", got, r.text)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	owner := ""
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = fmt.Sprintf(", owner uid %d", sys.Uid)
	}
	r.say("wrote %s (as root): %q", path, strings.TrimSpace(r.text))
	r.say("read it back: the same %d bytes (mode %v%s)", len(got), st.Mode().Perm(), owner)
	return nil
}

// ---- step 8 ----------------------------------------------------------------------------

func (r *run) logout(ctx context.Context) error {
	if err := r.closeSession(); err != nil {
		return err
	}
	r.say("the daemon stopped nostrfs, which sealed the file, uploaded its blobs and published a manifest")
	r.say("%s is no longer mounted (/proc/mounts)", r.home)
	left, err := os.ReadDir(r.home)
	if err != nil {
		return err
	}
	if len(left) != 0 {
		return fmt.Errorf("the unmounted home %s holds %d entries, want none", r.home, len(left))
	}
	r.say("and the directory under it is empty: the file is in the cache and on the servers only")
	return nil
}

// ---- step 9 ----------------------------------------------------------------------------

func (r *run) serversView(ctx context.Context) error {
	ev, err := r.newestManifest(ctx)
	if err != nil {
		return err
	}
	if ev == nil {
		return errors.New("the relay has no manifest of the demo key after the logout")
	}
	if r.before != nil && !events.Newer(ev, r.before) {
		return fmt.Errorf("the relay's manifest %s is not newer than the one before the login (%s)", shorten(ev.ID), shorten(r.before.ID))
	}
	m, err := events.OpenManifest(ctx, r.signer, ev, r.pubkey, ns)
	if err != nil {
		return err
	}
	r.manifest = ev
	was := "the relay had none before the login"
	if r.before != nil {
		was = "newer than " + shorten(r.before.ID) + ", the relay's newest before the login"
	}
	r.say("relay: manifest %s (kind %d; %s),", shorten(ev.ID), ev.Kind, was)
	r.say("       generation %d from machine %q, root blob %s;", m.Generation, m.Machine, shorten(m.Root.Hash))
	r.say("       its content is encrypted to the npub: %s...", ev.Content[:min(32, len(ev.Content))])

	blobs, size, err := r.checkBlobs(m.Root.Hash)
	if err != nil {
		return err
	}
	r.say("blossom: %d blob(s), %d bytes in all, each named by the sha256 of its bytes, the root among them", blobs, size)
	r.say("         (a file of at most 4 KiB travels inside its directory's encrypted listing: docs/FORMAT.md);")
	r.say("         neither the text nor the name %q appears in any stored file: ciphertext only", FileName)
	return nil
}

// newestManifest is the relay's newest valid manifest of the demo key (nil if none).
func (r *run) newestManifest(ctx context.Context) (*nostr.Event, error) {
	res, err := relayio.FetchNewest(ctx, []string{r.stack.RelayURL()},
		events.Expect{Kind: events.KindManifest, Author: r.pubkey, D: events.DTag(ns)}, relayio.DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return res.Selection.Newest, nil
}

// checkBlobs reads every file the Blossom server stored and checks that none contains the
// file's text or name, that every blob hashes to its name, and that the root is there.
func (r *run) checkBlobs(root string) (count int, size int64, err error) {
	dir := filepath.Join(r.dir, "devstack", "blossom")
	foundRoot := false
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, leak := range []string{strings.TrimSpace(r.text), "hello from the nostr-homed demo", FileName} {
			if bytes.Contains(b, []byte(leak)) {
				return fmt.Errorf("%s contains %q in clear", path, leak)
			}
		}
		name := d.Name()
		if len(name) != 64 || strings.Contains(name, ".") {
			return nil // the server's metadata next to a blob
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != name {
			return fmt.Errorf("blob %s does not hash to its name", path)
		}
		count++
		size += int64(len(b))
		if name == root {
			foundRoot = true
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if !foundRoot {
		return 0, 0, fmt.Errorf("the manifest's root blob %s is not on the Blossom server", shorten(root))
	}
	return count, size, nil
}

// ---- step 10 ---------------------------------------------------------------------------

func (r *run) wipeCache(context.Context) error {
	dir := filepath.Join(r.cacheDir, strconv.FormatUint(uint64(r.uid), 10))
	files, size, err := countFiles(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	r.say("removed %s: %d files, %d bytes (encrypted blobs, the upload journal, the local view)", dir, files, size)
	r.say("the daemon's event cache stays: settings, secrets and the newest manifest, no file content")
	return nil
}

// countFiles counts the regular files under dir and their bytes.
func countFiles(dir string) (n int, size int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n++
		size += info.Size()
		return nil
	})
	return n, size, err
}

// countBlobs counts the blobs (files named by a sha256) under dir.
func countBlobs(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if _, herr := hex.DecodeString(d.Name()); herr == nil && len(d.Name()) == 64 {
			n++
		}
		return nil
	})
	return n, err
}

// ---- step 11 ---------------------------------------------------------------------------

func (r *run) loginAgain(ctx context.Context) error {
	r.say("a new PAM transaction:")
	if err := r.openSession(ctx, "authenticate", "open_session"); err != nil {
		return err
	}
	path := filepath.Join(r.home, FileName)
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r.say("%s:", path)
	r.say("  %s", strings.TrimSpace(string(got)))
	if string(got) != r.text {
		return fmt.Errorf("read %q, the demo wrote %q", got, r.text)
	}
	fetched, err := countBlobs(filepath.Join(r.cacheDir, strconv.FormatUint(uint64(r.uid), 10), "cas", "objects"))
	if err != nil {
		return err
	}
	if fetched == 0 {
		return errors.New("the file read back, but the wiped cache holds no blob: where did it come from?")
	}
	r.say("the same text as written before the cache was wiped: nostrfs fetched and decrypted %d blob(s) from Blossom", fetched)
	if err := r.closeSession(); err != nil {
		return err
	}
	r.say("logged out; %s is no longer mounted", r.home)
	return nil
}

// ---- step 12 ---------------------------------------------------------------------------

func (r *run) finish(context.Context) error {
	return r.cleanup()
}

// cleanup stops and removes everything the demo started or created, in order: the open PAM
// session, the daemon (which stops nostrfs), the bus, the PAM service file, the environment,
// the stack, any mount left under the temp directory, the temp directory (unless Keep). It
// narrates and returns what went wrong. Calls after the first do nothing.
func (r *run) cleanup() error {
	if r.cleaned {
		return nil
	}
	r.cleaned = true
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
			r.say("! %v", err)
		}
	}
	if r.tx != nil {
		if r.txOpen {
			if err := r.tx.do("close_session"); err != nil {
				fail(err)
			} else {
				r.say("closed the open PAM session")
			}
		}
		fail(r.tx.end())
		r.tx = nil
	}
	if r.daemon != nil {
		if err := r.daemon.stop(syscall.SIGTERM, 45*time.Second); err != nil {
			fail(fmt.Errorf("stopping the daemon: %w", err))
		} else {
			r.say("daemon stopped (SIGTERM, exit status 0)")
		}
		r.daemon = nil
	}
	if r.bus != nil {
		r.bus.proc.stop(syscall.SIGTERM, 5*time.Second)
		r.say("dbus-daemon stopped")
		r.bus = nil
	}
	if r.envSet {
		if r.envBus != nil {
			os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", *r.envBus)
		} else {
			os.Unsetenv("DBUS_SYSTEM_BUS_ADDRESS")
		}
		r.envSet = false
	}
	if r.pamFile != "" {
		if err := os.Remove(r.pamFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fail(err)
		} else {
			r.say("removed %s", r.pamFile)
		}
		r.pamFile = ""
	}
	if r.stack != nil {
		sctx, cancel := context.WithTimeout(context.Background(), devstack.DefaultShutdownTimeout)
		err := r.stack.Shutdown(sctx)
		cancel()
		if err != nil {
			r.stack.Close()
			fail(fmt.Errorf("stopping the relay and the Blossom server: %w", err))
		} else {
			r.say("relay and Blossom server stopped")
		}
		r.stack = nil
	}
	if r.dir != "" {
		left, err := mounts.Under(r.dir)
		fail(err)
		for _, m := range left {
			fail(fmt.Errorf("%s (%s) was still mounted: detached it", m.Point, m.FSType))
			unix.Unmount(m.Point, unix.MNT_DETACH)
		}
		if err == nil && len(left) == 0 {
			r.say("nothing is mounted under %s (/proc/mounts)", r.dir)
		}
		if r.opts.Keep {
			r.say("kept the demo's files in %s", r.dir)
		} else if len(left) == 0 {
			if err := os.RemoveAll(r.dir); err != nil {
				fail(err)
			} else {
				r.say("removed %s", r.dir)
			}
		}
		r.dir = ""
	}
	return errors.Join(errs...)
}

// pamConv is how the demo answers the PAM module.
type pamConv struct {
	password string
	onPrompt func(msg string)
	onInfo   func(msg string)
}

// lineWriter passes what is written to logf line by line.
type lineWriter struct {
	prefix string
	logf   func(string, ...any)
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.logf("%s%s", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// shorten keeps the start and end of a long id, key or hash.
func shorten(s string) string {
	if len(s) <= 20 {
		return s
	}
	head := 8
	for _, p := range []string{"npub1", "ncryptsec1"} { // keep a bech32 prefix readable
		if strings.HasPrefix(s, p) {
			head = len(p) + 6
		}
	}
	return s[:head] + "..." + s[len(s)-4:]
}
