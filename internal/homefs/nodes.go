package homefs

import (
	"context"
	"errors"
	"io"
	"sort"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nostr-homed/nostr-homed/internal/tree"
)

// blockSize is st_blksize, the preferred I/O size reported for every inode.
const blockSize = 128 << 10

// base is what every node has: its entry (a copy; immutable) and its path, for logs.
type base struct {
	fs    *FS
	path  string
	entry tree.Entry
}

type dirNode struct {
	fs.Inode
	base
	mu      sync.Mutex // guards listing; never held across a fetch or a decode
	listing []tree.Entry
}

type fileNode struct {
	fs.Inode
	base
}

type linkNode struct {
	fs.Inode
	base
}

var (
	_ = (fs.InodeEmbedder)((*dirNode)(nil))
	_ = (fs.NodeLookuper)((*dirNode)(nil))
	_ = (fs.NodeReaddirer)((*dirNode)(nil))
	_ = (fs.NodeOpendirer)((*dirNode)(nil))
	_ = (fs.NodeGetattrer)((*dirNode)(nil))
	_ = (fs.NodeStatfser)((*dirNode)(nil))
	_ = (fs.NodeGetxattrer)((*dirNode)(nil))
	_ = (fs.NodeListxattrer)((*dirNode)(nil))
	_ = (fs.NodeSetxattrer)((*dirNode)(nil))
	_ = (fs.NodeRemovexattrer)((*dirNode)(nil))
	_ = (fs.NodeSetattrer)((*dirNode)(nil))
	_ = (fs.NodeMkdirer)((*dirNode)(nil))
	_ = (fs.NodeMknoder)((*dirNode)(nil))
	_ = (fs.NodeCreater)((*dirNode)(nil))
	_ = (fs.NodeSymlinker)((*dirNode)(nil))
	_ = (fs.NodeLinker)((*dirNode)(nil))
	_ = (fs.NodeUnlinker)((*dirNode)(nil))
	_ = (fs.NodeRmdirer)((*dirNode)(nil))
	_ = (fs.NodeRenamer)((*dirNode)(nil))

	_ = (fs.NodeGetattrer)((*fileNode)(nil))
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeReader)((*fileNode)(nil))
	_ = (fs.NodeGetxattrer)((*fileNode)(nil))
	_ = (fs.NodeListxattrer)((*fileNode)(nil))
	_ = (fs.NodeSetxattrer)((*fileNode)(nil))
	_ = (fs.NodeRemovexattrer)((*fileNode)(nil))
	_ = (fs.NodeSetattrer)((*fileNode)(nil))

	_ = (fs.NodeGetattrer)((*linkNode)(nil))
	_ = (fs.NodeReadlinker)((*linkNode)(nil))
	_ = (fs.NodeGetxattrer)((*linkNode)(nil))
	_ = (fs.NodeListxattrer)((*linkNode)(nil))
	_ = (fs.NodeSetxattrer)((*linkNode)(nil))
	_ = (fs.NodeRemovexattrer)((*linkNode)(nil))
	_ = (fs.NodeSetattrer)((*linkNode)(nil))
)

// typeBits returns the file type bits of an entry type.
func typeBits(t string) uint32 {
	switch t {
	case tree.TypeDir:
		return syscall.S_IFDIR
	case tree.TypeSymlink:
		return syscall.S_IFLNK
	default:
		return syscall.S_IFREG
	}
}

// fill sets out from the entry.
func (b *base) fill(out *fuse.Attr) {
	e := &b.entry
	out.Mode = typeBits(e.Type) | (e.Mode & tree.MaxMode)
	out.Nlink = 1
	out.Owner = fuse.Owner{Uid: b.fs.opts.UID, Gid: b.fs.opts.GID}
	sec, nsec := uint64(e.Mtime/1e9), uint32(e.Mtime%1e9)
	out.Mtime, out.Mtimensec = sec, nsec
	out.Ctime, out.Ctimensec = sec, nsec
	out.Atime, out.Atimensec = sec, nsec
	out.Blksize = blockSize
	var stored int64
	switch {
	case e.Type == tree.TypeSymlink:
		out.Size = uint64(len(e.Target))
	case e.Content != nil:
		out.Size = uint64(e.Content.Size)
		if len(e.Content.Chunks) == 0 {
			stored = e.Content.Size
		}
		for _, c := range e.Content.Chunks {
			if !c.IsHole() {
				stored += c.Size
			}
		}
	}
	out.Blocks = uint64((stored + 511) / 512)
}

func (b *base) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	b.fill(&out.Attr)
	return 0
}

