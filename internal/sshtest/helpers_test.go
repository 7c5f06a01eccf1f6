package sshtest

// Small helpers like internal/pamtest's (requireRoot, repoRoot, ident/newIdent/must); the
// binaries and the published login come from internal/e2etest, which both share. The
// environment (daemon, PAM service file, sshd) is this package's own.

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/e2etest"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.RemoveBinaries()
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns org.nostr.Homed1 under the root-only bus policy, sshd runs as root, and the test writes /etc/pam.d and mounts")
	}
}

// repoRoot is the module root, or the end of the test.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// builtModule is the absolute path of build/NAME, or the end of the test (a failure, not a
// skip: a missing module is a broken setup, not a missing tool).
func builtModule(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "build", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make build` first (`make test` builds it): %v", p, err)
	}
	return p
}

func homectl(t *testing.T) string { return e2etest.Homectl(t) }

// ident is a Nostr identity for a test user.
type ident struct {
	name, sk, pk, npub, password string
	keyer                        nostr.Keyer
}

func newIdent(t *testing.T, name string) ident {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	k, err := keyer.NewPlainKeySigner(sk)
	must(t, err)
	pk, _ := nostr.GetPublicKey(sk)
	npub, _ := nip19.EncodePublicKey(pk)
	return ident{name: name, sk: sk, pk: pk, npub: npub, password: "correct horse " + name, keyer: k}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// publish publishes id's settings (password login) and secrets, no manifest: a new home.
func publish(t *testing.T, stack *devstack.Stack, id ident) {
	t.Helper()
	e2etest.PublishLogin(t, stack.RelayURL(), stack.BlossomURL(),
		e2etest.Login{Keyer: id.keyer, LockKey: id.sk, Password: id.password, Name: id.name, At: time.Now().Add(-time.Minute)})
}
