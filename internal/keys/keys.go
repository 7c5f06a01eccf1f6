// Package keys holds a user's Nostr secret key for the length of a session, outside the Go
// heap, and uses it as a nostr.Keyer (sign, NIP-44 v2 encrypt and decrypt) without ever
// turning it into a hex or bech32 string.
//
// # Why locked memory
//
// The daemon unlocks a user's NIP-49 ncryptsec at login and keeps the key until the last
// CloseSession ("no nsec ever on disk"). The key therefore lives in its own anonymous, private
// mmap'd page that is
//
//   - mlock'ed, so the kernel never writes it to swap;
//   - madvise'd MADV_DONTDUMP, so a core dump leaves it out, and MADV_WIPEONFORK, so a child
//     forked by the daemon sees zeroes there (both best effort: older kernels ignore them);
//   - not part of the Go heap, so the garbage collector never moves or copies it, and Wipe can
//     zero the one place it lives and unmap it.
//
// # Why no hex strings
//
// Go strings are immutable: a secret in a string cannot be zeroed and survives in the heap,
// possibly copied, until the collector reuses the memory. go-nostr's keyer.KeySigner and
// nostr.Event.Sign take the key as a hex string, so this package does not use them: it signs
// with btcec/v2's schnorr from a PrivateKey built from the locked bytes (and zeroed after use),
// and computes the NIP-44 conversation key itself (ECDH x coordinate, then HKDF-extract with
// salt "nip44-v2", exactly as nip44.GenerateConversationKey does) before handing it to
// nip44.Encrypt and nip44.Decrypt, and zeroes it after.
//
// # What is and is not guaranteed
//
// Guaranteed: the 32 key bytes are stored only in the locked page; after Wipe the page has
// been zeroed, unlocked and unmapped, and every method returns ErrWiped. A Secret that becomes
// unreachable without Wipe is wiped by a cleanup when the collector notices (do not rely on
// that: call Wipe).
//
// Not guaranteed: while signing or deriving a conversation key, the scalar (and values derived
// from it) pass through CPU registers and the goroutine's stack, and btcec/schnorr and nip44
// make temporary copies (nonce derivation, the conversation key passed by value) that this
// package cannot zero. The ECDH here, like go-nostr's, uses the library's non-constant-time
// scalar multiplication. NIP-49 decryption (go-nostr nip49) derives the scrypt key and the
// decrypted key in heap slices; UnlockNcryptsec zeroes the key slice it gets back, not
// nip49's internal scrypt output. The password itself is a Go string supplied by the caller.
//
// Core dumps: MADV_DONTDUMP covers this page only. The daemon that holds Secrets should also
// call prctl(PR_SET_DUMPABLE, 0) at start (and run with LimitCORE=0 under systemd), which
// disables core dumps of the whole process and keeps unprivileged ptrace out.
//
// RLIMIT_MEMLOCK: each Secret locks one page. Since Linux 5.16 the default limit is 8 MiB;
// root (CAP_IPC_LOCK) is not limited. If mlock fails, the constructors fail with
// ErrLockedMemory rather than keep the key in unlocked memory.
package keys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
	"github.com/nbd-wtf/go-nostr/nip49"
	"golang.org/x/crypto/hkdf"
	"golang.org/x/sys/unix"
)

// KeySize is the size of a secp256k1 secret key.
const KeySize = 32

var (
	// ErrWiped is returned by every method of a Secret after Wipe.
	ErrWiped = errors.New("keys: the secret key has been wiped")
	// ErrWrongPassword means the ncryptsec is well formed but the password does not open it.
	ErrWrongPassword = errors.New("keys: wrong password for the ncryptsec")
	// ErrMalformed means the input is not a usable key or ncryptsec.
	ErrMalformed = errors.New("keys: malformed key")
	// ErrLockedMemory means the locked page for the key could not be set up.
	ErrLockedMemory = errors.New("keys: cannot keep the key in locked memory")
)

// MaxLogN is the largest scrypt cost (log2 N) UnlockNcryptsec accepts. NIP-49 lists 16 (64
// MiB) to 22 (4 GiB); each unit doubles memory and time. The ncryptsec comes from the user's
// settings, so the cap keeps one user from making the daemon allocate gigabytes. A daemon
// may raise it from its configuration before use.
var MaxLogN uint8 = 20

var _ nostr.Keyer = (*Secret)(nil)

// Secret is a secp256k1 secret key in locked memory. It implements nostr.Keyer. It is safe
// for concurrent use: the methods share a read lock on the page, Wipe takes it exclusively.
type Secret struct {
	r   *region
	pub string // hex x-only public key (not secret)
}

