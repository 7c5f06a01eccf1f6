package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/nostr-homed/nostr-homed/internal/eventcache"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

// cachedKinds are the events WarmCache keeps, in the order status lists them.
var cachedKinds = []int{events.KindSettings, events.KindRelayList, events.KindServerList, events.KindManifest, events.KindSecrets}

var kindNames = map[int]string{
	events.KindSettings:   "settings",
	events.KindRelayList:  "relay list",
	events.KindServerList: "server list",
	events.KindManifest:   "manifest",
	events.KindSecrets:    "secrets",
}

// WarmReport is what the last warm of one key and namespace did (shown by GetStatus).
type WarmReport struct {
	Time      time.Time         `json:"time"`
	Target    string            `json:"target"`
	Namespace string            `json:"namespace"`
	Relays    []string          `json:"relays"`   // asked
	Answered  []string          `json:"answered"` // answered at least one query
	Failed    map[string]string `json:"failed"`   // answered none: why
	// Stale: no relay answered, so what is cached may be old. Not an error if something is
	// cached: the machine works offline from the cache.
	Stale   bool     `json:"stale"`
	Updated []string `json:"updated"` // kinds whose cached event was replaced by a newer one
	Refused []string `json:"refused"` // events refused, with the rule they broke
	Error   string   `json:"error,omitempty"`
}

// expect describes the event of kind for pubkey pk in namespace ns.
func (d *Daemon) expect(kind int, pk, ns string) events.Expect {
	x := events.Expect{Kind: kind, Author: pk, Now: d.now()}
	if kind >= 30000 && kind < 40000 {
		x.D = events.DTag(ns)
	}
	return x
}

// cachedSettings returns the cached, valid settings of pk in ns, or nil.
func (d *Daemon) cachedSettings(pk, ns string) (*events.Settings, error) {
	ev, err := d.cache.Get(d.expect(events.KindSettings, pk, ns))
	if err != nil {
		return nil, err
	}
	return events.OpenSettings(ev, pk, ns)
}

func (d *Daemon) cachedRelayList(pk string) *events.RelayList {
	ev, err := d.cache.Get(d.expect(events.KindRelayList, pk, ""))
	if err != nil {
		return nil
	}
	rl, err := events.OpenRelayList(ev, pk)
	if err != nil {
		return nil
	}
	return rl
}

// relaysFor is every relay to ask for pk's events: the bootstrap relays, the relays of the
// cached settings (read and write), and the write relays of the cached NIP-65 list (where
// the user publishes).
func (d *Daemon) relaysFor(pk, ns string) []string {
	lists := [][]string{d.cfg.BootstrapRelays}
	if s, err := d.cachedSettings(pk, ns); err == nil {
		lists = append(lists, s.Relays.Read, s.Relays.Write)
	}
	if rl := d.cachedRelayList(pk); rl != nil {
		lists = append(lists, rl.Write)
	}
	return events.MergeURLs(lists...)
}

// parseTarget reads WarmCache's target: NAME, NPUB, NAME/NAMESPACE or NPUB/NAMESPACE.
func (d *Daemon) parseTarget(ctx context.Context, target string) (pk, ns, who string, err error) {
	name, ns, hasNS := strings.Cut(target, "/")
	if !hasNS {
		ns = d.cfg.Namespace
	}
	if err := events.CheckNamespace(ns); err != nil {
		return "", "", "", homed.Errorf(homed.ErrInvalidArgs, "%q: %v", target, err)
	}
	if strings.HasPrefix(name, "npub1") {
		prefix, v, err := nip19.Decode(name)
		pkStr, ok := v.(string)
		if err != nil || prefix != "npub" || !ok {
			return "", "", "", homed.Errorf(homed.ErrInvalidArgs, "%q is not a valid npub", clip(name, 80))
		}
		return pkStr, ns, name, nil
	}
	u, err := d.lookup(ctx, name)
	if err != nil {
		return "", "", "", err
	}
	return u.Pubkey, ns, name, nil
}

// WarmCache fetches the settings, relay and server lists, manifest and secrets of a user (a
// user name or an npub, optionally "/namespace") from the relays and keeps the newest valid
// ones in the event cache. With every relay down it succeeds if settings are cached (the
// report in GetStatus says "stale"); with nothing cached it fails with Unavailable.
//
// progress gets the stages as they happen (homed.Stage*); once the warm has started, the
// last one is StageDone or StageFailed. A target that cannot be parsed fails before any.
func (d *Daemon) WarmCache(ctx context.Context, target string, progress homed.Progress) error {
	pk, ns, who, err := d.parseTarget(ctx, target)
	if err != nil {
		return err
	}
	_, err = d.warmWithProgress(ctx, pk, ns, who, progress)
	return err
}

