package homefs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// Defaults of Options.
const (
	DefaultTimeout      = time.Hour
	DefaultFetchTimeout = 2 * time.Minute
	DefaultRootMode     = 0o700
)

// Options configure an FS.
type Options struct {
	// Keys are the home's keys (tree.DeriveKeys). Required.
	Keys *tree.Keys
	// Root is the root directory's content reference (its listing). It is checked in New.
	Root tree.Content
	// Fetch fetches chunk blobs that the cache does not have (e.g. tree.StoreFetcher over a
	// blossom.Client). Required.
	Fetch tree.Fetcher
	// Cache keeps fetched chunk blobs, encrypted, by blob hash (see the package doc). Required.
	Cache *cas.Store
	// UID and GID own every inode.
	UID, GID uint32
	// RootMode is the root directory's permission bits; zero means DefaultRootMode.
	RootMode uint32
	// RootMtime is the root directory's mtime; zero means the Unix epoch.
	RootMtime time.Time
	// EntryTimeout and AttrTimeout are the kernel's dentry (also negative) and attribute cache
	// timeouts; zero means DefaultTimeout.
	EntryTimeout, AttrTimeout time.Duration
	// FetchTimeout bounds one fetch of a blob; zero means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Logf receives errors turned into EIO and other notes. Nil means log.Printf.
	Logf func(format string, args ...any)
	// Debug turns on go-fuse's request log.
	Debug bool
}

// FS is a read-only view of one home tree. Mount it once.
type FS struct {
	opts  Options
	fetch *fetcher
	root  *dirNode

	mu     sync.Mutex
	server *fuse.Server
}

// New checks opts and returns an FS. Nothing is fetched before the mount is used.
func New(opts Options) (*FS, error) {
	if opts.Keys == nil || opts.Fetch == nil || opts.Cache == nil {
		return nil, errors.New("homefs: Keys, Fetch and Cache are required")
	}
	if err := opts.Root.Check(); err != nil {
		return nil, fmt.Errorf("homefs: root: %w", err)
	}
	if opts.Root.Size > tree.MaxListingSize {
		return nil, fmt.Errorf("homefs: root listing of %d bytes is over %d", opts.Root.Size, tree.MaxListingSize)
	}
	if opts.RootMode == 0 {
		opts.RootMode = DefaultRootMode
	}
	opts.RootMode &= tree.MaxMode
	if opts.EntryTimeout <= 0 {
		opts.EntryTimeout = DefaultTimeout
	}
	if opts.AttrTimeout <= 0 {
		opts.AttrTimeout = DefaultTimeout
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	f := &FS{opts: opts}
	f.fetch = &fetcher{cache: opts.Cache, up: opts.Fetch, logf: opts.Logf, timeout: opts.FetchTimeout, inflight: map[string]*call{}}
	root := opts.Root
	var mtime int64
	if !opts.RootMtime.IsZero() {
		mtime = opts.RootMtime.UnixNano()
	}
	f.root = &dirNode{base: base{fs: f, path: "/", entry: tree.Entry{
		Name: "/", Type: tree.TypeDir, Mode: opts.RootMode, Mtime: mtime, Content: &root}}}
	return f, nil
}

// Mount mounts the FS on dir and returns the running server once the kernel has
// acknowledged the mount (WaitMount). As root it mounts directly (no fusermount). The mount
// is allow_other with default_permissions: the kernel enforces the modes and owner.
func (f *FS) Mount(dir string) (*fuse.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.server != nil {
		return nil, errors.New("homefs: already mounted")
	}
	entry, attr := f.opts.EntryTimeout, f.opts.AttrTimeout
	srv, err := fs.Mount(dir, f.root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMountStrict: os.Geteuid() == 0,
			AllowOther:        true,
			Options:           []string{"default_permissions"},
			FsName:            "nostrfs",
			Name:              "nostrfs",
			Debug:             f.opts.Debug,
		},
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &entry,
		UID:             f.opts.UID,
		GID:             f.opts.GID,
	})
	if err != nil {
		return nil, fmt.Errorf("homefs: mount %s: %w", dir, err)
	}
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("homefs: mount %s: %w", dir, err)
	}
	f.server = srv
	return srv, nil
}

// Unmount unmounts the FS (it fails with EBUSY while files are open on it) and waits for
// the server to stop.
func (f *FS) Unmount() error {
	f.mu.Lock()
	srv := f.server
	f.mu.Unlock()
	if srv == nil {
		return errors.New("homefs: not mounted")
	}
	if err := srv.Unmount(); err != nil {
		return err
	}
	srv.Wait()
	f.mu.Lock()
	f.server = nil
	f.mu.Unlock()
	return nil
}

// FetchStats reports how many blobs were fetched from Options.Fetch and how many were served
// from the cache since New.
func (f *FS) FetchStats() (fetched, cached int64) {
	return f.fetch.fetched.Load(), f.fetch.cached.Load()
}
