package userdb

import (
	"context"
	"database/sql"
	"errors"
)

// Group is one cached group.
type Group struct {
	Name    string
	GID     uint32
	Members []string // supplementary members by login name, sorted
	Private bool     // the private group of the user with the same name (gid = uid)
}

// AddGroup creates a supplementary group. Its GID comes from the same range and mechanism as
// UIDs (see the package doc) and is recorded in gid_allocations: the same name gets the same
// GID back after a RemoveGroup, and no other name or user ever gets it. Errors:
// ErrInvalidName, ErrNameTaken, ErrIDConflict, ErrRangeFull.
func (d *DB) AddGroup(ctx context.Context, name string) (Group, error) {
	if err := checkName("group", name); err != nil {
		return Group{}, err
	}
	sys, err := loadSystemIDs(&d.opts)
	if err != nil {
		return Group{}, err
	}
	db, unlock, err := d.lock()
	if err != nil {
		return Group{}, err
	}
	defer unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return Group{}, d.txErr("add group", err)
	}
	defer tx.Rollback()
	if err := d.nameFree(ctx, tx, sys, "group", name); err != nil {
		return Group{}, d.txErr("add group", err)
	}
	gid, err := d.allocGID(ctx, tx, sys, name)
	if err != nil {
		return Group{}, d.txErr("add group", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO groups(gid, name) VALUES (?, ?)`, gid, name); err != nil {
		return Group{}, d.txErr("add group", err)
	}
	if err := tx.Commit(); err != nil {
		return Group{}, d.txErr("add group", err)
	}
	return Group{Name: name, GID: gid, Members: []string{}}, nil
}

// RemoveGroup removes a supplementary group and its memberships; its GID stays recorded. A
// user's private group cannot be removed on its own (ErrPrivateGroup).
func (d *DB) RemoveGroup(ctx context.Context, name string) error {
	db, unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return d.txErr("remove group", err)
	}
	defer tx.Rollback()
	g, err := queryGroup(ctx, tx, name)
	if err != nil {
		return d.txErr("remove group", err)
	}
	if g.Private {
		return errorf(ErrPrivateGroup, "group %s is the private group of user %s; remove the user instead", name, name)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE gid = ?`, g.GID); err != nil {
		return d.txErr("remove group", err)
	}
	return d.txErr("remove group", tx.Commit())
}

func queryGroup(ctx context.Context, q querier, name string) (Group, error) {
	g := Group{Name: name, Members: []string{}}
	var private int
	err := q.QueryRowContext(ctx, `SELECT g.gid, EXISTS (SELECT 1 FROM users AS u WHERE u.name = g.name AND u.gid = g.gid)
		FROM groups AS g WHERE g.name = ?`, name).Scan(&g.GID, &private)
	if errors.Is(err, sql.ErrNoRows) {
		return Group{}, errorf(ErrNotFound, "no cached group %s", name)
	} else if err != nil {
		return Group{}, err
	}
	g.Private = private == 1
	rows, err := q.QueryContext(ctx, `SELECT user_name FROM members WHERE gid = ? ORDER BY user_name`, g.GID)
	if err != nil {
		return Group{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return Group{}, err
		}
		g.Members = append(g.Members, m)
	}
	return g, rows.Err()
}

// Group returns a cached group (private or supplementary) with its members.
func (d *DB) Group(ctx context.Context, name string) (Group, error) {
	db, unlock, err := d.lock()
	if err != nil {
		return Group{}, err
	}
	defer unlock()
	g, err := queryGroup(ctx, db, name)
	return g, d.txErr("lookup group", err)
}

// Groups returns every cached group, by GID, with members.
func (d *DB) Groups(ctx context.Context) ([]Group, error) {
	db, unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	rows, err := db.QueryContext(ctx, `SELECT name FROM groups ORDER BY gid`)
	if err != nil {
		return nil, d.txErr("list groups", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, d.txErr("list groups", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, d.txErr("list groups", err)
	}
	out := make([]Group, 0, len(names))
	for _, n := range names {
		g, err := queryGroup(ctx, db, n)
		if err != nil {
			return nil, d.txErr("list groups", err)
		}
		out = append(out, g)
	}
	return out, nil
}

// AddMember makes user a supplementary member of a cached group. user is a cached user or a
// user of the passwd file. Errors: ErrNotFound (no such group or user), ErrExists (already a
// member, or it is the user's primary group).
func (d *DB) AddMember(ctx context.Context, group, user string) error {
	sys, err := loadSystemIDs(&d.opts)
	if err != nil {
		return err
	}
	db, unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return d.txErr("add member", err)
	}
	defer tx.Rollback()
	g, err := queryGroup(ctx, tx, group)
	if err != nil {
		return d.txErr("add member", err)
	}
	u, err := queryUser(ctx, tx, `WHERE name = ?`, user)
	switch {
	case err == nil:
		if u.GID == g.GID {
			return errorf(ErrExists, "group %s is already the primary group of user %s", group, user)
		}
	case errors.Is(err, sql.ErrNoRows):
		if _, ok := sys.userByName[user]; !ok {
			return errorf(ErrNotFound, "no user %s in the cache or in %s", user, d.opts.PasswdPath)
		}
	default:
		return d.txErr("add member", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO members(gid, user_name) VALUES (?, ?)`, g.GID, user)
	if err != nil {
		return d.txErr("add member", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return d.txErr("add member", err)
	} else if n == 0 {
		return errorf(ErrExists, "user %s is already a member of group %s", user, group)
	}
	return d.txErr("add member", tx.Commit())
}

// RemoveMember removes user from the supplementary members of group (ErrNotFound if the
// group does not exist or user is not a member).
func (d *DB) RemoveMember(ctx context.Context, group, user string) error {
	db, unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return d.txErr("remove member", err)
	}
	defer tx.Rollback()
	g, err := queryGroup(ctx, tx, group)
	if err != nil {
		return d.txErr("remove member", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM members WHERE gid = ? AND user_name = ?`, g.GID, user)
	if err != nil {
		return d.txErr("remove member", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return d.txErr("remove member", err)
	} else if n == 0 {
		return errorf(ErrNotFound, "user %s is not a member of group %s", user, group)
	}
	return d.txErr("remove member", tx.Commit())
}
