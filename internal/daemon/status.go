package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/nostr-homed/nostr-homed/internal/eventcache"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

// Status is GetStatus's JSON for one user.
type Status struct {
	User      string `json:"user"`
	Npub      string `json:"npub"`
	Pubkey    string `json:"pubkey"`
	UID       uint32 `json:"uid"`
	Home      string `json:"home"`
	Enrolled  bool   `json:"enrolled"`
	Namespace string `json:"namespace"`
	// LoginMethod is the first login method of the cached settings ("" if none cached).
	LoginMethod string        `json:"login_method"`
	Cached      []CachedEvent `json:"cached"`
	LastWarm    *WarmReport   `json:"last_warm"` // null: not warmed since the daemon started
	Session     SessionStatus `json:"session"`
	Secrets     []string      `json:"secrets"` // names of the files in RuntimeDir/UID/secrets
	Signer      string        `json:"signer"`  // "none", "pending" (login done, no session yet), "in use"
}

// CachedEvent is one cached event.
type CachedEvent struct {
	Kind       int    `json:"kind"`
	Name       string `json:"name"`
	ID         string `json:"id,omitempty"`
	CreatedAt  int64  `json:"created_at,omitempty"`
	AgeSeconds int64  `json:"age_seconds,omitempty"`
	Age        string `json:"age,omitempty"`
	Present    bool   `json:"present"`
	Error      string `json:"error,omitempty"` // a damaged or refused cache file
}

// SessionStatus is the session part of Status.
type SessionStatus struct {
	Open       int        `json:"open"`  // reference count
	State      string     `json:"state"` // closed, opening, open, closing
	MountPoint string     `json:"mount_point"`
	Supervisor string     `json:"supervisor"`
	Mount      *MountInfo `json:"mount"` // null when nothing is mounted
	OpenedAt   *time.Time `json:"opened_at,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
}

// Status returns GetStatus's JSON for user, or for every enrolled user if user is "" (an
// object {"users": [...]}; only root gets that far, see homed).
func (d *Daemon) Status(ctx context.Context, user string) (string, error) {
	if user == "" {
		users, err := d.db.List(ctx)
		if err != nil {
			return "", err
		}
		all := struct {
			Host       string   `json:"host"`
			Supervisor string   `json:"supervisor"`
			Users      []Status `json:"users"`
		}{Host: d.host, Supervisor: d.mounter.Name(), Users: []Status{}}
		for _, u := range users {
			all.Users = append(all.Users, d.statusOf(u))
		}
		b, err := json.Marshal(all)
		return string(b), err
	}
	u, err := d.lookup(ctx, user)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(d.statusOf(u))
	return string(b), err
}

func (d *Daemon) statusOf(u userdb.User) Status {
	ns := d.cfg.Namespace
	now := d.now()
	st := Status{User: u.Name, Npub: npubOf(u.Pubkey), Pubkey: u.Pubkey, UID: u.UID, Home: u.Home,
		Enrolled: true, Namespace: ns, Cached: []CachedEvent{}, Signer: "none"}
	if s, err := d.cachedSettings(u.Pubkey, ns); err == nil && len(s.Login) > 0 {
		st.LoginMethod = s.Login[0].Type
	}
	for _, kind := range cachedKinds {
		ce := CachedEvent{Kind: kind, Name: kindNames[kind]}
		ev, err := d.cachedEvent(kind, u.Pubkey, ns)
		switch {
		case err == nil:
			ce.Present = true
			ce.ID = ev.ID
			ce.CreatedAt = int64(ev.CreatedAt)
			age := now.Sub(ev.CreatedAt.Time()).Truncate(time.Second)
			ce.AgeSeconds = int64(age / time.Second)
			ce.Age = age.String()
		case errors.Is(err, eventcache.ErrNotCached):
		default:
			ce.Error = err.Error()
		}
		st.Cached = append(st.Cached, ce)
	}
	d.mu.Lock()
	if w := d.warms[u.Pubkey+"/"+ns]; w != nil {
		cp := *w
		st.LastWarm = &cp
	}
	us := d.users[u.Name]
	d.mu.Unlock()

	st.Session = SessionStatus{State: phaseClosed.String(), MountPoint: u.Home, Supervisor: d.mounter.Name()}
	var m Mount
	if us != nil {
		us.mu.Lock()
		st.Session.Open = us.count
		st.Session.State = us.phase.String()
		st.Session.LastError = us.lastErr
		if us.phase == phaseOpen {
			t := us.openedAt
			st.Session.OpenedAt = &t
		}
		m = us.mount
		switch {
		case us.signer == nil:
		case us.phase == phaseClosed:
			st.Signer = "pending"
		default:
			st.Signer = "in use"
		}
		us.mu.Unlock()
	}
	if m != nil { // outside the lock: a systemd mount asks systemd
		mi := m.Info()
		st.Session.Mount = &mi
	}
	st.Secrets = listSecrets(d.rtDir, u.UID)
	if st.Secrets == nil {
		st.Secrets = []string{}
	}
	sort.Strings(st.Secrets)
	return st
}
