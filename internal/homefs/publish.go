package homefs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// ErrConflict is wrapped by publication errors when another machine published a manifest
// that the local tree is not based on: the local changes are kept, not published.
var ErrConflict = errors.New("conflict")

const metaBaseRoot = "base_root" // JSON tree.Content of the base manifest's root

// publisher publishes the local tree as a manifest: debounced after changes, retried with
// backoff while offline, and it polls the relays for manifests from other machines.
type publisher struct {
	f *FS

	work sync.Mutex // serialises publishOnce and poll: one publication at a time

	mu      sync.Mutex // guards the fields below
	timer   *time.Timer
	started bool
	stopped bool
	backoff time.Duration
	status  Status
	stopC   chan struct{}
	done    chan struct{}
}

// Status is the publisher's state, for status displays.
type Status struct {
	State      string    `json:"state"` // "clean", "pending", "offline", "conflict", "error"
	Message    string    `json:"message,omitempty"`
	Generation uint64    `json:"generation,omitempty"`
	Manifest   string    `json:"manifest,omitempty"` // the base manifest's event id
	Published  time.Time `json:"published,omitzero"` // when this FS last published
	Uploads    int       `json:"uploads"`            // blobs no server has yet
}

func newPublisher(f *FS) *publisher {
	return &publisher{f: f, stopC: make(chan struct{}), done: make(chan struct{})}
}

// start runs the loop; a publication is due at once if the state holds unpublished work.
func (p *publisher) start() {
	p.mu.Lock()
	if p.started || p.stopped {
		p.mu.Unlock()
		return
	}
	p.started = true
	p.timer = time.NewTimer(0)
	p.mu.Unlock()
	go p.loop()
}

func (p *publisher) stop() {
	p.mu.Lock()
	started := p.started && !p.stopped
	p.stopped = true
	p.mu.Unlock()
	if started {
		close(p.stopC)
		<-p.done
	}
}

// changed is called after every change of the tree: the publication waits for Debounce of
// quiet, so a burst of writes costs one signature.
func (p *publisher) changed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil && !p.stopped {
		p.timer.Reset(p.f.opts.Debounce)
	}
}

func (p *publisher) loop() {
	defer close(p.done)
	var poll <-chan time.Time
	if p.f.opts.Poll > 0 {
		t := time.NewTicker(p.f.opts.Poll)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-p.stopC:
			return
		case <-p.timer.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.f.opts.FlushTimeout)
			err := p.publishOnce(ctx)
			cancel()
			p.mu.Lock()
			if err != nil && !errors.Is(err, ErrConflict) {
				// Offline or failing: try again later, doubling up to 5 minutes.
				p.backoff = min(max(2*p.backoff, time.Second), 5*time.Minute)
				p.timer.Reset(p.backoff)
			} else {
				p.backoff = 0
			}
			p.mu.Unlock()
		case <-poll:
			ctx, cancel := context.WithTimeout(context.Background(), p.f.opts.FlushTimeout)
			if err := p.poll(ctx); err != nil {
				p.f.opts.Logf("homefs: polling for manifests: %v", err)
			}
			cancel()
		}
	}
}

func (p *publisher) setStatus(s Status) {
	s.Uploads = p.f.opts.Queue.Pending()
	p.mu.Lock()
	if s.Published.IsZero() {
		s.Published = p.status.Published
	}
	p.status = s
	p.mu.Unlock()
	if p.f.opts.Status != nil {
		line := s.State
		if s.Generation > 0 {
			line += fmt.Sprintf(", generation %d", s.Generation)
		}
		if s.Uploads > 0 {
			line += fmt.Sprintf(", %d blobs waiting for a server", s.Uploads)
		}
		if s.Message != "" {
			line += ": " + s.Message
		}
		p.f.opts.Status(line)
	}
}

// Status returns the publisher's state.
func (f *FS) Status() Status {
	f.pub.mu.Lock()
	defer f.pub.mu.Unlock()
	s := f.pub.status
	s.Uploads = f.opts.Queue.Pending()
	return s
}

// publishNow publishes at once (Drain).
func (p *publisher) publishNow(ctx context.Context) error { return p.publishOnce(ctx) }

