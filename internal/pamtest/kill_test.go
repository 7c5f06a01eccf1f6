package pamtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDaemonKill9: nostr-homectl is killed with SIGKILL while a session writes (2 rounds,
// 50 with NOSTR_HOMED_LONG=1), at a random point. nostrfs (its
// child) gets SIGTERM, unmounts and keeps what it could not publish (the signer went with the
// daemon) in its cache; the restarted daemon's next session resumes it and publishes. Then,
// with the local cache wiped, a new session reads every fsync'd file from the relay and
// Blossom alone.
func TestDaemonKill9(t *testing.T) {
	alice := newIdent(t, "alice")
	e := newEnv(t, envOpts{users: []ident{alice}})
	home := filepath.Join(e.dir, "home", "alice")

	rounds := 2
	if os.Getenv("NOSTR_HOMED_LONG") != "" {
		rounds = 50
	}
	want := map[string][]byte{}
	rnd := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for round := range rounds {
		r := e.goPAM("alice", alice.password, 0, "authenticate", "open_session", "mounted")
		if r.err != nil {
			t.Fatalf("round %d: session: %v", round, describe(r.err))
		}
		for name, data := range want {
			if b, err := os.ReadFile(filepath.Join(home, name)); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("round %d: %s after the daemon's restart: %d bytes, %v", round, name, len(b), err)
			}
		}
		// Write and fsync files, and kill the daemon while writes and uploads go on.
		stop := time.After(time.Duration(rnd.IntN(300)) * time.Millisecond)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("r%02d-f%d.bin", round, i)
				data := make([]byte, 1+rnd.IntN(2<<20))
				rand.Read(data)
				f, err := os.Create(filepath.Join(home, name))
				if err != nil {
					return
				}
				_, err = f.Write(data)
				if err == nil {
					err = f.Sync()
				}
				f.Close()
				if err == nil {
					want[name] = data
				}
			}
		}()
		<-done
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
	}
	r := e.goPAM("alice", alice.password, 0, "authenticate", "open_session", "mounted")
	if r.err != nil {
		t.Fatalf("session after the last restart: %v", describe(r.err))
	}
	for name, data := range want {
		if b, err := os.ReadFile(filepath.Join(home, name)); err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s after the daemon's restart: %d bytes, %v", name, len(b), err)
		}
	}
	if r := e.goPAM("alice", "", 0, "close_session", "unmounted"); r.err != nil {
		t.Fatalf("close_session: %v", describe(r.err))
	}
	t.Logf("%d rounds, %d fsync'd files", rounds, len(want))

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
