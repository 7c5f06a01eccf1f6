package events

import (
	"encoding/json"
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
