package homefs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// blockSize is st_blksize, the preferred I/O size reported for every inode.
const blockSize = 128 << 10

// node is every inode of the mount: its number is its row in state.db, and everything else
// about it lives there. go-fuse keeps one node per inode the kernel knows.
type node struct {
	fs.Inode
	fsys *FS
	ino  int64

	// mu guards the open counts and serialises materialising the file (which may fetch:
	// see the package doc).
	mu      sync.Mutex
	ptOpens int // open handles served by FUSE passthrough
	rdOpens int // open handles served by READ/WRITE requests
	// unlinked says the row is gone: the data file goes at the last release. Guarded by
	// FS.mu (set by unlink and rename, read by the last release, both under FS.mu).
	unlinked bool
	// local is set once the file has a working copy (materialised), so that READs of a
	// handle opened before need no query to notice (chunkHandle.localFile).
	local atomic.Bool
}

var (
	_ = (fs.InodeEmbedder)((*node)(nil))
	_ = (fs.NodeLookuper)((*node)(nil))
	_ = (fs.NodeReaddirer)((*node)(nil))
	_ = (fs.NodeGetattrer)((*node)(nil))
	_ = (fs.NodeSetattrer)((*node)(nil))
	_ = (fs.NodeStatfser)((*node)(nil))
	_ = (fs.NodeGetxattrer)((*node)(nil))
	_ = (fs.NodeListxattrer)((*node)(nil))
	_ = (fs.NodeSetxattrer)((*node)(nil))
	_ = (fs.NodeRemovexattrer)((*node)(nil))
	_ = (fs.NodeMkdirer)((*node)(nil))
	_ = (fs.NodeMknoder)((*node)(nil))
	_ = (fs.NodeCreater)((*node)(nil))
	_ = (fs.NodeSymlinker)((*node)(nil))
	_ = (fs.NodeLinker)((*node)(nil))
	_ = (fs.NodeUnlinker)((*node)(nil))
	_ = (fs.NodeRmdirer)((*node)(nil))
	_ = (fs.NodeRenamer)((*node)(nil))
	_ = (fs.NodeReadlinker)((*node)(nil))
	_ = (fs.NodeOpener)((*node)(nil))
)

// errno turns an internal error into an errno: errnos pass, anything else is logged and EIO.
func (f *FS) errno(op string, ino int64, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	f.opts.Logf("homefs: %s (inode %d): %v", op, ino, err)
	return syscall.EIO
}

func typeBits(t int) uint32 {
	switch t {
	case typeDir:
		return syscall.S_IFDIR
	case typeSymlink:
		return syscall.S_IFLNK
	default:
		return syscall.S_IFREG
	}
}

func treeType(t int) string {
	switch t {
	case typeDir:
		return tree.TypeDir
	case typeSymlink:
		return tree.TypeSymlink
	default:
		return tree.TypeFile
	}
}

func setTime(ns int64) (uint64, uint32) {
	if ns < 0 {
		ns = 0
	}
	return uint64(ns / 1e9), uint32(ns % 1e9)
}

// fill sets out from r; for a local file the size and times are the data file's.
func (f *FS) fill(r *row, out *fuse.Attr) {
	out.Ino = uint64(r.ino)
	out.Mode = typeBits(r.typ) | (r.mode & tree.MaxMode)
	out.Nlink = 1
	out.Owner = fuse.Owner{Uid: f.opts.UID, Gid: f.opts.GID}
	out.Blksize = blockSize
	out.Mtime, out.Mtimensec = setTime(r.mtime)
	out.Ctime, out.Ctimensec = out.Mtime, out.Mtimensec
	out.Atime, out.Atimensec = out.Mtime, out.Mtimensec
	switch r.typ {
	case typeSymlink:
		out.Size = uint64(len(r.target))
	case typeDir:
		out.Size = 4096
		out.Blocks = 8
	case typeFile:
		if r.local {
			var st unix.Stat_t
			if err := unix.Stat(f.st.dataPath(r.ino), &st); err == nil {
				out.Size = uint64(st.Size)
				out.Blocks = uint64(st.Blocks)
				out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
				out.Ctime, out.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
				out.Atime, out.Atimensec = out.Mtime, out.Mtimensec
				return
			}
		}
		out.Size = uint64(r.size)
		out.Blocks = uint64((r.stored + 511) / 512)
	}
}

