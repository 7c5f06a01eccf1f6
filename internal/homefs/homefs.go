package homefs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/nbd-wtf/go-nostr"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/tree"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

// Defaults of Options.
const (
	DefaultTimeout      = time.Hour
	DefaultFetchTimeout = 2 * time.Minute
	DefaultRootMode     = 0o700
	DefaultDebounce     = 2 * time.Second
	DefaultPoll         = time.Minute
	DefaultFlushTimeout = 30 * time.Second
)

// Remote is where manifests live: the user's relays. RelayRemote is the real one.
type Remote interface {
	// Newest returns the newest valid manifest event of the home on the relays, nil if
	// the relays that answered have none, and an error if no relay answered.
	Newest(ctx context.Context) (*nostr.Event, error)
	// Publish sends ev to the write relays; nil if at least one accepted it.
	Publish(ctx context.Context, ev *nostr.Event) error
}

// Options configure an FS.
type Options struct {
	// Keys are the home's keys (tree.DeriveKeys). Required.
	Keys *tree.Keys
	// Store fetches blobs the cache does not have (a *blossom.Client). Required.
	Store blobstore.Store
	// Fetch, if set, replaces tree.StoreFetcher{Store} for chunk blobs (tests count fetches).
	Fetch tree.Fetcher
	// Cache keeps blobs, encrypted, by hash (see the package doc). Required.
	Cache *cas.Store
	// Queue uploads what this mount writes. Required; it must use Cache.
	Queue *uploadq.Queue
	// StateDir holds state.db and data/ (the working copies). Required; created 0700.
	StateDir string
	// Signer decrypts and signs manifests: the user's session signer (nostrfs never holds
	// the user's key). Required.
	Signer nostr.Keyer
	// Author is the home owner's hex public key; Namespace the homes' namespace ("personal").
	Author, Namespace string
	// Machine names this machine in the manifests it publishes.
	Machine string
	// Remote publishes manifests and tells the newest one. Required.
	Remote Remote
	// Base is the newest manifest event known when the FS starts (from the daemon's event
	// cache), nil if the home has none yet. See "Starting" in the package doc.
	Base *nostr.Event
	// OnPublished, if set, is called with every manifest this FS has published (nostrfs
	// stores it in the event cache).
	OnPublished func(ev *nostr.Event)
	// UID and GID own every inode.
	UID, GID uint32
	// RootMode is the permission bits of a new home's root; zero means DefaultRootMode.
	RootMode uint32
	// EntryTimeout and AttrTimeout are the kernel's dentry and attribute cache timeouts;
	// zero means DefaultTimeout.
	EntryTimeout, AttrTimeout time.Duration
	// FetchTimeout bounds one fetch of a blob; zero means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Debounce is how long after the last change a manifest is published; zero means
	// DefaultDebounce.
	Debounce time.Duration
	// Poll is how often the relays are asked for a newer manifest from another machine;
	// zero means DefaultPoll, negative never.
	Poll time.Duration
	// FlushTimeout bounds Drain's final upload and publication; zero means
	// DefaultFlushTimeout.
	FlushTimeout time.Duration
	// NoPassthrough turns FUSE passthrough off (it is used when the kernel grants it).
	NoPassthrough bool
	// Status, if set, receives a one-line state for people on every change (nostrfs sends
	// it as sd_notify STATUS=).
	Status func(line string)
	// Logf receives errors turned into EIO and other notes. Nil means log.Printf.
	Logf func(format string, args ...any)
	// Debug turns on go-fuse's request log.
	Debug bool
}

// FS is one user's home: a FUSE file system over the local state, the cache and the
// upload queue. Mount it once.
type FS struct {
	opts  Options
	fetch *fetcher
	root  *node

	// mu guards st (state.db) and open. Lock order: node.mu, then sealMu, then mu. It is
	// never held across a network call or a call into go-fuse that may wait for the kernel.
	mu   sync.Mutex
	st   *state
	open map[int64]*node // nodes with open file handles, by inode

	// sealMu serialises seals (see files.go): one file is hashed and encrypted at a time.
	sealMu sync.Mutex

	pub *publisher

	plainC      *plainCache   // decrypted chunks of remote files (plain.go)
	prefetchSem chan struct{} // bounds background prefetches

	smu    sync.Mutex // guards server
	server *fuse.Server
}

