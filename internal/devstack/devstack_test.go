package devstack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiatjaf/eventstore"
	"github.com/fiatjaf/eventstore/slicestore"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip11"
	"github.com/nbd-wtf/go-nostr/nip77"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/empty"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/devstack/devstacktest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, url string) *nostr.Relay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := nostr.RelayConnect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

type keys struct{ sk, pk string }

func newKeys(t *testing.T) keys {
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return keys{sk, pk}
}

func (k keys) event(t *testing.T, kind int, created nostr.Timestamp, content string, tags ...nostr.Tag) nostr.Event {
	t.Helper()
	ev := nostr.Event{Kind: kind, CreatedAt: created, Content: content, Tags: tags}
	if err := ev.Sign(k.sk); err != nil {
		t.Fatal(err)
	}
	return ev
}

func publish(t *testing.T, r *nostr.Relay, ev nostr.Event) {
	t.Helper()
	if err := r.Publish(ctxT(t, 10*time.Second), ev); err != nil {
		t.Fatalf("publishing %s: %v", ev.ID, err)
	}
}

func query(t *testing.T, r *nostr.Relay, f nostr.Filter) []*nostr.Event {
	t.Helper()
	evs, err := r.QuerySync(ctxT(t, 10*time.Second), f)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func addr(k keys, d string) nostr.Filter {
	return nostr.Filter{Kinds: []int{30078}, Authors: []string{k.pk}, Tags: nostr.TagMap{"d": []string{d}}}
}

func only(t *testing.T, evs []*nostr.Event, want nostr.Event, what string) {
	t.Helper()
	if len(evs) != 1 || evs[0].ID != want.ID {
		var ids []string
		for _, e := range evs {
			ids = append(ids, fmt.Sprintf("%s(created %d, %q)", e.ID[:8], e.CreatedAt, e.Content))
		}
		t.Fatalf("%s: relay returned %v, want only %s(created %d, %q)", what, ids, want.ID[:8], want.CreatedAt, want.Content)
	}
}

func TestAddressableNewestWins(t *testing.T) {
	st := devstacktest.Start(t)
	r := connect(t, st.RelayURL())
	k := newKeys(t)
	d := nostr.Tag{"d", "nostr-homed/manifest"}
	base := nostr.Now() - 1000

	v1 := k.event(t, 30078, base, "v1", d)
	publish(t, r, v1)
	only(t, query(t, r, addr(k, d[1])), v1, "first")

	v2 := k.event(t, 30078, base+10, "v2", d)
	publish(t, r, v2)
	only(t, query(t, r, addr(k, d[1])), v2, "newer replaces")

	older := k.event(t, 30078, base+5, "older", d)
	publish(t, r, older) // accepted (OK true) but not stored
	only(t, query(t, r, addr(k, d[1])), v2, "older does not replace")

	// Same created_at: the lower id wins (NIP-01).
	var lower, higher nostr.Event
	for i := 0; lower.ID == "" || higher.ID == ""; i++ {
		ev := k.event(t, 30078, base+10, fmt.Sprintf("tie %d", i), d)
		if ev.ID < v2.ID && lower.ID == "" {
			lower = ev
		} else if ev.ID > v2.ID && higher.ID == "" {
			higher = ev
		}
	}
	publish(t, r, higher)
	only(t, query(t, r, addr(k, d[1])), v2, "same created_at, higher id")
	publish(t, r, lower)
	only(t, query(t, r, addr(k, d[1])), lower, "same created_at, lower id")

	// Other addresses are independent: another d tag, another author.
	other := k.event(t, 30078, base, "other d", nostr.Tag{"d", "other"})
	publish(t, r, other)
	only(t, query(t, r, addr(k, "other")), other, "other d")
	only(t, query(t, r, addr(k, d[1])), lower, "first address after another was published")
	k2 := newKeys(t)
	theirs := k2.event(t, 30078, base, "theirs", d)
	publish(t, r, theirs)
	only(t, query(t, r, addr(k2, d[1])), theirs, "other author")

	// A fresh connection sees the same.
	only(t, query(t, connect(t, st.RelayURL()), addr(k, d[1])), lower, "fresh connection")
}

// Concurrent replacements of one address from several connections: every publish
// succeeds (no transaction conflicts) and the newest remains.
func TestConcurrentReplacements(t *testing.T) {
	st := devstacktest.Start(t)
	k := newKeys(t)
	d := nostr.Tag{"d", "race"}
	base := nostr.Now() - 1000
	const n = 50
	evs := make([]nostr.Event, n)
	for i := range evs {
		evs[i] = k.event(t, 30078, base+nostr.Timestamp(i), fmt.Sprint(i), d)
	}
	relays := []*nostr.Relay{connect(t, st.RelayURL()), connect(t, st.RelayURL()), connect(t, st.RelayURL())}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range evs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs[i] = relays[i%len(relays)].Publish(ctx, evs[i])
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publish %d: %v", i, err)
		}
	}
	only(t, query(t, relays[0], addr(k, "race")), evs[n-1], "after concurrent publishes")
}

