// Package homefs is nostrfs's FUSE view of a home: the Merkle tree of encrypted blobs of
// docs/FORMAT.md (package tree) served as a directory tree through go-fuse's fs API. This
// milestone is READ-ONLY: lookup, getattr, readdir, open for reading, read, readlink,
// getxattr/listxattr (user.* attributes) and statfs. Every operation that would change the
// tree (create, mkdir, mknod, symlink, link, unlink, rmdir, rename, setattr, setxattr,
// removexattr, an open for writing or with O_TRUNC) fails with EROFS. Writes come later.
//
// # Nodes
//
// The root is a dirNode for Options.Root; every entry of a listing becomes, on Lookup, a
// dirNode, fileNode or linkNode holding a copy of its tree.Entry. go-fuse numbers the inodes
// (automatic inode numbers) and forgets them when the kernel does (NewInode, not persistent
// inodes), so memory follows what the kernel holds, not the size of the home. Every inode is
// owned by Options.UID and Options.GID: the format has no per-entry owners. A directory
// reports a link count of 1 ("unknown", as btrfs does; find(1) then does not use the
// leaf optimisation), because counting its subdirectories would need its listing, a fetch,
// on every stat. A file's st_blocks counts its stored bytes only: holes cost nothing.
//
// # What is cached where
//
//   - The kernel caches dentries (also negative ones) and attributes for
//     Options.EntryTimeout and Options.AttrTimeout (default one hour: the tree of one mount
//     never changes), and file pages (Open returns FOPEN_KEEP_CACHE) until it reclaims them.
//   - A dirNode keeps its decoded listing in memory from the first Lookup or Readdir until the
//     kernel forgets the inode. Lookup is a binary search in it (entries are sorted).
//   - The cas (Options.Cache) keeps chunk blobs as they are stored on the servers: ENCRYPTED,
//     named by the blob's sha256 (the name the cas verifies every object against), for file
//     chunks and listing chunks alike. We chose the encrypted blob, not the plaintext, because
//     (1) no plaintext of the home ever reaches the disk, so a stolen cache directory without
//     the home key reveals nothing the servers do not already see; (2) the cas's name check is
//     then exactly Blossom's rule (sha256 of the blob), so the object fetched and the object
//     cached are the same bytes and need no second name; (3) a plaintext name
//     (sha256(plaintext)) would be a content fingerprint of the user's files on disk. The cost
//     is an AES-GCM decryption and an HMAC check (tree.Keys.OpenChunk, via tree.Keys.ReadAt)
//     of the covered chunk on every READ that misses the kernel's page cache.
//   - A fetch consults the cas first, then Options.Fetch; concurrent fetches of one blob are
//     merged into one (the kernel's readahead issues parallel READs of one chunk), and what
//     comes back is put into the cas before it is used. Nothing fetched is trusted: the cas
//     verifies the blob's hash on Put, tree.Keys.OpenChunk verifies hash, length, tag and
//     chunk id again on every use. A chunk that cannot be fetched or fails verification is
//     EIO (logged), never placeholder bytes, and is not remembered as failed: the next read
//     tries again. A listing that fails to decode (a hostile or damaged tree) is EIO on that
//     directory, logged with the broken rule; other directories stay readable.
//
// # Locking
//
// dirNode.mu guards only the dirNode's listing pointer. It is never held across a fetch or a
// decode: a Lookup or Readdir takes it to read the pointer, and if there is no listing yet
// releases it, loads the listing (fetching through the cache), and takes it again to store the
// result (the first stored listing wins; a second concurrent load is wasted work, not a
// different answer, since the content is immutable). fetcher.mu guards the map of fetches in
// flight and is never held across a fetch either; waiters block on the fetch's done channel.
// The cas has its own locks (package cas). No lock of this package is held while calling into
// go-fuse (NewInode), so no lock order with go-fuse's tree lock exists.
//
// Fetches run on a context detached from the FUSE request's (context.WithoutCancel, bounded by
// Options.FetchTimeout): go-fuse cancels a request's context on any signal the reading process
// gets, including the Go runtime's SIGURG, and a half-done fetch would be wasted; the merged
// fetch may also serve other readers.
//
// # Deadlocks (go-fuse's list)
//
// The test process reads its own mount. It never mmaps files of the mount, runs
// subprocesses without a working directory on it, and calls fuse.Server.WaitMount before
// use (go-fuse disables POLL at mount).
//
// # Not yet
//
// FUSE passthrough (fs.FilePassthroughFder with the cas object's fd) needs one backing file
// holding the file's whole PLAINTEXT; files are stored as encrypted chunks, so passthrough
// needs a decrypted whole-file cache first. Also later: writes, NotifyEntry/NotifyContent when
// a new manifest changes the tree, a plaintext chunk cache in memory to avoid decrypting a
// 1 MiB chunk for every 128 KiB READ, and a "ro" mount flag (not set now, so that the EROFS
// paths of this package are the ones exercised).
package homefs
