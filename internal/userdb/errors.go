package userdb

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns for one of these conditions wraps the
// sentinel (test with errors.Is) and carries a message that names what clashed.
var (
	// ErrExists: the public key is already enrolled, the member is already in the group.
	ErrExists = errors.New("already exists")
	// ErrNotFound: no such user, group or membership.
	ErrNotFound = errors.New("not found")
	// ErrNameTaken: the name belongs to a cached user or group, or to an entry of the passwd
	// or group file.
	ErrNameTaken = errors.New("name taken")
	// ErrInvalidName: not a valid POSIX login or group name (see ValidName).
	ErrInvalidName = errors.New("invalid name")
	// ErrRangeFull: every ID in the configured range is taken.
	ErrRangeFull = errors.New("id range full")
	// ErrIDConflict: the ID recorded for this key or group name is now used by an entry of
	// the passwd or group file (or by another row of the cache); it is not shared.
	ErrIDConflict = errors.New("id conflict")
	// ErrInvalid: a malformed argument other than a name (public key, home, shell, gecos)
	// or invalid Options.
	ErrInvalid = errors.New("invalid argument")
	// ErrPrivateGroup: the group is a user's private group; it goes with the user.
	ErrPrivateGroup = errors.New("private group")
	// ErrSchemaTooNew: the database has a schema version newer than this package knows.
	ErrSchemaTooNew = errors.New("schema version too new")
	// ErrNotUserDB: the file is an SQLite database but not a nostr-homed user cache.
	ErrNotUserDB = errors.New("not a nostr-homed user cache")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("database closed")
)

// Error is the type of the errors that wrap a sentinel: Kind is the sentinel, the message
// says what happened.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return "userdb: " + e.Msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
