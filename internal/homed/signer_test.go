package homed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"

	busfiles "github.com/nostr-homed/nostr-homed/dbus"
	"github.com/nostr-homed/nostr-homed/internal/dbustest"
)

// These tests run the signer's bus layer on a real private bus with the shipped policy, in
// front of a stand-in for the daemon (the daemon's own tests run it with real sessions).

// fakeSigners has one session: uid 65534, with a plain key signer, or a signer that never
// answers.
type fakeSigners struct {
	k nostr.Keyer
}

func (f *fakeSigners) SessionSigner(uid uint32) (string, nostr.Keyer, error) {
	if uid != 65534 {
		return "", nil, Errorf(ErrUnavailable, "no open session for uid %d", uid)
	}
	return "nobodyuser", f.k, nil
}

// stuckKeyer never answers, and ignores its context (the worst remote signer).
type stuckKeyer struct {
	nostr.Keyer
	release chan struct{}
}

func (s *stuckKeyer) GetPublicKey(context.Context) (string, error) {
	<-s.release
	return "", context.Canceled
}

func (s *stuckKeyer) SignEvent(context.Context, *nostr.Event) error {
	<-s.release
	return context.Canceled
}

func startSigner(t *testing.T, k nostr.Keyer, opts SignerOptions) *dbustest.Bus {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon owns its name under the root-only bus policy")
	}
	bus := dbustest.Start(t)
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := ExportSigner(context.Background(), conn, &fakeSigners{k: k}, busfiles.SignerXML, opts); err != nil {
		t.Fatal(err)
	}
	if err := Export(context.Background(), conn, &recorder{}, busfiles.Homed1XML); err != nil {
		t.Fatal(err)
	}
	return bus
}

