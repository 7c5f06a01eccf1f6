package benchreport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The file system workloads of the mount benchmarks. Each runs against a directory (native,
// a FUSE mount, ...) and returns what it did and how long it took; the harness process does
// the I/O itself (or runs the usual tool: tar, ls, rm), so every target is driven the same way.

const ioBuf = 1 << 20 // bytes per read(2)/write(2) of the sequential workloads

// fillRandom fills b with pseudo-random bytes from seed (incompressible, and without the
// all-zero chunks a file system could store as holes).
func fillRandom(b []byte, seed uint64) {
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	r.Read(b)
}

// writeFile writes size bytes of pseudo-random data to path in ioBuf writes and closes it; the
// time includes the close (nostrfs seals a file on close).
func writeFile(path string, size int64, seed uint64) (time.Duration, error) {
	buf := make([]byte, ioBuf)
	t0 := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	for off := int64(0); off < size; off += ioBuf {
		fillRandom(buf, seed+uint64(off/ioBuf))
		n := min(int64(len(buf)), size-off)
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// seqRead reads path from start to end in ioBuf reads and returns the bytes and the time.
func seqRead(path string) (int64, time.Duration, error) {
	buf := make([]byte, ioBuf)
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var total int64
	for {
		n, err := f.Read(buf)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, 0, err
		}
	}
	return total, time.Since(t0), nil
}

// randRead reads 4 KiB blocks at random 4 KiB-aligned offsets of path (size bytes) with
// pread(2) for about dur and returns the reads done and the time taken.
func randRead(path string, size int64, dur time.Duration, seed uint64) (int, time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	const block = 4096
	blocks := size / block
	r := mrand.New(mrand.NewPCG(seed, 1))
	buf := make([]byte, block)
	n := 0
	t0 := time.Now()
	for {
		for range 256 {
			if _, err := f.ReadAt(buf, r.Int64N(blocks)*block); err != nil {
				return n, 0, err
			}
			n++
		}
		if d := time.Since(t0); d >= dur {
			return n, d, nil
		}
	}
}

// runTool runs name args with stdout and stderr to the returned error only, and times it.
func runTool(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, tailString(stderr.String(), 1000))
	}
	return d, nil
}

// treeCount counts the regular files, directories and symbolic links under dir (dir itself
// not included) and the bytes of the files.
type treeCount struct {
	Files, Dirs, Links int
	Bytes              int64
}

func (c treeCount) entries() int { return c.Files + c.Dirs + c.Links }

func countTree(dir string) (treeCount, error) {
	var c treeCount
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		switch {
		case d.IsDir():
			c.Dirs++
		case d.Type()&fs.ModeSymlink != 0:
			c.Links++
		case d.Type().IsRegular():
			c.Files++
			fi, err := d.Info()
			if err != nil {
				return err
			}
			c.Bytes += fi.Size()
		}
		return nil
	})
	return c, err
}

// readAll opens and reads every regular file under dir (lexical order) and returns how many
// files and bytes it read and the time.
func readAll(dir string) (files int, bytes int64, d time.Duration, err error) {
	buf := make([]byte, 128<<10)
	t0 := time.Now()
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		for {
			n, err := f.Read(buf)
			bytes += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return err
			}
		}
		files++
		return f.Close()
	})
	return files, bytes, time.Since(t0), err
}

// walkStat lstats every entry under dir (what `ls -lR` or `find -ls` asks of a file system)
// and returns how many it saw.
func walkStat(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Lstat(p); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// createFsync creates n files of size bytes in dir, each written, fsynced and closed before
// the next, and returns the time.
func createFsync(dir string, n, size int) (time.Duration, error) {
	buf := make([]byte, size)
	fillRandom(buf, 42)
	t0 := time.Now()
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return 0, err
		}
		buf[0], buf[1] = byte(i), byte(i>>8) // a distinct content each
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// makeTree creates files small files (size bytes each, distinct contents) under dir, in
// directories of perDir files: dir/dNNNN/fNNNNN. It returns the time.
func makeTree(ctx context.Context, dir string, files, perDir, size int) (time.Duration, error) {
	if perDir <= 0 {
		return 0, errors.New("makeTree: perDir must be positive")
	}
	buf := make([]byte, size)
	fillRandom(buf, 7)
	t0 := time.Now()
	var sub string
	for i := range files {
		if i%256 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if i%perDir == 0 {
			sub = filepath.Join(dir, fmt.Sprintf("d%04d", i/perDir))
			if err := os.Mkdir(sub, 0o755); err != nil {
				return 0, err
			}
		}
		if size >= 4 {
			buf[0], buf[1], buf[2], buf[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d", i%perDir)), buf, 0o644); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}
