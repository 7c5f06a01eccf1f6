package daemon_test

// Tests of the Systemd mounter against fakeSystemd, a FAKE systemd manager: systemd is not
// PID 1 on the test machines, so it cannot start units. The fake owns org.freedesktop.systemd1
// on a private system-like bus (with systemd's own bus policy file) and answers the calls
// go-systemd makes for the mounter as systemd does, running the ExecStart= line of the real
// systemd/nostrfs@.service. What it does not do is everything else systemd does for a
// service: no cgroup (a process group stands in for it), no sandboxing, capabilities,
// UMask or device policy (`make test-units` checks those settings offline), no journal (a
// file stands in for it).
//
// The fake is Go, in this file, rather than Python next to pam/fake_homed.py: it runs in the
// test process on godbus (already required), so a test reads the fake's state directly (the
// PID it started, the command line, the jobs and their results) without a side channel, its
// bounds are Go durations the test sets, and no second interpreter's start-up or exit has to
// be synchronised with the test.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

const (
	sdBusName      = "org.freedesktop.systemd1"
	sdPath         = dbus.ObjectPath("/org/freedesktop/systemd1")
	sdManager      = "org.freedesktop.systemd1.Manager"
	sdUnitIface    = "org.freedesktop.systemd1.Unit"
	sdServiceIface = "org.freedesktop.systemd1.Service"
	sdUnitPrefix   = "/org/freedesktop/systemd1/unit"
	// systemd's bus policy (Debian package systemd): root owns the name and may call
	// everything; other users only what is read-only.
	systemdPolicy = "/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf"
	// ExecStart= of nostrfs@.service names these; the fake runs the test's instead.
	unitNostrfs = "/usr/bin/nostrfs"
)

// fakeSystemdOpts configure a fakeSystemd.
type fakeSystemdOpts struct {
	Nostrfs string // the binary run for /usr/bin/nostrfs
	Config  string // the file passed for config.DefaultPath
	// StartBound and StopBound stand in for TimeoutStartSec= and TimeoutStopSec=; zero
	// means the unit's (systemd's default, 90s, if it sets none).
	StartBound, StopBound time.Duration
	// Env is added to the service's environment. systemd passes no DBUS_SYSTEM_BUS_ADDRESS
	// (nostrfs finds the system bus at its default path); here the system bus is the test's.
	Env []string
}

// fakeSystemd is the FAKE systemd manager (see the top of this file). It implements, on
// /org/freedesktop/systemd1 (org.freedesktop.systemd1.Manager): StartUnit, StopUnit,
// KillUnit, GetUnit, LoadUnit, Subscribe, Unsubscribe, and the signals JobNew and
// JobRemoved; on every /org/freedesktop/systemd1/unit/NAME: org.freedesktop.DBus.Properties
// Get and GetAll of org.freedesktop.systemd1.Unit and org.freedesktop.systemd1.Service.
//
// Like systemd it loads units on demand (a unit object exists for any name; only
// nostrfs@INSTANCE.service is found, every other name is LoadState "not-found"), runs the
// service's ExecStart= with %I/%i/%n/%N/%p/%% expanded, in its own process group, with a
// clean environment, NOTIFY_SOCKET and the working directory /, accepts sd_notify datagrams
// from the main process only (NotifyAccess=main), and drives the service states:
//
//   - start: activating/start; READY=1 (or the exec, if not Type=notify): active/running and
//     the start job "done"; the process exits first: failed/failed (Result exit-code, signal,
//     or protocol for a clean exit before READY=1) and the start job "failed"; StartBound
//     passes first: Result timeout, SIGTERM, then as a stop, and the start job "failed"
//     (systemd's job result for a TimeoutStartSec= expiry: the job itself did not time out).
//   - stop: a pending start job ends "canceled"; deactivating/stop-sigterm and SIGTERM to the
//     process group; after StopBound stop-sigkill and SIGKILL; when the process is gone,
//     inactive/dead (clean exit or SIGTERM) or failed/failed, and the stop job "done". A unit
//     that runs nothing gets a stop job that is "done" at once, its state unchanged.
//   - a start of an active unit is a job "done" at once; a start or stop while the same kind
//     of job is pending returns that job (systemd merges them).
//
// JobRemoved is broadcast for every job. systemd sends job signals to subscribers and to the
// client that queued the job (the job's bus track); go-systemd's JobRemoved listener is a
// second connection of the same process with a match rule, so it receives the broadcast
// either way.
type fakeSystemd struct {
	t        *testing.T
	conn     *dbus.Conn
	o        fakeSystemdOpts
	unitFile string
	svc      unitService
	dir      string
	wg       sync.WaitGroup // the goroutines that may log or emit: waited for at the end

	mu          sync.Mutex
	units       map[string]*fakeUnit
	nextJob     uint32
	nextRun     int
	calls       []string
	subscribers map[string]bool
}

// unitService is what the fake reads from the unit file.
type unitService struct {
	description  string // [Unit] Description=, unexpanded
	typ          string
	execStart    string
	notifyAccess string
	startTimeout time.Duration // 0: none
	stopTimeout  time.Duration
}

type fakeUnit struct {
	name, instance string
	loaded         bool
	active, sub    string
	result         string
	mainPID        uint32
	execMainPID    uint32
	execCode       int32 // CLD_EXITED (1) or CLD_KILLED (2)
	execStatus     int32
	statusText     string
	argv, env      []string
	journal        string // the file the service's stdout and stderr go to
	jobs           []string
	startJob       *fakeJob
	stopJob        *fakeJob
	run            *fakeRun
}

type fakeJob struct {
	id   uint32
	path dbus.ObjectPath
	typ  string
}

// fakeRun is one run of a unit's main process.
type fakeRun struct {
	cmd       *exec.Cmd
	sock      *net.UnixConn
	ready     chan struct{}
	readyOnce sync.Once
	exited    chan struct{}
	stopReq   chan struct{}
}

