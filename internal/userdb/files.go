package userdb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
)

var nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidName reports whether name is acceptable as a user or group name: it matches
// ^[a-z_][a-z0-9_-]{0,31}$ and is not all digits (a numeric name would read as an ID to
// chown, id and friends).
func ValidName(name string) bool {
	if !nameRE.MatchString(name) {
		return false
	}
	return strings.Trim(name, "0123456789") != ""
}

func checkName(kind, name string) error {
	if !ValidName(name) {
		return errorf(ErrInvalidName,
			"invalid %s name %q: want 1 to 32 of a-z 0-9 _ -, starting with a-z or _, not all digits",
			kind, name)
	}
	return nil
}

// idRange is an inclusive range of IDs.
type idRange struct{ first, last uint64 }

// systemIDs is what the local account files say is in use.
type systemIDs struct {
	userByName  map[string]uint32 // passwd: name -> uid
	groupByName map[string]uint32 // group: name -> gid
	ids         map[uint64]string // uid or gid -> "what uses it", for messages
	ranges      []idRange         // subordinate ID ranges
	rangeSrc    []string
}

// taken says whether a local account file uses id, and how.
func (s *systemIDs) taken(id uint64) (string, bool) {
	if what, ok := s.ids[id]; ok {
		return what, true
	}
	if i, ok := s.rangeAt(id); ok {
		return s.rangeSrc[i], true
	}
	return "", false
}

// rangeAt returns the index of a subordinate ID range that contains id.
func (s *systemIDs) rangeAt(id uint64) (int, bool) {
	for i, r := range s.ranges {
		if id >= r.first && id <= r.last {
			return i, true
		}
	}
	return 0, false
}

// loadSystemIDs reads the passwd and group files (both required) and the subordinate ID
// files (optional: absent means no ranges).
func loadSystemIDs(o *Options) (*systemIDs, error) {
	s := &systemIDs{
		userByName:  map[string]uint32{},
		groupByName: map[string]uint32{},
		ids:         map[uint64]string{},
	}
	err := readColonFile(o.PasswdPath, 3, func(f []string) {
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return
		}
		s.userByName[f[0]] = uint32(id)
		if _, dup := s.ids[id]; !dup {
			s.ids[id] = fmt.Sprintf("%s has user %s with uid %d", o.PasswdPath, f[0], id)
		}
	})
	if err != nil {
		return nil, err
	}
	err = readColonFile(o.GroupPath, 3, func(f []string) {
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return
		}
		s.groupByName[f[0]] = uint32(id)
		if _, dup := s.ids[id]; !dup {
			s.ids[id] = fmt.Sprintf("%s has group %s with gid %d", o.GroupPath, f[0], id)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, p := range []string{o.SubUIDPath, o.SubGIDPath} {
		err := readColonFile(p, 3, func(f []string) {
			start, err1 := strconv.ParseUint(f[1], 10, 32)
			count, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 != nil || err2 != nil || count == 0 {
				return
			}
			s.ranges = append(s.ranges, idRange{start, start + count - 1})
			s.rangeSrc = append(s.rangeSrc,
				fmt.Sprintf("%s gives %s the subordinate IDs %d-%d", p, f[0], start, start+count-1))
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return s, nil
}

// readColonFile calls fn with the fields of every line of a colon-separated file that has at
// least min fields. Comments, blank lines and NIS compat lines (+, -) are skipped.
func readColonFile(path string, min int, fn func([]string)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("userdb: reading %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < min || f[0] == "" {
			continue
		}
		fn(f)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("userdb: reading %s: %w", path, err)
	}
	return nil
}
