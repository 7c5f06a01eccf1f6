// Package mounts reads this process's mount table (/proc/self/mountinfo): which file system
// is mounted where. The daemon checks for mount points left behind, the demo shows the home
// being mounted, and tests check that nothing stays mounted after them; they all read it
// here, the one place that knows the format and its octal escapes.
package mounts

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one mount of the table.
type Mount struct {
	Point  string // the mount point, unescaped
	FSType string // e.g. "fuse.nostrfs"
}

// List returns the mounts of this process's mount namespace, in the kernel's order
// (a mount stacked on another comes after it).
func List() ([]Mount, error) { return ListFile("/proc/self/mountinfo") }

// ListFile reads a mountinfo file: /proc/PID/mountinfo shows PID's mount namespace.
func ListFile(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		m := Mount{Point: unescape(fields[4])}
		for i := 5; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				m.FSType = fields[i+1]
				break
			}
		}
		ms = append(ms, m)
	}
	return ms, sc.Err()
}

// At returns the type of the file system mounted on path ("" if none; the top one if
// several are stacked there).
func At(path string) (string, error) {
	ms, err := List()
	fstype := ""
	for _, m := range ms {
		if m.Point == path {
			fstype = m.FSType
		}
	}
	return fstype, err
}

// Under lists the mounts at or below dir.
func Under(dir string) ([]Mount, error) {
	ms, err := List()
	var under []Mount
	for _, m := range ms {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+string(filepath.Separator)) {
			under = append(under, m)
		}
	}
	return under, err
}

// DetachUnder lazily unmounts (MNT_DETACH) every mount below dir, deepest first, and returns
// what it found there.
func DetachUnder(dir string) ([]Mount, error) {
	ms, err := Under(dir)
	var below []Mount
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Point == dir {
			continue
		}
		below = append(below, ms[i])
		if uerr := unix.Unmount(ms[i].Point, unix.MNT_DETACH); uerr != nil && err == nil {
			err = &os.PathError{Op: "umount2", Path: ms[i].Point, Err: uerr}
		}
	}
	return below, err
}

// unescape undoes the octal escapes of the mount table (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v, ok := byte(0), true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
