package daemon_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip46"

	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/login"
)

// bunker is go-nostr's in-process NIP-46 signer for one user, served over the env's relay
// with a handler key of its own. approve decides sign_event requests.
type bunker struct {
	handlerSK, handlerPK string
	signer               nip46.DynamicSigner
	decrypts             atomic.Int32
}

func startBunker(t *testing.T, relayURL string, id ident, approve func(nostr.Event) bool) *bunker {
	t.Helper()
	b := &bunker{handlerSK: nostr.GeneratePrivateKey()}
	b.handlerPK, _ = nostr.GetPublicKey(b.handlerSK)
	b.signer = nip46.NewDynamicSigner(
		func(handlerPubkey string) (string, error) {
			if handlerPubkey != b.handlerPK {
				return "", errors.New("not our handler key")
			}
			return b.handlerSK, nil
		},
		func(string) (nostr.Keyer, error) { return id.keyer, nil },
		func(ev nostr.Event, from, secret string) bool { return approve(ev) },
		func(from, secret string) bool { b.decrypts.Add(1); return true },
		nil, nil,
	)
	ctx, cancel := context.WithCancel(context.Background())
	relay, err := nostr.RelayConnect(ctx, relayURL)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := relay.Subscribe(ctx, nostr.Filters{{
		Kinds: []int{login.KindNostrConnect}, Tags: nostr.TagMap{"p": []string{b.handlerPK}}, LimitZero: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	<-sub.EndOfStoredEvents
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.Events {
			_, _, resp, err := b.signer.HandleRequest(ctx, ev)
			if err == nil {
				relay.Publish(ctx, resp)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		relay.Close()
	})
	return b
}

func (b *bunker) uri(relayURL string) string {
	return "bunker://" + b.handlerPK + "?" + url.Values{"relay": {relayURL}}.Encode()
}

// TestRemoteSignerLoginAndSession: a user whose settings name a NIP-46 bunker logs in by
// approving on it; the session's secrets are decrypted through it; a refusal is AuthFailed.
func TestRemoteSignerLoginAndSession(t *testing.T) {
	_, fake := binaries(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	bob, carl := newIdent(t, "bob"), newIdent(t, "carl")
	relay := e.stack.RelayURL()
	bb := startBunker(t, relay, bob, func(ev nostr.Event) bool { return ev.Kind == login.KindLoginProof })
	bc := startBunker(t, relay, carl, func(nostr.Event) bool { return false }) // says no
	p := e.publish(bob, pubOpts{bunker: bb.uri(relay)})
	e.publish(carl, pubOpts{bunker: bc.uri(relay)})
	u := e.enroll(bob)
	e.enroll(carl)

	var id, method, prompt, message, uri string
	must(t, e.mustCall("BeginLogin", "bob", "sshd", "").Store(&id, &method, &prompt, &message, &uri))
	if method != "remote-signer" || prompt != "" || uri != "" || message != "Approve the login for bob ("+bob.npub+") on your signer" {
		t.Fatalf("BeginLogin: method %q prompt %q message %q uri %q", method, prompt, message, uri)
	}
	e.mustCall("CompleteLogin", id, "")
	if st := e.status("bob"); st.Signer != "pending" || st.LoginMethod != "remote-signer" {
		t.Fatalf("after the remote login: signer %q method %q", st.Signer, st.LoginMethod)
	}

	e.mustCall("OpenSession", "bob")
	if bb.decrypts.Load() == 0 {
		t.Fatal("the secrets were not decrypted through the remote signer")
	}
	sdir := filepath.Join(e.rt, strconv.Itoa(int(u.UID)), "secrets")
	for _, f := range p.files {
		b, err := os.ReadFile(filepath.Join(sdir, f.Name))
		if err != nil || string(b) != string(f.Data) {
			t.Fatalf("%s: %q %v", f.Name, b, err)
		}
	}
	e.mustCall("CloseSession", "bob")
	if st := e.status("bob"); st.Signer != "none" || len(st.Secrets) != 0 {
		t.Fatalf("after close: %+v", st)
	}

	// carl's signer refuses to sign.
	must(t, e.mustCall("BeginLogin", "carl", "sshd", "").Store(&id, &method, &prompt, &message, &uri))
	msg := e.callErr(homed.ErrAuthFailed, "CompleteLogin", id, "")
	if !strings.Contains(msg, "refuse") {
		t.Fatalf("refusal message: %s", msg)
	}
}