// get reads the row of ino.
func (f *FS) get(ino int64) (*row, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.get(ino)
}

// attr reads the row of ino without its content and xattrs (no JSON to decode).
func (f *FS) attr(ino int64) (*row, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.attr(ino)
}

// loadDir makes the children of directory ino rows, fetching its listing if need be. The
// fetch runs without mu; the first result stored wins (the listing is immutable).
func (f *FS) loadDir(ctx context.Context, ino int64) (*row, error) {
	f.mu.Lock()
	r, err := f.st.attr(ino)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if r.typ != typeDir {
		return nil, syscall.ENOTDIR
	}
	if r.loaded {
		return r, nil
	}
	if r, err = f.get(ino); err != nil {
		return nil, err
	}
	if r.content == nil {
		return nil, fmt.Errorf("directory without a listing")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.FetchTimeout)
	defer cancel()
	l, err := f.opts.Keys.ReadListing(ctx, f.fetch, *r.content)
	if err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err = f.st.tx(func(tx *sql.Tx) error {
		var loaded bool
		if err := tx.QueryRow(`SELECT loaded FROM nodes WHERE ino = ?`, ino).Scan(&loaded); err != nil {
			return err
		}
		if loaded {
			return nil
		}
		for i := range l.Entries {
			e := &l.Entries[i]
			c := &row{parent: ino, name: e.Name, mode: e.Mode, mtime: e.Mtime, content: e.Content, xattrs: e.Xattrs}
			switch e.Type {
			case tree.TypeDir:
				c.typ = typeDir
				c.loaded = e.Content.Size == 0
				if c.loaded {
					c.content = nil // an empty directory's listing is written again when it changes
				}
			case tree.TypeSymlink:
				c.typ, c.target, c.size = typeSymlink, e.Target, int64(len(e.Target))
			default:
				c.typ, c.size = typeFile, e.Content.Size
			}
			if _, err := insert(tx, c); err != nil {
				return err
			}
		}
		_, err := tx.Exec(`UPDATE nodes SET loaded = 1 WHERE ino = ?`, ino)
		return err
	})
	if err != nil {
		return nil, err
	}
	return f.st.attr(ino)
}

// newChild makes the go-fuse inode for row r.
func (n *node) newChild(ctx context.Context, r *row) *fs.Inode {
	return n.NewInode(ctx, &node{fsys: n.fsys, ino: r.ino}, fs.StableAttr{Mode: typeBits(r.typ), Ino: uint64(r.ino)})
}

func (n *node) entryOut(r *row, out *fuse.EntryOut) {
	n.fsys.fill(r, &out.Attr)
}

// Lookup implements fs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := n.fsys
	if _, err := f.loadDir(ctx, n.ino); err != nil {
		return nil, f.errno("lookup", n.ino, err)
	}
	r, err := f.lookupRowAttr(n.ino, name)
	if err != nil {
		return nil, f.errno("lookup", n.ino, err)
	}
	n.entryOut(r, out)
	return n.newChild(ctx, r), 0
}

// lookupRowAttr is lookupAttr under mu.
func (f *FS) lookupRowAttr(parent int64, name string) (*row, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.lookupAttr(parent, name)
}

// Readdir implements fs.NodeReaddirer.
func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	f := n.fsys
	if _, err := f.loadDir(ctx, n.ino); err != nil {
		return nil, f.errno("readdir", n.ino, err)
	}
	f.mu.Lock()
	rows, err := f.st.names(n.ino)
	f.mu.Unlock()
	if err != nil {
		return nil, f.errno("readdir", n.ino, err)
	}
	out := make([]fuse.DirEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, fuse.DirEntry{Name: r.name, Mode: typeBits(r.typ), Ino: uint64(r.ino)})
	}
	return fs.NewListDirStream(out), 0
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.mu.Lock()
	r, err := n.fsys.st.attr(n.ino)
	n.fsys.mu.Unlock()
	if err != nil {
		return n.fsys.errno("getattr", n.ino, err)
	}
	n.fsys.fill(r, &out.Attr)
	return 0
}

