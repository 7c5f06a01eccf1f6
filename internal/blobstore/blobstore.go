// Package blobstore defines the one interface through which nostr-homed stores and fetches
// content-addressed blobs on untrusted remote servers: Blossom servers (package blossom) or an
// IPFS node over kubo's HTTP RPC (package ipfs).
//
// A blob is named by the lowercase hex SHA-256 of its bytes. Everything nostr-homed puts in a
// blob is already encrypted, so a store sees only opaque bytes, their size and their hash.
//
// Streaming: no implementation holds a whole blob in memory. Put reads from an io.ReaderAt so
// that it can retry and send the same bytes to several servers without buffering them; Get
// returns a reader that hashes as it goes and fails at EOF if the bytes do not match the name.
// A ranged read cannot be checked against the whole blob's hash: callers that read ranges keep
// blobs small enough (nostrfs chunks) to verify them whole, or verify at another level.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Store is a content-addressed blob store. Implementations are safe for concurrent use.
type Store interface {
	// Put stores the size bytes of r under hash, the lowercase hex SHA-256 of those bytes.
	// It returns nil only when at least one backend has acknowledged the blob with a matching
	// hash and size; Receipts says which did.
	Put(ctx context.Context, hash string, size int64, r io.ReaderAt) ([]Receipt, error)
	// Get streams the whole blob. The returned reader fails with an error wrapping
	// ErrHashMismatch at EOF if the bytes do not hash to the name, and ErrNotFound is returned
	// (wrapped) when no backend has the blob.
	Get(ctx context.Context, hash string) (io.ReadCloser, error)
	// GetRange streams length bytes from offset. The bytes are not verified (see package doc).
	GetRange(ctx context.Context, hash string, offset, length int64) (io.ReadCloser, error)
	// Stat reports the size of the blob on the first backend that has it, or ErrNotFound.
	Stat(ctx context.Context, hash string) (int64, error)
}

// Receipt is one backend's acknowledgement of a stored blob.
type Receipt struct {
	Backend string // server URL or node address
	URL     string // where the backend says the blob can be fetched, if it says
	Size    int64
}

var (
	// ErrNotFound means no backend has the blob.
	ErrNotFound = errors.New("blob not found")
	// ErrHashMismatch means bytes did not hash to the name they were fetched or stored under.
	ErrHashMismatch = errors.New("blob hash mismatch")
	// ErrBadHash means a string is not a lowercase hex SHA-256.
	ErrBadHash = errors.New("not a lowercase hex sha256")
)

// CheckHash returns an error wrapping ErrBadHash unless h is 64 lowercase hex digits.
func CheckHash(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("%w: %q has length %d", ErrBadHash, truncate(h), len(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: %q", ErrBadHash, truncate(h))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// HashReaderAt returns the hex SHA-256 of the first size bytes of r, reading it in a stream.
func HashReaderAt(r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(r, 0, size))
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("short read: %d of %d bytes", n, size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// VerifyingReader wraps r and checks, when r reports EOF, that everything read hashed to want
// and, if size >= 0, that exactly size bytes came. A mismatch turns EOF into an error wrapping
// ErrHashMismatch, so a caller that copies to EOF cannot miss it.
func VerifyingReader(r io.ReadCloser, want string, size int64) io.ReadCloser {
	return &verifying{r: r, want: want, size: size, h: sha256.New()}
}

type verifying struct {
	r    io.ReadCloser
	want string
	size int64
	n    int64
	h    hash.Hash
	err  error
}

func (v *verifying) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: %s: more than the expected %d bytes", ErrHashMismatch, v.want, v.size)
		return 0, v.err
	}
	if err == io.EOF {
		got := hex.EncodeToString(v.h.Sum(nil))
		switch {
		case v.size >= 0 && v.n != v.size:
			v.err = fmt.Errorf("%w: %s: got %d bytes, want %d", ErrHashMismatch, v.want, v.n, v.size)
		case got != v.want:
			v.err = fmt.Errorf("%w: want %s, got %s", ErrHashMismatch, v.want, got)
		default:
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifying) Close() error { return v.r.Close() }
