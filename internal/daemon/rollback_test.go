package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

// TestRelayServingAnOlderManifestDoesNotRollBack: once the daemon has cached a manifest, a
// relay that serves only an older one (withholding the newest) does not roll the cache back,
// and neither does another user's manifest on that relay.
func TestRelayServingAnOlderManifestDoesNotRollBack(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, mallory := newIdent(t, "alice"), newIdent(t, "mallory")
	ctx := context.Background()
	p := e.publish(alice, pubOpts{})
	e.enroll(alice)
	relayA := e.stack.RelayURL()
	relayB := devstacktest.Start(t).RelayURL()

	// Alice's newer settings name both relays; her second manifest replaces the first on A.
	s, err := events.OpenSettings(p.settings, alice.pk, "personal")
	must(t, err)
	s.Relays.Read = append(s.Relays.Read, relayB)
	settings2, err := events.NewSettingsEvent(ctx, alice.keyer, "personal", *s, p.settings, time.Now())
	must(t, err)
	m1, err := events.OpenManifest(ctx, alice.keyer, p.manifest, alice.pk, "personal")
	must(t, err)
	manifest2, err := events.NewManifestEvent(ctx, alice.keyer, "personal",
		events.Manifest{Root: events.BlobRef{Hash: strings.Repeat("ef", 32), Size: 10}, Machine: "b"}, p.manifest, m1.Generation, time.Now())
	must(t, err)
	for _, ev := range []*nostr.Event{settings2, manifest2} {
		if _, err := relayio.Publish(ctx, []string{relayA}, ev, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	e.mustCall("WarmCache", "alice")
	if ce := cached(e.status("alice"), "manifest"); !ce.Present || ce.ID != manifest2.ID {
		t.Fatalf("after the first warm the cache holds %+v, want %s", ce, manifest2.ID)
	}

	// Relay B holds only the older manifest, and a newer manifest of another user under
	// the same kind and d tag. Relay A goes away.
	theirs, err := events.NewManifestEvent(ctx, mallory.keyer, "personal",
		events.Manifest{Root: events.BlobRef{Hash: strings.Repeat("66", 32), Size: 10}}, nil, 0, time.Now().Add(time.Minute))
	must(t, err)
	for _, ev := range []*nostr.Event{p.manifest, theirs} {
		if _, err := relayio.Publish(ctx, []string{relayB}, ev, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	must(t, e.stack.Close())
	e.mustCall("WarmCache", "alice")
	st := e.status("alice")
	if st.LastWarm == nil || len(st.LastWarm.Answered) == 0 {
		t.Fatalf("relay B was not asked: %+v", st.LastWarm)
	}
	if ce := cached(st, "manifest"); !ce.Present || ce.ID != manifest2.ID {
		t.Fatalf("the cache was rolled back or replaced: %+v, want %s", ce, manifest2.ID)
	}
}