// Statfs implements fs.NodeStatfser: the cache's quota is the size of the file system.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	s := n.fsys.opts.Cache.Stats()
	total := s.Quota
	if total <= 0 {
		total = 1 << 40
	}
	free := max(total-s.Used, 0)
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = uint64(total / 4096)
	out.Bfree = uint64(free / 4096)
	out.Bavail = out.Bfree
	out.NameLen = tree.MaxNameLen
	out.Files = tree.MaxEntries
	out.Ffree = tree.MaxEntries
	return 0
}

// checkNewName refuses names the tree format cannot store (docs/FORMAT.md).
func checkNewName(name string) syscall.Errno {
	switch {
	case len(name) > tree.MaxNameLen:
		return syscall.ENAMETOOLONG
	case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	case !utf8.ValidString(name):
		return syscall.EILSEQ // listings hold UTF-8 names only
	}
	return 0
}

func now() int64 { return time.Now().UnixNano() }

// addChild inserts r under parent n (which it loads first) and marks the tree dirty.
func (n *node) addChild(ctx context.Context, r *row, onDisk func(ino int64) error) (*row, syscall.Errno) {
	f := n.fsys
	if e := checkNewName(r.name); e != 0 {
		return nil, e
	}
	if _, err := f.loadDir(ctx, n.ino); err != nil {
		return nil, f.errno("create", n.ino, err)
	}
	r.parent = n.ino
	r.mtime = now()
	f.mu.Lock()
	var ino int64
	err := f.st.tx(func(tx *sql.Tx) error {
		if _, err := f.st.lookupAttr(n.ino, r.name); err == nil {
			return syscall.EEXIST
		}
		var err error
		if ino, err = insert(tx, r); err != nil {
			return err
		}
		if onDisk != nil {
			if err := onDisk(ino); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE nodes SET mtime = ? WHERE ino = ?`, r.mtime, n.ino); err != nil {
			return err
		}
		if r.typ == typeDir {
			return markDirty(tx, ino) // its empty listing is written at the next publication
		}
		return markDirty(tx, n.ino)
	})
	var out *row
	if err == nil {
		out, err = f.st.attr(ino)
	}
	f.mu.Unlock()
	if err != nil {
		return nil, f.errno("create", n.ino, err)
	}
	f.pub.changed()
	return out, 0
}

// Mkdir implements fs.NodeMkdirer.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r, e := n.addChild(ctx, &row{name: name, typ: typeDir, mode: mode & tree.MaxMode, loaded: true}, nil)
	if e != 0 {
		return nil, e
	}
	n.entryOut(r, out)
	return n.newChild(ctx, r), 0
}

// Mknod implements fs.NodeMknoder: only regular files (mknod(2) with S_IFREG) exist here.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG && mode&syscall.S_IFMT != 0 {
		return nil, syscall.EPERM // the format has files, directories and symlinks only
	}
	r, e := n.addChild(ctx, &row{name: name, typ: typeFile, mode: mode & tree.MaxMode, local: true, dirty: true}, n.fsys.createData)
	if e != 0 {
		return nil, e
	}
	n.entryOut(r, out)
	return n.newChild(ctx, r), 0
}

// createData creates the empty data file of a new file.
func (f *FS) createData(ino int64) error {
	fd, err := os.OpenFile(f.st.dataPath(ino), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	return fd.Close()
}

// Create implements fs.NodeCreater.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	r, e := n.addChild(ctx, &row{name: name, typ: typeFile, mode: mode & tree.MaxMode, local: true, dirty: true}, n.fsys.createData)
	if e != 0 {
		return nil, nil, 0, e
	}
	n.entryOut(r, out)
	ch := n.newChild(ctx, r)
	child := ch.Operations().(*node)
	fh, fl, e := child.open(ctx, flags)
	if e != 0 {
		return nil, nil, 0, e
	}
	return ch, fh, fl, 0
}

// Symlink implements fs.NodeSymlinker.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if len(target) == 0 || len(target) > tree.MaxTargetLen {
		return nil, syscall.ENAMETOOLONG
	}
	if !utf8.ValidString(target) {
		return nil, syscall.EILSEQ
	}
	r, e := n.addChild(ctx, &row{name: name, typ: typeSymlink, mode: 0o777, target: target, size: int64(len(target))}, nil)
	if e != 0 {
		return nil, e
	}
	n.entryOut(r, out)
	return n.newChild(ctx, r), 0
}

// Link implements fs.NodeLinker: the format has no hard links (docs/FORMAT.md).
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Readlink implements fs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	r, err := n.fsys.get(n.ino)
	if err != nil {
		return nil, n.fsys.errno("readlink", n.ino, err)
	}
	if r.typ != typeSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(r.target), 0
}

// removeRow deletes r (mu held, in tx) and deals with its data file: gone now, or at the
// last release if the file is open.
func (f *FS) removeRow(tx *sql.Tx, r *row) error {
	if _, err := tx.Exec(`DELETE FROM nodes WHERE ino = ?`, r.ino); err != nil {
		return err
	}
	if r.typ == typeFile {
		if on, ok := f.open[r.ino]; ok {
			on.unlinked = true
		} else {
			os.Remove(f.st.dataPath(r.ino))
		}
	}
	return nil
}

// Unlink implements fs.NodeUnlinker.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, false)
}

// Rmdir implements fs.NodeRmdirer.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, true)
}

func (n *node) remove(ctx context.Context, name string, dir bool) syscall.Errno {
	f := n.fsys
	if _, err := f.loadDir(ctx, n.ino); err != nil {
		return f.errno("remove", n.ino, err)
	}
	r, err := f.lookupRowAttr(n.ino, name)
	if err != nil {
		return f.errno("remove", n.ino, err)
	}
	if dir {
		if r.typ != typeDir {
			return syscall.ENOTDIR
		}
		if _, err := f.loadDir(ctx, r.ino); err != nil {
			return f.errno("rmdir", r.ino, err)
		}
	} else if r.typ == typeDir {
		return syscall.EISDIR
	}
	f.mu.Lock()
	err = f.st.tx(func(tx *sql.Tx) error {
		cur, err := f.st.lookupAttr(n.ino, name)
		if err != nil {
			return err
		}
		if cur.ino != r.ino {
			return syscall.ENOENT // replaced meanwhile; let the caller retry
		}
		if dir {
			if has, err := f.st.hasChildren(r.ino); err != nil {
				return err
			} else if has {
				return syscall.ENOTEMPTY
			}
		}
		if err := f.removeRow(tx, r); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE nodes SET mtime = ? WHERE ino = ?`, now(), n.ino); err != nil {
			return err
		}
		return markDirty(tx, n.ino)
	})
	f.mu.Unlock()
	if err != nil {
		return f.errno("remove", n.ino, err)
	}
	f.pub.changed()
	return 0
}

