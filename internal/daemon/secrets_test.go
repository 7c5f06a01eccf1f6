package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nostr-homed/nostr-homed/internal/events"
)

const testUID = 70123

func rootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: secrets are chowned to the user")
	}
}

// runtimeDir makes a root-owned 0755 runtime directory.
func runtimeDir(t *testing.T) string {
	rt := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(rt, 0o755); err != nil {
		t.Fatal(err)
	}
	return rt
}

var testFiles = []events.SecretFile{{Name: "a", Data: []byte("secret a")}, {Name: "b.key", Data: []byte("secret b")}}

func TestSecretsRefuseSymlinkedRuntimeDir(t *testing.T) {
	rootOnly(t)
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o755)
	link := filepath.Join(base, "link")
	os.Symlink(real, link)
	_, err := writeSecrets(filepath.Join(link, "run"), testUID, testUID, testFiles)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a symlink in the runtime dir's path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(real, "run")); !os.IsNotExist(err) {
		t.Fatalf("a directory was created through the link: %v", err)
	}
	// A missing runtime dir is created, 0755.
	fresh := filepath.Join(base, "fresh", "run")
	if _, err := writeSecrets(fresh, testUID, testUID, testFiles); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("created runtime dir: %v %v", st, err)
	}

	loose := filepath.Join(base, "loose")
	os.Mkdir(loose, 0o777)
	os.Chmod(loose, 0o777)
	if _, err := writeSecrets(loose, testUID, testUID, testFiles); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("a world-writable runtime dir: %v", err)
	}
}

func TestSecretsDoNotFollowPlantedLinks(t *testing.T) {
	rootOnly(t)
	rt := runtimeDir(t)
	victim := filepath.Join(t.TempDir(), "victim")
	os.Mkdir(victim, 0o755)
	victimFile := filepath.Join(victim, "passwd")
	os.WriteFile(victimFile, []byte("precious"), 0o644)
	uidDir := filepath.Join(rt, strconv.Itoa(testUID))

	// RuntimeDir/UID as a symlink: refused, victim untouched; wipe removes only the link.
	os.Symlink(victim, uidDir)
	if _, err := writeSecrets(rt, testUID, testUID, testFiles); err == nil {
		t.Fatal("a symlinked UID directory was written through")
	}
	if err := wipeSecrets(rt, testUID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(uidDir); !os.IsNotExist(err) {
		t.Fatalf("the planted link is still there: %v", err)
	}

	// The user (who owns RuntimeDir/UID) planted secrets -> victim, and a hard link and a
	// directory inside an old secrets dir: the link is replaced, not followed.
	os.Mkdir(uidDir, 0o700)
	os.Symlink(victim, filepath.Join(uidDir, "secrets"))
	dir, err := writeSecrets(rt, testUID, testUID, testFiles)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		t.Fatalf("secrets is not a real directory: %v %v", st, err)
	}
	if b, _ := os.ReadFile(victimFile); string(b) != "precious" {
		t.Fatalf("victim changed: %q", b)
	}
	if entries, _ := os.ReadDir(victim); len(entries) != 1 {
		t.Fatalf("files written into the victim: %v", entries)
	}
	for _, f := range testFiles {
		st, err := os.Lstat(filepath.Join(dir, f.Name))
		if err != nil || st.Mode() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != testUID {
			t.Fatalf("%s: %v %v", f.Name, st, err)
		}
	}

	// A hard link to the victim and a subdirectory planted in the secrets dir: the wipe
	// unlinks the hard link without zeroing the victim, and removes everything.
	if err := os.Link(victimFile, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755)
	os.Symlink(victim, filepath.Join(dir, "sub", "link"))
	// Keep a descriptor of a secret file: after the wipe it must read as zeros.
	f, err := os.Open(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := wipeSecrets(rt, testUID); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victimFile); string(b) != "precious" {
		t.Fatalf("the wipe zeroed a hard-linked file: %q", b)
	}
	if _, err := os.Lstat(uidDir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", uidDir, err)
	}
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	if n != len("secret a") || !bytes.Equal(buf[:n], make([]byte, n)) {
		t.Fatalf("the wiped file was not zeroed: %q", buf[:n])
	}
}

func TestMountPoint(t *testing.T) {
	rootOnly(t)
	base := t.TempDir()
	home := filepath.Join(base, "alice")
	if err := makeMountPoint(home, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Lstat(home)
	if st.Mode() != os.ModeDir|0o700 || st.Sys().(*syscall.Stat_t).Uid != testUID {
		t.Fatalf("mount point %v uid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
	// An existing directory is left as it is.
	os.Chmod(home, 0o750)
	if err := makeMountPoint(home, testUID+1, testUID+1); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(home); st.Mode().Perm() != 0o750 || st.Sys().(*syscall.Stat_t).Uid != testUID {
		t.Fatalf("an existing mount point was changed: %v", st.Mode())
	}
	link := filepath.Join(base, "bob")
	os.Symlink("/etc", link)
	if err := makeMountPoint(link, testUID, testUID); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a symlinked mount point: %v", err)
	}
}
