package homed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	busfiles "github.com/nostr-homed/nostr-homed/dbus"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
)

// recorder is a test double of the daemon's Service: it records calls and answers with what
// the test sets. The bus, the policy and the caller checks under test are real.
type recorder struct {
	mu    sync.Mutex
	calls []string
	uids  map[string]uint32
	err   error
	// stages WarmCache reports before it returns ("stage:detail").
	stages []string
}

func (r *recorder) note(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
	return r.err
}

func (r *recorder) BeginLogin(ctx context.Context, user, service, rhost string) (LoginStart, error) {
	return LoginStart{LoginID: "id1", Method: "password", Prompt: "Password: "}, r.note("BeginLogin " + user + " " + service + " " + rhost)
}
func (r *recorder) CompleteLogin(ctx context.Context, id, secret string) error {
	return r.note("CompleteLogin " + id)
}
func (r *recorder) CancelLogin(ctx context.Context, id string) error {
	return r.note("CancelLogin " + id)
}
func (r *recorder) CheckAccount(ctx context.Context, u string) error {
	return r.note("CheckAccount " + u)
}
func (r *recorder) OpenSession(ctx context.Context, u string) error {
	return r.note("OpenSession " + u)
}
func (r *recorder) CloseSession(ctx context.Context, u string) error {
	return r.note("CloseSession " + u)
}
func (r *recorder) TerminateSessions(ctx context.Context, u string) (uint32, error) {
	return 2, r.note("TerminateSessions " + u)
}
func (r *recorder) WarmCache(ctx context.Context, t string, p Progress) error {
	r.mu.Lock()
	stages := r.stages
	r.mu.Unlock()
	for _, s := range stages {
		stage, detail, _ := strings.Cut(s, ":")
		p.Report(stage, detail)
	}
	return r.note("WarmCache " + t)
}
func (r *recorder) Status(ctx context.Context, u string) (string, error) {
	return `{"user":"` + u + `"}`, r.note("Status " + u)
}
func (r *recorder) UIDOf(u string) (uint32, error) {
	uid, ok := r.uids[u]
	if !ok {
		return 0, Errorf(ErrUnknownUser, "no user %q", u)
	}
	return uid, nil
}

// set sets the error the service answers with and the stages WarmCache reports.
func (r *recorder) set(err error, stages ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err, r.stages = err, stages
}

func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, "\n")
}

func startService(t *testing.T, extraPolicy ...string) (*dbustest.Bus, *recorder) {
	bus, rec, _ := startServiceConn(t, extraPolicy...)
	return bus, rec
}

// startServiceConn is startService, also returning the service's connection.
func startServiceConn(t *testing.T, extraPolicy ...string) (*dbustest.Bus, *recorder, *dbus.Conn) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns its name under the root-only bus policy")
	}
	bus := dbustest.Start(t, extraPolicy...)
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rec := &recorder{uids: map[string]uint32{"nobodyuser": 65534, "alice": 70001}}
	if err := Export(context.Background(), conn, rec, busfiles.Homed1XML); err != nil {
		t.Fatal(err)
	}
	return bus, rec, conn
}

