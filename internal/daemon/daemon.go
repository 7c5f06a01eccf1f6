package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr/nip19"
	"golang.org/x/sys/unix"

	busfiles "github.com/nostr-homed/nostr-homed/dbus"
	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/eventcache"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/login"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// Defaults of Options.
const (
	DefaultSignerGrace = 5 * time.Minute
	// DefaultCloseTimeout bounds Close's shutdown of every session on top of FlushTimeout.
	DefaultCloseTimeout = 10 * time.Second
)

// Options are what a configuration file does not say: paths tests move elsewhere, the
// binaries to run, the clock and the log.
type Options struct {
	// RuntimeDir overrides cfg.Session.RuntimeDir (secrets go to RuntimeDir/UID/secrets).
	RuntimeDir string
	// PasswdPath, GroupPath, SubUIDPath, SubGIDPath: the local account files the user
	// database keeps names and IDs clear of (userdb.Options; defaults /etc/...).
	PasswdPath, GroupPath, SubUIDPath, SubGIDPath string
	// ConfigPath is passed to nostrfs as --config. Default config.DefaultPath.
	ConfigPath string
	// NostrfsPath is the nostrfs binary the builtin supervisor runs. Default: nostrfs next
	// to this program's executable if there is one, else /usr/bin/nostrfs.
	NostrfsPath string
	// Mounter replaces the one cfg.Session.Supervisor selects (tests).
	Mounter Mounter
	// Hostname names this machine in login challenges. Default os.Hostname().
	Hostname string
	// Now is the clock of login challenges, event checks and status ages. Default time.Now.
	Now func() time.Time
	// Log receives the daemon's log lines. Default os.Stderr.
	Log io.Writer
	// RelayTimeout bounds one relay query (connect, query, end of stored events). Default
	// relayio.DefaultTimeout.
	RelayTimeout time.Duration
	// SignerGrace is how long the signer of a successful login waits for OpenSession
	// before it is wiped. Default DefaultSignerGrace.
	SignerGrace time.Duration
}

// Daemon is the nostr-homectl daemon. It implements homed.Service; its methods are safe for
// concurrent use (see the package documentation on locking).
type Daemon struct {
	cfg     config.Config
	opts    Options
	db      *userdb.DB
	cache   *eventcache.Cache
	issuer  *login.Issuer
	mounter Mounter
	host    string
	logger  *log.Logger
	rtDir   string

	mu      sync.Mutex             // see "Locking" in the package doc: taken before any userState.mu
	logins  map[string]*loginRec   // login ID -> what BeginLogin offered
	users   map[string]*userState  // user name -> session state
	warms   map[string]*WarmReport // "pubkey/namespace" -> last warm
	closing bool
	started time.Time
	// removing is guarded by mu: user name -> when TerminateSessions ended that user's
	// sessions; new logins and sessions are refused for a while after (see terminate.go).
	removing map[string]time.Time

	closeOnce sync.Once
	closeErr  error
}

var _ homed.Service = (*Daemon)(nil)

// New opens the user database, the event cache and the login issuer described by cfg.
func New(cfg config.Config, opts Options) (*Daemon, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if opts.RelayTimeout <= 0 {
		opts.RelayTimeout = relayio.DefaultTimeout
	}
	if opts.SignerGrace <= 0 {
		opts.SignerGrace = DefaultSignerGrace
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = config.DefaultPath
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("daemon: cannot tell this machine's host name for login challenges: %v", err)
		}
		opts.Hostname = h
	}
	d := &Daemon{
		cfg:     cfg,
		opts:    opts,
		host:    opts.Hostname,
		logger:  log.New(opts.Log, "nostr-homectl: ", 0),
		rtDir:   cfg.Session.RuntimeDir,
		logins:  map[string]*loginRec{},
		users:   map[string]*userState{},
		warms:   map[string]*WarmReport{},
		started: opts.Now(),
	}
	if opts.RuntimeDir != "" {
		if !filepath.IsAbs(opts.RuntimeDir) {
			return nil, fmt.Errorf("daemon: runtime dir %q is not absolute", opts.RuntimeDir)
		}
		d.rtDir = filepath.Clean(opts.RuntimeDir)
	}
	m, err := d.selectMounter()
	if err != nil {
		return nil, err
	}
	d.mounter = m

	db, err := OpenUserDB(cfg, opts)
	if err != nil {
		return nil, err
	}
	d.db = db
	cache, err := openEventCache(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.cache = cache
	d.issuer = login.NewIssuer(login.Options{TTL: cfg.Login.ChallengeTTL.Duration, Now: opts.Now})
	return d, nil
}

// privateDir is where the daemon keeps what only root may read: next to the database.
func privateDir(cfg config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Users.Database), "private")
}

func openEventCache(cfg config.Config) (*eventcache.Cache, error) {
	priv := privateDir(cfg)
	if err := os.MkdirAll(priv, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if err := os.Chmod(priv, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	c, err := eventcache.Open(filepath.Join(priv, "events"))
	if err != nil {
		return nil, fmt.Errorf("daemon: event cache: %w", err)
	}
	return c, nil
}

func (d *Daemon) selectMounter() (Mounter, error) {
	if d.opts.Mounter != nil {
		return d.opts.Mounter, nil
	}
	_, statErr := os.Stat("/run/systemd/system")
	systemdRunning := statErr == nil
	switch d.cfg.Session.Supervisor {
	case "systemd":
		if !systemdRunning {
			return nil, errors.New(`daemon: session.supervisor is "systemd" but systemd is not running here (no /run/systemd/system): set it to "builtin" or "auto"`)
		}
		return &Systemd{}, nil
	case "auto":
		if systemdRunning {
			return &Systemd{}, nil
		}
	}
	bin := d.opts.NostrfsPath
	if bin == "" {
		bin = defaultNostrfs()
	}
	return &Supervisor{Binary: bin, SocketDir: filepath.Join(d.rtDir, ".supervisor"), Logf: d.logf}, nil
}

func defaultNostrfs() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "nostrfs")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return "/usr/bin/nostrfs"
}

