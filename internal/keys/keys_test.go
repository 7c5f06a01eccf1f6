package keys

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip44"
	"github.com/nbd-wtf/go-nostr/nip49"
	"golang.org/x/sys/unix"
)

var ctx = context.Background()

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pair returns the same fresh key as a locked Secret and as go-nostr's plain signer.
func pair(t *testing.T) (*Secret, keyer.KeySigner) {
	t.Helper()
	skHex := nostr.GeneratePrivateKey()
	plain, err := keyer.NewPlainKeySigner(skHex)
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromBytes(mustHex(t, skHex))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Wipe)
	return s, plain
}

func TestCrossCheckWithPlainKeySigner(t *testing.T) {
	s, plain := pair(t)
	pk, err := s.GetPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ppk, _ := plain.GetPublicKey(ctx)
	if pk != ppk {
		t.Fatalf("public key %s, plain signer says %s", pk, ppk)
	}

	ev := &nostr.Event{Kind: 1, CreatedAt: 1700000000, Content: "hello", Tags: nostr.Tags{{"t", "x"}}}
	if err := s.SignEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if ev.PubKey != pk || !ev.CheckID() {
		t.Fatalf("pubkey %s / id mismatch", ev.PubKey)
	}
	if ok, err := ev.CheckSignature(); !ok || err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	// The plain signer signs the same id (BIP-340 signatures differ by aux randomness).
	ev2 := &nostr.Event{Kind: 1, CreatedAt: 1700000000, Content: "hello", Tags: nostr.Tags{{"t", "x"}}}
	if err := plain.SignEvent(ctx, ev2); err != nil {
		t.Fatal(err)
	}
	if ev2.ID != ev.ID {
		t.Fatalf("ids differ: %s vs %s", ev.ID, ev2.ID)
	}
	// A forged content fails verification: the check above can fail.
	forged := *ev
	forged.Content = "hellO"
	if ok, _ := forged.CheckSignature(); ok {
		t.Fatal("a tampered event verified")
	}

	peerHex := nostr.GeneratePrivateKey()
	peer, _ := keyer.NewPlainKeySigner(peerHex)
	peerPK, _ := peer.GetPublicKey(ctx)

	// Locked -> peer, and the plain signer of the same key reads it too.
	ct, err := s.Encrypt(ctx, "from the locked key", peerPK)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]struct {
		k    nostr.Keyer
		from string
	}{"peer": {peer, pk}, "plain": {plain, peerPK}} {
		got, err := k.k.Decrypt(ctx, ct, k.from)
		if err != nil || got != "from the locked key" {
			t.Fatalf("%s decrypting: %q, %v", name, got, err)
		}
	}
	// Plain -> peer and peer -> us are readable by the locked key.
	ct2, _ := plain.Encrypt(ctx, "from the plain key", peerPK)
	if got, err := s.Decrypt(ctx, ct2, peerPK); err != nil || got != "from the plain key" {
		t.Fatalf("locked decrypting plain's: %q, %v", got, err)
	}
	ct3, _ := peer.Encrypt(ctx, "from the peer", pk)
	if got, err := s.Decrypt(ctx, ct3, peerPK); err != nil || got != "from the peer" {
		t.Fatalf("locked decrypting peer's: %q, %v", got, err)
	}
	// Another key cannot read it.
	other, _ := pair(t)
	if _, err := other.Decrypt(ctx, ct, peerPK); err == nil {
		t.Fatal("a third key decrypted the message")
	}
	// Bad peer keys are refused, not panicked on.
	for _, bad := range []string{"", "zz", strings.Repeat("f", 64), peerPK + "00"} {
		if _, err := s.Encrypt(ctx, "x", bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("peer %q: %v", bad, err)
		}
	}
}

