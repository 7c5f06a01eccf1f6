package homefs

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nostr-homed/nostr-homed/internal/tree"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

// Files. A file is either remote (its content is a tree.Content whose chunks are fetched
// and decrypted on read) or local (DIR/data/INO holds its whole plaintext, the working
// copy). Opening for writing, truncating or setting the mtime makes a file local
// (materialize), once; a new file is local from the start. A local file's size and times are
// its data file's. The content of a local file is sealed (split, encrypted, stored in the
// cas and queued for upload) on flush, fsync and the last release of a writer; the row's
// dirty flag says the working copy may be newer than the sealed content.

var (
	_ = (fs.FileReader)((*dataHandle)(nil))
	_ = (fs.FileWriter)((*dataHandle)(nil))
	_ = (fs.FileFlusher)((*dataHandle)(nil))
	_ = (fs.FileFsyncer)((*dataHandle)(nil))
	_ = (fs.FileReleaser)((*dataHandle)(nil))
	_ = (fs.FilePassthroughFder)((*ptHandle)(nil))
	_ = (fs.FileReader)((*chunkHandle)(nil))
	_ = (fs.FileReleaser)((*chunkHandle)(nil))
)

// dataHandle is an open local file.
type dataHandle struct {
	n     *node
	f     *os.File
	write bool
	pt    bool
}

// ptHandle is a dataHandle the kernel serves by passthrough: READ and WRITE never reach
// us; FLUSH, FSYNC and RELEASE still do.
type ptHandle struct{ *dataHandle }

// PassthroughFd implements fs.FilePassthroughFder.
func (h *ptHandle) PassthroughFd() (int, bool) { return int(h.f.Fd()), true }

// chunkHandle is a remote file open for reading. If the file becomes local while it is
// open (another process opened it for writing), reads go to the working copy.
type chunkHandle struct {
	n       *node
	content tree.Content
	mu      sync.Mutex
	local   *os.File
}

// Open implements fs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return n.open(ctx, flags)
}

func (f *FS) passthrough() bool { return !f.opts.NoPassthrough && os.Geteuid() == 0 }

func (n *node) open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f := n.fsys
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	n.mu.Lock()
	defer n.mu.Unlock()
	r, err := f.get(n.ino)
	if err != nil {
		return nil, 0, f.errno("open", n.ino, err)
	}
	if r.typ != typeFile {
		return nil, 0, syscall.EISDIR
	}
	if write && !r.local {
		if e := n.materializeLocked(ctx, r, flags&syscall.O_TRUNC != 0); e != 0 {
			return nil, 0, e
		}
		r.local = true
	}
	f.mu.Lock()
	f.open[n.ino] = n
	f.mu.Unlock()
	if !r.local {
		n.rdOpens++
		c := tree.Content{}
		if r.content != nil {
			c = *r.content
		}
		// The content of a remote file never changes under this inode: keep the pages.
		return &chunkHandle{n: n, content: c}, fuse.FOPEN_KEEP_CACHE, 0
	}
	mode := os.O_RDONLY
	if write {
		mode = os.O_RDWR
		if err := f.setDirty(n.ino); err != nil {
			return nil, 0, f.errno("open", n.ino, err)
		}
	}
	fd, err := os.OpenFile(f.st.dataPath(n.ino), mode, 0)
	if err != nil {
		return nil, 0, f.errno("open", n.ino, err)
	}
	h := &dataHandle{n: n, f: fd, write: write}
	// The kernel refuses to mix passthrough and page-cache opens of one inode (ETXTBSY):
	// passthrough only while no page-cache handle is open.
	if f.passthrough() && n.rdOpens == 0 {
		h.pt = true
		n.ptOpens++
		return &ptHandle{h}, 0, 0
	}
	n.rdOpens++
	return h, 0, 0
}

// setDirty records that the working copy of ino may be newer than its sealed content.
func (f *FS) setDirty(ino int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.st.q().Exec(`UPDATE nodes SET dirty = 1 WHERE ino = ? AND dirty = 0`, ino)
	return err
}

// Read implements fs.FileReader.
func (h *dataHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.f.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write implements fs.FileWriter.
func (h *dataHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	n, err := h.f.WriteAt(data, off)
	if err != nil {
		return uint32(n), fs.ToErrno(err)
	}
	return uint32(n), 0
}

// Flush implements fs.FileFlusher: close(2) of a writer seals the file. When this is the
// file's only open handle, the release that follows at once seals it (for good), so the
// flush does not do it twice; the working copy and its dirty flag are on disk meanwhile.
func (h *dataHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		return 0
	}
	h.n.mu.Lock()
	only := h.n.ptOpens+h.n.rdOpens == 1
	h.n.mu.Unlock()
	if only {
		return 0
	}
	return h.n.fsys.errno("flush", h.n.ino, h.n.fsys.seal(h.n.ino, false))
}