// startFakeSystemd owns org.freedesktop.systemd1 on bus and serves it until the test ends
// (then kills what it started).
func startFakeSystemd(t *testing.T, bus *dbustest.Bus, o fakeSystemdOpts) *fakeSystemd {
	t.Helper()
	root, err := modroot.Find()
	must(t, err)
	unitFile := filepath.Join(root, "systemd", "nostrfs@.service")
	svc, err := readUnitFile(unitFile)
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	f := &fakeSystemd{t: t, o: o, unitFile: unitFile, svc: svc, dir: t.TempDir(),
		units: map[string]*fakeUnit{}, nextJob: 100, subscribers: map[string]bool{}}
	if o.StartBound > 0 {
		f.svc.startTimeout = o.StartBound
	}
	if o.StopBound > 0 {
		f.svc.stopTimeout = o.StopBound
	}
	conn, err := dbus.Connect(bus.Address)
	must(t, err)
	f.conn = conn
	must(t, conn.Export(fakeManager{f}, sdPath, sdManager))
	must(t, conn.ExportSubtree(fakeUnitObject{f}, sdUnitPrefix, "org.freedesktop.DBus.Properties"))
	reply, err := conn.RequestName(sdBusName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("fake systemd: owning %s: %v (reply %d)", sdBusName, err, reply)
	}
	t.Cleanup(f.close)
	return f
}

func (f *fakeSystemd) close() {
	f.mu.Lock()
	var runs []*fakeRun
	for _, u := range f.units {
		if u.run != nil {
			runs = append(runs, u.run)
		}
	}
	f.mu.Unlock()
	for _, r := range runs {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
	f.wg.Wait()
	f.conn.Close()
	if f.t.Failed() {
		f.mu.Lock()
		f.t.Logf("fake systemd: calls %q", f.calls)
		for _, u := range f.units {
			b, _ := os.ReadFile(u.journal)
			f.t.Logf("fake systemd: %s %s/%s result %s jobs %q journal:\n%s", u.name, u.active, u.sub, u.result, u.jobs, b)
		}
		f.mu.Unlock()
	}
}

// readUnitFile reads the [Unit] and [Service] settings the fake acts on.
func readUnitFile(file string) (unitService, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return unitService{}, err
	}
	svc := unitService{typ: "simple", startTimeout: 90 * time.Second, stopTimeout: 90 * time.Second}
	var execStart []string
	section := ""
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) { // continuation
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return svc, fmt.Errorf("not a setting: %q", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch section + "." + k {
		case "Unit.Description":
			svc.description = v
		case "Service.Type":
			svc.typ = v
		case "Service.NotifyAccess":
			svc.notifyAccess = v
		case "Service.ExecStart":
			if v == "" {
				execStart = nil
			} else {
				execStart = append(execStart, v)
			}
		case "Service.TimeoutSec", "Service.TimeoutStartSec", "Service.TimeoutStopSec":
			d, err := parseTimespan(v)
			if err != nil {
				return svc, fmt.Errorf("%s=%s: %v", k, v, err)
			}
			if k != "TimeoutStopSec" {
				svc.startTimeout = d
			}
			if k != "TimeoutStartSec" {
				svc.stopTimeout = d
			}
		}
	}
	if len(execStart) != 1 {
		return svc, fmt.Errorf("%d ExecStart= lines; a Type=%s service takes exactly one", len(execStart), svc.typ)
	}
	svc.execStart = execStart[0]
	if svc.typ != "notify" && svc.typ != "simple" && svc.typ != "exec" {
		return svc, fmt.Errorf("Type=%s: the fake runs notify, simple and exec services only", svc.typ)
	}
	if svc.notifyAccess == "" && svc.typ == "notify" {
		svc.notifyAccess = "main"
	}
	if svc.notifyAccess != "" && svc.notifyAccess != "main" {
		return svc, fmt.Errorf("NotifyAccess=%s: the fake implements main only", svc.notifyAccess)
	}
	return svc, nil
}

// parseTimespan parses the systemd time spans a unit may use here ("60s", "90", "1min 30s",
// "infinity": 0).
func parseTimespan(v string) (time.Duration, error) {
	if v == "infinity" {
		return 0, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	s := strings.NewReplacer(" ", "", "min", "m", "sec", "s", "hour", "h").Replace(v)
	return time.ParseDuration(s)
}

// splitExec splits a command line as systemd does for the quoting used in units: words
// separated by blanks, "double" and 'single' quotes, C escapes. Environment variables
// ($VAR) and the exec prefixes (-, @, :, +, !) are not implemented: such a line is an error,
// so a unit that starts to use them fails here rather than run differently.
func splitExec(line string) ([]string, error) {
	if strings.Contains(line, "$") {
		return nil, errors.New("environment variable substitution ($) is not implemented by the fake")
	}
	var words []string
	var w strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			switch line[i] {
			case 'n':
				w.WriteByte('\n')
			case 't':
				w.WriteByte('\t')
			default:
				w.WriteByte(line[i])
			}
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unbalanced quotes")
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command line")
	}
	if strings.ContainsAny(words[0][:1], "-@:+!") {
		return nil, fmt.Errorf("exec prefix %q is not implemented by the fake", words[0][:1])
	}
	return words, nil
}

// expandSpecifiers expands the unit specifiers the fake knows; any other is an error.
func expandSpecifiers(s, unitName, instance string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("a lone % at the end")
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case 'i':
			b.WriteString(instance)
		case 'I':
			b.WriteString(unitNameUnescape(instance))
		case 'n':
			b.WriteString(unitName)
		case 'N':
			b.WriteString(strings.TrimSuffix(unitName, ".service"))
		case 'p':
			b.WriteString(strings.SplitN(unitName, "@", 2)[0])
		default:
			return "", fmt.Errorf("specifier %%%c is not implemented by the fake", s[i])
		}
	}
	return b.String(), nil
}

// unitNameUnescape is systemd's unit_name_unescape (the %I specifier): "-" is "/", \xHH a byte.
func unitNameUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '-':
			b.WriteByte('/')
		case s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x':
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// busLabelUnescape is systemd's bus_label_unescape: the last element of a unit's object path
// back to the unit name ("_" + two hex digits is a byte; "_" alone is the empty name).
func busLabelUnescape(s string) string {
	if s == "_" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (f *fakeSystemd) record(call string, args ...any) {
	words := []string{call}
	for _, a := range args {
		words = append(words, fmt.Sprint(a))
	}
	f.mu.Lock()
	f.calls = append(f.calls, strings.Join(words, " "))
	f.mu.Unlock()
}

// unit returns the unit called name, loading it if it is new. f.mu must be held.
func (f *fakeSystemd) unit(name string) *fakeUnit {
	if u, ok := f.units[name]; ok {
		return u
	}
	u := &fakeUnit{name: name, active: "inactive", sub: "dead", result: "success"}
	if prefix, rest, ok := strings.Cut(name, "@"); ok && prefix == "nostrfs" && strings.HasSuffix(rest, ".service") {
		u.instance = strings.TrimSuffix(rest, ".service")
		u.loaded = u.instance != ""
	}
	f.units[name] = u
	return u
}

func (f *fakeSystemd) newJob(typ string) *fakeJob {
	f.nextJob++
	return &fakeJob{id: f.nextJob, typ: typ, path: dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", f.nextJob))}
}

func (f *fakeSystemd) emit(member string, args ...any) {
	if err := f.conn.Emit(sdPath, sdManager+"."+member, args...); err != nil {
		f.t.Logf("fake systemd: emitting %s: %v", member, err)
	}
}

// finish ends job j of u with result and sends JobRemoved.
func (f *fakeSystemd) finish(u *fakeUnit, j *fakeJob, result string) {
	f.mu.Lock()
	u.jobs = append(u.jobs, j.typ+" "+result)
	f.mu.Unlock()
	f.emit("JobRemoved", j.id, j.path, u.name, result)
}

// goFinish finishes j in a goroutine of its own, not in the method call that queued it
// (systemd runs jobs from its event loop, usually after the reply).
func (f *fakeSystemd) goFinish(u *fakeUnit, j *fakeJob, result string) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.finish(u, j, result)
	}()
}

