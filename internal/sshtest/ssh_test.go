package sshtest

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// loginDeadline bounds each login, from the TCP connect to the disconnect.
const loginDeadline = 20 * time.Second

// slowLogin: a login that takes longer is logged (with its start on the logs' clock).
const slowLogin = 3 * time.Second

// closeDeadline bounds the wait, after a disconnect, for the daemon to show the session
// closed (sshd's PAM close_session runs when the connection's monitor cleans up).
const closeDeadline = 10 * time.Second

// wantFSType is what findmnt says of a home that nostrfs mounted (go-fuse's Name "nostrfs").
const wantFSType = "fuse.nostrfs"

// probeScript is the session's command: what the shell sees, then a write to its home that
// the next login of the same user must read back (the home is remounted in between).
const probeScript = `printf 'HOME=%s\n' "$HOME"
printf 'PWD=%s\n' "$(pwd)"
printf 'UID=%s\n' "$(id -u)"
printf 'NAME=%s\n' "$(id -un)"
printf 'ID=%s\n' "$(id)"
printf 'FSTYPE=%s\n' "$(findmnt -n -o FSTYPE -T "$HOME")"
printf 'PROBE=%s\n' "$(cat "$HOME/.probe" 2>/dev/null)"
printf '%s\n' "$SSHTEST_N" > "$HOME/.probe" && printf 'WROTE=%s\n' "$(cat "$HOME/.probe")"
`

// tally collects one kind of failed check over the logins, reported once at the end.
type tally struct {
	logins []int
	first  string
}