// warm runs one warm and records its report. It holds no lock while it talks to relays.
func (d *Daemon) warm(ctx context.Context, pk, ns, who string) (*WarmReport, error) {
	return d.warmWithProgress(ctx, pk, ns, who, nil)
}

// warmWithProgress is warm, reporting its stages to p (which may be nil).
func (d *Daemon) warmWithProgress(ctx context.Context, pk, ns, who string, p homed.Progress) (*WarmReport, error) {
	rep := &WarmReport{Time: d.now(), Target: who, Namespace: ns, Failed: map[string]string{}}
	err := d.doWarm(ctx, pk, ns, rep, p)
	if err != nil {
		rep.Error = err.Error()
	}
	sort.Strings(rep.Updated)
	rep.Updated = slices.Compact(rep.Updated)
	sort.Strings(rep.Refused)
	d.mu.Lock()
	d.warms[pk+"/"+ns] = rep
	d.mu.Unlock()
	if err != nil {
		d.logf("warm %s (%s): %v", who, ns, err)
		p.Report(homed.StageFailed, err.Error())
	} else {
		d.logf("warm %s (%s): %d relays answered, %d failed, stale=%v, updated %v", who, ns, len(rep.Answered), len(rep.Failed), rep.Stale, rep.Updated)
		p.Report(homed.StageDone, warmSummary(rep))
	}
	return rep, err
}

// warmSummary is StageDone's detail.
func warmSummary(rep *WarmReport) string {
	updated := "nothing new"
	if len(rep.Updated) > 0 {
		updated = "updated " + strings.Join(rep.Updated, ", ")
	}
	stale := ""
	if rep.Stale {
		stale = " (stale: no relay answered, the cache is used)"
	}
	return fmt.Sprintf("%d relay(s) answered, %d failed; %s%s", len(rep.Answered), len(rep.Failed), updated, stale)
}

// kindList names kinds for progress lines.
func kindList(kinds []int) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = kindNames[k]
	}
	return strings.Join(names, ", ")
}

func (d *Daemon) doWarm(ctx context.Context, pk, ns string, rep *WarmReport, p homed.Progress) error {
	npub := npubOf(pk)
	_, cachedErr := d.cachedSettings(pk, ns)
	haveSettings := cachedErr == nil
	cachedNote := "no settings cached yet"
	if haveSettings {
		cachedNote = "settings cached"
	}
	p.Report(homed.StageStart, fmt.Sprintf("%s (%s), namespace %s: %s", rep.Target, npub, ns, cachedNote))

	r1 := d.relaysFor(pk, ns)
	if len(r1) == 0 {
		rep.Stale = true
		if haveSettings {
			return nil
		}
		return homed.Errorf(homed.ErrUnavailable,
			"the settings of %s could not be fetched: no relay to ask (bootstrap_relays is empty and nothing is cached)", npub)
	}
	var agg fetchAgg
	// Round 1: what tells where the rest lives.
	round1 := []int{events.KindSettings, events.KindRelayList}
	p.Report(homed.StageAsking, fmt.Sprintf("round 1: %s from %d relay(s): %s", kindList(round1), len(r1), strings.Join(r1, " ")))
	d.fetchKinds(ctx, r1, pk, ns, round1, rep, &agg, p)
	// Round 2: the rest, from every relay now known; the first kinds again from relays
	// that round 1 did not know.
	r2 := d.relaysFor(pk, ns)
	var extra []string
	for _, r := range r2 {
		if !containsURL(r1, r) {
			extra = append(extra, r)
		}
	}
	round2 := []int{events.KindManifest, events.KindSecrets, events.KindServerList}
	p.Report(homed.StageAsking, fmt.Sprintf("round 2: %s from %d relay(s): %s", kindList(round2), len(r2), strings.Join(r2, " ")))
	if len(extra) > 0 {
		p.Report(homed.StageAsking, fmt.Sprintf("round 2: %s from %d relay(s) learned in round 1: %s", kindList(round1), len(extra), strings.Join(extra, " ")))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.fetchKinds(ctx, r2, pk, ns, round2, rep, &agg, p)
	}()
	if len(extra) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.fetchKinds(ctx, extra, pk, ns, round1, rep, &agg, p)
		}()
	}
	wg.Wait()

	rep.Relays = r2
	agg.report(rep)
	rep.Stale = len(rep.Answered) == 0

	_, err := d.cachedSettings(pk, ns)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, eventcache.ErrNotCached):
		return homed.Errorf(homed.ErrUnavailable, "the settings of %s are unusable: %v", npub, err)
	case rep.Stale:
		return homed.Errorf(homed.ErrUnavailable, "the settings of %s could not be fetched: no relay answered (%s)", npub, failures(rep.Failed))
	default:
		return homed.Errorf(homed.ErrUnavailable, "the settings of %s could not be fetched: no nostr-homed settings (kind %d, d %q) on the %d relay(s) that answered",
			npub, events.KindSettings, events.DTag(ns), len(rep.Answered))
	}
}