// call runs dbus-send as uid against the bus and returns its output and error.
func call(t *testing.T, bus *dbustest.Bus, uid uint32, method string, args ...string) (string, error) {
	argv := append([]string{"--bus=" + bus.Address, "--print-reply", "--dest=" + BusName, string(ObjectPath), Interface + "." + method}, args...)
	cmd := exec.Command("dbus-send", argv...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRootMayCallEverything(t *testing.T) {
	bus, rec := startService(t)
	for _, c := range [][]string{
		{"BeginLogin", "string:alice", "string:sshd", "string:10.0.0.1"},
		{"CompleteLogin", "string:id1", "string:pw"},
		{"CheckAccount", "string:alice"},
		{"OpenSession", "string:alice"},
		{"CloseSession", "string:alice"},
		{"TerminateSessions", "string:alice"},
		{"WarmCache", "string:alice"},
		{"GetStatus", "string:alice"},
	} {
		if out, err := call(t, bus, 0, c[0], c[1:]...); err != nil {
			t.Fatalf("%s as root: %v\n%s", c[0], err, out)
		} else if c[0] == "TerminateSessions" && !strings.Contains(out, "uint32 2") {
			t.Fatalf("TerminateSessions's answer: %s", out)
		}
	}
	want := "BeginLogin alice sshd 10.0.0.1\nCompleteLogin id1\nCheckAccount alice\nOpenSession alice\nCloseSession alice\nTerminateSessions alice\nWarmCache alice\nStatus alice"
	if got := rec.log(); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
}

func TestUnprivilegedCallersAreRefused(t *testing.T) {
	bus, rec := startService(t)
	for _, c := range [][]string{
		{"OpenSession", "string:nobodyuser"},
		{"BeginLogin", "string:alice", "string:sshd", "string:"},
		{"WarmCache", "string:alice"},
		{"TerminateSessions", "string:alice"},
		{"TerminateSessions", "string:nobodyuser"}, // not even one's own
		{"GetStatus", "string:alice"},              // another user's status
	} {
		out, err := call(t, bus, 65534, c[0], c[1:]...)
		if err == nil || !strings.Contains(out, "AccessDenied") {
			t.Fatalf("%s as uid 65534: %v\n%s", c[0], err, out)
		}
	}
	// A user may read their own status.
	if out, err := call(t, bus, 65534, "GetStatus", "string:nobodyuser"); err != nil || !strings.Contains(out, `"user":"nobodyuser"`) {
		t.Fatalf("own status: %v\n%s", err, out)
	}
	if got := rec.log(); got != "Status nobodyuser" {
		t.Fatalf("refused calls reached the service: %q", got)
	}
}

// TestDaemonChecksEvenIfPolicyAllows installs a policy that lets everyone call everything and
// checks the daemon's own UID check still refuses: the second fence holds alone.
func TestDaemonChecksEvenIfPolicyAllows(t *testing.T) {
	open := filepath.Join(t.TempDir(), "zz-open.conf")
	os.WriteFile(open, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><policy context="mandatory"><allow send_destination="org.nostr.Homed1"/></policy></busconfig>`), 0o644)
	bus, rec := startService(t, open)
	for _, m := range []string{"OpenSession", "TerminateSessions"} {
		out, err := call(t, bus, 65534, m, "string:alice")
		if err == nil || !strings.Contains(out, ErrAccessDenied) {
			t.Fatalf("%s as uid 65534 with an open policy: %v\n%s", m, err, out)
		}
		if !strings.Contains(out, "root only") {
			t.Fatalf("the refusal does not say why: %s", out)
		}
	}
	if rec.log() != "" {
		t.Fatalf("the service was called: %s", rec.log())
	}
}

func TestServiceErrorsKeepTheirNames(t *testing.T) {
	bus, rec := startService(t)
	rec.set(Errorf(ErrAuthFailed, "wrong password for alice"))
	out, err := call(t, bus, 0, "CompleteLogin", "string:id1", "string:pw")
	if err == nil || !strings.Contains(out, ErrAuthFailed) || !strings.Contains(out, "wrong password for alice") {
		t.Fatalf("typed error: %v\n%s", err, out)
	}
	rec.set(os.ErrPermission) // unclassified
	out, _ = call(t, bus, 0, "OpenSession", "string:alice")
	if !strings.Contains(out, errFailed) {
		t.Fatalf("unclassified error: %s", out)
	}
}

func TestIntrospectionIsTheDocumentedInterface(t *testing.T) {
	bus, _ := startService(t)
	out, err := exec.Command("dbus-send", "--bus="+bus.Address, "--print-reply", "--dest="+BusName, string(ObjectPath), "org.freedesktop.DBus.Introspectable.Introspect").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `<method name="BeginLogin">`) {
		t.Fatalf("introspection: %v\n%s", err, out)
	}
}

func TestSecondDaemonIsRefusedTheName(t *testing.T) {
	bus, _ := startService(t)
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := Export(context.Background(), conn, &recorder{}, busfiles.Homed1XML); err == nil || !strings.Contains(err.Error(), "already owned") {
		t.Fatalf("second owner: %v", err)
	}
}

// TestWarmProgressGoesToTheCallerOnly: WarmCache's progress signals reach the caller, in
// order and before the reply, and no other connection, not even one with a match rule for
// them: they are unicast. A broadcast sent afterwards shows that the bystander's match rule
// works, so the absence of the unicast ones before it means something.
func TestWarmProgressGoesToTheCallerOnly(t *testing.T) {
	bus, rec, svc := startServiceConn(t)
	rec.set(nil, "start:alice", "asking:round 1", "found:settings", "done:1 relay(s) answered")

	bystander, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close()
	if err := bystander.AddMatchSignal(dbus.WithMatchInterface(Interface), dbus.WithMatchMember(SignalWarmProgress)); err != nil {
		t.Fatal(err)
	}
	seen := make(chan *dbus.Signal, 64)
	bystander.Signal(seen)

	caller, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	got := make(chan *dbus.Signal, 64)
	caller.Signal(got)
	if err := caller.Object(BusName, ObjectPath).Call(Interface+".WarmCache", 0, "alice").Err; err != nil {
		t.Fatal(err)
	}
	// Every signal sent before the reply is in the channel already (godbus delivers in
	// order, synchronously while the channel has room).
	var stages []string
	for len(got) > 0 {
		sig := <-got
		if sig.Name != Interface+"."+SignalWarmProgress {
			continue // NameAcquired and the like
		}
		if sig.Path != ObjectPath || len(sig.Body) != 3 || sig.Body[0] != "alice" {
			t.Fatalf("signal %+v", sig)
		}
		stages = append(stages, sig.Body[1].(string)+":"+sig.Body[2].(string))
	}
	if want := "start:alice|asking:round 1|found:settings|done:1 relay(s) answered"; strings.Join(stages, "|") != want {
		t.Fatalf("caller got %q, want %q", stages, want)
	}

	if err := svc.Emit(ObjectPath, Interface+"."+SignalWarmProgress, "sentinel", "done", "broadcast"); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case sig := <-seen:
			if sig.Name != Interface+"."+SignalWarmProgress {
				continue
			}
			if sig.Body[0] != "sentinel" {
				t.Fatalf("a bystander received the caller's progress: %v", sig.Body)
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("the bystander's match rule caught nothing, not even a broadcast")
		}
	}
}

// TestWarmProgressUnderAStrictDefaultPolicy: with signals denied by default (stricter than
// Debian's system.conf), the project's policy alone still lets root's WarmCache caller get
// its progress. (The bus's own signals stay allowed: godbus learns that it owns a name from
// NameAcquired, and without it drops the calls addressed to that name.)
func TestWarmProgressUnderAStrictDefaultPolicy(t *testing.T) {
	strict := filepath.Join(t.TempDir(), "00-strict.conf")
	os.WriteFile(strict, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><policy context="default">
  <deny send_type="signal"/><deny receive_type="signal"/>
  <allow receive_type="signal" receive_sender="org.freedesktop.DBus"/>
</policy></busconfig>`), 0o644)
	bus, rec, _ := startServiceConn(t, strict)
	rec.set(nil, "start:alice", "done:ok")
	caller, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	got := make(chan *dbus.Signal, 64)
	caller.Signal(got)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := caller.Object(BusName, ObjectPath).CallWithContext(ctx, Interface+".WarmCache", 0, "alice").Err; err != nil {
		t.Fatalf("%v (service saw: %q)", err, rec.log())
	}
	n := 0
	for len(got) > 0 {
		if sig := <-got; sig.Name == Interface+"."+SignalWarmProgress {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d progress signals under the strict policy, want 2", n)
	}
}
