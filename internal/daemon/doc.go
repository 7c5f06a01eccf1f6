// Package daemon is the work behind org.nostr.Homed1: the nostr-homectl daemon. It implements
// homed.Service (package internal/homed exports it on the system bus and authorises every
// caller before a method here runs): logins with a fresh single-use proof, the login policy,
// warming the local event cache from relays, and reference-counted sessions that decrypt the
// user's secrets to tmpfs and start and stop the mount of the home.
//
// # Files
//
// New opens, next to the user database (cfg.Users.Database, default
// /var/lib/nostr-homed/users.db):
//
//   - the user database itself (internal/userdb; world-readable, nothing secret);
//   - private/events/, the event cache (internal/eventcache; 0700, files 0600): the newest
//     valid settings, manifest, secrets, relay and server lists of each user, never rolled
//     back, so that a login and a session work with every relay down;
//   - uid.key (0600, root), only if users.uid_key is empty in the configuration: the SipHash
//     key of the UID mapping is generated on the first start and kept there, so UIDs stay the
//     same across restarts. UIDs are equal across machines only if they share the key: set
//     users.uid_key in the configuration (e.g. to this file's contents) on every machine.
//
// Session secrets go to cfg.Session.RuntimeDir/UID/secrets/ (see Sessions).
//
// # Logins
//
// BeginLogin looks the user up (unknown: UnknownUser, so PAM returns PAM_USER_UNKNOWN and
// the stack moves on), reads the user's cached settings (kind 30078; if none are cached it
// warms first, bounded; still none: Unavailable) and offers the first login method of the
// settings: "password" (the NIP-49 ncryptsec of the settings) or "remote-signer" (the NIP-46
// bunker:// URI of the settings). The challenge comes from a login.Issuer (TTL
// cfg.Login.ChallengeTTL); the daemon remembers which method and user each login ID is for.
//
// CompleteLogin proves and verifies: login.ProveWithPassword (wrong password: the login is
// cancelled and the answer is AuthFailed; the same ID again is then AuthFailed too) or
// login.ProveWithBunker bounded by cfg.Login.RemoteSignerTimeout, then Issuer.Verify, which
// consumes the login whatever the outcome (the same ID again: ProofReplayed). Errors are
// mapped with login.DBusErrorName. On success the signer (a keys.Secret in locked memory, or
// the connected login.RemoteSigner) is kept as the user's session signer, pending the first
// OpenSession; if no session opens within Options.SignerGrace (5 minutes) it is wiped.
//
// # Sessions
//
// OpenSession and CloseSession are reference-counted per user. The first OpenSession needs
// the signer of a login that has just succeeded (a session opened without one, e.g. after an
// SSH public-key login, fails: the home cannot be unlocked without the user's key); later
// ones only count. The first one:
//
//  1. warms the cache (bounded; with every relay down it goes on with the cache);
//  2. decrypts the cached 30079 secrets with the session signer and writes each file to
//     RuntimeDir/UID/secrets/ (see below);
//  3. creates the mount point, the user's home from the user database (HomeBase/USER by
//     default), 0700 and owned by the user, if it is missing;
//  4. starts the mount through the Mounter and waits for it to be ready within
//     cfg.Session.MountTimeout.
//
// If any step fails, what the earlier steps did is undone (secrets wiped, signer wiped), the
// count stays at 0 and the error is MountFailed (Timeout if the mount was not ready in
// time). The last CloseSession stops the mount (SIGTERM, then SIGKILL after
// cfg.Session.FlushTimeout), wipes the secrets and then the signer. Closing a session that is
// not open is an error (org.nostr.Homed1.Error.Failed, "no session of USER is open").
//
// From the moment a session starts opening until its mount has stopped at the last close,
// its signer is also served on the bus as org.nostr.Signer at /org/nostr/Homed1/signer/UID, for root and that user only
// (package homed; SessionSigner is the lookup).
//
// Secrets are written without following symbolic links: every component of RuntimeDir is
// opened with O_NOFOLLOW (a symlink anywhere in the path is refused, so is a RuntimeDir not
// owned by root or writable by others); RuntimeDir/UID is 0700 and owned by the user;
// secrets/ is emptied if a crash left it behind, created afresh, and each file is created
// with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, owned by the user, before the directory is
// handed to the user. Wiping overwrites every file with zeros before unlinking it (tmpfs
// frees pages without clearing them), then removes the directory.
//
// # Removing a user
//
// TerminateSessions (called by `nostr-homectl remove` before it takes the user out of the
// database) ends every session of a user whatever the count, through the same path as the
// last CloseSession (waiting first for an opening or closing that is under way), wipes a
// signer that waits for its first session, and drops the user's outstanding logins. For
// RemovalHold (one minute) afterwards, BeginLogin, CheckAccount and so OpenSession refuse
// the user with NotAllowed, so that no login slips in before the user is gone from the
// database; a CompleteLogin that was already running drops the signer it got. Once the user
// is out of the database, BeginLogin and OpenSession fail with UnknownUser, and a
// CompleteLogin that finishes after that, or after the user was enrolled again with another
// key, keeps no signer.
//
// # Warm progress
//
// WarmCache reports its stages (homed.Stage*: start, asking, answered, found, not-found,
// refused, then done or failed) to a homed.Progress as they happen; package homed sends
// them as WarmProgress signals to the caller alone. The warms of logins and session starts
// report nothing.
//
// # Mounters and the readiness protocol
//
// A Mounter starts the mount of one user's home and says when it is ready. Two exist:
//
//   - Supervisor (session.supervisor "builtin", or "auto" without systemd): nostr-homectl
//     runs `nostrfs --user USER --mount DIR --config PATH` as its own child.
//   - Systemd (session.supervisor "systemd", or "auto" when /run/systemd/system exists):
//     starts nostrfs@USER.service through systemd's D-Bus API (go-systemd) and waits for the
//     start job; the unit is Type=notify, so systemd finishes the job at READY=1.
//
// Readiness is systemd's sd_notify protocol in both cases, so nostrfs has one code path: the
// supervisor creates a unix datagram socket in a directory only root can enter
// (RuntimeDir/.supervisor/notify-*/notify), passes its path in $NOTIFY_SOCKET, enables
// SO_PASSCRED and accepts datagrams only from the child's process ID (systemd's
// NotifyAccess=main). A datagram is newline-separated KEY=VALUE assignments; READY=1 means
// the home is mounted and served, STATUS=... is a line for people (shown by GetStatus),
// STOPPING=1 that it is shutting down. The child is started with a minimal environment
// (PATH, NOTIFY_SOCKET, and DBUS_SYSTEM_BUS_ADDRESS if the daemon has one), in its own process group, with SIGTERM as its parent-death signal.
// If the child exits before READY=1, the mount failed: the error carries the end of its
// stderr. If MountTimeout passes first, the child is killed and the error is Timeout.
// Stopping sends SIGTERM (nostrfs then flushes and unmounts), waits up to FlushTimeout,
// sends SIGKILL to the process group, and detaches a mount left behind (umount2 MNT_DETACH).
//
// # Locking
//
// Two kinds of locks, taken in this order and never the other way round:
//
//  1. Daemon.mu guards the daemon's maps: the login records (login ID → user and method),
//     the per-user state objects, the last warm report of each key, and the closing flag.
//  2. userState.mu, one per user, guards that user's session: the reference count, the
//     phase (closed, opening, open, closing), the running mount, and the session signer.
//
// In practice no code holds both: Daemon.mu is released before a userState.mu is taken.
// Neither is ever held across a network call (relays, a remote signer), a D-Bus call, a
// mount start or stop, or scrypt: the slow part of opening or closing a session runs with
// the user's phase set to "opening" or "closing" and the lock released, and a concurrent
// OpenSession or CloseSession of the same user waits on the phase's done channel and then
// looks again. godbus runs every incoming call in its own goroutine, so calls for different
// users (and CompleteLogins waiting for remote signers) run in parallel. The packages used
// underneath (userdb, eventcache, login.Issuer) have their own internal locks, which are
// leaves: they are never held while one of these is taken.
package daemon
