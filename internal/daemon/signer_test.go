package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/nostr-homed/nostr-homed/internal/homed"
)

// busUsers makes the bus that newEnv starts next know the users the test adds. dbus-daemon
// drops a connection whose UID has no passwd entry (it looks up the groups of every client),
// and the test's users are in no passwd file the bus reads: on a real system they come from
// nss_nostr. So this puts a dbus-daemon wrapper first in PATH that runs the real one in a
// private mount namespace, with a copy of /etc/passwd bind-mounted over /etc/passwd there; the
// returned function appends a user to that copy (the bus reads it afresh at each lookup).
func busUsers(t *testing.T) (add func(name string, uid uint32)) {
	t.Helper()
	requireRoot(t)
	real, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatalf("dbus-daemon not found (Debian package dbus): %v", err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare not found (util-linux): %v", err)
	}
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	b, err := os.ReadFile("/etc/passwd")
	must(t, err)
	must(t, os.WriteFile(passwd, b, 0o644))
	// unshare -m makes the new namespace's mounts private; every step execs, so the PID
	// dbustest started (and kills) is dbus-daemon's.
	script := "#!/bin/sh\nexec unshare -m sh -c 'mount --bind \"$0\" /etc/passwd && r=\"$1\" && shift && exec \"$r\" \"$@\"' " +
		shellQuote(passwd) + " " + shellQuote(real) + " \"$@\"\n"
	must(t, os.WriteFile(filepath.Join(dir, "dbus-daemon"), []byte(script), 0o755))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func(name string, uid uint32) {
		t.Helper()
		f, err := os.OpenFile(passwd, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		defer f.Close()
		_, err = fmt.Fprintf(f, "%s:x:%d:%d::/nonexistent:/usr/sbin/nologin\n", name, uid, uid)
		must(t, err)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// signerAs calls a method of the signer of uid (/org/nostr/Homed1/signer/UID) with
// dbus-send running as caller (a process of that UID, so the bus sees that UID). It returns
// the string the method returned, or the error text dbus-send printed.
func (e *env) signerAs(caller, uid uint32, method string, args ...string) (string, error) {
	argv := append([]string{"--bus=" + e.bus.Address, "--print-reply=literal", "--reply-timeout=60000",
		"--dest=" + homed.BusName, string(homed.SignerPath(uid)), homed.SignerInterface + "." + method}, args...)
	cmd := exec.Command("dbus-send", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: caller, Gid: caller}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", errors.New(strings.TrimSpace(stderr.String() + stdout.String()))
	}
	// --print-reply=literal prints a string reply as three spaces, the string, a newline.
	out := strings.TrimSuffix(stdout.String(), "\n")
	if !strings.HasPrefix(out, "   ") {
		return "", errors.New("unexpected dbus-send output: " + out)
	}
	return out[3:], nil
}

func (e *env) mustSignerAs(caller, uid uint32, method string, args ...string) string {
	e.t.Helper()
	out, err := e.signerAs(caller, uid, method, args...)
	if err != nil {
		e.t.Fatalf("%s of the signer of uid %d as uid %d: %v", method, uid, caller, err)
	}
	return out
}

// signerErrAs makes a call as caller that must fail with the D-Bus error want.
func (e *env) signerErrAs(want string, caller, uid uint32, method string, args ...string) string {
	e.t.Helper()
	out, err := e.signerAs(caller, uid, method, args...)
	if err == nil {
		e.t.Fatalf("%s of the signer of uid %d as uid %d: want %s, got %q", method, uid, caller, want, out)
	}
	// dbus-send prints "Error NAME: MESSAGE".
	if !strings.HasPrefix(err.Error(), "Error "+want+":") {
		e.t.Fatalf("%s of the signer of uid %d as uid %d: want %s, got %v", method, uid, caller, want, err)
	}
	return err.Error()
}

// signerRoot calls a method of the signer of uid as root through godbus.
func (e *env) signerRoot(uid uint32, method string, args ...any) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out string
	err := e.conn.Object(homed.BusName, homed.SignerPath(uid)).CallWithContext(ctx, homed.SignerInterface+"."+method, 0, args...).Store(&out)
	return out, err
}

func (e *env) mustSignerRoot(uid uint32, method string, args ...any) string {
	e.t.Helper()
	out, err := e.signerRoot(uid, method, args...)
	if err != nil {
		e.t.Fatalf("%s of the signer of uid %d as root: %v", method, uid, err)
	}
	return out
}

func (e *env) signerErrRoot(want string, uid uint32, method string, args ...any) string {
	e.t.Helper()
	out, err := e.signerRoot(uid, method, args...)
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != want {
		e.t.Fatalf("%s of the signer of uid %d as root: want %s, got %q, %v", method, uid, want, out, err)
	}
	return de.Error()
}

// checkSigned parses a SignEvent answer and checks it is the event asked for, signed by pk.
func checkSigned(t *testing.T, js, pk string, kind int, content string, createdAt nostr.Timestamp) nostr.Event {
	t.Helper()
	var ev nostr.Event
	if err := json.Unmarshal([]byte(js), &ev); err != nil {
		t.Fatalf("SignEvent returned no event: %v\n%s", err, js)
	}
	if ev.PubKey != pk || ev.Kind != kind || ev.Content != content || ev.CreatedAt != createdAt {
		t.Fatalf("signed event %+v: want pubkey %s kind %d content %q created_at %d", ev, pk, kind, content, createdAt)
	}
	if ev.ID != ev.GetID() {
		t.Fatalf("signed event id %s, computed %s", ev.ID, ev.GetID())
	}
	if ok, err := ev.CheckSignature(); !ok {
		t.Fatalf("the signature of %s does not verify: %v", js, err)
	}
	return ev
}

// sessionOf publishes, enrolls, logs in and opens a session of a new user.
// add makes the user known to the bus (busUsers).
func (e *env) sessionOf(add func(string, uint32), name string) (ident, uint32) {
	e.t.Helper()
	id := newIdent(e.t, name)
	e.publish(id, pubOpts{})
	u := e.enroll(id)
	add(name, u.UID)
	e.login(id)
	e.mustCall("OpenSession", name)
	return id, u.UID
}

// TestSignerServesTheSession: the signer of a session is there for the user and for root
// between the first OpenSession and the last CloseSession, with the user's key, and for
// nobody else.
func TestSignerServesTheSession(t *testing.T) {
	_, fake := binaries(t)
	addUser := busUsers(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	alice := newIdent(t, "alice")
	e.publish(alice, pubOpts{})
	uid := e.enroll(alice).UID
	addUser("alice", uid)
	const nobody = 65534

	// Before any session, and after a login that has no session yet: Unavailable.
	noSession := "no open session for uid " + strconv.Itoa(int(uid))
	if msg := e.signerErrAs(homed.ErrUnavailable, uid, uid, "GetPublicKey"); !strings.Contains(msg, noSession) {
		t.Fatalf("before any session: %s", msg)
	}
	e.login(alice)
	if msg := e.signerErrRoot(homed.ErrUnavailable, uid, "GetPublicKey"); !strings.Contains(msg, noSession) {
		t.Fatalf("logged in, no session: %s", msg)
	}
	e.mustCall("OpenSession", "alice")
	e.mustCall("OpenSession", "alice") // a second session of alice

	// The user: the public key, a signed event, a NIP-44 round trip.
	if pk := e.mustSignerAs(uid, uid, "GetPublicKey"); pk != alice.pk {
		t.Fatalf("GetPublicKey as alice: %q, want %s", pk, alice.pk)
	}
	const content = "note body 7f3a: not for the log"
	evJSON := `{"kind":1,"created_at":1700000000,"tags":[["t","nostr"],["p","` + strings.Repeat("0", 63) + `1"]],"content":"` + content + `"}`
	signed := checkSigned(t, e.mustSignerAs(uid, uid, "SignEvent", "string:"+evJSON), alice.pk, 1, content, 1700000000)
	if len(signed.Tags) != 2 || signed.Tags[0][1] != "nostr" {
		t.Fatalf("tags of the signed event: %v", signed.Tags)
	}
	// A pubkey that is the session's own is accepted.
	checkSigned(t, e.mustSignerAs(uid, uid, "SignEvent", `string:{"kind":7,"created_at":1700000001,"pubkey":"`+alice.pk+`","content":"+"}`),
		alice.pk, 7, "+", 1700000001)

	peer := newIdent(t, "peer")
	ck, err := nip44.GenerateConversationKey(alice.pk, peer.sk) // the peer's side
	must(t, err)
	const plain = "plaintext 42: not for the log either"
	ct := e.mustSignerAs(uid, uid, "Nip44Encrypt", "string:"+peer.pk, "string:"+plain)
	if got, err := nip44.Decrypt(ct, ck); err != nil || got != plain {
		t.Fatalf("the peer cannot decrypt what alice encrypted: %q, %v", got, err)
	}
	if got := e.mustSignerAs(uid, uid, "Nip44Decrypt", "string:"+peer.pk, "string:"+ct); got != plain {
		t.Fatalf("round trip: %q, want %q", got, plain)
	}
	fromPeer, err := nip44.Encrypt("a message from the peer to alice", ck)
	must(t, err)
	if got := e.mustSignerAs(uid, uid, "Nip44Decrypt", "string:"+peer.pk, "string:"+fromPeer); got != "a message from the peer to alice" {
		t.Fatalf("decrypting the peer's message: %q", got)
	}

	// Root too.
	if pk := e.mustSignerRoot(uid, "GetPublicKey"); pk != alice.pk {
		t.Fatalf("GetPublicKey as root: %q", pk)
	}
	checkSigned(t, e.mustSignerRoot(uid, "SignEvent", `{"kind":30078,"created_at":1700000002,"tags":[["d","x"]],"content":"root"}`),
		alice.pk, 30078, "root", 1700000002)
	ct = e.mustSignerRoot(uid, "Nip44Encrypt", peer.pk, "from root")
	if got := e.mustSignerRoot(uid, "Nip44Decrypt", peer.pk, ct); got != "from root" {
		t.Fatalf("round trip as root: %q", got)
	}
	if got := e.mustSignerRoot(uid, "Nip44Decrypt", peer.pk, fromPeer); got != "a message from the peer to alice" {
		t.Fatalf("decrypting the peer's message as root: %q", got)
	}

	// Another unprivileged user: the policy lets the call through, the daemon refuses it.
	for _, c := range [][]string{
		{"GetPublicKey"},
		{"SignEvent", "string:" + evJSON},
		{"Nip44Encrypt", "string:" + peer.pk, "string:" + plain},
		{"Nip44Decrypt", "string:" + peer.pk, "string:" + fromPeer},
	} {
		msg := e.signerErrAs(homed.ErrAccessDenied, nobody, uid, c[0], c[1:]...)
		if !strings.Contains(msg, "for root and that user only") {
			t.Fatalf("%s as uid %d: %s", c[0], nobody, msg)
		}
	}
	// The policy allows the four methods by name, nothing else of the interface.
	if _, err := e.signerAs(nobody, uid, "Sign", "string:x"); err == nil || !strings.Contains(err.Error(), "org.freedesktop.DBus.Error.AccessDenied") {
		t.Fatalf("a method the policy does not list: %v", err)
	}

	// Introspection of the signer object: the Signer interface.
	out, err := exec.Command("dbus-send", "--bus="+e.bus.Address, "--print-reply=literal", "--dest="+homed.BusName,
		string(homed.SignerPath(uid)), "org.freedesktop.DBus.Introspectable.Introspect").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `<interface name="org.nostr.Signer">`) || !strings.Contains(string(out), `<method name="Nip44Decrypt">`) {
		t.Fatalf("introspection of %s: %v\n%s", homed.SignerPath(uid), err, out)
	}

	// The log says who signed what kind, never a content or a plaintext.
	logs := e.logs.String()
	for _, want := range []string{"signer of alice (uid " + strconv.Itoa(int(uid)) + "): SignEvent (kind 1) by uid " + strconv.Itoa(int(uid)) + ": signed, id " + signed.ID,
		"SignEvent (kind 30078) by uid 0: signed", "Nip44Decrypt (peer " + peer.pk[:16], "by uid 65534: refused: AccessDenied"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("the log does not say %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{"note body", "plaintext 42", "from root", "a message from the peer", ct, fromPeer} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log contains %q:\n%s", secret, logs)
		}
	}

	// Closing one of two sessions keeps the signer; the last close ends it.
	e.mustCall("CloseSession", "alice")
	if pk := e.mustSignerAs(uid, uid, "GetPublicKey"); pk != alice.pk {
		t.Fatalf("GetPublicKey with one session left: %q", pk)
	}
	e.mustCall("CloseSession", "alice")
	if msg := e.signerErrAs(homed.ErrUnavailable, uid, uid, "SignEvent", "string:"+evJSON); !strings.Contains(msg, noSession) {
		t.Fatalf("after the last CloseSession: %s", msg)
	}
	e.signerErrRoot(homed.ErrUnavailable, uid, "GetPublicKey")
	e.signerErrRoot(homed.ErrUnavailable, uid, "Nip44Decrypt", peer.pk, fromPeer)
	// Still nobody else's: AccessDenied whether or not there is a session.
	e.signerErrAs(homed.ErrAccessDenied, nobody, uid, "GetPublicKey")
	// A new login whose key waits for OpenSession is no session either.
	e.login(alice)
	if st := e.status("alice"); st.Signer != "pending" {
		t.Fatalf("signer after the new login: %q, want pending", st.Signer)
	}
	if msg := e.signerErrAs(homed.ErrUnavailable, uid, uid, "GetPublicKey"); !strings.Contains(msg, noSession) {
		t.Fatalf("logged in again, no session: %s", msg)
	}
}

