package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/childproc"
	"github.com/nostr-homed/nostr-homed/internal/mounts"
)

// MountRequest is what a Mounter needs to mount one user's home.
type MountRequest struct {
	User       string
	UID, GID   uint32
	MountPoint string // the user's home
	SecretsDir string // RuntimeDir/UID/secrets, already written
	ConfigPath string // passed to nostrfs as --config
}

// Mounter starts the mount of one user's home.
type Mounter interface {
	// Name is "builtin" or "systemd" (for status and logs).
	Name() string
	// Mount starts the mount and returns once it is ready. ctx carries the readiness
	// bound: when it ends first, the start is abandoned and the error wraps ErrNotReady.
	Mount(ctx context.Context, req MountRequest) (Mount, error)
}

// Mount is a running mount.
type Mount interface {
	// Stop asks the mount to flush and unmount, and forces it when ctx ends.
	Stop(ctx context.Context) error
	// Info describes the mount for GetStatus.
	Info() MountInfo
}

// MountInfo is a mount's state as GetStatus shows it.
type MountInfo struct {
	State   string `json:"state"`             // "ready", "stopping", "stopped", "exited"
	PID     int    `json:"pid,omitempty"`     // builtin supervisor: nostrfs's process ID
	Unit    string `json:"unit,omitempty"`    // systemd: the unit
	Message string `json:"message,omitempty"` // the last STATUS= line, or why it exited
}

// ErrNotReady is wrapped by Mount's error when the readiness bound ran out.
var ErrNotReady = errors.New("not ready in time")

// Supervisor is the builtin Mounter: it runs nostrfs as a child of the daemon and waits for
// READY=1 on a NOTIFY_SOCKET of its own (see the package doc for the protocol).
type Supervisor struct {
	Binary    string // the nostrfs binary
	SocketDir string // a directory for the notify sockets; created 0700
	Logf      func(format string, args ...any)
}

// Name implements Mounter.
func (s *Supervisor) Name() string { return "builtin" }

func (s *Supervisor) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// maxStderr is how much of the child's stderr is kept for error messages (the end of it).
const maxStderr = 8 << 10

// Mount implements Mounter.
func (s *Supervisor) Mount(ctx context.Context, req MountRequest) (Mount, error) {
	if err := os.MkdirAll(s.SocketDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(s.SocketDir, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.SocketDir, "notify-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "notify")
	conn, err := listenNotify(sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	cmd := exec.Command(s.Binary, "--user", req.User, "--mount", req.MountPoint, "--config", req.ConfigPath)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + sock}
	if bus := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); bus != "" {
		// nostrfs reaches the session signer on the bus the daemon serves it on.
		cmd.Env = append(cmd.Env, "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	}
	stderr := &tailBuffer{max: maxStderr}
	cmd.Stdout = &lineLogger{prefix: "nostrfs[" + req.User + "]: ", logf: s.logf}
	cmd.Stderr = io.MultiWriter(stderr, &lineLogger{prefix: "nostrfs[" + req.User + "]: ", logf: s.logf})
	c := &child{cmd: cmd, conn: conn, dir: dir, stderr: stderr, mountPoint: req.MountPoint,
		exited: make(chan struct{}), ready: make(chan struct{}), logf: s.logf}
	// SIGTERM if the daemon dies, so nostrfs flushes and unmounts rather than serving with
	// no daemon behind it; its own process group, so a stop reaches its helpers.
	if err := childproc.Start(cmd, syscall.SIGTERM, c.wait); err != nil {
		conn.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", s.Binary, err)
	}
	go c.readNotify()

	select {
	case <-c.ready:
		c.mu.Lock()
		c.state = "ready"
		c.mu.Unlock()
		return c, nil
	case <-c.exited:
		c.cleanup()
		return nil, fmt.Errorf("%s exited before it was ready (%v): %s", filepath.Base(s.Binary), c.waitErr, c.stderrText())
	case <-ctx.Done():
		c.kill()
		<-c.exited
		c.cleanup()
		msg := c.stderrText()
		return nil, fmt.Errorf("%s sent no READY=1 within the bound (%w; %v): %s", filepath.Base(s.Binary), ErrNotReady, ctx.Err(), msg)
	}
}

// listenNotify binds a unix datagram socket at path that receives the sender's credentials.
func listenNotify(path string) (*net.UnixConn, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		conn.Close()
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %v", errors.Join(err, serr))
	}
	return conn, nil
}

// child is a nostrfs run by the Supervisor.
type child struct {
	cmd        *exec.Cmd
	conn       *net.UnixConn
	dir        string
	stderr     *tailBuffer
	mountPoint string
	logf       func(string, ...any)

	exited  chan struct{}
	waitErr error // valid once exited is closed

	ready     chan struct{}
	readyOnce sync.Once

	mu      sync.Mutex
	state   string
	status  string
	cleaned bool
}

func (c *child) wait() {
	c.waitErr = c.cmd.Wait()
	c.mu.Lock()
	if c.state != "stopping" && c.state != "stopped" {
		c.state = "exited"
	}
	c.mu.Unlock()
	close(c.exited)
}

// readNotify reads sd_notify datagrams until the socket is closed. Only the child itself
// may speak (systemd's NotifyAccess=main).
func (c *child) readNotify() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := c.conn.ReadMsgUnix(buf, oob)
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
		if pid != c.cmd.Process.Pid {
			c.logf("notify socket: ignoring a message from pid %d (not nostrfs, pid %d)", pid, c.cmd.Process.Pid)
			continue
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "READY":
				if v == "1" {
					c.readyOnce.Do(func() { close(c.ready) })
				}
			case "STATUS":
				c.mu.Lock()
				c.status = v
				c.mu.Unlock()
			case "STOPPING":
				if v == "1" {
					c.mu.Lock()
					c.state = "stopping"
					c.mu.Unlock()
				}
			}
		}
	}
}

