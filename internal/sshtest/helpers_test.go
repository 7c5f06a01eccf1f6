package sshtest

// Copied from internal/pamtest/helpers_test.go (not importable: a _test.go file), trimmed to
// what this test needs: requireRoot, repoRoot, the once-per-process build of nostr-homectl
// and nostrfs, ident/newIdent/must, and publish (without the manifest). The environment
// (daemon, PAM service file, sshd) is this package's own.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip49"

	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
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

// nostrfsPkg is the package built as the nostrfs that the daemon's builtin supervisor runs
// (the one next to its own executable).
const nostrfsPkg = "./cmd/nostrfs"

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// homectl builds, once per test process, this tree's nostr-homectl and, next to it, nostrfs
// from nostrfsPkg, and returns nostr-homectl's path. Built afresh so the test never runs a
// stale binary.
func homectl(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "sshtest-bin-")
		if binErr != nil {
			return
		}
		root := repoRoot(t)
		for name, pkg := range map[string]string{"nostr-homectl": "./cmd/nostr-homectl", "nostrfs": nostrfsPkg} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "nostr-homectl")
}

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

// publish signs and publishes id's settings (password login: an ncryptsec of id's key at
// log N 16 with id's password; the stack's relay and Blossom server) and secrets. Unlike
// pamtest it publishes no manifest: a user without one has a new, empty home, which is what
// nostrfs must mount on a first login (pamtest's manifest names a root blob that does not
// exist, which a real nostrfs must refuse).
func publish(t *testing.T, stack *devstack.Stack, id ident) {
	t.Helper()
	ctx := context.Background()
	relay := stack.RelayURL()
	at := time.Now().Add(-time.Minute)
	ncs, err := nip49.Encrypt(id.sk, id.password, 16, nip49.ClientDoesNotTrackThisData)
	must(t, err)
	settings, err := events.NewSettingsEvent(ctx, id.keyer, "personal", events.Settings{
		Relays:  events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Blossom: []events.Server{{URL: stack.BlossomURL(), Auth: "base64"}},
		Login:   []events.LoginMethod{{Type: events.LoginPassword, Ncryptsec: ncs}},
	}, nil, at)
	must(t, err)
	secrets, err := events.NewSecretsEvent(ctx, id.keyer, "personal", events.Secrets{
		HomeKey: strings.Repeat("ab", 32),
		Files:   []events.SecretFile{{Name: "github-token", Data: []byte("ghp_" + id.name)}},
	}, nil, at)
	must(t, err)
	for _, ev := range []*nostr.Event{settings, secrets} {
		if _, err := relayio.Publish(ctx, []string{relay}, ev, 5*time.Second); err != nil {
			t.Fatalf("publishing kind %d: %v", ev.Kind, err)
		}
	}
}