var knownJobModes = []string{"replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements", "flush", "triggering", "restart-dependencies"}

// fakeManager is org.freedesktop.systemd1.Manager.
type fakeManager struct{ f *fakeSystemd }

func noSuchUnit(format string, args ...any) *dbus.Error {
	return dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{fmt.Sprintf(format, args...)})
}

func invalidArgs(format string, args ...any) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf(format, args...)})
}

func (m fakeManager) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	f := m.f
	f.record("StartUnit", name, mode)
	if !slices.Contains(knownJobModes, mode) {
		return "", invalidArgs("Job mode %s invalid", mode)
	}
	f.mu.Lock()
	u := f.unit(name)
	switch {
	case !u.loaded:
		f.mu.Unlock()
		return "", noSuchUnit("Unit %s not found.", name)
	case u.startJob != nil:
		p := u.startJob.path
		f.mu.Unlock()
		return p, nil
	case u.stopJob != nil:
		f.mu.Unlock()
		return "", dbus.NewError("org.freedesktop.systemd1.Fake.NotImplemented", []any{"the fake does not replace a stop job by a start job"})
	}
	j := f.newJob("start")
	if u.run != nil { // active already: nothing to do
		f.mu.Unlock()
		f.emit("JobNew", j.id, j.path, name)
		f.goFinish(u, j, "done")
		return j.path, nil
	}
	u.startJob = j
	u.active, u.sub, u.result = "activating", "start", "success"
	u.execCode, u.execStatus, u.statusText = 0, 0, ""
	err := f.spawn(u)
	f.mu.Unlock()
	f.emit("JobNew", j.id, j.path, name)
	if err != nil {
		f.t.Logf("fake systemd: %s: %v", name, err)
		f.mu.Lock()
		u.startJob = nil
		u.active, u.sub, u.result = "failed", "failed", "resources"
		f.mu.Unlock()
		f.goFinish(u, j, "failed")
	}
	return j.path, nil
}

// spawn starts u's ExecStart=. f.mu is held.
func (f *fakeSystemd) spawn(u *fakeUnit) error {
	words, err := splitExec(f.svc.execStart)
	if err != nil {
		return err
	}
	for i, w := range words {
		if words[i], err = expandSpecifiers(w, u.name, u.instance); err != nil {
			return err
		}
	}
	if words[0] != unitNostrfs {
		return fmt.Errorf("ExecStart= runs %s; the fake only knows how to run %s", words[0], unitNostrfs)
	}
	words[0] = f.o.Nostrfs
	for i := 1; i < len(words); i++ {
		words[i] = strings.ReplaceAll(words[i], config.DefaultPath, f.o.Config)
	}
	f.nextRun++
	sockPath := filepath.Join(f.dir, fmt.Sprintf("notify-%d", f.nextRun))
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		return err
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		sock.Close()
		return err
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if serr != nil {
		sock.Close()
		return serr
	}
	u.journal = filepath.Join(f.dir, fmt.Sprintf("journal-%d", f.nextRun))
	journal, err := os.Create(u.journal)
	if err != nil {
		sock.Close()
		return err
	}
	defer journal.Close()
	id := make([]byte, 16)
	rand.Read(id)
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"NOTIFY_SOCKET=" + sockPath, "INVOCATION_ID=" + hex.EncodeToString(id)}, f.o.Env...)
	cmd.Stdout, cmd.Stderr = journal, journal
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the unit's cgroup
	if err := cmd.Start(); err != nil {
		sock.Close()
		// systemd: the exec fails in the forked child, which exits 203 (EXIT_EXEC).
		u.execCode, u.execStatus = 1, 203
		return err
	}
	u.argv, u.env = words, cmd.Env
	u.mainPID = uint32(cmd.Process.Pid)
	u.execMainPID = u.mainPID
	r := &fakeRun{cmd: cmd, sock: sock, ready: make(chan struct{}), exited: make(chan struct{}), stopReq: make(chan struct{}, 1)}
	u.run = r
	go func() {
		cmd.Wait()
		close(r.exited)
	}()
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		f.readNotify(u, r)
	}()
	go func() {
		defer f.wg.Done()
		f.supervise(u, r)
	}()
	return nil
}

// readNotify reads sd_notify datagrams of run r (NotifyAccess=main).
func (f *fakeSystemd) readNotify(u *fakeUnit, r *fakeRun) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := r.sock.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		pid := -1
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					pid = int(cred.Pid)
				}
			}
		}
		if pid != r.cmd.Process.Pid {
			f.t.Logf("fake systemd: %s: notification from pid %d refused (NotifyAccess=main, main pid %d)", u.name, pid, r.cmd.Process.Pid)
			continue
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "READY":
				if v == "1" {
					r.readyOnce.Do(func() { close(r.ready) })
				}
			case "STATUS":
				f.mu.Lock()
				u.statusText = v
				f.mu.Unlock()
			}
		}
	}
}

func timerChan(d time.Duration) <-chan time.Time {
	if d <= 0 {
		return nil
	}
	return time.After(d)
}