// publishOnce builds the listings of every changed directory and a root pointer, waits for
// the upload queue, checks that the newest manifest on the relays is still the base, and
// publishes. See "Publishing" in the package doc.
func (p *publisher) publishOnce(ctx context.Context) error {
	p.work.Lock()
	defer p.work.Unlock()
	f := p.f
	if err := f.sealAll(false); err != nil {
		p.setStatus(Status{State: "error", Message: err.Error()})
		return err
	}

	f.mu.Lock()
	pend, base, gen, conflict, err := f.build()
	f.mu.Unlock()
	if err != nil {
		p.setStatus(Status{State: "error", Message: err.Error()})
		return err
	}
	baseID := ""
	if base != nil {
		baseID = base.ID
	}
	if pend == nil {
		p.setStatus(Status{State: "clean", Generation: gen, Manifest: baseID})
		return nil
	}
	if conflict != "" {
		p.setStatus(Status{State: "conflict", Message: conflict, Generation: gen, Manifest: baseID})
		return fmt.Errorf("homefs: %w: %s", ErrConflict, conflict)
	}
	p.setStatus(Status{State: "pending", Generation: gen, Manifest: baseID})

	// Nothing is published that is not on a server.
	if err := f.opts.Queue.Flush(ctx); err != nil {
		p.setStatus(Status{State: "offline", Message: "uploads: " + err.Error(), Generation: gen, Manifest: baseID})
		return fmt.Errorf("homefs: uploads: %w", err)
	}
	newest, err := f.opts.Remote.Newest(ctx)
	if err != nil {
		p.setStatus(Status{State: "offline", Message: "relays: " + err.Error(), Generation: gen, Manifest: baseID})
		return fmt.Errorf("homefs: relays: %w", err)
	}
	if newest != nil && newest.ID != baseID && (base == nil || newest.CreatedAt >= base.CreatedAt) {
		// Someone published since our base: another machine, or this one before a crash
		// kept it from recording the publication.
		if _, err := f.considerRemote(ctx, newest, base); err != nil {
			return err
		}
		f.mu.Lock()
		b2, _, _ := f.baseEvent()
		conflict, _ = f.st.getMeta(metaConflict)
		f.mu.Unlock()
		if conflict != "" {
			p.setStatus(Status{State: "conflict", Message: conflict, Generation: gen, Manifest: baseID})
			return fmt.Errorf("homefs: %w: %s", ErrConflict, conflict)
		}
		if b2 != nil && b2.ID == newest.ID {
			p.setStatus(Status{State: "clean", Manifest: newest.ID})
			return nil
		}
	}
	m := events.Manifest{Root: events.BlobRef{Hash: pend.Hash, Size: pend.Size}, Machine: f.opts.Machine}
	ev, err := events.NewManifestEvent(ctx, f.opts.Signer, f.opts.Namespace, m, base, gen, time.Now())
	if err != nil {
		p.setStatus(Status{State: "error", Message: "signing: " + err.Error(), Generation: gen, Manifest: baseID})
		return fmt.Errorf("homefs: signing the manifest: %w", err)
	}
	if err := f.opts.Remote.Publish(ctx, ev); err != nil {
		p.setStatus(Status{State: "offline", Message: "publishing: " + err.Error(), Generation: gen, Manifest: baseID})
		return fmt.Errorf("homefs: publishing: %w", err)
	}
	newGen := gen + 1
	f.mu.Lock()
	err = f.recordPublished(ev, newGen, &pend.Content)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if f.opts.OnPublished != nil {
		f.opts.OnPublished(ev)
	}
	p.setStatus(Status{State: "clean", Generation: newGen, Manifest: ev.ID, Published: time.Now()})
	f.opts.Logf("homefs: published manifest %s (generation %d, root %s)", ev.ID, newGen, pend.Hash)
	return nil
}

// build writes the listings of the dirty directories and, if the root changed since the
// base, a new root pointer blob (the pending root). It returns the pending root (nil: the
// local tree is the base's), the base and its generation, and the recorded conflict. mu held.
func (f *FS) build() (*pendingRoot, *nostr.Event, uint64, string, error) {
	base, gen, err := f.baseEvent()
	if err != nil {
		return nil, nil, 0, "", err
	}
	conflict, err := f.st.getMeta(metaConflict)
	if err != nil {
		return nil, nil, 0, "", err
	}
	pend, err := f.pending()
	if err != nil {
		return nil, nil, 0, "", err
	}
	root, err := f.st.attr(rootIno)
	if err != nil {
		return nil, nil, 0, "", err
	}
	if !root.dirty {
		return pend, base, gen, conflict, nil
	}
	c, err := f.buildDir(rootIno)
	if err != nil {
		return nil, nil, 0, "", fmt.Errorf("homefs: building listings: %w", err)
	}
	if br, _ := f.st.getMeta(metaBaseRoot); br != "" && base != nil {
		if js, _ := json.Marshal(c); string(js) == br {
			// Changed and changed back: the base's tree. Nothing to publish.
			return nil, base, gen, conflict, setMeta(f.st.q(), metaPending, "")
		}
	}
	blob, err := f.opts.Keys.SealRoot(c)
	if err != nil {
		return nil, nil, 0, "", err
	}
	sum := sha256.Sum256(blob)
	hash := hex.EncodeToString(sum[:])
	if err := f.putBlob(blob, tree.ChunkRef{Hash: hash}); err != nil {
		return nil, nil, 0, "", fmt.Errorf("homefs: storing the root pointer: %w", err)
	}
	pend = &pendingRoot{Hash: hash, Size: int64(len(blob)), Content: c}
	js, err := json.Marshal(pend)
	if err != nil {
		return nil, nil, 0, "", err
	}
	return pend, base, gen, conflict, setMeta(f.st.q(), metaPending, string(js))
}