func TestConversationKeyMatchesNIP44(t *testing.T) {
	// The NIP-44 spec's example vector: sec1 = 1, sec2 = 2.
	sec1 := mustHex(t, "0000000000000000000000000000000000000000000000000000000000000001")
	sec2 := mustHex(t, "0000000000000000000000000000000000000000000000000000000000000002")
	s1, err := FromBytes(sec1)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Wipe()
	s2, err := FromBytes(sec2)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Wipe()
	pub2, _ := s2.GetPublicKey(ctx)
	var got [32]byte
	if err := s1.withConversationKey(pub2, func(ck [32]byte) error { got = ck; return nil }); err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(got[:]); h != "c41c775356fd92eadc63ff5a0dc1da211b268cbea22316767095b2871ea1412d" {
		t.Fatalf("conversation key %s", h)
	}
	want, err := nip44.GenerateConversationKey(pub2, "0000000000000000000000000000000000000000000000000000000000000001")
	if err != nil || want != got {
		t.Fatalf("go-nostr says %x (%v)", want, err)
	}
	payload := "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABee0G5VSK0/9YypIObAtDKfYEAjD35uVkHyB0F4DwrcNaCXlCWZKaArsGrY6M9wnuTMxWfp1RTN9Xga8no+kF5Vsb"
	if pt, err := s1.Decrypt(ctx, payload, pub2); err != nil || pt != "a" {
		t.Fatalf("vector payload: %q, %v", pt, err)
	}
}

func TestFromBytesValidatesAndZeroes(t *testing.T) {
	b := mustHex(t, nostr.GeneratePrivateKey())
	s, err := FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	if !bytes.Equal(b, make([]byte, 32)) {
		t.Fatal("FromBytes left the caller's copy of the key")
	}
	order := "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
	for name, in := range map[string][]byte{
		"zero":     make([]byte, 32),
		"order":    mustHex(t, order),
		"too big":  bytes.Repeat([]byte{0xff}, 32),
		"short":    {1, 2, 3},
		"too long": bytes.Repeat([]byte{1}, 33),
	} {
		_, err := FromBytes(in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
		for _, c := range in {
			if c != 0 {
				t.Errorf("%s: input not zeroed on failure", name)
				break
			}
		}
	}
}

// mapped reports whether the page at addr is mapped (mincore fails with ENOMEM if not).
func mapped(t *testing.T, addr uintptr) bool {
	t.Helper()
	var vec [1]byte
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, addr, uintptr(unix.Getpagesize()), uintptr(unsafe.Pointer(&vec[0])))
	switch errno {
	case 0:
		return true
	case unix.ENOMEM:
		return false
	}
	t.Fatalf("mincore: %v", errno)
	return false
}

// lockedKB returns the "Locked:" figure of the mapping starting at addr in /proc/self/smaps,
// or -1 if there is no such mapping.
func lockedKB(t *testing.T, addr uintptr) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x", addr)
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, _, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			in = lo == start // a mapping's header line: "lo-hi perms offset dev inode path"
			continue
		}
		if in && fields[0] == "Locked:" && len(fields) >= 2 {
			var kb int
			fmt.Sscanf(fields[1], "%d", &kb)
			return kb
		}
	}
	return -1
}

func TestWipe(t *testing.T) {
	s, _ := pair(t)
	addr := uintptr(unsafe.Pointer(&s.r.mem[0]))
	key := append([]byte(nil), s.r.mem[:KeySize]...)
	if !mapped(t, addr) {
		t.Fatal("the key page is not mapped before Wipe")
	}
	if kb := lockedKB(t, addr); kb <= 0 {
		t.Fatalf("the key page is not locked (smaps Locked: %d kB)", kb)
	}
	peer, _ := pair(t)
	peerPK, _ := peer.GetPublicKey(ctx)

	// Wipe zeroes the page before it unmaps it.
	var zeroedBeforeUnmap bool
	beforeUnmap = func(mem []byte) {
		zeroedBeforeUnmap = len(mem) == unix.Getpagesize() && bytes.Equal(mem, make([]byte, len(mem)))
	}
	defer func() { beforeUnmap = nil }()
	if bytes.Equal(key, make([]byte, KeySize)) {
		t.Fatal("the key page held zeroes")
	}

	s.Wipe()
	if !zeroedBeforeUnmap {
		t.Fatal("Wipe did not zero the page before unmapping it")
	}
	beforeUnmap = func([]byte) { t.Fatal("a second Wipe touched the page again") }
	s.Wipe() // idempotent
	if !s.Wiped() {
		t.Fatal("Wiped() is false after Wipe")
	}
	if mapped(t, addr) {
		t.Fatal("the key page is still mapped after Wipe")
	}
	if _, err := s.GetPublicKey(ctx); !errors.Is(err, ErrWiped) {
		t.Fatalf("GetPublicKey after Wipe: %v", err)
	}
	if err := s.SignEvent(ctx, &nostr.Event{Kind: 1}); !errors.Is(err, ErrWiped) {
		t.Fatalf("SignEvent after Wipe: %v", err)
	}
	if _, err := s.Encrypt(ctx, "x", peerPK); !errors.Is(err, ErrWiped) {
		t.Fatalf("Encrypt after Wipe: %v", err)
	}
	ct, _ := peer.Encrypt(ctx, "x", peerPK)
	if _, err := s.Decrypt(ctx, ct, peerPK); !errors.Is(err, ErrWiped) {
		t.Fatalf("Decrypt after Wipe: %v", err)
	}
}