// supervise drives u's states for run r until its main process is gone.
func (f *fakeSystemd) supervise(u *fakeUnit, r *fakeRun) {
	ready := r.ready
	if f.svc.typ != "notify" {
		c := make(chan struct{})
		close(c)
		ready = c
	}
	startTimer := timerChan(f.svc.startTimeout)
	var stopTimer <-chan time.Time
	stopping := false
	pid := r.cmd.Process.Pid
	term := func() {
		stopping = true
		syscall.Kill(-pid, syscall.SIGTERM)
		stopTimer = timerChan(f.svc.stopTimeout)
	}
	for {
		select {
		case <-ready:
			ready, startTimer = nil, nil
			f.mu.Lock()
			u.active, u.sub = "active", "running"
			j := u.startJob
			u.startJob = nil
			f.mu.Unlock()
			if j != nil {
				f.finish(u, j, "done")
			}
		case <-startTimer:
			ready, startTimer = nil, nil
			f.mu.Lock()
			u.result = "timeout"
			u.active, u.sub = "deactivating", "stop-sigterm"
			f.mu.Unlock()
			term()
		case <-r.stopReq:
			ready, startTimer = nil, nil
			f.mu.Lock()
			j := u.startJob
			u.startJob = nil
			u.active, u.sub = "deactivating", "stop-sigterm"
			f.mu.Unlock()
			if j != nil {
				f.finish(u, j, "canceled")
			}
			if !stopping {
				term()
			}
		case <-stopTimer:
			stopTimer = nil
			f.mu.Lock()
			if u.result == "success" {
				u.result = "timeout"
			}
			u.sub = "stop-sigkill"
			f.mu.Unlock()
			syscall.Kill(-pid, syscall.SIGKILL)
		case <-r.exited:
			ws := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
			clean := ws.Exited() && ws.ExitStatus() == 0 ||
				ws.Signaled() && (ws.Signal() == syscall.SIGHUP || ws.Signal() == syscall.SIGINT || ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGPIPE)
			f.mu.Lock()
			if ws.Signaled() {
				u.execCode, u.execStatus = 2, int32(ws.Signal())
			} else {
				u.execCode, u.execStatus = 1, int32(ws.ExitStatus())
			}
			if u.result == "success" {
				switch {
				case !clean && ws.Signaled():
					u.result = "signal"
				case !clean:
					u.result = "exit-code"
				case u.startJob != nil && !stopping && f.svc.typ == "notify":
					u.result = "protocol" // exited before READY=1
				}
			}
			if u.result == "success" {
				u.active, u.sub = "inactive", "dead"
			} else {
				u.active, u.sub = "failed", "failed"
			}
			u.mainPID = 0
			u.run = nil
			sj, pj := u.startJob, u.stopJob
			u.startJob, u.stopJob = nil, nil
			failed := u.active == "failed"
			f.mu.Unlock()
			r.sock.Close()
			if sj != nil {
				res := "done"
				if failed {
					res = "failed"
				}
				f.finish(u, sj, res)
			}
			if pj != nil {
				f.finish(u, pj, "done")
			}
			return
		}
	}
}

func (m fakeManager) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	f := m.f
	f.record("StopUnit", name, mode)
	if !slices.Contains(knownJobModes, mode) {
		return "", invalidArgs("Job mode %s invalid", mode)
	}
	f.mu.Lock()
	u := f.unit(name)
	if !u.loaded {
		f.mu.Unlock()
		return "", noSuchUnit("Unit %s not loaded.", name)
	}
	if u.stopJob != nil {
		p := u.stopJob.path
		f.mu.Unlock()
		return p, nil
	}
	j := f.newJob("stop")
	r := u.run
	if r != nil {
		u.stopJob = j
		r.stopReq <- struct{}{}
	}
	f.mu.Unlock()
	f.emit("JobNew", j.id, j.path, name)
	if r == nil {
		f.goFinish(u, j, "done")
	}
	return j.path, nil
}

func (m fakeManager) KillUnit(name, who string, signal int32) *dbus.Error {
	f := m.f
	f.record("KillUnit", name, who, signal)
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.unit(name)
	if !u.loaded {
		return noSuchUnit("Unit %s not loaded.", name)
	}
	if u.run == nil {
		return dbus.NewError("org.freedesktop.systemd1.NoSuchProcess", []any{"No matching processes to kill"})
	}
	pid := u.run.cmd.Process.Pid
	switch who {
	case "all", "control-group", "":
		syscall.Kill(-pid, syscall.Signal(signal))
	case "main":
		syscall.Kill(pid, syscall.Signal(signal))
	default:
		return invalidArgs("Invalid who argument %s", who)
	}
	return nil
}

func (m fakeManager) GetUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	f := m.f
	f.record("GetUnit", name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.units[name]; !ok || !u.loaded {
		return "", noSuchUnit("Unit %s not loaded.", name)
	}
	return unitObjectPath(name), nil
}

func (m fakeManager) LoadUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	f := m.f
	f.record("LoadUnit", name)
	f.mu.Lock()
	f.unit(name)
	f.mu.Unlock()
	return unitObjectPath(name), nil
}

func (m fakeManager) Subscribe(sender dbus.Sender) *dbus.Error {
	m.f.record("Subscribe")
	m.f.mu.Lock()
	m.f.subscribers[string(sender)] = true
	m.f.mu.Unlock()
	return nil
}

func (m fakeManager) Unsubscribe(sender dbus.Sender) *dbus.Error {
	m.f.record("Unsubscribe")
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	if !m.f.subscribers[string(sender)] {
		return dbus.NewError("org.freedesktop.systemd1.NotSubscribed", []any{"Client is not subscribed."})
	}
	delete(m.f.subscribers, string(sender))
	return nil
}

