package benchreport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/msteinert/pam/v2"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip49"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/privatebus"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
)

// The session benchmark: PAM open_session through pam_nostr.so to the real daemon
// (`nostr-homectl serve` from build/, whose builtin supervisor runs build/nostrfs), on a
// private system-like bus with the project's policy, with the dev stack as relay and Blossom
// server. Its steps are internal/pamtest's and internal/sshtest's (their helpers are _test
// files, so what is needed is copied here).

// sessionSizes are the session benchmark's sizes.
type sessionSizes struct {
	Files  int // BENCH_SESSION_FILES: files in the home (10000)
	PerDir int // BENCH_SESSION_PER_DIR: files per directory (100)
	Logins int // BENCH_LOGINS: timed logins of each kind (5)
}

func readSessionSizes() (sessionSizes, error) {
	var s sessionSizes
	var errs []error
	for _, v := range []struct {
		p    *int
		name string
		def  int
	}{{&s.Files, "BENCH_SESSION_FILES", 10000}, {&s.PerDir, "BENCH_SESSION_PER_DIR", 100}, {&s.Logins, "BENCH_LOGINS", 5}} {
		n, err := envInt(v.name, v.def)
		errs = append(errs, err)
		*v.p = n
	}
	return s, errors.Join(errs...)
}

const (
	benchUser     = "nhbench"
	benchPassword = "correct horse nhbench"
)

// cleanups runs registered functions in reverse order and joins their errors.
type cleanups []func() error

func (c *cleanups) add(f func() error) { *c = append(*c, f) }

func (c cleanups) run() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// startBus runs a private dbus-daemon under dir with the project's policy and returns its
// address.
func startBus(e *Env, dir string, cl *cleanups) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	policies, err := privatebus.Policies(e.Root)
	if err != nil {
		return "", err
	}
	addr, args, err := privatebus.Write(dir, policies)
	if err != nil {
		return "", err
	}
	c, err := startChild("dbus-daemon", "dbus-daemon", args, nil)
	if err != nil {
		return "", fmt.Errorf("%w (Debian package dbus)", err)
	}
	cl.add(func() error { c.cmd.Process.Kill(); <-c.exited; return nil })
	if _, err := c.waitLine("unix:", 10*time.Second); err != nil {
		return "", err
	}
	return addr, nil
}

// pamService writes /etc/pam.d/NAME-<random> with content (a format taking the module path
// as %[1]s) and registers its removal, checked.
func pamService(name, content string, cl *cleanups) (string, error) {
	var r [6]byte
	rand.Read(r[:])
	svc := name + "-" + hex.EncodeToString(r[:])
	path := filepath.Join("/etc/pam.d", svc)
	cl.add(func() error {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s is still there after cleanup (%v)", path, err)
		}
		return nil
	})
	head := fmt.Sprintf("# written by nostr-homed-bench (pid %d); removed when the benchmark ends\n", os.Getpid())
	return svc, os.WriteFile(path, []byte(head+content), 0o644)
}

// pamLogin is one in-process libpam transaction: Authenticate, then OpenSession (timed),
// then check(), then CloseSession.
type pamLogin struct {
	auth, open, close time.Duration
	infos             []string
}

func runPAM(svc, user, password string, check func() error) (r pamLogin, err error) {
	var mu sync.Mutex
	tx, err := pam.StartFunc(svc, user, func(s pam.Style, msg string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case pam.PromptEchoOff, pam.PromptEchoOn:
			return password, nil
		case pam.TextInfo, pam.ErrorMsg:
			r.infos = append(r.infos, msg)
			return "", nil
		}
		return "", fmt.Errorf("unexpected conversation style %d", s)
	})
	if err != nil {
		return r, fmt.Errorf("pam_start(%s, %s): %w", svc, user, err)
	}
	defer func() {
		if eerr := tx.End(); eerr != nil && err == nil {
			err = fmt.Errorf("pam_end: %w", eerr)
		}
	}()
	t0 := time.Now()
	if err := tx.Authenticate(0); err != nil {
		return r, fmt.Errorf("pam_authenticate(%s): %w (messages %q)", svc, err, r.infos)
	}
	t1 := time.Now()
	if err := tx.OpenSession(0); err != nil {
		return r, fmt.Errorf("pam_open_session(%s): %w (messages %q)", svc, err, r.infos)
	}
	t2 := time.Now()
	r.auth, r.open = t1.Sub(t0), t2.Sub(t1)
	var cerr error
	if check != nil {
		cerr = check()
	}
	t3 := time.Now()
	if err := tx.CloseSession(0); err != nil {
		return r, errors.Join(cerr, fmt.Errorf("pam_close_session(%s): %w (messages %q)", svc, err, r.infos))
	}
	r.close = time.Since(t3)
	return r, cerr
}

