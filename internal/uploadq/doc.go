// Package uploadq is nostrfs's durable upload queue: blobs written to the local cas are
// journaled here and sent to every configured Blossom server, with retry and backoff, and
// nothing is forgotten until a server has acknowledged it. A restart resumes the queue.
//
// # Layout
//
//	DIR/lock          flock(LOCK_EX) held by the one process that has the queue open
//	DIR/queue/HASH    one journal file per queued blob (JSON, see below), 0600
//	DIR/queue/.tmp-*  temp files being written; removed at Open
//
// A journal file holds
//
//	{"v":1,"hash":"<hex sha256>","enqueued":"<RFC 3339 time>","acked":["<server URL>",...]}
//
// "acked" lists the servers that have acknowledged the blob (a PUT whose descriptor matched
// the hash and size sent, as checked by the Uploader, and a receipt of the right size).
// Every write of a journal file is atomic: a temp file in DIR/queue is written, fsynced,
// renamed over DIR/queue/HASH, and DIR/queue is fsynced before the write counts as done.
// So after a crash a journal file is either absent, or a complete earlier or later version;
// never a torn one. One file per blob (rather than an append-only log) keeps every update
// O(1), needs no compaction, and makes the set of files the set of queued blobs: there is
// no index that could disagree with them. A file that nevertheless fails to parse (damage
// behind the queue's back) is read as "queued, acknowledged by nobody", the safe reading: the
// blob is uploaded again, and servers deduplicate.
//
// # Order of operations ("nothing is forgotten")
//
// Enqueue(hash):
//
//  1. cas.Pin(hash, "unacked"), durable before it returns (see package cas). From here the
//     cas cannot evict the blob, in this process or after a restart.
//  2. Check that the cas has the blob (after the pin, so no eviction can come in between);
//     if not, Unpin and fail.
//  3. Write DIR/queue/HASH atomically (above), acked = [].
//  4. Return nil.
//
// A crash between 1 and 3 leaves a pin without a journal file; Open adopts every "unacked"
// pin that has no journal file by writing one, so the blob is queued anyway (the "unacked"
// pin reason belongs to this package: nothing else should take it). A crash after 3 leaves
// both. So once Enqueue has returned nil, the blob is pinned and journaled, and a kill -9 or
// power loss cannot lose it.
//
// When a server acknowledges a blob:
//
//  1. The server is added to the journal file's "acked" list (atomic write, fsync).
//  2. Only then, if it is the first acknowledgement, cas.Unpin(hash, "unacked"): the blob is
//     on a server and the cas may evict it. Flush counts it as acknowledged from here.
//
// A crash between 1 and 2 leaves a pin on an acknowledged blob; Open drops the "unacked"
// pins of every journal entry that has an acknowledgement. The reverse order would be
// unsafe: an unpinned, unacknowledged blob could be evicted by the cas's Open before the
// queue re-pins it.
//
// When every server in Servers() has acknowledged the blob (or been given up, below), the
// journal file is removed and DIR/queue fsynced. A crash before the removal means the
// remaining servers are tried again after the restart (they answer quickly, since the
// Blossom client asks with HEAD first).
//
// At Open, an entry without acknowledgement whose "unacked" pin is missing (removed behind
// the queue's back) is pinned again; if the cas has lost the object too, the entry stays
// queued and its uploads fail with an error naming the blob, visible in Stats and in
// Flush's error, until the object comes back (nothing can be uploaded that is not there).
//
// # Acknowledgement and replication
//
// A blob is acknowledged when at least one server has it: that is what Flush waits for and
// when the cas pin is released. The queue keeps sending it to the other servers in the
// background. A (blob, server) pair is given up only once the blob has been acknowledged by
// some server, and then when the pair has been tried Options.MaxAttempts times in this
// process, or Options.MaxAge has passed since the blob was enqueued (the enqueue time is in
// the journal, so MaxAge survives restarts; attempt counts do not, so a restart grants the
// remaining servers a new round of attempts). A blob that no server has acknowledged is
// never given up. Servers that are configured later (a new Servers() list after a restart)
// are targets too; servers no longer configured are ignored.
//
// # Worker, retries, concurrency
//
// Start runs a scheduler that starts one upload per (blob, server) pair that is due, oldest
// blob first, with at most Options.Parallel uploads at a time, and at most
// ceil(Parallel/len(servers)) to any one server, so that a hanging server cannot take every
// slot while others have work. After a failure the pair waits an exponential backoff (from
// MinBackoff, doubling, capped at MaxBackoff) with jitter (a uniformly random delay in
// [d/2, d)) before its next try; other pairs, and so other servers, are not delayed. Uploads
// stream from the cas object (an io.ReaderAt) and do not load blobs into memory. Flush makes
// the pending pairs of the blobs it waits for due at once, so that a Flush after the network
// returns does not sit out a long backoff.
//
// # Locking
//
// Queue.mu guards all in-memory state (entries, per-(blob, server) schedule, statistics) and
// is never held during I/O (cas calls, journal writes, uploads). Each entry has a journal
// mutex (entry.jmu) that serializes its journal writes and its removal, so that the file
// always reflects the newest acknowledgement set. Lock order: entry.jmu, then Queue.mu.
// Enqueue for a hash that is already being enqueued waits for that call and returns its
// result; Enqueue of a hash already queued (acknowledged or not) returns nil at once.
package uploadq
