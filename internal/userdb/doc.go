// Package userdb is the writer side of the nostr-homed user cache: the SQLite database that
// libnss_nostr.so.2 (nss/) reads to resolve users and groups. nostr-homectl, the daemon, is
// its only writer; everything else reads it through NSS.
//
// # What it stores
//
// The schema is schema.sql (embedded; the contract with the NSS module). users: one row per
// enrolled public key (hex x-only key, POSIX login name, uid, gid, gecos, home, shell, time
// of enrolment). groups: each user's private group (gid = uid, same name) and the
// supplementary groups an admin adds. members: supplementary memberships by login name.
// uid_allocations: every UID ever given to a public key. gid_allocations: every GID ever
// given to a supplementary group name (the NSS module does not read this table).
// meta('schema_version'): the version of this schema; the NSS module reads version 1 only.
// Nothing in the database is secret.
//
// # Files and modes
//
// Open creates the directory with mode 0755 (if it does not exist) and the database file
// with mode 0644, whatever the umask, and resets the file to 0644 on every open: every
// process that resolves a user name loads the NSS module and reads this file, so it must be
// world-readable, and it holds nothing secret (locked keys, manifests and session secrets
// live elsewhere with tight modes). The database runs in WAL mode with a busy timeout,
// synchronous=FULL and foreign keys on.
//
// A read-only SQLite connection to a WAL database needs the -wal and -shm files to exist:
// if they are absent and the reader cannot create them (any non-root process, since the
// directory belongs to root), SQLite fails with SQLITE_READONLY_CANTINIT, and the NSS module
// falls back to reading the main file with immutable=1, which misses whatever is still in
// the WAL. So the writer keeps both files: every connection sets SQLITE_FCNTL_PERSIST_WAL,
// so closing the last connection leaves -wal (truncated to zero bytes by a final TRUNCATE
// checkpoint) and -shm in place, and Open chmods both to 0644. While the writer is open,
// readers use the -shm read-only; once it has closed (or crashed), SQLite reads the WAL itself
// into private memory. The tests check both with a real non-root getent.
//
// Updates happen in place, in transactions (BEGIN IMMEDIATE). The file is never replaced by
// a rename: the NSS module keeps its connection open and only notices a replaced file on its
// next call (nss/README.md), and the -wal/-shm files next to it would then belong to another
// database (SQLite could apply the old WAL to the new file).
//
// Do not open the database file or its -wal/-shm with os.Open in a process that has a DB
// open: SQLite uses POSIX record locks, which the kernel drops at any close(2) of any
// descriptor of the file in the process.
//
// # UIDs and GIDs
//
// A user's UID is derived from the 32-byte public key:
//
//	uid = Base + SipHash-2-4(Key, pubkey) mod Range
//
// with Key (16 bytes), Base and Range from Options. The default range is DefaultBase
// (65536) to DefaultBase+DefaultRange-1 (99999): inside 65536-524287, which systemd leaves
// unused (systemd's UIDS-GIDS.md), and below 100000, where shadow's useradd starts the
// subordinate UID/GID ranges of /etc/subuid and /etc/subgid (SUB_UID_MIN), which rootless
// containers run as and which no passwd file lists. With a site-wide Key every machine maps
// a key to the same UID unless that slot is taken there.
//
// The slot is taken if the ID is a UID in the passwd file (Options.PasswdPath, default
// /etc/passwd) or a GID in the group file (Options.GroupPath, /etc/group; the private group
// has gid = uid), lies inside a range of the subordinate ID files (Options.SubUIDPath and
// SubGIDPath, /etc/subuid and /etc/subgid, absent files are empty), is 0, 65535 or
// 4294967295, or was ever allocated in this cache (uid_allocations or gid_allocations,
// including users and groups since removed). Then the next slot is probed, wrapping inside
// the range, and the result is recorded in uid_allocations. When every slot is taken,
// AddUser fails with ErrRangeFull. Other NSS sources (LDAP, sssd) are not consulted: keep
// their IDs out of the configured range.
//
// Never reassigned: a public key that was ever allocated a UID gets that UID back (after a
// restart, after its removal and re-enrolment, even if Key, Base or Range changed since), and
// no other key ever gets it, so files a removed user left behind never change owner. If a
// recorded UID has since appeared in the passwd or group file, AddUser refuses with
// ErrIDConflict rather than share it.
//
// Supplementary groups (AddGroup) get their GIDs from the same mechanism and the same range,
// hashing "nostr-homed group\x00" + name instead of a public key, recorded per name in
// gid_allocations. Sharing one ID space means a supplementary GID never equals a cached
// user's UID, and so never a private group's GID.
//
// # Names
//
// User and group names must match ^[a-z_][a-z0-9_-]{0,31}$ and not be all digits
// (ErrInvalidName). A name already used by a cached user or group, or by a user in the passwd
// file or a group in the group file, is refused with ErrNameTaken naming the clash; nothing
// is ever overwritten. Enrolling a public key twice fails with ErrExists ("already enrolled as
// NAME").
//
// # Concurrency
//
// One writer process (nostr-homectl). Within it a DB is safe for concurrent use: calls are
// serialised on one connection. Every change is one SQLite transaction begun with BEGIN
// IMMEDIATE, so even two writers (say a second nostr-homectl run by mistake) never hand out
// the same ID: the second waits on the busy timeout and then sees the first one's rows; the
// UNIQUE constraints are the last line of defence. NSS readers never block the writer (WAL).
package userdb
