package pamtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/msteinert/pam/v2"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/e2etest"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.RemoveBinaries()
	os.Exit(code)
}

// ---- prerequisites ----------------------------------------------------------------------

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns org.nostr.Homed1 under the root-only bus policy, and the test writes /etc/pam.d")
	}
}

// pamModule is the absolute path of the built module.
// repoRoot is the module root, or the end of the test.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func pamModule(t *testing.T) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "build", "pam_nostr.so")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run make build (make test builds it first): %v", p, err)
	}
	return p
}

func homectl(t *testing.T) string { return e2etest.Homectl(t) }

// ---- identities and events --------------------------------------------------------------

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

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ---- the environment --------------------------------------------------------------------

// env is the real daemon (the nostr-homectl binary) on a private bus, with a real relay,
// enrolled users, and a PAM service file using the real module.
type env struct {
	t       *testing.T
	bus     *dbustest.Bus
	stack   *devstack.Stack
	dir     string
	cfgPath string
	svc     string // PAM service name
	conn    *dbus.Conn
	logs    *syncbuf.Buffer
	daemon  *exec.Cmd
	exited  chan struct{}
}

type envOpts struct {
	users        []ident
	challengeTTL string   // login.challenge_ttl; default "60s"
	allowNpubs   []string // policy.allow_npubs
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	requireRoot(t)
	module := pamModule(t)
	bin := homectl(t)
	for _, tool := range []string{"pamtester", "dbus-send"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: %v", tool, err)
		}
	}
	e := &env{t: t, dir: t.TempDir(), logs: &syncbuf.Buffer{}}
	// Registered first, so it runs last: nothing may stay mounted under the test's
	// directory, even after a failure (a dead nostrfs leaves its FUSE mount behind).
	t.Cleanup(func() { detachMounts(t, e.dir) })
	e.stack = devstacktest.Start(t)
	e.bus = dbustest.Start(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", e.bus.Address) // the in-process module reads it
	must(t, os.Mkdir(filepath.Join(e.dir, "home"), 0o755))

	ttl := o.challengeTTL
	if ttl == "" {
		ttl = "60s"
	}
	var allow []string
	for _, n := range o.allowNpubs {
		allow = append(allow, fmt.Sprintf("%q", n))
	}
	cfg := fmt.Sprintf(`bootstrap_relays = [%q]

[users]
database  = %q
home_base = %q

[policy]
allow_npubs = [%s]

[cache]
dir = %q

[session]
runtime_dir   = %q
supervisor    = "builtin"
mount_timeout = "5s"
flush_timeout = "3s"

[login]
challenge_ttl = %q
`, e.stack.RelayURL(), filepath.Join(e.dir, "lib", "users.db"), filepath.Join(e.dir, "home"),
		strings.Join(allow, ", "), filepath.Join(e.dir, "cache"), filepath.Join(e.dir, "run"), ttl)
	e.cfgPath = filepath.Join(e.dir, "config.toml")
	must(t, os.WriteFile(e.cfgPath, []byte(cfg), 0o644))

	for _, id := range o.users {
		e.publish(id, "", time.Now().Add(-time.Minute))
		out, err := exec.Command(bin, "add", id.npub, "--name", id.name, "--config", e.cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("nostr-homectl add %s: %v\n%s", id.name, err, out)
		}
	}

	e.startDaemon(bin)
	e.writeService(module)
	return e
}

// startDaemon runs `nostr-homectl serve` and waits until it owns the bus name.
func (e *env) startDaemon(bin string) {
	t := e.t
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", e.cfgPath)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+e.bus.Address)
	cmd.Stdout = e.logs
	cmd.Stderr = e.logs
	must(t, cmd.Start())
	e.daemon = cmd
	e.exited = make(chan struct{})
	go func() { cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		e.stopDaemon()
		if t.Failed() || os.Getenv("PAMTEST_LOG") != "" {
			t.Logf("daemon log:\n%s", e.logs.String())
		}
	})

	conn, err := dbus.Connect(e.bus.Address)
	must(t, err)
	e.conn = conn
	t.Cleanup(func() { conn.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		var owned bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, homed.BusName).Store(&owned); err == nil && owned {
			return
		}
		select {
		case <-e.exited:
			t.Fatalf("nostr-homectl serve exited before owning %s: %v\n%s", homed.BusName, cmd.ProcessState, e.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not own %s within 10s\n%s", homed.BusName, e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopDaemon sends SIGTERM and waits for the daemon to exit (SIGKILL after 30 s); it checks
// a clean exit. Idempotent.
func (e *env) stopDaemon() {
	select {
	case <-e.exited:
		return
	default:
	}
	e.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
		if !e.daemon.ProcessState.Success() {
			e.t.Errorf("nostr-homectl serve exited with %v after SIGTERM", e.daemon.ProcessState)
		}
	case <-time.After(30 * time.Second):
		e.daemon.Process.Kill()
		<-e.exited
		e.t.Errorf("nostr-homectl serve did not exit within 30s of SIGTERM")
	}
}

// writeService writes /etc/pam.d/nostr-homed-pamtest-<random> and removes it when the test
// ends, checking that it is gone.
func (e *env) writeService(module string) {
	t := e.t
	t.Helper()
	var r [6]byte
	_, err := rand.Read(r[:])
	must(t, err)
	e.svc = "nostr-homed-pamtest-" + hex.EncodeToString(r[:])
	path := filepath.Join("/etc/pam.d", e.svc)
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing %s: %v", path, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after cleanup (%v)", path, err)
		}
	})
	content := fmt.Sprintf("# written by nostr-homed internal/pamtest (pid %d); removed when the test ends\n"+
		"auth     required %[2]s\naccount  required %[2]s\nsession  required %[2]s\n", os.Getpid(), module)
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

