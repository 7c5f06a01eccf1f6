package login

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
	"github.com/nbd-wtf/go-nostr/nip46"

	"github.com/nostr-homed/nostr-homed/internal/events"
)

// KindNostrConnect is NIP-46's request and response kind.
const KindNostrConnect = nostr.KindNostrConnect // 24133

// DefaultCallTimeout bounds a remote signer call whose context has no deadline.
const DefaultCallTimeout = 60 * time.Second

// DefaultPerms are the NIP-46 permissions asked for: the login proof, the events nostr-homed
// signs during a session, and NIP-44 for the user's secrets and manifest.
var DefaultPerms = strings.Join([]string{
	"get_public_key",
	"sign_event:" + strconv.Itoa(KindLoginProof),
	"sign_event:" + strconv.Itoa(events.KindSettings),
	"sign_event:" + strconv.Itoa(events.KindSecrets),
	"sign_event:" + strconv.Itoa(events.KindManifest),
	"nip44_encrypt",
	"nip44_decrypt",
}, ",")

// RemoteOption configures a remote signer connection.
type RemoteOption func(*remoteConfig)

type remoteConfig struct {
	clientKey   string
	onAuth      func(string)
	callTimeout time.Duration
	perms       string
}

// WithClientKey sets the client keypair's secret key (hex). By default a fresh one is
// generated per connection. This key only authenticates the daemon to the remote signer (the
// signer approves per client key); it is not the user's key.
func WithClientKey(hexKey string) RemoteOption { return func(c *remoteConfig) { c.clientKey = hexKey } }

// WithAuthURLHandler sets a function called with the URL of a NIP-46 auth challenge (the
// signer asks the user to authenticate there; the call keeps waiting).
func WithAuthURLHandler(f func(url string)) RemoteOption {
	return func(c *remoteConfig) { c.onAuth = f }
}

// WithCallTimeout bounds each call whose context has no deadline (default
// DefaultCallTimeout).
func WithCallTimeout(d time.Duration) RemoteOption {
	return func(c *remoteConfig) { c.callTimeout = d }
}

// WithPerms sets the permissions requested (default DefaultPerms).
func WithPerms(perms string) RemoteOption { return func(c *remoteConfig) { c.perms = perms } }

// RemoteSigner is a NIP-46 client: a nostr.Keyer whose operations are requests to a remote
// signer over relays. It is safe for concurrent use. Close it at the end of the session.
//
// It is written on go-nostr's primitives (SimplePool subscriptions, which reconnect, nip44,
// nip46.Request/Response) rather than nip46.BunkerClient, because in v0.52.3 BunkerClient
// closes a response channel its listener may still send on (a panic when a response races a
// timeout), memoizes the public key without a lock, and cannot accept a connection initiated
// with nostrconnect://; keyer.BunkerSigner's Decrypt also calls nip44_encrypt.
type RemoteSigner struct {
	cfg      remoteConfig
	clientSK string // the disposable client key (hex), never the user's
	clientPK string
	relays   []string
	pool     *nostr.SimplePool
	ctx      context.Context // lives until Close
	cancel   context.CancelFunc
	idPrefix string
	serial   atomic.Uint64
	ready    chan struct{} // closed once a subscription is in place on some relay

	mu            sync.Mutex
	signerPK      string   // remote-signer pubkey; "" until a nostrconnect connect arrives
	ck            [32]byte // NIP-44 conversation key with signerPK
	userPK        string   // learned with get_public_key
	waiters       map[string]chan nip46.Response
	connectSecret string        // nostrconnect: the secret the connect response must carry
	connected     chan struct{} // nostrconnect: closed when it has
	closeOnce     sync.Once
}

var _ nostr.Keyer = (*RemoteSigner)(nil)