// New checks opts, opens the state and reconciles it with opts.Base (see the package doc).
// It may fetch the root pointer blob of opts.Base; nothing else is fetched before use.
func New(ctx context.Context, opts Options) (*FS, error) {
	if opts.Keys == nil || opts.Store == nil || opts.Cache == nil || opts.Queue == nil ||
		opts.StateDir == "" || opts.Signer == nil || opts.Remote == nil || opts.Author == "" {
		return nil, errors.New("homefs: Keys, Store, Cache, Queue, StateDir, Signer, Remote and Author are required")
	}
	if opts.Namespace == "" {
		opts.Namespace = "personal"
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
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.Fetch == nil {
		opts.Fetch = tree.StoreFetcher{Store: opts.Store}
	}
	st, err := openState(opts.StateDir)
	if err != nil {
		return nil, err
	}
	f := &FS{opts: opts, st: st, open: map[int64]*node{}, plainC: newPlainCache(), prefetchSem: make(chan struct{}, maxPrefetches)}
	f.fetch = &fetcher{cache: opts.Cache, up: opts.Fetch, store: opts.Store, logf: opts.Logf, timeout: opts.FetchTimeout, inflight: map[string]*call{}}
	f.root = &node{fsys: f, ino: rootIno}
	f.pub = newPublisher(f)
	if err := f.start(ctx); err != nil {
		st.close()
		return nil, err
	}
	return f, nil
}

// meta keys of state.db.
const (
	metaBase     = "base_event"   // JSON of the manifest event the local tree is based on
	metaBaseGen  = "base_gen"     // its generation
	metaPending  = "pending_root" // JSON pendingRoot: built, not yet published
	metaConflict = "conflict"     // why publishing is held back, for status
)

// pendingRoot is a root pointer blob built from the local tree and not yet published.
type pendingRoot struct {
	Hash    string       `json:"hash"`
	Size    int64        `json:"size"`
	Content tree.Content `json:"content"`
}

// baseEvent returns the base manifest event and its generation (nil, 0 if none).
func (f *FS) baseEvent() (*nostr.Event, uint64, error) {
	js, err := f.st.getMeta(metaBase)
	if err != nil || js == "" {
		return nil, 0, err
	}
	var ev nostr.Event
	if err := json.Unmarshal([]byte(js), &ev); err != nil {
		return nil, 0, fmt.Errorf("homefs: state: base event: %w", err)
	}
	g, err := f.st.getMeta(metaBaseGen)
	if err != nil {
		return nil, 0, err
	}
	var gen uint64
	fmt.Sscan(g, &gen)
	return &ev, gen, nil
}

func (f *FS) pending() (*pendingRoot, error) {
	js, err := f.st.getMeta(metaPending)
	if err != nil || js == "" {
		return nil, err
	}
	var p pendingRoot
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		return nil, fmt.Errorf("homefs: state: pending root: %w", err)
	}
	return &p, nil
}

// localChanges says whether the local tree has anything a published manifest lacks.
func (f *FS) localChanges() (bool, error) {
	r, err := f.st.attr(rootIno)
	if err != nil {
		return false, err
	}
	p, err := f.pending()
	return r.dirty || p != nil, err
}