// fetchAgg collects what every relay did over several queries. Its mu also guards the
// report's Refused and Updated while queries run: round 2 runs two fetchKinds at once.
type fetchAgg struct {
	mu       sync.Mutex
	answered map[string]bool
	failed   map[string]string
}

func (a *fetchAgg) add(res *relayio.Result) {
	if res == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.answered == nil {
		a.answered, a.failed = map[string]bool{}, map[string]string{}
	}
	for _, r := range res.Answered {
		a.answered[r] = true
	}
	for r, err := range res.Failed {
		if _, ok := a.failed[r]; !ok {
			a.failed[r] = err.Error()
		}
	}
}

func (a *fetchAgg) report(rep *WarmReport) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rep.Answered = nil
	for r := range a.answered {
		rep.Answered = append(rep.Answered, r)
	}
	sort.Strings(rep.Answered)
	for r, why := range a.failed {
		if !a.answered[r] {
			rep.Failed[r] = why
		}
	}
}

// fetchKinds asks relays for each kind at once and stores the newest valid events. As the
// query of each kind ends it reports what the relays answered and what was found.
func (d *Daemon) fetchKinds(ctx context.Context, relays []string, pk, ns string, kinds []int, rep *WarmReport, agg *fetchAgg, p homed.Progress) {
	var wg sync.WaitGroup
	for _, kind := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := d.expect(kind, pk, ns)
			res, _ := relayio.FetchNewest(ctx, relays, x, d.opts.RelayTimeout)
			agg.add(res)
			if res == nil {
				return
			}
			name := kindNames[kind]
			answered := fmt.Sprintf("%s: %d of %d relay(s) answered", name, len(res.Answered), len(res.Answered)+len(res.Failed))
			if len(res.Failed) > 0 {
				failed := map[string]string{}
				for r, err := range res.Failed {
					failed[r] = err.Error()
				}
				answered += "; " + failures(failed)
			}
			p.Report(homed.StageAnswered, answered)
			var refused []string
			var updated bool
			for _, r := range res.Selection.Refused {
				refused = append(refused, fmt.Sprintf("%s from %s: %v", name, r.Relay, r.Err))
			}
			if ev := res.Selection.Newest; ev != nil {
				ok, err := d.cache.Put(ev, x)
				what := "already cached"
				switch {
				case err != nil:
					refused = append(refused, fmt.Sprintf("%s %s: not cached: %v", name, clip(ev.ID, 16), err))
					what = "not cached: " + err.Error()
				case ok:
					what = "newer than the cache: cached"
				}
				updated = ok
				p.Report(homed.StageFound, fmt.Sprintf("%s: event %s of %s, %s", name, clip(ev.ID, 16),
					ev.CreatedAt.Time().UTC().Format(time.RFC3339), what))
			} else if len(res.Answered) > 0 {
				p.Report(homed.StageNotFound, fmt.Sprintf("%s: none on the relay(s) that answered", name))
			}
			for _, r := range refused {
				p.Report(homed.StageRefused, r)
			}
			agg.mu.Lock()
			defer agg.mu.Unlock()
			rep.Refused = append(rep.Refused, refused...)
			if updated {
				rep.Updated = append(rep.Updated, kindNames[kind])
			}
		}()
	}
	wg.Wait()
}

func containsURL(list []string, u string) bool {
	return len(events.MergeURLs(list, []string{u})) == len(events.MergeURLs(list))
}

func failures(m map[string]string) string {
	if len(m) == 0 {
		return "no relays"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + clip(m[k], 200)
	}
	return strings.Join(parts, "; ")
}

// cachedEvent returns the cached event of kind for pk in ns (nil if none or damaged).
func (d *Daemon) cachedEvent(kind int, pk, ns string) (*nostr.Event, error) {
	return d.cache.Get(d.expect(kind, pk, ns))
}