// TestSignerChecksEvenIfPolicyAllows installs a policy that lets everyone send anything to
// the daemon: the daemon's own check still keeps another user away from alice's signer.
func TestSignerChecksEvenIfPolicyAllows(t *testing.T) {
	_, fake := binaries(t)
	open := filepath.Join(t.TempDir(), "zz-open.conf")
	must(t, os.WriteFile(open, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><policy context="mandatory"><allow send_destination="org.nostr.Homed1"/></policy></busconfig>`), 0o644))
	addUser := busUsers(t)
	e := newEnv(t, envOpts{nostrfs: fake, policies: []string{open}})
	alice, uid := e.sessionOf(addUser, "alice")
	bob, bobUID := e.sessionOf(addUser, "bob")

	// With the open policy even a method the shipped policy does not list reaches the daemon.
	if _, err := e.signerAs(65534, uid, "Sign", "string:x"); err == nil || strings.Contains(err.Error(), "org.freedesktop.DBus.Error.AccessDenied") {
		t.Fatalf("the open policy is not in force: %v", err)
	}
	for _, caller := range []uint32{65534, bobUID} {
		msg := e.signerErrAs(homed.ErrAccessDenied, caller, uid, "GetPublicKey")
		if !strings.Contains(msg, "for root and that user only") {
			t.Fatalf("GetPublicKey of alice's signer as uid %d: %s", caller, msg)
		}
		e.signerErrAs(homed.ErrAccessDenied, caller, uid, "SignEvent", `string:{"kind":1,"content":"x"}`)
		e.signerErrAs(homed.ErrAccessDenied, caller, uid, "Nip44Decrypt", "string:"+bob.pk, "string:"+strings.Repeat("A", 200))
	}
	// Each user still has their own.
	if pk := e.mustSignerAs(uid, uid, "GetPublicKey"); pk != alice.pk {
		t.Fatalf("alice's signer as alice: %s", pk)
	}
	if pk := e.mustSignerAs(bobUID, bobUID, "GetPublicKey"); pk != bob.pk {
		t.Fatalf("bob's signer as bob: %s", pk)
	}
}

// TestSignerRefusesBadInput: malformed or oversized arguments are InvalidArgs and never
// reach the key; the session's signer keeps working.
func TestSignerRefusesBadInput(t *testing.T) {
	_, fake := binaries(t)
	addUser := busUsers(t)
	e := newEnv(t, envOpts{nostrfs: fake})
	alice, uid := e.sessionOf(addUser, "alice")
	other := newIdent(t, "other")

	for _, c := range []struct {
		name, method string
		args         []any
		msg          string
	}{
		{"malformed JSON", "SignEvent", []any{`{"kind":1,"content":"x"`}, "not a JSON object"},
		{"not an object", "SignEvent", []any{`[1,2]`}, "not a JSON object"},
		{"no kind", "SignEvent", []any{`{"content":"x"}`}, "no kind"},
		{"kind out of range", "SignEvent", []any{`{"kind":70000}`}, "not in 0-65535"},
		{"unknown field", "SignEvent", []any{`{"kind":1,"contents":"x"}`}, "not a JSON object"},
		{"field twice", "SignEvent", []any{`{"kind":1,"kind":2}`}, "not a JSON object"},
		{"null in a tag", "SignEvent", []any{`{"kind":1,"tags":[["e",null]]}`}, "null"},
		{"trailing data", "SignEvent", []any{`{"kind":1} {}`}, "not a JSON object"},
		{"someone else's pubkey", "SignEvent", []any{`{"kind":1,"content":"x","pubkey":"` + other.pk + `"}`}, "not the key of this session"},
		{"a pubkey that is no key", "SignEvent", []any{`{"kind":1,"pubkey":"abc"}`}, "not a public key"},
		{"event over 128 KiB", "SignEvent", []any{`{"kind":1,"content":"` + strings.Repeat("a", 128<<10) + `"}`}, "more than the 131072 allowed"},
		{"70000-byte plaintext", "Nip44Encrypt", []any{other.pk, strings.Repeat("p", 70000)}, "1 to 65535"},
		{"empty plaintext", "Nip44Encrypt", []any{other.pk, ""}, "1 to 65535"},
		{"non-hex peer", "Nip44Encrypt", []any{strings.Repeat("zz", 32), "hello"}, "not a public key"},
		{"upper-case peer", "Nip44Encrypt", []any{strings.ToUpper(other.pk), "hello"}, "not a public key"},
		{"short peer", "Nip44Encrypt", []any{other.pk[:62], "hello"}, "not a public key"},
		{"npub peer", "Nip44Encrypt", []any{other.npub, "hello"}, "not a public key"},
		{"peer not on the curve", "Nip44Encrypt", []any{strings.Repeat("ff", 32), "hello"}, "not a public key"},
		{"non-hex peer (decrypt)", "Nip44Decrypt", []any{"xyz", strings.Repeat("A", 200)}, "not a public key"},
		{"short ciphertext", "Nip44Decrypt", []any{other.pk, "AgAA"}, "a NIP-44 v2 payload has"},
		{"ciphertext of another version", "Nip44Decrypt", []any{other.pk, "#" + strings.Repeat("A", 200)}, "unsupported NIP-44 version"},
		{"ciphertext that does not decrypt", "Nip44Decrypt", []any{other.pk, "Ag" + strings.Repeat("A", 198)}, "does not decrypt"},
	} {
		msg := e.signerErrRoot(homed.ErrInvalidArgs, uid, c.method, c.args...)
		if !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %s, want a message with %q", c.name, msg, c.msg)
		}
	}
	// As the user, through dbus-send: the same answers.
	e.signerErrAs(homed.ErrInvalidArgs, uid, uid, "SignEvent", `string:{"kind":1,`)
	e.signerErrAs(homed.ErrInvalidArgs, uid, uid, "Nip44Encrypt", "string:"+other.pk, "string:"+strings.Repeat("p", 70000))
	e.signerErrAs(homed.ErrInvalidArgs, uid, uid, "Nip44Decrypt", "string:not-hex", "string:"+strings.Repeat("A", 200))

	// The largest plaintext NIP-44 allows is fine, and the signer still works.
	big := strings.Repeat("q", 65535)
	ct := e.mustSignerRoot(uid, "Nip44Encrypt", other.pk, big)
	if got := e.mustSignerRoot(uid, "Nip44Decrypt", other.pk, ct); got != big {
		t.Fatalf("65535-byte round trip: %d bytes back", len(got))
	}
	checkSigned(t, e.mustSignerRoot(uid, "SignEvent", `{"kind":1,"created_at":5,"content":"ok"}`), alice.pk, 1, "ok", 5)
}