func TestWipeWhileInUse(t *testing.T) {
	s, _ := pair(t)
	peer, _ := pair(t)
	peerPK, _ := peer.GetPublicKey(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				ev := &nostr.Event{Kind: 1, CreatedAt: nostr.Timestamp(1700000000 + i*100 + j), Content: "x"}
				err := s.SignEvent(ctx, ev)
				if err == nil {
					if ok, _ := ev.CheckSignature(); !ok {
						t.Error("bad signature")
					}
				} else if !errors.Is(err, ErrWiped) {
					t.Error(err)
				}
				if _, err := s.Encrypt(ctx, "y", peerPK); err != nil && !errors.Is(err, ErrWiped) {
					t.Error(err)
				}
				if i == 7 && j == 5 {
					s.Wipe()
				}
			}
		}(i)
	}
	wg.Wait()
	if !s.Wiped() {
		t.Fatal("not wiped")
	}
}

func TestUnlockNcryptsec(t *testing.T) {
	// The NIP-49 decryption vector (log N 16).
	const vector = "ncryptsec1qgg9947rlpvqu76pj5ecreduf9jxhselq2nae2kghhvd5g7dgjtcxfqtd67p9m0w57lspw8gsq6yphnm8623nsl8xn9j4jdzz84zm3frztj3z7s35vpzmqf6ksu8r89qk5z2zxfmu5gv8th8wclt0h4p"
	s, err := UnlockNcryptsec(vector, "nostr")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	want, _ := nostr.GetPublicKey("3501454135014541350145413501453fefb02227e449e57cf4d3a3ce05378683")
	if pk, _ := s.GetPublicKey(ctx); pk != want {
		t.Fatalf("vector unlocked to %s, want %s", pk, want)
	}

	if _, err := UnlockNcryptsec(vector, "Nostr"); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}

	skHex := nostr.GeneratePrivateKey()
	enc, err := nip49.Encrypt(skHex, "pässword", 8, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := UnlockNcryptsec(enc, "pässword")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Wipe()
	want2, _ := nostr.GetPublicKey(skHex)
	if pk, _ := s2.GetPublicKey(ctx); pk != want2 {
		t.Fatal("round trip gave another key")
	}

	encode := func(data []byte) string {
		b5, err := bech32.ConvertBits(data, 8, 5, true)
		if err != nil {
			t.Fatal(err)
		}
		s, err := bech32.Encode("ncryptsec", b5)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := make([]byte, 91)
	good[0], good[1] = 2, 16
	huge := append([]byte(nil), good...)
	huge[1] = 40 // would ask scrypt for a terabyte
	badVersion := append([]byte(nil), good...)
	badVersion[0] = 1
	badKSB := append([]byte(nil), good...)
	badKSB[2+16+24] = 7
	nsec, _ := bech32.ConvertBits(mustHex(t, skHex), 8, 5, true)
	nsecStr, _ := bech32.Encode("nsec", nsec)
	for name, in := range map[string]string{
		"empty":      "",
		"garbage":    "hello",
		"nsec":       nsecStr,
		"truncated":  encode(good[:50]),
		"huge log N": encode(huge),
		"version 1":  encode(badVersion),
		"bad ksb":    encode(badKSB),
		"bad bech32": vector[:len(vector)-1] + "q",
		"uppercase":  strings.ToUpper(vector[:20]) + vector[20:],
	} {
		if _, err := UnlockNcryptsec(in, "nostr"); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
