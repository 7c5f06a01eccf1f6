package tree

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/strictjson"
)

func TestContentCheck(t *testing.T) {
	h, i := hexRepeat('a'), hexRepeat('b')
	ref := func(size int64) ChunkRef { return ChunkRef{Hash: h, ID: i, Size: size} }
	hole := func(size int64) ChunkRef { return ChunkRef{Size: size} }
	full := func(n int, last int64) []ChunkRef {
		var c []ChunkRef
		for j := 0; j < n; j++ {
			c = append(c, ref(ChunkSize))
		}
		if last > 0 {
			c = append(c, ref(last))
		}
		return c
	}
	for _, tc := range []struct {
		name string
		c    Content
		rule Rule
	}{
		{"empty", Content{}, ""},
		{"inline", Content{Size: 3, Inline: []byte("abc")}, ""},
		{"inline 4 KiB", Content{Size: MaxInline, Inline: make([]byte, MaxInline)}, ""},
		{"small file in a chunk", Content{Size: 3, Chunks: []ChunkRef{ref(3)}}, ""},
		{"one chunk", Content{Size: ChunkSize, Chunks: full(1, 0)}, ""},
		{"100 MiB+1", Content{Size: 100*ChunkSize + 1, Chunks: full(100, 1)}, ""},
		{"chunks and a hole", Content{Size: 2*ChunkSize + 1, Chunks: []ChunkRef{ref(ChunkSize), hole(ChunkSize), ref(1)}}, ""},
		{"final hole", Content{Size: ChunkSize + 5, Chunks: []ChunkRef{ref(ChunkSize), hole(5)}}, ""},
		{"2^51", Content{Size: 2 * MaxFileSize, Chunks: full(1, 0)}, RuleSize},
		{"negative", Content{Size: -1}, RuleSize},
		{"size without chunks", Content{Size: 5}, RuleSize},
		{"chunks without size", Content{Chunks: full(1, 0)}, RuleSize},
		{"sizes do not add up", Content{Size: 10, Chunks: []ChunkRef{ref(9)}}, RuleSize},
		{"sizes do not add up (more)", Content{Size: ChunkSize + 1, Chunks: []ChunkRef{ref(ChunkSize), ref(2)}}, RuleSize},
		{"too many chunks", Content{Size: ChunkSize, Chunks: []ChunkRef{ref(ChunkSize), ref(1)}}, RuleSize},
		{"non-final short chunk", Content{Size: ChunkSize + 10, Chunks: []ChunkRef{ref(10), ref(ChunkSize)}}, RuleSize},
		{"non-final short, count right", Content{Size: 2*ChunkSize + 10, Chunks: []ChunkRef{ref(ChunkSize), ref(10), ref(ChunkSize)}}, RuleSize},
		{"final empty", Content{Size: ChunkSize, Chunks: []ChunkRef{ref(ChunkSize), ref(0)}}, RuleSize},
		{"chunk of 2 MiB", Content{Size: 2 << 20, Chunks: []ChunkRef{ref(2 << 20)}}, RuleSize},
		{"negative chunk", Content{Size: ChunkSize, Chunks: []ChunkRef{ref(ChunkSize + 1), ref(-1)}}, RuleSize},
		{"inline over 4 KiB", Content{Size: MaxInline + 1, Inline: make([]byte, MaxInline+1)}, RuleSize},
		{"inline size", Content{Size: 4, Inline: []byte("abc")}, RuleSize},
		{"inline and chunks", Content{Size: 3, Inline: []byte("abc"), Chunks: []ChunkRef{ref(3)}}, RuleSize},
		{"half hole (id)", Content{Size: 3, Chunks: []ChunkRef{{ID: i, Size: 3}}}, RuleRef},
		{"half hole (hash)", Content{Size: 3, Chunks: []ChunkRef{{Hash: h, Size: 3}}}, RuleRef},
		{"bad hash", Content{Size: 3, Chunks: []ChunkRef{{Hash: strings.ToUpper(h), ID: i, Size: 3}}}, RuleRef},
		{"bad id", Content{Size: 3, Chunks: []ChunkRef{{Hash: h, ID: "b", Size: 3}}}, RuleRef},
	} {
		err := tc.c.Check()
		if tc.rule == "" && err != nil || BrokenRule(err) != tc.rule {
			t.Errorf("%s: %v, want rule %q", tc.name, err, tc.rule)
		}
	}
}

func TestChunkIndex(t *testing.T) {
	c := Content{Size: 2*ChunkSize + 1, Chunks: make([]ChunkRef, 3)}
	for off, want := range map[int64]int{-1: -1, 0: 0, 1: 0, ChunkSize - 1: 0, ChunkSize: 1, 2 * ChunkSize: 2, 2*ChunkSize + 1: -1, 1 << 40: -1} {
		if got := c.ChunkIndex(off); got != want {
			t.Errorf("ChunkIndex(%d) = %d, want %d", off, got, want)
		}
	}
	if got := (Content{Size: 3, Inline: []byte("abc")}).ChunkIndex(1); got != -1 {
		t.Errorf("inline: %d", got)
	}
}

func TestContentJSON(t *testing.T) {
	c := Content{Size: ChunkSize + 2, Chunks: []ChunkRef{{Size: ChunkSize}, {Hash: hexRepeat('e'), ID: hexRepeat('f'), Size: 2}}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"size":1048578,"chunks":[{"hash":"","id":"","size":1048576},{"hash":"` + hexRepeat('e') + `","id":"` + hexRepeat('f') + `","size":2}]}`
	if string(b) != want {
		t.Fatalf("%s\nwant %s", b, want)
	}
	var got Content
	if err := strictjson.Decode(b, &got); err != nil || got.Size != c.Size || len(got.Chunks) != 2 || got.Chunks[1] != c.Chunks[1] {
		t.Fatal(got, err)
	}
	b, _ = json.Marshal(Content{Size: 2, Inline: []byte("hi")})
	if string(b) != `{"size":2,"inline":"aGk="}` {
		t.Fatal(string(b))
	}
	if b, _ = json.Marshal(Content{}); string(b) != `{"size":0}` {
		t.Fatal(string(b))
	}
	for in, rule := range map[string]Rule{
		`null`:                         RuleJSON,
		`{"size":1,"chunks":null}`:     RuleJSON,
		`{"size":1,"chunks":{}}`:       RuleJSON,
		`{"size":1,"chunks":[null]}`:   RuleSize, // decodes as a zero reference: refused
		`{"size":1,"chunks":[{}]}`:     RuleSize,
		`{"size":1,"inline":"YR=="}`:   RuleBase64,
		`{"size":1,"inline":null}`:     "",
		`{"size":1,"inline":"YQ=="}`:   "",
		`{"size":"1","inline":"YQ=="}`: RuleJSON,
		`{"size":1,"extra":0}`:         RuleJSON,
	} {
		var c Content
		err := strictjson.Decode([]byte(in), &c)
		if rule == "" {
			if err != nil {
				t.Errorf("%s: %v", in, err)
			}
			continue
		}
		if BrokenRule(err) != rule {
			t.Errorf("%s: %v, want rule %q", in, err, rule)
		}
	}
}
