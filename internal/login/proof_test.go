package login

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip42"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
)

var ctx = context.Background()

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_750_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type user struct {
	sk  string
	pk  string
	key keyer.KeySigner
}

func newUser(t testing.TB) user {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	k, err := keyer.NewPlainKeySigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := k.GetPublicKey(ctx)
	return user{sk, pk, k}
}

func sign(t testing.TB, k nostr.Signer, ev *nostr.Event) *nostr.Event {
	t.Helper()
	if err := k.SignEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func begin(t testing.TB, is *Issuer, u user) *Challenge {
	t.Helper()
	ch, err := is.Begin("alice", u.pk, "host.example", "sshd")
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func wantErr(t testing.TB, err error, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got %v, want %v", err, kind)
	}
}

func TestRightKeyVerifies(t *testing.T) {
	clk := newClock()
	is := NewIssuer(Options{Now: clk.Now})
	alice := newUser(t)
	ch := begin(t, is, alice)

	ev := ch.Unsigned()
	if ev.Kind != KindLoginProof || ev.Content != "nostr-homed login to host.example" {
		t.Fatalf("template %v", ev)
	}
	if !isLowerHex(ch.Nonce, 64) || len(ch.LoginID) < 32 {
		t.Fatalf("nonce %q login id %q", ch.Nonce, ch.LoginID)
	}
	want := nostr.Tags{{"challenge", ch.Nonce}, {"host", "host.example"}, {"service", "sshd"},
		{"expiration", strconv.FormatInt(clk.Now().Add(DefaultTTL).Unix(), 10)}}
	if fmt.Sprint(ev.Tags) != fmt.Sprint(want) {
		t.Fatalf("tags %v, want %v", ev.Tags, want)
	}
	if ev.CreatedAt != nostr.Timestamp(clk.Now().Unix()) {
		t.Fatalf("created_at %d", ev.CreatedAt)
	}
	// Changing what Begin returned does not change what Verify expects.
	ch.Host = "elsewhere"
	ch.Nonce = strings.Repeat("0", 64)

	clk.Advance(59 * time.Second)
	if err := is.Verify(ch.LoginID, sign(t, alice.key, ev)); err != nil {
		t.Fatalf("a proof signed by the enrolled key was refused: %v", err)
	}
	if is.Outstanding() != 0 {
		t.Fatal("the login is still outstanding after Verify")
	}

	// Login IDs and challenges are fresh each time.
	a, b := begin(t, is, alice), begin(t, is, alice)
	if a.LoginID == b.LoginID || a.Nonce == b.Nonce {
		t.Fatal("two logins share an ID or a challenge")
	}
}

func TestWrongKey(t *testing.T) {
	is := NewIssuer(Options{})
	alice, mallory := newUser(t), newUser(t)
	ch := begin(t, is, alice)
	err := is.Verify(ch.LoginID, sign(t, mallory.key, ch.Unsigned()))
	wantErr(t, err, ErrWrongKey)
	wantErr(t, err, ErrAuthFailed)
	if DBusErrorName(err) != DBusAuthFailed {
		t.Fatalf("D-Bus name %q", DBusErrorName(err))
	}
	// The pubkey claimed to be alice's but the signature is mallory's: a bad signature.
	ch = begin(t, is, alice)
	ev := sign(t, mallory.key, ch.Unsigned())
	ev.PubKey = alice.pk
	ev.ID = ev.GetID()
	wantErr(t, is.Verify(ch.LoginID, ev), ErrBadProof)
}

func TestExpired(t *testing.T) {
	clk := newClock()
	is := NewIssuer(Options{Now: clk.Now, TTL: 30 * time.Second})
	alice := newUser(t)
	ch := begin(t, is, alice)
	ev := sign(t, alice.key, ch.Unsigned())
	clk.Advance(30 * time.Second)
	if _, err := is.Lookup(ch.LoginID); !errors.Is(err, ErrExpired) {
		t.Fatalf("Lookup of an expired login: %v", err)
	}
	err := is.Verify(ch.LoginID, ev)
	wantErr(t, err, ErrExpired)
	if DBusErrorName(err) != DBusProofExpired {
		t.Fatalf("D-Bus name %q", DBusErrorName(err))
	}
	// It was consumed by that attempt.
	wantErr(t, is.Verify(ch.LoginID, ev), ErrReplayed)

	// Long expired logins are swept: unknown then.
	ch2 := begin(t, is, alice)
	clk.Advance(61 * time.Second)
	begin(t, is, alice) // sweeps
	if n := is.Outstanding(); n != 1 {
		t.Fatalf("%d outstanding after the sweep, want 1", n)
	}
	wantErr(t, is.Verify(ch2.LoginID, sign(t, alice.key, ch2.Unsigned())), ErrUnknownLogin)
}

func TestReplayed(t *testing.T) {
	clk := newClock()
	is := NewIssuer(Options{Now: clk.Now})
	alice := newUser(t)
	ch := begin(t, is, alice)
	ev := sign(t, alice.key, ch.Unsigned())
	if err := is.Verify(ch.LoginID, ev); err != nil {
		t.Fatal(err)
	}
	err := is.Verify(ch.LoginID, ev)
	wantErr(t, err, ErrReplayed)
	if DBusErrorName(err) != DBusProofReplayed {
		t.Fatalf("D-Bus name %q", DBusErrorName(err))
	}
	if _, err := is.Lookup(ch.LoginID); !errors.Is(err, ErrReplayed) {
		t.Fatalf("Lookup of a used login: %v", err)
	}

	// The same signed proof under a second login of the same user, host and service.
	ch2 := begin(t, is, alice)
	wantErr(t, is.Verify(ch2.LoginID, ev), ErrReplayed)
	// That attempt consumed the second login too.
	wantErr(t, is.Verify(ch2.LoginID, sign(t, alice.key, ch2.Unsigned())), ErrReplayed)

	// Once the record of the first challenge is forgotten, the replay is still refused.
	clk.Advance(2*DefaultTTL + time.Second)
	ch3 := begin(t, is, alice)
	wantErr(t, is.Verify(ch3.LoginID, ev), ErrBadProof)

	// A proof answers only its own login: login A's proof does not complete login B, and A
	// stays usable.
	a, b := begin(t, is, alice), begin(t, is, alice)
	evA := sign(t, alice.key, a.Unsigned())
	wantErr(t, is.Verify(b.LoginID, evA), ErrBadProof)
	if err := is.Verify(a.LoginID, evA); err != nil {
		t.Fatalf("login A after its proof was tried on B: %v", err)
	}
}

func TestTamperedProofs(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)
	setTag := func(name, value string) func(*nostr.Event) {
		return func(ev *nostr.Event) {
			for _, tg := range ev.Tags {
				if tg[0] == name {
					tg[1] = value
				}
			}
		}
	}
	cases := []struct {
		name   string
		mutate func(ev *nostr.Event)
	}{
		{"other host", setTag("host", "other.example")},
		{"other service", setTag("service", "login")},
		{"other challenge", setTag("challenge", strings.Repeat("ab", 32))},
		{"later expiration", func(ev *nostr.Event) {
			exp, _ := strconv.ParseInt(ev.Tags[3][1], 10, 64)
			setTag("expiration", strconv.FormatInt(exp+3600, 10))(ev)
		}},
		{"other content", func(ev *nostr.Event) { ev.Content = "nostr-homed login to other.example" }},
		{"extra tag", func(ev *nostr.Event) { ev.Tags = append(ev.Tags, nostr.Tag{"relay", "wss://r"}) }},
		{"missing tag", func(ev *nostr.Event) { ev.Tags = ev.Tags[:3] }},
		{"duplicated tag", func(ev *nostr.Event) { ev.Tags[2] = ev.Tags[1] }},
		{"tag with extra value", func(ev *nostr.Event) { ev.Tags[1] = append(ev.Tags[1], "x") }},
		{"created_at far off", func(ev *nostr.Event) { ev.CreatedAt -= nostr.Timestamp(2 * MaxCreatedAtSkew / time.Second) }},
		{"kind 1", func(ev *nostr.Event) { ev.Kind = 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := begin(t, is, alice)
			ev := ch.Unsigned()
			c.mutate(ev)
			err := is.Verify(ch.LoginID, sign(t, alice.key, ev)) // re-signed by the right key
			wantErr(t, err, ErrBadProof)
			wantErr(t, err, ErrAuthFailed)
		})
	}
	// Reordered tags are the same tags.
	ch := begin(t, is, alice)
	ev := ch.Unsigned()
	ev.Tags[0], ev.Tags[3] = ev.Tags[3], ev.Tags[0]
	if err := is.Verify(ch.LoginID, sign(t, alice.key, ev)); err != nil {
		t.Fatalf("reordered tags: %v", err)
	}
	// Tampering after signing breaks the id or the signature.
	for name, mutate := range map[string]func(*nostr.Event){
		"content after signing":   func(ev *nostr.Event) { ev.Content += "!" },
		"sig of another event":    func(ev *nostr.Event) { ev.Sig = sign(t, alice.key, &nostr.Event{Kind: 1}).Sig },
		"id recomputed, sig kept": func(ev *nostr.Event) { ev.CreatedAt++; ev.ID = ev.GetID() },
		"uppercase id":            func(ev *nostr.Event) { ev.ID = strings.ToUpper(ev.ID) },
		"no signature":            func(ev *nostr.Event) { ev.Sig = "" },
	} {
		ch := begin(t, is, alice)
		ev := sign(t, alice.key, ch.Unsigned())
		mutate(ev)
		if err := is.Verify(ch.LoginID, ev); !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ch = begin(t, is, alice)
	wantErr(t, is.Verify(ch.LoginID, nil), ErrBadProof)
}

// An event the user signed for a relay (NIP-42) or a Blossom server (BUD-11) is never a
// login, even with our challenge in it, and a login proof is not a relay AUTH.
func TestCrossProtocolEventsRefused(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)

	ch := begin(t, is, alice)
	auth := nip42.CreateUnsignedAuthEvent(ch.Nonce, alice.pk, "wss://relay.example")
	err := is.Verify(ch.LoginID, sign(t, alice.key, &auth))
	wantErr(t, err, ErrBadProof)
	if !strings.Contains(err.Error(), "kind 22242") {
		t.Fatalf("error does not say why: %v", err)
	}

	ch = begin(t, is, alice)
	tok, err := blossom.SignAuth(ctx, alice.key, "upload", ch.Nonce, "blossom.example", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok.Tags = append(tok.Tags, nostr.Tag{"challenge", ch.Nonce})
	wantErr(t, is.Verify(ch.LoginID, sign(t, alice.key, tok)), ErrBadProof)

	// Exactly our tags and content, only the kind differs.
	for _, kind := range []int{nostr.KindClientAuthentication, blossom.KindAuth, 27235, 22243} {
		ch := begin(t, is, alice)
		ev := ch.Unsigned()
		ev.Kind = kind
		if err := is.Verify(ch.LoginID, sign(t, alice.key, ev)); !errors.Is(err, ErrBadProof) || !strings.Contains(err.Error(), "kind") {
			t.Errorf("kind %d: %v", kind, err)
		}
	}

	// The other way: a login proof does not pass as a relay AUTH.
	ch = begin(t, is, alice)
	proof := sign(t, alice.key, ch.Unsigned())
	if _, ok := nip42.ValidateAuthEvent(proof, ch.Nonce, "wss://relay.example"); ok {
		t.Fatal("a login proof passed as a NIP-42 AUTH event")
	}
}

func TestUnknownLogin(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)
	ch := begin(t, is, alice)
	ev := sign(t, alice.key, ch.Unsigned())
	for _, id := range []string{"", "nope", strings.Repeat("0", 32), ch.LoginID + "0", strings.ToUpper(ch.LoginID)} {
		err := is.Verify(id, ev)
		wantErr(t, err, ErrUnknownLogin)
		if DBusErrorName(err) != DBusAuthFailed {
			t.Fatalf("D-Bus name %q", DBusErrorName(err))
		}
	}
	// None of those consumed the real one.
	if c, err := is.Lookup(ch.LoginID); err != nil || c.Nonce != ch.Nonce {
		t.Fatalf("Lookup: %v", err)
	}
	if !is.Cancel(ch.LoginID) || is.Cancel(ch.LoginID) {
		t.Fatal("Cancel did not report the outstanding login once")
	}
	wantErr(t, is.Verify(ch.LoginID, ev), ErrUnknownLogin)
}

