package login

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip44"
	"github.com/nbd-wtf/go-nostr/nip46"

	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
)

// bunker is go-nostr's in-process NIP-46 signer (nip46.DynamicSigner) served over a real
// relay: it holds the user's key, talks through a handler key of its own (so the
// remote-signer key and the user key differ, as NIP-46 allows), and asks policy before
// signing.
type bunker struct {
	handlerSK, handlerPK string
	user                 user
	signer               nip46.DynamicSigner
	signRequests         atomic.Int32
	silent               atomic.Int32 // 1: never answer sign_event (the user never approves); 2: never answer anything
}

func startBunker(t *testing.T, relayURL string, u user, allowSign func(nostr.Event) bool) *bunker {
	t.Helper()
	b := &bunker{handlerSK: nostr.GeneratePrivateKey(), user: u}
	b.handlerPK, _ = nostr.GetPublicKey(b.handlerSK)
	b.signer = nip46.NewDynamicSigner(
		func(handlerPubkey string) (string, error) {
			if handlerPubkey != b.handlerPK {
				return "", errors.New("not our handler key")
			}
			return b.handlerSK, nil
		},
		func(string) (nostr.Keyer, error) { return u.key, nil },
		func(ev nostr.Event, from, secret string) bool {
			b.signRequests.Add(1)
			return allowSign(ev)
		},
		nil, nil, nil,
	)
	b.serve(t, relayURL)
	return b
}