// TestSSHLogins: the project's end-to-end login. A private sshd on 127.0.0.1 with pam_nostr
// (keyboard-interactive) and libnss_nostr; 50 logins in a row alternating two enrolled
// users, each a shell whose $HOME is the user's home mounted by nostrfs and whose id is the
// daemon's mapped UID, each within loginDeadline, each session closed by the daemon after
// the logout. A wrong password and an unknown user are refused and sshd stays up. In the
// end the daemon shows no session and nothing is mounted. (-short: 6 logins.)
func TestSSHLogins(t *testing.T) {
	alice, bob := newIdent(t, "alice"), newIdent(t, "bob")
	e := newEnv(t, alice, bob)
	idents := []ident{alice, bob}
	for _, id := range idents {
		if _, ok := e.users[id.name]; !ok {
			t.Fatalf("%s is not in the daemon's database: %+v", id.name, e.users)
		}
	}
	t.Logf("sshd %s (PAM service %s) on %s, NSS module overlaid on %s; users %+v",
		e.sshdPath, e.svc, e.addr, e.libDir, e.users)

	t.Run("refused", func(t *testing.T) {
		// sshd's verdict is in its log: the client's error depends on when the server said
		// no (x/crypto/ssh calls a failure before any prompt "unexpected message type 51").
		refused := func(what, user, password, logLine string, wantPrompt bool) {
			t.Helper()
			r := e.login(user, password, "true", loginDeadline)
			t.Logf("%s: prompts %q, %v (%v)", what, r.prompts, r.err, r.dur.Round(time.Millisecond))
			switch {
			case r.hung:
				t.Fatalf("%s: the login hung (%v): %v", what, r.dur, r.err)
			case r.err == nil || !strings.Contains(r.err.Error(), "ssh: handshake failed"):
				t.Errorf("%s: %v, want the authentication refused", what, r.err)
			case wantPrompt && len(r.prompts) == 0:
				t.Errorf("%s: never asked for a password", what)
			}
			if !waitFor(5*time.Second, func() bool { return strings.Contains(e.sshdLog.String(), logLine) }) {
				t.Errorf("%s: sshd did not log %q", what, logLine)
			}
		}
		refused("wrong password", "alice", "not the password", "Failed keyboard-interactive/pam for alice from 127.0.0.1", true)
		refused("unknown user", "carol", "whatever", "Failed keyboard-interactive/pam for invalid user carol from 127.0.0.1", false)

		if !e.sshdAlive() {
			t.Fatalf("sshd exited after the refused logins: %v", e.sshd.ProcessState)
		}
		st, err := e.status()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range idents {
			s, _ := st.user(id.name)
			if ok, why := sessionClosed(s); !ok {
				t.Errorf("after the refused logins %s has a session: %s", id.name, why)
			}
		}
	})
	if t.Failed() {
		return
	}

	n := 50
	if testing.Short() {
		n = 6
	}
	failed := map[string]*tally{}
	fail := func(check string, i int, format string, args ...any) {
		f := failed[check]
		if f == nil {
			f = &tally{first: fmt.Sprintf("login %d: ", i) + fmt.Sprintf(format, args...)}
			failed[check] = f
		}
		f.logins = append(f.logins, i)
	}
	lastProbe := map[string]string{}
	var durs, closeDurs []time.Duration
	start := time.Now()
	done := 0
	for i := 1; i <= n; i++ {
		id := idents[(i-1)%len(idents)]
		u := e.users[id.name]
		began := time.Since(processStart)
		r := e.login(id.name, id.password, "SSHTEST_N="+strconv.Itoa(i)+"; "+probeScript, loginDeadline)
		durs = append(durs, r.dur)
		if r.dur > slowLogin {
			t.Logf("login %d (%s) was slow: %v, from %.3f s (the logs' clock)", i, id.name, r.dur.Round(time.Millisecond), began.Seconds())
		}
		if r.hung {
			t.Fatalf("login %d (%s) hung: no end within %v: %v\nstdout %q stderr %q",
				i, id.name, loginDeadline, r.err, r.stdout, r.stderr)
		}
		if r.err != nil {
			st, _ := e.status()
			s, _ := st.user(id.name)
			t.Errorf("login %d (%s) failed after %v: %v (prompts %q)\nstdout %q\nstderr %q\nthe daemon's last session error: %q",
				i, id.name, r.dur.Round(time.Millisecond), r.err, r.prompts, r.stdout, r.stderr, s.Session.LastError)
			break
		}
		done++
		got := fields(r.stdout)
		if i <= 2 {
			t.Logf("login %d (%s, %v): %q", i, id.name, r.dur.Round(time.Millisecond), r.stdout)
		}
		if len(r.prompts) != 1 {
			fail("prompts", i, "%s was asked %q, want one password prompt", id.name, r.prompts)
		}
		if strings.TrimSpace(r.stderr) != "" {
			fail("stderr", i, "the shell wrote to stderr: %q", r.stderr)
		}
		if got["HOME"] != u.Home {
			fail("HOME", i, "$HOME of %s is %q, want %q (the daemon's database)", id.name, got["HOME"], u.Home)
		}
		if got["PWD"] != u.Home {
			fail("PWD", i, "the shell of %s started in %q, want its home %q", id.name, got["PWD"], u.Home)
		}
		if got["UID"] != strconv.FormatUint(uint64(u.UID), 10) {
			fail("UID", i, "id -u of %s is %q, want the mapped UID %d", id.name, got["UID"], u.UID)
		}
		if got["NAME"] != id.name {
			fail("NAME", i, "id -un of %s is %q (NSS in the session)", id.name, got["NAME"])
		}
		if got["PROBE"] != lastProbe[id.name] {
			fail("PROBE", i, "%s/.probe of %s reads %q, want %q (written by its previous login)", u.Home, id.name, got["PROBE"], lastProbe[id.name])
		}
		if got["WROTE"] != strconv.Itoa(i) {
			fail("WROTE", i, "writing %s/.probe as %s: read back %q, want %d", u.Home, id.name, got["WROTE"], i)
		} else {
			lastProbe[id.name] = got["WROTE"]
		}
		if got["FSTYPE"] != wantFSType {
			fail("FSTYPE", i, "$HOME of %s (%s) is not a %s mount: findmnt -T says %q", id.name, u.Home, wantFSType, got["FSTYPE"])
		}

		// The logout closes the session: sshd's PAM close_session, the daemon's CloseSession,
		// the last one of the user unmounts.
		cstart := time.Now()
		var why string
		for {
			st, err := e.status()
			if err != nil {
				why = err.Error()
			} else {
				s, _ := st.user(id.name)
				var ok bool
				if ok, why = sessionClosed(s); ok {
					break
				}
			}
			if time.Since(cstart) > closeDeadline {
				t.Fatalf("login %d (%s): the session was not closed within %v of the logout: %s", i, id.name, closeDeadline, why)
			}
			time.Sleep(20 * time.Millisecond)
		}
		closeDurs = append(closeDurs, time.Since(cstart))
	}
	total := time.Since(start)
	t.Logf("%d of %d logins done in %v: login %s; close seen after %s", done, n, total.Round(time.Millisecond), spread(durs), spread(closeDurs))

	checks := make([]string, 0, len(failed))
	for c := range failed {
		checks = append(checks, c)
	}
	sort.Strings(checks)
	for _, c := range checks {
		f := failed[c]
		t.Errorf("%s: failed in %d of %d logins %v; first: %s", c, len(f.logins), done, compact(f.logins), f.first)
	}

	// sshd served every login and is still up.
	if !e.sshdAlive() {
		t.Errorf("sshd exited: %v", e.sshd.ProcessState)
	}
	// The daemon shows no session, and nothing is mounted under the homes, neither here
	// nor in sshd's namespace.
	st, err := e.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Users {
		if ok, why := sessionClosed(s); !ok {
			t.Errorf("after the logins the daemon shows a session of %s: %s", s.User, why)
		}
		if len(s.Secrets) != 0 || s.Signer != "none" {
			t.Errorf("after the logins %s still has secrets %q, signer %q", s.User, s.Secrets, s.Signer)
		}
	}
	if left := mountsUnder(t, "/proc/self/mountinfo", e.homeBase); len(left) > 0 {
		t.Errorf("still mounted under %s: %q", e.homeBase, left)
	}
	if left := mountsUnder(t, fmt.Sprintf("/proc/%d/mountinfo", e.sshd.Process.Pid), e.homeBase); len(left) > 0 {
		t.Errorf("still mounted under %s in sshd's namespace: %q", e.homeBase, left)
	}
	if os.Getenv("SSHTEST_LOG") != "" {
		t.Logf("status: %+v", st)
	}
}

// waitFor polls cond every 20 ms until it holds (true) or d has passed (false).
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// spread is "min/median/max" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v, median %v, max %v", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

// compact writes 1,2,3,5 as [1-3 5].
func compact(xs []int) string {
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		} else {
			parts = append(parts, strconv.Itoa(xs[i]))
		}
		i = j + 1
	}
	return "[" + strings.Join(parts, " ") + "]"
}
