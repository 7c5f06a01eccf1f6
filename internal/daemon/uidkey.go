package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// UIDKeyFile is the name of the file, next to the user database, that holds the generated
// UID key when the configuration has none.
const UIDKeyFile = "uid.key"

// OpenUserDB opens the user database of cfg with the UID mapping of cfg: the key is
// cfg.Users.UIDKey, or, if that is empty, the key in uid.key next to the database, generated
// (16 random bytes, hex, mode 0600) on the first start. The daemon and the CLI's add, remove
// and list use it, so both map keys to the same UIDs. opts gives the local account files.
func OpenUserDB(cfg config.Config, opts Options) (*userdb.DB, error) {
	key, err := uidKey(cfg)
	if err != nil {
		return nil, err
	}
	db, err := userdb.Open(cfg.Users.Database, userdb.Options{
		Key:        key,
		Base:       cfg.Users.UIDBase,
		Range:      cfg.Users.UIDRange,
		PasswdPath: opts.PasswdPath,
		GroupPath:  opts.GroupPath,
		SubUIDPath: opts.SubUIDPath,
		SubGIDPath: opts.SubGIDPath,
		HomeBase:   cfg.Users.HomeBase,
		Shell:      cfg.Users.Shell,
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: user database: %w", err)
	}
	return db, nil
}

func uidKey(cfg config.Config) ([16]byte, error) {
	var key [16]byte
	if cfg.Users.UIDKey != "" {
		b, err := hex.DecodeString(cfg.Users.UIDKey)
		if err != nil || len(b) != 16 {
			return key, errors.New("daemon: users.uid_key must be 16 bytes of hex")
		}
		copy(key[:], b)
		return key, nil
	}
	dir := filepath.Dir(cfg.Users.Database)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return key, fmt.Errorf("daemon: %w", err)
	}
	path := filepath.Join(dir, UIDKeyFile)
	for range 2 {
		b, err := readKeyFile(path)
		if err == nil {
			copy(key[:], b)
			return key, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return key, err
		}
		if _, err := rand.Read(key[:]); err != nil {
			return key, fmt.Errorf("daemon: generating the UID key: %w", err)
		}
		err = writeKeyFile(path, key)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return key, err
		}
		// Another process created it first: read theirs.
	}
	return key, fmt.Errorf("daemon: %s: cannot create or read it", path)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 || (sys != nil && sys.Uid != uint32(os.Geteuid())) {
		return nil, fmt.Errorf("daemon: %s must be a regular file of mode 0600 owned by uid %d; refusing to use it", path, os.Geteuid())
	}
	buf := make([]byte, 256)
	n, _ := f.Read(buf)
	b, err := hex.DecodeString(strings.TrimSpace(string(buf[:n])))
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("daemon: %s does not hold 16 bytes of hex", path)
	}
	return b, nil
}

func writeKeyFile(path string, key [16]byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	_, err = f.WriteString(hex.EncodeToString(key[:]) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("daemon: writing %s: %w", path, err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// RemoveUser removes an enrolled user from the user database (its UID stays reserved for
// its key, see userdb) and forgets its cached events. A session the daemon has open for the
// user is not touched: close it first.
func RemoveUser(ctx context.Context, cfg config.Config, opts Options, name string) error {
	db, err := OpenUserDB(cfg, opts)
	if err != nil {
		return err
	}
	defer db.Close()
	u, err := db.User(ctx, name)
	if err != nil {
		return err
	}
	if err := db.RemoveUser(ctx, name); err != nil {
		return err
	}
	cache, err := openEventCache(cfg)
	if err != nil {
		return err
	}
	return cache.Forget(u.Pubkey)
}
