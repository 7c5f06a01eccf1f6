package homefs

import (
	"context"
	"errors"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

// RelayRemote is the Remote of a real home: the user's relays.
type RelayRemote struct {
	// Read relays are asked for the newest manifest (with Write: a relay we publish to is
	// one we can be overwritten on); Write relays get what we publish.
	Read, Write       []string
	Author, Namespace string
	// Timeout bounds one relay's connect plus query or publish; zero means relayio's.
	Timeout time.Duration
}

var _ Remote = (*RelayRemote)(nil)

// Newest implements Remote: the newest valid manifest on any relay (forged, foreign and
// malformed ones are refused by events.SelectNewest).
func (r *RelayRemote) Newest(ctx context.Context) (*nostr.Event, error) {
	if r.Author == "" || r.Namespace == "" {
		// Without them every event would be refused and "no manifest" would pass every
		// conflict check.
		return nil, errors.New("homefs: RelayRemote needs Author and Namespace")
	}
	x := events.Expect{Kind: events.KindManifest, Author: r.Author, D: events.DTag(r.Namespace)}
	res, err := relayio.FetchNewest(ctx, events.MergeURLs(r.Read, r.Write), x, r.Timeout)
	if err != nil {
		return nil, err
	}
	return res.Selection.Newest, nil
}

// Publish implements Remote.
func (r *RelayRemote) Publish(ctx context.Context, ev *nostr.Event) error {
	_, err := relayio.Publish(ctx, r.Write, ev, r.Timeout)
	return err
}