func TestBeginValidation(t *testing.T) {
	is := NewIssuer(Options{})
	pk := newUser(t).pk
	for name, args := range map[string][4]string{
		"bad pubkey":      {"alice", "npub1xyz", "h", "sshd"},
		"upper pubkey":    {"alice", strings.ToUpper(pk), "h", "sshd"},
		"empty user":      {"", pk, "h", "sshd"},
		"empty host":      {"alice", pk, "", "sshd"},
		"host with space": {"alice", pk, "a b", "sshd"},
		"service newline": {"alice", pk, "h", "ssh\nd"},
		"invalid utf8":    {"alice", pk, "h\xff", "sshd"},
		"long service":    {"alice", pk, "h", strings.Repeat("s", 65)},
	} {
		_, err := is.Begin(args[0], args[1], args[2], args[3])
		if !errors.Is(err, ErrInvalid) || DBusErrorName(err) != DBusInvalidArgs {
			t.Errorf("%s: %v", name, err)
		}
	}
	if is.Outstanding() != 0 {
		t.Fatal("refused Begins left logins")
	}
}

func TestBounds(t *testing.T) {
	is := NewIssuer(Options{})
	alice := newUser(t)
	first := begin(t, is, alice)
	second := begin(t, is, alice)
	for i := 2; i < DefaultMaxPerUser+1; i++ {
		begin(t, is, alice)
	}
	if n := is.Outstanding(); n != DefaultMaxPerUser {
		t.Fatalf("%d outstanding for one user, want %d", n, DefaultMaxPerUser)
	}
	wantErr(t, is.Verify(first.LoginID, sign(t, alice.key, first.Unsigned())), ErrUnknownLogin)
	if err := is.Verify(second.LoginID, sign(t, alice.key, second.Unsigned())); err != nil {
		t.Fatalf("the second login was dropped: %v", err)
	}

	is = NewIssuer(Options{})
	var ids []string
	for i := 0; i < DefaultMaxTotal+5; i++ {
		ch, err := is.Begin(fmt.Sprintf("u%d", i), alice.pk, "h", "sshd")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ch.LoginID)
	}
	if n := is.Outstanding(); n != DefaultMaxTotal {
		t.Fatalf("%d outstanding, want %d", n, DefaultMaxTotal)
	}
	for i, id := range ids {
		_, err := is.Lookup(id)
		if dropped := i < 5; dropped != errors.Is(err, ErrUnknownLogin) {
			t.Fatalf("login %d: %v", i, err)
		}
	}
}

