package events

import (
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// RelayList is a user's NIP-65 relay list (kind 10002).
type RelayList struct {
	Read, Write []string
}

// OpenRelayList validates a kind 10002 event of author and reads its `r` tags. A tag with no
// marker means both read and write (NIP-65). Malformed URLs are skipped, not fatal: the list
// is advice that adds to the relays in the settings, never replaces them.
func OpenRelayList(ev *nostr.Event, author string) (*RelayList, error) {
	if err := Validate(ev, Expect{Kind: KindRelayList, Author: author}); err != nil {
		return nil, err
	}
	var l RelayList
	for _, t := range ev.Tags {
		if len(t) < 2 || t[0] != "r" || checkURL("relay", t[1], "wss", "ws") != nil {
			continue
		}
		marker := ""
		if len(t) >= 3 {
			marker = t[2]
		}
		if marker == "" || marker == "read" {
			l.Read = append(l.Read, t[1])
		}
		if marker == "" || marker == "write" {
			l.Write = append(l.Write, t[1])
		}
	}
	l.Read, l.Write = limit(l.Read, maxRelays), limit(l.Write, maxRelays)
	return &l, nil
}

// OpenServerList validates a BUD-03 kind 10063 event of author and returns its `server` tags
// in order, the most trusted first.
func OpenServerList(ev *nostr.Event, author string) ([]string, error) {
	if err := Validate(ev, Expect{Kind: KindServerList, Author: author}); err != nil {
		return nil, err
	}
	var out []string
	for _, t := range ev.Tags {
		if len(t) >= 2 && t[0] == "server" && checkURL("server", t[1], "https", "http") == nil {
			out = append(out, t[1])
		}
	}
	return limit(out, maxServers), nil
}

// MergeURLs joins URL lists in order of precedence, dropping duplicates (compared without a
// trailing slash and without regard to case: relay and server URLs rarely have meaningful
// case in their paths).
func MergeURLs(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, u := range l {
			k := strings.ToLower(strings.TrimRight(u, "/"))
			if !seen[k] {
				seen[k] = true
				out = append(out, u)
			}
		}
	}
	return out
}

func limit(l []string, n int) []string {
	if len(l) > n {
		return l[:n]
	}
	return l
}