// Fsync implements fs.FileFsyncer: the file is sealed, its blobs are in the cas and
// journaled for upload (both fsynced), and the row is committed before it returns.
func (h *dataHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.write {
		return 0
	}
	return h.n.fsys.errno("fsync", h.n.ino, h.n.fsys.seal(h.n.ino, false))
}

// Release implements fs.FileReleaser. The last handle of a file seals it for good (see
// released).
func (h *dataHandle) Release(ctx context.Context) syscall.Errno {
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	h.f.Close()
	if h.pt {
		n.ptOpens--
	} else {
		n.rdOpens--
	}
	n.released()
	return 0
}

// released forgets the node's open state after its last handle, then seals the file for
// good. n.mu is held, so no handle can open meanwhile; the node leaves FS.open first, so
// the seal may mark the row clean (see seal).
func (n *node) released() {
	if n.ptOpens+n.rdOpens > 0 {
		return
	}
	f := n.fsys
	f.mu.Lock()
	delete(f.open, n.ino)
	gone := n.unlinked
	n.unlinked = false
	f.mu.Unlock()
	if gone {
		os.Remove(f.st.dataPath(n.ino))
		return
	}
	if err := f.seal(n.ino, true); err != nil {
		// The working copy stays dirty; the publisher's sealAll tries again.
		f.opts.Logf("homefs: sealing inode %d at its last close: %v", n.ino, err)
	}
}