// region is the locked page. It is separate from Secret so that a cleanup can wipe it when
// the Secret is collected without Wipe.
type region struct {
	mu  sync.RWMutex
	mem []byte // the whole mmap'd page; the key is mem[:KeySize]; nil once wiped
}

// FromBytes copies the 32-byte key b into locked memory and then zeroes b (also when it
// fails). The key must be a valid secp256k1 scalar (not zero, less than the group order).
func FromBytes(b []byte) (*Secret, error) {
	defer clear(b)
	if len(b) != KeySize {
		return nil, fmt.Errorf("%w: secret key is %d bytes, want %d", ErrMalformed, len(b), KeySize)
	}
	var k secp256k1.ModNScalar
	overflow := k.SetByteSlice(b)
	zero := k.IsZero()
	k.Zero()
	if overflow || zero {
		return nil, fmt.Errorf("%w: not a valid secp256k1 secret key", ErrMalformed)
	}

	r, err := newRegion()
	if err != nil {
		return nil, err
	}
	copy(r.mem[:KeySize], b)

	priv := secp256k1.PrivKeyFromBytes(r.mem[:KeySize])
	pub := hex.EncodeToString(schnorr.SerializePubKey(priv.PubKey()))
	priv.Zero()

	s := &Secret{r: r, pub: pub}
	runtime.AddCleanup(s, func(r *region) { r.wipe() }, r)
	return s, nil
}

func newRegion() (*region, error) {
	size := unix.Getpagesize()
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap: %v", ErrLockedMemory, err)
	}
	if err := unix.Mlock(mem); err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("%w: mlock: %v (raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK= in the unit, or run with CAP_IPC_LOCK)", ErrLockedMemory, err)
	}
	// Best effort: not supported everywhere, and the key is still locked without them.
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	return &region{mem: mem}, nil
}

// beforeUnmap, if set (by tests), sees the page after it was zeroed and before it is unmapped.
var beforeUnmap func(mem []byte)

func (r *region) wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem == nil {
		return
	}
	clear(r.mem)
	if beforeUnmap != nil {
		beforeUnmap(r.mem)
	}
	_ = unix.Munlock(r.mem)
	_ = unix.Munmap(r.mem)
	r.mem = nil
}

// UnlockNcryptsec decrypts a NIP-49 ncryptsec with password into a Secret. The ncryptsec is
// checked before any scrypt work (structure, version, key security byte, log N at most
// MaxLogN), so a malformed one fails with ErrMalformed and a wrong password with
// ErrWrongPassword.
func UnlockNcryptsec(ncryptsec, password string) (*Secret, error) {
	if err := checkNcryptsec(ncryptsec); err != nil {
		return nil, err
	}
	b, err := nip49.DecryptToBytes(ncryptsec, password)
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("%w (%v)", ErrWrongPassword, err)
	}
	return FromBytes(b) // zeroes b
}

// checkNcryptsec validates what nip49.DecryptToBytes assumes (it slices without bounds checks
// and would let log N ask scrypt for terabytes).
func checkNcryptsec(s string) error {
	prefix, bits5, err := bech32.DecodeNoLimit(s)
	if err != nil {
		return fmt.Errorf("%w: ncryptsec is not bech32: %v", ErrMalformed, err)
	}
	if prefix != "ncryptsec" {
		return fmt.Errorf("%w: prefix %q, want ncryptsec", ErrMalformed, prefix)
	}
	data, err := bech32.ConvertBits(bits5, 5, 8, false)
	if err != nil {
		return fmt.Errorf("%w: ncryptsec: %v", ErrMalformed, err)
	}
	// version, log N, salt 16, nonce 24, key security byte, ciphertext 32 + tag 16
	if len(data) != 91 {
		return fmt.Errorf("%w: ncryptsec holds %d bytes, want 91", ErrMalformed, len(data))
	}
	if data[0] != 0x02 {
		return fmt.Errorf("%w: ncryptsec version %d, want 2", ErrMalformed, data[0])
	}
	if logN := data[1]; logN < 1 || logN > MaxLogN {
		return fmt.Errorf("%w: ncryptsec scrypt log N %d outside 1..%d", ErrMalformed, logN, MaxLogN)
	}
	if ksb := data[2+16+24]; ksb > 2 {
		return fmt.Errorf("%w: ncryptsec key security byte %d", ErrMalformed, ksb)
	}
	return nil
}

