package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/homed"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func nameOf(err error) string {
	if he, ok := err.(*homed.Error); ok {
		return he.Name
	}
	return ""
}

// TestTerminateSessionsWhileOpening: a TerminateSessions that arrives while the first
// OpenSession is mounting waits for it and then ends it; nothing stays mounted, the key is
// wiped, and for RemovalHold the user can neither open a session nor pass CheckAccount.
func TestTerminateSessionsWhileOpening(t *testing.T) {
	d, mm, u := newTestDaemon(t, time.Minute)
	clock := &fakeClock{t: time.Now()}
	d.opts.Now = clock.now
	ctx := context.Background()
	s := loginAs(t, d, u)

	opened := make(chan error, 1)
	go func() { opened <- d.OpenSession(ctx, "alice") }()
	// Wait until the open is under way (the memMounter sleeps 20 ms in Mount).
	for deadline := time.Now().Add(5 * time.Second); ; {
		us := d.userState("alice")
		us.mu.Lock()
		p := us.phase
		us.mu.Unlock()
		if p != phaseClosed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the OpenSession did not start")
		}
		time.Sleep(time.Millisecond)
	}
	n, err := d.TerminateSessions(ctx, "alice")
	if err != nil || n != 1 {
		t.Fatalf("TerminateSessions during the opening: %d, %v", n, err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("the OpenSession that was running: %v", err)
	}
	if mm.mounts.Load() != 1 || mm.stops.Load() != 1 || !s.Wiped() {
		t.Fatalf("mounts %d stops %d wiped %v", mm.mounts.Load(), mm.stops.Load(), s.Wiped())
	}

	// The hold: a new login's key is refused a session, CheckAccount says why.
	loginAs(t, d, u)
	if err := d.OpenSession(ctx, "alice"); nameOf(err) != homed.ErrNotAllowed {
		t.Fatalf("OpenSession during the hold: %v", err)
	}
	if err := d.CheckAccount(ctx, "alice"); nameOf(err) != homed.ErrNotAllowed {
		t.Fatalf("CheckAccount during the hold: %v", err)
	}
	if _, err := d.BeginLogin(ctx, "alice", "sshd", ""); nameOf(err) != homed.ErrNotAllowed {
		t.Fatalf("BeginLogin during the hold: %v", err)
	}
	clock.add(RemovalHold)
	if err := d.CheckAccount(ctx, "alice"); err != nil {
		t.Fatalf("CheckAccount after the hold: %v", err)
	}
	d.mu.Lock()
	left := len(d.removing)
	d.mu.Unlock()
	if left != 0 {
		t.Fatalf("the hold was not forgotten: %d left", left)
	}
}

// TestTerminateSessionsWipesPendingSigner: a login whose session has not opened yet loses
// its key; nothing open counts 0.
func TestTerminateSessionsWipesPendingSigner(t *testing.T) {
	d, mm, u := newTestDaemon(t, time.Minute)
	s := loginAs(t, d, u)
	n, err := d.TerminateSessions(context.Background(), "alice")
	if err != nil || n != 0 || !s.Wiped() || mm.mounts.Load() != 0 {
		t.Fatalf("TerminateSessions with a pending signer: %d %v wiped %v", n, err, s.Wiped())
	}
	// A name nobody has is not an error; a malformed one is InvalidArgs.
	if n, err := d.TerminateSessions(context.Background(), "nobody-here"); err != nil || n != 0 {
		t.Fatalf("TerminateSessions of nobody: %d %v", n, err)
	}
	if _, err := d.TerminateSessions(context.Background(), "Bad Name"); nameOf(err) != homed.ErrInvalidArgs {
		t.Fatalf("TerminateSessions of a malformed name: %v", err)
	}
}