// Read implements fs.FileReader.
func (h *chunkHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.n.fsys
	if lf := h.localFile(); lf != nil {
		n, err := lf.ReadAt(dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fs.ToErrno(err)
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	if off >= h.content.Size {
		return fuse.ReadResultData(nil), 0
	}
	// Detached from the request: go-fuse cancels it on any signal, even the Go runtime's
	// SIGURG; the fetch may serve other readers too.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.FetchTimeout)
	defer cancel()
	n, err := f.readContent(rctx, h.content, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		f.opts.Logf("homefs: read inode %d at %d: %v", h.n.ino, off, err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// localFile returns the working copy if the file has become local since the open.
func (h *chunkHandle) localFile() *os.File {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.local != nil {
		return h.local
	}
	if !h.n.local.Load() {
		return nil
	}
	fd, err := os.Open(h.n.fsys.st.dataPath(h.n.ino))
	if err != nil {
		return nil
	}
	h.local = fd
	return fd
}

// Release implements fs.FileReleaser.
func (h *chunkHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	if h.local != nil {
		h.local.Close()
	}
	h.mu.Unlock()
	n := h.n
	n.mu.Lock()
	n.rdOpens--
	n.released()
	n.mu.Unlock()
	return 0
}

// materialize makes the file local (see materializeLocked).
func (n *node) materialize(ctx context.Context, truncate bool) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, err := n.fsys.get(n.ino)
	if err != nil {
		return n.fsys.errno("materialize", n.ino, err)
	}
	if r.local {
		return 0
	}
	return n.materializeLocked(ctx, r, truncate)
}

// materializeLocked writes the working copy of remote file r: every chunk fetched,
// verified and decrypted (holes stay holes), or nothing if truncate. n.mu held; the fetches
// run without FS.mu.
func (n *node) materializeLocked(ctx context.Context, r *row, truncate bool) syscall.Errno {
	f := n.fsys
	path := f.st.dataPath(n.ino)
	tmp := path + ".tmp"
	fd, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return f.errno("materialize", n.ino, err)
	}
	fail := func(err error) syscall.Errno {
		fd.Close()
		os.Remove(tmp)
		if errors.Is(err, syscall.ENOSPC) {
			return syscall.ENOSPC
		}
		f.opts.Logf("homefs: materialize inode %d: %v", n.ino, err)
		return syscall.EIO
	}
	var size int64
	if !truncate && r.content != nil && r.content.Size > 0 {
		c := *r.content
		size = c.Size
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.FetchTimeout)
		defer cancel()
		buf := make([]byte, tree.ChunkSize)
		for off, i := int64(0), 0; off < c.Size; off, i = off+tree.ChunkSize, i+1 {
			if len(c.Chunks) > 0 && c.Chunks[i].IsHole() {
				continue
			}
			want := min(tree.ChunkSize, c.Size-off)
			got, err := f.opts.Keys.ReadAt(rctx, f.fetch, c, buf[:want], off)
			if err != nil && !errors.Is(err, io.EOF) {
				return fail(err)
			}
			if _, err := fd.WriteAt(buf[:got], off); err != nil {
				return fail(err)
			}
		}
	}
	if err := fd.Truncate(size); err != nil {
		return fail(err)
	}
	if err := fd.Close(); err != nil {
		return fail(err)
	}
	mt := timeOf(r.mtime)
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	f.mu.Lock()
	_, err = f.st.q().Exec(`UPDATE nodes SET local = 1, dirty = ? WHERE ino = ?`, truncate && r.size > 0, n.ino)
	f.mu.Unlock()
	if err != nil {
		os.Remove(path)
		return f.errno("materialize", n.ino, err)
	}
	n.local.Store(true)
	return 0
}

// truncate sets the size of the file's working copy (making it local first).
func (n *node) truncate(ctx context.Context, size int64) syscall.Errno {
	if size > tree.MaxFileSize {
		return syscall.EFBIG
	}
	if e := n.materialize(ctx, size == 0); e != 0 {
		return e
	}
	if err := n.fsys.setDirty(n.ino); err != nil {
		return n.fsys.errno("truncate", n.ino, err)
	}
	if err := os.Truncate(n.fsys.st.dataPath(n.ino), size); err != nil {
		return fs.ToErrno(err)
	}
	return 0
}

// putBlob stores a blob in the cas and queues it for upload (uploadq pins it until a server
// has it). If the cas evicted it between the two (it was not pinned yet), it is put again.
func (f *FS) putBlob(blob []byte, ref tree.ChunkRef) error {
	for range 3 {
		if _, err := f.opts.Cache.Put(ref.Hash, bytes.NewReader(blob)); err != nil {
			return err
		}
		err := f.opts.Queue.Enqueue(ref.Hash)
		if !errors.Is(err, uploadq.ErrNotInCache) {
			return err
		}
	}
	return fmt.Errorf("homefs: blob %s keeps disappearing from the cache", ref.Hash)
}

// seal splits, encrypts, stores and queues the working copy of ino and records its content
// in the row, marking the directories above dirty. With final, the row is clean afterwards
// (no writer is left). A file that is not local or no longer exists needs nothing.
func (f *FS) seal(ino int64, final bool) error {
	f.sealMu.Lock()
	defer f.sealMu.Unlock()
	r, err := f.attr(ino)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if !r.local || !r.dirty {
		return nil
	}
	fd, err := os.Open(f.st.dataPath(ino))
	if err != nil {
		return err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return err
	}
	c, err := f.opts.Keys.Split(fd, f.putBlob)
	if err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	js, err := jsonOrNull(&c, false)
	if err != nil {
		return err
	}
	f.mu.Lock()
	err = f.st.tx(func(tx *sql.Tx) error {
		var parent int64
		if err := tx.QueryRow(`SELECT parent FROM nodes WHERE ino = ?`, ino).Scan(&parent); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil // unlinked meanwhile
			}
			return err
		}
		// Clean only if no handle is open now: a writer registers in FS.open (under mu)
		// before it marks the row dirty, so it cannot slip between this check and the
		// commit and have its writes taken for sealed.
		_, open := f.open[ino]
		if _, err := tx.Exec(`UPDATE nodes SET content = ?, size = ?, stored = ?, mtime = ?, dirty = CASE WHEN ? THEN 0 ELSE dirty END WHERE ino = ?`,
			js, c.Size, storedBytes(&c), st.ModTime().UnixNano(), final && !open, ino); err != nil {
			return err
		}
		return markDirty(tx, parent)
	})
	f.mu.Unlock()
	if err != nil {
		return err
	}
	f.pub.changed()
	return nil
}

// sealAll seals every local file left dirty: with no handle open (after a crash), and with
// includeOpen also the open ones, not for good (Drain: the newest content of every file).
func (f *FS) sealAll(includeOpen bool) error {
	f.mu.Lock()
	rows, err := f.st.q().Query(`SELECT ino FROM nodes WHERE type = ? AND local = 1 AND dirty = 1`, typeFile)
	var inos []int64
	if err == nil {
		for rows.Next() {
			var ino int64
			if err = rows.Scan(&ino); err != nil {
				break
			}
			if _, open := f.open[ino]; !open || includeOpen {
				inos = append(inos, ino)
			}
		}
		rows.Close()
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	for _, ino := range inos {
		if err := f.seal(ino, true); err != nil { // final only if not open (see seal)
			return fmt.Errorf("homefs: sealing inode %d: %w", ino, err)
		}
	}
	return nil
}

func timeOf(ns int64) time.Time { return time.Unix(0, max(ns, 0)) }
