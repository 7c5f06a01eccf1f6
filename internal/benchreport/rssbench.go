package benchreport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// rssSizes are the RSS benchmark's sizes.
type rssSizes struct {
	Files  int // BENCH_RSS_FILES: files in the home (100000)
	PerDir int // BENCH_RSS_PER_DIR: files per directory (1000)
	Size   int // BENCH_RSS_FILE_SIZE: bytes per file (256)
}

func readRSSSizes() (rssSizes, error) {
	var s rssSizes
	var errs []error
	for _, v := range []struct {
		p    *int
		name string
		def  int
	}{{&s.Files, "BENCH_RSS_FILES", 100000}, {&s.PerDir, "BENCH_RSS_PER_DIR", 1000}, {&s.Size, "BENCH_RSS_FILE_SIZE", 256}} {
		n, err := envInt(v.name, v.def)
		errs = append(errs, err)
		*v.p = n
	}
	return s, errors.Join(errs...)
}

// rssBench: the resident memory of the process serving a large home after a full walk. The
// home is published directly in the home format (publishTree); a homefsd with an empty cache
// mounts it and the harness lstats every entry; the figure is that process's VmRSS.
// The baseline is go-fuse's loopback after the same walk of the same tree on a native
// directory.
func rssBench(e *Env) (figs []Figure, err error) {
	sz, err := readRSSSizes()
	if err != nil {
		return nil, err
	}
	stack, err := newHomeStack(e, filepath.Join(e.Tmp, "devstack"))
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	mnt := filepath.Join(e.Tmp, "mnt")
	var mounts []*homefsMount
	defer func() {
		for _, m := range mounts {
			if serr := m.stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()

	// The home, published directly in the home format (see publishTree).
	t0 := time.Now()
	if err := stack.publishTree(e.Ctx, sz.Files, sz.PerDir, sz.Size); err != nil {
		return nil, fmt.Errorf("publishing the home: %w", err)
	}
	dPublish := time.Since(t0)

	// The same tree on a native directory, for the loopback.
	orig := filepath.Join(e.Tmp, "orig")
	if err := os.Mkdir(orig, 0o755); err != nil {
		return nil, err
	}
	if _, err := makeTree(e.Ctx, orig, sz.Files, sz.PerDir, sz.Size); err != nil {
		return nil, err
	}
	want := sz.Files + (sz.Files+sz.PerDir-1)/sz.PerDir + 1 // files, directories, the root

	// nostrfs: a fresh mount with an empty cache; RSS before and after the walk.
	if err := dropCaches(); err != nil {
		return nil, err
	}
	m, err := stack.mount(filepath.Join(e.Tmp, "walk"), mnt)
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, m)
	nIdle, _, err := rssKiB(m.pid())
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	n, err := walkStat(mnt)
	dWalk := time.Since(t0)
	if err != nil || n != want {
		return nil, fmt.Errorf("walking the nostrfs home: %d entries of %d: %v", n, want, err)
	}
	nRSS, nHWM, err := rssKiB(m.pid())
	if err != nil {
		return nil, err
	}
	if _, err := walkStat(mnt); err != nil { // a second, warm walk: does memory keep growing?
		return nil, err
	}
	nRSS2, _, err := rssKiB(m.pid())
	if err != nil {
		return nil, err
	}
	if err := m.stop(); err != nil {
		return nil, err
	}

	// The loopback over the native tree, and the native walk itself (cold, for the walk's pace).
	if err := dropCaches(); err != nil {
		return nil, err
	}
	t0 = time.Now()
	if n, err := walkStat(orig); err != nil || n != want {
		return nil, fmt.Errorf("walking the native tree: %d entries of %d: %v", n, want, err)
	}
	dNative := time.Since(t0)
	if err := dropCaches(); err != nil {
		return nil, err
	}
	lb, err := startLoopback(e, orig, filepath.Join(e.Tmp, "lb"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := lb.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	lIdle, _, err := rssKiB(lb.pid())
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	if n, err := walkStat(lb.mnt); err != nil || n != want {
		return nil, fmt.Errorf("walking the loopback: %d entries of %d: %v", n, want, err)
	}
	dLoop := time.Since(t0)
	lRSS, lHWM, err := rssKiB(lb.pid())
	if err != nil {
		return nil, err
	}

	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	home := fmt.Sprintf("%d files of %d B in %d directories", sz.Files, sz.Size, (sz.Files+sz.PerDir-1)/sz.PerDir)
	return []Figure{
		{
			Name:     fmt.Sprintf("RSS after a full walk of a %d-file home", sz.Files),
			Measured: Measure{Label: "nostrfs (homefs) VmRSS", Value: mib(nRSS), Unit: "MiB"},
			Baseline: Measure{Label: "go-fuse loopback VmRSS, same walk", Value: mib(lRSS), Unit: "MiB"},
			Target:   &Target{Of: "value", Op: "<=", Limit: 64, Source: issueNostrfs},
			Note: fmt.Sprintf("home: %s (BENCH_RSS_FILES, BENCH_RSS_PER_DIR, BENCH_RSS_FILE_SIZE), published in %.1f s; "+
				"walked (lstat of every entry) on a fresh mount with an empty cache. Peak (VmHWM) %.1f MiB; after a second, "+
				"warm walk %.1f MiB. Loopback peak %.1f MiB. The target is on the value",
				home, dPublish.Seconds(), mib(nHWM), mib(nRSS2), mib(lHWM)),
		},
		{
			Name:     "RSS of an idle mount (context)",
			Measured: Measure{Label: "nostrfs (homefs) VmRSS after mount", Value: mib(nIdle), Unit: "MiB"},
			Baseline: Measure{Label: "go-fuse loopback VmRSS after mount", Value: mib(lIdle), Unit: "MiB"},
			Note:     "before the walk: what the walk adds is the difference",
		},
		{
			Name:     "cold full walk (lstat of every entry)",
			Measured: Measure{Label: "nostrfs, empty cache", Value: float64(want) / dWalk.Seconds(), Unit: "entries/s"},
			Baseline: Measure{Label: "native, after drop_caches", Value: float64(want) / dNative.Seconds(), Unit: "entries/s"},
			Note: fmt.Sprintf("nostrfs fetches and decrypts each directory's listing from Blossom on first look; "+
				"go-fuse loopback after drop_caches: %.0f entries/s", float64(want)/dLoop.Seconds()),
		},
	}, nil
}