// Rename implements fs.NodeRenamer: plain, RENAME_NOREPLACE and RENAME_EXCHANGE.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := n.fsys
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if e := checkNewName(newName); e != 0 {
		return e
	}
	if flags&^uint32(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	for _, d := range []int64{n.ino, np.ino} {
		if _, err := f.loadDir(ctx, d); err != nil {
			return f.errno("rename", d, err)
		}
	}
	// A directory about to be replaced must be loaded to know that it is empty.
	if dst, err := f.lookupRowAttr(np.ino, newName); err == nil && dst.typ == typeDir && flags&unix.RENAME_EXCHANGE == 0 {
		if _, err := f.loadDir(ctx, dst.ino); err != nil {
			return f.errno("rename", dst.ino, err)
		}
	}
	t := now()
	f.mu.Lock()
	err := f.st.tx(func(tx *sql.Tx) error {
		src, err := f.st.lookupAttr(n.ino, name)
		if err != nil {
			return err
		}
		dst, err := f.st.lookupAttr(np.ino, newName)
		switch {
		case errors.Is(err, syscall.ENOENT):
			dst = nil
		case err != nil:
			return err
		}
		if dst != nil && dst.ino == src.ino {
			return nil
		}
		if flags&unix.RENAME_EXCHANGE != 0 {
			if dst == nil {
				return syscall.ENOENT
			}
			// Swap through a name no entry can have (names never contain '/').
			if _, err := tx.Exec(`UPDATE nodes SET name = x'2f' WHERE ino = ?`, src.ino); err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE nodes SET parent = ?, name = ? WHERE ino = ?`, n.ino, []byte(name), dst.ino); err != nil {
				return err
			}
		} else if dst != nil {
			if flags&unix.RENAME_NOREPLACE != 0 {
				return syscall.EEXIST
			}
			switch {
			case src.typ == typeDir && dst.typ != typeDir:
				return syscall.ENOTDIR
			case src.typ != typeDir && dst.typ == typeDir:
				return syscall.EISDIR
			case dst.typ == typeDir:
				if has, err := f.st.hasChildren(dst.ino); err != nil {
					return err
				} else if has {
					return syscall.ENOTEMPTY
				}
			}
			if err := f.removeRow(tx, dst); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE nodes SET parent = ?, name = ? WHERE ino = ?`, np.ino, []byte(newName), src.ino); err != nil {
			return err
		}
		for _, d := range []int64{n.ino, np.ino} {
			if _, err := tx.Exec(`UPDATE nodes SET mtime = ? WHERE ino = ?`, t, d); err != nil {
				return err
			}
			if err := markDirty(tx, d); err != nil {
				return err
			}
		}
		return nil
	})
	f.mu.Unlock()
	if err != nil {
		return f.errno("rename", n.ino, err)
	}
	f.pub.changed()
	return 0
}

