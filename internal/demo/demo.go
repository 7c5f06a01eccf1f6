// Package demo is `nostr-homed-devstack demo` (and `make demo`): a short, narrated run of
// nostr-homed's roaming data path with real parts and no setup.
//
// It starts a relay and a Blossom server in-process (package devstack) on a free loopback
// port, creates a throw-away identity, publishes its settings and secrets, lets "machine A"
// encrypt a file into a blob and publish a manifest pointing at it, shows that the servers
// hold only ciphertext, and lets "machine B" - which knows nothing but the npub, the password
// and the relay URL - find, verify, decrypt and read the file. It then shows the relay-side
// forgeries a reader refuses, and stops the stack.
//
// PAM login and mounting the home come later; the demo covers what exists now. The file's
// encryption here is a stand-in (see encryptFile), not the tree format of docs/FORMAT.md.
//
// Run prints numbered steps to its writer, ends with "demo: all steps passed" or
// "demo: FAILED at step N: ...", and never prints a secret: not the nsec, the password or
// the home key (Options.Reveal lets a test check that).
package demo

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/keyer"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip49"

	"github.com/nostr-homed/nostr-homed/internal/blobstore"
	"github.com/nostr-homed/nostr-homed/internal/blossom"
	"github.com/nostr-homed/nostr-homed/internal/devstack"
	"github.com/nostr-homed/nostr-homed/internal/events"
	"github.com/nostr-homed/nostr-homed/internal/relayio"
)

// DefaultTimeout bounds the whole demo.
const DefaultTimeout = 60 * time.Second

// PassedLine is the last line of a successful run.
const PassedLine = "demo: all steps passed"

// demoLogN is the scrypt cost (2^logn) of the demo's NIP-49 key. 16 keeps the demo quick
// (about 0.1 s per lock or unlock); a real account's default must be higher (NIP-49
// suggests 20 or more), because the ncryptsec is public in the settings event and its
// strength rests on the password and this cost alone.
const demoLogN = 16

// fileKeyInfo is the HKDF info of the demo's file key.
const fileKeyInfo = "nostr-homed demo file key v1"

// Options configures Run.
type Options struct {
	// Keep leaves the temp directory (the stack's data and both machines' files) in place
	// and prints where it is.
	Keep bool
	// TempDir is the parent of the demo's temp directory; empty means os.TempDir().
	TempDir string
	// Timeout bounds the whole demo; zero means DefaultTimeout.
	Timeout time.Duration
	// Logf receives the dev stack's log lines; nil discards them.
	Logf func(format string, args ...any)
	// Reveal, if set, is called with the secrets the demo creates as soon as they exist, so a
	// test can check that none of them ever reaches the output. The demo never prints them.
	Reveal func(Secrets)
}

// Secrets are the values the demo must never print.
type Secrets struct {
	Nsec         string // the demo identity's secret key, NIP-19
	SecretKeyHex string // the same key in hex
	Password     string // the demo password that locks the key (NIP-49)
	HomeKeyHex   string // the home key published in the secrets event
	FileKeyHex   string // the key derived from the home key that encrypts the file
}

// StepError is how Run fails: the step that failed and why.
type StepError struct {
	Step  int
	Title string
	Err   error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %d (%s): %v", e.Step, e.Title, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Step titles, in order. Run prints them numbered from 1.
var stepTitles = []string{
	"Start a relay and a Blossom server in this process",
	"Create a demo identity",
	"Publish its settings and secrets",
	"Machine A writes a file and publishes it",
	"What the servers see",
	"Machine B starts empty, knowing only the npub, the password and the relay",
	"Forgeries are refused",
	"Stop the dev stack",
}

// run is one demo's state, handed from step to step (machine B takes none of it: see
// machineB).
type run struct {
	out    io.Writer
	opts   Options
	reveal func(Secrets)
	dir    string
	stack  *devstack.Stack

	secrets  Secrets
	npub     string
	pubkey   string
	signer   keyer.KeySigner
	password string
	homeKey  []byte

	text       string // what machine A wrote
	blob       blobstore.Receipt
	blobHash   string
	manifestEv *nostr.Event
	selectedID string // the manifest machine B selected
}

const ns = events.DefaultNamespace

// Run runs the demo, writing its narration to out. It returns nil only if every step passed;
// otherwise a *StepError (also printed as "demo: FAILED at step N: ...").
func Run(ctx context.Context, out io.Writer, opts Options) (err error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	r := &run{out: out, opts: opts, reveal: opts.Reveal}
	if r.reveal == nil {
		r.reveal = func(Secrets) {}
	}
	defer r.cleanup() // also on a panic; a no-op after the explicit calls below

	fmt.Fprintln(out, "nostr-homed demo: a home's data roams between machines through a relay and a Blossom server.")
	fmt.Fprintln(out, "(Logging in through PAM and mounting the home come later; this is the data path they will use.)")
	steps := []func(context.Context) error{
		r.startStack,
		r.createIdentity,
		r.publishAccount,
		r.machineA,
		r.serversView,
		r.runMachineB,
		r.forgeries,
		r.stopStack,
	}
	for i, step := range steps {
		n, title := i+1, stepTitles[i]
		fmt.Fprintf(out, "\n%d. %s\n", n, title)
		if err := step(ctx); err != nil {
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				err = fmt.Errorf("%w (the demo is limited to %s)", err, timeout)
			case ctx.Err() != nil:
				err = fmt.Errorf("%w (interrupted)", err)
			}
			r.cleanup()
			fmt.Fprintf(out, "demo: FAILED at step %d: %v\n", n, err)
			return &StepError{Step: n, Title: title, Err: err}
		}
	}
	r.cleanup()
	fmt.Fprintln(out)
	fmt.Fprintln(out, PassedLine)
	return nil
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.out, "   "+format+"\n", args...)
}

