package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleFileParses(t *testing.T) {
	c, err := Load("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Cache.Quota != d.Cache.Quota || c.Users.UIDBase != d.Users.UIDBase || c.Session.MountTimeout != d.Session.MountTimeout {
		t.Fatalf("the example's values drifted from the defaults: %+v", c)
	}
	if len(c.BootstrapRelays) != 0 {
		t.Fatalf("the example sets live bootstrap relays %v", c.BootstrapRelays)
	}
}

func TestMissingFileGivesDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "personal" || c.Cache.Quota != 10<<30 {
		t.Fatalf("%+v", c)
	}
}

func TestValues(t *testing.T) {
	c, err := Parse(strings.NewReader(`
namespace = "work"
[cache]
quota = "512MiB"
[session]
mount_timeout = "2s"
[users]
uid_key = "000102030405060708090a0b0c0d0e0f"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "work" || c.Cache.Quota != 512<<20 || c.Session.MountTimeout.Duration != 2*time.Second {
		t.Fatalf("%+v", c)
	}
	if c.Users.Shell != "/bin/bash" {
		t.Fatal("defaults lost for keys not in the file")
	}
}

func TestErrors(t *testing.T) {
	for name, c := range map[string]struct{ in, want string }{
		"unknown key":     {"namspace = \"x\"", "unknown key(s): namspace"},
		"unknown section": {"[cache]\nqouta = \"1GiB\"", "cache.qouta"},
		"syntax":          {"namespace = ", "config:"},
		"bad duration":    {"[session]\nmount_timeout = \"soon\"", "not a duration"},
		"bad size":        {"[cache]\nquota = \"lots\"", "not a size"},
		"tiny quota":      {"[cache]\nquota = \"1MiB\"", "64 MiB minimum"},
		"uid range":       {"[users]\nuid_base = 1000", "65536-524287"},
		"uid overflow":    {"[users]\nuid_base = 500000\nuid_range = 100000", "65536-524287"},
		"uid key":         {"[users]\nuid_key = \"abc\"", "uid_key"},
		"relative path":   {"[users]\ndatabase = \"users.db\"", "users.database"},
		"unclean path":    {"[cache]\ndir = \"/var/../tmp\"", "cache.dir"},
		"relay scheme":    {"bootstrap_relays = [\"http://r\"]", "bootstrap_relays"},
		"supervisor":      {"[session]\nsupervisor = \"cron\"", "supervisor"},
		"npub":            {"[policy]\nallow_npubs = [\"alice\"]", "not an npub"},
		"namespace":       {"namespace = \"../x\"", "namespace"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestUnreadableFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(strings.Repeat("#", maxFile+10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("oversized file: %v", err)
	}
}

// FuzzParse: any input either parses into a configuration that passes Check, or errors; it
// never panics.
func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("../../config.example.toml")
	f.Add(string(b))
	f.Add("[cache]\nquota = \"1GiB\"")
	f.Add("namespace = \"x\"\n[users]\nuid_base = 70000\nuid_range = 16")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("Parse accepted what Check refuses: %v", err)
		}
	})
}
