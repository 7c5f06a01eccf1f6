package strictjson

import "testing"

func TestDecode(t *testing.T) {
	type inner struct {
		B int `json:"b"`
	}
	type doc struct {
		A  int     `json:"a"`
		In inner   `json:"in"`
		L  []inner `json:"l"`
	}
	var d doc
	if err := Decode([]byte(`{"a":1,"in":{"b":2},"l":[{"b":3},{"b":4}]}`), &d); err != nil || d.L[1].B != 4 {
		t.Fatalf("%+v %v", d, err)
	}
	for name, in := range map[string]string{
		"unknown":          `{"a":1,"c":2}`,
		"duplicate":        `{"a":1,"a":2}`,
		"nested duplicate": `{"in":{"b":1,"b":2}}`,
		"in array":         `{"l":[{"b":1},{"b":1,"b":2}]}`,
		"upper case":       `{"A":1}`,
		"nested case":      `{"in":{"B":1}}`,
		"trailing":         `{"a":1}{}`,
		"trailing garbage": `{"a":1} x`,
		"not json":         `hello`,
		"unicode fold":     `{"a":1,"ſ":2}`,
		"long s for a key": "{\"in\":{\"ſ\":1}}",
	} {
		if err := Decode([]byte(in), &d); err == nil {
			t.Errorf("%s: %s accepted", name, in)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"a":1,"in":{"b":2},"l":[{"b":3}]}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var v struct {
			A  int            `json:"a"`
			In map[string]int `json:"in"`
		}
		Decode(b, &v) // must not panic or hang
	})
}