// cleanup stops the stack if a step failed before step 8, and removes the temp directory
// unless Keep. Calls after the first do nothing.
func (r *run) cleanup() {
	if r.stack != nil {
		r.stack.Close()
		r.stack = nil
	}
	if r.dir == "" {
		return
	}
	if r.opts.Keep {
		fmt.Fprintf(r.out, "(kept the demo's files in %s)\n", r.dir)
	} else {
		os.RemoveAll(r.dir)
	}
	r.dir = ""
}

// Step 1.
func (r *run) startStack(ctx context.Context) error {
	dir, err := os.MkdirTemp(r.opts.TempDir, "nostr-homed-demo-")
	if err != nil {
		return err
	}
	r.dir = dir
	st, err := devstack.Start(ctx, devstack.Options{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "devstack"),
		Logf:    r.opts.Logf,
	})
	if err != nil {
		return err
	}
	r.stack = st
	r.say("relay   %s", st.RelayURL())
	fate := "removed at the end"
	if r.opts.Keep {
		fate = "kept at the end"
	}
	r.say("blossom %s (same port; their data in a fresh temp dir, %s)", st.BlossomURL(), fate)
	return nil
}

// Step 2.
func (r *run) createIdentity(context.Context) error {
	sk := nostr.GeneratePrivateKey()
	nsec, err := nip19.EncodePrivateKey(sk)
	if err != nil {
		return err
	}
	r.password = rand.Text()
	r.secrets = Secrets{Nsec: nsec, SecretKeyHex: sk, Password: r.password}
	r.reveal(r.secrets)

	r.signer, err = keyer.NewPlainKeySigner(sk)
	if err != nil {
		return err
	}
	if r.pubkey, err = nostr.GetPublicKey(sk); err != nil {
		return err
	}
	if r.npub, err = nip19.EncodePublicKey(r.pubkey); err != nil {
		return err
	}
	r.say("your npub: %s (a fresh key pair, only for this demo)", shorten(r.npub))
	r.say("its secret key is locked with a one-time demo password (NIP-49, not shown)")
	return nil
}

// Step 3.
func (r *run) publishAccount(ctx context.Context) error {
	ncryptsec, err := nip49.Encrypt(r.secrets.SecretKeyHex, r.password, demoLogN, nip49.ClientDoesNotTrackThisData)
	if err != nil {
		return fmt.Errorf("locking the key: %w", err)
	}
	relay := r.stack.RelayURL()
	settings := events.Settings{
		Relays:  events.RelaySettings{Read: []string{relay}, Write: []string{relay}},
		Blossom: []events.Server{{URL: r.stack.BlossomURL()}},
		Login:   []events.LoginMethod{{Type: events.LoginPassword, Ncryptsec: ncryptsec}},
	}
	now := time.Now()
	setEv, err := events.NewSettingsEvent(ctx, r.signer, ns, settings, nil, now)
	if err != nil {
		return err
	}

	r.homeKey = make([]byte, 32)
	rand.Read(r.homeKey)
	r.secrets.HomeKeyHex = hex.EncodeToString(r.homeKey)
	fileKey, err := fileKey(r.homeKey)
	if err != nil {
		return err
	}
	r.secrets.FileKeyHex = hex.EncodeToString(fileKey)
	r.reveal(r.secrets)
	secEv, err := events.NewSecretsEvent(ctx, r.signer, ns, events.Secrets{HomeKey: r.secrets.HomeKeyHex}, nil, now)
	if err != nil {
		return err
	}

	for _, ev := range []*nostr.Event{setEv, secEv} {
		if _, err := relayio.Publish(ctx, []string{relay}, ev, relayio.DefaultTimeout); err != nil {
			return err
		}
	}
	r.say("settings %s (kind %d, public by design: relays, servers, the locked key %s)", shorten(setEv.ID), setEv.Kind, shorten(ncryptsec))
	r.say("secrets  %s (kind %d, encrypted to the npub: a fresh random 32-byte home key)", shorten(secEv.ID), secEv.Kind)
	return nil
}