func (c *child) kill() {
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	c.cmd.Process.Kill()
}

func (c *child) cleanup() {
	c.mu.Lock()
	done := c.cleaned
	c.cleaned = true
	c.mu.Unlock()
	if done {
		return
	}
	c.conn.Close()
	os.RemoveAll(c.dir)
}

func (c *child) stderrText() string {
	s := strings.TrimSpace(c.stderr.String())
	if s == "" {
		return "(no message on stderr)"
	}
	return s
}

// Stop implements Mount: SIGTERM, wait until ctx ends, then SIGKILL to the process group
// and a lazy unmount of whatever it left mounted.
func (c *child) Stop(ctx context.Context) error {
	defer c.cleanup()
	select {
	case <-c.exited:
		c.mu.Lock()
		c.state = "stopped"
		c.mu.Unlock()
		return fmt.Errorf("nostrfs had already exited (%v): %s", c.waitErr, c.stderrText())
	default:
	}
	c.mu.Lock()
	c.state = "stopping"
	c.mu.Unlock()
	c.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-c.exited:
		if c.waitErr != nil {
			err = fmt.Errorf("nostrfs exited with %v after SIGTERM: %s", c.waitErr, c.stderrText())
		}
	case <-ctx.Done():
		c.kill()
		<-c.exited
		err = errors.New("nostrfs did not exit within the flush bound after SIGTERM: killed (unflushed writes stay in its queue)")
		if isMountPoint(c.mountPoint) {
			if uerr := unix.Unmount(c.mountPoint, unix.MNT_DETACH); uerr != nil {
				err = errors.Join(err, fmt.Errorf("detaching %s: %w", c.mountPoint, uerr))
			}
		}
	}
	c.mu.Lock()
	c.state = "stopped"
	c.mu.Unlock()
	return err
}

// Info implements Mount.
func (c *child) Info() MountInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	mi := MountInfo{State: c.state, PID: c.cmd.Process.Pid, Message: c.status}
	if c.state == "exited" {
		mi.Message = fmt.Sprintf("nostrfs exited (%v): %s", c.waitErr, clip(c.stderr.String(), 500))
	}
	return mi
}

// isMountPoint reports whether path is a mount point.
func isMountPoint(path string) bool {
	fstype, _ := mounts.At(path)
	return fstype != ""
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lineLogger logs what a child writes, line by line.
type lineLogger struct {
	mu     sync.Mutex
	prefix string
	logf   func(string, ...any)
	buf    bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.Reset()
			l.buf.WriteString(line)
			if l.buf.Len() > 4096 { // a line without end: log what there is
				l.logf("%s%s", l.prefix, l.buf.String())
				l.buf.Reset()
			}
			return len(p), nil
		}
		l.logf("%s%s", l.prefix, strings.TrimRight(line, "\n"))
	}
}