func newRemote(relays []string, opts []RemoteOption) (*RemoteSigner, error) {
	cfg := remoteConfig{callTimeout: DefaultCallTimeout, perms: DefaultPerms}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.callTimeout <= 0 {
		cfg.callTimeout = DefaultCallTimeout
	}
	if len(relays) == 0 {
		return nil, newErr(ErrInvalid, nil, "no relay for the remote signer")
	}
	var rl []string
	for _, r := range relays {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return nil, newErr(ErrInvalid, nil, "relay %q is not a ws:// or wss:// URL", clip(r))
		}
		if n := nostr.NormalizeURL(r); !contains(rl, n) {
			rl = append(rl, n)
		}
	}
	sk := cfg.clientKey
	if sk == "" {
		sk = nostr.GeneratePrivateKey()
	}
	pk, err := nostr.GetPublicKey(sk)
	if err != nil || !isLowerHex(sk, 64) {
		return nil, newErr(ErrInvalid, nil, "the client key is not a hex secret key")
	}
	prefix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &RemoteSigner{
		cfg:      cfg,
		clientSK: sk,
		clientPK: pk,
		relays:   rl,
		pool:     nostr.NewSimplePool(ctx),
		ctx:      ctx,
		cancel:   cancel,
		idPrefix: "nh-" + prefix,
		ready:    make(chan struct{}),
		waiters:  map[string]chan nip46.Response{},
	}
	rs.subscribe()
	return rs, nil
}

// subscribe listens on every relay for kind 24133 events p-tagged to the client key. Each
// relay has its own SimplePool subscription (which reconnects), so that ready can close as
// soon as one relay has the subscription in place even if another is down.
func (rs *RemoteSigner) subscribe() {
	var readyOnce sync.Once
	now := nostr.Now()
	for _, url := range rs.relays {
		eose := make(chan struct{})
		evs := rs.pool.SubscribeManyNotifyEOSE(rs.ctx, []string{url}, nostr.Filter{
			Kinds:     []int{KindNostrConnect},
			Tags:      nostr.TagMap{"p": []string{rs.clientPK}},
			Since:     &now,
			LimitZero: true,
		}, eose, nostr.WithLabel("nostr-homed-nip46"))
		go func() {
			select {
			case <-eose:
				if rs.ctx.Err() == nil {
					readyOnce.Do(func() { close(rs.ready) })
				}
			case <-rs.ctx.Done():
			}
		}()
		go func() {
			for ie := range evs {
				rs.handle(ie.Event)
			}
		}()
	}
}

// waitReady waits until some relay has our subscription: responses are ephemeral, so a
// request sent (or a URI shown) before that could be answered unheard.
func (rs *RemoteSigner) waitReady(ctx context.Context) error {
	select {
	case <-rs.ready:
		return nil
	case <-rs.ctx.Done():
		return newErr(ErrClosed, nil, "")
	case <-ctx.Done():
		return newErr(ErrUnavailable, ctx.Err(), "no relay of %s could be subscribed to", strings.Join(rs.relays, ", "))
	}
}

func (rs *RemoteSigner) handle(ev *nostr.Event) {
	if ev == nil || ev.Kind != KindNostrConnect || !ev.Tags.ContainsAny("p", []string{rs.clientPK}) {
		return
	}
	if ok, _ := ev.CheckSignature(); !ok {
		return
	}
	rs.mu.Lock()
	signerPK, ck, secret := rs.signerPK, rs.ck, rs.connectSecret
	rs.mu.Unlock()

	if signerPK == "" {
		// nostrconnect://: a signer we do not know yet must prove it got the URI by
		// returning its secret.
		if secret == "" {
			return
		}
		ck2, err := nip44.GenerateConversationKey(ev.PubKey, rs.clientSK)
		if err != nil {
			return
		}
		resp, ok := decodeResponse(ev.Content, ck2)
		if !ok || resp.Error != "" || subtle.ConstantTimeCompare([]byte(resp.Result), []byte(secret)) != 1 {
			return
		}
		rs.mu.Lock()
		if rs.signerPK == "" && rs.connectSecret != "" {
			rs.signerPK, rs.ck, rs.connectSecret = ev.PubKey, ck2, ""
			close(rs.connected)
		}
		rs.mu.Unlock()
		return
	}
	if ev.PubKey != signerPK {
		return
	}
	resp, ok := decodeResponse(ev.Content, ck)
	if !ok {
		return
	}
	rs.mu.Lock()
	w := rs.waiters[resp.ID]
	rs.mu.Unlock()
	if w != nil {
		select { // never block, never send on a closed channel: waiters are not closed
		case w <- resp:
		default:
		}
	}
}

func decodeResponse(content string, ck [32]byte) (nip46.Response, bool) {
	var resp nip46.Response
	plain, err := nip44.Decrypt(content, ck)
	if err != nil {
		return resp, false
	}
	if err := json.Unmarshal([]byte(plain), &resp); err != nil || resp.ID == "" {
		return resp, false
	}
	return resp, true
}

