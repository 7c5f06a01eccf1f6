package login

import (
	"context"
	"net/url"

	"github.com/nbd-wtf/go-nostr"
)

// ProveWithBunker answers ch through a NIP-46 remote signer named by a bunker:// URI (the
// "remote-signer" method, connection initiated by the signer): it connects (sending the URI's
// secret and DefaultPerms), asks for the user's public key (ErrWrongKey if it is not the
// enrolled key, before the user is asked to approve anything), and asks the signer to sign
// the proof. ctx bounds all of it: when it ends, the error is ErrTimeout.
//
// It returns the signed proof for Issuer.Verify and the RemoteSigner, which stays connected
// for the session (org.nostr.Signer) until Closed; on error it has been closed. A refusal by
// the signer is ErrSignerRefused (and ErrAuthFailed); relays that cannot be reached are
// ErrUnavailable.
func ProveWithBunker(ctx context.Context, ch *Challenge, bunkerURI string, opts ...RemoteOption) (*nostr.Event, *RemoteSigner, error) {
	if ch == nil {
		return nil, nil, newErr(ErrInvalid, nil, "no challenge")
	}
	rs, err := connectBunker(ctx, bunkerURI, opts)
	if err != nil {
		return nil, nil, err
	}
	ev, err := ProveWithSigner(ctx, ch, rs)
	if err != nil {
		rs.Close()
		return nil, nil, err
	}
	return ev, rs, nil
}

// NewNostrConnect starts a connection initiated by the client (NIP-46 nostrconnect://): it
// makes a fresh client key and secret, subscribes on relays for the signer's answer, and
// returns the URI to show the user (as text or a QR code) once the subscription is in place
// on at least one relay (ctx bounds that). The URI carries the relays, the secret, the
// permissions asked for (DefaultPerms unless WithPerms) and appName.
//
// wait blocks until a remote signer answers with a connect response carrying the secret
// (answers with another secret are ignored: they may be spoofs), learns the user's public key
// with get_public_key, and returns the connected RemoteSigner; or until its ctx ends
// (ErrTimeout). Call wait exactly once: when it fails, everything is released; to abandon the
// attempt without waiting, call it with a cancelled context. Then prove with
// ProveWithSigner(ctx, ch, signer).
func NewNostrConnect(ctx context.Context, relays []string, appName string, opts ...RemoteOption) (uri string, wait func(context.Context) (*RemoteSigner, error), err error) {
	rs, err := newRemote(relays, opts)
	if err != nil {
		return "", nil, err
	}
	secret, err := randomHex(16)
	if err != nil {
		rs.Close()
		return "", nil, err
	}
	rs.mu.Lock()
	rs.connectSecret = secret
	rs.connected = make(chan struct{})
	connected := rs.connected
	rs.mu.Unlock()

	if err := rs.waitReady(ctx); err != nil {
		rs.Close()
		return "", nil, err
	}

	q := url.Values{}
	for _, r := range rs.relays {
		q.Add("relay", r)
	}
	q.Set("secret", secret)
	if rs.cfg.perms != "" {
		q.Set("perms", rs.cfg.perms)
	}
	if appName != "" {
		q.Set("name", appName)
	}
	uri = (&url.URL{Scheme: "nostrconnect", Host: rs.clientPK, RawQuery: q.Encode()}).String()

	wait = func(ctx context.Context) (*RemoteSigner, error) {
		select {
		case <-connected:
		case <-ctx.Done():
			rs.Close()
			return nil, newErr(ErrTimeout, ctx.Err(), "no remote signer connected")
		}
		if _, err := rs.GetPublicKey(ctx); err != nil {
			rs.Close()
			return nil, err
		}
		return rs, nil
	}
	return uri, wait, nil
}