// unitObjectPath is systemd's unit_dbus_path (bus_label_escape of the name).
func unitObjectPath(name string) dbus.ObjectPath {
	if name == "" {
		return sdUnitPrefix + "/_"
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return dbus.ObjectPath(sdUnitPrefix + "/" + b.String())
}

// fakeUnitObject is org.freedesktop.DBus.Properties of every unit object.
type fakeUnitObject struct{ f *fakeSystemd }

func (o fakeUnitObject) props(msg dbus.Message, iface string) (map[string]dbus.Variant, *dbus.Error) {
	f := o.f
	p, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	if path.Dir(string(p)) != sdUnitPrefix {
		return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownObject", []any{"Unknown object '" + string(p) + "'."})
	}
	name := busLabelUnescape(path.Base(string(p)))
	f.record("GetAll", name, iface)
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.unit(name) // systemd loads a unit when its object is first asked for
	unitProps := map[string]dbus.Variant{
		"Id":          dbus.MakeVariant(u.name),
		"Names":       dbus.MakeVariant([]string{u.name}),
		"LoadState":   dbus.MakeVariant(map[bool]string{true: "loaded", false: "not-found"}[u.loaded]),
		"ActiveState": dbus.MakeVariant(u.active),
		"SubState":    dbus.MakeVariant(u.sub),
	}
	if u.loaded {
		desc, _ := expandSpecifiers(f.svc.description, u.name, u.instance)
		unitProps["Description"] = dbus.MakeVariant(desc)
		unitProps["FragmentPath"] = dbus.MakeVariant(f.unitFile)
	} else {
		unitProps["Description"] = dbus.MakeVariant(u.name)
		unitProps["FragmentPath"] = dbus.MakeVariant("")
	}
	serviceProps := map[string]dbus.Variant{
		"Type":           dbus.MakeVariant(f.svc.typ),
		"NotifyAccess":   dbus.MakeVariant(map[bool]string{true: f.svc.notifyAccess, false: "none"}[f.svc.notifyAccess != ""]),
		"Result":         dbus.MakeVariant(u.result),
		"MainPID":        dbus.MakeVariant(u.mainPID),
		"ExecMainPID":    dbus.MakeVariant(u.execMainPID),
		"ExecMainCode":   dbus.MakeVariant(u.execCode),
		"ExecMainStatus": dbus.MakeVariant(u.execStatus),
		"StatusText":     dbus.MakeVariant(u.statusText),
	}
	switch iface {
	case sdUnitIface:
		return unitProps, nil
	case sdServiceIface:
		return serviceProps, nil
	case "":
		all := map[string]dbus.Variant{}
		for k, v := range unitProps {
			all[k] = v
		}
		for k, v := range serviceProps {
			all[k] = v
		}
		return all, nil
	}
	return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"Unknown interface " + iface + "."})
}

func (o fakeUnitObject) GetAll(msg dbus.Message, iface string) (map[string]dbus.Variant, *dbus.Error) {
	return o.props(msg, iface)
}

func (o fakeUnitObject) Get(msg dbus.Message, iface, prop string) (dbus.Variant, *dbus.Error) {
	all, derr := o.props(msg, iface)
	if derr != nil {
		return dbus.Variant{}, derr
	}
	v, ok := all[prop]
	if !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"Unknown property " + prop + "."})
	}
	return v, nil
}

// Accessors for the tests.

type fakeUnitState struct {
	State, Result string // "active/running", "success"
	MainPID       int
	ExecMainPID   int
	Argv, Env     []string
	Jobs          []string // "start done", "stop done", ...
	Journal       string
}

func (f *fakeSystemd) state(name string) fakeUnitState {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.units[name]
	if !ok {
		return fakeUnitState{State: "unknown"}
	}
	var journal []byte
	if u.journal != "" {
		journal, _ = os.ReadFile(u.journal)
	}
	return fakeUnitState{State: u.active + "/" + u.sub, Result: u.result, MainPID: int(u.mainPID), ExecMainPID: int(u.execMainPID),
		Argv: slices.Clone(u.argv), Env: slices.Clone(u.env), Jobs: slices.Clone(u.jobs), Journal: string(journal)}
}

func (f *fakeSystemd) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ---------------------------------------------------------------------------------------
// The tests.

var (
	unitFakeOnce sync.Once
	unitFakeBin  string
	unitFakeErr  error
)

// unitFake builds testdata/fake-nostrfs-unit (once per test process) next to binaries'.
func unitFake(t *testing.T) string {
	t.Helper()
	binaries(t) // root, and the temporary bin directory
	unitFakeOnce.Do(func() {
		root, err := modroot.Find()
		if err != nil {
			unitFakeErr = err
			return
		}
		unitFakeBin = filepath.Join(binDir, "fake-nostrfs-unit")
		cmd := exec.Command("go", "build", "-o", unitFakeBin, "./internal/daemon/testdata/fake-nostrfs-unit")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			unitFakeErr = fmt.Errorf("go build fake-nostrfs-unit: %v\n%s", err, out)
		}
	})
	if unitFakeErr != nil {
		t.Fatal(unitFakeErr)
	}
	return unitFakeBin
}

// systemdBus starts a private system-like bus with systemd's bus policy and points
// DBUS_SYSTEM_BUS_ADDRESS (which go-systemd's NewSystemConnectionContext dials) at it.
func systemdBus(t *testing.T, extraPolicies ...string) *dbustest.Bus {
	t.Helper()
	if _, err := os.Stat(systemdPolicy); err != nil {
		t.Fatalf("systemd's bus policy: %v (Debian package systemd)", err)
	}
	bus := dbustest.Start(t, append([]string{systemdPolicy}, extraPolicies...)...)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	return bus
}

// mounterEnv is the Systemd mounter against the fake systemd running fake-nostrfs-unit.
type mounterEnv struct {
	fake   *fakeSystemd
	bin    string
	config string
	home   string
}

func newMounterEnv(t *testing.T, o fakeSystemdOpts) *mounterEnv {
	t.Helper()
	bin := unitFake(t)
	bus := systemdBus(t)
	dir := t.TempDir()
	e := &mounterEnv{bin: bin, config: filepath.Join(dir, "config.toml"), home: filepath.Join(dir, "home")}
	must(t, os.WriteFile(e.config, []byte("# test\n"), 0o644))
	must(t, os.Mkdir(e.home, 0o700))
	o.Nostrfs, o.Config = bin, e.config
	e.fake = startFakeSystemd(t, bus, o)
	return e
}

// mount calls Systemd.Mount as the daemon does (session.go): the readiness bound's context
// is cancelled as soon as Mount returns.
func (e *mounterEnv) mount(user string, bound time.Duration) (daemon.Mount, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	return (&daemon.Systemd{}).Mount(ctx, daemon.MountRequest{User: user, MountPoint: e.home, ConfigPath: e.config})
}

func stopBounded(m daemon.Mount, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	return m.Stop(ctx)
}

