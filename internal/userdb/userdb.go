package userdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite"
)

//go:embed schema.sql
var schemaSQL string

// SchemaVersion is the newest meta.schema_version this package reads and writes. The NSS
// module reads exactly this version; a bump is a change to the columns it reads.
const SchemaVersion = 1

// migrations[v] upgrades a database from schema version v to v+1 (run in one transaction
// with the version update). Additions the NSS module does not read (new tables, say) go
// into schema.sql as CREATE ... IF NOT EXISTS instead, which Open applies on every open.
var migrations = map[int]string{}

// DefaultPath is where nostr-homectl keeps the user cache, and where the NSS module looks for
// it unless NOSTR_HOMED_USERDB says otherwise.
const DefaultPath = "/var/lib/nostr-homed/users.db"

// Defaults of Options.
const (
	DefaultBase       = 65536
	DefaultRange      = 34464 // DefaultBase .. 99999
	DefaultPasswdPath = "/etc/passwd"
	DefaultGroupPath  = "/etc/group"
	DefaultSubUIDPath = "/etc/subuid"
	DefaultSubGIDPath = "/etc/subgid"
	DefaultHomeBase   = "/home"
	DefaultShell      = "/bin/bash"
	DefaultBusy       = 5 * time.Second
)

// Options configures Open. The zero value means every default.
type Options struct {
	// Key is the SipHash-2-4 key of the UID mapping. The zero value (16 zero bytes) is a
	// valid key: every machine that keeps it maps a public key to the same UID. Set one per
	// site to make the mapping unpredictable to outsiders; collisions are handled by probing
	// either way, so a crafted key can only pre-empt a free slot, never take a used one.
	Key [16]byte
	// Base and Range: IDs are allocated in Base .. Base+Range-1. Zero: DefaultBase,
	// DefaultRange. The range must not include 0 and must end below 4294967295.
	Base, Range uint32
	// PasswdPath and GroupPath: the local account files whose names and IDs are never
	// given out. Default /etc/passwd and /etc/group. They must exist.
	PasswdPath, GroupPath string
	// SubUIDPath and SubGIDPath: subordinate ID files (name:start:count); IDs inside their
	// ranges are never given out. Default /etc/subuid and /etc/subgid; absent files are
	// empty.
	SubUIDPath, SubGIDPath string
	// HomeBase and Shell fill User.Home (HomeBase/NAME) and User.Shell when AddUser gets
	// them empty. Default /home and /bin/bash.
	HomeBase, Shell string
	// BusyTimeout: how long a transaction waits for another writer. Default 5 s.
	BusyTimeout time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Base == 0 {
		o.Base = DefaultBase
	}
	if o.Range == 0 {
		o.Range = DefaultRange
	}
	if uint64(o.Base)+uint64(o.Range)-1 >= 0xffffffff {
		return o, errorf(ErrInvalid, "ID range %d..%d reaches 4294967295, which is not a valid ID",
			o.Base, uint64(o.Base)+uint64(o.Range)-1)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.PasswdPath, DefaultPasswdPath)
	def(&o.GroupPath, DefaultGroupPath)
	def(&o.SubUIDPath, DefaultSubUIDPath)
	def(&o.SubGIDPath, DefaultSubGIDPath)
	def(&o.HomeBase, DefaultHomeBase)
	def(&o.Shell, DefaultShell)
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusy
	}
	if !filepath.IsAbs(o.HomeBase) || !filepath.IsAbs(o.Shell) {
		return o, errorf(ErrInvalid, "HomeBase %q and Shell %q must be absolute paths", o.HomeBase, o.Shell)
	}
	return o, nil
}

// DB is the user cache opened for writing. Its methods are safe for concurrent use.
type DB struct {
	mu   sync.Mutex // serialises every call on the one connection
	db   *sql.DB
	path string
	opts Options
}

// Open opens (creating if needed) the user cache at path, applies the schema and any
// migrations, and keeps one connection open until Close. It refuses a database whose
// schema version is newer than SchemaVersion (ErrSchemaTooNew) and an SQLite file that is
// not a user cache (ErrNotUserDB).
func Open(path string, opts Options) (*DB, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errorf(ErrInvalid, "empty database path")
	}
	path, err = filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("userdb: %w", err)
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}

	base, err := sqlite.NewConnector(dsn(path, opts.BusyTimeout))
	if err != nil {
		return nil, fmt.Errorf("userdb: %w", err)
	}
	sdb := sql.OpenDB(persistWALConnector{base})
	// One connection, kept for the DB's life: it serialises the writer and keeps the
	// -wal/-shm files in use.
	sdb.SetMaxOpenConns(1)
	sdb.SetMaxIdleConns(1)
	sdb.SetConnMaxLifetime(0)
	sdb.SetConnMaxIdleTime(0)

	d := &DB{db: sdb, path: path, opts: opts}
	ctx := context.Background()
	if err := d.migrate(ctx); err != nil {
		sdb.Close()
		return nil, err
	}
	var mode string
	if err := sdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("userdb: %s: reading journal_mode: %w", path, err)
	}
	if mode != "wal" {
		sdb.Close()
		return nil, fmt.Errorf("userdb: %s: journal_mode is %q, want wal (does the file system support shared memory?)", path, mode)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o644); err != nil {
			sdb.Close()
			return nil, fmt.Errorf("userdb: %s: the WAL files must exist for non-root readers: %w", path, err)
		}
	}
	return d, nil
}