// Wipe zeroes the key, unlocks and unmaps its page. It is idempotent; afterwards every method
// returns ErrWiped. It waits for operations in progress to finish.
func (s *Secret) Wipe() { s.r.wipe() }

// Wiped reports whether Wipe has been called.
func (s *Secret) Wiped() bool {
	s.r.mu.RLock()
	defer s.r.mu.RUnlock()
	return s.r.mem == nil
}

// withKey runs f with the key bytes under the read lock; the slice must not escape f.
func (s *Secret) withKey(f func(key []byte) error) error {
	s.r.mu.RLock()
	defer s.r.mu.RUnlock()
	if s.r.mem == nil {
		return ErrWiped
	}
	return f(s.r.mem[:KeySize])
}

// GetPublicKey returns the hex x-only public key.
func (s *Secret) GetPublicKey(context.Context) (string, error) {
	if err := s.withKey(func([]byte) error { return nil }); err != nil {
		return "", err
	}
	return s.pub, nil
}

// SignEvent sets ev's PubKey, ID and Sig (BIP-340 Schnorr over the NIP-01 serialization).
func (s *Secret) SignEvent(_ context.Context, ev *nostr.Event) error {
	return s.withKey(func(key []byte) error {
		if ev.Tags == nil {
			ev.Tags = nostr.Tags{}
		}
		ev.PubKey = s.pub
		h := sha256.Sum256(ev.Serialize())
		priv, _ := btcec.PrivKeyFromBytes(key)
		defer priv.Zero()
		// Without FastSign, schnorr.Sign verifies the signature it made before returning it.
		sig, err := schnorr.Sign(priv, h[:])
		if err != nil {
			return fmt.Errorf("keys: signing: %w", err)
		}
		ev.ID = hex.EncodeToString(h[:])
		ev.Sig = hex.EncodeToString(sig.Serialize())
		return nil
	})
}

// Encrypt encrypts plaintext for recipientPublicKey with NIP-44 v2.
func (s *Secret) Encrypt(_ context.Context, plaintext, recipientPublicKey string) (string, error) {
	var out string
	err := s.withConversationKey(recipientPublicKey, func(ck [32]byte) (err error) {
		out, err = nip44.Encrypt(plaintext, ck)
		return err
	})
	return out, err
}

// Decrypt decrypts a NIP-44 v2 payload from senderPublicKey.
func (s *Secret) Decrypt(_ context.Context, ciphertext, senderPublicKey string) (string, error) {
	var out string
	err := s.withConversationKey(senderPublicKey, func(ck [32]byte) (err error) {
		out, err = nip44.Decrypt(ciphertext, ck)
		return err
	})
	return out, err
}

// withConversationKey derives the NIP-44 v2 conversation key with peerHex, passes it to f and
// zeroes it afterwards.
func (s *Secret) withConversationKey(peerHex string, f func(ck [32]byte) error) error {
	var peer [33]byte
	peer[0] = 0x02
	if len(peerHex) != 64 {
		return fmt.Errorf("%w: public key %q is not 32 bytes of hex", ErrMalformed, peerHex)
	}
	if _, err := hex.Decode(peer[1:], []byte(peerHex)); err != nil {
		return fmt.Errorf("%w: public key %q is not hex", ErrMalformed, peerHex)
	}
	pub, err := secp256k1.ParsePubKey(peer[:])
	if err != nil {
		return fmt.Errorf("%w: public key %q is not on the curve", ErrMalformed, peerHex)
	}
	var ck [32]byte
	defer clear(ck[:])
	err = s.withKey(func(key []byte) error {
		conversationKey(key, pub, &ck)
		return nil
	})
	if err != nil {
		return err
	}
	return f(ck)
}

// conversationKey is nip44.GenerateConversationKey without strings:
// HKDF-extract(SHA-256, IKM = x(key * pub), salt = "nip44-v2").
func conversationKey(key []byte, pub *secp256k1.PublicKey, out *[32]byte) {
	var k secp256k1.ModNScalar
	k.SetByteSlice(key)
	defer k.Zero()
	var point, result secp256k1.JacobianPoint
	pub.AsJacobian(&point)
	secp256k1.ScalarMultNonConst(&k, &point, &result)
	result.ToAffine()
	var shared [32]byte
	result.X.PutBytesUnchecked(shared[:])
	result.X.Zero()
	result.Y.Zero()
	result.Z.Zero()
	prk := hkdf.Extract(sha256.New, shared[:], []byte("nip44-v2"))
	copy(out[:], prk)
	clear(prk)
	clear(shared[:])
}