func TestNIP11(t *testing.T) {
	st := devstacktest.Start(t)
	req, _ := http.NewRequest(http.MethodGet, st.BlossomURL(), nil)
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/nostr+json") {
		t.Fatalf("NIP-11: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var info struct {
		Name          string `json:"name"`
		SupportedNIPs []int  `json:"supported_nips"`
		Software      string `json:"software"`
		Version       string `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	if info.Name != devstack.RelayName || info.Software == "" || info.Version == "" {
		t.Fatalf("NIP-11 %+v", info)
	}
	for _, nip := range []int{1, 11, 40, 77} {
		if !slices.Contains(info.SupportedNIPs, nip) {
			t.Fatalf("supported_nips %v lacks %d", info.SupportedNIPs, nip)
		}
	}
	// go-nostr's client agrees.
	doc, err := nip11.Fetch(ctxT(t, 10*time.Second), st.RelayURL())
	if err != nil || doc.Name != devstack.RelayName {
		t.Fatalf("nip11.Fetch: %+v, %v", doc, err)
	}
	// Without the Accept header "/" is a plain banner, not a Blossom error.
	resp, err = http.Get(st.BlossomURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), st.RelayURL()) {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
}

func TestNegentropy(t *testing.T) {
	st := devstacktest.Start(t)
	r := connect(t, st.RelayURL())
	k := newKeys(t)
	now := nostr.Now()
	a := k.event(t, 1, now-30, "a")
	b := k.event(t, 1, now-20, "b")
	c := k.event(t, 1, now-10, "c")
	publish(t, r, a)
	publish(t, r, b)

	// The relay answers NEG-OPEN with NEG-MSG (not a NOTICE or NEG-ERR).
	got := make(chan string, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := nostr.RelayConnect(ctx, st.RelayURL(),
		nostr.WithCustomHandler(func(data string) { got <- data }),
		nostr.WithNoticeHandler(func(notice string) { got <- "NOTICE " + notice }))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	open, _ := nip77.OpenEnvelope{SubscriptionID: "t", Filter: nostr.Filter{Authors: []string{k.pk}}, Message: negentropy.New(empty.Empty{}, 1<<20).Start()}.MarshalJSON()
	if err := <-raw.Write(open); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-got:
		if !strings.HasPrefix(msg, `["NEG-MSG","t",`) {
			t.Fatalf("NEG-OPEN answered with %s", msg)
		}
	case <-ctx.Done():
		t.Fatal("no answer to NEG-OPEN")
	}

	// A full two-way sync: we have a and c, the relay has a and b.
	local := &slicestore.SliceStore{}
	local.Init()
	local.SaveEvent(ctx, &a)
	local.SaveEvent(ctx, &c)
	done := make(chan error, 1)
	syncCtx, syncCancel := context.WithCancel(ctx)
	defer syncCancel()
	go func() {
		done <- nip77.NegentropySync(syncCtx, eventstore.RelayWrapper{Store: local}, st.RelayURL(),
			nostr.Filter{Kinds: []int{1}, Authors: []string{k.pk}}, nip77.Both)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("NegentropySync: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("NegentropySync did not finish")
	}
	ids := func(evs []*nostr.Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.ID)
		}
		slices.Sort(out)
		return out
	}
	want := ids([]*nostr.Event{&a, &b, &c})
	localEvs, _ := eventstore.RelayWrapper{Store: local}.QuerySync(ctx, nostr.Filter{Kinds: []int{1}})
	if got := ids(localEvs); !slices.Equal(got, want) {
		t.Fatalf("local store after sync %v, want %v", got, want)
	}
	if got := ids(query(t, r, nostr.Filter{Kinds: []int{1}, Authors: []string{k.pk}})); !slices.Equal(got, want) {
		t.Fatalf("relay after sync %v, want %v", got, want)
	}
}

// putBlob uploads data to a Blossom base URL and returns the descriptor.
func putBlob(t *testing.T, base string, data []byte) blossom.Descriptor {
	t.Helper()
	ks, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	tok, err := blossom.SignAuth(context.Background(), ks, blossom.VerbUpload, "upload", "127.0.0.1", time.Minute, h)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/upload", bytes.NewReader(data))
	req.Header.Set("Authorization", blossom.AuthHeader(tok, blossom.Base64URL))
	req.Header.Set("X-SHA-256", h)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, resp.Header.Get("X-Reason"))
	}
	d, err := blossom.DecodeDescriptor(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Check(h, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return d
}

func head(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestBlossomThroughStack(t *testing.T) {
	st := devstacktest.Start(t)
	data := []byte("a blob through the devstack")
	d := putBlob(t, st.BlossomURL(), data)
	if d.URL != st.BlossomURL()+"/"+d.SHA256+".bin" {
		t.Fatalf("descriptor url %q", d.URL)
	}
	if resp := head(t, st.BlossomURL()+"/"+d.SHA256); resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	absent := strings.Repeat("0", 64)
	if resp := head(t, st.BlossomURL()+"/"+absent); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD absent: %d", resp.StatusCode)
	}
}

func TestRestartKeepsEventsAndBlobs(t *testing.T) {
	dir := t.TempDir()
	st := devstacktest.StartDir(t, dir)
	k := newKeys(t)
	ev := k.event(t, 30078, nostr.Now()-10, "kept", nostr.Tag{"d", "restart"})
	publish(t, connect(t, st.RelayURL()), ev)
	data := []byte("a blob that survives a restart")
	d := putBlob(t, st.BlossomURL(), data)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2 := devstacktest.StartDir(t, dir)
	only(t, query(t, connect(t, st2.RelayURL()), addr(k, "restart")), ev, "after restart")
	resp, err := http.Get(st2.BlossomURL() + "/" + d.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET after restart: %d %q", resp.StatusCode, got)
	}
}

func TestCloseEndsRelayConnections(t *testing.T) {
	st := devstacktest.Start(t)
	r := connect(t, st.RelayURL())
	k := newKeys(t)
	publish(t, r, k.event(t, 1, nostr.Now(), "before close"))
	// A live subscription, so that the connection is busy when the stack closes.
	sub, err := r.Subscribe(ctxT(t, 30*time.Second), nostr.Filters{{Kinds: []int{1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsub()

	start := time.Now()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v", took)
	}
	select {
	case <-st.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the relay connection is still open after Close")
	}
	if _, err := nostr.RelayConnect(ctxT(t, 2*time.Second), st.RelayURL()); err == nil {
		t.Fatal("connected after Close")
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestIdleConnectionDoesNotStallClose: a client connection that never sent a request (HTTP
// clients dial ahead) must not hold up shutdown; http.Server.Shutdown alone waits 5 s for it.
func TestIdleConnectionDoesNotStallClose(t *testing.T) {
	st := devstacktest.Start(t)
	c, err := net.Dial("tcp", st.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let the server see the connection
	start := time.Now()
	if err := st.Close(); err != nil {
		t.Fatalf("Close with an idle connection: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %v", took)
	}
}
