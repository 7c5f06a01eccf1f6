package blossomserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// meta is the sidecar stored next to each blob as <sha256>.json.
type meta struct {
	Size     int64    `json:"size"`
	Type     string   `json:"type"`
	Uploaded int64    `json:"uploaded"`
	Owners   []string `json:"owners"` // a set: sorted, no duplicates
}

func (m *meta) hasOwner(pk string) bool {
	_, found := slices.BinarySearch(m.Owners, pk)
	return found
}

func (m *meta) addOwner(pk string) {
	if i, found := slices.BinarySearch(m.Owners, pk); !found {
		m.Owners = slices.Insert(m.Owners, i, pk)
	}
}

func (m *meta) removeOwner(pk string) {
	if i, found := slices.BinarySearch(m.Owners, pk); found {
		m.Owners = slices.Delete(m.Owners, i, i+1)
	}
}

// store is the on-disk part of the server. Every hash it is given has been validated with
// blobstore.CheckHash by the caller: no unvalidated string is ever joined into a path.
type store struct {
	root  string // the data directory
	blobs string // root/blobs
	tmp   string // root/tmp
	locks [256]sync.Mutex
	bufs  sync.Pool
}

const copyBufSize = 256 << 10

func openStore(dir string) (*store, error) {
	st := &store{
		root:  dir,
		blobs: filepath.Join(dir, "blobs"),
		tmp:   filepath.Join(dir, "tmp"),
	}
	st.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	for _, d := range []string{dir, st.blobs, st.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blossomserver: %w", err)
		}
	}
	// Temp files left by a crash are never referenced again: remove them.
	ents, err := os.ReadDir(st.tmp)
	if err != nil {
		return nil, fmt.Errorf("blossomserver: %w", err)
	}
	for _, e := range ents {
		os.Remove(filepath.Join(st.tmp, e.Name()))
	}
	return st, nil
}

func (st *store) blobPath(hash string) string {
	return filepath.Join(st.blobs, hash[:2], hash)
}

func (st *store) metaPath(hash string) string {
	return st.blobPath(hash) + ".json"
}

// lock serialises changes to one blob and its sidecar. 256 stripes keyed by the hash's first
// byte: bounded memory, and uploads of different blobs rarely wait for each other.
func (st *store) lock(hash string) func() {
	b, _ := hex.DecodeString(hash[:2])
	m := &st.locks[b[0]]
	m.Lock()
	return m.Unlock
}

// errTooLarge: the body exceeded the size limit.
var errTooLarge = errors.New("blob too large")

// readError wraps a failure to read the incoming body (client went away, origin failed).
type readError struct{ err error }

