// Command nostr-homed-devstack runs a Nostr relay and a Blossom server on one loopback port,
// for developing and testing nostr-homed without touching public servers:
//
//	nostr-homed-devstack [--listen 127.0.0.1:7777] [--data DIR] [--allow-remote]
//	nostr-homed-devstack demo [--build DIR] [--dbus-policy FILE] [--keep] [--verbose]
//
// When it is listening it prints, on stdout,
//
//	relay: ws://127.0.0.1:7777
//	blossom: http://127.0.0.1:7777
//	ready
//
// and logs go to stderr. SIGTERM or SIGINT shuts it down gracefully (within about 5 s) with
// exit status 0. See package internal/devstack for what is served where.
//
// The demo subcommand (what `sudo make demo` runs) starts a stack of its own on a free
// loopback port, the daemon on a private bus, and walks through a whole login story in
// numbered steps (package internal/demo): PAM login, the home mounted, a file written,
// uploaded, the local cache wiped, the file read back. It needs root and a build with cgo
// (libpam), and exits 0 only if every step passed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nostr-homed/nostr-homed/internal/demo"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
)

const name = "nostr-homed-devstack"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:7777", "`address` to listen on (host:port; port 0 picks a free one)")
	data := fs.String("data", "", "data `directory` (default $XDG_STATE_HOME/"+name+" or ~/.local/state/"+name+")")
	allowRemote := fs.Bool("allow-remote", false, "allow a non-loopback --listen address (the devstack has no access control)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: %s [--listen ADDR] [--data DIR] [--allow-remote]
       %s demo [--build DIR] [--dbus-policy FILE] [--keep] [--verbose]

Runs a Nostr relay (khatru, NIP-01/09/11/40/42/45/77) and a Blossom server (BUD-01/02/04/06/11/12)
on one port for nostr-homed development. Prints the relay and Blossom URLs and "ready" on stdout
once listening; logs go to stderr. Stops on SIGTERM or SIGINT.

"demo" runs the whole login story (PAM, the mounted home, a file that survives a wiped cache)
on a stack of its own, as root (see "%s demo -h").

Options:
`, name, name, name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments: %s\n", name, strings.Join(fs.Args(), " "))
		fs.Usage()
		return 2
	}
	if err := checkListen(*listen, *allowRemote); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	dir := *data
	if dir == "" {
		var err error
		if dir, err = defaultDataDir(); err != nil {
			fmt.Fprintf(stderr, "%s: %v; pass --data\n", name, err)
			return 2
		}
	}

	logger := log.New(stderr, name+": ", log.LstdFlags)
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()

	st, err := devstack.Start(ctx, devstack.Options{Listen: *listen, DataDir: dir, Logf: logger.Printf})
	if err != nil {
		logger.Print(err)
		return 1
	}
	if !*allowRemote {
		// "localhost" could resolve to something else: check what we really listen on.
		if err := checkListen(st.Addr(), false); err != nil {
			st.Close()
			logger.Print(err)
			return 2
		}
	}

	if _, err := fmt.Fprintf(stdout, "relay: %s\nblossom: %s\nready\n", st.RelayURL(), st.BlossomURL()); err != nil {
		logger.Printf("writing to stdout: %v", err)
	}
	if f, ok := stdout.(interface{ Flush() error }); ok {
		f.Flush()
	}
	logger.Printf("serving relay %s and blossom %s, data in %s", st.RelayURL(), st.BlossomURL(), dir)

	status := 0
	select {
	case <-ctx.Done():
		logger.Print("signal received, shutting down")
	case <-st.Done():
		logger.Printf("server stopped: %v", st.Err())
		status = 1
	}
	stopSignals() // a second signal now terminates at once

	sctx, cancel := context.WithTimeout(context.Background(), devstack.DefaultShutdownTimeout)
	defer cancel()
	if err := st.Shutdown(sctx); err != nil {
		logger.Printf("shutdown: %v", err)
		return 1
	}
	logger.Print("stopped")
	return status
}

// runDemo is the demo subcommand: it runs demo.Run on stdout and returns 0 only if every
// step passed.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	build := fs.String("build", "", "`directory` of the built nostr-homectl, nostrfs and pam_nostr.so (default: build/ of the source tree above the working directory)")
	policy := fs.String("dbus-policy", "", "the bus policy `file` (default: dbus/org.nostr.Homed1.conf of the source tree above the working directory)")
	keep := fs.Bool("keep", false, "keep the temp directory (the stack's data, the user database, the home's cache) and print where it is")
	verbose := fs.Bool("verbose", false, "log what the relay, the Blossom server and the daemon do to stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: %s demo [--build DIR] [--dbus-policy FILE] [--keep] [--verbose]

Runs the whole nostr-homed story on this machine, narrated step by step: a relay and a Blossom
server on a free loopback port, a demo identity with a password, its settings and secrets, a
private system bus with the daemon (nostr-homectl serve), the user enrolled and warmed, a login
through PAM (pam_nostr.so) that mounts the home (nostrfs), a file written there, a logout that
uploads it and publishes a new manifest, the local cache wiped, a second login that reads the
file back. Everything lives in a temp directory and is stopped and removed at the end.

Needs root and a build with cgo (libpam): run it as `+"`sudo make demo`"+`. Exits 0 only if
every step passed (within %s).

Options:
`, name, demo.DefaultTimeout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s demo: unexpected arguments: %s\n", name, strings.Join(fs.Args(), " "))
		fs.Usage()
		return 2
	}

	opts := demo.Options{BuildDir: *build, DBusPolicy: *policy, Keep: *keep}
	if *verbose {
		logger := log.New(stderr, name+": ", log.LstdFlags)
		opts.Logf = logger.Printf
	} else {
		// The event store's library logs through the standard logger (a one-time migration
		// note on a fresh store): noise in a demo that narrates on stdout.
		log.SetOutput(io.Discard)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := demo.Run(ctx, stdout, opts); err != nil {
		return 1 // demo.Run has printed "demo: FAILED ..."
	}
	return 0
}

// checkListen refuses addresses that are not loopback unless allowRemote: the relay and the
// Blossom server accept anyone's events and (signed) uploads.
func checkListen(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", addr, err)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(strings.SplitN(host, "%", 2)[0]); ip != nil && ip.IsLoopback() {
		return nil
	}
	what := "not a loopback address"
	if host == "" || host == "0.0.0.0" || host == "::" {
		what = "all interfaces"
	}
	return fmt.Errorf("refusing to listen on %s (%s): the devstack has no access control; use a 127.0.0.1 address or pass --allow-remote", addr, what)
}

// defaultDataDir is $XDG_STATE_HOME/nostr-homed-devstack, or ~/.local/state/nostr-homed-devstack.
func defaultDataDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, name), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no data directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", name), nil
}
