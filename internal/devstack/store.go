package devstack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	eventbadger "github.com/fiatjaf/eventstore/badger"
	"github.com/nbd-wtf/go-nostr"
)

// errStoreClosed is what relay hooks get once the stack is shutting down.
var errStoreClosed = errors.New("shutting down: event store is closed")

// guardedStore wraps the badger event store for khatru's hooks so that Close is safe while
// connections are still being torn down:
//
//   - every call is counted, and Close waits for the running ones before closing badger
//     (khatru gives no way to wait for its per-message goroutines, and badger must not be
//     used after Close);
//   - QueryEvents' channel is forwarded by a goroutine that gives up (and drains badger's
//     channel, which holds a read transaction open until it is drained) when the caller's
//     context ends or the store closes. khatru reads only the first event of some queries
//     (its deletion checks) and abandons the channel;
//   - writes are serialised: badger transactions run optimistically and two concurrent
//     ReplaceEvents for the same address would fail with a conflict instead of one
//     replacing the other. A dev relay does not need concurrent writes.
type guardedStore struct {
	db *eventbadger.BadgerBackend

	mu      sync.Mutex // guards closed and calls to wg.Add
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
	writeMu sync.Mutex
}

// openStore opens (creating) a badger event store in dir.
func openStore(dir string, logf func(string, ...any)) (*guardedStore, error) {
	db := &eventbadger.BadgerBackend{
		Path: dir,
		BadgerOptionsModifier: func(o badger.Options) badger.Options {
			// Smaller than badger's server-sized defaults (64 MiB memtables, 1 GiB value
			// log files, 256 MiB block cache): this is a development relay.
			return o.WithLogger(badgerLogger{logf}).
				WithMemTableSize(16 << 20).
				WithValueLogFileSize(64 << 20).
				WithBlockCacheSize(16 << 20)
		},
	}
	if err := db.Init(); err != nil {
		return nil, fmt.Errorf("devstack: opening event store %s: %w", dir, err)
	}
	return &guardedStore{db: db, done: make(chan struct{})}, nil
}

// enter registers a call; it returns false once the store is closed.
func (g *guardedStore) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *guardedStore) write(fn func() error) error {
	if !g.enter() {
		return errStoreClosed
	}
	defer g.wg.Done()
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	return fn()
}

// SaveEvent stores a regular event (khatru's StoreEvent hook).
func (g *guardedStore) SaveEvent(ctx context.Context, evt *nostr.Event) error {
	return g.write(func() error { return g.db.SaveEvent(ctx, evt) })
}

// ReplaceEvent stores a replaceable or addressable event unless a newer one is stored,
// deleting older ones (eventstore's badger backend: newer created_at wins, then lower id).
func (g *guardedStore) ReplaceEvent(ctx context.Context, evt *nostr.Event) error {
	return g.write(func() error { return g.db.ReplaceEvent(ctx, evt) })
}

// DeleteEvent removes one event.
func (g *guardedStore) DeleteEvent(ctx context.Context, evt *nostr.Event) error {
	return g.write(func() error { return g.db.DeleteEvent(ctx, evt) })
}

// CountEvents answers NIP-45 COUNT.
func (g *guardedStore) CountEvents(ctx context.Context, filter nostr.Filter) (int64, error) {
	if !g.enter() {
		return 0, errStoreClosed
	}
	defer g.wg.Done()
	return g.db.CountEvents(ctx, filter)
}

// QueryEvents streams the events matching filter.
func (g *guardedStore) QueryEvents(ctx context.Context, filter nostr.Filter) (chan *nostr.Event, error) {
	if !g.enter() {
		return nil, errStoreClosed
	}
	in, err := g.db.QueryEvents(ctx, filter)
	if err != nil {
		g.wg.Done()
		return nil, err
	}
	out := make(chan *nostr.Event)
	go func() {
		defer g.wg.Done()
		defer close(out)
		for evt := range in {
			select {
			case out <- evt:
			case <-ctx.Done():
				drain(in)
				return
			case <-g.done:
				drain(in)
				return
			}
		}
	}()
	return out, nil
}

func drain(ch chan *nostr.Event) {
	for range ch {
	}
}

// Close refuses new calls, waits for running ones and closes badger. Idempotent.
func (g *guardedStore) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.done)
	g.mu.Unlock()
	g.wg.Wait()
	g.db.Close()
}

// badgerLogger passes badger's errors and warnings on and drops its chatter.
type badgerLogger struct{ logf func(string, ...any) }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.logf("badger: %s", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.logf("badger: %s", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Infof(string, ...any)  {}
func (l badgerLogger) Debugf(string, ...any) {}
