package tree

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	// MaxListingSize bounds a directory listing: its JSON once inflated, and its stored
	// (compressed) stream.
	MaxListingSize = 64 << 20
	// MaxEntries bounds the entries of one directory.
	MaxEntries = 1_000_000
	// MaxDepth bounds how many directories deep a tree may go below its root.
	MaxDepth = 4096
	// MaxNameLen bounds an entry name, in bytes.
	MaxNameLen = 255
	// MaxTargetLen bounds a symlink target, in bytes.
	MaxTargetLen = 4095
	// MaxMode is the largest mode: permission, setuid, setgid and sticky bits.
	MaxMode = 0o7777
	// MaxMtime is the largest mtime, in nanoseconds since the epoch.
	MaxMtime = 1 << 62
	// MaxXattrNameLen bounds an extended attribute's name, in bytes.
	MaxXattrNameLen = 255
	// MaxXattrValue bounds an extended attribute's value, in bytes (decoded).
	MaxXattrValue = 64 << 10
	// MaxXattrTotal bounds the names and values (decoded) of one entry's attributes together.
	MaxXattrTotal = 256 << 10

	// ListingVersion is the "v" of a listing.
	ListingVersion = 1
)

// Entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Listing is a directory's listing: its entries, sorted by name (bytewise).
type Listing struct {
	V       int     `json:"v"`
	Entries []Entry `json:"entries"`
}

// Entry is one name in a directory (docs/FORMAT.md, "Directory listings"). Files and
// directories have a Content (a directory's is its own listing), symlinks a Target.
type Entry struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Mode    uint32   `json:"mode"`
	Mtime   int64    `json:"mtime"` // nanoseconds since the epoch
	Content *Content `json:"content,omitempty"`
	Target  string   `json:"target,omitempty"`
	Xattrs  []Xattr  `json:"xattrs,omitempty"`
}

// Xattr is an extended attribute: a name in the user. namespace and a value of raw bytes
// (base64 in JSON).
type Xattr struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

type wireXattr struct {
	Name  string  `json:"name"`
	Value *string `json:"value"`
}

// MarshalJSON writes the value as base64 even when it is nil (an empty value).
func (x Xattr) MarshalJSON() ([]byte, error) {
	v := base64.StdEncoding.EncodeToString(x.Value)
	return json.Marshal(wireXattr{Name: x.Name, Value: &v})
}

// UnmarshalJSON decodes an attribute strictly: a value is required and must be canonical
// standard base64 of at most MaxXattrValue bytes; an empty value decodes to nil.
func (x *Xattr) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return refuse(RuleXattr, "attribute is null")
	}
	var w wireXattr
	if err := decodeInner(b, &w); err != nil {
		return err
	}
	if w.Value == nil {
		return refuse(RuleXattr, "attribute %q without a value", w.Name)
	}
	v, err := decodeBase64(*w.Value, MaxXattrValue)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) && fe.Rule == RuleSize {
			return refuse(RuleXattr, "attribute %q: value of more than %d bytes", w.Name, MaxXattrValue)
		}
		return withDetail(err, fmt.Sprintf("attribute %q", w.Name))
	}
	*x = Xattr{Name: w.Name, Value: v}
	return nil
}

// checkName checks an entry name: 1 to 255 bytes of UTF-8, not . or .., no / and no NUL.
func checkName(name string) error {
	switch {
	case name == "":
		return refuse(RuleName, "empty name")
	case len(name) > MaxNameLen:
		return refuse(RuleName, "name of %d bytes, over %d", len(name), MaxNameLen)
	case name == "." || name == "..":
		return refuse(RuleName, "name %q", name)
	case strings.IndexByte(name, '/') >= 0:
		return refuse(RuleName, "name contains '/'")
	case strings.IndexByte(name, 0) >= 0:
		return refuse(RuleName, "name contains NUL")
	case !utf8.ValidString(name):
		return refuse(RuleName, "name is not valid UTF-8")
	}
	return nil
}