// Setattr implements fs.NodeSetattrer: mode, owner (only to the owner it already has),
// size and times.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f := n.fsys
	if uid, ok := in.GetUID(); ok && uid != f.opts.UID {
		return syscall.EPERM // every entry belongs to the home's owner
	}
	if gid, ok := in.GetGID(); ok && gid != f.opts.GID {
		return syscall.EPERM
	}
	r, err := f.attr(n.ino)
	if err != nil {
		return f.errno("setattr", n.ino, err)
	}
	if size, ok := in.GetSize(); ok {
		if r.typ != typeFile {
			return syscall.EISDIR
		}
		if e := n.truncate(ctx, int64(size)); e != 0 {
			return e
		}
	}
	mtime, mok := in.GetMTime()
	if r.typ == typeFile && mok {
		// A file's times live in its data file once it is local; make it local.
		if e := n.materialize(ctx, false); e != 0 {
			return e
		}
		if err := f.setDirty(n.ino); err != nil {
			return f.errno("utimens", n.ino, err)
		}
		if err := os.Chtimes(f.st.dataPath(n.ino), mtime, mtime); err != nil {
			return f.errno("utimens", n.ino, err)
		}
	}
	f.mu.Lock()
	err = f.st.tx(func(tx *sql.Tx) error {
		if mode, ok := in.GetMode(); ok {
			if _, err := tx.Exec(`UPDATE nodes SET mode = ? WHERE ino = ?`, mode&tree.MaxMode, n.ino); err != nil {
				return err
			}
			if err := markDirty(tx, r.parent); err != nil {
				return err
			}
		}
		if mok && r.typ != typeFile {
			if _, err := tx.Exec(`UPDATE nodes SET mtime = ? WHERE ino = ?`, max(mtime.UnixNano(), 0), n.ino); err != nil {
				return err
			}
			if r.parent != 0 {
				if err := markDirty(tx, r.parent); err != nil {
					return err
				}
			}
			if r.typ == typeDir {
				return markDirty(tx, n.ino) // the root's mtime is in no listing: rewrite its own
			}
		}
		return nil
	})
	if err == nil {
		r, err = f.st.attr(n.ino)
	}
	f.mu.Unlock()
	if err != nil {
		return f.errno("setattr", n.ino, err)
	}
	if r.typ == typeFile && r.local {
		n.mu.Lock()
		final := n.ptOpens+n.rdOpens == 0 // else the last release seals for good
		err := f.seal(n.ino, final)
		n.mu.Unlock()
		if err != nil {
			return f.errno("seal", n.ino, err)
		}
		if r, err = f.attr(n.ino); err != nil {
			return f.errno("setattr", n.ino, err)
		}
	}
	f.pub.changed()
	f.fill(r, &out.Attr)
	return 0
}