// TestFakeSystemd checks answers of the fake that the mounter's tests do not reach, with
// go-systemd and godbus as clients: a unit that does not exist (LoadState not-found,
// NoSuchUnit on start), a bad job mode, GetUnit and LoadUnit, Subscribe, and a start of a unit
// that is already active (a job "done" at once, the same process).
func TestFakeSystemd(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{})
	ctx := context.Background()
	c, err := sddbus.NewSystemConnectionContext(ctx)
	must(t, err)
	defer c.Close()
	must(t, c.Subscribe())
	p, err := c.GetUnitPropertiesContext(ctx, "nosuch.service")
	if err != nil || p["LoadState"] != "not-found" || p["ActiveState"] != "inactive" {
		t.Fatalf("properties of a unit that does not exist: %v %v", p, err)
	}
	var de dbus.Error
	if _, err := c.StartUnitContext(ctx, "nosuch.service", "replace", nil); !errors.As(err, &de) || de.Name != "org.freedesktop.systemd1.NoSuchUnit" {
		t.Fatalf("StartUnit of a unit that does not exist: %v", err)
	}
	unit := daemon.UnitName("alice")
	if _, err := c.StartUnitContext(ctx, unit, "bogus", nil); !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.InvalidArgs" {
		t.Fatalf("StartUnit with a bad mode: %v", err)
	}

	conn, err := dbus.Connect(os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"))
	must(t, err)
	defer conn.Close()
	mgr := conn.Object(sdBusName, sdPath)
	var path dbus.ObjectPath
	if err := mgr.Call(sdManager+".GetUnit", 0, "nostrfs@bob.service").Store(&path); !errors.As(err, &de) || de.Name != "org.freedesktop.systemd1.NoSuchUnit" {
		t.Fatalf("GetUnit of a unit not loaded: %v", err)
	}
	must(t, mgr.Call(sdManager+".LoadUnit", 0, "nostrfs@bob.service").Store(&path))
	if path != "/org/freedesktop/systemd1/unit/nostrfs_40bob_2eservice" {
		t.Fatalf("LoadUnit: %s", path)
	}
	if err := mgr.Call(sdManager+".GetUnit", 0, "nostrfs@bob.service").Store(&path); err != nil || path != "/org/freedesktop/systemd1/unit/nostrfs_40bob_2eservice" {
		t.Fatalf("GetUnit of a loaded unit: %s %v", path, err)
	}

	for i := range 2 {
		ch := make(chan string, 1)
		if _, err := c.StartUnitContext(ctx, unit, "replace", ch); err != nil {
			t.Fatal(err)
		}
		if res := <-ch; res != "done" {
			t.Fatalf("start %d: job %s", i, res)
		}
	}
	st := e.fake.state(unit)
	if st.State != "active/running" || !slices.Equal(st.Jobs, []string{"start done", "start done"}) || st.MainPID != st.ExecMainPID {
		t.Fatalf("after two starts: %+v", st)
	}
	ch := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, unit, "replace", ch); err != nil || <-ch != "done" {
		t.Fatalf("stop: %v", err)
	}
	if st := e.fake.state(unit); st.State != "inactive/dead" || pidAlive(st.ExecMainPID) {
		t.Fatalf("after the stop: %+v", st)
	}
}

// TestSystemdMounter (1): the mounter starts nostrfs@alice.service through the fake systemd,
// which runs the unit's ExecStart= (--user alice --config FILE, no --mount) with a
// NOTIFY_SOCKET; Mount returns at READY=1 with a Mount whose Info names the unit and shows
// nostrfs's STATUS=; that Mount still works after Mount's context has ended; Stop stops the
// unit and returns once nostrfs is gone.
func TestSystemdMounter(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{})
	const unit = "nostrfs@alice.service"
	m, err := e.mount("alice", 10*time.Second)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	st := e.fake.state(unit)
	if st.State != "active/running" || st.MainPID == 0 || !pidAlive(st.MainPID) {
		t.Fatalf("after Mount the unit is %s, main pid %d (alive %v)", st.State, st.MainPID, pidAlive(st.MainPID))
	}
	if want := []string{e.bin, "--user", "alice", "--config", e.config}; !slices.Equal(st.Argv, want) {
		t.Fatalf("the unit ran %q, want %q", st.Argv, want)
	}
	if !slices.ContainsFunc(st.Env, func(s string) bool { return strings.HasPrefix(s, "NOTIFY_SOCKET=/") }) {
		t.Fatalf("no NOTIFY_SOCKET in the service's environment: %q", st.Env)
	}
	pid := st.MainPID

	mi := m.Info()
	if mi.Unit != unit || mi.State != "ready" || mi.PID != 0 {
		t.Fatalf("Info: %+v", mi)
	}
	if want := "fake-nostrfs-unit serving alice (config " + e.config + ")"; mi.Message != want {
		t.Fatalf("Info message %q, want %q", mi.Message, want)
	}

	if err := stopBounded(m, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if pidAlive(pid) {
		t.Fatalf("nostrfs (pid %d) still runs after Stop", pid)
	}
	st = e.fake.state(unit)
	if st.State != "inactive/dead" || st.Result != "success" || !slices.Equal(st.Jobs, []string{"start done", "stop done"}) {
		t.Fatalf("after Stop the unit is %s (result %s), jobs %q", st.State, st.Result, st.Jobs)
	}
	if mi := m.Info(); mi.State != "stopped" || mi.Unit != unit {
		t.Fatalf("Info after Stop: %+v", mi)
	}
	// The calls go-systemd made for all this (GetAll from Info).
	calls := e.fake.callLog()
	for _, c := range []string{"StartUnit " + unit + " replace", "GetAll " + unit + " " + "org.freedesktop.systemd1.Unit",
		"GetAll " + unit + " org.freedesktop.systemd1.Service", "StopUnit " + unit + " replace"} {
		if !slices.Contains(calls, c) {
			t.Errorf("the fake systemd saw no %q; calls %q", c, calls)
		}
	}
	t.Logf("calls to the fake systemd: %q", calls)
}

// TestSystemdMountExitsBeforeReady (2): nostrfs exits 4 before READY=1: the start job fails
// and Mount's error names the unit, its state and result and the exit status (from
// describeUnit's property reads), and is not ErrNotReady.
func TestSystemdMountExitsBeforeReady(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{})
	unit := `nostrfs@crash\x2dalice.service`
	m, err := e.mount("crash-alice", 10*time.Second)
	if err == nil {
		m.Stop(context.Background())
		t.Fatal("Mount of a nostrfs that exits before READY=1 succeeded")
	}
	if errors.Is(err, daemon.ErrNotReady) {
		t.Fatalf("a failed start is not a timeout: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{unit, "start job failed", "failed/failed", "result exit-code", "exit status 4", "journalctl -u " + unit} {
		if !strings.Contains(msg, want) {
			t.Errorf("Mount's error %q does not say %q", msg, want)
		}
	}
	st := e.fake.state(unit)
	if st.ExecMainPID == 0 || pidAlive(st.ExecMainPID) || !strings.Contains(st.Journal, "crashing on purpose") {
		t.Fatalf("nostrfs pid %d (alive %v), journal %q", st.ExecMainPID, pidAlive(st.ExecMainPID), st.Journal)
	}
	if !slices.Equal(st.Jobs, []string{"start failed"}) {
		t.Fatalf("jobs %q", st.Jobs)
	}
}