// publish signs and publishes id's settings (password login: an ncryptsec at log N 16 of
// lockKey, id's own key if empty, with id's password) and secrets (with a home key), created at
// `at`. It returns the settings event.
func (e *env) publish(id ident, lockKey string, at time.Time) *nostr.Event {
	e.t.Helper()
	if lockKey == "" {
		lockKey = id.sk
	}
	return e2etest.PublishLogin(e.t, e.stack.RelayURL(), e.stack.BlossomURL(),
		e2etest.Login{Keyer: id.keyer, LockKey: lockKey, Password: id.password, Name: id.name, At: at})
}

// ---- the bus ----------------------------------------------------------------------------

func (e *env) call(method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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

// errName is the D-Bus error name of err ("" if it is not a D-Bus error).
func errName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	return ""
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

var dbusSendString = regexp.MustCompile(`(?m)^\s*string "([^"]*)"`)

// beginLoginDBusSend calls BeginLogin with dbus-send (a client that is neither the module nor
// godbus) and returns the login ID and method.
func (e *env) beginLoginDBusSend(user string) (id, method string) {
	e.t.Helper()
	out, err := exec.Command("dbus-send", "--bus="+e.bus.Address, "--print-reply", "--dest="+homed.BusName,
		string(homed.ObjectPath), homed.Interface+".BeginLogin",
		"string:"+user, "string:pamtest", "string:").CombinedOutput()
	if err != nil {
		e.t.Fatalf("dbus-send BeginLogin %s: %v\n%s", user, err, out)
	}
	m := dbusSendString.FindAllStringSubmatch(string(out), -1)
	if len(m) < 2 {
		e.t.Fatalf("dbus-send BeginLogin %s: unexpected reply\n%s", user, out)
	}
	return m[0][1], m[1][1]
}

// ---- PAM drivers ------------------------------------------------------------------------

// goResult is what one msteinert/pam transaction did.
type goResult struct {
	err     error    // of the first operation that failed, nil if all succeeded
	prompts []string // PromptEchoOff/On messages asked
	infos   []string // TextInfo/ErrorMsg messages shown
}

// goPAM runs the operations ("authenticate", "acct_mgmt", "open_session", "close_session")
// in one in-process libpam transaction for user on the env's service; the conversation
// answers every prompt with password after waiting delay.
func (e *env) goPAM(user, password string, delay time.Duration, ops ...string) goResult {
	e.t.Helper()
	var r goResult
	var mu sync.Mutex
	tx, err := pam.StartFunc(e.svc, user, func(s pam.Style, msg string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case pam.PromptEchoOff, pam.PromptEchoOn:
			r.prompts = append(r.prompts, msg)
			time.Sleep(delay)
			return password, nil
		case pam.TextInfo, pam.ErrorMsg:
			r.infos = append(r.infos, msg)
			return "", nil
		}
		return "", fmt.Errorf("unexpected conversation style %d", s)
	})
	if err != nil {
		e.t.Fatalf("pam.StartFunc(%s, %s): %v", e.svc, user, err)
	}
	defer func() {
		if err := tx.End(); err != nil {
			e.t.Errorf("pam_end: %v", err)
		}
	}()
	for _, op := range ops {
		switch op {
		case "authenticate":
			err = tx.Authenticate(0)
		case "acct_mgmt":
			err = tx.AcctMgmt(0)
		case "open_session":
			err = tx.OpenSession(0)
		case "close_session":
			err = tx.CloseSession(0)
		case "mounted", "unmounted":
			// Not PAM: checks of the user's home between two operations.
			home := filepath.Join(e.dir, "home", user)
			if got := fsType(home); (got == "fuse.nostrfs") != (op == "mounted") {
				e.t.Errorf("after %v: %s has %q mounted, want %s", ops, home, got, op)
			}
		default:
			e.t.Fatalf("unknown PAM operation %q", op)
		}
		if err != nil {
			r.err = err
			return r
		}
	}
	return r
}

