package homefs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// stateVersion is the schema version of state.db (PRAGMA user_version).
const stateVersion = 2

// The local view of the home. One row per name the mount knows: the root (ino 1), every entry
// of every directory listing loaded so far, and everything created here. See the package doc.
const stateSchema = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(
	ino          INTEGER PRIMARY KEY AUTOINCREMENT,
	parent       INTEGER NOT NULL,
	name         BLOB NOT NULL,
	type         INTEGER NOT NULL,
	mode         INTEGER NOT NULL,
	mtime        INTEGER NOT NULL,
	size         INTEGER NOT NULL DEFAULT 0,
	content      TEXT,
	target       TEXT,
	xattrs       TEXT,
	loaded       INTEGER NOT NULL DEFAULT 0,
	dirty        INTEGER NOT NULL DEFAULT 0,
	local        INTEGER NOT NULL DEFAULT 0,
	stored       INTEGER NOT NULL DEFAULT 0,
	UNIQUE(parent, name)
);
`

// Node types in the type column.
const (
	typeFile    = 1
	typeDir     = 2
	typeSymlink = 3
)

const rootIno = 1

// row is one node of state.db.
type row struct {
	ino, parent int64
	name        string
	typ         int
	mode        uint32
	mtime       int64
	size        int64
	content     *tree.Content
	target      string
	xattrs      []tree.Xattr
	loaded      bool  // directories: the children are rows
	dirty       bool  // directories: the listing must be written again; files: the working copy may be newer than content
	local       bool  // files: DIR/data/INO holds the whole plaintext (the working copy)
	stored      int64 // files: bytes of content stored (holes cost nothing), for st_blocks
}

const rowCols = `ino, parent, name, type, mode, mtime, size, content, target, xattrs, loaded, dirty, local, stored`

// attrCols are what getattr and lookup need: no JSON to decode (content, xattrs).
const attrCols = `ino, parent, name, type, mode, mtime, size, target, loaded, dirty, local, stored`

func scanAttr(s scanner) (*row, error) {
	var r row
	var name []byte
	var target sql.NullString
	if err := s.Scan(&r.ino, &r.parent, &name, &r.typ, &r.mode, &r.mtime, &r.size, &target,
		&r.loaded, &r.dirty, &r.local, &r.stored); err != nil {
		return nil, err
	}
	r.name, r.target = string(name), target.String
	return &r, nil
}

// storedBytes is what content c stores: inline bytes, or its chunks but holes.
func storedBytes(c *tree.Content) int64 {
	if c == nil {
		return 0
	}
	if len(c.Chunks) == 0 {
		return c.Size
	}
	var n int64
	for _, ch := range c.Chunks {
		if !ch.IsHole() {
			n += ch.Size
		}
	}
	return n
}

type scanner interface{ Scan(...any) error }

func scanRow(s scanner) (*row, error) {
	var r row
	var name []byte
	var content, target, xattrs sql.NullString
	if err := s.Scan(&r.ino, &r.parent, &name, &r.typ, &r.mode, &r.mtime, &r.size, &content, &target, &xattrs,
		&r.loaded, &r.dirty, &r.local, &r.stored); err != nil {
		return nil, err
	}
	r.name = string(name)
	r.target = target.String
	if content.Valid {
		var c tree.Content
		if err := json.Unmarshal([]byte(content.String), &c); err != nil {
			return nil, fmt.Errorf("homefs: state: content of inode %d: %w", r.ino, err)
		}
		r.content = &c
	}
	if xattrs.Valid && xattrs.String != "" {
		if err := json.Unmarshal([]byte(xattrs.String), &r.xattrs); err != nil {
			return nil, fmt.Errorf("homefs: state: xattrs of inode %d: %w", r.ino, err)
		}
	}
	return &r, nil
}

func jsonOrNull(v any, null bool) (any, error) {
	if null {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// state is state.db. Every method runs with FS.mu held (see the package doc): the database
// has one connection, and multi-statement changes run in one transaction.
type state struct {
	db  *sql.DB
	dir string
	// cur is the transaction under way (tx), which every query then joins: the database
	// has one connection, so a query beside the transaction would wait for it forever.
	cur *sql.Tx
	// lastReserve is when the reserve file was last (re)created or tried.
	lastReserve time.Time
	// Prepared once: the queries of every LOOKUP and GETATTR.
	stAttr, stLookupAttr, stChildren *sql.Stmt
}

// reserveSize is the ballast kept in StateDir/reserve: when the disk is full, a change of
// state.db (unlinking the file that filled it, say) would fail for want of a page; the
// reserve is deleted to let it through, and made again later.
const reserveSize = 1 << 20

func (s *state) reservePath() string { return filepath.Join(s.dir, "reserve") }

// makeReserve (re)creates the reserve file, at most every few seconds while it fails.
func (s *state) makeReserve() {
	if _, err := os.Stat(s.reservePath()); err == nil || time.Since(s.lastReserve) < 5*time.Second {
		return
	}
	s.lastReserve = time.Now()
	f, err := os.OpenFile(s.reservePath()+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, reserveSize)
	f.Close()
	if err != nil {
		os.Remove(s.reservePath() + ".tmp")
		return
	}
	os.Rename(s.reservePath()+".tmp", s.reservePath())
}

// diskFull says whether err is SQLite's "database or disk is full".
func diskFull(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL
}

type querier interface {
	Exec(query string, args ...any) (sql.Result, error)
	Query(query string, args ...any) (*sql.Rows, error)
	QueryRow(query string, args ...any) *sql.Row
}

// q is the transaction under way, or the database.
func (s *state) q() querier {
	if s.cur != nil {
		return s.cur
	}
	return s.db
}

func openState(dir string) (*state, error) {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("homefs: state: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "data")} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("homefs: state: %w", err)
		}
	}
	u := url.URL{Scheme: "file", Path: filepath.Join(dir, "state.db")}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL: a committed transaction survives a crash of this process (kill -9), which is
	// what "fsync'd" promises here; a power cut may lose the last ones, and then the files
	// are still sealed and queued (their blobs are journaled by uploadq with fsync).
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("homefs: state: %w", err)
	}
	db.SetMaxOpenConns(1)
	s := &state{db: db, dir: dir}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	os.Chmod(filepath.Join(dir, "state.db"), 0o600)
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.stAttr, `SELECT ` + attrCols + ` FROM nodes WHERE ino = ?`},
		{&s.stLookupAttr, `SELECT ` + attrCols + ` FROM nodes WHERE parent = ? AND name = ?`},
		{&s.stChildren, `SELECT ino, name, type FROM nodes WHERE parent = ? ORDER BY name`},
	} {
		if *p.st, err = db.Prepare(p.q); err != nil {
			db.Close()
			return nil, fmt.Errorf("homefs: state: %w", err)
		}
	}
	s.makeReserve()
	return s, nil
}

func (s *state) migrate() error {
	var v int
	if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("homefs: state: %w", err)
	}
	if v > stateVersion {
		return fmt.Errorf("homefs: state.db has schema version %d, this nostrfs knows %d: refusing to touch it", v, stateVersion)
	}
	if v == 1 {
		// Version 2 added nodes.stored (st_blocks without decoding content).
		if _, err := s.db.Exec(`ALTER TABLE nodes ADD COLUMN stored INTEGER NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("homefs: state: migrating to version 2: %w", err)
		}
	}
	if _, err := s.db.Exec(stateSchema); err != nil {
		return fmt.Errorf("homefs: state: %w", err)
	}
	_, err := s.db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, stateVersion))
	return err
}