// checkEntry checks every rule of one entry on its own (not its place in the listing). The
// error's Path is the entry's name.
func checkEntry(e *Entry) error {
	if err := checkEntryFields(e); err != nil {
		return atEntry(err, e.Name)
	}
	return nil
}

func checkEntryFields(e *Entry) error {
	if err := checkName(e.Name); err != nil {
		return err
	}
	switch e.Type {
	case TypeFile, TypeDir:
		if e.Content == nil {
			return refuse(RuleContent, "a %s without content", e.Type)
		}
		if e.Target != "" {
			return refuse(RuleTarget, "a %s with a target", e.Type)
		}
		check := e.Content.Check
		if e.Type == TypeDir {
			check = e.Content.checkDir
		}
		if err := check(); err != nil {
			return withDetail(err, "content")
		}
	case TypeSymlink:
		if e.Content != nil {
			return refuse(RuleContent, "a symlink with content")
		}
		switch t := e.Target; {
		case t == "" || len(t) > MaxTargetLen:
			return refuse(RuleTarget, "target of %d bytes: must be 1 to %d", len(t), MaxTargetLen)
		case strings.IndexByte(t, 0) >= 0:
			return refuse(RuleTarget, "target contains NUL")
		case !utf8.ValidString(t):
			return refuse(RuleTarget, "target is not valid UTF-8")
		}
	default:
		return refuse(RuleType, "type %.32q: must be file, dir or symlink", e.Type)
	}
	if e.Mode > MaxMode {
		return refuse(RuleMode, "mode %#o over 07777", e.Mode)
	}
	if e.Mtime < 0 || e.Mtime > MaxMtime {
		return refuse(RuleMtime, "mtime %d outside 0 to 2^62", e.Mtime)
	}
	var xc xattrChecker
	for i := range e.Xattrs {
		if err := xc.add(&e.Xattrs[i]); err != nil {
			return err
		}
	}
	return nil
}

// xattrChecker checks an entry's attributes one at a time, in order.
type xattrChecker struct {
	n     int
	total int
	prev  string
}

func (c *xattrChecker) add(x *Xattr) error {
	n := x.Name
	switch {
	case !strings.HasPrefix(n, "user.") || len(n) == len("user."):
		return refuse(RuleXattr, "attribute name %.64q: must be user. and a name", n)
	case len(n) > MaxXattrNameLen:
		return refuse(RuleXattr, "attribute name of %d bytes, over %d", len(n), MaxXattrNameLen)
	case strings.IndexByte(n, 0) >= 0 || !utf8.ValidString(n):
		return refuse(RuleXattr, "attribute name %q: NUL or not UTF-8", n)
	case len(x.Value) > MaxXattrValue:
		return refuse(RuleXattr, "attribute %q: value of %d bytes, over %d", n, len(x.Value), MaxXattrValue)
	case c.n > 0 && n == c.prev:
		return refuse(RuleXattr, "attribute %q twice", n)
	case c.n > 0 && n < c.prev:
		return refuse(RuleXattr, "attribute %q after %q: not sorted", n, c.prev)
	}
	c.total += len(n) + len(x.Value)
	if c.total > MaxXattrTotal {
		return refuse(RuleXattr, "attributes of more than %d bytes (names and values)", MaxXattrTotal)
	}
	c.n++
	c.prev = n
	return nil
}

// xattrList decodes an entry's attributes one by one, checking each as it comes.
type xattrList []Xattr