// serve answers requests p-tagged to the handler key until the test ends.
func (b *bunker) serve(t *testing.T, relayURL string) {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	relay, err := nostr.RelayConnect(c, relayURL)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := relay.Subscribe(c, nostr.Filters{{
		Kinds: []int{KindNostrConnect}, Tags: nostr.TagMap{"p": []string{b.handlerPK}}, LimitZero: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	<-sub.EndOfStoredEvents
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.Events {
			req, _, resp, err := b.signer.HandleRequest(c, ev)
			if err != nil {
				continue
			}
			if mode := b.silent.Load(); mode == 2 || mode == 1 && req.Method == "sign_event" {
				continue
			}
			_ = relay.Publish(c, resp)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		relay.Close()
	})
}

func (b *bunker) uri(relayURL, secret string) string {
	q := url.Values{"relay": {relayURL}}
	if secret != "" {
		q.Set("secret", secret)
	}
	return "bunker://" + b.handlerPK + "?" + q.Encode()
}

func allowAll(nostr.Event) bool { return true }

func TestBunkerApproves(t *testing.T) {
	st := devstacktest.Start(t)
	alice := newUser(t)
	b := startBunker(t, st.RelayURL(), alice, func(ev nostr.Event) bool { return ev.Kind == KindLoginProof || ev.Kind == 1 })
	is := NewIssuer(Options{})
	ch := begin(t, is, alice)

	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ev, rs, err := ProveWithBunker(c, ch, b.uri(st.RelayURL(), "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if err := is.Verify(ch.LoginID, ev); err != nil {
		t.Fatalf("Verify of the bunker-signed proof: %v", err)
	}
	if rs.SignerPublicKey() != b.handlerPK {
		t.Fatalf("signer key %s, want the handler key", rs.SignerPublicKey())
	}

	// The remote signer is the session's keyer: sign, encrypt, decrypt.
	note := &nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: "hi"}
	if err := rs.SignEvent(c, note); err != nil {
		t.Fatal(err)
	}
	if ok, _ := note.CheckSignature(); !ok || note.PubKey != alice.pk {
		t.Fatal("the session signer's event does not verify as alice's")
	}
	peer := newUser(t)
	ct, err := rs.Encrypt(c, "secret for peer", peer.pk)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := peer.key.Decrypt(ctx, ct, alice.pk); err != nil || pt != "secret for peer" {
		t.Fatalf("peer decrypting: %q, %v", pt, err)
	}
	ct2, _ := peer.key.Encrypt(ctx, "secret for alice", alice.pk)
	if pt, err := rs.Decrypt(c, ct2, peer.pk); err != nil || pt != "secret for alice" {
		t.Fatalf("remote decrypt: %q, %v", pt, err)
	}

	// After Close, calls fail at once.
	rs.Close()
	if err := rs.SignEvent(c, &nostr.Event{Kind: 1, CreatedAt: nostr.Now()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestBunkerRefuses(t *testing.T) {
	st := devstacktest.Start(t)
	alice := newUser(t)
	b := startBunker(t, st.RelayURL(), alice, func(nostr.Event) bool { return false })
	is := NewIssuer(Options{})
	ch := begin(t, is, alice)
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	ev, rs, err := ProveWithBunker(c, ch, b.uri(st.RelayURL(), ""))
	if ev != nil || rs != nil {
		t.Fatal("a refusal returned a proof or a signer")
	}
	wantErr(t, err, ErrSignerRefused)
	wantErr(t, err, ErrAuthFailed)
	if !strings.Contains(err.Error(), "refusing") || DBusErrorName(err) != DBusAuthFailed {
		t.Fatalf("error %q (%s) does not carry the signer's refusal", err, DBusErrorName(err))
	}
	if b.signRequests.Load() != 1 {
		t.Fatalf("%d sign requests reached the bunker's policy", b.signRequests.Load())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the refusal took %v", el)
	}
	t.Logf("refused: %v", err)
}

func TestBunkerWrongKey(t *testing.T) {
	st := devstacktest.Start(t)
	alice, mallory := newUser(t), newUser(t)
	b := startBunker(t, st.RelayURL(), mallory, allowAll)
	is := NewIssuer(Options{})
	ch := begin(t, is, alice)
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, _, err := ProveWithBunker(c, ch, b.uri(st.RelayURL(), ""))
	wantErr(t, err, ErrWrongKey)
	if b.signRequests.Load() != 0 {
		t.Fatal("the user was asked to sign for a key that is not enrolled")
	}
}

func TestBunkerNeverAnswers(t *testing.T) {
	st := devstacktest.Start(t)
	alice := newUser(t)
	is := NewIssuer(Options{})
	const bound = 2 * time.Second

	t.Run("sign_event unanswered", func(t *testing.T) {
		b := startBunker(t, st.RelayURL(), alice, allowAll)
		b.silent.Store(1)
		ch := begin(t, is, alice)
		c, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		start := time.Now()
		_, rs, err := ProveWithBunker(c, ch, b.uri(st.RelayURL(), ""))
		el := time.Since(start)
		if rs != nil {
			t.Fatal("returned a signer")
		}
		wantErr(t, err, ErrTimeout)
		if DBusErrorName(err) != DBusTimeout {
			t.Fatalf("D-Bus name %q", DBusErrorName(err))
		}
		if el < bound-100*time.Millisecond || el > bound+time.Second {
			t.Fatalf("returned after %v, bound %v", el, bound)
		}
		if !strings.Contains(err.Error(), "sign_event") {
			t.Fatalf("error does not say what went unanswered: %v", err)
		}
	})
	t.Run("connect unanswered", func(t *testing.T) {
		b := startBunker(t, st.RelayURL(), alice, allowAll)
		b.silent.Store(2)
		ch := begin(t, is, alice)
		c, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		start := time.Now()
		_, _, err := ProveWithBunker(c, ch, b.uri(st.RelayURL(), ""))
		wantErr(t, err, ErrTimeout)
		if el := time.Since(start); el < bound-100*time.Millisecond || el > bound+time.Second {
			t.Fatalf("returned after %v", el)
		}
		if !strings.Contains(err.Error(), "connect") {
			t.Fatalf("error does not say what went unanswered: %v", err)
		}
	})
	t.Run("no bunker listening", func(t *testing.T) {
		// khatru tells the publisher when nobody is subscribed to an ephemeral event
		// ("mute:"): that fails at once as Unavailable instead of waiting for the bound.
		nobody := newUser(t)
		ch := begin(t, is, alice)
		c, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		_, _, err := ProveWithBunker(c, ch, "bunker://"+nobody.pk+"?relay="+url.QueryEscape(st.RelayURL()))
		wantErr(t, err, ErrUnavailable)
		if !strings.Contains(err.Error(), "not listening") {
			t.Fatalf("unclear: %v", err)
		}
	})
	t.Run("relay down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "ws://" + ln.Addr().String()
		ln.Close()
		ch := begin(t, is, alice)
		c, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		start := time.Now()
		_, _, err = ProveWithBunker(c, ch, "bunker://"+alice.pk+"?relay="+url.QueryEscape(dead))
		wantErr(t, err, ErrUnavailable)
		if el := time.Since(start); el > bound+time.Second {
			t.Fatalf("returned after %v", el)
		}
	})
}

func TestBunkerURIRefused(t *testing.T) {
	alice := newUser(t)
	ch := begin(t, NewIssuer(Options{}), alice)
	for _, uri := range []string{
		"",
		"nostrconnect://" + alice.pk + "?relay=ws://127.0.0.1:1",
		"bunker://npub1abc?relay=ws://127.0.0.1:1",
		"bunker://" + alice.pk,                             // no relay
		"bunker://" + alice.pk + "?relay=http://x.example", // not a websocket
		"alice@example.com",                                // NIP-05 lookups are not done
	} {
		_, _, err := ProveWithBunker(ctx, ch, uri)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", uri, err)
		}
	}
}

// nostrconnect: an in-test signer that takes the URI, sends the connect response with the
// secret, then serves requests like a bunker.
func connectWithURI(t *testing.T, relayURL, uri string, b *bunker, secretOverride string) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "nostrconnect" {
		t.Fatalf("URI %q", uri)
	}
	clientPK := u.Host
	secret := u.Query().Get("secret")
	if secretOverride != "" {
		secret = secretOverride
	}
	ck, err := nip44.GenerateConversationKey(clientPK, b.handlerSK)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := json.Marshal(nip46.Response{ID: "connect-" + secret[:4], Result: secret})
	content, err := nip44.Encrypt(string(resp), ck)
	if err != nil {
		t.Fatal(err)
	}
	ev := nostr.Event{Kind: KindNostrConnect, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"p", clientPK}}, Content: content}
	if err := ev.Sign(b.handlerSK); err != nil {
		t.Fatal(err)
	}
	relay, err := nostr.RelayConnect(ctx, relayURL)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := relay.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

func TestNostrConnect(t *testing.T) {
	st := devstacktest.Start(t)
	alice := newUser(t)
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	uri, wait, err := NewNostrConnect(c, []string{st.RelayURL()}, "nostr-homed test")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "nostrconnect" || !nostr.IsValidPublicKey(u.Host) || q.Get("relay") != nostr.NormalizeURL(st.RelayURL()) ||
		len(q.Get("secret")) < 16 || q.Get("name") != "nostr-homed test" || !strings.Contains(q.Get("perms"), "sign_event:29242") {
		t.Fatalf("URI %s", uri)
	}

	// A spoofer who saw the client key but not the URI's secret is ignored; the real signer
	// (who scanned the URI) connects.
	spoofer := startBunker(t, st.RelayURL(), newUser(t), allowAll)
	connectWithURI(t, st.RelayURL(), uri, spoofer, strings.Repeat("f", 32))
	b := startBunker(t, st.RelayURL(), alice, allowAll)
	connectWithURI(t, st.RelayURL(), uri, b, "")

	rs, err := wait(c)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if rs.SignerPublicKey() != b.handlerPK {
		t.Fatalf("connected to %s, want the signer that knew the secret", rs.SignerPublicKey())
	}
	is := NewIssuer(Options{})
	ch := begin(t, is, alice)
	ev, err := ProveWithSigner(c, ch, rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Verify(ch.LoginID, ev); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if spoofer.signRequests.Load() != 0 {
		t.Fatal("the spoofer got a request")
	}
}

func TestNostrConnectTimeouts(t *testing.T) {
	st := devstacktest.Start(t)
	// Nobody connects.
	uri, wait, err := NewNostrConnect(ctx, []string{st.RelayURL()}, "t")
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	rs, err := wait(c)
	if rs != nil {
		t.Fatal("returned a signer")
	}
	wantErr(t, err, ErrTimeout)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("returned after %v", el)
	}

	// Only a connect with the wrong secret arrives.
	uri, wait, err = NewNostrConnect(ctx, []string{st.RelayURL()}, "t")
	if err != nil {
		t.Fatal(err)
	}
	spoofer := startBunker(t, st.RelayURL(), newUser(t), allowAll)
	connectWithURI(t, st.RelayURL(), uri, spoofer, strings.Repeat("e", 32))
	c2, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	_, err = wait(c2)
	wantErr(t, err, ErrTimeout)

	// No relay reachable: NewNostrConnect gives no URI.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "ws://" + ln.Addr().String()
	ln.Close()
	c3, cancel3 := context.WithTimeout(ctx, time.Second)
	defer cancel3()
	if uri, _, err := NewNostrConnect(c3, []string{dead}, "t"); !errors.Is(err, ErrUnavailable) || uri != "" {
		t.Fatalf("dead relay: %q, %v", uri, err)
	}
	if _, _, err := NewNostrConnect(ctx, nil, "t"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no relay: %v", err)
	}
}

// The remote signer must not hand back an event other than the one asked for.
func TestRemoteSignerChecksTheSignedEvent(t *testing.T) {
	st := devstacktest.Start(t)
	alice := newUser(t)
	b := startBunker(t, st.RelayURL(), alice, allowAll)
	// A signer that restamps what it signs (a different event than asked for).
	b.signer = nip46.NewDynamicSigner(
		func(string) (string, error) { return b.handlerSK, nil },
		func(string) (nostr.Keyer, error) { return restamping{alice.key}, nil },
		nil, nil, nil, nil,
	)
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rs, err := connectBunker(c, b.uri(st.RelayURL(), ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ev := &nostr.Event{Kind: 1, CreatedAt: 1_700_000_000, Content: "x"}
	err = rs.SignEvent(c, ev)
	wantErr(t, err, ErrSignerRefused)
	if ev.Sig != "" {
		t.Fatal("the event was changed")
	}
}

type restamping struct{ keyer.KeySigner }

func (r restamping) SignEvent(ctx context.Context, ev *nostr.Event) error {
	ev.CreatedAt++
	return r.KeySigner.SignEvent(ctx, ev)
}
