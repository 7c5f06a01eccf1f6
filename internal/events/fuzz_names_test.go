package events

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nbd-wtf/go-nostr"
)

// plainSecretName is the rule of Secrets.Check for a file name, written out independently:
// 1 to 128 bytes of A-Z a-z 0-9 . _ -, not starting with '.' or '-'.
func plainSecretName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// secretNameIsSafe says whether a name Check accepted is safe where the session writes it:
// joined to the secrets directory it names a direct child of it, and the session's own
// last-moment check (daemon's writeSecrets) would let it through.
func secretNameIsSafe(name string) bool {
	const dir = "/run/nostr-homed/1000/secrets"
	p := filepath.Join(dir, name)
	return filepath.Dir(p) == dir && filepath.Base(p) == name &&
		name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// FuzzSecretFileName: Secrets.Check accepts a file name exactly when it is a plain name, and
// any name it accepts, given directly or decoded from the content of a secrets event (JSON
// escapes included), is safe to join to the secrets directory. A name given twice is refused.
func FuzzSecretFileName(f *testing.F) {
	for _, s := range []string{
		"id_ed25519", "a", "A-b_c.d", "x.", "_", "-", strings.Repeat("a", 128), strings.Repeat("a", 129),
		"", ".", "..", ".ssh", "a/b", "../x", "a\x00b", "a b", "ä", "a\\b", `\u002e\u002e`, `a\/b`, `\u0000`,
	} {
		f.Add(s)
	}
	ev := &nostr.Event{ID: "x"}
	f.Fuzz(func(t *testing.T, name string) {
		s := Secrets{V: SchemaVersion, Files: []SecretFile{{Name: name, Data: []byte("x")}}}
		err := s.Check()
		if (err == nil) != plainSecretName(name) {
			t.Fatalf("Check(%q) = %v, but the name rule says plain = %v", name, err, plainSecretName(name))
		}
		if err == nil && !secretNameIsSafe(name) {
			t.Fatalf("Check accepted %q, which is not a plain file name in the secrets directory", name)
		}
		s.Files = append(s.Files, SecretFile{Name: name})
		if s.Check() == nil {
			t.Fatalf("Check accepted %q twice", name)
		}

		// The same name as it comes off the wire: JSON-encoded, and as raw JSON string text
		// (which lets the fuzzer write escapes such as \u002f).
		if utf8.ValidString(name) {
			js, _ := json.Marshal(name)
			var d Secrets
			derr := decodeVersioned(ev, []byte(`{"v":1,"files":[{"name":`+string(js)+`,"data":"eA=="}]}`), &d)
			if derr != nil {
				t.Fatalf("a JSON-encoded name does not decode: %v", derr)
			}
			if d.Files[0].Name != name {
				t.Fatalf("name %q decoded as %q", name, d.Files[0].Name)
			}
			if (d.Check() == nil) != (err == nil) {
				t.Fatalf("Check of %q differs when decoded: %v / %v", name, d.Check(), err)
			}
		}
		var d Secrets
		if decodeVersioned(ev, []byte(`{"v":1,"files":[{"name":"`+name+`","data":"eA=="}]}`), &d) == nil && d.Check() == nil {
			for _, f := range d.Files {
				if !plainSecretName(f.Name) || !secretNameIsSafe(f.Name) {
					t.Fatalf("raw JSON name %q decoded to %q, which Check accepted", name, f.Name)
				}
			}
		}
	})
}
