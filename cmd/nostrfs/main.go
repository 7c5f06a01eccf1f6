// Command nostrfs mounts one user's nostr-homed home directory (FUSE).
//
// The file system itself is not in this build yet: nostrfs refuses to run, with a clear error
// and exit status 3, rather than mount something that could lose data. The flags it will take
// are fixed already so that units and scripts can be written against them:
//
//	nostrfs --user USER --mount DIR [--config FILE]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// exitUnavailable is the status for "this build cannot do that" (distinct from usage errors).
const exitUnavailable = 3

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nostrfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("user", "", "the `user` whose home to mount")
	fs.String("mount", "", "mount point `dir`ectory")
	fs.String("config", "/etc/nostr-homed/config.toml", "configuration `file`")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	fmt.Fprintln(stderr, "nostrfs: this build has no file system yet (it arrives with the nostrfs work); refusing to mount")
	return exitUnavailable
}
