// Package config reads /etc/nostr-homed/config.toml, the one configuration file that
// nostr-homectl and nostrfs share. Every key has a default, so an empty file (or none) gives a
// working local setup; every value is checked when the file is read, and an unknown key is an
// error (a typo must not silently fall back to a default). config.example.toml at the
// repository root documents every key and is installed as the starting file.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the daemons look for the file.
const DefaultPath = "/etc/nostr-homed/config.toml"

// Config is the whole file.
type Config struct {
	// BootstrapRelays are asked for a user's events before the user's own relay list is known.
	BootstrapRelays []string `toml:"bootstrap_relays"`
	// DefaultBlossom servers are used for a user whose settings name none.
	DefaultBlossom []string `toml:"default_blossom"`
	// IPFS lists kubo RPC endpoints to store blobs on besides Blossom. They belong to the
	// machine, not to the user's public settings: kubo's RPC API is an admin interface.
	IPFS []string `toml:"ipfs"`
	// Namespace is the `d` tag namespace of homes on this machine.
	Namespace string `toml:"namespace"`

	Users   Users   `toml:"users"`
	Policy  Policy  `toml:"policy"`
	Cache   Cache   `toml:"cache"`
	Session Session `toml:"session"`
	Login   Login   `toml:"login"`
}

// Users configures the user cache and identity mapping.
type Users struct {
	Database string `toml:"database"`
	HomeBase string `toml:"home_base"`
	Shell    string `toml:"shell"`
	// UIDKey is the 16-byte SipHash key (hex) that maps public keys to UIDs. Keep it the same
	// on every machine that should give a user the same UID.
	UIDKey   string `toml:"uid_key"`
	UIDBase  uint32 `toml:"uid_base"`
	UIDRange uint32 `toml:"uid_range"`
}

// Policy says who may log in besides being enrolled. Empty lists allow every enrolled user.
type Policy struct {
	AllowNpubs        []string `toml:"allow_npubs"`
	AllowNIP05Domains []string `toml:"allow_nip05_domains"`
}

// Cache configures nostrfs's local content cache.
type Cache struct {
	Dir   string `toml:"dir"`
	Quota Size   `toml:"quota"`
}

// Session configures session start and end.
type Session struct {
	MountTimeout Duration `toml:"mount_timeout"`
	FlushTimeout Duration `toml:"flush_timeout"`
	RuntimeDir   string   `toml:"runtime_dir"` // secrets go under RuntimeDir/UID/secrets
	// Supervisor is "systemd" (nostrfs@USER units), "builtin" (nostr-homectl starts nostrfs
	// itself) or "auto" (systemd when it is PID 1).
	Supervisor string `toml:"supervisor"`
}

// Login configures authentication.
type Login struct {
	ChallengeTTL        Duration `toml:"challenge_ttl"`
	RemoteSignerTimeout Duration `toml:"remote_signer_timeout"`
}

// Duration is a time.Duration written as "30s", "2m".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"30s\" or \"2m\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a byte count written as "10GiB", "512MiB", "100MB" or a plain number.
type Size int64

