package tree

import (
	"context"
	"errors"
	"io/fs"
)

// Walk walks the tree whose root directory has content reference root, depth first, in name
// order: it calls fn for every entry below the root (not for the root itself) with its path
// ("/a", "/a/b") before descending into it. As with fs.WalkDir, fn may return fs.SkipDir (on
// a directory: skip its contents; on anything else: skip the rest of its directory) or
// fs.SkipAll (stop, and Walk returns nil); any other error stops the walk and is returned as
// is.
//
// The tree is untrusted: every listing is checked (ReadListing), and Walk refuses a
// directory whose content reference appears again on its own path (RuleCycle) and a
// directory more than MaxDepth levels below the root (RuleDepth), without reading them.
// Errors are *FormatError values whose Path is the path of the entry or directory at fault,
// or wrap the Fetcher's error with the directory's path.
//
// Identical directories are stored once, so a tree may share subtrees; Walk visits every
// path, and a hostile tree of shared subtrees can have exponentially many paths (2^d at depth
// d): bound the walk with ctx. Walk keeps the listings of the directories on the current path
// in memory (at most MaxDepth of them).
func (k *Keys) Walk(ctx context.Context, f Fetcher, root Content, fn func(path string, e Entry) error) error {
	read := func(ctx context.Context, c Content) (Listing, error) { return k.ReadListing(ctx, f, c) }
	return walkTree(ctx, read, root, fn)
}

type listingReader func(ctx context.Context, c Content) (Listing, error)

func walkTree(ctx context.Context, read listingReader, root Content, fn func(path string, e Entry) error) error {
	w := &walker{read: read, fn: fn, onPath: map[[32]byte]bool{}}
	err := w.dir(ctx, "/", root, 0)
	if errors.Is(err, fs.SkipAll) || errors.Is(err, fs.SkipDir) {
		return nil
	}
	return err
}

type walker struct {
	read   listingReader
	fn     func(path string, e Entry) error
	onPath map[[32]byte]bool // identities of the directories on the current path
}

func (w *walker) dir(ctx context.Context, path string, c Content, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := c.identity()
	if w.onPath[id] {
		return &FormatError{Path: path, Rule: RuleCycle, Detail: "this directory's content appears again on its own path"}
	}
	l, err := w.read(ctx, c)
	if err != nil {
		return under(err, path)
	}
	w.onPath[id] = true
	defer delete(w.onPath, id)
	for _, e := range l.Entries {
		p := joinPath(path, e.Name)
		if e.Type == TypeDir && depth+1 > MaxDepth {
			return &FormatError{Path: p, Rule: RuleDepth, Detail: "more than 4096 directories deep"}
		}
		if err := w.fn(p, e); err != nil {
			if err == fs.SkipDir {
				if e.Type == TypeDir {
					continue
				}
				return nil // skip the rest of this directory
			}
			return err // fn's own error (or fs.SkipAll), unchanged
		}
		if e.Type == TypeDir {
			if err := w.dir(ctx, p, *e.Content, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