func TestConcurrentBeginVerify(t *testing.T) {
	is := NewIssuer(Options{})
	users := make([]user, 100)
	for i := range users {
		users[i] = newUser(t)
	}
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func(u user, i int) {
			defer wg.Done()
			ch, err := is.Begin(fmt.Sprintf("u%d", i), u.pk, "host", "sshd")
			if err != nil {
				t.Error(err)
				return
			}
			ev := ch.Unsigned()
			if err := u.key.SignEvent(ctx, ev); err != nil {
				t.Error(err)
				return
			}
			if err := is.Verify(ch.LoginID, ev); err != nil {
				t.Errorf("user %d: %v", i, err)
			}
			if err := is.Verify(ch.LoginID, ev); !errors.Is(err, ErrReplayed) {
				t.Errorf("user %d second Verify: %v", i, err)
			}
		}(users[i], i)
	}
	wg.Wait()

	// 100 goroutines race to complete the same login: exactly one wins.
	alice := users[0]
	ch, _ := is.Begin("u0", alice.pk, "host", "sshd")
	ev := sign(t, alice.key, ch.Unsigned())
	var ok, replayed atomic.Int32
	start := make(chan struct{})
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch err := is.Verify(ch.LoginID, ev); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplayed):
				replayed.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 99 {
		t.Fatalf("%d succeeded, %d replayed; want 1 and 99", ok.Load(), replayed.Load())
	}
}

func TestDBusErrorName(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                "",
		errors.New("other"):                "",
		newErr(ErrTimeout, nil, "x"):       DBusTimeout,
		newErr(ErrUnavailable, nil, "x"):   DBusUnavailable,
		newErr(ErrClosed, nil, "x"):        DBusUnavailable,
		newErr(ErrSignerRefused, nil, "x"): DBusAuthFailed,
		fmt.Errorf("w: %w", newErr(ErrExpired, nil, "")): DBusProofExpired,
	} {
		if got := DBusErrorName(err); got != want {
			t.Errorf("%v: %q, want %q", err, got, want)
		}
	}
}
