// Command fake-nostrfs is a TEST-ONLY stand-in for nostrfs. It lets the daemon's tests
// exercise the builtin supervisor apart from the file system (the real nostrfs is tested
// through the daemon in session_test.go): it takes nostrfs's flags, speaks the readiness
// protocol (sd_notify datagrams on $NOTIFY_SOCKET) and waits for SIGTERM. It mounts NOTHING.
//
// It checks that it was started as the supervisor promises (--user, --mount of an existing
// directory, --config, $NOTIFY_SOCKET), sends
//
//	STATUS=fake-nostrfs serving USER on DIR (nothing mounted)
//	READY=1
//
// and on SIGTERM sends STOPPING=1 and exits 0. Some user names change that, for tests of the
// failure paths: "hang-*" never sends READY=1; "stubborn-*" ignores SIGTERM; "crash-*" exits
// 4 before it is ready, with a message on stderr.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	user := flag.String("user", "", "")
	mount := flag.String("mount", "", "")
	config := flag.String("config", "", "")
	flag.Parse()
	sock := os.Getenv("NOTIFY_SOCKET")
	if *user == "" || *mount == "" || *config == "" || sock == "" || flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "fake-nostrfs: started wrongly: user %q mount %q config %q NOTIFY_SOCKET %q args %q\n",
			*user, *mount, *config, sock, flag.Args())
		os.Exit(2)
	}
	if st, err := os.Stat(*mount); err != nil || !st.IsDir() {
		fmt.Fprintf(os.Stderr, "fake-nostrfs: mount point %s: %v\n", *mount, err)
		os.Exit(2)
	}
	term := make(chan os.Signal, 1)
	if strings.HasPrefix(*user, "stubborn-") {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	if strings.HasPrefix(*user, "crash-") {
		fmt.Fprintln(os.Stderr, "fake-nostrfs: crashing on purpose before READY=1")
		os.Exit(4)
	}
	if !strings.HasPrefix(*user, "hang-") {
		notify(sock, fmt.Sprintf("STATUS=fake-nostrfs serving %s on %s (nothing mounted)\nREADY=1", *user, *mount))
	}
	<-term
	notify(sock, "STOPPING=1")
	os.Exit(0)
}

func notify(sock, msg string) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake-nostrfs: %v\n", err)
		os.Exit(3)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		fmt.Fprintf(os.Stderr, "fake-nostrfs: %v\n", err)
		os.Exit(3)
	}
}
