package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
)

func newKey(t testing.TB) keyer.KeySigner {
	t.Helper()
	k, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(t testing.TB, k nostr.Keyer) string {
	pk, err := k.GetPublicKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

var ctx = context.Background()

func testSettings() Settings {
	return Settings{
		Relays:  RelaySettings{Read: []string{"ws://127.0.0.1:7777"}, Write: []string{"ws://127.0.0.1:7777"}},
		Blossom: []Server{{URL: "http://127.0.0.1:7777"}},
		Login:   []LoginMethod{{Type: LoginPassword, Ncryptsec: "ncryptsec1qgg9947rlpvqu76pj5ecreduf9jxhselq2nae2kghhvd5g7dgjtcxfqtd67p9m0w57lspw8gsq6yphnm8623nsl8xn9j4jdzz84zm3frztj3z7s35vpzmqf6ksu8r89qk5z2zxfmu5gv8th8wclt0h4p"}},
	}
}

// resign re-computes id and signature after a test has tampered with an event, so that only
// the rule under test is broken.
func resign(t *testing.T, k nostr.Signer, ev *nostr.Event) {
	t.Helper()
	if err := k.SignEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRules(t *testing.T) {
	owner, other := newKey(t), newKey(t)
	ownerPK := pub(t, owner)
	good, err := NewSettingsEvent(ctx, owner, DefaultNamespace, testSettings(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	x := Expect{Kind: KindSettings, Author: ownerPK, D: DTag(DefaultNamespace)}
	if err := Validate(good, x); err != nil {
		t.Fatalf("a good event was refused: %v", err)
	}

	cases := []struct {
		name   string
		mutate func(ev *nostr.Event)
		want   Rule
	}{
		{"forged signature", func(ev *nostr.Event) {
			ev.Content = strings.Replace(ev.Content, "7777", "6666", 1)
			ev.ID = ev.GetID() // id consistent with the new content, signature now wrong
		}, RuleSignature},
		{"signature of another event", func(ev *nostr.Event) {
			o, _ := NewSettingsEvent(ctx, owner, "work", testSettings(), nil, time.Now())
			ev.Sig = o.Sig
		}, RuleSignature},
		{"id does not match", func(ev *nostr.Event) { ev.Content += " " }, RuleID},
		{"uppercase id", func(ev *nostr.Event) { ev.ID = strings.ToUpper(ev.ID) }, RuleID},
		{"wrong author", func(ev *nostr.Event) { resign(t, other, ev) }, RuleAuthor},
		{"author claimed but signed by another", func(ev *nostr.Event) {
			resign(t, other, ev)
			ev.PubKey = ownerPK
			ev.ID = ev.GetID()
		}, RuleSignature},
		{"wrong kind", func(ev *nostr.Event) { ev.Kind = KindManifest; resign(t, owner, ev) }, RuleKind},
		{"wrong d", func(ev *nostr.Event) { ev.Tags = nostr.Tags{{"d", "personal"}}; resign(t, owner, ev) }, RuleDTag},
		{"two d tags", func(ev *nostr.Event) {
			ev.Tags = append(ev.Tags, nostr.Tag{"d", DTag(DefaultNamespace)})
			resign(t, owner, ev)
		}, RuleDTag},
		{"no d", func(ev *nostr.Event) { ev.Tags = nil; resign(t, owner, ev) }, RuleDTag},
		{"oversize content", func(ev *nostr.Event) {
			ev.Content = strings.Repeat("x", MaxSettingsContent+1)
			resign(t, owner, ev)
		}, RuleSize},
		{"too many tags", func(ev *nostr.Event) {
			for i := 0; i < MaxTags; i++ {
				ev.Tags = append(ev.Tags, nostr.Tag{"t", "x"})
			}
			resign(t, owner, ev)
		}, RuleSize},
		{"huge tag value", func(ev *nostr.Event) {
			ev.Tags = append(ev.Tags, nostr.Tag{"t", strings.Repeat("y", 5000)})
			resign(t, owner, ev)
		}, RuleSize},
		{"far future", func(ev *nostr.Event) {
			ev.CreatedAt = nostr.Timestamp(time.Now().Add(time.Hour).Unix())
			resign(t, owner, ev)
		}, RuleCreatedAt},
		{"zero time", func(ev *nostr.Event) { ev.CreatedAt = 0; resign(t, owner, ev) }, RuleCreatedAt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := *good
			ev.Tags = append(nostr.Tags(nil), good.Tags...)
			c.mutate(&ev)
			err := Validate(&ev, x)
			if got := BrokenRule(err); got != c.want {
				t.Fatalf("rule = %q (%v), want %q", got, err, c.want)
			}
			if !strings.Contains(err.Error(), string(c.want)) {
				t.Fatalf("error %q does not name the rule", err)
			}
		})
	}
}

func TestSchemaRules(t *testing.T) {
	owner := newKey(t)
	pk := pub(t, owner)
	mk := func(content string) *nostr.Event {
		ev := &nostr.Event{Kind: KindSettings, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"d", DTag("personal")}}, Content: content}
		resign(t, owner, ev)
		return ev
	}
	good, _ := json.Marshal(Settings{V: 1, Relays: testSettings().Relays, Login: testSettings().Login})
	cases := []struct {
		name, content string
		want          Rule
	}{
		{"unknown version", strings.Replace(string(good), `"v":1`, `"v":2`, 1), RuleVersion},
		{"no version", `{"relays":{"read":["wss://r"],"write":[]}}`, RuleVersion},
		{"not json", `hello from another app`, RuleSchema},
		{"unknown field", strings.Replace(string(good), `"v":1`, `"v":1,"theme":"dark"`, 1), RuleSchema},
		{"relay not a websocket", strings.Replace(string(good), `ws://127.0.0.1:7777`, `http://127.0.0.1:7777`, 1), RuleSchema},
		{"no login", strings.Replace(string(good), `"login":[`, `"login":[],"x":[`, 1), RuleSchema},
		{"trailing data", string(good) + `{}`, RuleSchema},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenSettings(mk(c.content), pk, "personal")
			if got := BrokenRule(err); got != c.want {
				t.Fatalf("rule = %q (%v), want %q", got, err, c.want)
			}
		})
	}
	s, err := OpenSettings(mk(string(good)), pk, "personal")
	if err != nil || s.Relays.Read[0] != "ws://127.0.0.1:7777" {
		t.Fatalf("good settings: %+v, %v", s, err)
	}
}

