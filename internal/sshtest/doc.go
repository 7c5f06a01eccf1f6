// Package sshtest holds the end-to-end login test: a private sshd on 127.0.0.1 that
// authenticates with pam_nostr.so (keyboard-interactive), resolves users with
// libnss_nostr.so.2, and opens sessions whose home nostrfs mounts, against the real daemon
// (`nostr-homectl serve`, built from this tree) on a private system-like bus
// (internal/dbustest) with a real relay and Blossom server (internal/devstack). It has no
// code of its own: the tests are in the _test.go files.
//
// TestSSHLogins logs in 50 times in a row (6 with -short), alternating two enrolled users,
// with golang.org/x/crypto/ssh answering the daemon's password prompt. Each login runs a
// command in the user's shell and must end within 20 s (a hang fails the test with sshd's
// log); it checks that $HOME is the home in the daemon's database and the shell starts there,
// that `id -u` is the UID the daemon mapped (`nostr-homectl list --json`) and `id -un` the
// user's name, that $HOME is a fuse.nostrfs mount (findmnt), and that $HOME/.probe holds what
// the user's previous login wrote (the home was unmounted and mounted again in between).
// After each logout the daemon must show the session closed (sshd's PAM close_session,
// the daemon's CloseSession, the unmount). Before the logins a wrong password and an unknown
// user are refused, and sshd stays up. In the end `nostr-homectl status --json` shows no
// session, and nothing is mounted under the homes, neither in the test's mount namespace nor
// in sshd's.
//
// # The pieces
//
// The daemon, the relay, the bus and nostrfs run in the machine's mount namespace, as in a
// real installation. session.supervisor is "builtin": the daemon runs the nostrfs next to
// its own executable; the test builds ./cmd/nostr-homectl and ./cmd/nostrfs into a temp
// directory. All files live under /tmp/sshtest-* (mode 0755, not t.TempDir's 0700: the
// users' shells must reach their homes and their NSS lookups the database).
//
// sshd is a copy of /usr/sbin/sshd named after the PAM service (sshd's program name is its
// PAM service name), /etc/pam.d/nostr-homed-sshtest-<random>: auth, account and session
// are pam_nostr.so alone (its pam_sm_setcred returns PAM_SUCCESS, so sshd's pam_setcred
// needs no pam_permit), password is pam_deny.so. It runs `-D -e` with a config of its own:
// 127.0.0.1 on a free port, a generated ed25519 host key, UsePAM, keyboard-interactive as
// the only method, PidFile and everything else in the temp directory.
//
// # How NSS and the bus reach sshd and its children
//
// sshd runs under `unshare --mount --propagation slave`, where a shell prepares its mount
// namespace and then execs it:
//
//   - /etc/nsswitch.conf: the machine's, with "passwd: files nostr" and "group: files
//     nostr", bind-mounted over it.
//   - The NSS module: a read-only overlay mounted on the system library directory (the one
//     sshd's libc is in, /usr/lib/x86_64-linux-gnu on Debian amd64), whose top layer is a
//     directory holding a copy of build/libnss_nostr.so.2. In that namespace the module is
//     where `make install` puts it, so every process finds it whatever its environment:
//     sshd's re-exec, its monitor, the user's shell and, unlike with LD_LIBRARY_PATH,
//     setuid programs (which would still read the default database: they ignore
//     NOSTR_HOMED_USERDB). The machine's library directory is not touched.
//   - The database: NOSTR_HOMED_USERDB in sshd's environment, and "SetEnv
//     NOSTR_HOMED_USERDB=..." in sshd_config for the sessions.
//   - The bus: a tmpfs on /run with /run/sshd (the privilege separation directory) and
//     /run/dbus/system_bus_socket, a symbolic link to the private bus's socket. pam_nostr
//     connects with sd_bus_open_system, which uses that default path when
//     DBUS_SYSTEM_BUS_ADDRESS is not set. (The tmpfs also hides nscd's socket, if the
//     machine runs nscd: its cache would answer from the machine's nsswitch.conf.)
//
// Why not just environment variables (LD_LIBRARY_PATH, DBUS_SYSTEM_BUS_ADDRESS), measured
// with OpenSSH 9.2p1 (Debian 12):
//
//   - sshd keeps its environment across its re-exec for each connection and in its
//     monitor, so LD_LIBRARY_PATH and NOSTR_HOMED_USERDB do reach the monitor's getpwnam
//     (the privilege-separated pre-authentication child is chrooted to /run/sshd and looks
//     up nobody).
//   - The process that runs pam_authenticate and pam_acct_mgmt (auth-pam.c, sshpam_thread,
//     a fork of the monitor) empties its environment (environ[0] = NULL; only TZ is put
//     back) before calling PAM. A DBUS_SYSTEM_BUS_ADDRESS given to sshd never reaches
//     pam_nostr's authentication: it fails with PAM_AUTHINFO_UNAVAIL. (pam_open_session and
//     pam_close_session run in the monitor, which still has it.) Hence the bus at the
//     default path.
//   - The user's session gets an environment built by sshd: LD_LIBRARY_PATH and
//     NOSTR_HOMED_USERDB are gone, and `id` in the shell shows numbers without names.
//     Hence the overlay and SetEnv.
//
// # Mounts
//
// The machine's / is a private mount (no propagation), so a mount the daemon makes would
// never appear in sshd's namespace. The test bind-mounts the home base onto itself and
// makes it shared before starting anything; sshd's namespace gets it as a slave, so the
// nostrfs mounts of the users' homes, and their unmounts, propagate into it, while its own
// mounts (nsswitch.conf, the overlay, /run) stay inside.
//
// # Cleanup
//
// Everything is undone when the test ends, also on failure, in this order: sshd (SIGTERM,
// then every process whose executable is the test's sshd copy, killed by PID: sshd's
// per-connection processes outlive the listener; its namespace with its mounts goes with
// its last process), the /etc/pam.d file (checked gone), the daemon (SIGTERM: it closes
// every session and unmounts), any mount left under the test directory (detached), the
// shared home base, the test directory. SSHTEST_LOG=1 prints sshd's and the daemon's logs
// even when the test passes.
//
// # Requirements
//
// Root (the daemon owns org.nostr.Homed1 under the root-only bus policy, sshd runs as root,
// the test writes /etc/pam.d and mounts); the test skips without root, /usr/sbin/sshd
// (openssh-server) or unshare (util-linux). It fails if build/pam_nostr.so or
// build/libnss_nostr.so.2 is missing: run `make build` (`make test` builds first). Also
// dbus-daemon, mount, findmnt, ldd, and a kernel with overlayfs.
//
// If nostrfs cannot mount, the daemon's OpenSession fails, pam_nostr's session returns
// PAM_SESSION_ERR, and OpenSSH 9.2 does not refuse the authentication but runs no command:
// the session's child exits with status 254 ("PAM session not opened"). The test then fails
// at that login, naming the daemon's last session error.
package sshtest
