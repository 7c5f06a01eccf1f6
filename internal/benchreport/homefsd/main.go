// Command homefsd is a bench-only helper of `make bench` (package internal/benchreport): it
// mounts one home with package homefs, the same file system code nostrfs runs, and serves it
// until SIGTERM. The benchmarks run it as a child process so that what they measure of the
// serving process (its RSS above all) is the file system's alone, not the harness's.
//
// It differs from nostrfs (internal/homemount) only in where the pieces come from: the
// user's key is a plain in-process signer (BENCH_HOMEFS_SK, hex) instead of the session signer
// on the system bus, the home key comes from BENCH_HOMEFS_HOME_KEY (hex) instead of the
// user's secrets event, and the relay and Blossom server are given on the command line
// instead of the user's settings. The homefs.Options are those homemount sets.
//
//	homefsd --mount DIR --dir DIR --relay ws://... --blossom http://...
//
// --dir holds cas/, queue/ and state/ as Cache.Dir/UID does for nostrfs. The base manifest is
// the newest on the relay (none: a new, empty home).
//
// Lines on stdout: "passthrough: yes|no (...)" and "ready" once mounted; after SIGUSR1,
// "drained" (every change sealed, uploaded and published) or "drain failed: ..."; after
// SIGTERM it unmounts, drains (bounded by --flush-timeout) and prints "stopped".
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homefs"
	"github.com/nostr-homed/nostr-homed/internal/homemount"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
	"github.com/nostr-homed/nostr-homed/internal/tree"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "homefsd:", err)
		os.Exit(1)
	}
}

func run() error {
	mnt := flag.String("mount", "", "mount point `dir`")
	dir := flag.String("dir", "", "cache `dir`: cas/, queue/, state/")
	relay := flag.String("relay", "", "relay `url`")
	blossomURL := flag.String("blossom", "", "Blossom server `url`")
	uid := flag.Uint("uid", 0, "owner of every inode")
	gid := flag.Uint("gid", 0, "group of every inode")
	flush := flag.Duration("flush-timeout", 10*time.Minute, "bound of the final drain")
	noPT := flag.Bool("no-passthrough", false, "turn FUSE passthrough off")
	flag.Parse()
	if *mnt == "" || *dir == "" || *relay == "" || *blossomURL == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	sk := os.Getenv("BENCH_HOMEFS_SK")
	hk, err := hex.DecodeString(os.Getenv("BENCH_HOMEFS_HOME_KEY"))
	if sk == "" || err != nil {
		return errors.New("BENCH_HOMEFS_SK and BENCH_HOMEFS_HOME_KEY (hex) are required")
	}
	logf := log.New(os.Stderr, "", log.Lmicroseconds).Printf

	ctx := context.Background()
	signer, err := keyer.NewPlainKeySigner(sk)
	if err != nil {
		return err
	}
	pk, err := signer.GetPublicKey(ctx)
	if err != nil {
		return err
	}
	keys, err := tree.DeriveKeys(hk)
	clear(hk)
	if err != nil {
		return err
	}
	defer keys.Wipe()
	const ns = "personal"
	res, err := relayio.FetchNewest(ctx, []string{*relay},
		events.Expect{Kind: events.KindManifest, Author: pk, D: events.DTag(ns)}, 10*time.Second)
	if err != nil {
		return err
	}
	var base *nostr.Event = res.Selection.Newest

	bc, err := blossom.New(signer, []blossom.Server{{URL: *blossomURL}})
	if err != nil {
		return err
	}
	cache, err := homemount.OpenCache(*dir, bc, homemount.CacheOptions{Quota: 10 << 30, Logf: logf})
	if err != nil {
		return err
	}
	defer cache.Close()

	fsys, err := homefs.New(ctx, homefs.Options{
		Keys: keys, Store: bc, Cache: cache.Store, Queue: cache.Queue, StateDir: cache.StateDir,
		Signer: signer, Author: pk, Namespace: ns, Machine: "bench",
		Remote: &homefs.RelayRemote{Read: []string{*relay}, Write: []string{*relay}, Author: pk, Namespace: ns},
		Base:   base,
		UID:    uint32(*uid), GID: uint32(*gid),
		FlushTimeout:  *flush,
		NoPassthrough: *noPT,
		Logf:          logf,
	})
	if err != nil {
		return err
	}
	defer fsys.Close()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	srv, err := fsys.Mount(*mnt)
	if err != nil {
		return err
	}
	kernelPT := srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	pt := "no"
	if kernelPT && os.Geteuid() == 0 && !*noPT {
		pt = "yes"
	}
	fmt.Printf("passthrough: %s (kernel offers CAP_PASSTHROUGH: %v, euid %d, --no-passthrough %v)\n", pt, kernelPT, os.Geteuid(), *noPT)
	fmt.Println("ready")

	for sig := range sigs {
		if sig == syscall.SIGUSR1 {
			dctx, cancel := context.WithTimeout(ctx, *flush)
			err := fsys.Drain(dctx)
			cancel()
			if err != nil {
				fmt.Printf("drain failed: %v\n", err)
			} else {
				fmt.Println("drained")
			}
			continue
		}
		break
	}
	signal.Stop(sigs)
	if err := fsys.Unmount(); err != nil {
		logf("homefsd: unmount %s: %v; detaching", *mnt, err)
		if err := unix.Unmount(*mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			logf("homefsd: detach %s: %v", *mnt, err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, *flush)
	defer cancel()
	if err := fsys.Drain(dctx); err != nil {
		fmt.Printf("drain failed: %v\n", err)
	}
	fmt.Println("stopped")
	return nil
}
