package userdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// groupHashPrefix separates the inputs of group GIDs from those of user UIDs (32-byte keys).
const groupHashPrefix = "nostr-homed group\x00"

// slot returns the ID the mapping gives input before any probing:
// Base + SipHash-2-4(Key, input) mod Range (with the defaults of Options filled in).
func (o Options) slot(input []byte) uint64 {
	return uint64(o.Base) + sipHash24(o.Key, input)%uint64(o.Range)
}

// UserSlot returns the UID a public key maps to before probing: the UID it gets unless that
// slot is taken. pubkey is 64 hex characters.
func (o Options) UserSlot(pubkey string) (uint32, error) {
	o, err := o.withDefaults()
	if err != nil {
		return 0, err
	}
	pk, _, err := parsePubkey(pubkey)
	if err != nil {
		return 0, err
	}
	return uint32(o.slot(pk[:])), nil
}

// GroupSlot returns the GID a supplementary group name maps to before probing.
func (o Options) GroupSlot(name string) (uint32, error) {
	o, err := o.withDefaults()
	if err != nil {
		return 0, err
	}
	return uint32(o.slot([]byte(groupHashPrefix + name))), nil
}

// reservedID: IDs never given out whatever the range: root, the 16-bit (uid_t)-1 that some
// tools still treat as "no ID", and the 32-bit (uid_t)-1.
func reservedID(id uint64) bool {
	return id == 0 || id == 65535 || id >= 0xffffffff
}

// dbTakenIDs returns every ID the cache uses or ever allocated.
func dbTakenIDs(ctx context.Context, tx *sql.Tx) (map[uint64]bool, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT uid FROM uid_allocations UNION SELECT gid FROM gid_allocations
		UNION SELECT uid FROM users UNION SELECT gid FROM users UNION SELECT gid FROM groups`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	taken := map[uint64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if id >= 0 {
			taken[uint64(id)] = true
		}
	}
	return taken, rows.Err()
}

// probe returns the first free ID at start or after it, wrapping inside the range.
func (o *Options) probe(start uint64, dbTaken map[uint64]bool, sys *systemIDs) (uint32, bool) {
	base, n := uint64(o.Base), uint64(o.Range)
	off := start - base
	for examined := uint64(0); examined < n; {
		id := base + off
		if i, ok := sys.rangeAt(id); ok {
			// Skip the whole subordinate range (it may be large) up to the end of ours.
			end := min(sys.ranges[i].last, base+n-1)
			skip := end - id + 1
			examined += skip
			off = (off + skip) % n
			continue
		}
		if _, ok := sys.ids[id]; ok || dbTaken[id] || reservedID(id) {
			examined++
			off = (off + 1) % n
			continue
		}
		return uint32(id), true
	}
	return 0, false
}

// checkRecorded verifies that an ID recorded for a key (or group name) is still free for it:
// no local account file uses it and no row of the cache but the key's own allocation does.
// allocTable is the table the recorded ID comes from.
func checkRecorded(ctx context.Context, tx *sql.Tx, sys *systemIDs, id int64, what, allocTable string) error {
	if what2, ok := sys.taken(uint64(id)); ok {
		return errorf(ErrIDConflict, "ID %d recorded for %s is now in use: %s; refusing to share it",
			id, what, what2)
	}
	q := `SELECT 'cached user ' || name FROM users WHERE uid = ?1 OR gid = ?1
		UNION ALL SELECT 'cached group ' || name FROM groups WHERE gid = ?1`
	if allocTable == "uid_allocations" {
		q += ` UNION ALL SELECT 'group allocation of ' || name FROM gid_allocations WHERE gid = ?1`
	} else {
		q += ` UNION ALL SELECT 'user allocation of ' || pubkey FROM uid_allocations WHERE uid = ?1`
	}
	var user string
	err := tx.QueryRowContext(ctx, q+" LIMIT 1", id).Scan(&user)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	return errorf(ErrIDConflict, "ID %d recorded for %s is in use by %s; refusing to share it", id, what, user)
}

// allocUID returns the UID of a public key: the recorded one, or a new one that it records.
func (d *DB) allocUID(ctx context.Context, tx *sql.Tx, sys *systemIDs, pk [32]byte, hexpk string) (uint32, error) {
	var rec int64
	err := tx.QueryRowContext(ctx, `SELECT uid FROM uid_allocations WHERE pubkey = ?`, hexpk).Scan(&rec)
	switch {
	case err == nil:
		if err := checkRecorded(ctx, tx, sys, rec, "public key "+hexpk, "uid_allocations"); err != nil {
			return 0, err
		}
		return uint32(rec), nil
	case !errors.Is(err, sql.ErrNoRows):
		return 0, err
	}
	taken, err := dbTakenIDs(ctx, tx)
	if err != nil {
		return 0, err
	}
	id, ok := d.opts.probe(d.opts.slot(pk[:]), taken, sys)
	if !ok {
		return 0, d.rangeFull("public key " + hexpk)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO uid_allocations(uid, pubkey) VALUES (?, ?)`, id, hexpk); err != nil {
		return 0, err
	}
	return id, nil
}

// allocGID returns the GID of a supplementary group name: the recorded one, or a new one
// that it records.
func (d *DB) allocGID(ctx context.Context, tx *sql.Tx, sys *systemIDs, name string) (uint32, error) {
	var rec int64
	err := tx.QueryRowContext(ctx, `SELECT gid FROM gid_allocations WHERE name = ?`, name).Scan(&rec)
	switch {
	case err == nil:
		if err := checkRecorded(ctx, tx, sys, rec, "group "+name, "gid_allocations"); err != nil {
			return 0, err
		}
		return uint32(rec), nil
	case !errors.Is(err, sql.ErrNoRows):
		return 0, err
	}
	taken, err := dbTakenIDs(ctx, tx)
	if err != nil {
		return 0, err
	}
	id, ok := d.opts.probe(d.opts.slot([]byte(groupHashPrefix+name)), taken, sys)
	if !ok {
		return 0, d.rangeFull("group " + name)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO gid_allocations(gid, name) VALUES (?, ?)`, id, name); err != nil {
		return 0, err
	}
	return id, nil
}

func (d *DB) rangeFull(what string) error {
	return errorf(ErrRangeFull, "no free ID for %s: all %d IDs in %d..%d are taken (in use, ever allocated, or listed in %s, %s, %s or %s); widen Options.Range",
		what, d.opts.Range, d.opts.Base, uint64(d.opts.Base)+uint64(d.opts.Range)-1,
		d.opts.PasswdPath, d.opts.GroupPath, d.opts.SubUIDPath, d.opts.SubGIDPath)
}

// txErr wraps an unexpected database error.
func (d *DB) txErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("userdb: %s (%s): %w", op, d.path, err)
}
