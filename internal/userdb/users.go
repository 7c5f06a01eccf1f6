package userdb

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"path"
	"strconv"
	"strings"
	"time"
)

// User is one enrolled user as the cache stores it.
type User struct {
	Pubkey     string // 64 lowercase hex characters (x-only public key)
	Name       string // POSIX login name
	UID, GID   uint32 // assigned by AddUser; GID = UID (the private group)
	Gecos      string
	Home       string // absolute
	Shell      string // absolute
	EnrolledAt time.Time
}

func parsePubkey(s string) ([32]byte, string, error) {
	var pk [32]byte
	lower := strings.ToLower(s)
	b, err := hex.DecodeString(lower)
	if err != nil || len(b) != 32 {
		return pk, "", errorf(ErrInvalid, "public key %q is not 64 hex characters", s)
	}
	copy(pk[:], b)
	return pk, lower, nil
}

// checkField refuses what the NSS module would refuse to serve (':' or a newline) and other
// control characters.
func checkField(field, v string, absolute bool) error {
	if len(v) > 4096 {
		return errorf(ErrInvalid, "%s is longer than 4096 bytes", field)
	}
	for _, r := range v {
		if r == ':' || r < 0x20 || r == 0x7f {
			return errorf(ErrInvalid, "%s %q contains ':' or a control character", field, v)
		}
	}
	if absolute && !path.IsAbs(v) {
		return errorf(ErrInvalid, "%s %q is not an absolute path", field, v)
	}
	return nil
}

