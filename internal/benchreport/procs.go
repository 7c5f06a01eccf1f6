package benchreport

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/mounts"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
)

// child is a process a benchmark started: its stdout lines arrive on lines, its stderr is kept
// (the first 4 MiB) for errors.
type child struct {
	name   string
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncbuf.Buffer
	exited chan struct{}
}

// startChild starts bin with args and env (added to the harness's environment).
func startChild(name, bin string, args, env []string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	c := &child{name: name, cmd: cmd, lines: make(chan string, 64), stderr: &syncbuf.Buffer{Limit: 4 << 20},
		exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			default: // nobody is waiting for lines now: drop rather than block the child
			}
		}
		close(c.lines)
		cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitLine waits for a stdout line that starts with prefix and returns it.
func (c *child) waitLine(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				<-c.exited
				return "", fmt.Errorf("%s exited (%v) before printing %q: %s", c.name, c.cmd.ProcessState, prefix, tailString(c.stderr.String(), 2000))
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
			if strings.HasPrefix(l, "drain failed") {
				return l, fmt.Errorf("%s: %s", c.name, l)
			}
		case <-deadline:
			return "", fmt.Errorf("%s did not print %q within %s: %s", c.name, prefix, timeout, tailString(c.stderr.String(), 2000))
		}
	}
}

// stop sends SIGTERM and waits up to timeout, then SIGKILL. Idempotent.
func (c *child) stop(timeout time.Duration) error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		if !c.cmd.ProcessState.Success() {
			return fmt.Errorf("%s exited with %v: %s", c.name, c.cmd.ProcessState, tailString(c.stderr.String(), 2000))
		}
		return nil
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not exit within %s of SIGTERM: killed", c.name, timeout)
	}
}

// rssKiB reads VmRSS and VmHWM of pid from /proc, in KiB.
func rssKiB(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// mounted says whether dir is a mount point.
func mounted(dir string) bool {
	fstype, _ := mounts.At(dir)
	return fstype != ""
}

// detachMount lazily unmounts dir if it is still mounted (the last resort of a cleanup).
func detachMount(dir string) error {
	if !mounted(dir) {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detaching %s: %w", dir, err)
	}
	return nil
}

// dropCaches writes back dirty pages and drops the page, dentry and inode caches (root).
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// tailString is the last n bytes of s.
func tailString(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}

// envInt is the integer in the environment variable name, or def if it is unset or empty.
func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}
