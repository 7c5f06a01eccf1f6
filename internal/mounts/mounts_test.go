package mounts

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:           "/tmp/a",
		`/tmp/a\040b`:      "/tmp/a b",
		`/tmp/x\011y\134z`: "/tmp/x\ty\\z",
		`/tmp/not\08`:      `/tmp/not\08`,
		`/tmp/end\04`:      `/tmp/end\04`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestList: the root is listed with its type; a tmpfs mounted below a directory (as root)
// is At that path, Under it, and gone after DetachUnder.
func TestList(t *testing.T) {
	if root, err := At("/"); err != nil || root == "" {
		t.Fatalf("At(/) = %q, %v", root, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "with space")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountTmpfs(mnt); err != nil {
		t.Fatal(err)
	}
	if got, err := At(mnt); err != nil || got != "tmpfs" {
		t.Errorf("At(%q) = %q, %v; want tmpfs", mnt, got, err)
	}
	if ms, err := Under(dir); err != nil || len(ms) != 1 || ms[0].Point != mnt {
		t.Errorf("Under(%q) = %v, %v", dir, ms, err)
	}
	if ms, err := DetachUnder(dir); err != nil || len(ms) != 1 {
		t.Errorf("DetachUnder(%q) = %v, %v", dir, ms, err)
	}
	if got, _ := At(mnt); got != "" {
		t.Errorf("after DetachUnder, %q still has %q", mnt, got)
	}
}
