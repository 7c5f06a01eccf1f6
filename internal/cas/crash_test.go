package cas

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	crashDirEnv  = "CAS_TEST_CRASH_DIR"
	crashSeedEnv = "CAS_TEST_CRASH_SEED"
	crashQuota   = 24 << 20
)

// TestCrashChild is the child process of TestKill9DuringPuts: it writes objects into the store
// forever (Put and Writer, some pinned "unacked" first), printing "ok HASH PINNED" after each
// one returned, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestKill9DuringPuts")
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	s, err := Open(dir, Options{Quota: crashQuota})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	// One random pool, sliced at random offsets: the child spends its time in Put, not in
	// generating bytes, so that a kill usually lands in the middle of a write.
	var key [32]byte
	key[0] = byte(seed)
	pool := make([]byte, 8<<20)
	rand.NewChaCha8(key).Read(pool)
	stop := time.Now().Add(60 * time.Second) // in case the parent is gone
	for i := 0; time.Now().Before(stop); i++ {
		size := 64<<10 + rng.IntN(3<<20)
		off := rng.IntN(len(pool) - size)
		data := pool[off : off+size]
		binary.LittleEndian.PutUint64(data, uint64(seed)<<32|uint64(i))
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		pinned := i%3 == 0
		if pinned {
			if err := s.Pin(h, "unacked"); err != nil {
				fmt.Println("error", err)
				os.Exit(2)
			}
		}
		if i%2 == 0 {
			_, err = s.Put(h, bytes.NewReader(data))
		} else {
			w := s.NewWriter()
			for off := 0; off < len(data) && err == nil; off += 256 << 10 {
				_, err = w.Write(data[off:min(off+256<<10, len(data))])
			}
			if err == nil {
				_, _, err = w.Commit()
			}
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Printf("ok %s %v\n", h, pinned)
	}
	os.Exit(0)
}

// TestKill9DuringPuts kills (SIGKILL) a child process that is writing objects, several times,
// and checks after each kill that a reopened store has removed the leftover temp files, that
// every object file hashes to its name, and that every acknowledged pinned object is present
// and still pinned.
func TestKill9DuringPuts(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	acked := map[string]bool{} // hash -> pinned
	midPut := 0
	rounds := 0
	for round := 0; round < 12 && !(round >= 4 && midPut >= 2); round++ {
		rounds++
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=90s")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		record := func(line string) {
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "ok":
				acked[f[1]] = acked[f[1]] || f[2] == "true"
			case len(f) > 0 && f[0] == "error":
				t.Errorf("child: %s", line)
			}
		}
		want := 3 + round%4
		for n := 0; n < want && sc.Scan(); n++ {
			record(sc.Text())
		}
		time.Sleep(time.Duration(rand.IntN(15000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for sc.Scan() { // lines written before the kill
			record(sc.Text())
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die of SIGKILL: %v", err)
		}
		left := tmpFiles(t, dir)
		if len(left) > 0 {
			midPut++
		}

		s, err := Open(dir, Options{Quota: crashQuota, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if f := tmpFiles(t, dir); len(f) != 0 {
			t.Fatalf("round %d: temp files after reopen: %v", round, f)
		}
		files := objectFiles(t, dir)
		for _, h := range files {
			f, err := os.Open(filepath.Join(dir, "objects", h[:2], h))
			if err != nil {
				t.Fatal(err)
			}
			hh := sha256.New()
			io.Copy(hh, f)
			f.Close()
			if got := hex.EncodeToString(hh.Sum(nil)); got != h {
				t.Fatalf("round %d: object %s holds bytes hashing to %s: a partial object", round, h, got)
			}
			o, err := s.Open(h)
			if err != nil {
				t.Fatalf("round %d: Open(%s): %v", round, h, err)
			}
			o.Close()
		}
		for h, pinned := range acked {
			if !pinned {
				continue
			}
			if !s.Has(h) {
				t.Fatalf("round %d: acknowledged pinned object %s lost", round, h)
			}
			if s.Pins(h)["unacked"] < 1 {
				t.Fatalf("round %d: pin of %s lost", round, h)
			}
		}
		st := s.Stats()
		t.Logf("round %d: killed with %d temp file(s) pending; %d objects verified, %d acknowledged so far, stats %+v",
			round, len(left), len(files), len(acked), st)
		s.Close()
	}
	if midPut == 0 {
		t.Fatalf("in %d rounds no kill landed in the middle of a write (no temp file left): the test proved nothing", rounds)
	}
}