// Step 4.
func (r *run) machineA(ctx context.Context) error {
	home := filepath.Join(r.dir, "machine-a", "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	r.text = "hello from machine A at " + time.Now().Format(time.RFC3339)
	path := filepath.Join(home, "hello.txt")
	if err := os.WriteFile(path, []byte(r.text), 0o600); err != nil {
		return err
	}
	plain, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	key, err := fileKey(r.homeKey)
	if err != nil {
		return err
	}
	sealed, err := encryptFile(key, plain)
	if err != nil {
		return err
	}

	body := bytes.NewReader(sealed)
	size := int64(len(sealed))
	hash, err := blobstore.HashReaderAt(body, size)
	if err != nil {
		return err
	}
	bc, err := blossom.New(r.signer, []blossom.Server{{URL: r.stack.BlossomURL()}}, blossom.WithRetries(2, 100*time.Millisecond))
	if err != nil {
		return err
	}
	receipts, err := bc.Put(ctx, hash, size, body)
	if err != nil {
		return err
	}
	r.blob, r.blobHash = receipts[0], hash

	m := events.Manifest{Root: events.BlobRef{Hash: hash, Size: size}, Machine: "machine-a"}
	ev, err := events.NewManifestEvent(ctx, r.signer, ns, m, nil, 0, time.Now())
	if err != nil {
		return err
	}
	if _, err := relayio.Publish(ctx, []string{r.stack.RelayURL()}, ev, relayio.DefaultTimeout); err != nil {
		return err
	}
	r.manifestEv = ev
	r.say("wrote hello.txt: %q", r.text)
	r.say("encrypted it (%d bytes) and uploaded blob %s to %s", size, shorten(hash), r.blob.Backend)
	r.say("manifest %s (kind %d, generation 1, machine-a) points at that blob", shorten(ev.ID), ev.Kind)
	return nil
}

// Step 5.
func (r *run) serversView(ctx context.Context) error {
	content := r.manifestEv.Content
	r.say("the relay holds the manifest as ciphertext: %s...", content[:min(40, len(content))])
	if strings.Contains(content, r.blobHash) || strings.Contains(content, "machine-a") {
		return errors.New("the manifest event shows its root or machine in clear")
	}

	raw, err := getRaw(ctx, r.stack.BlossomURL()+"/"+r.blobHash)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != r.blobHash {
		return errors.New("the stored blob does not hash to its name")
	}
	for _, leak := range []string{r.text, "hello from machine A"} {
		if bytes.Contains(raw, []byte(leak)) {
			return fmt.Errorf("the stored blob contains the plaintext %q", leak)
		}
	}
	r.say("the Blossom server holds %d bytes starting %s..., not the text (checked)", len(raw), hex.EncodeToString(raw[:min(12, len(raw))]))
	return nil
}

// Step 6.
func (r *run) runMachineB(ctx context.Context) error {
	work := filepath.Join(r.dir, "machine-b")
	if err := os.Mkdir(work, 0o700); err != nil {
		return err
	}
	got, err := machineB(ctx, r.out, work, r.npub, r.password, r.stack.RelayURL())
	if err != nil {
		return err
	}
	if got.Text != r.text {
		return fmt.Errorf("machine B read %q, machine A wrote %q", got.Text, r.text)
	}
	if got.ManifestID != r.manifestEv.ID {
		return fmt.Errorf("machine B selected manifest %s, machine A published %s", shorten(got.ManifestID), shorten(r.manifestEv.ID))
	}
	r.selectedID = got.ManifestID
	r.say("same text as machine A wrote")
	return nil
}

// readResult is what machine B found.
type readResult struct {
	ManifestID string
	Text       string
}

// machineB is a second machine: it starts from nothing but the npub, the password and one
// relay URL, and an empty directory to work in. Everything else it learns from the relay and
// the Blossom servers, and checks.
func machineB(ctx context.Context, out io.Writer, work, npub, password, bootstrapRelay string) (*readResult, error) {
	say := func(format string, args ...any) { fmt.Fprintf(out, "   "+format+"\n", args...) }

	prefix, v, err := nip19.Decode(npub)
	if err != nil || prefix != "npub" {
		return nil, fmt.Errorf("%s is not an npub: %v", shorten(npub), err)
	}
	pubkey := v.(string)

	setEv, err := fetchNewest(ctx, []string{bootstrapRelay}, events.KindSettings, pubkey)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	settings, err := events.OpenSettings(setEv, pubkey, ns)
	if err != nil {
		return nil, err
	}
	ncryptsec := ""
	for _, m := range settings.Login {
		if m.Type == events.LoginPassword {
			ncryptsec = m.Ncryptsec
			break
		}
	}
	if ncryptsec == "" {
		return nil, errors.New("the settings offer no password login")
	}
	sk, err := nip49.Decrypt(ncryptsec, password)
	if err != nil {
		return nil, fmt.Errorf("unlocking the key: %w", err)
	}
	signer, err := keyer.NewPlainKeySigner(sk)
	if err != nil {
		return nil, err
	}
	if pk, _ := signer.GetPublicKey(ctx); pk != pubkey {
		return nil, errors.New("the unlocked key is not the npub's")
	}
	say("read settings %s from %s; the password unlocked the npub's key", shorten(setEv.ID), bootstrapRelay)

	relays := events.MergeURLs(settings.Relays.Read, []string{bootstrapRelay})
	secEv, err := fetchNewest(ctx, relays, events.KindSecrets, pubkey)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	secrets, err := events.OpenSecrets(ctx, signer, secEv, pubkey, ns)
	if err != nil {
		return nil, err
	}
	homeKey, err := hex.DecodeString(secrets.HomeKey)
	if err != nil || len(homeKey) != 32 {
		return nil, errors.New("the secrets hold no home key")
	}
	manEv, err := fetchNewest(ctx, relays, events.KindManifest, pubkey)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m, err := events.OpenManifest(ctx, signer, manEv, pubkey, ns)
	if err != nil {
		return nil, err
	}
	say("opened secrets %s and manifest %s (generation %d, from %s)", shorten(secEv.ID), shorten(manEv.ID), m.Generation, m.Machine)

	var servers []blossom.Server
	for _, s := range settings.Blossom {
		enc, err := blossom.ParseEncoding(s.Auth)
		if err != nil {
			return nil, err
		}
		servers = append(servers, blossom.Server{URL: s.URL, Encoding: enc})
	}
	bc, err := blossom.New(signer, servers, blossom.WithRetries(2, 100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	cache := filepath.Join(work, "cache")
	if err := os.Mkdir(cache, 0o700); err != nil {
		return nil, err
	}
	blobPath := filepath.Join(cache, m.Root.Hash)
	if err := bc.FetchFile(ctx, m.Root.Hash, blobPath, 0o600); err != nil {
		return nil, err
	}
	sealed, err := os.ReadFile(blobPath)
	if err != nil {
		return nil, err
	}
	if int64(len(sealed)) != m.Root.Size {
		return nil, fmt.Errorf("blob is %d bytes, the manifest says %d", len(sealed), m.Root.Size)
	}
	say("fetched blob %s from %s, verified against its sha256", shorten(m.Root.Hash), strings.Join(bc.Servers(), ", "))

	key, err := fileKey(homeKey)
	if err != nil {
		return nil, err
	}
	plain, err := decryptFile(key, sealed)
	if err != nil {
		return nil, err
	}
	say("decrypted hello.txt: %q", plain)
	return &readResult{ManifestID: manEv.ID, Text: string(plain)}, nil
}

// fetchNewest returns the newest valid event of kind by author in our namespace, or an error
// if there is none.
func fetchNewest(ctx context.Context, relays []string, kind int, author string) (*nostr.Event, error) {
	res, err := relayio.FetchNewest(ctx, relays, events.Expect{Kind: kind, Author: author, D: events.DTag(ns)}, relayio.DefaultTimeout)
	if err != nil {
		return nil, err
	}
	if res.Selection.Newest == nil {
		if len(res.Selection.Refused) > 0 {
			return nil, fmt.Errorf("no valid event of kind %d: %w", kind, res.Selection.Refused[0].Err)
		}
		return nil, fmt.Errorf("no event of kind %d on %s", kind, strings.Join(relays, ", "))
	}
	return res.Selection.Newest, nil
}

// Step 7.
func (r *run) forgeries(ctx context.Context) error {
	relay := r.stack.RelayURL()

	// A relay stores anything validly signed, so a forger signs with their own key: a newer
	// manifest under our kind and d tag, pointing at a blob of their choosing.
	forger, err := keyer.NewPlainKeySigner(nostr.GeneratePrivateKey())
	if err != nil {
		return err
	}
	bogus := make([]byte, 32)
	rand.Read(bogus)
	forged, err := events.NewManifestEvent(ctx, forger, ns,
		events.Manifest{Root: events.BlobRef{Hash: hex.EncodeToString(bogus), Size: 1}, Machine: "forger"},
		nil, 0, time.Now().Add(time.Minute))
	if err != nil {
		return err
	}
	if _, err := relayio.Publish(ctx, []string{relay}, forged, relayio.DefaultTimeout); err != nil {
		return fmt.Errorf("publishing the forged manifest: %w", err)
	}

	// Everything the relay has under our kind and d tag, whoever signed it.
	x := events.Expect{Kind: events.KindManifest, Author: r.pubkey, D: events.DTag(ns)}
	cands, _, failed := relayio.Fetch(ctx, []string{relay},
		nostr.Filter{Kinds: []int{x.Kind}, Tags: nostr.TagMap{"d": []string{x.D}}}, relayio.DefaultTimeout)
	if len(failed) > 0 {
		return fmt.Errorf("querying the relay: %v", failed[relay])
	}
	sel := events.SelectNewest(cands, x)
	rule := refusedRule(sel, forged.ID)
	if rule == "" {
		return fmt.Errorf("the forged manifest %s was not refused", shorten(forged.ID))
	}
	r.say("another key published a newer manifest %s under the same kind and d tag;", shorten(forged.ID))
	r.say("the relay serves it (%d manifests in all), validation refuses it by rule %q", len(cands), rule)

	// What machine B selects, with its author filter: still the real one.
	now, err := fetchNewest(ctx, []string{relay}, events.KindManifest, r.pubkey)
	if err != nil {
		return err
	}
	if now.ID != r.selectedID {
		return fmt.Errorf("machine B now selects manifest %s instead of %s", shorten(now.ID), shorten(r.selectedID))
	}
	r.say("machine B still selects manifest %s", shorten(now.ID))

	// A tampered copy of the real manifest: made newer, id recomputed, the signature kept
	// (no one else can sign for the npub). Relays drop such events, so this is checked here.
	tampered := *r.manifestEv
	tampered.Tags = append(nostr.Tags(nil), r.manifestEv.Tags...)
	tampered.CreatedAt += 120
	tampered.ID = tampered.GetID()
	err = events.Validate(&tampered, x)
	if err == nil {
		return errors.New("a tampered copy of the manifest validated")
	}
	if sel := events.SelectNewest([]events.Candidate{{Relay: relay, Event: r.manifestEv}, {Relay: relay, Event: &tampered}}, x); sel.Newest == nil || sel.Newest.ID != r.manifestEv.ID {
		return errors.New("a tampered copy of the manifest was selected")
	}
	r.say("a tampered copy of the real one (made newer) is refused by rule %q", events.BrokenRule(err))
	return nil
}

func refusedRule(sel events.Selection, id string) events.Rule {
	for _, ref := range sel.Refused {
		var re *events.RuleError
		if errors.As(ref.Err, &re) && re.EventID == id {
			return re.Rule
		}
	}
	return ""
}

// Step 8.
func (r *run) stopStack(ctx context.Context) error {
	st := r.stack
	r.stack = nil
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), devstack.DefaultShutdownTimeout)
	defer cancel()
	if err := st.Shutdown(sctx); err != nil {
		return err
	}
	r.say("stopped")
	return nil
}

// fileKey derives the key that encrypts the demo's file from the home key.
func fileKey(homeKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, homeKey, nil, fileKeyInfo, 32)
}

// encryptFile seals plaintext with AES-256-GCM under key, a random 12-byte nonce first.
//
// This is a stand-in for the tree format docs/FORMAT.md will define (chunking, directories,
// per-blob keys), not that format: it only shows that what leaves the machine is ciphertext.
func encryptFile(key, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, nil), nil
}

// decryptFile opens what encryptFile sealed.
func decryptFile(key, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("encrypted file too short")
	}
	pt, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return nil, fmt.Errorf("decrypting the file: %w", err)
	}
	return pt, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// getRaw fetches a URL's body as any client (or the server's operator) would see it.
func getRaw(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// shorten keeps the start and end of a long id, key or hash.
func shorten(s string) string {
	if len(s) <= 20 {
		return s
	}
	head := 8
	for _, p := range []string{"npub1", "ncryptsec1"} { // keep a bech32 prefix readable
		if strings.HasPrefix(s, p) {
			head = len(p) + 6
		}
	}
	return s[:head] + "..." + s[len(s)-4:]
}