// prepareFile creates the directory (0755) and the database file (0644) and sets the file's
// mode to 0644. It must run before SQLite opens the file (see the package doc on POSIX
// locks).
func prepareFile(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("userdb: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("userdb: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("userdb: %w", err)
	}
	st, err := f.Stat()
	f.Close()
	if err != nil {
		return fmt.Errorf("userdb: %w", err)
	}
	if !st.Mode().IsRegular() {
		return errorf(ErrInvalid, "%s is not a regular file", path)
	}
	if st.Mode().Perm() != 0o644 {
		if err := os.Chmod(path, 0o644); err != nil {
			return fmt.Errorf("userdb: %w", err)
		}
	}
	return nil
}

func dsn(path string, busy time.Duration) string {
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	return u.String()
}

// persistWALConnector sets SQLITE_FCNTL_PERSIST_WAL on every connection it opens, so that
// closing the last one keeps the -wal and -shm files (see the package doc).
type persistWALConnector struct{ driver.Connector }

func (c persistWALConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	fc, ok := conn.(sqlite.FileControl)
	if !ok {
		conn.Close()
		return nil, errors.New("userdb: the sqlite driver does not offer file control")
	}
	if _, err := fc.FileControlPersistWAL("main", 1); err != nil {
		conn.Close()
		return nil, fmt.Errorf("userdb: SQLITE_FCNTL_PERSIST_WAL: %w", err)
	}
	return conn, nil
}

func (d *DB) migrate(ctx context.Context) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("userdb: %s: %w", d.path, err)
	}
	defer tx.Rollback()

	var tables, meta int
	err = tx.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE name = 'meta')
		FROM sqlite_schema WHERE type = 'table'`).Scan(&tables, &meta)
	if err != nil {
		return fmt.Errorf("userdb: %s: %w", d.path, err)
	}
	version := 0
	if meta == 1 {
		var v string
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errorf(ErrNotUserDB, "%s has a meta table without schema_version", d.path)
		case err != nil:
			return fmt.Errorf("userdb: %s: reading schema_version: %w", d.path, err)
		}
		version, err = strconv.Atoi(v)
		if err != nil || version < 1 {
			return errorf(ErrNotUserDB, "%s has schema_version %q, not a version number", d.path, v)
		}
	} else if tables > 0 {
		return errorf(ErrNotUserDB, "%s has tables but no meta table", d.path)
	}
	if version > SchemaVersion {
		return errorf(ErrSchemaTooNew,
			"%s has schema version %d, newer than the version %d this program knows: refusing to open it (upgrade nostr-homed, or restore a matching backup)",
			d.path, version, SchemaVersion)
	}
	for v := version; v >= 1 && v < SchemaVersion; v++ {
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("userdb: %s: no migration from schema version %d", d.path, v)
		}
		if _, err := tx.ExecContext(ctx, m); err != nil {
			return fmt.Errorf("userdb: %s: migrating from schema version %d: %w", d.path, v, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'schema_version'`,
			strconv.Itoa(v+1)); err != nil {
			return fmt.Errorf("userdb: %s: %w", d.path, err)
		}
	}
	// Idempotent: creates a fresh database, adds tables new to schema.sql to an old one.
	if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("userdb: %s: applying schema: %w", d.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("userdb: %s: %w", d.path, err)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (d *DB) Path() string { return d.path }

// Close checkpoints the WAL into the database file, truncates the -wal file to zero bytes
// and closes the connection. The -wal and -shm files stay (PERSIST_WAL) so that non-root NSS
// readers can still open the database.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return nil
	}
	// Best effort: a reader in the middle of a lookup makes it partial, which is harmless.
	_, _ = d.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	err := d.db.Close()
	d.db = nil
	if err != nil {
		return fmt.Errorf("userdb: closing %s: %w", d.path, err)
	}
	return nil
}

// lock returns the sql.DB with d.mu held and the function that releases it, or ErrClosed.
func (d *DB) lock() (*sql.DB, func(), error) {
	d.mu.Lock()
	if d.db == nil {
		d.mu.Unlock()
		return nil, nil, errorf(ErrClosed, "%s is closed", d.path)
	}
	return d.db, d.mu.Unlock, nil
}
