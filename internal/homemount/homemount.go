// Package homemount is the nostrfs process: it mounts one user's home as nostr-homectl (or
// systemd's nostrfs@USER) starts it, serves it until SIGTERM, then writes back what it can
// and unmounts.
//
// Everything it needs comes from the machine, prepared by the daemon at OpenSession:
//
//   - the user (UID, GID, public key) from the user database of the configuration;
//   - the user's newest events from the daemon's event cache (<database dir>/private/events):
//     the settings (relays, Blossom servers), the secrets (kind 30079, holding the home key)
//     and the manifest (kind 30081). Nothing is fetched from relays before the mount, so a
//     warm cache mounts in a fraction of a second with every relay down;
//   - the user's session signer, org.nostr.Signer at /org/nostr/Homed1/signer/UID on the
//     system bus (homed.SignerClient): it decrypts the secrets and the manifest and signs
//     manifests and Blossom upload tokens. nostrfs never holds the user's key; it holds the
//     home key (in memory, wiped at exit).
//
// The cache of the user is Cache.Dir/UID (0700): cas/ (encrypted blobs), queue/ (the upload
// journal), state/ (state.db and the working copies; package homefs).
//
// Readiness is sd_notify (READY=1, STATUS=..., STOPPING=1) to $NOTIFY_SOCKET: systemd's when
// run as nostrfs@USER.service, the daemon's own supervisor's otherwise (package daemon).
package homemount

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/eventcache"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/homefs"
	"github.com/nostr-homed/nostr-homed/internal/tree"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// Options configure Run.
type Options struct {
	Config config.Config
	User   string
	// MountPoint is where to mount; empty means the user's home from the user database.
	MountPoint string
	// Logf receives what nostrfs has to say (stderr).
	Logf func(format string, args ...any)
	// Stop is closed (or receives) when the mount should end (SIGTERM).
	Stop <-chan os.Signal
}

func notify(state string) { daemon.SdNotify(false, state) }

