package relayio_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

func TestMain(m *testing.M) {
	code := m.Run()
	devstacktest.RemoveBinary()
	os.Exit(code)
}

func key(t *testing.T) (keyer.KeySigner, string) {
	k, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := k.GetPublicKey(context.Background())
	return k, pk
}

func deadRelay(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "ws://" + l.Addr().String()
}

func settingsEvent(t *testing.T, k nostr.Keyer, relay string, at time.Time) *nostr.Event {
	s := events.Settings{
		Relays: events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Login:  []events.LoginMethod{{Type: events.LoginRemoteSigner, Bunker: "bunker://" + relay[5:]}},
	}
	ev, err := events.NewSettingsEvent(context.Background(), k, "personal", s, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestNewestWhenRelaysDisagree puts different versions of the same address on three real
// relays, plus a dead one and another author's event, and checks the newest valid one is
// chosen and each relay's part is reported.
func TestNewestWhenRelaysDisagree(t *testing.T) {
	a, b, c := devstacktest.Start(t), devstacktest.Start(t), devstacktest.Start(t)
	dead := deadRelay(t)
	owner, pk := key(t)
	stranger, _ := key(t)
	ctx := context.Background()
	now := time.Now()

	old := settingsEvent(t, owner, "ws://old.example", now.Add(-time.Hour))
	newer := settingsEvent(t, owner, "ws://new.example", now)
	foreign := settingsEvent(t, stranger, "ws://evil.example", now.Add(time.Minute))
	for _, p := range []struct {
		relay string
		ev    *nostr.Event
	}{{a.RelayURL(), old}, {b.RelayURL(), newer}, {c.RelayURL(), old}, {c.RelayURL(), foreign}} {
		if _, err := relayio.Publish(ctx, []string{p.relay}, p.ev, 0); err != nil {
			t.Fatal(err)
		}
	}
	x := events.Expect{Kind: events.KindSettings, Author: pk, D: events.DTag("personal")}
	res, err := relayio.FetchNewest(ctx, []string{a.RelayURL(), dead, b.RelayURL(), c.RelayURL()}, x, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Selection.Newest == nil || res.Selection.Newest.ID != newer.ID {
		t.Fatalf("selected %v, want %s", res.Selection.Newest, newer.ID)
	}
	if len(res.Selection.From) != 1 || res.Selection.From[0] != b.RelayURL() {
		t.Fatalf("from %v", res.Selection.From)
	}
	if len(res.Selection.Stale) != 2 {
		t.Fatalf("stale %v, want relays a and c", res.Selection.Stale)
	}
	if len(res.Answered) != 3 || res.Failed[dead] == nil {
		t.Fatalf("answered %v failed %v", res.Answered, res.Failed)
	}
	s, err := events.OpenSettings(res.Selection.Newest, pk, "personal")
	if err != nil || s.Relays.Read[0] != "ws://new.example" {
		t.Fatalf("settings %+v %v", s, err)
	}

	// Republishing the newest to a stale relay makes it agree.
	if _, err := relayio.Publish(ctx, res.Selection.Stale, res.Selection.Newest, 0); err != nil {
		t.Fatal(err)
	}
	res, err = relayio.FetchNewest(ctx, []string{a.RelayURL(), c.RelayURL()}, x, 2*time.Second)
	if err != nil || res.Selection.Newest.ID != newer.ID || len(res.Selection.Stale) != 0 {
		t.Fatalf("after republish: %+v %v", res.Selection, err)
	}
}

func TestNoRelayAnswers(t *testing.T) {
	_, pk := key(t)
	x := events.Expect{Kind: events.KindManifest, Author: pk, D: events.DTag("personal")}
	start := time.Now()
	_, err := relayio.FetchNewest(context.Background(), []string{deadRelay(t), deadRelay(t)}, x, time.Second)
	if err == nil {
		t.Fatal("no relay answered, yet no error")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
	owner, _ := key(t)
	ev := settingsEvent(t, owner, "ws://x.example", time.Now())
	if _, err := relayio.Publish(context.Background(), []string{deadRelay(t)}, ev, time.Second); err == nil {
		t.Fatal("publish to a dead relay succeeded")
	}
}

func TestNothingPublishedYet(t *testing.T) {
	a := devstacktest.Start(t)
	_, pk := key(t)
	x := events.Expect{Kind: events.KindManifest, Author: pk, D: events.DTag("personal")}
	res, err := relayio.FetchNewest(context.Background(), []string{a.RelayURL()}, x, 2*time.Second)
	if err != nil || res.Selection.Newest != nil {
		t.Fatalf("empty relay: %+v %v", res, err)
	}
}
