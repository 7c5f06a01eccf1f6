package pamtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDaemonKill9: nostr-homectl is killed with SIGKILL while a session writes. nostrfs (its
// child) gets SIGTERM, unmounts and keeps what it could not publish (the signer went with the
// daemon) in its cache; the restarted daemon's next session resumes it and publishes. Then,
// with the local cache wiped, a new session reads every fsync'd file from the relay and
// Blossom alone.
func TestDaemonKill9(t *testing.T) {
	alice := newIdent(t, "alice")
	e := newEnv(t, envOpts{users: []ident{alice}})
	home := filepath.Join(e.dir, "home", "alice")

	r := e.goPAM("alice", alice.password, 0, "authenticate", "open_session", "mounted")
	if r.err != nil {
		t.Fatalf("first session: %v", describe(r.err))
	}
	want := map[string][]byte{}
	for i := range 4 {
		name := fmt.Sprintf("f%d.bin", i)
		data := make([]byte, 1<<20+i)
		rand.Read(data)
		f, err := os.Create(filepath.Join(home, name))
		must(t, err)
		_, err = f.Write(data)
		must(t, err)
		must(t, f.Sync())
		must(t, f.Close())
		want[name] = data
	}
	must(t, e.daemon.Process.Kill())
	<-e.exited
	deadline := time.Now().Add(30 * time.Second)
	for fsType(home) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("%s still mounted 30 s after the daemon was killed", home)
		}
		time.Sleep(100 * time.Millisecond)
	}

	e.startDaemon(homectl(t))
	r = e.goPAM("alice", alice.password, 0, "authenticate", "open_session", "mounted")
	if r.err != nil {
		t.Fatalf("session after the restart: %v", describe(r.err))
	}
	for name, data := range want {
		if b, err := os.ReadFile(filepath.Join(home, name)); err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s after the daemon's restart: %d bytes, %v", name, len(b), err)
		}
	}
	if r := e.goPAM("alice", "", 0, "close_session", "unmounted"); r.err != nil {
		t.Fatalf("close_session: %v", describe(r.err))
	}

	// Everything must now be on the servers: wipe the cache and read it back.
	must(t, os.RemoveAll(filepath.Join(e.dir, "cache")))
	r = e.goPAM("alice", alice.password, 0, "authenticate", "open_session", "mounted")
	if r.err != nil {
		t.Fatalf("session with an empty cache: %v", describe(r.err))
	}
	for name, data := range want {
		if b, err := os.ReadFile(filepath.Join(home, name)); err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s from the servers alone: %d bytes, %v", name, len(b), err)
		}
	}
	if r := e.goPAM("alice", "", 0, "close_session", "unmounted"); r.err != nil {
		t.Fatalf("close_session: %v", describe(r.err))
	}
}