func (e *readError) Error() string { return "reading body: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// received is a blob streamed into a temp file and hashed, not yet committed.
type received struct {
	path string
	hash string
	size int64
}

// receive streams r into a new temp file in the data directory while hashing it, reading at
// most limit bytes (errTooLarge beyond), then fsyncs and closes the file. Memory use is one
// copy buffer regardless of the blob's size. On error the temp file is removed.
func (st *store) receive(r io.Reader, limit int64) (rec received, err error) {
	f, err := os.CreateTemp(st.tmp, "upload-*")
	if err != nil {
		return rec, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bp := st.bufs.Get().(*[]byte)
	defer st.bufs.Put(bp)
	buf := *bp
	h := sha256.New()
	var n int64
	for {
		nr, rerr := r.Read(buf)
		if nr > 0 {
			n += int64(nr)
			if n > limit {
				return rec, errTooLarge
			}
			h.Write(buf[:nr])
			if _, werr := f.Write(buf[:nr]); werr != nil {
				return rec, werr
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rec, &readError{rerr}
		}
	}
	if err := f.Sync(); err != nil {
		return rec, err
	}
	if err := f.Close(); err != nil {
		return rec, err
	}
	return received{path: f.Name(), hash: hex.EncodeToString(h.Sum(nil)), size: n}, nil
}

// discard removes an uncommitted temp file.
func (st *store) discard(rec received) {
	if rec.path != "" {
		os.Remove(rec.path)
	}
}

// commit moves a received blob to its content path (unless an intact copy is already there),
// records owner (if not empty) and returns the blob's metadata and whether it was new.
func (st *store) commit(rec received, ctype, owner string) (m meta, created bool, err error) {
	unlock := st.lock(rec.hash)
	defer unlock()
	defer st.discard(rec) // no-op after a successful rename: the name is gone

	final := st.blobPath(rec.hash)
	fi, statErr := os.Stat(final)
	switch {
	case statErr == nil && fi.Size() == rec.size:
		// Already stored. Same hash, same size: the same bytes, keep the old file.
	case statErr == nil || errors.Is(statErr, fs.ErrNotExist):
		// Absent, or a damaged copy of a different size: (re)place it.
		if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
			return m, false, err
		}
		if err := os.Rename(rec.path, final); err != nil {
			return m, false, err
		}
		rec.path = ""
		syncDir(filepath.Dir(final))
		created = statErr != nil
	default:
		return m, false, statErr
	}

	m, ok, err := st.readMeta(rec.hash)
	if err != nil || !ok {
		// A blob without a readable sidecar (new, or a crash between the rename and the
		// sidecar write) gets a fresh one.
		m = meta{Type: ctype, Uploaded: time.Now().Unix()}
	}
	m.Size = rec.size
	if m.Type == "" {
		m.Type = ctype
	}
	if owner != "" {
		m.addOwner(owner)
	}
	if err := st.writeMeta(rec.hash, m); err != nil {
		return m, false, err
	}
	return m, created, nil
}

// readMeta reads a blob's sidecar; ok is false if there is none.
func (st *store) readMeta(hash string) (m meta, ok bool, err error) {
	b, err := os.ReadFile(st.metaPath(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("sidecar of %s: %w", hash, err)
	}
	slices.Sort(m.Owners)
	m.Owners = slices.Compact(m.Owners)
	return m, true, nil
}

// writeMeta replaces a blob's sidecar atomically: temp file, fsync, rename.
func (st *store) writeMeta(hash string, m meta) error {
	if m.Owners == nil {
		m.Owners = []string{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(st.tmp, "meta-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), st.metaPath(hash))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	syncDir(filepath.Dir(st.metaPath(hash)))
	return nil
}

// removeOwner drops owner from a blob and deletes the blob once no owner is left. found is
// false if the blob does not exist or owner does not own it.
func (st *store) removeOwner(hash, owner string) (found bool, err error) {
	unlock := st.lock(hash)
	defer unlock()
	if _, err := os.Stat(st.blobPath(hash)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	m, ok, err := st.readMeta(hash)
	if err != nil {
		return false, err
	}
	if !ok || !m.hasOwner(owner) {
		return false, nil
	}
	m.removeOwner(owner)
	if len(m.Owners) > 0 {
		return true, st.writeMeta(hash, m)
	}
	// Blob first: a sidecar without a blob is ignored, a blob without a sidecar would be
	// served but owned by nobody.
	if err := os.Remove(st.blobPath(hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, err
	}
	if err := os.Remove(st.metaPath(hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, err
	}
	syncDir(filepath.Dir(st.blobPath(hash)))
	os.Remove(filepath.Dir(st.blobPath(hash))) // only succeeds when the fan-out dir is empty
	return true, nil
}

// listed is one blob in a listing.
type listed struct {
	hash string
	meta meta
}

// ownedBy returns the blobs whose owners include pubkey, in no particular order.
func (st *store) ownedBy(pubkey string) ([]listed, error) {
	var out []listed
	fanouts, err := os.ReadDir(st.blobs)
	if err != nil {
		return nil, err
	}
	for _, fo := range fanouts {
		if !fo.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(st.blobs, fo.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed by a concurrent delete
			}
			return nil, err
		}
		for _, e := range ents {
			hash, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok || !validHash(hash) {
				continue
			}
			m, ok, err := st.readMeta(hash)
			if err != nil || !ok || !m.hasOwner(pubkey) {
				continue
			}
			if _, err := os.Stat(st.blobPath(hash)); err != nil {
				continue // sidecar of a blob being deleted
			}
			out = append(out, listed{hash: hash, meta: m})
		}
	}
	return out, nil
}

// syncDir fsyncs a directory so that a rename or unlink in it survives a crash.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