func sessionBench(e *Env) (figs []Figure, err error) {
	sz, err := readSessionSizes()
	if err != nil {
		return nil, err
	}
	module, err := e.Artifact("pam_nostr.so")
	if err != nil {
		return nil, err
	}
	homectl, err := e.Artifact("nostr-homectl")
	if err != nil {
		return nil, err
	}
	if _, err := e.Artifact("nostrfs"); err != nil { // the builtin supervisor runs the one next to nostr-homectl
		return nil, err
	}
	var cl cleanups
	defer func() {
		if cerr := cl.run(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()

	// The dev stack, the user's events and the home: 10,000 files written through a homefsd
	// mount of the user's key and home key, published when it unmounts.
	stack, err := newHomeStack(e, filepath.Join(e.Tmp, "devstack"))
	if err != nil {
		return nil, err
	}
	cl.add(stack.Close)
	if err := publishUser(e.Ctx, stack); err != nil {
		return nil, err
	}
	m, err := stack.mount(filepath.Join(e.Tmp, "create"), filepath.Join(e.Tmp, "create-mnt"))
	if err != nil {
		return nil, err
	}
	cl.add(m.stop)
	dCreate, err := makeTree(e.Ctx, m.mnt, sz.Files, sz.PerDir, 256)
	if err != nil {
		return nil, fmt.Errorf("creating the home: %w", err)
	}
	if err := m.stop(); err != nil {
		return nil, fmt.Errorf("publishing the home: %w", err)
	}
	topDirs := (sz.Files + sz.PerDir - 1) / sz.PerDir
	e.Logf("home of %d files written through a homefsd mount in %.1f s and published", sz.Files, dCreate.Seconds())

	// The bus, the configuration, the enrolment, the daemon.
	bus, err := startBus(e, filepath.Join(e.Tmp, "bus"), &cl)
	if err != nil {
		return nil, err
	}
	homeBase := filepath.Join(e.Tmp, "home")
	cacheDir := filepath.Join(e.Tmp, "cache")
	cfgPath := filepath.Join(e.Tmp, "config.toml")
	if err := os.MkdirAll(homeBase, 0o755); err != nil {
		return nil, err
	}
	cl.add(func() error { // whatever the daemon left mounted (a failure), deepest first
		_, err := mounts.DetachUnder(homeBase)
		return err
	})
	cfg := fmt.Sprintf(`bootstrap_relays = [%q]

[users]
database  = %q
home_base = %q

[cache]
dir = %q

[session]
runtime_dir   = %q
supervisor    = "builtin"
mount_timeout = "30s"
flush_timeout = "30s"

[login]
challenge_ttl = "60s"
`, stack.st.RelayURL(), filepath.Join(e.Tmp, "lib", "users.db"), homeBase, cacheDir, filepath.Join(e.Tmp, "run"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	npub, _ := nip19.EncodePublicKey(stack.pk)
	busEnv := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus}
	if _, err := e.Command(busEnv, homectl, "add", npub, "--name", benchUser, "--config", cfgPath); err != nil {
		return nil, err
	}
	uid, home, err := lookupUser(e, homectl, cfgPath)
	if err != nil {
		return nil, err
	}
	daemonLog := &syncbuf.Buffer{Limit: 4 << 20}
	if err := startDaemon(e, homectl, cfgPath, bus, daemonLog, &cl); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\ndaemon log (end):\n%s", err, tailString(daemonLog.String(), 3000))
		}
	}()
	if _, err := e.Command(busEnv, homectl, "warm", benchUser, "--config", cfgPath); err != nil {
		return nil, err
	}

	// The PAM services and the bus for the in-process module.
	svc, err := pamService("nostr-homed-bench", fmt.Sprintf("auth     required %[1]s\naccount  required %[1]s\nsession  required %[1]s\n", module), &cl)
	if err != nil {
		return nil, err
	}
	permit, err := pamService("nostr-homed-bench-permit", "auth     required pam_permit.so\naccount  required pam_permit.so\nsession  required pam_permit.so\n", &cl)
	if err != nil {
		return nil, err
	}
	old, had := os.LookupEnv("DBUS_SYSTEM_BUS_ADDRESS")
	os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus)
	cl.add(func() error {
		if had {
			return os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", old)
		}
		return os.Unsetenv("DBUS_SYSTEM_BUS_ADDRESS")
	})

	// check runs inside each session (untimed): the home is a nostrfs mount with the home's
	// top-level directories; lsMs records how long listing it took.
	var lsMs float64
	check := func() error {
		if !mounted(home) {
			return fmt.Errorf("%s is not mounted after open_session", home)
		}
		t0 := time.Now()
		des, err := os.ReadDir(home)
		lsMs = ms(time.Since(t0))
		if err != nil {
			return err
		}
		if len(des) != topDirs {
			return fmt.Errorf("%s holds %d entries, want %d", home, len(des), topDirs)
		}
		return nil
	}
	closed := func() error {
		if mounted(home) {
			return fmt.Errorf("%s is still mounted after close_session", home)
		}
		return nil
	}
	userCache := filepath.Join(cacheDir, strconv.FormatUint(uint64(uid), 10))

	// A first login fills the cache (the root pointer and the top listing); then warm,
	// cold and baseline logins, interleaved.
	if _, err := runPAM(svc, benchUser, benchPassword, check); err != nil {
		return nil, fmt.Errorf("the first login: %w", err)
	}
	if err := closed(); err != nil {
		return nil, err
	}
	var warm, cold, base, auth, warmLs, coldLs, closeMs []float64
	for i := range sz.Logins {
		if err := e.Ctx.Err(); err != nil {
			return nil, err
		}
		r, err := runPAM(svc, benchUser, benchPassword, check)
		if err != nil {
			return nil, fmt.Errorf("warm login %d: %w", i, err)
		}
		warm, auth, warmLs, closeMs = append(warm, ms(r.open)), append(auth, ms(r.auth)), append(warmLs, lsMs), append(closeMs, ms(r.close))
		if err := closed(); err != nil {
			return nil, err
		}

		if err := os.RemoveAll(userCache); err != nil {
			return nil, err
		}
		r, err = runPAM(svc, benchUser, benchPassword, check)
		if err != nil {
			return nil, fmt.Errorf("cold login %d: %w", i, err)
		}
		cold, auth, coldLs, closeMs = append(cold, ms(r.open)), append(auth, ms(r.auth)), append(coldLs, lsMs), append(closeMs, ms(r.close))
		if err := closed(); err != nil {
			return nil, err
		}

		r, err = runPAM(permit, benchUser, "", nil)
		if err != nil {
			return nil, fmt.Errorf("pam_permit login %d: %w", i, err)
		}
		base = append(base, ms(r.open))
		e.Logf("login %d: open_session warm %.0f ms, cold %.0f ms, pam_permit %.3f ms", i, warm[i], cold[i], base[i])
	}

	baseline := Measure{Label: "pam_permit.so open_session", Value: median(base), Unit: "ms"}
	spread := func(vs []float64) string { return fmtList(vs) }
	return []Figure{
		{
			Name:     "PAM open_session, warm cache",
			Measured: Measure{Label: "pam_nostr.so open_session: home mounted", Value: median(warm), Unit: "ms"},
			Baseline: baseline,
			Target:   &Target{Of: "value", Op: "<=", Limit: 150, Source: `issue "pam_nostr"`},
			Note: fmt.Sprintf("median of %d logins: %s ms (pam_permit: %s ms). The target is on the value. "+
				"open_session returns when the daemon has warmed the user's events from the relay, written the "+
				"secrets, and nostrfs (build/nostrfs, started by the daemon's builtin supervisor) has mounted the "+
				"home and said READY=1. Untimed around it: authenticate (password, NIP-49 log N 16: median %.0f ms), "+
				"listing the home's %d top-level directories in the session (median %.1f ms), close_session "+
				"(unmount, flush: median %.0f ms)",
				len(warm), spread(warm), spread(base), median(auth), topDirs, median(warmLs), median(closeMs)),
		},
		{
			Name:     fmt.Sprintf("PAM open_session, cold cache, %d-file home", sz.Files),
			Measured: Measure{Label: "pam_nostr.so open_session: home mounted", Value: median(cold), Unit: "ms"},
			Baseline: baseline,
			Target:   &Target{Of: "value", Op: "<=", Limit: 2000, Source: `issue "pam_nostr"`},
			Note: fmt.Sprintf("median of %d logins: %s ms. The user's cache directory (cache.dir/UID: the blobs, "+
				"the upload journal, state.db) is removed before each; the daemon's event cache stays (the login "+
				"itself needs the settings). The home (%d files in %d directories, BENCH_SESSION_FILES, "+
				"BENCH_SESSION_PER_DIR) was written once through a homefsd mount (%.0f s) and published; its "+
				"contents are fetched lazily, not at login: the first listing of the home in the session took "+
				"median %.1f ms (untimed)",
				len(cold), spread(cold), sz.Files, topDirs, dCreate.Seconds(), median(coldLs)),
		},
	}, nil
}

