package demo

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// mount is one line of /proc/mounts.
type mount struct {
	Point  string
	FSType string
}

// readMounts reads /proc/mounts (this process's mount namespace, which is the daemon's and
// nostrfs's).
func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		ms = append(ms, mount{Point: unescapeMount(fields[1]), FSType: fields[2]})
	}
	return ms, sc.Err()
}

// mountAt returns the file system type mounted on path ("" if none; the last one if stacked).
func mountAt(path string) (string, error) {
	ms, err := readMounts()
	if err != nil {
		return "", err
	}
	fstype := ""
	for _, m := range ms {
		if m.Point == path {
			fstype = m.FSType
		}
	}
	return fstype, nil
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) ([]mount, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	var under []mount
	for _, m := range ms {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+string(filepath.Separator)) {
			under = append(under, m)
		}
	}
	return under, nil
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for a space, ...).
func unescapeMount(s string) string {
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