// ---- extended attributes: user.* only, kept in the listing -----------------------------

func xattrNS(name string) syscall.Errno {
	if !strings.HasPrefix(name, "user.") {
		return syscall.EOPNOTSUPP
	}
	if len(name) > tree.MaxXattrNameLen {
		return syscall.ERANGE
	}
	return 0
}

// Getxattr implements fs.NodeGetxattrer.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, "user.") {
		return 0, syscall.ENODATA
	}
	r, err := n.fsys.get(n.ino)
	if err != nil {
		return 0, n.fsys.errno("getxattr", n.ino, err)
	}
	for _, x := range r.xattrs {
		if x.Name == attr {
			if len(dest) < len(x.Value) {
				return uint32(len(x.Value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.Value)), 0
		}
	}
	return 0, syscall.ENODATA
}

// Listxattr implements fs.NodeListxattrer.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	r, err := n.fsys.get(n.ino)
	if err != nil {
		return 0, n.fsys.errno("listxattr", n.ino, err)
	}
	var b []byte
	for _, x := range r.xattrs {
		b = append(append(b, x.Name...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// Setxattr implements fs.NodeSetxattrer.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if e := xattrNS(attr); e != 0 {
		return e
	}
	if len(data) > tree.MaxXattrValue {
		return syscall.E2BIG
	}
	if n.ino == rootIno {
		return syscall.EOPNOTSUPP // the root has no entry in a listing to keep them in
	}
	return n.editXattrs(func(xs []tree.Xattr) ([]tree.Xattr, syscall.Errno) {
		i := 0
		for i < len(xs) && xs[i].Name < attr {
			i++
		}
		exists := i < len(xs) && xs[i].Name == attr
		switch {
		case flags&unix.XATTR_CREATE != 0 && exists:
			return nil, syscall.EEXIST
		case flags&unix.XATTR_REPLACE != 0 && !exists:
			return nil, syscall.ENODATA
		}
		v := append([]byte(nil), data...)
		if exists {
			xs[i].Value = v
		} else {
			xs = append(xs[:i], append([]tree.Xattr{{Name: attr, Value: v}}, xs[i:]...)...)
		}
		total := 0
		for _, x := range xs {
			total += len(x.Name) + len(x.Value)
		}
		if total > tree.MaxXattrTotal {
			return nil, syscall.ENOSPC
		}
		return xs, 0
	})
}

// Removexattr implements fs.NodeRemovexattrer.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !strings.HasPrefix(attr, "user.") {
		return syscall.ENODATA
	}
	return n.editXattrs(func(xs []tree.Xattr) ([]tree.Xattr, syscall.Errno) {
		for i := range xs {
			if xs[i].Name == attr {
				return append(xs[:i], xs[i+1:]...), 0
			}
		}
		return nil, syscall.ENODATA
	})
}

func (n *node) editXattrs(edit func([]tree.Xattr) ([]tree.Xattr, syscall.Errno)) syscall.Errno {
	f := n.fsys
	var e syscall.Errno
	f.mu.Lock()
	err := f.st.tx(func(tx *sql.Tx) error {
		r, err := f.st.get(n.ino)
		if err != nil {
			return err
		}
		xs, en := edit(r.xattrs)
		if en != 0 {
			e = en
			return en
		}
		js, err := jsonOrNull(xs, len(xs) == 0)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE nodes SET xattrs = ? WHERE ino = ?`, js, n.ino); err != nil {
			return err
		}
		if r.parent == 0 {
			return nil // the root has no entry to hold attributes; see the package doc
		}
		return markDirty(tx, r.parent)
	})
	f.mu.Unlock()
	if e != 0 {
		return e
	}
	if err != nil {
		return f.errno("xattr", n.ino, err)
	}
	f.pub.changed()
	return 0
}
