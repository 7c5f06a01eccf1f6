package devstack

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// Many concurrent replacements of one address straight into the store: badger's optimistic
// transactions conflict unless writes are serialised, and the newest event must remain.
func TestStoreConcurrentReplace(t *testing.T) {
	g, err := openStore(t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sk := nostr.GeneratePrivateKey()
	const workers, each = 8, 40
	base := nostr.Now() - 10_000
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	var newest nostr.Event
	evs := make([][]nostr.Event, workers)
	for w := range workers {
		for i := range each {
			ev := nostr.Event{Kind: 30078, CreatedAt: base + nostr.Timestamp(i*workers+w), Content: fmt.Sprint(w, i), Tags: nostr.Tags{{"d", "x"}}}
			if err := ev.Sign(sk); err != nil {
				t.Fatal(err)
			}
			evs[w] = append(evs[w], ev)
			if ev.CreatedAt > newest.CreatedAt {
				newest = ev
			}
		}
	}
	for w := range workers {
		wg.Go(func() {
			for i := range evs[w] {
				if err := g.ReplaceEvent(context.Background(), &evs[w][i]); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 3 {
			t.Errorf("ReplaceEvent: %v", err)
		}
	}
	if n > 3 {
		t.Errorf("... %d failures in all", n)
	}
	ch, err := g.QueryEvents(context.Background(), nostr.Filter{Kinds: []int{30078}})
	if err != nil {
		t.Fatal(err)
	}
	var got []*nostr.Event
	for ev := range ch {
		got = append(got, ev)
	}
	if len(got) != 1 || got[0].ID != newest.ID {
		t.Fatalf("store holds %d events (first %v), want only the newest %s", len(got), got, newest.ID)
	}

	// After Close, calls fail instead of touching a closed badger.
	g.Close()
	if err := g.SaveEvent(context.Background(), &newest); err != errStoreClosed {
		t.Fatalf("SaveEvent after Close: %v", err)
	}
	if _, err := g.QueryEvents(context.Background(), nostr.Filter{}); err != errStoreClosed {
		t.Fatalf("QueryEvents after Close: %v", err)
	}
}