// buildDir writes the listing of directory ino (and of its dirty subdirectories first) and
// records it; mu held.
func (f *FS) buildDir(ino int64) (tree.Content, error) {
	kids, err := f.st.children(ino)
	if err != nil {
		return tree.Content{}, err
	}
	entries := make([]tree.Entry, 0, len(kids))
	for _, k := range kids {
		e := tree.Entry{Name: k.name, Type: treeType(k.typ), Mode: k.mode & tree.MaxMode,
			Mtime: min(max(k.mtime, 0), tree.MaxMtime), Xattrs: k.xattrs}
		switch k.typ {
		case typeDir:
			if k.dirty || k.content == nil {
				c, err := f.buildDir(k.ino)
				if err != nil {
					return tree.Content{}, err
				}
				e.Content = &c
			} else {
				e.Content = k.content
			}
		case typeSymlink:
			e.Target = k.target
		default:
			// A file still open for writing goes in with its last sealed content.
			e.Content = k.content
			if e.Content == nil {
				e.Content = &tree.Content{}
			}
		}
		entries = append(entries, e)
	}
	c, err := f.opts.Keys.WriteListing(tree.Listing{V: tree.ListingVersion, Entries: entries}, f.putBlob)
	if err != nil {
		return tree.Content{}, err
	}
	js, err := json.Marshal(c)
	if err != nil {
		return tree.Content{}, err
	}
	if _, err := f.st.q().Exec(`UPDATE nodes SET content = ?, size = ?, dirty = 0 WHERE ino = ?`, string(js), c.Size, ino); err != nil {
		return tree.Content{}, err
	}
	return c, nil
}

// poll adopts a newer manifest from another machine when the local tree has no changes
// (see considerRemote) and tells the kernel to forget what it cached.
func (p *publisher) poll(ctx context.Context) error {
	p.work.Lock()
	defer p.work.Unlock()
	f := p.f
	newest, err := f.opts.Remote.Newest(ctx)
	if err != nil || newest == nil {
		return err
	}
	f.mu.Lock()
	base, _, err := f.baseEvent()
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if base != nil && (newest.ID == base.ID || newest.CreatedAt < base.CreatedAt) {
		return nil
	}
	adopted, err := f.considerRemote(ctx, newest, base)
	if err != nil {
		return err
	}
	if adopted {
		f.invalidate(ctx)
		f.mu.Lock()
		_, gen, _ := f.baseEvent()
		f.mu.Unlock()
		p.setStatus(Status{State: "clean", Generation: gen, Manifest: newest.ID, Message: "adopted a manifest from another machine"})
	}
	return nil
}

// invalidate makes the kernel drop its dentries under the root (those of the old tree, and
// negative ones for names the new tree has) and the root's attributes and pages, after the
// tree was replaced. A directory's dentry going takes its subtree's with it. No lock is
// held: the kernel may call back.
func (f *FS) invalidate(ctx context.Context) {
	f.smu.Lock()
	mounted := f.server != nil
	f.smu.Unlock()
	if !mounted {
		return
	}
	root := f.root.EmbeddedInode()
	done := map[string]bool{}
	for name := range root.Children() {
		root.NotifyEntry(name)
		done[name] = true
	}
	if _, err := f.loadDir(ctx, rootIno); err == nil {
		f.mu.Lock()
		rows, err := f.st.children(rootIno)
		f.mu.Unlock()
		if err == nil {
			for _, r := range rows {
				if !done[r.name] {
					root.NotifyEntry(r.name)
				}
			}
		}
	}
	root.NotifyContent(0, 0)
}
