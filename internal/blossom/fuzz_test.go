package blossom

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
)

// FuzzParseAuthHeader: any header either parses or errors; a parsed token that verifies has a
// valid signature (no header can make VerifyAuth accept a forged token).
func FuzzParseAuthHeader(f *testing.F) {
	k, _ := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	ev, err := SignAuth(context.Background(), k, VerbUpload, "x", "example.com", time.Hour, strings.Repeat("ab", 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(AuthHeader(ev, Base64URL))
	f.Add(AuthHeader(ev, Base64Std))
	f.Add("Nostr " + base64.StdEncoding.EncodeToString([]byte(`{"kind":24242}`)))
	f.Add("Basic abc")
	f.Fuzz(func(t *testing.T, h string) {
		ev, err := ParseAuthHeader(h)
		if err != nil {
			return
		}
		if _, err := VerifyAuth(ev, AuthRequest{Verb: VerbUpload, Hash: strings.Repeat("ab", 32), RequireX: true, ServerHost: "example.com"}); err == nil {
			if ok, _ := ev.CheckSignature(); !ok {
				t.Fatal("a token with a bad signature verified")
			}
		}
	})
}

// FuzzDecodeDescriptor: no input panics; an accepted descriptor has a well-formed hash.
func FuzzDecodeDescriptor(f *testing.F) {
	f.Add([]byte(`{"url":"http://x/` + strings.Repeat("ab", 32) + `","sha256":"` + strings.Repeat("ab", 32) + `","size":3,"type":"","uploaded":1}`))
	f.Add([]byte(`{"sha256":"../../etc"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDescriptor(bytes.NewReader(b))
		if err == nil && (len(d.SHA256) != 64 || d.Size < 0) {
			t.Fatalf("accepted %+v", d)
		}
	})
}
