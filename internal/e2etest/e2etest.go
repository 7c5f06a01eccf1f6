// Package e2etest holds what the end-to-end tests (internal/pamtest, internal/sshtest) share:
// this tree's daemon and nostrfs built once per test process, and a test user's login events
// published to a dev stack. Like dbustest and devstacktest it is imported by tests only.
package e2etest

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
	"github.com/nbd-wtf/go-nostr/nip49"

	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/modroot"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Homectl builds, once per test process, this tree's nostr-homectl and, next to it, nostrfs
// (the daemon's builtin supervisor runs the nostrfs next to its own executable), as
// `make build` does, and returns nostr-homectl's path. Built afresh so that a test never
// runs a stale binary.
func Homectl(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := modroot.Find()
		if err != nil {
			binErr = err
			return
		}
		if binDir, binErr = os.MkdirTemp("", "e2etest-bin-"); binErr != nil {
			return
		}
		for _, name := range []string{"nostr-homectl", "nostrfs"} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), "./cmd/"+name)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "nostr-homectl")
}

// Login is what PublishLogin publishes for a user.
type Login struct {
	Keyer    nostr.Keyer // signs the events (the user's key)
	LockKey  string      // the secret key the ncryptsec locks (the user's own, or another for a forged login)
	Password string      // locks it (NIP-49, log N 16: quick, for tests)
	Name     string      // goes into a secret file, so that users' secrets differ
	At       time.Time   // created_at of both events
}

// PublishLogin signs and publishes a user's settings (password login; the relay and
// Blossom server given) and secrets (a home key and one file) to relay, and returns the
// settings event. No manifest: a user without one has a new, empty home, which nostrfs
// starts on the first login.
func PublishLogin(t testing.TB, relay, blossom string, l Login) *nostr.Event {
	t.Helper()
	ctx := context.Background()
	ncs, err := nip49.Encrypt(l.LockKey, l.Password, 16, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		t.Fatal(err)
	}
	settings, err := events.NewSettingsEvent(ctx, l.Keyer, "personal", events.Settings{
		Relays:  events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Blossom: []events.Server{{URL: blossom, Auth: "base64"}},
		Login:   []events.LoginMethod{{Type: events.LoginPassword, Ncryptsec: ncs}},
	}, nil, l.At)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := events.NewSecretsEvent(ctx, l.Keyer, "personal", events.Secrets{
		HomeKey: strings.Repeat("ab", 32),
		Files:   []events.SecretFile{{Name: "github-token", Data: []byte("ghp_" + l.Name)}},
	}, nil, l.At)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*nostr.Event{settings, secrets} {
		if _, err := relayio.Publish(ctx, []string{relay}, ev, 5*time.Second); err != nil {
			t.Fatalf("publishing kind %d: %v", ev.Kind, err)
		}
	}
	return settings
}

// RemoveBinaries removes what Homectl built; call it from TestMain after m.Run.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