// Run mounts the home and serves it until opts.Stop, then drains and unmounts.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	logf := o.Logf
	db, err := userdb.Open(cfg.Users.Database, userdb.Options{HomeBase: cfg.Users.HomeBase, Shell: cfg.Users.Shell,
		Base: cfg.Users.UIDBase, Range: cfg.Users.UIDRange})
	if err != nil {
		return fmt.Errorf("user database: %w", err)
	}
	u, err := db.User(ctx, o.User)
	db.Close()
	if err != nil {
		return fmt.Errorf("user %s: %w", o.User, err)
	}
	ns := cfg.Namespace
	if o.MountPoint == "" {
		o.MountPoint = u.Home
	}

	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return fmt.Errorf("system bus: %w", err)
	}
	defer conn.Close()
	signer := homed.NewSignerClient(conn, u.UID)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if pk, err := signer.GetPublicKey(sctx); err != nil {
		return fmt.Errorf("the session signer of %s (is a session opening?): %w", o.User, err)
	} else if pk != u.Pubkey {
		return fmt.Errorf("the session signer of uid %d has key %s, not %s's %s", u.UID, pk, o.User, u.Pubkey)
	}

	ec, err := eventcache.Open(filepath.Join(filepath.Dir(cfg.Users.Database), "private", "events"))
	if err != nil {
		return err
	}
	expect := func(kind int) events.Expect {
		return events.Expect{Kind: kind, Author: u.Pubkey, D: events.DTag(ns)}
	}
	setEv, err := ec.Get(expect(events.KindSettings))
	if err != nil {
		return fmt.Errorf("no cached settings of %s (warm the cache first): %w", o.User, err)
	}
	settings, err := events.OpenSettings(setEv, u.Pubkey, ns)
	if err != nil {
		return err
	}
	secEv, err := ec.Get(expect(events.KindSecrets))
	if err != nil {
		return fmt.Errorf("no cached secrets of %s: the home key is in them: %w", o.User, err)
	}
	secrets, err := events.OpenSecrets(sctx, signer, secEv, u.Pubkey, ns)
	if err != nil {
		return fmt.Errorf("secrets of %s: %w", o.User, err)
	}
	if secrets.HomeKey == "" {
		return fmt.Errorf("the secrets of %s hold no home key: create the home first", o.User)
	}
	hk, err := hex.DecodeString(secrets.HomeKey)
	secrets.HomeKey = ""
	if err != nil {
		return err
	}
	keys, err := tree.DeriveKeys(hk)
	clear(hk)
	if err != nil {
		return err
	}
	defer keys.Wipe()
	var base *nostr.Event
	if ev, err := ec.Get(expect(events.KindManifest)); err == nil {
		base = ev
	}

	var servers []blossom.Server
	seen := map[string]bool{}
	add := func(url, auth string) error {
		if seen[url] {
			return nil
		}
		seen[url] = true
		enc, err := blossom.ParseEncoding(auth)
		if err != nil {
			return err
		}
		servers = append(servers, blossom.Server{URL: url, Encoding: enc})
		return nil
	}
	for _, s := range settings.Blossom {
		if err := add(s.URL, s.Auth); err != nil {
			return err
		}
	}
	if slEv, err := ec.Get(events.Expect{Kind: events.KindServerList, Author: u.Pubkey}); err == nil {
		if urls, err := events.OpenServerList(slEv, u.Pubkey); err == nil {
			for _, url := range urls {
				add(url, "")
			}
		}
	}
	for _, url := range cfg.DefaultBlossom {
		add(url, "")
	}
	if len(servers) == 0 {
		return fmt.Errorf("%s has no Blossom server (settings, server list or default_blossom)", o.User)
	}
	bc, err := blossom.New(signer, servers)
	if err != nil {
		return err
	}
	read := events.MergeURLs(settings.Relays.Read, cfg.BootstrapRelays)
	write := settings.Relays.Write
	if rlEv, err := ec.Get(events.Expect{Kind: events.KindRelayList, Author: u.Pubkey}); err == nil {
		if rl, err := events.OpenRelayList(rlEv, u.Pubkey); err == nil {
			read = events.MergeURLs(read, rl.Read)
			write = events.MergeURLs(write, rl.Write)
		}
	}
	if len(write) == 0 {
		return fmt.Errorf("%s has no write relay in the settings: manifests could not be published", o.User)
	}

	dir := filepath.Join(cfg.Cache.Dir, strconv.FormatUint(uint64(u.UID), 10))
	// A previous nostrfs of this user may still be draining (its session ended, or its
	// daemon died and a new one started this session): its cache is locked until it exits,
	// which its drain bound guarantees. Wait for it within the mount bound.
	cache, err := OpenCache(dir, bc, CacheOptions{Quota: int64(cfg.Cache.Quota), Logf: logf,
		WaitLock: cfg.Session.MountTimeout.Duration,
		Waiting: func() {
			logf("nostrfs: the cache of %s is held by another nostrfs (still draining?); waiting", o.User)
			notify("STATUS=waiting for the previous nostrfs of " + o.User + " to let go of the cache")
		}})
	if err != nil {
		return err
	}
	defer cache.Close()

	host, _ := os.Hostname()
	fsys, err := homefs.New(ctx, homefs.Options{
		Keys: keys, Store: bc, Cache: cache.Store, Queue: cache.Queue, StateDir: cache.StateDir,
		Signer: signer, Author: u.Pubkey, Namespace: ns, Machine: host,
		Remote: &homefs.RelayRemote{Read: read, Write: write, Author: u.Pubkey, Namespace: ns},
		Base:   base,
		OnPublished: func(ev *nostr.Event) {
			if _, err := ec.Put(ev, expect(events.KindManifest)); err != nil {
				logf("nostrfs: caching the published manifest: %v", err)
			}
		},
		UID: u.UID, GID: u.GID,
		FlushTimeout: cfg.Session.FlushTimeout.Duration,
		Status:       func(line string) { notify("STATUS=" + line) },
		Logf:         logf,
	})
	if err != nil {
		return err
	}
	defer fsys.Close()
	if _, err := fsys.Mount(o.MountPoint); err != nil {
		return err
	}
	notify("READY=1\nSTATUS=mounted " + o.MountPoint)
	logf("nostrfs: %s's home mounted on %s (cache %s)", o.User, o.MountPoint, dir)

	<-o.Stop
	notify("STOPPING=1")
	logf("nostrfs: stopping: unmounting %s", o.MountPoint)
	unmount(fsys, o.MountPoint, logf)
	// Three quarters of the flush bound: the daemon kills us when all of it has passed, and
	// we would rather say what stays queued and exit cleanly.
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.Session.FlushTimeout.Duration*3/4)
	defer dcancel()
	if err := fsys.Drain(dctx); err != nil {
		// Nothing is lost: the working copies, state.db and the queue stay in the cache and
		// the next mount (here) resumes them.
		logf("nostrfs: not everything is published yet (%v); it stays queued in %s", err, dir)
		return nil
	}
	logf("nostrfs: everything is published")
	return nil
}

// unmount unmounts, retrying while busy, then detaches (the kernel finishes when the last
// user lets go; the server's requests still reach us until then).
func unmount(fsys *homefs.FS, mnt string, logf func(string, ...any)) {
	done := make(chan error, 1)
	go func() { done <- fsys.Unmount() }()
	select {
	case err := <-done:
		if err == nil {
			return
		}
		logf("nostrfs: unmount %s: %v; detaching", mnt, err)
	case <-time.After(5 * time.Second):
		logf("nostrfs: unmount %s is taking long; detaching", mnt)
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		logf("nostrfs: detach %s: %v", mnt, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
