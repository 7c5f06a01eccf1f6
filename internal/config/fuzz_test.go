package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// configSeeds are the inputs of the tests in config_test.go (valid and refused), and a few
// valid files that set every key away from its default.
var configSeeds = []string{
	"",
	"[cache]\nquota = \"1GiB\"",
	"namespace = \"x\"\n[users]\nuid_base = 70000\nuid_range = 16",
	"namespace = \"work\"\n[cache]\nquota = \"512MiB\"\n[session]\nmount_timeout = \"2s\"\n[users]\nuid_key = \"000102030405060708090a0b0c0d0e0f\"\n",
	// TestErrors
	"namspace = \"x\"",
	"[cache]\nqouta = \"1GiB\"",
	"namespace = ",
	"[session]\nmount_timeout = \"soon\"",
	"[cache]\nquota = \"lots\"",
	"[cache]\nquota = \"1MiB\"",
	"[users]\nuid_base = 1000",
	"[users]\nuid_base = 500000\nuid_range = 100000",
	"[users]\nuid_key = \"abc\"",
	"[users]\ndatabase = \"users.db\"",
	"[cache]\ndir = \"/var/../tmp\"",
	"bootstrap_relays = [\"http://r\"]",
	"[session]\nsupervisor = \"cron\"",
	"[policy]\nallow_npubs = [\"alice\"]",
	"namespace = \"../x\"",
	// Every key set, each to something other than its default.
	`bootstrap_relays = ["wss://relay.example.org", "ws://127.0.0.1:7447/path?q=1"]
default_blossom = ["https://blossom.example.org", "http://[::1]:3000"]
ipfs = ["http://127.0.0.1:5001"]
namespace = "a_b-9"

[users]
database = "/var/lib/x/users.db"
home_base = "/srv/home"
shell = "/usr/bin/zsh"
uid_key = "00112233445566778899AABBCCDDEEFF"
uid_base = 524272
uid_range = 16

[policy]
allow_npubs = ["npub1abc"]
allow_nip05_domains = ["example.org", "ünïcode.example"]

[cache]
dir = "/"
quota = 67108864

[session]
mount_timeout = "1s"
flush_timeout = "1h"
runtime_dir = "/run/x y\u00e9"
supervisor = "builtin"

[login]
challenge_ttl = "1m30.5s"
remote_signer_timeout = "1000000000ns"
`,
	// Inline tables, literal strings, escapes, sizes with blanks and units.
	"users = { shell = '/bin/sh', uid_range = 0x10 }\ncache.quota = \" 64 MiB \"\nsession.supervisor = \"sys\\u0074emd\"",
	"[cache]\nquota = \"1TB\"\n[login]\nchallenge_ttl = \"3600s\"",
	"[cache]\nquota = \"9223372036854775807\"",
	"[cache]\nquota = \"4611686018427387904B\"",
	"[session]\nmount_timeout = \"1h0m0.000000001s\"",
	"[[users]]\nshell = \"/bin/sh\"",
	"namespace = \"x\"\nnamespace = \"y\"",
	// Two type errors: which one the message names varies from run to run.
	"users= { shell =80}\ncache.quota.2= \"\"",
}

// FuzzConfig: Parse never panics; it refuses with a "config: " error or returns a
// configuration that passes Check; Load of the same bytes from a file gives the same result;
// and an accepted configuration, written out again with the TOML encoder, parses back to an
// equal configuration (so nostr-homectl could rewrite the file without changing its meaning).
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("../../config.example.toml"); err != nil {
		f.Fatal(err)
	} else {
		f.Add(string(b))
	}
	for _, s := range configSeeds {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in))

		p := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		lc, lerr := Load(p)
		switch {
		case (err == nil) != (lerr == nil):
			t.Fatalf("Parse and Load disagree: %v / %v", err, lerr)
		// Not Parse's error word for word: with two type errors in a file, the TOML decoder
		// reports whichever it meets first in a map iteration, so the message can differ.
		case lerr != nil && !strings.HasPrefix(lerr.Error(), p+": config: "):
			t.Fatalf("Load's error %q does not start with the path and config:", lerr)
		case !reflect.DeepEqual(c, lc):
			t.Fatalf("Parse and Load give different configurations:\n%+v\n%+v", c, lc)
		}

		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("refusal without the config: prefix: %v", err)
			}
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("Parse accepted what Check refuses: %v", err)
		}

		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(c); err != nil {
			t.Fatalf("an accepted configuration does not encode: %v\n%+v", err, c)
		}
		c2, err := Parse(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("a re-encoded configuration does not parse: %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("parse(encode(c)) != c:\n%+v\n%+v\n%s", c, c2, buf.Bytes())
		}
		var buf2 bytes.Buffer
		if err := toml.NewEncoder(&buf2).Encode(c2); err != nil || !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, buf.Bytes(), buf2.Bytes())
		}
	})
}