func (l *xattrList) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return refuse(RuleXattr, "xattrs is null")
	}
	var out []Xattr
	var xc xattrChecker
	err := decodeArray(b, func(dec jsonDecoder) error {
		var x Xattr
		if err := dec.Decode(&x); err != nil {
			return jsonError(err)
		}
		if err := xc.add(&x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	*l = out
	return err
}

// listingChecker checks a listing's entries one at a time, in order.
type listingChecker struct {
	n    int
	prev string
}

func (c *listingChecker) add(e *Entry) error {
	if c.n >= MaxEntries {
		return refuse(RuleEntries, "more than %d entries", MaxEntries)
	}
	if err := checkEntry(e); err != nil {
		return err
	}
	if c.n > 0 {
		if e.Name == c.prev {
			return &FormatError{Path: e.Name, Rule: RuleDuplicate, Detail: "name appears twice"}
		}
		if e.Name < c.prev {
			return &FormatError{Path: e.Name, Rule: RuleOrder, Detail: fmt.Sprintf("after %q: entries must be sorted by name", c.prev)}
		}
	}
	c.n++
	c.prev = e.Name
	return nil
}

type wireEntry struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Mode    uint32    `json:"mode"`
	Mtime   int64     `json:"mtime"`
	Content *Content  `json:"content"`
	Target  string    `json:"target"`
	Xattrs  xattrList `json:"xattrs"`
}

// entryList decodes a listing's entries one by one, checking each (and the order and count)
// as it comes, so that memory stays proportional to valid input.
type entryList []Entry

func (l *entryList) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return refuse(RuleJSON, "entries is null")
	}
	var out []Entry
	var lc listingChecker
	err := decodeArray(b, func(dec jsonDecoder) error {
		start := dec.InputOffset()
		var w wireEntry
		if err := dec.Decode(&w); err != nil {
			if name := nameAt(b[start:]); name != "" {
				return atEntry(jsonError(err), name)
			}
			return withDetail(jsonError(err), fmt.Sprintf("entry %d", len(out)))
		}
		e := Entry{Name: w.Name, Type: w.Type, Mode: w.Mode, Mtime: w.Mtime, Content: w.Content, Target: w.Target, Xattrs: []Xattr(w.Xattrs)}
		switch e.Type { // share the constants rather than keep a copy per entry
		case TypeFile:
			e.Type = TypeFile
		case TypeDir:
			e.Type = TypeDir
		case TypeSymlink:
			e.Type = TypeSymlink
		}
		if err := lc.add(&e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	*l = out
	return err
}

// nameAt returns, best effort, the "name" of the JSON object at the start of b (after blanks
// and a comma), to say which entry failed to decode.
func nameAt(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n,")
	var v struct {
		Name string `json:"name"`
	}
	json.NewDecoder(bytes.NewReader(b)).Decode(&v)
	return v.Name
}

type wireListing struct {
	V       int       `json:"v"`
	Entries entryList `json:"entries"`
}

// DecodeListing inflates and decodes a directory's stream (untrusted) and checks every rule:
// at most MaxListingSize bytes inflated (inflating stops there), one DEFLATE stream and
// nothing after it, valid UTF-8, strict JSON (strictjson), "v" 1, at most MaxEntries entries,
// each entry's own rules, names unique and sorted. Errors are *FormatError naming the entry
// (by name, or by index when it has none) and the rule.
func DecodeListing(b []byte) (Listing, error) {
	data, err := inflate(b)
	if err != nil {
		return Listing{}, err
	}
	return decodeListingJSON(data)
}

func decodeListingJSON(data []byte) (Listing, error) {
	var w wireListing
	if err := decodeJSON(data, &w); err != nil {
		if w.V != 0 && w.V != ListingVersion {
			return Listing{}, refuse(RuleVersion, "listing version %d, want %d", w.V, ListingVersion)
		}
		return Listing{}, err
	}
	if w.V != ListingVersion {
		return Listing{}, refuse(RuleVersion, "listing version %d, want %d", w.V, ListingVersion)
	}
	return Listing{V: ListingVersion, Entries: []Entry(w.Entries)}, nil
}

// inflate decompresses one raw DEFLATE stream of at most MaxListingSize bytes, stopping as
// soon as the output passes the limit (so a decompression bomb costs at most the limit).
func inflate(b []byte) ([]byte, error) {
	if len(b) > MaxListingSize {
		return nil, refuse(RuleListingSize, "compressed listing of %d bytes, over %d", len(b), MaxListingSize)
	}
	br := bytes.NewReader(b)
	fr := flate.NewReader(br)
	defer fr.Close()
	out := make([]byte, 0, min(MaxListingSize+1, max(4*len(b), 4096)))
	for {
		if len(out) == cap(out) {
			if len(out) > MaxListingSize {
				return nil, refuse(RuleListingSize, "listing inflates to more than %d bytes", MaxListingSize)
			}
			out = slices.Grow(out, min(MaxListingSize+1, 2*cap(out))-len(out))
		}
		n, err := fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > MaxListingSize {
			return nil, refuse(RuleListingSize, "listing inflates to more than %d bytes", MaxListingSize)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &FormatError{Rule: RuleDeflate, Detail: err.Error(), Err: err}
		}
	}
	if br.Len() != 0 {
		return nil, refuse(RuleDeflate, "%d bytes after the end of the DEFLATE stream", br.Len())
	}
	return out, nil
}

// flateWriters keeps DEFLATE compressors (about 1 MiB each) for reuse.
var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.DefaultCompression)
	return w
}}