// TestSystemdMountNeverReady (3): nostrfs never sends READY=1: when Mount's context ends,
// the error wraps ErrNotReady and names the unit, and the unit has been stopped (the start
// job cancelled, nostrfs gone) by the time Mount returns.
func TestSystemdMountNeverReady(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{})
	unit := `nostrfs@hang\x2dalice.service`
	start := time.Now()
	m, err := e.mount("hang-alice", time.Second)
	if err == nil {
		m.Stop(context.Background())
		t.Fatal("Mount of a nostrfs that never gets ready succeeded")
	}
	if !errors.Is(err, daemon.ErrNotReady) || !strings.Contains(err.Error(), unit) {
		t.Fatalf("Mount: %v (want ErrNotReady, naming %s)", err, unit)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("Mount took %s with a 1s bound", d)
	}
	st := e.fake.state(unit)
	if st.ExecMainPID == 0 || pidAlive(st.ExecMainPID) {
		t.Fatalf("nostrfs (pid %d) still runs after the abandoned start", st.ExecMainPID)
	}
	if st.State != "inactive/dead" || !slices.Equal(st.Jobs, []string{"start canceled", "stop done"}) {
		t.Fatalf("after the abandoned start the unit is %s, jobs %q", st.State, st.Jobs)
	}
}

// TestSystemdStartTimeout: systemd's own start bound (TimeoutStartSec=) passes before
// Mount's: systemd stops nostrfs, the start job fails, and Mount's error says "timeout".
func TestSystemdStartTimeout(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{StartBound: 500 * time.Millisecond})
	unit := `nostrfs@hang\x2dbob.service`
	m, err := e.mount("hang-bob", 10*time.Second)
	if err == nil {
		m.Stop(context.Background())
		t.Fatal("Mount succeeded")
	}
	if errors.Is(err, daemon.ErrNotReady) || !strings.Contains(err.Error(), "start job failed (failed/failed, result timeout") {
		t.Fatalf("Mount: %v", err)
	}
	if st := e.fake.state(unit); pidAlive(st.ExecMainPID) || !slices.Equal(st.Jobs, []string{"start failed"}) {
		t.Fatalf("pid %d alive %v, jobs %q", st.ExecMainPID, pidAlive(st.ExecMainPID), st.Jobs)
	}
}

// TestSystemdStartTimeoutKilled: systemd's start bound passes and nostrfs ignores SIGTERM
// too: systemd kills it after its stop bound, and Mount's error says it was killed by
// SIGKILL rather than giving the signal number as an exit status.
func TestSystemdStartTimeoutKilled(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{StartBound: 300 * time.Millisecond, StopBound: 300 * time.Millisecond})
	m, err := e.mount("stubborn-hang-bob", 10*time.Second)
	if err == nil {
		m.Stop(context.Background())
		t.Fatal("Mount succeeded")
	}
	if want := "start job failed (failed/failed, result timeout, killed by SIGKILL)"; !strings.Contains(err.Error(), want) {
		t.Fatalf("Mount: %v (want %q)", err, want)
	}
	if st := e.fake.state(`nostrfs@stubborn\x2dhang\x2dbob.service`); pidAlive(st.ExecMainPID) || !slices.Equal(st.Jobs, []string{"start failed"}) {
		t.Fatalf("pid %d alive %v, jobs %q", st.ExecMainPID, pidAlive(st.ExecMainPID), st.Jobs)
	}
}