var sizeRE = regexp.MustCompile(`^\s*([0-9]+)\s*([KMGT]i?B|B)?\s*$`)

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	m := sizeRE.FindStringSubmatch(string(b))
	if m == nil {
		return fmt.Errorf("%q is not a size like \"10GiB\" or \"500MB\"", b)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%q: %v", b, err)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	if n > (1<<62)/mult {
		return fmt.Errorf("%q is too large", b)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// Default returns the configuration an empty file gives.
func Default() Config {
	return Config{
		Namespace: "personal",
		Users: Users{
			Database: "/var/lib/nostr-homed/users.db",
			HomeBase: "/home",
			Shell:    "/bin/bash",
			// systemd leaves 65536-524287 unassigned; this default sits inside it and below
			// 100000, where Debian's useradd starts handing out subordinate IDs
			// (/etc/subuid), which rootless containers run as without listing them in passwd.
			UIDBase:  65536,
			UIDRange: 34464,
		},
		Cache:   Cache{Dir: "/var/cache/nostrfs", Quota: 10 << 30},
		Session: Session{MountTimeout: Duration{10 * time.Second}, FlushTimeout: Duration{30 * time.Second}, RuntimeDir: "/run/nostr-homed", Supervisor: "auto"},
		Login:   Login{ChallengeTTL: Duration{60 * time.Second}, RemoteSignerTimeout: Duration{120 * time.Second}},
	}
}

// maxFile bounds the file we read: a configuration is a few KiB.
const maxFile = 1 << 20

// Load reads path. A missing file gives the defaults; an unreadable or invalid one is an error.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		c := Default()
		return c, c.Check()
	}
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a configuration from r, on top of the defaults, and checks it.
func Parse(r io.Reader) (Config, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFile+1))
	if err != nil {
		return Config{}, err
	}
	if len(b) > maxFile {
		return Config{}, fmt.Errorf("config: larger than %d bytes", maxFile)
	}
	c := Default()
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return Config{}, fmt.Errorf("config: unknown key(s): %s", strings.Join(keys, ", "))
	}
	if err := c.Check(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var namespaceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Check validates every value.
func (c *Config) Check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	for _, r := range c.BootstrapRelays {
		if u, err := url.Parse(r); err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
			bad("bootstrap_relays: %q is not a ws:// or wss:// URL", r)
		}
	}
	for _, s := range c.DefaultBlossom {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("default_blossom: %q is not an http(s) URL", s)
		}
	}
	for _, s := range c.IPFS {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("ipfs: %q is not an http(s) URL of a kubo RPC endpoint", s)
		}
	}
	if !namespaceRE.MatchString(c.Namespace) {
		bad("namespace: %q must be 1-64 of a-z 0-9 _ -", c.Namespace)
	}
	for name, p := range map[string]string{"users.database": c.Users.Database, "users.home_base": c.Users.HomeBase,
		"users.shell": c.Users.Shell, "cache.dir": c.Cache.Dir, "session.runtime_dir": c.Session.RuntimeDir} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			bad("%s: %q must be a clean absolute path", name, p)
		}
	}
	if c.Users.UIDKey != "" {
		if k, err := hex.DecodeString(c.Users.UIDKey); err != nil || len(k) != 16 {
			bad("users.uid_key: must be 16 bytes of hex (32 characters)")
		}
	}
	lo, hi := uint64(c.Users.UIDBase), uint64(c.Users.UIDBase)+uint64(c.Users.UIDRange)
	if c.Users.UIDRange < 16 || lo < 65536 || hi > 524288 {
		bad("users.uid_base/uid_range: %d+%d must lie inside 65536-524287 (left unused by systemd) and hold at least 16 UIDs", lo, c.Users.UIDRange)
	}
	if c.Cache.Quota < 64<<20 {
		bad("cache.quota: %d bytes is below the 64 MiB minimum", c.Cache.Quota)
	}
	for name, d := range map[string]Duration{"session.mount_timeout": c.Session.MountTimeout, "session.flush_timeout": c.Session.FlushTimeout,
		"login.challenge_ttl": c.Login.ChallengeTTL, "login.remote_signer_timeout": c.Login.RemoteSignerTimeout} {
		if d.Duration < time.Second || d.Duration > time.Hour {
			bad("%s: %s must be between 1s and 1h", name, d)
		}
	}
	switch c.Session.Supervisor {
	case "auto", "systemd", "builtin":
	default:
		bad("session.supervisor: %q must be auto, systemd or builtin", c.Session.Supervisor)
	}
	for _, n := range c.Policy.AllowNpubs {
		if !strings.HasPrefix(n, "npub1") {
			bad("policy.allow_npubs: %q is not an npub", n)
		}
	}
	for _, d := range c.Policy.AllowNIP05Domains {
		if d == "" || strings.ContainsAny(d, "/@: ") {
			bad("policy.allow_nip05_domains: %q is not a domain name", d)
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}