// pamtester's last lines: pam_strerror() of the result (Linux-PAM 1.5, LC_ALL=C).
const (
	msgAuthOK      = "pamtester: successfully authenticated"
	msgAcctOK      = "pamtester: account management done."
	msgAuthErr     = "pamtester: Authentication failure"                                     // PAM_AUTH_ERR
	msgAuthinfo    = "pamtester: Authentication service cannot retrieve authentication info" // PAM_AUTHINFO_UNAVAIL
	msgUserUnknown = "pamtester: User not known to the underlying authentication module"     // PAM_USER_UNKNOWN
	msgPermDenied  = "pamtester: Permission denied"                                          // PAM_PERM_DENIED
	msgSessionErr  = "pamtester: Cannot make/remove an entry for the specified session"      // PAM_SESSION_ERR
)

var pamtesterLine = regexp.MustCompile(`pamtester: [^\n]*`)

// pamtester runs `pamtester -v SERVICE USER OPS...` with LC_ALL=C and the env's bus; stdin is
// the password and a newline, written after delay. It returns the exit status, the result
// line and the whole output.
func (e *env) pamtester(user, password string, delay time.Duration, ops ...string) (rc int, last, out string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pamtester", append([]string{"-v", e.svc, user}, ops...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DBUS_SYSTEM_BUS_ADDRESS="+e.bus.Address)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	pr, pw, err := os.Pipe()
	must(e.t, err)
	cmd.Stdin = pr
	must(e.t, cmd.Start())
	pr.Close()
	go func() {
		defer pw.Close()
		time.Sleep(delay)
		io.WriteString(pw, password+"\n")
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		rc = ee.ExitCode()
	default:
		e.t.Fatalf("pamtester: %v", err)
	}
	out = buf.String()
	// Its stdout (progress, success lines) is block-buffered in a pipe while a failure goes to
	// stderr at once, and a prompt has no newline: so the result is found by its text, not
	// by position. pamtester stops at the first failure: the result is that failure's line
	// if there is one, else the last success line.
	var fail string
	for _, l := range pamtesterLine.FindAllString(out, -1) {
		switch {
		case strings.HasPrefix(l, "pamtester: invoking pam_start"), strings.HasPrefix(l, "pamtester: performing operation"):
		case pamtesterOK[l]:
			last = l
		default:
			fail = l
		}
	}
	if fail != "" {
		last = fail
	}
	return rc, last, out
}

// pamtesterOK are pamtester's success lines.
var pamtesterOK = map[string]bool{
	msgAuthOK: true, msgAcctOK: true,
	"pamtester: successfully opened a session":              true,
	"pamtester: session has successfully been closed.":      true,
	"pamtester: credential info has successfully been set.": true,
}

// both checks one case through both drivers: the in-process transaction must end with
// wantGo (nil: success) and pamtester with exit status wantRC and result line wantMsg.
func (e *env) both(user, password string, delay time.Duration, wantGo error, wantRC int, wantMsg string, ops ...string) {
	e.t.Helper()
	start := time.Now()
	r := e.goPAM(user, password, delay, ops...)
	goTime := time.Since(start)
	if !errors.Is(r.err, wantGo) {
		e.t.Errorf("msteinert/pam %s %v: got %v, want %v (prompts %q, info %q)", user, ops, describe(r.err), describe(wantGo), r.prompts, r.infos)
	}
	start = time.Now()
	rc, last, out := e.pamtester(user, password, delay, ops...)
	ptTime := time.Since(start)
	if rc != wantRC || last != wantMsg {
		e.t.Errorf("pamtester %s %v: exit %d %q, want exit %d %q\n%s", user, ops, rc, last, wantRC, wantMsg, out)
	}
	e.t.Logf("%s %v: go %v (%v), pamtester %q (%v)", user, ops, describe(r.err), goTime.Round(time.Millisecond), last, ptTime.Round(time.Millisecond))
}

func describe(err error) string {
	if err == nil {
		return "PAM_SUCCESS"
	}
	var pe pam.Error
	if errors.As(err, &pe) {
		return fmt.Sprintf("%d (%s)", int(pe), pe.Error())
	}
	return err.Error()
}

// fsType is the file system type mounted exactly at dir ("" if none).
func fsType(dir string) string {
	fstype, _ := mounts.At(dir)
	return fstype
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