// nameFree refuses a name that a cached user or group, or the passwd or group file, uses.
func (d *DB) nameFree(ctx context.Context, tx *sql.Tx, sys *systemIDs, kind, name string) error {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT uid FROM users WHERE name = ?`, name).Scan(&id)
	if err == nil {
		return errorf(ErrNameTaken, "%s name %s is taken: cached user %s (uid %d)", kind, name, name, id)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	err = tx.QueryRowContext(ctx, `SELECT gid FROM groups WHERE name = ?`, name).Scan(&id)
	if err == nil {
		return errorf(ErrNameTaken, "%s name %s is taken: cached group %s (gid %d)", kind, name, name, id)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if uid, ok := sys.userByName[name]; ok {
		return errorf(ErrNameTaken, "%s name %s is taken: %s has user %s (uid %d)", kind, name, d.opts.PasswdPath, name, uid)
	}
	if gid, ok := sys.groupByName[name]; ok {
		return errorf(ErrNameTaken, "%s name %s is taken: %s has group %s (gid %d)", kind, name, d.opts.GroupPath, name, gid)
	}
	return nil
}

// AddUser enrols a public key: it assigns the UID (see the package doc), creates the user and
// its private group (gid = uid, same name) in one transaction, and returns the stored user.
// u.UID, u.GID and u.EnrolledAt are ignored; an empty Home is Options.HomeBase/NAME, an
// empty Shell is Options.Shell. Errors: ErrInvalid, ErrInvalidName, ErrExists (the key is
// already enrolled), ErrNameTaken, ErrIDConflict, ErrRangeFull.
func (d *DB) AddUser(ctx context.Context, u User) (User, error) {
	pk, hexpk, err := parsePubkey(u.Pubkey)
	if err != nil {
		return User{}, err
	}
	u.Pubkey = hexpk
	if err := checkName("user", u.Name); err != nil {
		return User{}, err
	}
	if u.Home == "" {
		u.Home = path.Join(d.opts.HomeBase, u.Name)
	}
	if u.Shell == "" {
		u.Shell = d.opts.Shell
	}
	if err := checkField("gecos", u.Gecos, false); err != nil {
		return User{}, err
	}
	if err := checkField("home", u.Home, true); err != nil {
		return User{}, err
	}
	if err := checkField("shell", u.Shell, true); err != nil {
		return User{}, err
	}
	sys, err := loadSystemIDs(&d.opts)
	if err != nil {
		return User{}, err
	}

	db, unlock, err := d.lock()
	if err != nil {
		return User{}, err
	}
	defer unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, d.txErr("add user", err)
	}
	defer tx.Rollback()

	var enrolledAs string
	err = tx.QueryRowContext(ctx, `SELECT name FROM users WHERE pubkey = ?`, hexpk).Scan(&enrolledAs)
	if err == nil {
		return User{}, errorf(ErrExists, "public key %s is already enrolled as %s", hexpk, enrolledAs)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return User{}, d.txErr("add user", err)
	}
	if err := d.nameFree(ctx, tx, sys, "user", u.Name); err != nil {
		return User{}, d.txErr("add user", err)
	}
	uid, err := d.allocUID(ctx, tx, sys, pk, hexpk)
	if err != nil {
		return User{}, d.txErr("add user", err)
	}
	u.UID, u.GID = uid, uid
	u.EnrolledAt = time.Now().Truncate(time.Second)
	_, err = tx.ExecContext(ctx, `INSERT INTO users(pubkey, name, uid, gid, gecos, home, shell, enrolled_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		u.Pubkey, u.Name, u.UID, u.GID, u.Gecos, u.Home, u.Shell, u.EnrolledAt.Unix())
	if err != nil {
		return User{}, d.txErr("add user", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO groups(gid, name) VALUES (?, ?)`, u.GID, u.Name); err != nil {
		return User{}, d.txErr("add user", err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, d.txErr("add user", err)
	}
	return u, nil
}

// RemoveUser removes a user, its private group and its supplementary memberships. Its UID
// stays recorded in uid_allocations: no other key will ever get it, and the same key gets it
// back if enrolled again.
func (d *DB) RemoveUser(ctx context.Context, name string) error {
	db, unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return d.txErr("remove user", err)
	}
	defer tx.Rollback()
	u, err := queryUser(ctx, tx, `WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return errorf(ErrNotFound, "no cached user %s", name)
	} else if err != nil {
		return d.txErr("remove user", err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM members WHERE user_name = ?`, []any{u.Name}},
		{`DELETE FROM groups WHERE gid = ? AND name = ?`, []any{u.GID, u.Name}},
		{`DELETE FROM users WHERE pubkey = ?`, []any{u.Pubkey}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return d.txErr("remove user", err)
		}
	}
	return d.txErr("remove user", tx.Commit())
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const userCols = `SELECT pubkey, name, uid, gid, gecos, home, shell, enrolled_at FROM users `

type scanner interface{ Scan(dest ...any) error }

func scanUser(s scanner) (User, error) {
	var u User
	var enrolled int64
	err := s.Scan(&u.Pubkey, &u.Name, &u.UID, &u.GID, &u.Gecos, &u.Home, &u.Shell, &enrolled)
	u.EnrolledAt = time.Unix(enrolled, 0)
	return u, err
}

func queryUser(ctx context.Context, q querier, where string, args ...any) (User, error) {
	return scanUser(q.QueryRowContext(ctx, userCols+where, args...))
}

func (d *DB) getUser(ctx context.Context, what string, where string, args ...any) (User, error) {
	db, unlock, err := d.lock()
	if err != nil {
		return User{}, err
	}
	defer unlock()
	u, err := queryUser(ctx, db, where, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, errorf(ErrNotFound, "no cached user with %s", what)
	} else if err != nil {
		return User{}, d.txErr("lookup", err)
	}
	return u, nil
}

// User returns the cached user with this login name (ErrNotFound if none).
func (d *DB) User(ctx context.Context, name string) (User, error) {
	return d.getUser(ctx, "name "+name, `WHERE name = ?`, name)
}

// UserByPubkey returns the user enrolled with this public key (64 hex characters).
func (d *DB) UserByPubkey(ctx context.Context, pubkey string) (User, error) {
	_, hexpk, err := parsePubkey(pubkey)
	if err != nil {
		return User{}, err
	}
	return d.getUser(ctx, "public key "+hexpk, `WHERE pubkey = ?`, hexpk)
}

// UserByUID returns the cached user with this UID.
func (d *DB) UserByUID(ctx context.Context, uid uint32) (User, error) {
	return d.getUser(ctx, "uid "+strconv.FormatUint(uint64(uid), 10), `WHERE uid = ?`, uid)
}

// List returns every cached user, by UID.
func (d *DB) List(ctx context.Context) ([]User, error) {
	db, unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	rows, err := db.QueryContext(ctx, userCols+`ORDER BY uid`)
	if err != nil {
		return nil, d.txErr("list", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, d.txErr("list", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, d.txErr("list", err)
	}
	return out, nil
}

// AllocatedUID returns the UID ever recorded for a public key, enrolled or not, and whether
// there is one.
func (d *DB) AllocatedUID(ctx context.Context, pubkey string) (uint32, bool, error) {
	_, hexpk, err := parsePubkey(pubkey)
	if err != nil {
		return 0, false, err
	}
	db, unlock, err := d.lock()
	if err != nil {
		return 0, false, err
	}
	defer unlock()
	var uid uint32
	err = db.QueryRowContext(ctx, `SELECT uid FROM uid_allocations WHERE pubkey = ?`, hexpk).Scan(&uid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, d.txErr("lookup", err)
	}
	return uid, true, nil
}