// TestSystemdStopKills: a nostrfs that ignores SIGTERM is killed (KillUnit SIGKILL) when
// Stop's context ends; Stop returns once it is gone, says so, and detaches what it left
// mounted on the home (a tmpfs stands in for the dead FUSE mount).
func TestSystemdStopKills(t *testing.T) {
	e := newMounterEnv(t, fakeSystemdOpts{})
	unit := `nostrfs@stubborn\x2dalice.service`
	m, err := e.mount("stubborn-alice", 10*time.Second)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	pid := e.fake.state(unit).MainPID
	must(t, unix.Mount("tmpfs", e.home, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { unix.Unmount(e.home, unix.MNT_DETACH) })
	start := time.Now()
	err = stopBounded(m, time.Second)
	if err == nil || !strings.Contains(err.Error(), "killed") || !strings.Contains(err.Error(), unit) {
		t.Fatalf("Stop: %v (want: killed)", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("Stop took %s with a 1s bound", d)
	}
	if pidAlive(pid) {
		t.Fatalf("nostrfs (pid %d) survived Stop", pid)
	}
	if fsType(e.home) != "" {
		t.Fatalf("%s is still mounted (%s) after the kill", e.home, fsType(e.home))
	}
	st := e.fake.state(unit)
	if st.State != "failed/failed" || st.Result != "signal" || !slices.Contains(e.fake.callLog(), "KillUnit "+unit+" all 9") {
		t.Fatalf("unit %s result %s, calls %q", st.State, st.Result, e.fake.callLog())
	}
}

// TestUnitName (4): user names are escaped as systemd-escape --template does, so that %I in
// the unit gives nostrfs the user name back; checked against systemd-escape for every
// character a user name may have (userdb.ValidName: [a-z_][a-z0-9_-]*), and through the fake
// systemd for a name with "-": nostrfs gets --user a-b, and the unit's object path
// (PathBusEscape of the escaped name) finds the unit's properties.
func TestUnitName(t *testing.T) {
	for user, want := range map[string]string{
		"alice":     "nostrfs@alice.service",
		"a-b":       `nostrfs@a\x2db.service`,
		"_svc":      "nostrfs@_svc.service",
		"x-1_y-":    `nostrfs@x\x2d1_y\x2d.service`,
		"crash-a-b": `nostrfs@crash\x2da\x2db.service`,
	} {
		if got := daemon.UnitName(user); got != want {
			t.Errorf("UnitName(%q) = %q, want %q", user, got, want)
		}
	}
	if sdEscape, err := exec.LookPath("systemd-escape"); err == nil {
		const first, rest = "abcdefghijklmnopqrstuvwxyz_", "abcdefghijklmnopqrstuvwxyz0123456789_-"
		names := []string{"a", "_", "a-", "a--b", "z9", "_-_"}
		for range 200 {
			n := pick(first)
			for range pickInt(31) {
				n += pick(rest)
			}
			names = append(names, n)
		}
		out, err := exec.Command(sdEscape, append([]string{"--template=nostrfs@.service", "--"}, names...)...).Output()
		if err != nil {
			t.Fatalf("systemd-escape: %v", err)
		}
		got := strings.Fields(string(out))
		if len(got) != len(names) {
			t.Fatalf("systemd-escape gave %d names for %d", len(got), len(names))
		}
		for i, n := range names {
			if daemon.UnitName(n) != got[i] {
				t.Errorf("UnitName(%q) = %q, systemd-escape says %q", n, daemon.UnitName(n), got[i])
			}
		}
	} else {
		t.Logf("no systemd-escape: only the table is checked")
	}

	e := newMounterEnv(t, fakeSystemdOpts{})
	unit := `nostrfs@a\x2db.service`
	m, err := e.mount("a-b", 10*time.Second)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	defer stopBounded(m, 10*time.Second)
	if st := e.fake.state(unit); !slices.Equal(st.Argv, []string{e.bin, "--user", "a-b", "--config", e.config}) {
		t.Fatalf("the unit ran %q", st.Argv)
	}
	if mi := m.Info(); mi.Unit != unit || mi.State != "ready" || !strings.HasPrefix(mi.Message, "fake-nostrfs-unit serving a-b ") {
		t.Fatalf("Info: %+v", mi)
	}
	if !slices.Contains(e.fake.callLog(), "GetAll "+unit+" org.freedesktop.systemd1.Service") {
		t.Fatalf("no property read of %s by its object path: %q", unit, e.fake.callLog())
	}
}

func pickInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

func pick(s string) string {
	i := pickInt(len(s))
	return s[i : i+1]
}

// TestDaemonWithSystemd (5): the whole daemon with session.supervisor "systemd" and the
// Systemd mounter (Options.Mounter: daemon.New picks Systemd only where /run/systemd/system
// exists), the fake systemd running this build's real nostrfs through the unit's ExecStart=
// (no --mount: nostrfs mounts on the home from the user database). The first OpenSession
// mounts the home (a user name systemd escapes), GetStatus shows the unit, a write reaches
// the relay at the last CloseSession, which stops the unit and unmounts. A home that cannot
// be mounted (no secrets published) fails OpenSession with the unit's state, and leaves
// nothing behind.
func TestDaemonWithSystemd(t *testing.T) {
	nostrfs, _ := binaries(t)
	e, fake := newSystemdDaemonEnv(t, nostrfs)
	alice := newIdent(t, "ann-marie")
	const unit = `nostrfs@ann\x2dmarie.service`
	e.publish(alice, pubOpts{noManifest: true})
	e.enroll(alice)
	home := filepath.Join(e.home, "ann-marie")

	e.login(alice)
	e.mustCall("OpenSession", "ann-marie")
	if fsType(home) != "fuse.nostrfs" {
		t.Fatalf("%s is not a nostrfs mount after OpenSession (%q)", home, fsType(home))
	}
	st := e.status("ann-marie")
	if m := st.Session.Mount; m == nil || m.Unit != unit || m.State != "ready" || m.Message == "" {
		t.Fatalf("status of the open session: %+v mount %+v", st.Session, m)
	}
	t.Logf("mount status: %+v", *st.Session.Mount)
	us := fake.state(unit)
	if want := []string{nostrfs, "--user", "ann-marie", "--config", filepath.Join(e.base, "config.toml")}; !slices.Equal(us.Argv, want) {
		t.Fatalf("the unit ran %q, want %q", us.Argv, want)
	}
	pid := us.MainPID
	must(t, os.WriteFile(filepath.Join(home, "notes.txt"), []byte("written under systemd\n"), 0o644))

	e.mustCall("CloseSession", "ann-marie")
	if fsType(home) != "" {
		t.Fatalf("%s still mounted after the last CloseSession", home)
	}
	if pidAlive(pid) {
		t.Fatalf("nostrfs (pid %d) still runs after the last CloseSession", pid)
	}
	if us := fake.state(unit); us.State != "inactive/dead" || !slices.Equal(us.Jobs, []string{"start done", "stop done"}) {
		t.Fatalf("the unit after the last close: %s, jobs %q\n%s", us.State, us.Jobs, us.Journal)
	}
	res, err := relayio.FetchNewest(context.Background(), []string{e.stack.RelayURL()},
		events.Expect{Kind: events.KindManifest, Author: alice.pk, D: events.DTag("personal")}, 5*time.Second)
	if err != nil || res.Selection.Newest == nil {
		t.Fatalf("no manifest on the relay after the session: %v", err)
	}

	bob := newIdent(t, "bob")
	e.publish(bob, pubOpts{noManifest: true, noSecrets: true})
	ub := e.enroll(bob)
	e.login(bob)
	msg := e.callErr(homed.ErrMountFailed, "OpenSession", "bob")
	for _, want := range []string{"nostrfs@bob.service", "start job failed", "failed/failed", "result exit-code", "exit status 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("OpenSession of a home without secrets: %q does not say %q", msg, want)
		}
	}
	if us := fake.state("nostrfs@bob.service"); !strings.Contains(us.Journal, "no cached secrets") {
		t.Errorf("nostrfs's reason is not in the unit's journal: %q", us.Journal)
	}
	if _, err := os.Lstat(filepath.Join(e.rt, strconv.Itoa(int(ub.UID)), "secrets")); !os.IsNotExist(err) {
		t.Fatalf("secrets left behind after the failed mount: %v", err)
	}
	if st := e.status("bob"); st.Session.Open != 0 || st.Session.Mount != nil || st.Signer != "none" {
		t.Fatalf("status after the failed open: %+v signer %s", st.Session, st.Signer)
	}
}

// newSystemdDaemonEnv is newEnv (helpers_test.go) with the Systemd mounter and the fake
// systemd on the daemon's bus, running nostrfs for /usr/bin/nostrfs.
func newSystemdDaemonEnv(t *testing.T, nostrfs string) (*env, *fakeSystemd) {
	t.Helper()
	var fake *fakeSystemd
	e := newEnv(t, envOpts{
		bus:     func(t *testing.T) *dbustest.Bus { return systemdBus(t) },
		mounter: &daemon.Systemd{},
		mutate: func(c *config.Config) {
			c.Session.Supervisor = "systemd"
			c.Session.MountTimeout = config.Duration{Duration: 10 * time.Second}
			c.Session.FlushTimeout = config.Duration{Duration: 10 * time.Second}
		},
		beforeDaemon: func(e *env, configPath string) {
			fake = startFakeSystemd(t, e.bus, fakeSystemdOpts{Nostrfs: nostrfs, Config: configPath,
				Env: []string{"DBUS_SYSTEM_BUS_ADDRESS=" + e.bus.Address}})
		},
	})
	return e, fake
}