func (d *Daemon) logf(format string, args ...any) { d.logger.Printf(format, args...) }

func (d *Daemon) now() time.Time { return d.opts.Now() }

// DB is the user database (for the CLI's direct commands and tests).
func (d *Daemon) DB() *userdb.DB { return d.db }

// Run serves org.nostr.Homed1 on the system bus (DBUS_SYSTEM_BUS_ADDRESS if set) until ctx
// is cancelled, then closes every session and wipes every key (Shutdown). Before serving it
// makes the process non-dumpable (no core dumps, no ptrace by other users: the process holds
// unlocked keys); once the name is owned it tells systemd READY=1 if $NOTIFY_SOCKET is set.
func (d *Daemon) Run(ctx context.Context) error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("daemon: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return fmt.Errorf("daemon: connecting to the system bus: %w", err)
	}
	defer conn.Close()
	// The session signers first: Export requests the name, and then everything is there.
	if err := homed.ExportSigner(ctx, conn, d, busfiles.SignerXML, homed.SignerOptions{Logf: d.logf, Now: d.opts.Now}); err != nil {
		return err
	}
	if err := homed.Export(ctx, conn, d, busfiles.Homed1XML); err != nil {
		return err
	}
	d.logf("serving %s on the system bus (host %s, supervisor %s)", homed.BusName, d.host, d.mounter.Name())
	if _, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		d.logf("sd_notify READY=1: %v", err)
	}
	<-ctx.Done()
	sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	d.logf("stopping: closing every session")
	// Stop taking calls first, then close what is open.
	conn.ReleaseName(homed.BusName)
	sctx, cancel := context.WithTimeout(context.Background(), d.cfg.Session.FlushTimeout.Duration+DefaultCloseTimeout)
	defer cancel()
	return d.Shutdown(sctx)
}

// Close shuts every session down (bounded) and closes the databases. Idempotent.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Session.FlushTimeout.Duration+DefaultCloseTimeout)
		defer cancel()
		err := d.Shutdown(ctx)
		d.closeErr = errors.Join(err, d.db.Close())
	})
	return d.closeErr
}

// UIDOf returns the UID of an enrolled user (homed uses it to authorise GetStatus).
func (d *Daemon) UIDOf(user string) (uint32, error) {
	u, err := d.lookup(context.Background(), user)
	if err != nil {
		return 0, err
	}
	return u.UID, nil
}

// lookup returns an enrolled user or a homed UnknownUser error.
func (d *Daemon) lookup(ctx context.Context, name string) (userdb.User, error) {
	if !userdb.ValidName(name) {
		return userdb.User{}, homed.Errorf(homed.ErrUnknownUser, "%q is not a user name this machine manages", name)
	}
	u, err := d.db.User(ctx, name)
	if errors.Is(err, userdb.ErrNotFound) {
		return userdb.User{}, homed.Errorf(homed.ErrUnknownUser, "%s is not enrolled here", name)
	}
	if err != nil {
		return userdb.User{}, fmt.Errorf("reading the user database: %w", err)
	}
	return u, nil
}

// CheckAccount succeeds if user is enrolled and the login policy allows them.
func (d *Daemon) CheckAccount(ctx context.Context, user string) error {
	u, err := d.lookup(ctx, user)
	if err != nil {
		return err
	}
	if err := d.refuseIfRemoving(user); err != nil {
		return err
	}
	pol := d.cfg.Policy
	if len(pol.AllowNpubs) == 0 && len(pol.AllowNIP05Domains) == 0 {
		return nil
	}
	npub := npubOf(u.Pubkey)
	for _, n := range pol.AllowNpubs {
		if n == npub {
			return nil
		}
	}
	if len(pol.AllowNIP05Domains) > 0 {
		// Fail closed: allowing here would let in users the policy means to keep out.
		return homed.Errorf(homed.ErrNotAllowed,
			"%s is not in policy.allow_npubs, and the NIP-05 policy (policy.allow_nip05_domains) is not supported yet: refusing", user)
	}
	return homed.Errorf(homed.ErrNotAllowed, "the login policy does not allow %s (%s is not in policy.allow_npubs)", user, npub)
}

func npubOf(pubkey string) string {
	n, err := nip19.EncodePublicKey(pubkey)
	if err != nil {
		return pubkey
	}
	return n
}

// userState returns the session state of a user, creating it.
func (d *Daemon) userState(name string) *userState {
	d.mu.Lock()
	defer d.mu.Unlock()
	us, ok := d.users[name]
	if !ok {
		us = &userState{name: name}
		d.users[name] = us
	}
	return us
}

func (d *Daemon) isClosing() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closing
}

// Shutdown refuses new sessions and logins, closes every open session (stopping mounts,
// wiping secrets) and wipes every signer, within ctx. Run calls it when its context ends.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.closing = true
	names := make([]string, 0, len(d.users))
	for n := range d.users {
		names = append(names, n)
	}
	d.mu.Unlock()
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		if err := d.userState(n).shutdown(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// clip shortens s for messages.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
