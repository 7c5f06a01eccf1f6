// Package strictjson decodes JSON from untrusted sources exactly: a key the target type does
// not name, a key given twice in one object, a key not in lower case, or anything after the
// value is an error. encoding/json alone accepts the last three (it keeps the last duplicate
// and matches names without regard to case), which would let two readers of one document see
// different things. All of nostr-homed's formats use lowercase keys.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Decode decodes data into v strictly (see the package doc).
func Decode(data []byte, v any) error {
	if err := checkKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// checkKeys refuses a key given twice in one object and keys not in lower case.
func checkKeys(content []byte) error {
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].key = true
			}
			continue
		}
		if top != nil && top.object && top.key {
			k, _ := tok.(string)
			if top.seen[k] {
				return fmt.Errorf("key %q appears twice", k)
			}
			// Plain lowercase ASCII only: encoding/json matches keys with Unicode case
			// folding, so "ſize" (U+017F) would otherwise reach the field "size".
			for i := 0; i < len(k); i++ {
				if k[i] >= 0x80 || (k[i] >= 'A' && k[i] <= 'Z') {
					return fmt.Errorf("key %q is not plain lowercase ASCII", k)
				}
			}
			top.seen[k] = true
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // a value is being read; a key comes after it
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, seen: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		}
	}
}