// start reconciles state.db with opts.Base, then seals what a crash left unsealed.
func (f *FS) start(ctx context.Context) error {
	f.mu.Lock()
	_, err := f.st.attr(rootIno)
	empty := errors.Is(err, unix.ENOENT)
	if err != nil && !empty {
		f.mu.Unlock()
		return err
	}
	cur, _, err := f.baseEvent()
	if err != nil {
		f.mu.Unlock()
		return err
	}
	if empty {
		err = f.st.resetTo(nil, f.opts.RootMode, time.Now().UnixNano())
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	// Files written before a crash whose data was never sealed: seal them now, so that
	// "local changes" below is the truth.
	if err := f.sealAll(false); err != nil {
		return err
	}
	b := f.opts.Base
	switch {
	case b == nil:
		return nil
	case cur != nil && cur.ID == b.ID:
		return nil
	case cur != nil && b.CreatedAt < cur.CreatedAt:
		// The cache is behind what this machine published: keep ours.
		return nil
	}
	_, err = f.considerRemote(ctx, b, cur)
	return err
}

// considerRemote handles a manifest ev that is not the local base cur: adopt it if the
// local tree has no changes of its own, record a conflict otherwise (never overwrite
// either side). It is also how a manifest this FS published but could not record (a crash
// between publishing and writing state.db) is recognised: its root is the pending one.
func (f *FS) considerRemote(ctx context.Context, ev, cur *nostr.Event) (adopted bool, err error) {
	m, err := events.OpenManifest(ctx, f.opts.Signer, ev, f.opts.Author, f.opts.Namespace)
	if err != nil {
		return false, fmt.Errorf("homefs: manifest %s: %w", ev.ID, err)
	}
	f.mu.Lock()
	p, err := f.pending()
	if err == nil && p != nil && p.Hash == m.Root.Hash {
		err = f.recordPublished(ev, m.Generation, &p.Content)
		f.mu.Unlock()
		return false, err
	}
	changed, err := f.localChanges()
	f.mu.Unlock()
	if err != nil {
		return false, err
	}
	if changed {
		since := "this home's base " + func() string {
			if cur == nil {
				return "(none: the home was created here)"
			}
			return cur.ID
		}()
		msg := fmt.Sprintf("manifest %s (generation %d, from %q) was published since %s; local changes are kept and not published",
			ev.ID, m.Generation, m.Machine, since)
		f.mu.Lock()
		err := setMeta(f.st.q(), metaConflict, msg)
		f.mu.Unlock()
		f.opts.Logf("homefs: conflict: %s", msg)
		return false, err
	}
	root, err := f.fetchRoot(ctx, m.Root)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	keep := map[int64]bool{}
	for ino := range f.open {
		keep[ino] = true
	}
	if err := f.st.resetTo(&root, f.opts.RootMode, ev.CreatedAt.Time().UnixNano()); err != nil {
		return false, err
	}
	f.st.removeDataFiles(keep)
	return true, f.recordPublished(ev, m.Generation, &root)
}

// recordPublished makes ev, of generation gen and root content root, the base; mu held.
func (f *FS) recordPublished(ev *nostr.Event, gen uint64, root *tree.Content) error {
	js, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	rjs, err := json.Marshal(root)
	if err != nil {
		return err
	}
	return f.st.tx(func(tx *sql.Tx) error {
		for k, v := range map[string]string{metaBase: string(js), metaBaseGen: fmt.Sprint(gen),
			metaBaseRoot: string(rjs), metaConflict: "", metaPending: ""} {
			if err := setMeta(tx, k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// fetchRoot reads the root pointer blob ref (cache first) and opens it.
func (f *FS) fetchRoot(ctx context.Context, ref events.BlobRef) (tree.Content, error) {
	if ref.Size <= 0 || ref.Size > tree.MaxRootSize {
		return tree.Content{}, fmt.Errorf("homefs: root pointer blob of %d bytes (limit %d)", ref.Size, tree.MaxRootSize)
	}
	blob, err := f.fetch.fetchBlob(ctx, ref.Hash, ref.Size)
	if err != nil {
		return tree.Content{}, err
	}
	c, err := f.opts.Keys.OpenRoot(blob, ref.Hash)
	if err != nil {
		return tree.Content{}, fmt.Errorf("homefs: root pointer blob %s: %w", ref.Hash, err)
	}
	return c, nil
}

// Mount mounts the FS on dir, starts the publisher, and returns once the kernel has
// acknowledged the mount (WaitMount). As root it mounts directly (no fusermount). The mount
// is allow_other with default_permissions: the kernel enforces the modes and owner.
func (f *FS) Mount(dir string) (*fuse.Server, error) {
	f.smu.Lock()
	defer f.smu.Unlock()
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
			MaxWrite:          1 << 20,
			// A chunk per readahead: a sequential read of a remote file asks for whole
			// chunks rather than eight 128 KiB pieces of each.
			MaxReadAhead: tree.ChunkSize,
		},
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &entry,
		UID:             f.opts.UID,
		GID:             f.opts.GID,
		RootStableAttr:  &fs.StableAttr{Ino: rootIno},
	})
	if err != nil {
		return nil, fmt.Errorf("homefs: mount %s: %w", dir, err)
	}
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("homefs: mount %s: %w", dir, err)
	}
	f.server = srv
	f.pub.start()
	return srv, nil
}

// Unmount unmounts the FS (it fails with EBUSY while files are open on it) and waits for
// the server to stop. The publisher keeps running: call Drain, then Close.
func (f *FS) Unmount() error {
	f.smu.Lock()
	srv := f.server
	f.smu.Unlock()
	if srv == nil {
		return errors.New("homefs: not mounted")
	}
	if err := srv.Unmount(); err != nil {
		return err
	}
	srv.Wait()
	f.smu.Lock()
	f.server = nil
	f.smu.Unlock()
	return nil
}

// Drain publishes what is not published yet (seals, uploads, the manifest), bounded by ctx.
// It returns nil when the newest local tree is on a server and in a published manifest.
func (f *FS) Drain(ctx context.Context) error {
	if err := f.sealAll(true); err != nil {
		return err
	}
	return f.pub.publishNow(ctx)
}

// Close stops the publisher and closes the state. The cache and the queue belong to the
// caller.
func (f *FS) Close() error {
	f.pub.stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.close()
}

// FetchStats reports how many blobs were fetched from upstream and how many were served
// from the cache since New.
func (f *FS) FetchStats() (fetched, cached int64) {
	return f.fetch.fetched.Load(), f.fetch.cached.Load()
}
