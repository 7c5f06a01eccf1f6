// Package cas is nostrfs's local content-addressed object store: immutable byte strings named by
// the lowercase hex SHA-256 of their bytes, kept as plain files (so that FUSE passthrough can hand
// their file descriptors to the kernel), checked against their names, bounded by a quota with
// true LRU eviction that never removes an object that is open or pinned.
//
// # Layout
//
//	DIR/                  0700 (tightened to 0700 at Open if looser, with a log line)
//	DIR/lock              flock(LOCK_EX) held by the one process that has the store open
//	DIR/objects/ab/HASH   0600, an object; "ab" is the first two hex digits of HASH
//	DIR/tmp/              temp files being written; emptied at Open
//	DIR/pins/REASON/HASH  a durable pin: the file holds the pin count as decimal text
//	                      (an empty file counts as 1)
//
// Everything else the store knows (sizes, recency, which objects have been verified, which are
// open) lives in memory and is rebuilt from the directory at Open. There is no separate index
// that could disagree with the files after a crash: the set of files under objects/ is the set
// of objects.
//
// # Crash safety
//
// An object is written to a temp file under tmp/ while being hashed, compared with its expected
// name, fsynced, renamed to objects/ab/HASH (rename is atomic within one file system) and the
// objects/ab directory is fsynced before Put returns. So an object path either does not exist or
// names a complete file whose bytes were durable before the name appeared. A crash at any point
// (kill -9, power loss) leaves at worst a temp file, which the next Open removes; the flock
// guarantees that no live process is still writing those temp files. A Put that fails (hash
// mismatch, ENOSPC, I/O error) removes its temp file before returning. Damage that happens later
// (bit rot, a file truncated or rewritten behind the store's back) is caught by verification:
// the first Open of an object in a process hashes it, and later Opens re-hash it if its inode,
// size or mtime changed. A damaged object is removed and Open returns an error matching both
// ErrCorrupt and ErrNotFound, so a caller that refetches on ErrNotFound also heals corruption.
//
// Objects written by Put or a Writer in this process count as verified (their bytes were hashed
// on the way in and fsynced). Damage that keeps the inode, size and mtime of an already verified
// object is only detected by the next process.
//
// # LRU persistence: the objects' atime
//
// Every use (Open of an object, Put or Commit, including a Put of an object already present)
// gives the object a new stamp from a clock that is strictly increasing within the process and
// starts above every stamp found on disk (so a wall clock that steps back does not reorder
// anything), and writes that stamp into the object file's atime with utimensat (os.Chtimes, mtime
// left alone). At Open the objects are scanned and ordered by atime: that is the LRU order of the
// previous run. Why atime rather than a use log or an index file:
//
//   - The recency is stored on the object itself, so it cannot disagree with the set of objects
//     (no log entries for deleted objects, no objects missing from an index) and eviction deletes
//     it with the object. There is nothing to compact and nothing to replay.
//   - kill -9 loses nothing: utimensat has completed in the kernel when it returns. A power loss
//     can lose atime updates not yet written back (the inode is not fsynced for a use), that is,
//     a little recency; never an object.
//   - The scan at Open is needed anyway: the quota needs every object's size, and after a crash
//     only the directory is trustworthy.
//
// The kernel's own atime updates are kept out: objects are opened with O_NOATIME (falling back
// to a plain open where that is refused), and relatime/noatime mount options do not affect an
// explicit utimensat. Has does not count as a use. On a file system whose timestamps are coarser
// than a nanosecond (probed at Open, logged), uses within one tick tie after a restart.
//
// # Pins
//
// Pin(hash, reason) and Unpin(hash, reason) keep a reference count per (hash, reason); reasons
// are short names such as "dirty" or "unacked" (lowercase letters, digits, '-', '_'). A hash with
// any count above zero is never evicted, whether or not its object exists yet: pin a hash before
// you Put it (or use Writer.CommitPinned) and no eviction can come between the write and the pin.
// Pins are durable before Pin returns (temp file, fsync, rename to pins/REASON/HASH, fsync of the
// directory), so a restart never evicts an object that was pinned; an Unpin is durable before the
// in-memory count drops. A crash between the durable write and the return leaves the new count
// on disk: at worst an extra pin, which keeps an object longer. ListPins lets a restarted daemon
// find what it still has to upload. To move an object from one reason to another (dirty, then
// unacked), Pin the new reason before you Unpin the old one.
//
// # Quota and eviction
//
// Used is the sum of the objects' sizes in bytes. When it exceeds Options.Quota (zero or less:
// no quota), an eviction pass removes least recently used objects until Used <= Quota, skipping
// objects that are open (an *Object not yet closed), pinned for any reason, or the object that
// the triggering Put just wrote. Eviction runs synchronously at Open, at the end of every
// Put/Commit, and when Evict is called; closing an Object or unpinning does not trigger it. If
// everything left is pinned or open, Put still succeeds and Stats reports OverQuota. A Put that
// runs out of disk space fails with an error wrapping syscall.ENOSPC and leaves nothing behind.
//
// # Concurrency and locks
//
// A Store is safe for concurrent use. Store.mu guards all in-memory state (index, LRU list,
// stamps, open counts, pin counts) and is also held for every change to the names under objects/
// (the rename that publishes an object, the unlink that evicts or removes one) and for opening an
// object's file. Because Open looks the object up and opens its file under mu, and eviction only
// unlinks objects whose open count is zero under the same mu, an object cannot be deleted between
// being looked up and being opened; an object opened before it is removed (by Remove of a corrupt
// copy, say) stays readable through its file descriptor, as Linux keeps unlinked inodes alive.
// Slow work (copying and hashing data, fsync of objects, verifying an object) runs outside mu.
//
// Two more kinds of locks exist, each taken before mu and never while holding mu or each other:
// a per-object verification mutex (so that concurrent first Opens hash a file once) and a
// per-(reason, hash) pin mutex (so that durable pin writes for one key land in order). Lock
// order: verification mutex or pin mutex, then Store.mu.
package cas
