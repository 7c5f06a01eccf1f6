package login

import (
	"context"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip49"

	"github.com/nostr-homed/nostr-homed/internal/keys"
)

func ncryptsec(t testing.TB, u user, password string, logN uint8) string {
	t.Helper()
	s, err := nip49.Encrypt(u.sk, password, logN, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPasswordRight(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)
	ncs := ncryptsec(t, alice, "correct horse", 8)
	ch := begin(t, is, alice)
	ev, sec, err := ProveWithPassword(ctx, ch, ncs, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	defer sec.Wipe()
	if err := is.Verify(ch.LoginID, ev); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// The Secret is kept for the session: it still works.
	if pk, err := sec.GetPublicKey(ctx); err != nil || pk != alice.pk {
		t.Fatalf("session key: %s, %v", pk, err)
	}
	ct, err := sec.Encrypt(ctx, "home key", alice.pk)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := alice.key.Decrypt(ctx, ct, alice.pk); err != nil || pt != "home key" {
		t.Fatalf("%q, %v", pt, err)
	}
}

func TestPasswordWrong(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)
	ncs := ncryptsec(t, alice, "correct horse", 8)
	ch := begin(t, is, alice)
	ev, sec, err := ProveWithPassword(ctx, ch, ncs, "battery staple")
	if ev != nil || sec != nil {
		t.Fatal("a wrong password returned a proof or a key")
	}
	wantErr(t, err, ErrAuthFailed)
	wantErr(t, err, keys.ErrWrongPassword)
	if DBusErrorName(err) != DBusAuthFailed {
		t.Fatalf("D-Bus name %q", DBusErrorName(err))
	}
	t.Logf("wrong password: %v", err)
	// The login is still outstanding (the daemon Cancels it).
	if _, err := is.Lookup(ch.LoginID); err != nil {
		t.Fatal(err)
	}

	// An ncryptsec of another key, with the right password: not the enrolled key.
	mallory := newUser(t)
	ev, sec, err = ProveWithPassword(ctx, ch, ncryptsec(t, mallory, "correct horse", 8), "correct horse")
	if ev != nil || sec != nil {
		t.Fatal("a foreign key returned a proof or a key")
	}
	wantErr(t, err, ErrWrongKey)

	_, _, err = ProveWithPassword(ctx, ch, "ncryptsec1garbage", "x")
	wantErr(t, err, ErrInvalid)
	_, _, err = ProveWithPassword(ctx, nil, ncs, "correct horse")
	wantErr(t, err, ErrInvalid)
}

func TestPasswordBoundedByContext(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)
	ncs := ncryptsec(t, alice, "pw", 16) // scrypt with 64 MiB: well over the bound below
	ch := begin(t, is, alice)
	c, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	start := time.Now()
	ev, sec, err := ProveWithPassword(c, ch, ncs, "pw")
	if ev != nil || sec != nil {
		t.Fatal("returned a proof after the deadline")
	}
	wantErr(t, err, ErrTimeout)
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("returned after %v", el)
	}
	if DBusErrorName(err) != DBusTimeout {
		t.Fatalf("D-Bus name %q", DBusErrorName(err))
	}
}

// ProveWithSigner refuses a signer whose key is not the enrolled one before signing.
func TestProveWithSignerWrongKey(t *testing.T) {
	is := NewIssuer(Options{})
	alice, mallory := newUser(t), newUser(t)
	ch := begin(t, is, alice)
	signer := &countingSigner{Signer: mallory.key}
	_, err := ProveWithSigner(ctx, ch, signer)
	wantErr(t, err, ErrWrongKey)
	if signer.signed != 0 {
		t.Fatal("signed although the key is not the enrolled one")
	}
}

type countingSigner struct {
	nostr.Signer
	signed int
}

func (c *countingSigner) SignEvent(ctx context.Context, ev *nostr.Event) error {
	c.signed++
	return c.Signer.SignEvent(ctx, ev)
}
