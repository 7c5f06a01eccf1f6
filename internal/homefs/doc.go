// Package homefs is nostrfs's file system: one user's home as a FUSE mount (go-fuse's fs API)
// over the encrypted Merkle tree of docs/FORMAT.md (package tree), a local SQLite view of it,
// the content-addressed cache (package cas) and the durable upload queue (package uploadq).
//
// # The local view (state.db)
//
// StateDir/state.db holds one row per name the mount knows: the root (inode 1), the entries
// of every directory listing read so far, and everything created here. A directory's
// listing is fetched, verified and turned into rows the first time it is looked into
// (loadDir); until then the row holds only the listing's content reference. So a home of a
// million entries costs rows for what was visited, not nodes in memory, and a crash loses
// no local change: every change is a committed transaction (WAL, synchronous=NORMAL: safe
// against a crash of the process, which is what kill -9 tests). Inode numbers are row ids
// (AUTOINCREMENT: never reused, so a replaced tree never aliases an inode the kernel still
// holds). go-fuse keeps a node only for inodes the kernel knows.
//
// A file is remote (its chunks are fetched, verified and decrypted on read, cached
// encrypted in the cas) or local: StateDir/data/INO holds its whole plaintext, the working
// copy. Opening for writing, truncating or setting the mtime makes a file local, once; a file
// created here is local from the start. A local file's size and times are its working
// copy's. Working copies are plaintext on the machine's disk, in a 0700 directory of root's:
// local root is trusted (docs/SECURITY.md); the cas keeps only encrypted blobs.
//
// # Writing back
//
//   - Seal: on flush (close), fsync and the last release of a file open for writing, its
//     working copy is split into chunks, encrypted (tree.Keys.Split), each blob put in the
//     cas and enqueued in the upload queue (which pins it until a server has it), and the
//     row gets the new content; its directories are marked dirty. When fsync returns, the
//     blobs and their journal entries are on disk (fsynced) and the row is committed. The
//     row's dirty flag says the working copy may be newer than the sealed content; the last
//     release clears it; at start, files left dirty by a crash are sealed again (sealAll).
//   - Publish: Debounce after the last change (2 s by default), the publisher writes the
//     listing of every dirty directory bottom-up (blobs again through the cas and the
//     queue) and a new root pointer blob, the pending root (recorded in state.db). It then
//     waits until the queue has every blob on at least one server (nothing is published that
//     is not on a server), asks the relays for the newest manifest, and only if that is
//     still the base (the manifest the local tree was built on) signs a new manifest
//     through Options.Signer (parent: the base, created_at strictly larger) and publishes
//     it. A burst of writes costs one signature. Offline, it retries with backoff up to
//     5 minutes; the queue keeps uploading on its own.
//   - Conflict: if the newest manifest is another machine's, the local tree is not
//     published (the other machine's work is never overwritten) and not replaced (local
//     changes are never lost): the conflict is recorded and shown by Status until someone
//     resolves it (merging is for later). A newest manifest whose root is our pending root is
//     ours, published just before a crash: it becomes the base.
//   - Adopting: at start (Options.Base) and every Poll, a newer manifest than the base is
//     adopted if the local tree has no unpublished change: the rows are replaced by the new
//     root (loaded lazily again), the working copies of closed files deleted, and the kernel
//     told to drop its dentries under the root (NotifyEntry) and the root's pages.
//
// # What the kernel caches
//
// Dentries (also negative ones) and attributes for EntryTimeout and AttrTimeout (an hour):
// every change goes through this mount, which answers with the new attributes, and a tree
// adopted from elsewhere is invalidated as above. Pages of a remote file are kept across
// opens (FOPEN_KEEP_CACHE; its content never changes under its inode). A local file is
// served by FUSE passthrough when the daemon runs as root (the kernel reads and writes the
// working copy itself, about ten times faster) unless a page-cache handle of it is open
// (the kernel refuses to mix the two modes on one inode); otherwise by READ and WRITE.
//
// A remote file's chunks are decrypted into a small in-memory LRU (eight 1 MiB chunks,
// plaintext in memory only), so the eight 128 KiB READs of a chunk cost one decryption, and a
// read prefetches the next two chunks in the background (plain.go).
//
// # Locking
//
// Locks, in the order they are taken (never the other way round):
//
//  1. node.mu, per inode: its open counts; held while materialising the file (which may
//     fetch) and during its last release's seal.
//  2. FS.sealMu: one seal at a time (they are CPU-bound).
//  3. FS.mu: state.db (one connection; a transaction runs under it) and the map of open
//     nodes. Never held across a network call or a call into go-fuse that may wait for the
//     kernel (NotifyEntry), so no FUSE request can deadlock on it.
//
// publisher.work serialises publications and polls; it is taken before any of the above
// and held across network calls (uploads, relays), never by a FUSE request. publisher.mu
// guards its timer and status only. The fetcher's and the cas's locks are leaves.
//
// Fetches run on a context detached from the FUSE request's (bounded by FetchTimeout):
// go-fuse cancels a request's context on any signal the reading process gets, including the
// Go runtime's SIGURG. Content that cannot be fetched or fails verification is EIO (logged),
// never placeholder bytes; a listing that fails to decode is EIO on that directory.
//
// # Deadlocks (go-fuse's list)
//
// Tests read their own mount; they never mmap files of it in the serving process (mmap is
// tested from a child process), and call fuse.Server.WaitMount before use.
//
// # Limits
//
// Every entry belongs to the home's owner (the format has no owners): chown to anyone else is
// EPERM. No hard links (EPERM), no device files, FIFOs or sockets (EPERM). Names must be UTF-8
// (EILSEQ otherwise) of at most 255 bytes. Extended attributes: user.* only (others are
// EOPNOTSUPP to set, ENODATA to get), not on the root, whose mode and mtime are also local
// only: the root has no entry in any listing.
package homefs