func (b *base) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	for _, x := range b.entry.Xattrs {
		if x.Name == attr {
			if len(dest) == 0 {
				return uint32(len(x.Value)), 0
			}
			if len(dest) < len(x.Value) {
				return uint32(len(x.Value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.Value)), 0
		}
	}
	return 0, syscall.ENODATA
}

func (b *base) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var n int
	for _, x := range b.entry.Xattrs {
		n += len(x.Name) + 1
	}
	if len(dest) == 0 {
		return uint32(n), 0
	}
	if len(dest) < n {
		return uint32(n), syscall.ERANGE
	}
	var o int
	for _, x := range b.entry.Xattrs {
		o += copy(dest[o:], x.Name)
		dest[o] = 0
		o++
	}
	return uint32(o), 0
}

func (b *base) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st := b.fs.opts.Cache.Stats()
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = tree.MaxNameLen
	if st.Quota > 0 {
		out.Blocks = uint64(st.Quota / 4096)
		if st.Used < st.Quota {
			out.Bfree = uint64((st.Quota - st.Used) / 4096)
			out.Bavail = out.Bfree
		}
	}
	return 0
}

// Everything that would change the tree: EROFS (writes come later).

func (b *base) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}
func (b *base) Removexattr(ctx context.Context, attr string) syscall.Errno { return syscall.EROFS }
func (b *base) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (d *dirNode) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (d *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (d *dirNode) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }
func (d *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// load returns the directory's listing, reading it on first use. d.mu is not held while
// fetching. A failure is logged and is EIO; it is not remembered (the next call retries).
func (d *dirNode) load(ctx context.Context) ([]tree.Entry, syscall.Errno) {
	d.mu.Lock()
	l := d.listing
	d.mu.Unlock()
	if l != nil {
		return l, 0
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.fs.opts.FetchTimeout)
	defer cancel()
	lst, err := d.fs.opts.Keys.ReadListing(fctx, d.fs.fetch, *d.entry.Content)
	if err != nil {
		if r := tree.BrokenRule(err); r != "" {
			d.fs.opts.Logf("homefs: directory %s: refused listing (rule %s): %v", d.path, r, err)
		} else {
			d.fs.opts.Logf("homefs: directory %s: %v", d.path, err)
		}
		return nil, syscall.EIO
	}
	l = lst.Entries
	if l == nil {
		l = []tree.Entry{}
	}
	d.mu.Lock()
	if d.listing == nil {
		d.listing = l
	}
	l = d.listing
	d.mu.Unlock()
	return l, 0
}

func (d *dirNode) childPath(name string) string {
	if d.path == "/" {
		return "/" + name
	}
	return d.path + "/" + name
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	l, errno := d.load(ctx)
	if errno != 0 {
		return nil, errno
	}
	i := sort.Search(len(l), func(i int) bool { return l[i].Name >= name })
	if i == len(l) || l[i].Name != name {
		return nil, syscall.ENOENT
	}
	e := l[i]
	b := base{fs: d.fs, path: d.childPath(name), entry: e}
	b.fill(&out.Attr)
	if ch := d.GetChild(name); ch != nil {
		return ch, 0
	}
	var node fs.InodeEmbedder
	switch e.Type {
	case tree.TypeDir:
		node = &dirNode{base: b}
	case tree.TypeSymlink:
		node = &linkNode{base: b}
	default:
		node = &fileNode{base: b}
	}
	return d.NewInode(ctx, node, fs.StableAttr{Mode: typeBits(e.Type)}), 0
}

// Opendir loads the listing, so that a directory that cannot be read fails at opendir(2)
// with EIO (go-fuse loses an error of Readdir's first call: the directory would look empty).
func (d *dirNode) Opendir(ctx context.Context) syscall.Errno {
	_, errno := d.load(ctx)
	return errno
}

func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	l, errno := d.load(ctx)
	if errno != 0 {
		return nil, errno
	}
	list := make([]fuse.DirEntry, len(l))
	for i, e := range l {
		list[i] = fuse.DirEntry{Name: e.Name, Mode: typeBits(e.Type)}
	}
	return fs.NewListDirStream(list), 0
}

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.entry.Target), 0
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	// The content never changes under this mount: the kernel may keep its pages.
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	c := f.entry.Content
	if off >= c.Size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.fs.opts.FetchTimeout)
	defer cancel()
	n, err := f.fs.opts.Keys.ReadAt(fctx, f.fs.fetch, *c, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		f.fs.opts.Logf("homefs: read %s at %d: %v", f.path, off, err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}
