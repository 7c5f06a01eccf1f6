// Command fake-nostrfs-unit is a TEST-ONLY stand-in for nostrfs as nostrfs@USER.service runs
// it: `nostrfs --user USER --config FILE`, without --mount (nostrfs then mounts on the user's
// home from the user database). testdata/fake-nostrfs insists on --mount, as the builtin
// supervisor always gives one, so the tests of the Systemd mounter (systemd_test.go, where a
// fake systemd runs the unit's real ExecStart line) use this one. It mounts NOTHING.
//
// It checks that it was started as the unit promises (--user, --config naming a file that
// exists, no other arguments, $NOTIFY_SOCKET), sends
//
//	STATUS=fake-nostrfs-unit serving USER (config FILE)
//	READY=1
//
// and on SIGTERM sends STOPPING=1 and exits 0. As with fake-nostrfs, some words in the user
// name (words separated by "-") change that: "hang" never sends READY=1; "stubborn" ignores
// SIGTERM; "crash" exits 4 before it is ready, with a message on stderr. They combine:
// "stubborn-hang-bob" neither gets ready nor stops on SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	user := flag.String("user", "", "")
	mount := flag.String("mount", "", "")
	config := flag.String("config", "", "")
	flag.Parse()
	sock := os.Getenv("NOTIFY_SOCKET")
	if *user == "" || *config == "" || sock == "" || flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "fake-nostrfs-unit: started wrongly: user %q mount %q config %q NOTIFY_SOCKET %q args %q\n",
			*user, *mount, *config, sock, flag.Args())
		os.Exit(2)
	}
	if st, err := os.Stat(*config); err != nil || !st.Mode().IsRegular() {
		fmt.Fprintf(os.Stderr, "fake-nostrfs-unit: configuration %s: %v\n", *config, err)
		os.Exit(2)
	}
	words := strings.Split(*user, "-")
	term := make(chan os.Signal, 1)
	if slices.Contains(words, "stubborn") {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	if slices.Contains(words, "crash") {
		fmt.Fprintln(os.Stderr, "fake-nostrfs-unit: crashing on purpose before READY=1")
		os.Exit(4)
	}
	if !slices.Contains(words, "hang") {
		notify(sock, fmt.Sprintf("STATUS=fake-nostrfs-unit serving %s (config %s)\nREADY=1", *user, *config))
	}
	<-term
	notify(sock, "STOPPING=1")
	os.Exit(0)
}

func notify(sock, msg string) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake-nostrfs-unit: %v\n", err)
		os.Exit(3)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		fmt.Fprintf(os.Stderr, "fake-nostrfs-unit: %v\n", err)
		os.Exit(3)
	}
}