// EncodeListing sorts l's entries by name (bytewise) and each entry's attributes by name,
// checks every rule DecodeListing checks, and returns the DEFLATE-compressed JSON. l is not
// modified. l.V must be 0 or 1; the listing is written as version 1.
func EncodeListing(l Listing) ([]byte, error) {
	if l.V != 0 && l.V != ListingVersion {
		return nil, refuse(RuleVersion, "listing version %d, want %d", l.V, ListingVersion)
	}
	if len(l.Entries) > MaxEntries {
		return nil, refuse(RuleEntries, "%d entries, over %d", len(l.Entries), MaxEntries)
	}
	entries := slices.Clone(l.Entries)
	if entries == nil {
		entries = []Entry{}
	}
	slices.SortStableFunc(entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	var lc listingChecker
	for i := range entries {
		e := &entries[i]
		if !slices.IsSortedFunc(e.Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) }) {
			e.Xattrs = slices.Clone(e.Xattrs)
			slices.SortStableFunc(e.Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
		}
		if err := lc.add(e); err != nil {
			return nil, err
		}
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(Listing{V: ListingVersion, Entries: entries}); err != nil {
		return nil, err
	}
	data := bytes.TrimSuffix(js.Bytes(), []byte("\n"))
	if len(data) > MaxListingSize {
		return nil, refuse(RuleListingSize, "listing of %d bytes, over %d", len(data), MaxListingSize)
	}
	var out bytes.Buffer
	fw := flateWriters.Get().(*flate.Writer)
	fw.Reset(&out)
	_, err := fw.Write(data)
	if err == nil {
		err = fw.Close()
	}
	fw.Reset(nil)
	flateWriters.Put(fw)
	if err != nil {
		return nil, err
	}
	if out.Len() > MaxListingSize {
		return nil, refuse(RuleListingSize, "compressed listing of %d bytes, over %d", out.Len(), MaxListingSize)
	}
	return out.Bytes(), nil
}

// WriteListing encodes l (EncodeListing) and stores it as a stream (Split): the result is the
// directory's content reference.
func (k *Keys) WriteListing(l Listing, put func(blob []byte, ref ChunkRef) error) (Content, error) {
	b, err := EncodeListing(l)
	if err != nil {
		return Content{}, err
	}
	return k.Split(bytes.NewReader(b), put)
}

// ReadListing fetches (through f) and decodes the listing whose content reference is c.
// c must be a directory's: at most MaxListingSize bytes.
func (k *Keys) ReadListing(ctx context.Context, f Fetcher, c Content) (Listing, error) {
	if err := c.checkDir(); err != nil {
		return Listing{}, err
	}
	buf := make([]byte, c.Size)
	if _, err := k.ReadAt(ctx, f, c, buf, 0); err != nil {
		return Listing{}, err
	}
	return DecodeListing(buf)
}
