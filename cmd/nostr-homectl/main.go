// Command nostr-homectl is the nostr-homed daemon (`serve`, the D-Bus service
// org.nostr.Homed1) and its admin CLI (add, remove, list, warm, status, open, close).
//
// None of those commands is in this build yet: each one exits with status 3 and says so,
// rather than pretend. `nostr-homectl help` lists them.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const exitUnavailable = 3

var commands = []struct{ name, help string }{
	{"serve", "run the daemon (org.nostr.Homed1 on the system bus)"},
	{"add", "enroll a user: add NPUB --name NAME"},
	{"remove", "remove an enrolled user"},
	{"list", "list enrolled users"},
	{"warm", "fetch a user's settings, manifest and secrets: warm NPUB|USER"},
	{"status", "show a user's cache, session and mount: status [USER] [--json]"},
	{"open", "open a session (mount the home): open USER"},
	{"close", "close a session: close USER"},
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, "usage: nostr-homectl COMMAND [ARGS]\n\ncommands:")
		for _, c := range commands {
			fmt.Fprintf(stdout, "  %-8s %s\n", c.name, c.help)
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			fmt.Fprintf(stderr, "nostr-homectl: %q is not in this build yet\n", c.name)
			return exitUnavailable
		}
	}
	fmt.Fprintf(stderr, "nostr-homectl: unknown command %q (try: nostr-homectl help)\n", args[0])
	return 2
}