// signerCallAs runs dbus-send as uid against an object path of the signer subtree.
func signerCallAs(bus *dbustest.Bus, uid uint32, path, member string, args ...string) (string, error) {
	argv := append([]string{"--bus=" + bus.Address, "--print-reply=literal", "--dest=" + BusName, path, member}, args...)
	cmd := exec.Command("dbus-send", argv...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestSignerPathsAndCallers(t *testing.T) {
	k, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := k.GetPublicKey(context.Background())
	bus := startSigner(t, k, SignerOptions{})
	get := SignerInterface + ".GetPublicKey"

	// The user of the session, and root.
	for _, caller := range []uint32{65534, 0} {
		if out, err := signerCallAs(bus, caller, "/org/nostr/Homed1/signer/65534", get); err != nil || out != pk {
			t.Fatalf("GetPublicKey as uid %d: %v %q, want %s", caller, err, out, pk)
		}
	}
	// Someone else's signer: AccessDenied, with or without a session behind it.
	for _, p := range []string{"/org/nostr/Homed1/signer/70001", "/org/nostr/Homed1/signer/0"} {
		if out, err := signerCallAs(bus, 65534, p, get); err == nil || !strings.Contains(out, ErrAccessDenied) {
			t.Fatalf("GetPublicKey of %s as uid 65534: %v %s", p, err, out)
		}
	}
	// Root, for a UID without a session: Unavailable.
	if out, err := signerCallAs(bus, 0, "/org/nostr/Homed1/signer/70001", get); err == nil || !strings.Contains(out, ErrUnavailable) || !strings.Contains(out, "no open session for uid 70001") {
		t.Fatalf("GetPublicKey of uid 70001 without a session: %v %s", err, out)
	}
	// Paths that name no UID.
	for _, p := range []string{"/org/nostr/Homed1/signer", "/org/nostr/Homed1/signer/065534", "/org/nostr/Homed1/signer/abc",
		"/org/nostr/Homed1/signer/65534/x", "/org/nostr/Homed1/signer/4294967296", "/org/nostr/Homed1/signer/0x10"} {
		out, err := signerCallAs(bus, 0, p, get)
		if err == nil || !strings.Contains(out, "org.freedesktop.DBus.Error.UnknownObject") {
			t.Fatalf("GetPublicKey at %s: %v %s", p, err, out)
		}
	}
	// The Homed1 interface is not served on signer objects, nor the Signer on Homed1.
	if out, err := signerCallAs(bus, 0, "/org/nostr/Homed1/signer/65534", Interface+".GetStatus", "string:x"); err == nil || !strings.Contains(out, "UnknownInterface") {
		t.Fatalf("Homed1 on a signer object: %v %s", err, out)
	}
	if out, err := signerCallAs(bus, 0, string(ObjectPath), get); err == nil || !strings.Contains(out, "UnknownInterface") {
		t.Fatalf("Signer on the Homed1 object: %v %s", err, out)
	}
	// Introspection: the Signer interface on a signer object (with or without a session), none
	// on the subtree's root.
	intro := "org.freedesktop.DBus.Introspectable.Introspect"
	for _, p := range []string{"/org/nostr/Homed1/signer/65534", "/org/nostr/Homed1/signer/70001"} {
		if out, err := signerCallAs(bus, 65534, p, intro); err != nil || !strings.Contains(out, `<interface name="org.nostr.Signer">`) {
			t.Fatalf("introspection of %s: %v\n%s", p, err, out)
		}
	}
	if out, err := signerCallAs(bus, 65534, "/org/nostr/Homed1/signer", intro); err != nil || strings.Contains(out, "<interface") {
		t.Fatalf("introspection of the subtree's root: %v\n%s", err, out)
	}
}

// TestSignerCallIsBounded: a signer that never answers (and ignores its context) costs the
// caller the bound, then Timeout.
func TestSignerCallIsBounded(t *testing.T) {
	stuck := &stuckKeyer{release: make(chan struct{})}
	t.Cleanup(func() { close(stuck.release) })
	bus := startSigner(t, stuck, SignerOptions{CallTimeout: 500 * time.Millisecond})
	for _, c := range [][]string{{"GetPublicKey"}, {"SignEvent", `string:{"kind":1}`}} {
		start := time.Now()
		out, err := signerCallAs(bus, 65534, "/org/nostr/Homed1/signer/65534", SignerInterface+"."+c[0], c[1:]...)
		took := time.Since(start)
		if err == nil || !strings.Contains(out, ErrTimeout) || !strings.Contains(out, "did not answer within 500ms") {
			t.Fatalf("%s of a stuck signer: %v %s", c[0], err, out)
		}
		if took < 400*time.Millisecond || took > 10*time.Second {
			t.Fatalf("%s of a stuck signer took %s, want about the 500ms bound", c[0], took)
		}
	}
}

// TestSignerLogsNoContent: the log names the caller, the user, the method and the kind, and
// holds no content, plaintext or ciphertext.
func TestSignerLogsNoContent(t *testing.T) {
	k, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	bus := startSigner(t, k, SignerOptions{Logf: logf})
	path := "/org/nostr/Homed1/signer/65534"
	peer := nostr.GeneratePrivateKey()
	peerPK, _ := nostr.GetPublicKey(peer)
	if out, err := signerCallAs(bus, 65534, path, SignerInterface+".SignEvent", `string:{"kind":4,"content":"CONTENT-SECRET"}`); err != nil {
		t.Fatalf("SignEvent: %v %s", err, out)
	}
	ct, err := signerCallAs(bus, 0, path, SignerInterface+".Nip44Encrypt", "string:"+peerPK, "string:PLAINTEXT-SECRET")
	if err != nil {
		t.Fatalf("Nip44Encrypt: %v %s", err, ct)
	}
	if out, err := signerCallAs(bus, 0, path, SignerInterface+".Nip44Decrypt", "string:"+peerPK, "string:"+ct); err != nil || out != "PLAINTEXT-SECRET" {
		t.Fatalf("Nip44Decrypt: %v %s", err, out)
	}
	if out, err := signerCallAs(bus, 0, path, SignerInterface+".Nip44Encrypt", "string:"+peerPK, "string:"+strings.Repeat("x", 65536)); err == nil || !strings.Contains(out, ErrInvalidArgs) {
		t.Fatalf("Nip44Encrypt of 65536 bytes: %v %s", err, out)
	}
	mu.Lock()
	log := strings.Join(lines, "\n")
	mu.Unlock()
	for _, want := range []string{
		"signer of nobodyuser (uid 65534): SignEvent (kind 4) by uid 65534: signed, id ",
		"signer of nobodyuser (uid 65534): Nip44Encrypt (peer " + peerPK[:16] + "…) by uid 0: encrypted",
		"Nip44Decrypt (peer " + peerPK[:16] + "…) by uid 0: decrypted",
		"signer of uid 65534: Nip44Encrypt by uid 0: refused: InvalidArgs: the plaintext is 65536 bytes",
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("the log does not say %q:\n%s", want, log)
		}
	}
	for _, secret := range []string{"CONTENT-SECRET", "PLAINTEXT-SECRET", ct[:40], "xxxxxxxx"} {
		if strings.Contains(log, secret) {
			t.Fatalf("the log holds %q:\n%s", secret, log)
		}
	}
}
