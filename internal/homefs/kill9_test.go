package homefs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/cas"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homefs"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/tree"
	"github.com/nostr-homed/nostr-homed/internal/uploadq"
)

// The kill -9 test runs the file system in a child process (this test binary again, with
// HOMEFS_CHILD set) so that it can be killed for real, mid-write, mid-upload.

func TestMain(m *testing.M) {
	if os.Getenv("HOMEFS_CHILD") != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// childMain mounts a home as the environment says, prints "ready", serves until SIGTERM,
// then unmounts and drains (printing "drained" or "drain: ERR").
func childMain() int {
	env := func(k string) string { return os.Getenv("HOMEFS_" + k) }
	sk, hk, relay, bl, dir, mnt := env("SK"), env("HK"), env("RELAY"), env("BLOSSOM"), env("DIR"), env("MNT")
	signer, err := keyer.NewPlainKeySigner(sk)
	if err != nil {
		log.Fatal(err)
	}
	pk, _ := nostr.GetPublicKey(sk)
	hkb, _ := hex.DecodeString(hk)
	keys, err := tree.DeriveKeys(hkb)
	if err != nil {
		log.Fatal(err)
	}
	bc, err := blossom.New(signer, []blossom.Server{{URL: bl}}, blossom.WithRetries(1, 0), blossom.WithIdleTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	cache, err := cas.Open(filepath.Join(dir, "cas"), cas.Options{})
	if err != nil {
		log.Fatal(err)
	}
	q, err := uploadq.Open(filepath.Join(dir, "queue"), cache, bc, uploadq.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	q.Start(context.Background())
	var base *nostr.Event
	if res, err := relayio.FetchNewest(context.Background(), []string{relay},
		events.Expect{Kind: events.KindManifest, Author: pk, D: events.DTag("personal")}, 5*time.Second); err == nil {
		base = res.Selection.Newest
	}
	fsys, err := homefs.New(context.Background(), homefs.Options{
		Keys: keys, Store: bc, Cache: cache, Queue: q, StateDir: filepath.Join(dir, "state"),
		Signer: signer, Author: pk, Namespace: "personal", Machine: "child",
		Remote: &homefs.RelayRemote{Read: []string{relay}, Write: []string{relay}, Author: pk, Namespace: "personal", Timeout: 2 * time.Second},
		Base:   base, UID: testUID, GID: testGID, Debounce: 50 * time.Millisecond, Poll: -1,
		FlushTimeout: 20 * time.Second, Logf: log.Printf,
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := fsys.Mount(mnt); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	<-stop
	if err := fsys.Unmount(); err != nil {
		log.Printf("unmount: %v", err)
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fsys.Drain(ctx); err != nil {
		fmt.Println("drain:", err)
		return 1
	}
	fmt.Println("drained")
	return 0
}

type child struct {
	cmd *exec.Cmd
	out *bufio.Scanner
}

func startChild(t *testing.T, envs []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(envs, "HOMEFS_CHILD=1")...)
	cmd.Stderr = &prefixWriter{t: t}
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	c := &child{cmd: cmd, out: bufio.NewScanner(out)}
	ready := make(chan bool, 1)
	go func() { ready <- c.out.Scan() && c.out.Text() == "ready" }()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the child did not get ready")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child was not ready within 30 s")
	}
	return c
}

type prefixWriter struct{ t *testing.T }

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(l, "published manifest") {
			p.t.Log("child: " + l)
		}
	}
	return len(b), nil
}

// TestKill9 writes and fsyncs files on a mount served by a child process, kills it with
// SIGKILL at a random point (while seals and uploads are under way), restarts it on the same
// cache, and checks that every fsync'd file is, after the restart's drain, on the server and
// in the newest manifest, byte for byte, as another machine reads it. Rounds: 3, or 50 with
// NOSTR_HOMED_LONG=1.
func TestKill9(t *testing.T) {
	requireFUSE(t)
	rounds := 3
	if os.Getenv("NOSTR_HOMED_LONG") != "" {
		rounds = 50
	}
	e := setupEmpty(t)
	sk := nostr.GeneratePrivateKey()
	signer, _ := keyer.NewPlainKeySigner(sk)
	hk := randBytes(32)
	keys, err := tree.DeriveKeys(hk)
	must(t, err)
	e = emptyEnv(t, e.stack, signer, keys)
	dir := t.TempDir()
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	envs := []string{"HOMEFS_SK=" + sk, "HOMEFS_HK=" + hex.EncodeToString(hk), "HOMEFS_RELAY=" + e.stack.RelayURL(),
		"HOMEFS_BLOSSOM=" + e.stack.BlossomURL(), "HOMEFS_DIR=" + dir, "HOMEFS_MNT=" + mnt}
	t.Cleanup(func() {
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})

	want := map[string][]byte{} // every file fsync'd so far, as last fsync'd
	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 9))
	for round := range rounds {
		c := startChild(t, envs)
		// Write files until the kill: sizes from 1 byte to 3 MiB (several chunks to upload).
		killAt := time.Duration(50+r.IntN(400)) * time.Millisecond
		deadline := time.Now().Add(killAt)
		for i := 0; time.Now().Before(deadline) || i == 0; i++ {
			name := fmt.Sprintf("r%02d-f%03d", round, i)
			if i > 0 && r.IntN(4) == 0 {
				// Rewrite an earlier file of this round.
				name = fmt.Sprintf("r%02d-f%03d", round, r.IntN(i))
			}
			data := randBytes(1 + r.IntN(3<<20))
			f, err := os.Create(filepath.Join(mnt, name))
			must(t, err)
			_, err = f.Write(data)
			must(t, err)
			must(t, f.Sync())
			want[name] = data
			// close may fail if the kill comes now; the fsync'd state is what counts.
			f.Close()
		}
		// Also a file written but never fsync'd nor closed: it may or may not survive.
		g, err := os.Create(filepath.Join(mnt, fmt.Sprintf("r%02d-unsynced", round)))
		must(t, err)
		g.Write([]byte("maybe"))
		must(t, c.cmd.Process.Signal(syscall.SIGKILL))
		c.cmd.Wait()
		g.Close()
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount -l after kill: %v %s", err, out)
		}
		t.Logf("round %d: killed after %v with %d files fsync'd", round, killAt, len(want))
	}

	// Restart once more, and stop it cleanly: the drain publishes what the kills left.
	c := startChild(t, envs)
	for name, data := range want {
		b, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s on the restarted mount: %d bytes, %v (want %d)", name, len(b), err, len(data))
		}
	}
	must(t, c.cmd.Process.Signal(syscall.SIGTERM))
	var lines []string
	for c.out.Scan() {
		lines = append(lines, c.out.Text())
	}
	if err := c.cmd.Wait(); err != nil || len(lines) == 0 || lines[len(lines)-1] != "drained" {
		t.Fatalf("the clean stop after the kills: %v, output %q", err, lines)
	}

	// Another machine: the relay and Blossom alone.
	e2, fsys2 := e.roam(t)
	_ = e2
	m2 := mount(t, fsys2)
	for name, data := range want {
		b, err := os.ReadFile(filepath.Join(m2, name))
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s on another machine: %d bytes, %v (want %d)", name, len(b), err, len(data))
		}
	}
	t.Logf("%d rounds, %d fsync'd files all on the server and in manifest %s", rounds, len(want), strconv.Quote(fsys2.Status().Manifest))
}