// publishUser publishes the stack's user's settings (password login: an ncryptsec of the
// key at log N 16; the stack's relay and Blossom server) and secrets (the home key), as
// internal/sshtest does.
func publishUser(ctx context.Context, h *homeStack) error {
	k, err := keyer.NewPlainKeySigner(h.sk)
	if err != nil {
		return err
	}
	relay := h.st.RelayURL()
	at := time.Now().Add(-time.Minute)
	ncs, err := nip49.Encrypt(h.sk, benchPassword, 16, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		return err
	}
	settings, err := events.NewSettingsEvent(ctx, k, "personal", events.Settings{
		Relays:  events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Blossom: []events.Server{{URL: h.st.BlossomURL(), Auth: "base64"}},
		Login:   []events.LoginMethod{{Type: events.LoginPassword, Ncryptsec: ncs}},
	}, nil, at)
	if err != nil {
		return err
	}
	secrets, err := events.NewSecretsEvent(ctx, k, "personal", events.Secrets{HomeKey: h.homeKey}, nil, at)
	if err != nil {
		return err
	}
	for _, ev := range []*nostr.Event{settings, secrets} {
		if _, err := relayio.Publish(ctx, []string{relay}, ev, 10*time.Second); err != nil {
			return fmt.Errorf("publishing kind %d: %w", ev.Kind, err)
		}
	}
	return nil
}

