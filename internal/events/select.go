package events

import (
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Newer reports whether a replaces b under NIP-01's rule for replaceable and addressable
// events: the greater created_at wins; on a tie, the lower id.
func Newer(a, b *nostr.Event) bool {
	if a.CreatedAt != b.CreatedAt {
		return a.CreatedAt > b.CreatedAt
	}
	return a.ID < b.ID
}

// Candidate is an event as one relay served it.
type Candidate struct {
	Relay string
	Event *nostr.Event
}

// Refusal is a candidate that failed validation, kept so status can say why.
type Refusal struct {
	Relay string
	Err   error
}

// Selection is the result of choosing among the versions relays returned.
type Selection struct {
	Newest *nostr.Event // nil if no candidate was valid
	// From lists the relays that served the newest version.
	From []string
	// Stale lists the relays whose newest valid version is older than Newest: candidates for
	// republishing Newest to. (Relays that served nothing valid are not listed.)
	Stale    []string
	Refused  []Refusal
	Accepted int
}

// SelectNewest validates every candidate against x and returns the newest valid one. Invalid
// candidates never win, however new they claim to be.
func SelectNewest(cands []Candidate, x Expect) Selection {
	var sel Selection
	best := map[string]*nostr.Event{} // relay -> its newest valid version
	var order []string
	for _, c := range cands {
		if err := Validate(c.Event, x); err != nil {
			sel.Refused = append(sel.Refused, Refusal{Relay: c.Relay, Err: err})
			continue
		}
		sel.Accepted++
		if _, seen := best[c.Relay]; !seen {
			order = append(order, c.Relay)
		}
		if cur := best[c.Relay]; cur == nil || Newer(c.Event, cur) {
			best[c.Relay] = c.Event
		}
		if sel.Newest == nil || Newer(c.Event, sel.Newest) {
			sel.Newest = c.Event
		}
	}
	for _, r := range order {
		if best[r].ID == sel.Newest.ID {
			sel.From = append(sel.From, r)
		} else {
			sel.Stale = append(sel.Stale, r)
		}
	}
	return sel
}

// NextCreatedAt is the created_at for an event that replaces prev (which may be nil): now,
// unless that would not be strictly greater than prev's, in which case prev's plus one. A
// clock that runs behind therefore cannot make a republished event lose to the old one.
func NextCreatedAt(prev *nostr.Event, now time.Time) nostr.Timestamp {
	ts := nostr.Timestamp(now.Unix())
	if prev != nil && ts <= prev.CreatedAt {
		ts = prev.CreatedAt + 1
	}
	return ts
}
