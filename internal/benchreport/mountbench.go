package benchreport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The mount benchmark: the same workloads on a native directory (the baseline), on go-fuse's
// example loopback file system over a native directory (a FUSE peer), and on nostrfs's file
// system (homefs, served by the homefsd helper over the dev stack). Sizes come from the
// environment (mountSizes); every figure is a rate, so the ratio is the fraction of native.

// Sources of the mount benchmark's targets and peer figures.
const issueNostrfs = `issue "nostrfs"`

// mountSizes are the mount benchmark's workload sizes.
type mountSizes struct {
	SeqMiB      int    // BENCH_SEQ_MIB: the sequential file, MiB (1024)
	RandMs      int    // BENCH_RAND_MS: each round of 4 KiB random reads, ms (1000)
	Rounds      int    // BENCH_ROUNDS: rounds of every workload, median reported (3)
	SlowRounds  int    // BENCH_SLOW_ROUNDS: of those, rounds nostrfs takes part in the slow phases (1)
	CreateFiles int    // BENCH_CREATE_FILES: files of create+fsync (2000)
	CreateSize  int    // bytes each (4096)
	UntarSrc    string // BENCH_UNTAR_SRC: the directory tarred once and untarred ($(go env GOROOT)/src)
}

func readMountSizes(e *Env) (mountSizes, error) {
	s := mountSizes{CreateSize: 4096}
	var errs []error
	for _, v := range []struct {
		p    *int
		name string
		def  int
	}{{&s.SeqMiB, "BENCH_SEQ_MIB", 1024}, {&s.RandMs, "BENCH_RAND_MS", 1000}, {&s.Rounds, "BENCH_ROUNDS", 3},
		{&s.SlowRounds, "BENCH_SLOW_ROUNDS", 1},
		{&s.CreateFiles, "BENCH_CREATE_FILES", 2000}} {
		n, err := envInt(v.name, v.def)
		errs = append(errs, err)
		*v.p = n
	}
	s.UntarSrc = os.Getenv("BENCH_UNTAR_SRC")
	if s.UntarSrc == "" {
		out, err := e.Command(nil, e.Go, "env", "GOROOT")
		if err != nil {
			errs = append(errs, err)
		}
		s.UntarSrc = filepath.Join(strings.TrimSpace(string(out)), "src")
	}
	return s, errors.Join(errs...)
}

// fsTarget is one file system the workloads run on.
type fsTarget struct {
	key    string // "native", "loopback", "nostrfs"
	dir    string // where the workloads write
	settle func() error
}

// rates collects per-round results: workload -> target key -> rates.
type rates map[string]map[string][]float64

func (r rates) add(w, t string, v float64) {
	if r[w] == nil {
		r[w] = map[string][]float64{}
	}
	r[w][t] = append(r[w][t], v)
}

func (r rates) med(w, t string) float64 { return median(r[w][t]) }

// spread prints the per-round values of w on t.
func (r rates) spread(w, t string) string {
	var s []string
	for _, v := range r[w][t] {
		s = append(s, fmtNum(v))
	}
	return strings.Join(s, ", ")
}