// lookupUser reads the bench user's UID and home from `nostr-homectl list --json`.
func lookupUser(e *Env, homectl, cfgPath string) (uint32, string, error) {
	out, err := e.Command(nil, homectl, "list", "--json", "--config", cfgPath)
	if err != nil {
		return 0, "", err
	}
	var us []struct {
		Name string `json:"name"`
		UID  uint32 `json:"uid"`
		Home string `json:"home"`
	}
	if err := json.Unmarshal(out, &us); err != nil {
		return 0, "", fmt.Errorf("nostr-homectl list --json: %w: %s", err, out)
	}
	for _, u := range us {
		if u.Name == benchUser {
			return u.UID, u.Home, nil
		}
	}
	return 0, "", fmt.Errorf("%s is not in nostr-homectl list: %s", benchUser, out)
}

// startDaemon runs `nostr-homectl serve` on the private bus and waits until it owns its name;
// its stop (SIGTERM: it ends every session and unmounts; SIGKILL after 60 s) is registered.
func startDaemon(e *Env, homectl, cfgPath, bus string, log *syncbuf.Buffer, cl *cleanups) error {
	cmd := exec.Command(homectl, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	cl.add(func() error {
		select {
		case <-exited:
			return nil
		default:
		}
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
			if !cmd.ProcessState.Success() {
				return fmt.Errorf("nostr-homectl serve exited with %v after SIGTERM", cmd.ProcessState)
			}
			return nil
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
			return errors.New("nostr-homectl serve did not exit within 60 s of SIGTERM: killed")
		}
	})
	conn, err := dbus.Connect(bus)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var owned bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, homed.BusName).Store(&owned); err == nil && owned {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("nostr-homectl serve exited before owning %s: %v: %s", homed.BusName, cmd.ProcessState, tailString(log.String(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nostr-homectl serve did not own %s within 15 s: %s", homed.BusName, tailString(log.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
