package tree

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Rule names one of the checks of docs/FORMAT.md that a blob, a content reference or a listing
// broke.
type Rule string

const (
	RuleHash        Rule = "hash"         // the blob's sha256 is not the name it was fetched by
	RuleVersion     Rule = "version"      // an unknown first byte, or a "v" other than 1
	RuleDecrypt     Rule = "decrypt"      // the blob has the wrong length or does not decrypt
	RuleID          Rule = "id"           // the plaintext's HMAC is not the chunk id named
	RuleRef         Rule = "ref"          // a chunk reference's hash or id is malformed
	RuleSize        Rule = "size"         // sizes that do not add up, or out of range
	RuleJSON        Rule = "json"         // not strict JSON of the schema (strictjson)
	RuleUTF8        Rule = "utf8"         // a JSON document that is not valid UTF-8
	RuleBase64      Rule = "base64"       // a value that is not canonical standard base64
	RuleDeflate     Rule = "deflate"      // a listing that is not one valid DEFLATE stream
	RuleListingSize Rule = "listing-size" // a listing over MaxListingSize, compressed or not
	RuleEntries     Rule = "entries"      // more than MaxEntries entries in one directory
	RuleName        Rule = "name"         // an entry name that breaks the name rules
	RuleDuplicate   Rule = "duplicate"    // two entries with the same name
	RuleOrder       Rule = "order"        // entries not sorted by name (bytewise)
	RuleType        Rule = "type"         // a type other than file, dir or symlink
	RuleMode        Rule = "mode"         // mode over 07777
	RuleMtime       Rule = "mtime"        // mtime outside 0 to 2^62
	RuleContent     Rule = "content"      // content missing for a file or dir, or present for a symlink
	RuleTarget      Rule = "target"       // a symlink target that breaks the rules, or one on a non-symlink
	RuleXattr       Rule = "xattr"        // an extended attribute that breaks the rules
	RuleCycle       Rule = "cycle"        // a directory that appears again on its own path
	RuleDepth       Rule = "depth"        // a tree deeper than MaxDepth directories
)

// FormatError reports a refused input: where (Path), which rule, and why.
//
// Path is the entry's name for DecodeListing and EncodeListing, a slash-separated path from
// the root ("/src/main.go", "/" for the root directory) for Walk, and empty for a chunk, a
// root pointer or a content reference on its own. Err, if set, is the underlying cause (for
// RuleHash it is blobstore.ErrHashMismatch).
type FormatError struct {
	Path   string
	Rule   Rule
	Detail string
	Err    error
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("tree: ")
	if e.Path != "" {
		b.WriteString(quoteIfNeeded(e.Path))
		b.WriteString(": ")
	}
	b.WriteString("rule ")
	b.WriteString(string(e.Rule))
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

// BrokenRule returns the rule err reports, or "" if err is not (or does not wrap) a
// *FormatError.
func BrokenRule(err error) Rule {
	var fe *FormatError
	if errors.As(err, &fe) {
		return fe.Rule
	}
	return ""
}

// ErrWiped is returned by every method of Keys after Wipe, or of a Keys not made by DeriveKeys.
var ErrWiped = errors.New("tree: keys wiped or never derived")

var _ error = (*FormatError)(nil)

func refuse(rule Rule, format string, args ...any) *FormatError {
	return &FormatError{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// atEntry returns err with its path set to name (if err is a *FormatError without one).
func atEntry(err error, name string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.Path == "" {
		c := *fe
		c.Path = name
		return &c
	}
	return err
}

// under returns err as seen from directory dir ("/" or "/a/b"): a *FormatError's path becomes
// dir joined with the path it had (an entry name); other errors are wrapped with dir.
func under(err error, dir string) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		c := *fe
		c.Path = joinPath(dir, fe.Path)
		return &c
	}
	return &pathError{path: dir, err: err}
}

// pathError is an error other than a *FormatError (a Fetcher's, a context's) met at path.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string {
	return "tree: " + quoteIfNeeded(e.path) + ": " + strings.TrimPrefix(e.err.Error(), "tree: ")
}

func (e *pathError) Unwrap() error { return e.err }

// withDetail prefixes a *FormatError's detail (e.g. with the chunk index).
func withDetail(err error, prefix string) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		c := *fe
		if c.Detail == "" {
			c.Detail = prefix
		} else {
			c.Detail = prefix + ": " + c.Detail
		}
		return &c
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

func joinPath(dir, name string) string {
	switch {
	case name == "":
		return dir
	case dir == "/" || dir == "":
		return "/" + name
	}
	return dir + "/" + name
}

// quoteIfNeeded quotes s if it holds anything but printable characters, so that a hostile
// name cannot write terminal escapes into a log.
func quoteIfNeeded(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '"' || r == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}
