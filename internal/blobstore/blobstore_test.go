package blobstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCheckHash(t *testing.T) {
	good := strings.Repeat("0a", 32)
	if err := CheckHash(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", good[:63], good + "0", strings.ToUpper(good), "../" + good[3:], strings.Repeat("g", 64)} {
		if err := CheckHash(bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("CheckHash(%q) = %v", bad, err)
		}
	}
}

func TestVerifyingReader(t *testing.T) {
	data := []byte("the quick brown fox")
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	read := func(b []byte, size int64) error {
		_, err := io.ReadAll(VerifyingReader(io.NopCloser(bytes.NewReader(b)), h, size))
		return err
	}
	if err := read(data, int64(len(data))); err != nil {
		t.Fatalf("right bytes: %v", err)
	}
	if err := read(data, -1); err != nil {
		t.Fatalf("right bytes, size unknown: %v", err)
	}
	tampered := bytes.Clone(data)
	tampered[3] ^= 1
	for name, err := range map[string]error{
		"tampered":  read(tampered, -1),
		"truncated": read(data[:5], -1),
		"too long":  read(append(bytes.Clone(data), 'x'), int64(len(data))),
		"short":     read(data[:5], int64(len(data))),
	} {
		if !errors.Is(err, ErrHashMismatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got, err := HashReaderAt(bytes.NewReader(data), int64(len(data))); err != nil || got != h {
		t.Fatalf("HashReaderAt = %s, %v", got, err)
	}
	if _, err := HashReaderAt(bytes.NewReader(data), 100); err == nil {
		t.Fatal("HashReaderAt past the end succeeded")
	}
}