// call sends a request and waits for its response.
func (rs *RemoteSigner) call(ctx context.Context, method string, params ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rs.cfg.callTimeout)
		defer cancel()
	}
	if err := rs.waitReady(ctx); err != nil {
		return "", err
	}
	id := rs.idPrefix + "-" + strconv.FormatUint(rs.serial.Add(1), 10)
	w := make(chan nip46.Response, 4)
	rs.mu.Lock()
	if rs.ctx.Err() != nil {
		rs.mu.Unlock()
		return "", newErr(ErrClosed, nil, "%s", method)
	}
	signerPK, ck := rs.signerPK, rs.ck
	if signerPK == "" {
		rs.mu.Unlock()
		return "", newErr(ErrUnavailable, nil, "%s: not connected to a remote signer", method)
	}
	rs.waiters[id] = w
	rs.mu.Unlock()
	defer func() {
		rs.mu.Lock()
		delete(rs.waiters, id)
		rs.mu.Unlock()
	}()

	if params == nil {
		params = []string{}
	}
	req, err := json.Marshal(nip46.Request{ID: id, Method: method, Params: params})
	if err != nil {
		return "", fmt.Errorf("login: encoding %s request: %w", method, err)
	}
	content, err := nip44.Encrypt(string(req), ck)
	if err != nil {
		return "", fmt.Errorf("login: encrypting %s request: %w", method, err)
	}
	ev := nostr.Event{
		Kind:      KindNostrConnect,
		CreatedAt: nostr.Now(),
		Tags:      nostr.Tags{{"p", signerPK}},
		Content:   content,
	}
	if err := ev.Sign(rs.clientSK); err != nil {
		return "", fmt.Errorf("login: signing %s request: %w", method, err)
	}
	if err := rs.publish(ctx, ev); err != nil {
		if ctx.Err() != nil {
			return "", newErr(ErrTimeout, ctx.Err(), "sending %s to the remote signer", method)
		}
		if strings.Contains(err.Error(), "mute:") {
			// khatru (and others) answer OK false "mute: no one was listening" to an
			// ephemeral event nobody is subscribed to: the signer is offline.
			return "", newErr(ErrUnavailable, err, "sending %s: the remote signer is not listening on its relays", method)
		}
		return "", newErr(ErrUnavailable, err, "sending %s to the remote signer", method)
	}
	for {
		select {
		case <-ctx.Done():
			return "", newErr(ErrTimeout, ctx.Err(), "the remote signer did not answer %s", method)
		case <-rs.ctx.Done():
			return "", newErr(ErrClosed, nil, "%s", method)
		case resp := <-w:
			if resp.Result == "auth_url" {
				if rs.cfg.onAuth != nil {
					rs.cfg.onAuth(resp.Error)
				}
				continue // the real answer follows with the same id, or never
			}
			if resp.Error != "" {
				return "", newErr(ErrSignerRefused, nil, "%s: %q", method, clip64(resp.Error))
			}
			return resp.Result, nil
		}
	}
}

