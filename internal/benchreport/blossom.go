package benchreport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/nostr-homed/nostr-homed/internal/syncbuf"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/blossom"
)

const (
	blossomBlobSize = 64 << 20
	blossomRounds   = 7
)

func blossomBench(e *Env) ([]Figure, error) {
	bin, err := e.Artifact("nostr-homed-devstack")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(e.Ctx, 3*time.Minute)
	defer cancel()
	url, stop, err := startDevstack(ctx, bin, filepath.Join(e.Tmp, "devstack"))
	if err != nil {
		return nil, err
	}
	defer stop()

	plainURL, closePlain, err := startPlainServer(filepath.Join(e.Tmp, "plain"))
	if err != nil {
		return nil, err
	}
	defer closePlain()

	signer, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		return nil, err
	}
	bc, err := blossom.New(signer, []blossom.Server{{URL: url}}, blossom.WithRetries(1, 0))
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	data := make([]byte, blossomBlobSize)
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	var bUp, bDown, pUp, pDown []float64
	for round := range blossomRounds {
		binary.LittleEndian.PutUint64(data, uint64(round)) // a new blob each round
		up, down, err := blossomRoundTrip(ctx, bc, data)
		if err != nil {
			return nil, fmt.Errorf("round %d, blossom: %w", round, err)
		}
		pu, pd, err := plainRoundTrip(ctx, hc, plainURL, data)
		if err != nil {
			return nil, fmt.Errorf("round %d, plain: %w", round, err)
		}
		e.Logf("round %d: blossom up %.0f ms down %.0f ms, plain up %.0f ms down %.0f ms", round, up, down, pu, pd)
		bUp, bDown, pUp, pDown = append(bUp, up), append(bDown, down), append(pUp, pu), append(pDown, pd)
	}
	sum := func(a, b []float64) []float64 {
		out := make([]float64, len(a))
		for i := range a {
			out[i] = a[i] + b[i]
		}
		return out
	}
	mbps := func(ms float64) float64 { return blossomBlobSize / (ms / 1e3) / 1e6 }
	fig := func(name, label, baseLabel string, m, b []float64) Figure {
		mm, bb := median(m), median(b)
		return Figure{
			Name:     name,
			Measured: Measure{Label: label, Value: mm, Unit: "ms/64 MiB"},
			Baseline: Measure{Label: baseLabel, Value: bb, Unit: "ms/64 MiB"},
			Note:     fmt.Sprintf("%.0f MB/s against %.0f MB/s", mbps(mm), mbps(bb)),
		}
	}
	return []Figure{
		fig("upload 64 MiB", "hash, HEAD, PUT /upload to devstack", "plain PUT + fsync", bUp, pUp),
		fig("download 64 MiB", "GET /<sha256>, verified", "plain GET", bDown, pDown),
		fig("upload+download 64 MiB", "Blossom round trip", "plain round trip", sum(bUp, bDown), sum(pUp, pDown)),
	}, nil
}

// blossomRoundTrip uploads data with the Blossom client and downloads it back; it returns
// both times in milliseconds.
func blossomRoundTrip(ctx context.Context, bc *blossom.Client, data []byte) (upMs, downMs float64, err error) {
	t0 := time.Now()
	r := bytes.NewReader(data)
	hash, err := blobstore.HashReaderAt(r, int64(len(data)))
	if err != nil {
		return 0, 0, err
	}
	if _, err := bc.Put(ctx, hash, int64(len(data)), r); err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	body, err := bc.Get(ctx, hash)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, body) // Get fails at EOF if the bytes do not match the hash
	body.Close()
	if err != nil {
		return 0, 0, err
	}
	if n != int64(len(data)) {
		return 0, 0, fmt.Errorf("downloaded %d bytes of %d", n, len(data))
	}
	t2 := time.Now()
	return ms(t1.Sub(t0)), ms(t2.Sub(t1)), nil
}

// plainRoundTrip PUTs data to the plain server and GETs it back.
func plainRoundTrip(ctx context.Context, hc *http.Client, url string, data []byte) (upMs, downMs float64, err error) {
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url+"/blob", bytes.NewReader(data))
	if err != nil {
		return 0, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, 0, fmt.Errorf("PUT: %s", resp.Status)
	}
	t1 := time.Now()
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, url+"/blob", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err = hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK || n != int64(len(data)) {
		return 0, 0, fmt.Errorf("GET: %s, %d bytes of %d", resp.Status, n, len(data))
	}
	t2 := time.Now()
	return ms(t1.Sub(t0)), ms(t2.Sub(t1)), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startPlainServer serves PUT /blob (body to a file, fsynced) and GET /blob (http.ServeFile)
// on a free loopback port: the baseline of the Blossom benchmark.
func startPlainServer(dir string) (url string, closeFn func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "blob")
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /blob", func(w http.ResponseWriter, r *http.Request) {
		tmp := path + ".tmp"
		f, err := os.Create(tmp)
		if err == nil {
			_, err = io.Copy(f, r.Body)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// startDevstack starts the dev stack binary on a free loopback port and waits for "ready".
// stop sends SIGTERM and waits for it to exit (SIGKILL after 10 s).
func startDevstack(ctx context.Context, bin, dataDir string) (blossomURL string, stop func(), err error) {
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--data", dataDir)
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	waited := make(chan error, 1)
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		waited <- cmd.Wait()
	}()
	// Keeps reading stdout so the child never blocks on it once we stop listening.
	drain := func() {
		go func() {
			for range lines {
			}
		}()
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", func() {}, fmt.Errorf("%s exited before ready: %s", bin, strings.TrimSpace(stderr.String()))
			}
			if v, ok := strings.CutPrefix(l, "blossom: "); ok {
				blossomURL = v
			}
			if l == "ready" {
				drain()
				if blossomURL == "" {
					stop()
					return "", nil, errors.New("devstack printed no blossom URL")
				}
				return blossomURL, stop, nil
			}
		case <-deadline:
			drain()
			stop()
			return "", nil, fmt.Errorf("%s not ready after 30 s: %s", bin, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			drain()
			stop()
			return "", nil, ctx.Err()
		}
	}
}
