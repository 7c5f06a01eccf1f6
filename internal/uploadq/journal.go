package uploadq

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
)

const journalVersion = 1

// record is the content of one journal file (see the package doc).
type record struct {
	V        int       `json:"v"`
	Hash     string    `json:"hash"`
	Enqueued time.Time `json:"enqueued"`
	Acked    []string  `json:"acked"`
}

const tmpPrefix = ".tmp-"

// writeRecord writes dir/HASH atomically: temp file, fsync, rename, fsync of dir.
func writeRecord(dir string, r record) error {
	if r.Acked == nil {
		r.Acked = []string{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(dir, tmpPrefix+r.Hash+"-*")
	if err != nil {
		return fmt.Errorf("uploadq: journal of blob %s: %w", r.Hash, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("uploadq: journal of blob %s: %w", r.Hash, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("uploadq: journal of blob %s: %w", r.Hash, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, r.Hash)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("uploadq: journal of blob %s: %w", r.Hash, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("uploadq: journal of blob %s: %w", r.Hash, err)
	}
	return nil
}

// removeRecord removes dir/HASH and fsyncs dir.
func removeRecord(dir, hash string) error {
	if err := os.Remove(filepath.Join(dir, hash)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("uploadq: removing journal of blob %s: %w", hash, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("uploadq: removing journal of blob %s: %w", hash, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readRecords loads every journal file in dir, removing leftover temp files. A file that
// cannot be parsed is returned as a record with no acknowledgement (and logged).
func readRecords(dir string, logf func(string, ...any)) ([]record, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("uploadq: reading journal: %w", err)
	}
	var out []record
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("uploadq: removing temp file: %w", err)
			}
			logf("uploadq: removed leftover temp file %s", name)
			continue
		}
		if blobstore.CheckHash(name) != nil || !de.Type().IsRegular() {
			logf("uploadq: ignoring %s in the journal directory", name)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("uploadq: reading journal of blob %s: %w", name, err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil || r.V != journalVersion || r.Hash != name {
			logf("uploadq: journal of blob %s is damaged (%v); treating it as unacknowledged", name, err)
			r = record{V: journalVersion, Hash: name, Enqueued: time.Now()}
		}
		out = append(out, r)
	}
	return out, nil
}
