package eventcache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/events"
)

func settings(t *testing.T, k nostr.Keyer, relay string, at time.Time) *nostr.Event {
	ev, err := events.NewSettingsEvent(context.Background(), k, "personal", events.Settings{
		Relays: events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Login:  []events.LoginMethod{{Type: events.LoginRemoteSigner, Bunker: "bunker://" + relay[5:]}},
	}, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestNewerReplacesOlderNever(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	pk, _ := k.GetPublicKey(context.Background())
	x := events.Expect{Kind: events.KindSettings, Author: pk, D: events.DTag("personal")}
	if _, err := c.Get(x); !errors.Is(err, ErrNotCached) {
		t.Fatalf("empty cache: %v", err)
	}
	now := time.Now()
	old, cur := settings(t, k, "ws://old.example", now.Add(-time.Hour)), settings(t, k, "ws://new.example", now)
	if ok, err := c.Put(cur, x); !ok || err != nil {
		t.Fatalf("first put: %v %v", ok, err)
	}
	if ok, err := c.Put(old, x); ok || err != nil {
		t.Fatalf("an older event replaced the cache: %v %v", ok, err)
	}
	got, err := c.Get(x)
	if err != nil || got.ID != cur.ID {
		t.Fatalf("got %v %v", got, err)
	}
	// Another author's event is refused, whatever its date.
	other, _ := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if _, err := c.Put(settings(t, other, "ws://evil.example", now.Add(time.Minute)), x); events.BrokenRule(err) != events.RuleAuthor {
		t.Fatalf("foreign event: %v", err)
	}
	// Modes: directory 0700, file 0600.
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, pk): 0o700} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, pk, "*.json"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v", fi.Mode())
	}
	// A damaged file is an error, not a silent miss or a bad event.
	os.WriteFile(files[0], []byte(`{"kind":30078`), 0o600)
	if _, err := c.Get(x); err == nil || errors.Is(err, ErrNotCached) {
		t.Fatalf("damaged file: %v", err)
	}
	// Tampered content with a valid-looking shape fails validation.
	tampered := *cur
	tampered.Content = `{"v":1}`
	b, _ := tampered.MarshalJSON()
	os.WriteFile(files[0], b, 0o600)
	if _, err := c.Get(x); events.BrokenRule(err) != events.RuleID {
		t.Fatalf("tampered file: %v", err)
	}
	if err := c.Forget(pk); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(x); !errors.Is(err, ErrNotCached) {
		t.Fatalf("after forget: %v", err)
	}
}

func TestLooseDirIsTightened(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	os.Mkdir(dir, 0o755)
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

func TestHostileAuthor(t *testing.T) {
	c, _ := Open(t.TempDir())
	for _, a := range []string{"../../etc", "", "ZZ"} {
		if _, err := c.Get(events.Expect{Kind: 1, Author: a}); err == nil || errors.Is(err, ErrNotCached) {
			t.Errorf("author %q: %v", a, err)
		}
	}
}
