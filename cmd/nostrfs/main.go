// Command nostrfs mounts one user's nostr-homed home directory (FUSE) and serves it until
// SIGTERM, then writes back what it can and unmounts. nostr-homectl starts it at a user's
// first session (or systemd does, as nostrfs@USER.service); see internal/homemount.
//
//	nostrfs --user USER [--mount DIR] [--config FILE]
//
// The mount point defaults to the user's home in the user database (as nostrfs@USER.service
// runs it).
// Exit status: 0 after a clean stop (unpublished changes stay queued in the cache for the
// next mount), 1 if the home could not be mounted, 2 for usage errors.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/homemount"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nostrfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the `user` whose home to mount")
	mnt := fs.String("mount", "", "mount point `dir`ectory (default: the user's home)")
	cfgPath := fs.String("config", config.DefaultPath, "configuration `file`")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *user == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: nostrfs --user USER [--mount DIR] [--config FILE]")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "nostrfs: %v\n", err)
		return 1
	}
	// Our stderr is a pipe to the daemon that started us: if it dies, a log line must not
	// kill us with SIGPIPE before we have unmounted and drained (the write fails instead).
	signal.Ignore(syscall.SIGPIPE)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	logger := log.New(stderr, "", 0)
	err = homemount.Run(context.Background(), homemount.Options{
		Config: cfg, User: *user, MountPoint: *mnt, Stop: stop, Logf: logger.Printf,
	})
	if err != nil {
		fmt.Fprintf(stderr, "nostrfs: %v\n", err)
		return 1
	}
	return 0
}
