// Package relayio reads and writes nostr-homed's events on a set of relays: it asks every
// relay at once, bounded by a timeout, and reports what each relay did, because relays are
// untrusted and unreliable and a person debugging a login needs to know which one failed.
//
// Reading never trusts a relay's word: every event goes through events.SelectNewest, which
// validates it and keeps the newest valid version. Writing succeeds when at least one relay
// accepted the event; the result lists the others so they can be retried.
package relayio

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nostr-homed/nostr-homed/internal/events"
)

// DefaultTimeout bounds one relay's connect plus query or publish.
const DefaultTimeout = 5 * time.Second

// Result is what a set of relays answered.
type Result struct {
	Selection events.Selection
	// Answered lists the relays that completed the query (with or without events).
	Answered []string
	// Failed maps each relay that could not be queried to why.
	Failed map[string]error
}

// FetchNewest asks every relay for the events matching x (by kind, author and d tag) and
// selects the newest valid one. It returns an error only if no relay answered at all; "no
// event" is a nil Selection.Newest with a nil error.
func FetchNewest(ctx context.Context, relays []string, x events.Expect, timeout time.Duration) (*Result, error) {
	f := nostr.Filter{Kinds: []int{x.Kind}, Authors: []string{x.Author}}
	if x.D != "" {
		f.Tags = nostr.TagMap{"d": []string{x.D}}
	}
	cands, answered, failed := Fetch(ctx, relays, f, timeout)
	res := &Result{Selection: events.SelectNewest(cands, x), Answered: answered, Failed: failed}
	if len(answered) == 0 {
		return res, fmt.Errorf("relayio: no relay answered: %w", joinFailures(failed))
	}
	return res, nil
}

// Fetch runs one query on every relay concurrently.
func Fetch(ctx context.Context, relays []string, f nostr.Filter, timeout time.Duration) (cands []events.Candidate, answered []string, failed map[string]error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	failed = map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, url := range dedupe(relays) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs, err := query(ctx, url, f, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[url] = err
				return
			}
			answered = append(answered, url)
			for _, ev := range evs {
				cands = append(cands, events.Candidate{Relay: url, Event: ev})
			}
		}()
	}
	wg.Wait()
	sort.Strings(answered)
	return cands, answered, failed
}

func query(ctx context.Context, url string, f nostr.Filter, timeout time.Duration) ([]*nostr.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := nostr.RelayConnect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer r.Close()
	sub, err := r.Subscribe(ctx, nostr.Filters{f})
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Unsub()
	var out []*nostr.Event
	for {
		select {
		case ev, ok := <-sub.Events:
			if !ok {
				return out, nil
			}
			out = append(out, ev)
		case <-sub.EndOfStoredEvents:
			// Events sent before EOSE may still be in the channel.
			for {
				select {
				case ev := <-sub.Events:
					out = append(out, ev)
				default:
					return out, nil
				}
			}
		case reason := <-sub.ClosedReason:
			return nil, fmt.Errorf("relay closed the query: %s", reason)
		case <-ctx.Done():
			return nil, fmt.Errorf("no end of stored events within %s: %w", timeout, ctx.Err())
		}
	}
}

// PublishResult says which relays took an event.
type PublishResult struct {
	Accepted []string
	Failed   map[string]error
}

// Publish sends ev to every relay concurrently. It fails only if no relay accepted it.
func Publish(ctx context.Context, relays []string, ev *nostr.Event, timeout time.Duration) (*PublishResult, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	res := &PublishResult{Failed: map[string]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, url := range dedupe(relays) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := publish(ctx, url, ev, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed[url] = err
			} else {
				res.Accepted = append(res.Accepted, url)
			}
		}()
	}
	wg.Wait()
	sort.Strings(res.Accepted)
	if len(res.Accepted) == 0 {
		return res, fmt.Errorf("relayio: no relay accepted event %s: %w", ev.ID, joinFailures(res.Failed))
	}
	return res, nil
}

func publish(ctx context.Context, url string, ev *nostr.Event, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := nostr.RelayConnect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer r.Close()
	if err := r.Publish(ctx, *ev); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

func dedupe(relays []string) []string {
	return events.MergeURLs(relays)
}

func joinFailures(m map[string]error) error {
	if len(m) == 0 {
		return errors.New("no relays configured")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		errs = append(errs, fmt.Errorf("%s: %w", k, m[k]))
	}
	return errors.Join(errs...)
}
