package daemon_test

import (
	"context"
	"encoding/hex"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"os"
	"path/filepath"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// TestUIDCollisionThroughConfig forces two users onto the same UID slot with the
// configuration alone (uid_key, uid_base and a 16-slot uid_range): the second gets another
// slot, the first keeps theirs, and both keep them across a daemon restart.
func TestUIDCollisionThroughConfig(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	key := [16]byte{7, 7, 7}
	base := t.TempDir()
	os.WriteFile(filepath.Join(base, "passwd"), []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(base, "group"), []byte("root:x:0:\n"), 0o644)
	cfg := config.Default()
	cfg.Users.Database = filepath.Join(base, "lib", "users.db")
	cfg.Users.HomeBase = filepath.Join(base, "home")
	cfg.Users.UIDKey = hex.EncodeToString(key[:])
	cfg.Users.UIDBase, cfg.Users.UIDRange = 70000, 16
	cfg.Session.RuntimeDir = filepath.Join(base, "run")
	cfg.Session.Supervisor = "builtin"
	must(t, cfg.Check())
	start := func() *daemon.Daemon {
		d, err := daemon.New(cfg, daemon.Options{PasswdPath: filepath.Join(base, "passwd"), GroupPath: filepath.Join(base, "group"),
			SubUIDPath: filepath.Join(base, "none"), SubGIDPath: filepath.Join(base, "none"), Hostname: "h", Log: &syncbuf.Buffer{}})
		must(t, err)
		return d
	}

	// Find two identities whose public keys map to the same slot under this configuration.
	slots := userdb.Options{Key: key, Base: cfg.Users.UIDBase, Range: cfg.Users.UIDRange}
	first := newIdent(t, "first")
	want, err := slots.UserSlot(first.pk)
	must(t, err)
	var second ident
	for i := 0; ; i++ {
		second = newIdent(t, "second")
		if s, _ := slots.UserSlot(second.pk); s == want {
			break
		}
		if i > 10000 {
			t.Fatal("no colliding key found in 10000 tries")
		}
	}

	d := start()
	a, err := d.DB().AddUser(ctx, userdbUser(first))
	must(t, err)
	b, err := d.DB().AddUser(ctx, userdbUser(second))
	must(t, err)
	if a.UID != want {
		t.Fatalf("first user got %d, want its slot %d", a.UID, want)
	}
	if b.UID == a.UID || b.UID < cfg.Users.UIDBase || b.UID >= cfg.Users.UIDBase+cfg.Users.UIDRange {
		t.Fatalf("second user got %d (first %d): must differ and stay in the range", b.UID, a.UID)
	}
	must(t, d.Close())

	d = start()
	defer d.Close()
	for _, u := range []userdb.User{a, b} {
		got, err := d.DB().User(ctx, u.Name)
		must(t, err)
		if got.UID != u.UID || got.GID != u.GID {
			t.Fatalf("after restart %s has uid %d gid %d, had %d %d", u.Name, got.UID, got.GID, u.UID, u.GID)
		}
	}
}
