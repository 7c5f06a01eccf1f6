// Package pamtest holds end-to-end tests of the real PAM module (build/pam_nostr.so) against
// the real daemon (`nostr-homectl serve`, built from this tree) on a private system-like bus
// (internal/dbustest) with a real relay (internal/devstack). It has no code of its own: the
// tests are in the _test.go files.
//
// Each case is driven twice: in-process through libpam with github.com/msteinert/pam/v2 (a
// Go conversation handler answers the password prompt), and by pamtester, the Debian tool,
// as a separate process. Both load the module from a PAM service file
// /etc/pam.d/nostr-homed-pamtest-<random>, written for the test and removed when it ends
// (also on failure). The module finds the private bus through DBUS_SYSTEM_BUS_ADDRESS.
//
// The tests need root (the daemon owns org.nostr.Homed1 under the root-only bus policy;
// /etc/pam.d is written), pamtester, dbus-daemon, dbus-send, cgo with libpam0g-dev, and a
// built module: `make build` (or `make test`, which builds first).
package pamtest
