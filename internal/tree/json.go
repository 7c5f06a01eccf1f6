package tree

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/nostr-homed/nostr-homed/internal/strictjson"
)

type jsonDecoder = *json.Decoder

func isNull(b []byte) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }

// jsonError turns a decoding error into a *FormatError (rule json) unless it already is one
// (an error from one of this package's UnmarshalJSON methods).
func jsonError(err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	return &FormatError{Rule: RuleJSON, Detail: err.Error(), Err: err}
}

// decodeInner decodes one JSON value that an outer strictjson.Decode handed to an
// UnmarshalJSON method: the keys have been checked already; unknown fields are refused here
// (DisallowUnknownFields does not reach into UnmarshalJSON methods).
func decodeInner(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// decodeArray decodes the JSON array b element by element: elem is called once per element
// with a decoder positioned on it (and refusing unknown fields), and must decode exactly one
// value. This lets a caller check and count elements as they come instead of after the whole
// array is in memory.
func decodeArray(b []byte, elem func(dec jsonDecoder) error) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if tok != json.Delim('[') {
		return refuse(RuleJSON, "want an array, got %v", tok)
	}
	for dec.More() {
		if err := elem(dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return jsonError(err)
	}
	return nil
}

// checkUTF8 refuses a document that is not valid UTF-8: encoding/json would replace each bad
// byte with U+FFFD and accept it, so a name could change meaning between two readers.
func checkUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	off := 0
	for off < len(b) {
		r, n := utf8.DecodeRune(b[off:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		off += n
	}
	return refuse(RuleUTF8, "invalid UTF-8 at byte %d", off)
}

// checkASCIIKeys refuses an object key holding anything but plain ASCII (no byte over 0x7f,
// no escape). encoding/json matches keys to fields with Unicode case folding, so "ſize"
// (U+017F, a lower-case letter that folds to "s") sets Size, although strictjson sees a
// lower-case key that no field names; {"size":1,"ſize":2} would then be read as 2 here and as
// 1 (or an error) by other readers. All keys of this format are plain lower-case ASCII.
//
// It scans the bytes: in valid JSON a string is a key exactly when the next non-blank byte
// after it is a colon. (Invalid JSON is reported by the decoder that runs next.)
func checkASCIIKeys(b []byte) error {
	for i := 0; i < len(b); {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return nil
		}
		start := i + q + 1
		plain := true
		j := start
		for ; j < len(b); j++ {
			c := b[j]
			if c == '"' {
				break
			}
			if c == '\\' {
				plain = false
				j++
				continue
			}
			if c >= utf8.RuneSelf {
				plain = false
			}
		}
		if j >= len(b) {
			return nil
		}
		k := j + 1
		for k < len(b) && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r') {
			k++
		}
		if !plain && k < len(b) && b[k] == ':' {
			key := b[start:j]
			if len(key) > 64 {
				key = key[:64]
			}
			return fmt.Errorf("key %q is not plain ASCII", key)
		}
		i = j + 1
	}
	return nil
}

// decodeJSON decodes untrusted JSON into v: it must be valid UTF-8 with plain ASCII keys, and
// pass strictjson.Decode's checks: every key known, lower case and not repeated within its
// object, nothing after the value.
//
// The steps of strictjson.Decode run in another order: v is decoded first (with unknown
// fields refused, as strictjson does), and strictjson checks the keys last. Its key check
// walks every token of the document, which costs about 0.3 µs per token; decoding first
// makes a malformed listing fail at its first bad entry rather than after a walk over up to
// 64 MiB of tokens (seconds of CPU). The result is the same: v is used only if every check
// passed.
func decodeJSON(data []byte, v any) error {
	if err := checkUTF8(data); err != nil {
		return err
	}
	if err := checkASCIIKeys(data); err != nil {
		return &FormatError{Rule: RuleJSON, Detail: err.Error(), Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return refuse(RuleJSON, "data after the JSON value")
	}
	if err := strictjson.Decode(data, &anyValue{}); err != nil {
		return &FormatError{Rule: RuleJSON, Detail: err.Error(), Err: err}
	}
	return nil
}

// anyValue accepts any JSON value without decoding it: strictjson.Decode into one checks the
// keys of a document alone.
type anyValue struct{}

func (*anyValue) UnmarshalJSON([]byte) error { return nil }
