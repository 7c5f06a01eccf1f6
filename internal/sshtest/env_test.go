package sshtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
)

// sshdBinary is the system sshd that the test copies under its PAM service name.
const sshdBinary = "/usr/sbin/sshd"

// env is the real daemon on a private bus with a real relay and Blossom server, enrolled
// users, a PAM service file using the real module, and a private sshd using that service
// inside its own mount namespace.
type env struct {
	t        *testing.T
	dir      string // the test's root directory (0755: the users must traverse to their homes)
	homeBase string // users.home_base: a shared bind mount (see the package doc)
	cfgPath  string
	dbPath   string
	homectl  string
	bus      *dbustest.Bus
	stack    *devstack.Stack

	daemonLog    *syncbuf.Buffer
	daemon       *exec.Cmd
	daemonExited chan struct{}

	users map[string]dbUser // from `nostr-homectl list --json`: what the daemon mapped

	svc      string // PAM service name = sshd's file name
	sshdPath string
	addr     string // 127.0.0.1:port
	hostKey  ssh.PublicKey
	sshdLog  *syncbuf.Buffer
	sshd     *exec.Cmd
	sshdGone chan struct{}
	libDir   string // the system library directory the overlay covers in sshd's namespace
}

// dbUser is one entry of `nostr-homectl list --json`.
type dbUser struct {
	Name  string `json:"name"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Home  string `json:"home"`
	Shell string `json:"shell"`
}

// newEnv sets everything up; each step registers its undo with t.Cleanup as soon as there is
// something to undo, so a failure anywhere leaves nothing behind. Cleanup order (last registered runs
// first): sshd and its per-connection processes, the PAM service file, the daemon (which
// unmounts the homes it mounted), any mount left under the test directory, the directory.
func newEnv(t *testing.T, users ...ident) *env {
	t.Helper()
	requireRoot(t)
	if _, err := os.Stat(sshdBinary); err != nil {
		t.Skipf("needs %s (Debian package openssh-server): %v", sshdBinary, err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("needs unshare (Debian package util-linux): %v", err)
	}
	for _, tool := range []string{"mount", "findmnt", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: %v", tool, err)
		}
	}
	pamMod := builtModule(t, "pam_nostr.so")
	nssMod := builtModule(t, "libnss_nostr.so.2")

	e := &env{t: t, homectl: homectl(t), daemonLog: &syncbuf.Buffer{Limit: 4 << 20}, sshdLog: &syncbuf.Buffer{Limit: 16 << 20}}
	// Not t.TempDir(): its directories are 0700, and the users' shells must reach their
	// homes, and their NSS lookups the database.
	dir, err := os.MkdirTemp("", "sshtest-")
	must(t, err)
	e.dir = dir
	t.Cleanup(func() {
		if left := mountsUnder(t, "/proc/self/mountinfo", dir); len(left) > 0 {
			t.Errorf("not removing %s: still mounted under it: %q", dir, left)
			return
		}
		os.RemoveAll(dir)
	})
	must(t, os.Chmod(dir, 0o755))
	e.homeBase = filepath.Join(dir, "home")
	must(t, os.Mkdir(e.homeBase, 0o755))
	e.shareHomeBase()

	e.stack = devstacktest.Start(t)
	e.bus = dbustest.Start(t)
	e.dbPath = filepath.Join(dir, "lib", "users.db")
	e.writeConfig()
	for _, id := range users {
		publish(t, e.stack, id)
		if out, err := exec.Command(e.homectl, "add", id.npub, "--name", id.name, "--config", e.cfgPath).CombinedOutput(); err != nil {
			t.Fatalf("nostr-homectl add %s: %v\n%s", id.name, err, out)
		}
	}
	e.readUsers()
	e.startDaemon()
	e.writeService(pamMod)
	e.startSSHD(nssMod)
	return e
}

// ---- mounts ------------------------------------------------------------------------------

// shareHomeBase bind-mounts the home base onto itself and makes it a shared mount. The
// machine's / is private (no propagation), so without this the daemon's mounts (made in the
// machine's namespace) would never appear in sshd's namespace; with it, sshd's namespace
// (unshare --propagation slave) receives them, and their unmounts, as a slave.
func (e *env) shareHomeBase() {
	t := e.t
	t.Cleanup(func() {
		// Whatever the daemon left (a failed test), deepest first, then the base.
		left := mountsUnder(t, "/proc/self/mountinfo", e.homeBase)
		sort.Slice(left, func(i, j int) bool { return len(left[i]) > len(left[j]) })
		for _, m := range left {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				t.Errorf("detaching %s: %v", m, err)
			}
		}
		if err := unix.Unmount(e.homeBase, 0); err != nil {
			if err := unix.Unmount(e.homeBase, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Errorf("unmounting %s: %v", e.homeBase, err)
			}
		}
	})
	if err := unix.Mount(e.homeBase, e.homeBase, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting %s onto itself: %v", e.homeBase, err)
	}
	if err := unix.Mount("", e.homeBase, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("making %s a shared mount: %v", e.homeBase, err)
	}
}

// mountsUnder lists the mount points strictly below dir in a mountinfo file.
func mountsUnder(t *testing.T, mountinfo, dir string) []string {
	t.Helper()
	ms, err := mounts.ListFile(mountinfo)
	if err != nil {
		t.Errorf("reading %s: %v", mountinfo, err)
	}
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m.Point+" ("+m.FSType+")")
		}
	}
	return out
}

// ---- the daemon --------------------------------------------------------------------------

func (e *env) writeConfig() {
	cfg := fmt.Sprintf(`bootstrap_relays = [%q]

[users]
database  = %q
home_base = %q

[cache]
dir = %q

[session]
runtime_dir   = %q
supervisor    = "builtin"
mount_timeout = "10s"
flush_timeout = "5s"

[login]
challenge_ttl = "60s"
`, e.stack.RelayURL(), e.dbPath, e.homeBase, filepath.Join(e.dir, "cache"), filepath.Join(e.dir, "run"))
	e.cfgPath = filepath.Join(e.dir, "config.toml")
	must(e.t, os.WriteFile(e.cfgPath, []byte(cfg), 0o644))
}

// readUsers reads the users the daemon enrolled and mapped, from its database.
func (e *env) readUsers() {
	t := e.t
	out, err := exec.Command(e.homectl, "list", "--json", "--config", e.cfgPath).Output()
	if err != nil {
		t.Fatalf("nostr-homectl list --json: %v\n%s", err, out)
	}
	var us []dbUser
	if err := json.Unmarshal(out, &us); err != nil {
		t.Fatalf("nostr-homectl list --json is not JSON: %v\n%s", err, out)
	}
	e.users = map[string]dbUser{}
	for _, u := range us {
		e.users[u.Name] = u
	}
}

// homectlCmd runs nostr-homectl ARGS against the daemon on the private bus.
func (e *env) homectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.homectl, args...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+e.bus.Address)
	return cmd
}

// allStatus is `nostr-homectl status --json` for every user.
type allStatus struct {
	Supervisor string          `json:"supervisor"`
	Users      []daemon.Status `json:"users"`
}

// status runs `nostr-homectl status --json`.
func (e *env) status() (allStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := e.homectlCmd(ctx, "status", "--json")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return allStatus{}, fmt.Errorf("nostr-homectl status --json: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var st allStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return allStatus{}, fmt.Errorf("nostr-homectl status --json is not JSON: %v\n%s", err, out)
	}
	return st, nil
}

func (st allStatus) user(name string) (daemon.Status, bool) {
	for _, u := range st.Users {
		if u.User == name {
			return u, true
		}
	}
	return daemon.Status{}, false
}

// sessionClosed says whether s shows no session and nothing mounted, and if not, why.
func sessionClosed(s daemon.Status) (bool, string) {
	if s.Session.Open != 0 || s.Session.State != "closed" || s.Session.Mount != nil {
		return false, fmt.Sprintf("open %d, state %q, mount %+v, last error %q", s.Session.Open, s.Session.State, s.Session.Mount, s.Session.LastError)
	}
	return true, ""
}

// startDaemon runs `nostr-homectl serve` and waits until `nostr-homectl status` answers.
func (e *env) startDaemon() {
	t := e.t
	cmd := exec.Command(e.homectl, "serve", "--config", e.cfgPath)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+e.bus.Address)
	w := stamped(e.daemonLog)
	cmd.Stdout, cmd.Stderr = w, w
	must(t, cmd.Start())
	e.daemon = cmd
	e.daemonExited = make(chan struct{})
	go func() { cmd.Wait(); close(e.daemonExited) }()
	t.Cleanup(func() {
		e.stopDaemon()
		if t.Failed() || os.Getenv("SSHTEST_LOG") != "" {
			t.Logf("daemon log:\n%s", e.daemonLog.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := e.status()
		if err == nil {
			return
		}
		select {
		case <-e.daemonExited:
			t.Fatalf("nostr-homectl serve exited before answering: %v\n%s", cmd.ProcessState, e.daemonLog.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not answer within 15s: %v\n%s", err, e.daemonLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopDaemon sends SIGTERM and waits (SIGKILL after 30 s); it checks a clean exit. Idempotent.
func (e *env) stopDaemon() {
	select {
	case <-e.daemonExited:
		return
	default:
	}
	e.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.daemonExited:
		if !e.daemon.ProcessState.Success() {
			e.t.Errorf("nostr-homectl serve exited with %v after SIGTERM", e.daemon.ProcessState)
		}
	case <-time.After(30 * time.Second):
		e.daemon.Process.Kill()
		<-e.daemonExited
		e.t.Errorf("nostr-homectl serve did not exit within 30s of SIGTERM")
	}
}

// ---- PAM ---------------------------------------------------------------------------------

// writeService writes /etc/pam.d/nostr-homed-sshtest-<random> and removes it when the test
// ends, checking that it is gone.
//
// pam_nostr is the only module of each phase sshd runs: its pam_sm_setcred returns
// PAM_SUCCESS, so sshd's pam_setcred(PAM_ESTABLISH_CRED) needs no pam_permit, and its
// account phase is the daemon's CheckAccount. sshd never changes a password here; the
// password phase denies, explicitly, rather than falling through to nothing.
func (e *env) writeService(module string) {
	t := e.t
	var r [6]byte
	_, err := rand.Read(r[:])
	must(t, err)
	e.svc = "nostr-homed-sshtest-" + hex.EncodeToString(r[:])
	path := filepath.Join("/etc/pam.d", e.svc)
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing %s: %v", path, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after cleanup (%v)", path, err)
		}
	})
	content := fmt.Sprintf("# written by nostr-homed internal/sshtest (pid %d) for its private sshd; removed when the test ends\n"+
		"auth     required %[2]s\n"+
		"account  required %[2]s\n"+
		"password required pam_deny.so\n"+
		"session  required %[2]s\n", os.Getpid(), module)
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

// ---- sshd --------------------------------------------------------------------------------

// startSSHD starts the private sshd (see the package doc) and waits until it listens.
func (e *env) startSSHD(nssMod string) {
	t := e.t
	sdir := filepath.Join(e.dir, "sshd")
	must(t, os.Mkdir(sdir, 0o755))

	// The binary, named after the PAM service (sshd's program name is its PAM service).
	e.sshdPath = filepath.Join(sdir, e.svc)
	copyFile(t, sshdBinary, e.sshdPath, 0o755)

	// A host key of its own.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "nostr-homed sshtest")
	must(t, err)
	keyPath := filepath.Join(sdir, "ssh_host_ed25519_key")
	must(t, os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600))
	e.hostKey, err = ssh.NewPublicKey(pub)
	must(t, err)

	// NSS inside its namespace: nsswitch.conf with "nostr" for passwd and group, and the
	// module in a directory that the overlay puts in front of the system library directory.
	nsswitch := filepath.Join(sdir, "nsswitch.conf")
	must(t, os.WriteFile(nsswitch, []byte(nsswitchConf(t)), 0o644))
	nssDir := filepath.Join(sdir, "nss-lib")
	must(t, os.Mkdir(nssDir, 0o755))
	copyFile(t, nssMod, filepath.Join(nssDir, "libnss_nostr.so.2"), 0o644)
	e.libDir = systemLibDir(t)

	busSocket, ok := strings.CutPrefix(e.bus.Address, "unix:path=")
	if !ok {
		t.Fatalf("the private bus's address %q is not a unix:path= socket", e.bus.Address)
	}

	port := freePort(t)
	e.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	config := filepath.Join(sdir, "sshd_config")
	must(t, os.WriteFile(config, []byte(fmt.Sprintf(`# written by nostr-homed internal/sshtest
ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile %s
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
HostbasedAuthentication no
AuthorizedKeysFile none
PermitRootLogin no
MaxAuthTries 3
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
# The session's environment is built by sshd afresh: the NSS module in the users' shells
# finds the test's database through this.
SetEnv NOSTR_HOMED_USERDB=%s
LogLevel DEBUG1
`, port, keyPath, filepath.Join(sdir, "sshd.pid"), e.dbPath)), 0o644))

	// In the namespace: the nsswitch.conf bind, the library overlay (read-only, the test's
	// module layer first), a /run of its own with the privilege separation directory and
	// the private bus at the system bus's path, then exec sshd, so that the process this
	// test holds is sshd.
	const script = `set -e
mount --bind "$SSHTEST_NSSWITCH" /etc/nsswitch.conf
mount -t overlay nostr-homed-sshtest -o "ro,lowerdir=$SSHTEST_NSSDIR:$SSHTEST_LIBDIR" "$SSHTEST_LIBDIR"
mount -t tmpfs -o mode=0755,nosuid,nodev nostr-homed-sshtest /run
mkdir -m 0755 /run/sshd /run/dbus
ln -s "$SSHTEST_BUS_SOCKET" /run/dbus/system_bus_socket
exec "$SSHTEST_SSHD" -D -e -f "$SSHTEST_CONFIG"
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c", script)
	cmd.Dir = sdir
	cmd.Env = append(cleanEnv(),
		"SSHTEST_NSSWITCH="+nsswitch, "SSHTEST_NSSDIR="+nssDir, "SSHTEST_LIBDIR="+e.libDir,
		"SSHTEST_SSHD="+e.sshdPath, "SSHTEST_CONFIG="+config,
		"SSHTEST_BUS_SOCKET="+busSocket,
		// For libnss_nostr in sshd's own processes: sshd keeps its environment across its
		// re-exec and its forks (but not in its PAM authentication process: see the
		// package doc; nothing there looks up a user).
		"NOSTR_HOMED_USERDB="+e.dbPath,
	)
	w := stamped(e.sshdLog)
	cmd.Stdout, cmd.Stderr = w, w
	must(t, cmd.Start())
	e.sshd = cmd
	e.sshdGone = make(chan struct{})
	go func() { cmd.Wait(); close(e.sshdGone) }()
	t.Cleanup(e.stopSSHD)

	want := fmt.Sprintf("Server listening on 127.0.0.1 port %d.", port)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.sshdLog.String(), want) {
		select {
		case <-e.sshdGone:
			t.Fatalf("sshd exited before listening: %v\n%s", cmd.ProcessState, e.sshdLog.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen within 10s\n%s", e.sshdLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopSSHD stops the listener (SIGTERM, SIGKILL after 5 s), then any per-connection sshd
// process still running (sshd does not stop those with the listener): the processes whose
// executable is this test's copy of sshd, found in /proc, each killed by its PID. When the
// last of them is gone, sshd's mount namespace goes too.
func (e *env) stopSSHD() {
	t := e.t
	select {
	case <-e.sshdGone:
	default:
		e.sshd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.sshdGone:
		case <-time.After(5 * time.Second):
			e.sshd.Process.Kill()
			<-e.sshdGone
		}
	}
	for _, pid := range e.sshdProcesses() {
		t.Logf("killing a leftover sshd process %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if t.Failed() || os.Getenv("SSHTEST_LOG") != "" {
		t.Logf("sshd log (tail):\n%s", tail(e.sshdLog.String(), 64<<10))
	}
}

// sshdProcesses lists the running processes whose executable is this test's sshd copy.
func (e *env) sshdProcesses() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", de.Name(), "exe"))
		if err != nil {
			continue
		}
		if strings.TrimSuffix(exe, " (deleted)") == e.sshdPath {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sshdAlive says whether the listener is still running.
func (e *env) sshdAlive() bool {
	select {
	case <-e.sshdGone:
		return false
	default:
		return true
	}
}

// nsswitchConf is the machine's nsswitch.conf with passwd and group set to "files nostr".
func nsswitchConf(t *testing.T) string {
	b, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "passwd:" || f[0] == "group:") {
			continue
		}
		out = append(out, l)
	}
	return "# written by nostr-homed internal/sshtest\npasswd: files nostr\ngroup:  files nostr\n" + strings.Join(out, "\n")
}

// systemLibDir is the directory the dynamic loader finds sshd's libc in (the multiarch
// library directory, /usr/lib/x86_64-linux-gnu on Debian amd64), where `make install` puts
// the NSS module; symbolic links resolved (/lib is one on Debian 12).
func systemLibDir(t *testing.T) string {
	out, err := exec.Command("ldd", sshdBinary).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", sshdBinary, err)
	}
	m := regexp.MustCompile(`(?m)^\s*libc\.so\.6 => (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ldd %s names no libc.so.6:\n%s", sshdBinary, out)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(string(m[1])))
	must(t, err)
	return dir
}

// cleanEnv is the test's environment without the loader's variables: the module must be
// found the way an installed one is.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LD_") || strings.HasPrefix(kv, "NOSTR_HOMED_USERDB=") || strings.HasPrefix(kv, "DBUS_SYSTEM_BUS_ADDRESS=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	must(t, err)
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	must(t, out.Close())
	must(t, os.Chmod(to, mode))
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// stampWriter prefixes each line with the time since the test process started, so that the
// daemon's and sshd's logs (neither has times on stderr) can be read side by side.
type stampWriter struct {
	mu      sync.Mutex
	w       io.Writer
	midLine bool
}

var processStart = time.Now()

func stamped(w io.Writer) *stampWriter { return &stampWriter{w: w} }

func (s *stampWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	var out []byte
	for len(p) > 0 {
		if !s.midLine {
			out = append(out, fmt.Sprintf("%8.3f ", time.Since(processStart).Seconds())...)
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			out = append(out, p...)
			s.midLine = true
			break
		}
		out = append(out, p[:i+1]...)
		p = p[i+1:]
		s.midLine = false
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// tail is the last n bytes of s, from a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// ---- the client --------------------------------------------------------------------------

// loginResult is what one ssh login did.
type loginResult struct {
	prompts        []string // keyboard-interactive questions asked
	stdout, stderr string
	err            error
	hung           bool // the deadline ran out
	dur            time.Duration
}

// login connects as user with keyboard-interactive authentication (every question answered
// with password), runs cmd in a session (the user's shell: `$SHELL -c cmd`) and disconnects.
// The whole login, from the TCP connect to the disconnect, has deadline.
func (e *env) login(user, password, cmd string, deadline time.Duration) (r loginResult) {
	start := time.Now()
	defer func() { r.dur = time.Since(start) }()
	end := start.Add(deadline)
	conn, err := net.DialTimeout("tcp", e.addr, deadline)
	if err != nil {
		r.err = err
		return
	}
	defer conn.Close()
	conn.SetDeadline(end) // every read and write: a hang anywhere ends here
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i, q := range questions {
				r.prompts = append(r.prompts, q)
				answers[i] = password
			}
			return answers, nil
		})},
		HostKeyCallback: ssh.FixedHostKey(e.hostKey),
		Timeout:         deadline,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, e.addr, cfg)
	if err != nil {
		r.err, r.hung = err, errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(end)
		return
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		r.err, r.hung = fmt.Errorf("opening a session: %w", err), time.Now().After(end)
		return
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run(cmd)
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if err != nil {
		r.err, r.hung = fmt.Errorf("running the command: %w", err), time.Now().After(end)
	}
	return
}

// fields parses KEY=VALUE lines.
func fields(out string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}
