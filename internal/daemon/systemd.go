package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/unit"
	"golang.org/x/sys/unix"
)

// Systemd is the Mounter for machines where systemd is PID 1: it starts nostrfs@USER.service
// through systemd's D-Bus API (go-systemd) and waits for the start job. The unit is to be
// Type=notify, so systemd completes the job when nostrfs sends READY=1 on systemd's own
// NOTIFY_SOCKET: the same protocol the builtin Supervisor speaks. The unit's ExecStart names
// the user and the configuration; nostrfs mounts on the user's home from the user database
// (the units are not part of this package).
//
// systemd is not PID 1 on the project's test machines: systemd_test.go tests this against a
// fake systemd manager on a private bus that runs the unit's ExecStart.
type Systemd struct{}

// Name implements Mounter.
func (s *Systemd) Name() string { return "systemd" }

// UnitName is the instance of nostrfs@.service for user (escaped as systemd-escape does).
func UnitName(user string) string { return "nostrfs@" + unit.UnitNameEscape(user) + ".service" }

// Mount implements Mounter.
func (s *Systemd) Mount(ctx context.Context, req MountRequest) (Mount, error) {
	conn, err := connectSystemd(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd: %w", err)
	}
	name := UnitName(req.User)
	ch := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, name, "replace", ch); err != nil {
		if ctx.Err() != nil { // the bound ended during the call: the job may be queued all the same
			return nil, abandon(ctx, conn, name, req)
		}
		conn.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	select {
	case res := <-ch:
		if res == "done" {
			return &unitMount{conn: conn, name: name, mountPoint: req.MountPoint}, nil
		}
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msg := describeUnit(dctx, conn, name)
		cancel()
		conn.Close()
		return nil, fmt.Errorf("%s: start job %s (%s); see journalctl -u %s", name, res, msg, name)
	case <-ctx.Done():
		return nil, abandon(ctx, conn, name, req)
	}
}

// abandon stops unit name, whose start did not finish within ctx, and waits until it is
// gone (the stop job replaces the start job), as the builtin supervisor waits for its
// child: nostrfs must not go on to mount the home of a session that has failed and whose
// secrets are wiped. It closes conn and returns Mount's error, which wraps ErrNotReady.
func abandon(ctx context.Context, conn *sddbus.Conn, name string, req MountRequest) error {
	m := &unitMount{conn: conn, name: name, mountPoint: req.MountPoint}
	sctx, cancel := context.WithTimeout(context.Background(), abandonStop)
	serr := m.Stop(sctx)
	cancel()
	err := fmt.Errorf("%s: %w (%v)", name, ErrNotReady, ctx.Err())
	if serr != nil {
		err = fmt.Errorf("%w; %v", err, serr)
	}
	return err
}

// abandonStop bounds the stop of a unit whose start Mount abandoned; then it is killed.
const abandonStop = 10 * time.Second

// connectSystemd connects to systemd through the system bus (DBUS_SYSTEM_BUS_ADDRESS if
// set), giving up when ctx ends. The connection itself outlives ctx: go-systemd's
// NewSystemConnectionContext(ctx) dials with dbus.WithContext(ctx), and godbus closes such a
// connection as soon as ctx ends; Mount's ctx is only the readiness bound, and the
// connection is what stops the unit later.
func connectSystemd(ctx context.Context) (*sddbus.Conn, error) {
	type result struct {
		conn *sddbus.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := sddbus.NewSystemConnectionContext(context.Background())
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("%w (%v)", ErrNotReady, ctx.Err())
	}
}

func describeUnit(ctx context.Context, conn *sddbus.Conn, name string) string {
	p, err := conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return err.Error()
	}
	s := fmt.Sprintf("%v/%v", p["ActiveState"], p["SubState"])
	if sp, err := conn.GetUnitTypePropertiesContext(ctx, name, "Service"); err == nil {
		s += fmt.Sprintf(", result %v, ", sp["Result"])
		// ExecMainStatus is the exit status, or the signal if ExecMainCode is CLD_KILLED or
		// CLD_DUMPED.
		code, _ := sp["ExecMainCode"].(int32)
		status, _ := sp["ExecMainStatus"].(int32)
		if code == 2 || code == 3 {
			s += "killed by " + unix.SignalName(syscall.Signal(status))
		} else {
			s += fmt.Sprintf("exit status %d", status)
		}
		if t, ok := sp["StatusText"].(string); ok && t != "" {
			s += ": " + t
		}
	}
	return s
}

// unitMount is a started nostrfs@USER.service.
type unitMount struct {
	conn       *sddbus.Conn
	name       string
	mountPoint string

	mu    sync.Mutex
	state string
}

// killWait bounds the wait for the unit's processes to be gone after SIGKILL.
const killWait = 5 * time.Second

// Stop implements Mount: stop the unit (systemd sends SIGTERM) and wait for the stop job;
// when ctx ends first, SIGKILL to every process of the unit, wait (bounded) until they are
// gone, and detach what nostrfs left mounted, as the builtin supervisor does.
func (m *unitMount) Stop(ctx context.Context) error {
	defer m.conn.Close()
	m.setState("stopping")
	ch := make(chan string, 1)
	if _, err := m.conn.StopUnitContext(ctx, m.name, "replace", ch); err != nil {
		return fmt.Errorf("stopping %s: %w", m.name, err)
	}
	select {
	case res := <-ch:
		m.setState("stopped")
		if res != "done" {
			return fmt.Errorf("stopping %s: job %s", m.name, res)
		}
		return nil
	case <-ctx.Done():
		kctx, cancel := context.WithTimeout(context.Background(), killWait)
		defer cancel()
		err := fmt.Errorf("%s did not stop within the flush bound: killed (unflushed writes stay in its queue)", m.name)
		if kerr := m.conn.KillUnitWithTarget(kctx, m.name, sddbus.All, int32(syscall.SIGKILL)); kerr != nil {
			err = errors.Join(err, fmt.Errorf("SIGKILL to %s: %w", m.name, kerr))
		}
		// The stop job ends once the unit's last process is gone.
		select {
		case <-ch:
		case <-kctx.Done():
			err = errors.Join(err, fmt.Errorf("%s still not stopped %s after SIGKILL", m.name, killWait))
		}
		if m.mountPoint != "" && isMountPoint(m.mountPoint) {
			if uerr := unix.Unmount(m.mountPoint, unix.MNT_DETACH); uerr != nil {
				err = errors.Join(err, fmt.Errorf("detaching %s: %w", m.mountPoint, uerr))
			}
		}
		m.setState("stopped")
		return err
	}
}

func (m *unitMount) setState(s string) {
	m.mu.Lock()
	m.state = s
	m.mu.Unlock()
}

// Info implements Mount.
func (m *unitMount) Info() MountInfo {
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	mi := MountInfo{State: st, Unit: m.name}
	if st == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		mi.State = "ready"
		if p, err := m.conn.GetUnitPropertiesContext(ctx, m.name); err == nil && p["ActiveState"] != "active" {
			mi.State = fmt.Sprint(p["ActiveState"])
		}
		if sp, err := m.conn.GetUnitTypePropertiesContext(ctx, m.name, "Service"); err == nil {
			if t, ok := sp["StatusText"].(string); ok {
				mi.Message = t
			}
		}
	}
	return mi
}