func mountBench(e *Env) (figs []Figure, err error) {
	sz, err := readMountSizes(e)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(sz.UntarSrc); err != nil {
		return nil, fmt.Errorf("the untar source: %w", err)
	}
	stack, err := newHomeStack(e, filepath.Join(e.Tmp, "devstack"))
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	lb, err := startLoopback(e, filepath.Join(e.Tmp, "lb-orig"), filepath.Join(e.Tmp, "lb"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := lb.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	nfsMnt := filepath.Join(e.Tmp, "nfs")
	// Every homefsd this benchmark starts; each is stopped once (stop is idempotent).
	var mounts []*homefsMount
	defer func() {
		for _, m := range mounts {
			if serr := m.stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	mountNFS := func(dir string) (*homefsMount, error) {
		m, err := stack.mount(filepath.Join(e.Tmp, dir), nfsMnt)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, m)
		return m, nil
	}
	nfs, err := mountNFS("nfs-a")
	if err != nil {
		return nil, err
	}
	passthrough := nfs.passthrough

	native := filepath.Join(e.Tmp, "native")
	if err := os.Mkdir(native, 0o755); err != nil {
		return nil, err
	}
	// settle ends a target's writing before anything is measured: nostrfs seals, uploads and
	// publishes (drain); then the kernel writes back every dirty page (sync), whichever file
	// system made it, so that no target's writeback lands in another's measurement.
	syncAll := func() error { unix.Sync(); return nil }
	targets := []fsTarget{
		{key: "native", dir: native, settle: syncAll},
		{key: "loopback", dir: lb.mnt, settle: syncAll},
		{key: "nostrfs", dir: nfsMnt, settle: func() error {
			if err := nfs.drain(); err != nil {
				return err
			}
			unix.Sync()
			return nil
		}},
	}
	order := func(round int) []fsTarget { // rotated each round: no target always goes first
		var o []fsTarget
		for i := range targets {
			o = append(o, targets[(i+round)%len(targets)])
		}
		return o
	}
	// slowOrder is order for the slow phases (cold read, tree): nostrfs takes part in the
	// first SlowRounds rounds only (a round of those costs minutes on nostrfs, seconds on the
	// others, which are also the noisier for it).
	slowOrder := func(round int) []fsTarget {
		var o []fsTarget
		for _, t := range order(round) {
			if t.key != "nostrfs" || round < sz.SlowRounds {
				o = append(o, t)
			}
		}
		return o
	}
	res := rates{}
	mb := func(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }
	size := int64(sz.SeqMiB) << 20
	big := func(t fsTarget) string { return filepath.Join(t.dir, "big.bin") }

	// 1. The sequential file: written once per target, read warm, read at random.
	for _, t := range targets {
		d, err := writeFile(big(t), size, 1)
		if err != nil {
			return nil, fmt.Errorf("%s: writing %d MiB: %w", t.key, sz.SeqMiB, err)
		}
		res.add("write", t.key, mb(size, d))
		if err := t.settle(); err != nil {
			return nil, fmt.Errorf("%s: after writing: %w", t.key, err)
		}
		if _, _, err := seqRead(big(t)); err != nil { // warms the page cache
			return nil, fmt.Errorf("%s: reading: %w", t.key, err)
		}
		e.Logf("%s: wrote %d MiB in %.2f s", t.key, sz.SeqMiB, d.Seconds())
	}
	for r := range sz.Rounds {
		if err := e.Ctx.Err(); err != nil {
			return nil, err
		}
		for _, t := range order(r) {
			n, d, err := seqRead(big(t))
			if err != nil || n != size {
				return nil, fmt.Errorf("%s: warm sequential read: %d of %d bytes: %v", t.key, n, size, err)
			}
			res.add("seq-warm", t.key, mb(n, d))
		}
		for _, t := range order(r) {
			n, d, err := randRead(big(t), size, time.Duration(sz.RandMs)*time.Millisecond, uint64(r))
			if err != nil {
				return nil, fmt.Errorf("%s: random read: %w", t.key, err)
			}
			res.add("rand", t.key, float64(n)/d.Seconds())
		}
		e.Logf("round %d: warm read MB/s %v, random reads/s %v", r, lastOf(res, "seq-warm", r), lastOf(res, "rand", r))
	}

	// 2. Cold: native and loopback after drop_caches; nostrfs a fresh mount with an empty
	// cache (the dev stack's Blossom server has the blobs: stopping the first mount drained
	// it), also after drop_caches.
	if err := nfs.stop(); err != nil {
		return nil, fmt.Errorf("stopping the first nostrfs mount (it publishes the file): %w", err)
	}
	var coldMounts []time.Duration
	for r := range sz.Rounds {
		if err := e.Ctx.Err(); err != nil {
			return nil, err
		}
		for _, t := range slowOrder(r) {
			var m *homefsMount
			if t.key == "nostrfs" {
				if m, err = mountNFS(fmt.Sprintf("nfs-cold-%d", r)); err != nil {
					return nil, err
				}
				coldMounts = append(coldMounts, m.mountTime)
			}
			if err := dropCaches(); err != nil {
				return nil, fmt.Errorf("drop_caches: %w", err)
			}
			n, d, err := seqRead(big(t))
			if err != nil || n != size {
				return nil, fmt.Errorf("%s: cold sequential read: %d of %d bytes: %v", t.key, n, size, err)
			}
			res.add("seq-cold", t.key, mb(n, d))
			if m != nil && r == 0 {
				// Once: the same file again on the same mount after drop_caches: its blobs are
				// in nostrfs's cache now, so this is the decoding path without the network.
				if err := dropCaches(); err != nil {
					return nil, fmt.Errorf("drop_caches: %w", err)
				}
				if n, d, err = seqRead(big(t)); err != nil || n != size {
					return nil, fmt.Errorf("%s: re-read from the cache: %d of %d bytes: %v", t.key, n, size, err)
				}
				res.add("seq-cached", t.key, mb(n, d))
			}
			if m != nil {
				if err := m.stop(); err != nil {
					return nil, err
				}
				os.RemoveAll(filepath.Join(e.Tmp, fmt.Sprintf("nfs-cold-%d", r)))
			}
		}
		e.Logf("round %d: cold read MB/s %v", r, lastOf(res, "seq-cold", r))
	}

	// 3. The tree: untar, warm ls -lR, read every file, rm -rf; create+fsync. On a new mount
	// (a cold cache again; the home holds the sequential file, not read here).
	if nfs, err = mountNFS("nfs-b"); err != nil {
		return nil, err
	}
	targets[2].settle = func() error { return nfs.drain() }
	tarPath := filepath.Join(e.Tmp, "src.tar")
	if _, err := runTool(e.Ctx, "tar", "-cf", tarPath, "-C", filepath.Dir(sz.UntarSrc), filepath.Base(sz.UntarSrc)); err != nil {
		return nil, err
	}
	var want treeCount
	for r := range sz.Rounds {
		for _, t := range slowOrder(r) {
			if err := e.Ctx.Err(); err != nil {
				return nil, err
			}
			dst := filepath.Join(t.dir, fmt.Sprintf("tree-%d", r))
			if err := os.Mkdir(dst, 0o755); err != nil {
				return nil, err
			}
			d, err := runTool(e.Ctx, "tar", "--no-same-owner", "-xf", tarPath, "-C", dst)
			if err != nil {
				return nil, fmt.Errorf("%s: untar: %w", t.key, err)
			}
			if err := t.settle(); err != nil {
				return nil, fmt.Errorf("%s: after untar: %w", t.key, err)
			}
			c, err := countTree(dst) // also the first, cold, walk
			if err != nil {
				return nil, fmt.Errorf("%s: walking the untarred tree: %w", t.key, err)
			}
			if want == (treeCount{}) {
				want = c
			} else if c != want {
				return nil, fmt.Errorf("%s: the untarred tree has %+v, the first one had %+v", t.key, c, want)
			}
			res.add("untar", t.key, float64(c.entries())/d.Seconds())
			if _, err := runTool(e.Ctx, "ls", "-lR", dst); err != nil {
				return nil, err
			}
			if d, err = runTool(e.Ctx, "ls", "-lR", dst); err != nil {
				return nil, err
			}
			res.add("ls", t.key, float64(c.entries())/d.Seconds())
			files, bytes, d, err := readAll(dst)
			if err != nil || files != c.Files || bytes != c.Bytes {
				return nil, fmt.Errorf("%s: read-all: %d files %d bytes of %d and %d: %v", t.key, files, bytes, c.Files, c.Bytes, err)
			}
			res.add("readall", t.key, float64(files)/d.Seconds())
			if d, err = runTool(e.Ctx, "rm", "-rf", dst); err != nil {
				return nil, err
			}
			res.add("rm", t.key, float64(c.entries()+1)/d.Seconds())
			if err := t.settle(); err != nil {
				return nil, fmt.Errorf("%s: after rm -rf: %w", t.key, err)
			}

			cf := filepath.Join(t.dir, fmt.Sprintf("cf-%d", r))
			if err := os.Mkdir(cf, 0o755); err != nil {
				return nil, err
			}
			if d, err = createFsync(cf, sz.CreateFiles, sz.CreateSize); err != nil {
				return nil, fmt.Errorf("%s: create+fsync: %w", t.key, err)
			}
			res.add("create", t.key, float64(sz.CreateFiles)/d.Seconds())
			if _, err := runTool(e.Ctx, "rm", "-rf", cf); err != nil {
				return nil, err
			}
			if err := t.settle(); err != nil {
				return nil, fmt.Errorf("%s: after create+fsync: %w", t.key, err)
			}
		}
		e.Logf("round %d: untar %v, ls -lR %v, read-all %v, rm -rf %v, create+fsync %v (per s)", r,
			lastOf(res, "untar", r), lastOf(res, "ls", r), lastOf(res, "readall", r), lastOf(res, "rm", r), lastOf(res, "create", r))
	}
	if err := nfs.stop(); err != nil {
		return nil, err
	}

	nativeLabel := "native " + fsType(e.Ctx, native)
	seq := fmt.Sprintf("%d MiB", sz.SeqMiB)
	tree := fmt.Sprintf("%s (%d files, %d dirs, %d symlinks, %.0f MB)", sz.UntarSrc, want.Files, want.Dirs, want.Links, float64(want.Bytes)/1e6)
	type wl struct {
		key, name, unit string
		target          float64 // 0: none
		peer            string  // the issue's peer figure
		what            string
	}
	wls := []wl{
		{"seq-warm", "warm sequential read " + seq, "MB/s", 0.9, "best FUSE peer in the issue: 0.8× (JuiceFS)",
			"read in 1 MiB read(2)s after the file was written through the mount and read once; nostrfs serves it from its working copy"},
		{"seq-cold", "cold sequential read " + seq, "MB/s", 0.9, "",
			"native and loopback after drop_caches; nostrfs on a fresh mount with an empty cache, fetching, verifying and decrypting from the dev stack's Blossom server (also after drop_caches): no passthrough here, the file is remote"},
		{"seq-cached", "sequential read " + seq + ", blobs in nostrfs's cache, page cache dropped", "MB/s", 0, "",
			"once, on the first cold round's mount right after its cold read, after drop_caches: the blobs are in the " +
				"cache, so this is nostrfs's read path (open the cached blob, verify, decrypt) without the network; the " +
				"baseline is the same round's native cold read"},
		{"rand", "4 KiB random read (warm)", "reads/s", 0.9, "",
			fmt.Sprintf("pread(2) of 4 KiB at random aligned offsets of the %s file for %d ms per round, one thread", seq, sz.RandMs)},
		{"untar", "untar of the Go source tree", "entries/s", 0.3, "go-fuse loopback in the issue: 0.15×",
			"`tar --no-same-owner -xf` of " + tree + ", tarred once per run; nostrfs seals every file on close (uploads run in the background)"},
		{"ls", "warm ls -lR", "entries/s", 0.5, "JuiceFS in the issue: 0.14×",
			"the second `ls -lR` of the untarred tree (the first warms)"},
		{"readall", "read every file back", "files/s", 0.5, "peer in the issue: 0.1×",
			"open and read every file of the untarred tree, right after untar and ls -lR"},
		{"create", fmt.Sprintf("create+fsync of %d × %d B files", sz.CreateFiles, sz.CreateSize), "files/s", 0.6, "peer in the issue: 0.45×",
			"each file created, written, fsynced and closed before the next"},
		{"rm", "rm -rf of the untarred tree", "entries/s", 0, "", "`rm -rf` of the untarred tree after read-all"},
		{"write", "sequential write " + seq + " (with close)", "MB/s", 0, "",
			"1 MiB write(2)s of pseudo-random data, then close; nostrfs seals the file on close (hashes, encrypts and stores every chunk in its cache and journals it for upload), so close is included"},
	}
	res.add("seq-cached", "native", res["seq-cold"]["native"][0])
	for _, w := range wls {
		base := res.med(w.key, "native")
		bl := Measure{Label: nativeLabel, Value: base, Unit: w.unit}
		var tgt *Target
		if w.target > 0 {
			tgt = &Target{Of: "ratio", Op: ">=", Limit: w.target, Source: issueNostrfs}
		}
		note := fmt.Sprintf("%s. Each round (the figures are their medians): nostrfs %s, native %s, loopback %s %s", w.what,
			res.spread(w.key, "nostrfs"), res.spread(w.key, "native"), res.spread(w.key, "loopback"), w.unit)
		if w.peer != "" {
			note += "; " + w.peer
		}
		nf := Figure{Name: w.name + ": nostrfs", Measured: Measure{Label: "nostrfs (homefs)", Value: res.med(w.key, "nostrfs"), Unit: w.unit},
			Baseline: bl, Target: tgt, Note: note}
		if w.key == "seq-cached" {
			nf.Note = fmt.Sprintf("%s. nostrfs %s, native %s %s", w.what, res.spread(w.key, "nostrfs"), res.spread(w.key, "native"), w.unit)
			figs = append(figs, nf)
			continue
		}
		figs = append(figs, nf,
			Figure{Name: w.name + ": go-fuse loopback (peer)", Measured: Measure{Label: "go-fuse loopback", Value: res.med(w.key, "loopback"), Unit: w.unit},
				Baseline: bl})
	}
	var cm []float64
	for _, d := range coldMounts {
		cm = append(cm, ms(d))
	}
	figs[0].Note += fmt.Sprintf(". nostrfs passthrough: %s", passthrough)
	figs[2].Note += fmt.Sprintf(". Each cold nostrfs mount took %s ms from exec to ready (not in the read time)", fmtList(cm))
	return figs, nil
}

// lastOf is round's value of workload w for each target that took part in it (for the log).
func lastOf(r rates, w string, round int) map[string]string {
	out := map[string]string{}
	for t, vs := range r[w] {
		if len(vs) == round+1 {
			out[t] = fmtNum(vs[round])
		}
	}
	return out
}

func fmtList(vs []float64) string {
	var s []string
	for _, v := range vs {
		s = append(s, fmtNum(v))
	}
	return strings.Join(s, ", ")
}
