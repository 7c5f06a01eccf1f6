// Package tree implements the storage format of a home (docs/FORMAT.md, version 1): a Merkle
// tree of encrypted, content-addressed blobs. It is pure data-format code, with no FUSE and no
// network: nostrfs and nostr-homectl build on it, and a blobstore.Store (or anything else that
// can fetch a blob by its sha256) carries the bytes.
//
// # Design
//
// Every key derives from the home key with HKDF-SHA256 (DeriveKeys). A file's bytes, and a
// directory's listing, are a byte stream cut into chunks of at most ChunkSize (1 MiB). Each
// chunk is encrypted convergently (SealChunk): its identity is HMAC-SHA256(K_chunk, 0x00 || plaintext)
// and its AES-256-GCM key derives from that identity, so equal plaintexts in one home give
// equal blobs (stored once) while nothing links the chunks of two homes. A Content lists a
// stream's chunks (ChunkRef: blob hash, chunk id, plaintext size); the chunk for an offset is
// found by division, so a read fetches only the chunks it covers (ReadAt). An all-zero chunk
// is a hole (nothing stored) and a stream of at most MaxInline bytes is stored inline in its
// reference. A directory's stream is a DEFLATE-compressed JSON Listing whose entries carry
// their own Content, so one root Content names the whole tree; it is kept in the root pointer
// blob (SealRoot), the only blob with a random nonce, which the kind 30081 manifest names.
//
// # Untrusted input
//
// Every blob comes from a server that may lie. Readers check everything the format states
// before using it: a blob's sha256 against its name, the version byte, the AEAD tag, the chunk
// id, every size, and every rule of a listing (DecodeListing), with bounded memory: inflating
// stops at MaxListingSize, decoding refuses more than MaxEntries entries as they come, and
// Walk refuses cycles and trees deeper than MaxDepth. Refusals are *FormatError values naming
// the path and the Rule broken (BrokenRule).
//
// JSON is decoded with package strictjson (unknown fields, repeated or non-lowercase keys are
// refused), plus two checks strictjson lacks: the document must be valid UTF-8 (encoding/json
// would silently replace invalid bytes), and a key must be plain ASCII (encoding/json folds
// case with Unicode rules, so it reads "ſize", with U+017F, as "size"). Base64 values must be
// canonical (standard alphabet, padded, no line breaks).
//
// Keys is safe for concurrent use; Wipe zeroes the derived keys, after which every method
// fails with ErrWiped.
package tree