func (s *state) close() error { return s.db.Close() }

func (s *state) dataPath(ino int64) string {
	return filepath.Join(s.dir, "data", fmt.Sprint(ino))
}

func (s *state) getMeta(key string) (string, error) {
	var v string
	err := s.q().QueryRow(`SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func setMeta(x execer, key, value string) error {
	if value == "" {
		_, err := x.Exec(`DELETE FROM meta WHERE key = ?`, key)
		return err
	}
	_, err := x.Exec(`INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (s *state) get(ino int64) (*row, error) {
	r, err := scanRow(s.q().QueryRow(`SELECT `+rowCols+` FROM nodes WHERE ino = ?`, ino))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, syscall.ENOENT
	}
	return r, err
}

// stmt is st, joined to the transaction under way if there is one.
func (s *state) stmt(st *sql.Stmt) *sql.Stmt {
	if s.cur != nil {
		return s.cur.Stmt(st)
	}
	return st
}

// attr is get without content and xattrs (see attrCols).
func (s *state) attr(ino int64) (*row, error) {
	r, err := scanAttr(s.stmt(s.stAttr).QueryRow(ino))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, syscall.ENOENT
	}
	return r, err
}

// lookupAttr is lookup without content and xattrs.
func (s *state) lookupAttr(parent int64, name string) (*row, error) {
	r, err := scanAttr(s.stmt(s.stLookupAttr).QueryRow(parent, []byte(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, syscall.ENOENT
	}
	return r, err
}

// dirEntry is a child as readdir lists it.
type dirEntry struct {
	ino  int64
	name string
	typ  int
}

// names lists a loaded directory's children, sorted by name.
func (s *state) names(parent int64) ([]dirEntry, error) {
	rows, err := s.stmt(s.stChildren).Query(parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dirEntry
	for rows.Next() {
		var d dirEntry
		var name []byte
		if err := rows.Scan(&d.ino, &name, &d.typ); err != nil {
			return nil, err
		}
		d.name = string(name)
		out = append(out, d)
	}
	return out, rows.Err()
}

// children returns the rows of a loaded directory, sorted bytewise by name (BLOB order is
// memcmp order, the order listings need).
func (s *state) children(parent int64) ([]*row, error) {
	rows, err := s.q().Query(`SELECT `+rowCols+` FROM nodes WHERE parent = ? ORDER BY name`, parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *state) hasChildren(parent int64) (bool, error) {
	var n int
	err := s.q().QueryRow(`SELECT count(*) FROM (SELECT 1 FROM nodes WHERE parent = ? LIMIT 1)`, parent).Scan(&n)
	return n > 0, err
}

// insert adds r (r.ino is ignored) and returns its inode number.
func insert(x execer, r *row) (int64, error) {
	content, err := jsonOrNull(r.content, r.content == nil)
	if err != nil {
		return 0, err
	}
	xattrs, err := jsonOrNull(r.xattrs, len(r.xattrs) == 0)
	if err != nil {
		return 0, err
	}
	var target any
	if r.typ == typeSymlink {
		target = r.target
	}
	res, err := x.Exec(`INSERT INTO nodes(parent, name, type, mode, mtime, size, content, target, xattrs, loaded, dirty, local, stored)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.parent, []byte(r.name), r.typ, r.mode, r.mtime, r.size, content, target, xattrs, r.loaded, r.dirty, r.local, storedBytes(r.content))
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// markDirty marks directory ino and its ancestors as needing a new listing. Invariant: the
// ancestors of a dirty directory are dirty, so the walk stops at the first dirty one.
func markDirty(tx *sql.Tx, ino int64) error {
	for ino != 0 {
		var parent int64
		var dirty bool
		if err := tx.QueryRow(`SELECT parent, dirty FROM nodes WHERE ino = ?`, ino).Scan(&parent, &dirty); err != nil {
			return fmt.Errorf("homefs: state: marking %d dirty: %w", ino, err)
		}
		if dirty {
			return nil
		}
		if _, err := tx.Exec(`UPDATE nodes SET dirty = 1 WHERE ino = ?`, ino); err != nil {
			return err
		}
		ino = parent
	}
	return nil
}

// tx runs f in a transaction.
func (s *state) tx(f func(tx *sql.Tx) error) error {
	if s.cur != nil {
		return f(s.cur) // nested: part of the outer transaction
	}
	err := s.tx1(f)
	if err != nil && diskFull(err) {
		if rerr := os.Remove(s.reservePath()); rerr == nil {
			s.lastReserve = time.Now()
			err = s.tx1(f)
		}
	}
	if err == nil {
		s.makeReserve()
	}
	return err
}

func (s *state) tx1(f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		return err
	}
	s.cur = tx
	err = f(tx)
	s.cur = nil
	if err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// resetTo replaces the whole local view by the tree whose root listing is root (nil: an
// empty home): every row but the root goes, and so does every local data file.
func (s *state) resetTo(root *tree.Content, rootMode uint32, mtime int64) error {
	err := s.tx(func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM nodes`); err != nil {
			return err
		}
		content, err := jsonOrNull(root, root == nil)
		if err != nil {
			return err
		}
		loaded := root == nil || root.Size == 0
		_, err = tx.Exec(`INSERT INTO nodes(ino, parent, name, type, mode, mtime, content, loaded) VALUES(1, 0, x'', ?, ?, ?, ?, ?)`,
			typeDir, rootMode, mtime, content, loaded)
		return err
	})
	if err != nil {
		return fmt.Errorf("homefs: state: reset: %w", err)
	}
	return s.removeDataFiles(nil)
}

// removeDataFiles deletes the data files of inodes that are not local rows (all of them when
// keep is nil and no row is local), except those in keep (open files).
func (s *state) removeDataFiles(keep map[int64]bool) error {
	des, err := os.ReadDir(filepath.Join(s.dir, "data"))
	if err != nil {
		return err
	}
	for _, de := range des {
		var ino int64
		if _, err := fmt.Sscan(de.Name(), &ino); err != nil || keep[ino] {
			continue
		}
		var local bool
		err := s.q().QueryRow(`SELECT local FROM nodes WHERE ino = ?`, ino).Scan(&local)
		if err == nil && local {
			continue
		}
		os.Remove(filepath.Join(s.dir, "data", de.Name()))
	}
	return nil
}