// publish sends ev to every relay and returns when one has accepted it, or all failed.
func (rs *RemoteSigner) publish(ctx context.Context, ev nostr.Event) error {
	results := make(chan error, len(rs.relays))
	for _, u := range rs.relays {
		go func() {
			relay, err := rs.pool.EnsureRelay(u)
			if err == nil {
				err = relay.Publish(ctx, ev)
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", u, err)
			}
			results <- err
		}()
	}
	var errs []error
	for range rs.relays {
		select {
		case err := <-results:
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// GetPublicKey returns the user's public key (NIP-46 get_public_key, asked once).
func (rs *RemoteSigner) GetPublicKey(ctx context.Context) (string, error) {
	rs.mu.Lock()
	pk := rs.userPK
	rs.mu.Unlock()
	if pk != "" {
		return pk, nil
	}
	res, err := rs.call(ctx, "get_public_key")
	if err != nil {
		return "", err
	}
	if !nostr.IsValidPublicKey(res) {
		return "", newErr(ErrSignerRefused, nil, "get_public_key returned %q, not a public key", clip(res))
	}
	rs.mu.Lock()
	if rs.userPK == "" {
		rs.userPK = res
	}
	pk = rs.userPK
	rs.mu.Unlock()
	return pk, nil
}

// SignerPublicKey is the remote signer's own key ("" until connected). It may differ from
// the user's key.
func (rs *RemoteSigner) SignerPublicKey() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.signerPK
}

// SignEvent has the remote signer sign ev and accepts the answer only if it is ev (same
// kind, created_at, tags and content), signed by the user's key with a valid signature.
func (rs *RemoteSigner) SignEvent(ctx context.Context, ev *nostr.Event) error {
	userPK, err := rs.GetPublicKey(ctx)
	if err != nil {
		return err
	}
	tags := ev.Tags
	if tags == nil {
		tags = nostr.Tags{}
	}
	param, err := json.Marshal(struct {
		Kind      int             `json:"kind"`
		Content   string          `json:"content"`
		Tags      nostr.Tags      `json:"tags"`
		CreatedAt nostr.Timestamp `json:"created_at"`
	}{ev.Kind, ev.Content, tags, ev.CreatedAt})
	if err != nil {
		return fmt.Errorf("login: encoding the event to sign: %w", err)
	}
	res, err := rs.call(ctx, "sign_event", string(param))
	if err != nil {
		return err
	}
	var signed nostr.Event
	if err := json.Unmarshal([]byte(res), &signed); err != nil {
		return newErr(ErrSignerRefused, err, "sign_event returned no event")
	}
	if signed.PubKey != userPK {
		return newErr(ErrWrongKey, nil, "the remote signer signed with %s, not the user's key %s", clip(signed.PubKey), clip(userPK))
	}
	mine := *ev
	mine.Tags = tags
	mine.PubKey = signed.PubKey
	if id := mine.GetID(); signed.ID != id {
		return newErr(ErrSignerRefused, nil, "the remote signer signed another event than the one asked for")
	}
	if ok, _ := signed.CheckSignature(); !ok {
		return newErr(ErrSignerRefused, nil, "the remote signer's signature does not verify")
	}
	ev.Tags = tags
	ev.PubKey, ev.ID, ev.Sig = signed.PubKey, signed.ID, signed.Sig
	return nil
}

// Encrypt asks the remote signer to NIP-44 encrypt plaintext for recipient.
func (rs *RemoteSigner) Encrypt(ctx context.Context, plaintext, recipient string) (string, error) {
	return rs.call(ctx, "nip44_encrypt", recipient, plaintext)
}

// Decrypt asks the remote signer to NIP-44 decrypt ciphertext from sender.
func (rs *RemoteSigner) Decrypt(ctx context.Context, ciphertext, sender string) (string, error) {
	return rs.call(ctx, "nip44_decrypt", sender, ciphertext)
}

// Close ends the connection: calls in progress fail with ErrClosed, the subscriptions and the
// relay connections are closed. Idempotent.
func (rs *RemoteSigner) Close() error {
	rs.closeOnce.Do(func() {
		rs.cancel()
		rs.pool.Close("remote signer closed")
		rs.pool.Relays.Range(func(_ string, r *nostr.Relay) bool {
			if r != nil {
				_ = r.Close()
			}
			return true
		})
	})
	return nil
}

// connectBunker opens a connection initiated by the remote signer (bunker:// URI).
func connectBunker(ctx context.Context, bunkerURI string, opts []RemoteOption) (*RemoteSigner, error) {
	u, err := url.Parse(bunkerURI)
	if err != nil || u.Scheme != "bunker" {
		return nil, newErr(ErrInvalid, nil, "not a bunker:// URI")
	}
	signerPK := u.Host
	if !nostr.IsValidPublicKey(signerPK) {
		return nil, newErr(ErrInvalid, nil, "bunker URI: %q is not a hex public key", clip(signerPK))
	}
	q := u.Query()
	rs, err := newRemote(q["relay"], opts)
	if err != nil {
		return nil, err
	}
	ck, err := nip44.GenerateConversationKey(signerPK, rs.clientSK)
	if err != nil {
		rs.Close()
		return nil, newErr(ErrInvalid, err, "bunker URI public key")
	}
	rs.mu.Lock()
	rs.signerPK, rs.ck = signerPK, ck
	rs.mu.Unlock()

	secret := q.Get("secret")
	res, err := rs.call(ctx, "connect", signerPK, secret, rs.cfg.perms)
	if err != nil {
		rs.Close()
		return nil, err
	}
	if res != "ack" && (secret == "" || res != secret) {
		rs.Close()
		return nil, newErr(ErrSignerRefused, nil, "connect answered %q", clip(res))
	}
	return rs, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func clip64(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
