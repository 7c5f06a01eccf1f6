package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// FuzzOpenSettings feeds arbitrary JSON events to the validation and decoding of settings:
// nothing may panic, and anything accepted must pass Settings.Check and validate again.
func FuzzOpenSettings(f *testing.F) {
	k := newKey(f)
	pk := pub(f, k)
	good, err := NewSettingsEvent(ctx, k, "personal", testSettings(), nil, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	b, _ := json.Marshal(good)
	f.Add(b, pk)
	f.Add([]byte(`{"kind":30078,"content":"{\"v\":1}","tags":[["d","nostr-homed/personal"]]}`), pk)
	f.Add([]byte(`{}`), "")
	f.Fuzz(func(t *testing.T, raw []byte, author string) {
		var ev nostr.Event
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		s, err := OpenSettings(&ev, author, "personal")
		if err != nil {
			if BrokenRule(err) == "" {
				t.Fatalf("refusal without a rule: %v", err)
			}
			return
		}
		if err := s.Check(); err != nil {
			t.Fatalf("accepted settings fail Check: %v", err)
		}
		if err := Validate(&ev, Expect{Kind: KindSettings, Author: author, D: DTag("personal")}); err != nil {
			t.Fatalf("accepted event fails Validate: %v", err)
		}
	})
}

// FuzzDecodeVersioned fuzzes the schema decoding of decrypted manifest and secrets content.
func FuzzDecodeVersioned(f *testing.F) {
	f.Add([]byte(`{"v":1,"root":{"hash":"` + "ab" + `","size":1},"generation":1,"parent":""}`))
	f.Add([]byte(`{"v":1,"home_key":"00","files":[{"name":"a","data":"eA=="}]}`))
	f.Add([]byte(`{"v":2}`))
	// Accepted ones, so that the fuzzer starts from content that passes Check, and the
	// refusals of TestManifestForgedSchemaInsideValidEncryption.
	h := strings.Repeat("ab", 32)
	f.Add([]byte(`{"v":1,"root":{"hash":"` + h + `","size":1},"generation":1,"parent":"","machine":"host-a"}`))
	f.Add([]byte(`{"v":1,"root":{"hash":"` + h + `","size":1099511627776},"generation":2,"parent":"` + h + `"}`))
	f.Add([]byte(`{"v":1,"root":{"hash":"` + h + `","size":-1},"generation":1,"parent":""}`))
	f.Add([]byte(`{"v":1,"root":{"hash":"` + h + `","size":1},"generation":5,"parent":""}`))
	f.Add([]byte(`{"v":1,"home_key":"` + h + `","files":[{"name":"id_ed25519","data":"eA=="},{"name":"token.txt","data":""}]}`))
	ev := &nostr.Event{ID: "x"}
	f.Fuzz(func(t *testing.T, content []byte) {
		var m Manifest
		if err := decodeVersioned(ev, content, &m); err == nil {
			_ = m.Check()
		} else if BrokenRule(err) == "" {
			t.Fatalf("refusal without a rule: %v", err)
		}
		var s Secrets
		if err := decodeVersioned(ev, content, &s); err == nil {
			_ = s.Check()
		}
	})
}
