package daemon

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/keys"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// memMounter is an in-memory Mounter: it counts mounts and stops.
type memMounter struct {
	mounts, stops atomic.Int32
}

func (m *memMounter) Name() string { return "memory" }

func (m *memMounter) Mount(ctx context.Context, req MountRequest) (Mount, error) {
	m.mounts.Add(1)
	time.Sleep(20 * time.Millisecond) // let concurrent callers pile up on "opening"
	return &memMount{m: m}, nil
}

type memMount struct{ m *memMounter }

func (mm *memMount) Stop(context.Context) error { mm.m.stops.Add(1); return nil }
func (mm *memMount) Info() MountInfo            { return MountInfo{State: "ready"} }

type testUser struct {
	sk  string
	pk  string
	key nostr.Keyer
}

// newTestDaemon is a Daemon with an in-memory mounter, no relays, and alice's settings and
// secrets already in the event cache (as after a warm).
func newTestDaemon(t *testing.T, grace time.Duration) (*Daemon, *memMounter, testUser) {
	t.Helper()
	rootOnly(t)
	base := t.TempDir()
	os.WriteFile(filepath.Join(base, "passwd"), []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(base, "group"), []byte("root:x:0:\n"), 0o644)
	os.Mkdir(filepath.Join(base, "home"), 0o755)
	cfg := config.Default()
	cfg.Users.Database = filepath.Join(base, "lib", "users.db")
	cfg.Users.HomeBase = filepath.Join(base, "home")
	cfg.Session.RuntimeDir = filepath.Join(base, "run")
	mm := &memMounter{}
	d, err := New(cfg, Options{PasswdPath: filepath.Join(base, "passwd"), GroupPath: filepath.Join(base, "group"),
		SubUIDPath: filepath.Join(base, "none"), SubGIDPath: filepath.Join(base, "none"),
		Mounter: mm, Hostname: "h", Log: &discard{}, SignerGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	sk := nostr.GeneratePrivateKey()
	k, _ := keyer.NewPlainKeySigner(sk)
	pk, _ := nostr.GetPublicKey(sk)
	ctx := context.Background()
	if _, err := d.db.AddUser(ctx, userdb.User{Pubkey: pk, Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	set, err := events.NewSettingsEvent(ctx, k, "personal", events.Settings{
		Relays: events.RelaySettings{Read: []string{"ws://127.0.0.1:9"}},
		Login:  []events.LoginMethod{{Type: events.LoginRemoteSigner, Bunker: "bunker://" + pk + "?relay=ws://127.0.0.1:9"}},
	}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := events.NewSecretsEvent(ctx, k, "personal", events.Secrets{Files: []events.SecretFile{{Name: "f", Data: []byte("x")}}}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*nostr.Event{set, sec} {
		if _, err := d.cache.Put(ev, d.expect(ev.Kind, pk, "personal")); err != nil {
			t.Fatal(err)
		}
	}
	return d, mm, testUser{sk: sk, pk: pk, key: k}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// loginAs gives alice a session signer in locked memory, as a successful password login does.
func loginAs(t *testing.T, d *Daemon, u testUser) *keys.Secret {
	t.Helper()
	b, _ := hex.DecodeString(u.sk)
	s, err := keys.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	d.userState("alice").keepSigner(d, &sessionSigner{keyer: s, method: events.LoginPassword, wipe: s.Wipe})
	return s
}

func TestSignerWipedAtLastClose(t *testing.T) {
	d, mm, u := newTestDaemon(t, time.Minute)
	ctx := context.Background()
	s := loginAs(t, d, u)
	if err := d.OpenSession(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// A second login while the session is open: the key in use stays, the new one is wiped.
	s2 := loginAs(t, d, u)
	if !s2.Wiped() || s.Wiped() {
		t.Fatalf("second login: new wiped %v, in-use wiped %v", s2.Wiped(), s.Wiped())
	}
	if err := d.OpenSession(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseSession(ctx, "alice"); err != nil || s.Wiped() {
		t.Fatalf("first close: %v, wiped %v", err, s.Wiped())
	}
	if err := d.CloseSession(ctx, "alice"); err != nil || !s.Wiped() {
		t.Fatalf("last close: %v, wiped %v", err, s.Wiped())
	}
	if mm.mounts.Load() != 1 || mm.stops.Load() != 1 {
		t.Fatalf("mounts %d stops %d", mm.mounts.Load(), mm.stops.Load())
	}
}

func TestPendingSignerExpires(t *testing.T) {
	d, _, u := newTestDaemon(t, 100*time.Millisecond)
	s := loginAs(t, d, u)
	time.Sleep(400 * time.Millisecond)
	if !s.Wiped() {
		t.Fatal("a signer no session used was not wiped after the grace period")
	}
	if err := d.OpenSession(context.Background(), "alice"); err == nil {
		t.Fatal("a session opened with an expired login")
	}
	// A pending signer is wiped at shutdown too.
	s = loginAs(t, d, u)
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.Wiped() {
		t.Fatal("shutdown left a pending signer")
	}
}

// TestConcurrentOpenClose: many opens at once mount once; many closes at once unmount once.
func TestConcurrentOpenClose(t *testing.T) {
	d, mm, u := newTestDaemon(t, time.Minute)
	ctx := context.Background()
	s := loginAs(t, d, u)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- d.OpenSession(ctx, "alice") }()
	}
	wg.Wait()
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); _, err := d.Status(ctx, "alice"); errs <- err }()
	}
	wg.Wait()
	d.userState("alice").mu.Lock()
	count := d.userState("alice").count
	d.userState("alice").mu.Unlock()
	if count != n || mm.mounts.Load() != 1 {
		t.Fatalf("count %d mounts %d", count, mm.mounts.Load())
	}
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- d.CloseSession(ctx, "alice") }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if mm.stops.Load() != 1 || !s.Wiped() {
		t.Fatalf("stops %d wiped %v", mm.stops.Load(), s.Wiped())
	}
	if err := d.CloseSession(ctx, "alice"); err == nil {
		t.Fatal("closing more sessions than were opened succeeded")
	}
}
