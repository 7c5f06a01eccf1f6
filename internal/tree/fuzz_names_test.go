package tree

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// entryNameRule is checkName's rule written out independently: 1 to 255 bytes of UTF-8, not
// . or .., no '/' and no NUL.
func entryNameRule(name string) bool {
	return name != "" && len(name) <= MaxNameLen && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\x00") && utf8.ValidString(name)
}

// entryNameIsSafe says whether an accepted name is safe where nostrfs and the walkers use it:
// joined to a directory it names a direct child of it, never the directory itself or above.
func entryNameIsSafe(name string) bool {
	const dir = "/home/alice/d"
	p := filepath.Join(dir, name)
	return filepath.Dir(p) == dir && filepath.Base(p) == name
}

func nameEntryJSON(nameJSON string) string {
	return `{"name":` + nameJSON + `,"type":"file","mode":420,"mtime":1,"content":{"size":1,"inline":"YQ=="}}`
}

// FuzzEntryName: checkName accepts exactly the names of its rule; a listing holding a name
// decodes exactly when checkName accepts it, gives the name back unchanged, and encodes
// again; and any name DecodeListing accepts from raw JSON string text (escapes included) is
// safe to join to a directory.
func FuzzEntryName(f *testing.F) {
	for _, s := range []string{
		"a", "a b", ".a", "...", "é", "日本", "\u2028", "a\\b", strings.Repeat("a", 255), strings.Repeat("é", 127) + "a",
		"", ".", "..", "a/b", "/", "a\x00b", "a\xffb", strings.Repeat("a", 256),
		`\u002e\u002e`, `a\/b`, `\u0000`, `\ud800`, `\ud83d\ude00`, `a","type":"dir`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := checkName(name)
		if (err == nil) != entryNameRule(name) {
			t.Fatalf("checkName(%q) = %v, but the rule says %v", name, err, entryNameRule(name))
		}
		if err != nil {
			if BrokenRule(err) != RuleName {
				t.Fatalf("checkName(%q) refused with rule %q", name, BrokenRule(err))
			}
		} else if !entryNameIsSafe(name) {
			t.Fatalf("checkName accepted %q, which does not name a direct child", name)
		}

		// As it comes in a listing, JSON-encoded (json.Marshal would replace invalid UTF-8).
		if utf8.ValidString(name) {
			js, _ := json.Marshal(name)
			l, lerr := decodeListingJSON([]byte(listingJSON(nameEntryJSON(string(js)))))
			if (lerr == nil) != (err == nil) {
				t.Fatalf("name %q: checkName says %v, the listing decoder %v", name, err, lerr)
			}
			if lerr == nil {
				if len(l.Entries) != 1 || l.Entries[0].Name != name {
					t.Fatalf("name %q decoded as %+v", name, l.Entries)
				}
				reencode(t, l)
			} else if BrokenRule(lerr) != RuleName {
				t.Fatalf("name %q refused with rule %q: %v", name, BrokenRule(lerr), lerr)
			}
		}

		// As raw JSON string text: whatever the decoder accepts must be a safe name.
		l, lerr := decodeListingJSON([]byte(listingJSON(nameEntryJSON(`"` + name + `"`))))
		if lerr != nil {
			if BrokenRule(lerr) == "" {
				t.Fatalf("refusal without a rule: %v", lerr)
			}
			return
		}
		for _, e := range l.Entries {
			if !entryNameRule(e.Name) || !entryNameIsSafe(e.Name) {
				t.Fatalf("raw JSON name %q decoded to %q, which the decoder accepted", name, e.Name)
			}
		}
	})
}