func TestManifestRoundTripAndPrivacy(t *testing.T) {
	owner, stranger := newKey(t), newKey(t)
	pk := pub(t, owner)
	root := BlobRef{Hash: strings.Repeat("ab", 32), Size: 4096}
	ev1, err := NewManifestEvent(ctx, owner, "personal", Manifest{Root: root, Machine: "host-a"}, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ev1.Content, root.Hash) || strings.Contains(ev1.String(), "host-a") {
		t.Fatal("the manifest event shows the root hash or machine in clear")
	}
	m1, err := OpenManifest(ctx, owner, ev1, pk, "personal")
	if err != nil {
		t.Fatal(err)
	}
	if m1.Root != root || m1.Generation != 1 || m1.Parent != "" {
		t.Fatalf("got %+v", m1)
	}
	// The next manifest is based on the first and is newer even if our clock went back.
	ev2, err := NewManifestEvent(ctx, owner, "personal", Manifest{Root: root}, ev1, m1.Generation, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if ev2.CreatedAt <= ev1.CreatedAt || !Newer(ev2, ev1) {
		t.Fatalf("republished created_at %d not after %d", ev2.CreatedAt, ev1.CreatedAt)
	}
	m2, err := OpenManifest(ctx, owner, ev2, pk, "personal")
	if err != nil || m2.Parent != ev1.ID || m2.Generation != 2 {
		t.Fatalf("second manifest %+v, %v", m2, err)
	}
	// Someone else cannot read it, nor pass theirs off as ours.
	if _, err := OpenManifest(ctx, stranger, ev1, pk, "personal"); BrokenRule(err) != RuleEncryption {
		t.Fatalf("stranger decrypting: %v", err)
	}
	theirs, _ := NewManifestEvent(ctx, stranger, "personal", Manifest{Root: root}, nil, 0, time.Now())
	if _, err := OpenManifest(ctx, owner, theirs, pk, "personal"); BrokenRule(err) != RuleAuthor {
		t.Fatalf("foreign manifest: %v", err)
	}
	// Absurd sizes and bad hashes are refused when writing.
	if _, err := NewManifestEvent(ctx, owner, "personal", Manifest{Root: BlobRef{Hash: root.Hash, Size: MaxBlobSize + 1}}, nil, 0, time.Now()); err == nil {
		t.Fatal("absurd root size accepted")
	}
	if _, err := NewManifestEvent(ctx, owner, "personal", Manifest{Root: BlobRef{Hash: "../../etc", Size: 1}}, nil, 0, time.Now()); err == nil {
		t.Fatal("bad root hash accepted")
	}
}

func TestManifestForgedSchemaInsideValidEncryption(t *testing.T) {
	// A well-signed, well-encrypted event with the wrong content must still be refused.
	owner := newKey(t)
	pk := pub(t, owner)
	for name, pt := range map[string]string{
		"version 9":        `{"v":9,"root":{"hash":"` + strings.Repeat("ab", 32) + `","size":1},"generation":1,"parent":""}`,
		"negative size":    `{"v":1,"root":{"hash":"` + strings.Repeat("ab", 32) + `","size":-1},"generation":1,"parent":""}`,
		"gen 5, no parent": `{"v":1,"root":{"hash":"` + strings.Repeat("ab", 32) + `","size":1},"generation":5,"parent":""}`,
	} {
		ct, _ := owner.Encrypt(ctx, pt, pk)
		ev := &nostr.Event{Kind: KindManifest, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"d", DTag("personal")}}, Content: ct}
		resign(t, owner, ev)
		if _, err := OpenManifest(ctx, owner, ev, pk, "personal"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecretsRoundTripAndNames(t *testing.T) {
	owner := newKey(t)
	pk := pub(t, owner)
	s := Secrets{HomeKey: strings.Repeat("01", 32), Files: []SecretFile{{Name: "id_ed25519", Data: []byte("-----BEGIN KEY-----")}}}
	ev, err := NewSecretsEvent(ctx, owner, "personal", s, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ev.Content, "BEGIN") {
		t.Fatal("secret in clear")
	}
	got, err := OpenSecrets(ctx, owner, ev, pk, "personal")
	if err != nil || string(got.Files[0].Data) != "-----BEGIN KEY-----" || got.HomeKey != s.HomeKey {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"../passwd", "a/b", ".hidden", "", "x\x00y", strings.Repeat("n", 200)} {
		s := Secrets{Files: []SecretFile{{Name: bad, Data: []byte("x")}}}
		if _, err := NewSecretsEvent(ctx, owner, "personal", s, nil, time.Now()); err == nil {
			t.Errorf("secret file name %q accepted", bad)
		}
	}
	if _, err := NewSecretsEvent(ctx, owner, "personal", Secrets{Files: []SecretFile{{Name: "big", Data: make([]byte, 70000)}}}, nil, time.Now()); err == nil {
		t.Error("secrets over NIP-44's limit accepted")
	}
}

func TestSelectNewestWhenRelaysDisagree(t *testing.T) {
	owner, forger := newKey(t), newKey(t)
	pk := pub(t, owner)
	now := time.Now()
	n := 0
	mk := func(at time.Time) *nostr.Event {
		// Vary the content: two events with equal content and created_at have equal ids.
		n++
		s := testSettings()
		s.Relays.Read = append(s.Relays.Read, fmt.Sprintf("ws://127.0.0.%d:7777", n))
		ev, err := NewSettingsEvent(ctx, owner, "personal", s, nil, at)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	old, mid, newest := mk(now.Add(-2*time.Hour)), mk(now.Add(-time.Hour)), mk(now)
	// Two versions with the same created_at: the lower id wins.
	tieA, tieB := mk(now.Add(time.Minute)), mk(now.Add(time.Minute))
	low, high := tieA, tieB
	if high.ID < low.ID {
		low, high = high, low
	}
	// A forged "newer" event (signed by someone else but claiming the owner) never wins.
	forged := mk(now.Add(5 * time.Minute))
	resign(t, forger, forged)
	forged.PubKey = pk
	forged.ID = forged.GetID()

	x := Expect{Kind: KindSettings, Author: pk, D: DTag("personal")}
	sel := SelectNewest([]Candidate{
		{"ws://a", old}, {"ws://b", mid}, {"ws://b", newest}, {"ws://c", forged}, {"ws://d", high}, {"ws://e", low}, {"ws://e", old},
	}, x)
	if sel.Newest == nil || sel.Newest.ID != low.ID {
		t.Fatalf("newest = %v, want the lower id of the tie %s", sel.Newest, low.ID)
	}
	if len(sel.Refused) != 1 || sel.Refused[0].Relay != "ws://c" || BrokenRule(sel.Refused[0].Err) != RuleSignature {
		t.Fatalf("refused = %+v", sel.Refused)
	}
	if strings.Join(sel.From, ",") != "ws://e" || strings.Join(sel.Stale, ",") != "ws://a,ws://b,ws://d" {
		t.Fatalf("from %v stale %v", sel.From, sel.Stale)
	}
	if sel := SelectNewest([]Candidate{{"ws://c", forged}}, x); sel.Newest != nil {
		t.Fatal("only a forged candidate, yet something was selected")
	}
}

func TestNextCreatedAt(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	if got := NextCreatedAt(nil, now); got != nostr.Timestamp(now.Unix()) {
		t.Fatalf("no prev: %d", got)
	}
	prev := &nostr.Event{CreatedAt: nostr.Timestamp(now.Unix())}
	if got := NextCreatedAt(prev, now); got != prev.CreatedAt+1 {
		t.Fatalf("same second: %d", got)
	}
	prev.CreatedAt += 100 // our clock is behind the event we replace
	if got := NextCreatedAt(prev, now); got != prev.CreatedAt+1 {
		t.Fatalf("clock behind: %d", got)
	}
}

func TestLists(t *testing.T) {
	owner := newKey(t)
	pk := pub(t, owner)
	rl := &nostr.Event{Kind: KindRelayList, CreatedAt: nostr.Now(), Tags: nostr.Tags{
		{"r", "wss://both.example"}, {"r", "wss://read.example", "read"}, {"r", "wss://write.example", "write"}, {"r", "javascript:alert(1)"},
	}}
	resign(t, owner, rl)
	l, err := OpenRelayList(rl, pk)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(l.Read, " ") != "wss://both.example wss://read.example" || strings.Join(l.Write, " ") != "wss://both.example wss://write.example" {
		t.Fatalf("relay list %+v", l)
	}
	sl := &nostr.Event{Kind: KindServerList, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"server", "https://a.example"}, {"server", "ftp://b"}, {"server", "https://c.example/"}}}
	resign(t, owner, sl)
	s, err := OpenServerList(sl, pk)
	if err != nil || strings.Join(s, " ") != "https://a.example https://c.example/" {
		t.Fatalf("server list %v %v", s, err)
	}
	if got := MergeURLs([]string{"wss://a", "wss://b/"}, []string{"WSS://B", "wss://c"}); strings.Join(got, " ") != "wss://a wss://b/ wss://c" {
		t.Fatalf("merge %v", got)
	}
}

func TestLenientJSONIsRefused(t *testing.T) {
	owner := newKey(t)
	pk := pub(t, owner)
	good, _ := json.Marshal(Settings{V: 1, Relays: testSettings().Relays, Login: testSettings().Login})
	mk := func(content string) *nostr.Event {
		ev := &nostr.Event{Kind: KindSettings, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"d", DTag("personal")}}, Content: content}
		resign(t, owner, ev)
		return ev
	}
	if _, err := OpenSettings(mk(string(good)), pk, "personal"); err != nil {
		t.Fatalf("canonical settings refused: %v", err)
	}
	for name, c := range map[string]string{
		"upper-case key":    strings.Replace(string(good), `"relays"`, `"RELAYS"`, 1),
		"duplicate key":     strings.Replace(string(good), `"v":1,`, `"v":1,"v":1,`, 1),
		"nested duplicate":  strings.Replace(string(good), `"read":`, `"write":[],"read":`, 1),
		"mixed-case nested": strings.Replace(string(good), `"type"`, `"Type"`, 1),
	} {
		if _, err := OpenSettings(mk(c), pk, "personal"); BrokenRule(err) != RuleSchema {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A bunker URI carrying its secret is never published.
	s := testSettings()
	s.Login = []LoginMethod{{Type: LoginRemoteSigner, Bunker: "bunker://" + pk + "?relay=wss://r.example&secret=hunter2"}}
	if _, err := NewSettingsEvent(ctx, owner, "personal", s, nil, time.Now()); err == nil {
		t.Fatal("a bunker secret would have been published")
	}
}
