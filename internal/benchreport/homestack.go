package benchreport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// homeStack is the dev stack (relay and Blossom server, in the harness process) and one
// home's keys: what the mount benchmarks mount with the homefsd helper.
type homeStack struct {
	st      *devstack.Stack
	log     *syncbuf.Buffer
	sk, pk  string
	homeKey string // hex
	bin     string // build/nostr-homed-bench-homefs
}

// newHomeStack starts the dev stack with its data under dir and makes a new identity and
// home key. Close it.
func newHomeStack(e *Env, dir string) (*homeStack, error) {
	bin, err := e.Artifact("nostr-homed-bench-homefs")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("/dev/fuse is not available: %w", err)
	}
	h := &homeStack{log: &syncbuf.Buffer{Limit: 1 << 20}, bin: bin}
	h.st, err = devstack.Start(e.Ctx, devstack.Options{Listen: "127.0.0.1:0", DataDir: dir,
		Logf: func(f string, a ...any) { fmt.Fprintf(h.log, f+"\n", a...) }})
	if err != nil {
		return nil, err
	}
	h.sk = nostr.GeneratePrivateKey()
	h.pk, _ = nostr.GetPublicKey(h.sk)
	var k [32]byte
	rand.Read(k[:])
	h.homeKey = hex.EncodeToString(k[:])
	return h, nil
}

func (h *homeStack) Close() error { return h.st.Close() }

// homefsMount is a homefsd child serving a home on mnt.
type homefsMount struct {
	*child
	mnt         string
	passthrough string // homefsd's "passthrough: ..." line, without the prefix
	mountTime   time.Duration
	stopped     bool // stop ran: it is not run twice (another homefsd may be on mnt by then)
	stopErr     error
}

// mount starts homefsd on mnt with its cache in dir (created if missing; an empty one is a
// cold cache) and waits until it is ready. The base is the newest manifest on the relay.
func (h *homeStack) mount(dir, mnt string, extra ...string) (*homefsMount, error) {
	return h.mountAs(h.sk, h.homeKey, dir, mnt, extra...)
}

func (h *homeStack) mountAs(sk, homeKey, dir, mnt string, extra ...string) (*homefsMount, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"--mount", mnt, "--dir", dir, "--relay", h.st.RelayURL(), "--blossom", h.st.BlossomURL()}, extra...)
	t0 := time.Now()
	c, err := startChild("homefsd "+filepath.Base(mnt), h.bin, args,
		[]string{"BENCH_HOMEFS_SK=" + sk, "BENCH_HOMEFS_HOME_KEY=" + homeKey})
	if err != nil {
		return nil, err
	}
	m := &homefsMount{child: c, mnt: mnt}
	l, err := c.waitLine("passthrough: ", time.Minute)
	if err == nil {
		m.passthrough = strings.TrimPrefix(l, "passthrough: ")
		_, err = c.waitLine("ready", time.Minute)
	}
	if err != nil {
		c.stop(30 * time.Second)
		detachMount(mnt)
		return nil, err
	}
	m.mountTime = time.Since(t0)
	return m, nil
}

// drain has homefsd seal, upload and publish everything (SIGUSR1) and waits for it.
func (m *homefsMount) drain() error {
	if err := m.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	_, err := m.waitLine("drained", 20*time.Minute)
	return err
}

// stop has homefsd unmount, drain and exit; a mount left behind is detached. Only the first
// call does anything.
func (m *homefsMount) stop() error {
	if m.stopped {
		return m.stopErr
	}
	m.stopped = true
	m.stopErr = m.child.stop(20 * time.Minute)
	if derr := detachMount(m.mnt); derr != nil && m.stopErr == nil {
		m.stopErr = derr
	}
	return m.stopErr
}

// loopbackMount is go-fuse's example loopback file system (a peer) serving orig on mnt.
type loopbackMount struct {
	*child
	mnt string
}

func startLoopback(e *Env, orig, mnt string) (*loopbackMount, error) {
	bin, err := e.Artifact("go-fuse-loopback")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{orig, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c, err := startChild("go-fuse loopback", bin, []string{"-directmountstrict", mnt, orig}, nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.waitLine("Mounted!", 30*time.Second); err != nil {
		c.stop(10 * time.Second)
		detachMount(mnt)
		return nil, err
	}
	return &loopbackMount{child: c, mnt: mnt}, nil
}

func (l *loopbackMount) stop() error {
	err := l.child.stop(30 * time.Second)
	if derr := detachMount(l.mnt); derr != nil && err == nil {
		err = derr
	}
	return err
}

// fsType is the file system type of the mount that holds dir (findmnt), "unknown" if it
// cannot be told.
func fsType(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, "findmnt", "-n", "-o", "FSTYPE", "-T", dir).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// publishTree writes a home of files small files (size bytes each, distinct contents) in
// directories of perDir, dNNNN/fNNNNN, directly in the home format (package tree: the
// listings and inline contents homefs writes, the listings' blobs uploaded to the dev stack's
// Blossom server), seals its root pointer and publishes it as the home's first manifest. It
// is what a homefs mount would publish for the same tree, without a FUSE round trip per file.
func (h *homeStack) publishTree(ctx context.Context, files, perDir, size int) error {
	hk, err := hex.DecodeString(h.homeKey)
	if err != nil {
		return err
	}
	keys, err := tree.DeriveKeys(hk)
	if err != nil {
		return err
	}
	defer keys.Wipe()
	signer, err := keyer.NewPlainKeySigner(h.sk)
	if err != nil {
		return err
	}
	bc, err := blossom.New(signer, []blossom.Server{{URL: h.st.BlossomURL()}})
	if err != nil {
		return err
	}
	put := tree.StorePut(ctx, bc)
	buf := make([]byte, size)
	fillRandom(buf, 7)
	mtime := time.Now().UnixNano()
	var dirs, entries []tree.Entry
	flush := func(i int) error {
		c, err := keys.WriteListing(tree.Listing{V: tree.ListingVersion, Entries: entries}, put)
		if err != nil {
			return err
		}
		dirs = append(dirs, tree.Entry{Name: fmt.Sprintf("d%04d", i/perDir), Type: tree.TypeDir, Mode: 0o755, Mtime: mtime, Content: &c})
		entries = nil
		return nil
	}
	for i := range files {
		if size >= 4 {
			buf[0], buf[1], buf[2], buf[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		}
		c, err := keys.Split(bytes.NewReader(buf), put)
		if err != nil {
			return err
		}
		entries = append(entries, tree.Entry{Name: fmt.Sprintf("f%05d", i%perDir), Type: tree.TypeFile, Mode: 0o644, Mtime: mtime, Content: &c})
		if (i+1)%perDir == 0 || i == files-1 {
			if err := flush(i); err != nil {
				return err
			}
		}
	}
	root, err := keys.WriteListing(tree.Listing{V: tree.ListingVersion, Entries: dirs}, put)
	if err != nil {
		return err
	}
	blob, err := keys.SealRoot(root)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(blob)
	hash := hex.EncodeToString(sum[:])
	if _, err := bc.Put(ctx, hash, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		return err
	}
	ev, err := events.NewManifestEvent(ctx, signer, "personal",
		events.Manifest{Root: events.BlobRef{Hash: hash, Size: int64(len(blob))}, Machine: "bench"}, nil, 0, time.Now())
	if err != nil {
		return err
	}
	_, err = relayio.Publish(ctx, []string{h.st.RelayURL()}, ev, 10*time.Second)
	return err
}
