// Command nostr-homectl is the nostr-homed daemon (`serve`: the D-Bus service org.nostr.Homed1
// on the system bus) and its admin CLI. `nostr-homectl help` prints the commands and exit
// codes; the work is in internal/daemon.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nbd-wtf/go-nostr/nip19"
	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/config"
	"github.com/nostr-homed/nostr-homed/internal/daemon"
	"github.com/nostr-homed/nostr-homed/internal/homed"
	"github.com/nostr-homed/nostr-homed/internal/userdb"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit codes (also in the usage text).
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnavailable = 3
	exitDenied      = 4
)

const usage = `usage: nostr-homectl COMMAND [ARGS] [--config FILE]

The daemon:
  serve                          run the daemon: org.nostr.Homed1 on the system bus
                                 (DBUS_SYSTEM_BUS_ADDRESS if set); sd_notify READY=1
                                 under systemd; stops on SIGTERM or SIGINT

The user database (direct, as root; the daemon need not run):
  add NPUB --name NAME [--gecos TEXT] [--json]
                                 enroll a public key as a local user
  remove NAME                    end the user's sessions, then remove the user (its UID
                                 stays reserved) and forget its cached events. The sessions
                                 are ended by the daemon (TerminateSessions: mount stopped,
                                 secrets and key wiped); if it is not running, nothing can
                                 be open and remove goes on. If it runs and cannot end them,
                                 the user is NOT removed: exit 1 (e.g. a mount that had to
                                 be killed: run remove again), 3 (no answer) or 4 (denied)
  list [--json]                  list enrolled users

Through the daemon (over the system bus):
  warm NPUB|USER[/NAMESPACE] [--json] [--progress[=false]]
                                 fetch the user's settings, lists, manifest and secrets
                                 from the relays into the local cache; the daemon's
                                 progress goes to stderr if stderr is a terminal or with
                                 --progress (never to stdout)
  status [USER] [--json]         the user's cache, last warm, session, mount and secrets
                                 (every user without USER; root only)
  open USER                      open a session (the first one mounts the home; needs the
                                 key of a login that has just succeeded)
  close USER                     close a session (the last one unmounts and wipes)

Every command takes --config FILE (default ` + config.DefaultPath + `).

Exit codes:
  0  success
  1  the operation failed (unknown user, wrong state, mount failed, ...)
  2  usage error
  3  not available (the daemon or the bus cannot be reached, relays or cache unavailable)
  4  access denied
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	c := &cli{stdout: stdout, stderr: stderr}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return c.serve(rest)
	case "add":
		return c.add(rest)
	case "remove":
		return c.remove(rest)
	case "list":
		return c.list(rest)
	case "warm":
		return c.warm(rest)
	case "status":
		return c.status(rest)
	case "open", "close":
		return c.openClose(cmd, rest)
	}
	fmt.Fprintf(stderr, "nostr-homectl: unknown command %q (try: nostr-homectl help)\n", cmd)
	return exitUsage
}

type cli struct {
	stdout, stderr io.Writer
	configPath     string
	jsonOut        bool
}

func (c *cli) errorf(code int, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "nostr-homectl: "+format+"\n", args...)
	return code
}

// parse parses flags that may come before, between or after the positional arguments.
func (c *cli) parse(name string, args []string, setup func(*flag.FlagSet), json bool) ([]string, error) {
	fs := flag.NewFlagSet("nostr-homectl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.configPath, "config", config.DefaultPath, "configuration file")
	if json {
		fs.BoolVar(&c.jsonOut, "json", false, "JSON output")
	}
	if setup != nil {
		setup(fs)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) usageErr(err error, want string) int {
	return c.errorf(exitUsage, "%v\nusage: nostr-homectl %s", err, want)
}

func (c *cli) loadConfig() (config.Config, int) {
	cfg, err := config.Load(c.configPath)
	if err != nil {
		return cfg, c.errorf(exitFailed, "%v", err)
	}
	return cfg, exitOK
}

// ---- serve ----------------------------------------------------------------------------

func (c *cli) serve(args []string) int {
	pos, err := c.parse("serve", args, nil, false)
	if err != nil || len(pos) != 0 {
		return c.usageErr(orErr(err, "serve takes no arguments"), "serve [--config FILE]")
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	d, err := daemon.New(cfg, daemon.Options{ConfigPath: c.configPath, Log: c.stderr})
	if err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	runErr := d.Run(ctx)
	closeErr := d.Close()
	if runErr != nil {
		return c.errorf(exitFailed, "%v", runErr)
	}
	if closeErr != nil {
		return c.errorf(exitFailed, "shutting down: %v", closeErr)
	}
	return exitOK
}

// ---- the user database ----------------------------------------------------------------

func (c *cli) add(args []string) int {
	var name, gecos string
	const want = "add NPUB --name NAME [--gecos TEXT] [--json]"
	pos, err := c.parse("add", args, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "", "login name")
		fs.StringVar(&gecos, "gecos", "", "full name")
	}, true)
	if err != nil {
		return c.usageErr(err, want)
	}
	if len(pos) != 1 || name == "" {
		return c.usageErr(errors.New("add needs one NPUB and --name"), want)
	}
	pk, err := decodeNpub(pos[0])
	if err != nil {
		return c.usageErr(err, want)
	}
	if !userdb.ValidName(name) {
		return c.usageErr(fmt.Errorf("%q is not a valid user name (^[a-z_][a-z0-9_-]{0,31}$, not all digits)", name), want)
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	db, err := daemon.OpenUserDB(cfg, daemon.Options{})
	if err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	defer db.Close()
	u, err := db.AddUser(context.Background(), userdb.User{Pubkey: pk, Name: name, Gecos: gecos})
	if err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	if c.jsonOut {
		return c.printJSON(userJSON(u))
	}
	fmt.Fprintf(c.stdout, "enrolled %s (%s): uid %d, home %s\n", u.Name, pos[0], u.UID, u.Home)
	return exitOK
}

func decodeNpub(s string) (string, error) {
	prefix, v, err := nip19.Decode(s)
	pk, ok := v.(string)
	if err != nil || prefix != "npub" || !ok {
		return "", fmt.Errorf("%q is not an npub", s)
	}
	return pk, nil
}

func (c *cli) remove(args []string) int {
	pos, err := c.parse("remove", args, nil, false)
	if err != nil || len(pos) != 1 {
		return c.usageErr(orErr(err, "remove needs one NAME"), "remove NAME")
	}
	name := pos[0]
	if !userdb.ValidName(name) {
		return c.usageErr(fmt.Errorf("%q is not a valid user name", name), "remove NAME")
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	if code := c.terminateSessions(name); code != exitOK {
		return code
	}
	if err := daemon.RemoveUser(context.Background(), cfg, daemon.Options{}, name); err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	fmt.Fprintf(c.stdout, "removed %s (its UID stays reserved for its key)\n", name)
	return exitOK
}

// terminateSessions asks the daemon to end every session of name before it is removed. No
// bus, or no daemon on it: nothing can be open, so that is success. Any answer other than
// success from a running daemon is a failure: the user must not be removed while a session
// of theirs may still run.
func (c *cli) terminateSessions(name string) int {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		fmt.Fprintf(c.stdout, "the system bus cannot be reached (%v): no daemon runs, so no session of %s is open\n", err, name)
		return exitOK
	}
	defer conn.Close()
	var n uint32
	err = callOn(conn, "TerminateSessions", []any{&n}, name)
	var derr dbus.Error
	switch {
	case err == nil && n == 0:
		fmt.Fprintf(c.stdout, "no session of %s was open\n", name)
		return exitOK
	case err == nil:
		fmt.Fprintf(c.stdout, "ended %d session(s) of %s: home unmounted, secrets and key wiped\n", n, name)
		return exitOK
	case errors.As(err, &derr) && daemonNotRunning(derr.Name):
		fmt.Fprintf(c.stdout, "the daemon is not running (%s has no owner): no session of %s is open\n", homed.BusName, name)
		return exitOK
	}
	return c.failure("TerminateSessions", err, fmt.Sprintf("; %s is NOT removed", name))
}

// daemonNotRunning tells the bus's errors for a name nobody owns.
func daemonNotRunning(name string) bool {
	return name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
}

type userOut struct {
	Name       string    `json:"name"`
	Npub       string    `json:"npub"`
	Pubkey     string    `json:"pubkey"`
	UID        uint32    `json:"uid"`
	GID        uint32    `json:"gid"`
	Gecos      string    `json:"gecos"`
	Home       string    `json:"home"`
	Shell      string    `json:"shell"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

func userJSON(u userdb.User) userOut {
	npub, _ := nip19.EncodePublicKey(u.Pubkey)
	return userOut{Name: u.Name, Npub: npub, Pubkey: u.Pubkey, UID: u.UID, GID: u.GID, Gecos: u.Gecos,
		Home: u.Home, Shell: u.Shell, EnrolledAt: u.EnrolledAt}
}

func (c *cli) list(args []string) int {
	pos, err := c.parse("list", args, nil, true)
	if err != nil || len(pos) != 0 {
		return c.usageErr(orErr(err, "list takes no arguments"), "list [--json]")
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	db, err := daemon.OpenUserDB(cfg, daemon.Options{})
	if err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	defer db.Close()
	users, err := db.List(context.Background())
	if err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	out := []userOut{}
	for _, u := range users {
		out = append(out, userJSON(u))
	}
	if c.jsonOut {
		return c.printJSON(out)
	}
	if len(out) == 0 {
		fmt.Fprintln(c.stdout, "no users enrolled")
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUID\tHOME\tNPUB")
	for _, u := range out {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", u.Name, u.UID, u.Home, u.Npub)
	}
	tw.Flush()
	return exitOK
}

func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.errorf(exitFailed, "%v", err)
	}
	return exitOK
}

func orErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// ---- through the daemon ---------------------------------------------------------------

// callTimeout bounds one call to the daemon (a warm, a mount or a flush can take a while).
const callTimeout = 3 * time.Minute

// call makes one org.nostr.Homed1 call; the int is the exit code of a failure.
func (c *cli) call(method string, out []any, args ...any) int {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return c.errorf(exitUnavailable, "cannot reach the system bus: %v", err)
	}
	defer conn.Close()
	return c.failure(method, callOn(conn, method, out, args...), "")
}

// callOn makes one org.nostr.Homed1 call on conn, bounded by callTimeout, and stores its
// answer in out.
func callOn(conn *dbus.Conn, method string, out []any, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	call := conn.Object(homed.BusName, homed.ObjectPath).CallWithContext(ctx, homed.Interface+"."+method, 0, args...)
	return storeReply(call, out)
}

func storeReply(call *dbus.Call, out []any) error {
	if call.Err == nil && len(out) > 0 {
		call.Err = call.Store(out...)
	}
	return call.Err
}

// failure prints the error of a call (nil: nothing) with note appended, and returns its exit
// code.
func (c *cli) failure(method string, err error, note string) int {
	if err == nil {
		return exitOK
	}
	var derr dbus.Error
	if errors.As(err, &derr) {
		return c.errorf(exitCodeOf(derr.Name), "%s (%s)%s", derr.Error(), derr.Name, note)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return c.errorf(exitUnavailable, "%s: no answer from the daemon within %s%s", method, callTimeout, note)
	}
	return c.errorf(exitFailed, "%s: %v%s", method, err, note)
}

// exitCodeOf maps a D-Bus error name to an exit code.
func exitCodeOf(name string) int {
	switch name {
	case homed.ErrAccessDenied, "org.freedesktop.DBus.Error.AccessDenied":
		return exitDenied
	case homed.ErrUnavailable, "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.NoServer", "org.freedesktop.DBus.Error.Disconnected":
		return exitUnavailable
	case homed.ErrInvalidArgs:
		return exitUsage
	}
	return exitFailed
}

func (c *cli) warm(args []string) int {
	var progress autoBool
	pos, err := c.parse("warm", args, func(fs *flag.FlagSet) {
		fs.Var(&progress, "progress", "show the daemon's progress on stderr (default: if stderr is a terminal)")
	}, true)
	if err != nil || len(pos) != 1 {
		return c.usageErr(orErr(err, "warm needs one NPUB or USER"), "warm NPUB|USER[/NAMESPACE] [--json] [--progress[=false]]")
	}
	target := pos[0]
	if !c.jsonOut {
		fmt.Fprintf(c.stdout, "warming %s: asking the relays...\n", target)
	}
	show := progress.val
	if !progress.set {
		show = isTerminal(c.stderr)
	}
	if show {
		if code := c.warmWithProgress(target); code != exitOK {
			return code
		}
	} else if code := c.call("WarmCache", nil, target); code != exitOK {
		return code
	}
	// Show the result through status when the target is a user name.
	user, _, _ := strings.Cut(target, "/")
	if strings.HasPrefix(user, "npub1") {
		if c.jsonOut {
			return c.printJSON(map[string]any{"target": target, "warmed": true})
		}
		fmt.Fprintf(c.stdout, "warmed %s\n", target)
		return exitOK
	}
	var js string
	if code := c.call("GetStatus", []any{&js}, user); code != exitOK {
		return code
	}
	if c.jsonOut {
		fmt.Fprintln(c.stdout, js)
		return exitOK
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		return c.errorf(exitFailed, "the daemon's status is not JSON: %v", err)
	}
	printWarm(c.stdout, st.LastWarm)
	return exitOK
}

func (c *cli) status(args []string) int {
	pos, err := c.parse("status", args, nil, true)
	if err != nil || len(pos) > 1 {
		return c.usageErr(orErr(err, "status takes at most one USER"), "status [USER] [--json]")
	}
	user := ""
	if len(pos) == 1 {
		user = pos[0]
	}
	var js string
	if code := c.call("GetStatus", []any{&js}, user); code != exitOK {
		return code
	}
	if c.jsonOut {
		fmt.Fprintln(c.stdout, js)
		return exitOK
	}
	if user == "" {
		var all struct {
			Host       string          `json:"host"`
			Supervisor string          `json:"supervisor"`
			Users      []daemon.Status `json:"users"`
		}
		if err := json.Unmarshal([]byte(js), &all); err != nil {
			return c.errorf(exitFailed, "the daemon's status is not JSON: %v", err)
		}
		fmt.Fprintf(c.stdout, "host %s, mounts by %s, %d user(s)\n", all.Host, all.Supervisor, len(all.Users))
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tUID\tSESSION\tCACHED\tSIGNER")
		for _, st := range all.Users {
			fmt.Fprintf(tw, "%s\t%d\t%s (%d)\t%s\t%s\n", st.User, st.UID, st.Session.State, st.Session.Open, cachedSummary(st), st.Signer)
		}
		tw.Flush()
		return exitOK
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		return c.errorf(exitFailed, "the daemon's status is not JSON: %v", err)
	}
	printStatus(c.stdout, st)
	return exitOK
}

func cachedSummary(st daemon.Status) string {
	var names []string
	for _, ce := range st.Cached {
		if ce.Present {
			names = append(names, ce.Name)
		}
	}
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, ", ")
}

func printStatus(w io.Writer, st daemon.Status) {
	fmt.Fprintf(w, "%s (%s)\n", st.User, st.Npub)
	fmt.Fprintf(w, "  uid %d, home %s, enrolled: %v\n", st.UID, st.Home, st.Enrolled)
	method := st.LoginMethod
	if method == "" {
		method = "unknown (no settings cached)"
	}
	fmt.Fprintf(w, "  login method: %s\n", method)
	fmt.Fprintf(w, "  cached events (namespace %s):\n", st.Namespace)
	for _, ce := range st.Cached {
		switch {
		case ce.Error != "":
			fmt.Fprintf(w, "    %-12s %5d  unusable: %s\n", ce.Name, ce.Kind, ce.Error)
		case ce.Present:
			fmt.Fprintf(w, "    %-12s %5d  %s…  created %s (%s ago)\n", ce.Name, ce.Kind, ce.ID[:16],
				time.Unix(ce.CreatedAt, 0).UTC().Format(time.RFC3339), ce.Age)
		default:
			fmt.Fprintf(w, "    %-12s %5d  -\n", ce.Name, ce.Kind)
		}
	}
	printWarm(w, st.LastWarm)
	s := st.Session
	fmt.Fprintf(w, "  session: %s, %d open, mount point %s (%s)\n", s.State, s.Open, s.MountPoint, s.Supervisor)
	if s.Mount != nil {
		line := "    mount: " + s.Mount.State
		if s.Mount.PID != 0 {
			line += fmt.Sprintf(", pid %d", s.Mount.PID)
		}
		if s.Mount.Unit != "" {
			line += ", unit " + s.Mount.Unit
		}
		if s.Mount.Message != "" {
			line += ": " + s.Mount.Message
		}
		fmt.Fprintln(w, line)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "    last error: %s\n", s.LastError)
	}
	if len(st.Secrets) == 0 {
		fmt.Fprintln(w, "  secrets: none present")
	} else {
		fmt.Fprintf(w, "  secrets: %s\n", strings.Join(st.Secrets, ", "))
	}
	fmt.Fprintf(w, "  signer: %s\n", st.Signer)
}

func printWarm(w io.Writer, r *daemon.WarmReport) {
	if r == nil {
		fmt.Fprintln(w, "  last warm: none since the daemon started")
		return
	}
	stale := ""
	if r.Stale {
		stale = " [stale: no relay answered, using the cache]"
	}
	fmt.Fprintf(w, "  last warm: %s, %d relay(s) answered, %d failed%s\n", r.Time.UTC().Format(time.RFC3339), len(r.Answered), len(r.Failed), stale)
	failed := make([]string, 0, len(r.Failed))
	for u := range r.Failed {
		failed = append(failed, u)
	}
	sort.Strings(failed)
	for _, u := range failed {
		fmt.Fprintf(w, "    failed %s: %s\n", u, r.Failed[u])
	}
	if len(r.Updated) > 0 {
		fmt.Fprintf(w, "    updated: %s\n", strings.Join(r.Updated, ", "))
	}
	for _, ref := range r.Refused {
		fmt.Fprintf(w, "    refused: %s\n", ref)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "    error: %s\n", r.Error)
	}
}

func (c *cli) openClose(cmd string, args []string) int {
	pos, err := c.parse(cmd, args, nil, false)
	if err != nil || len(pos) != 1 {
		return c.usageErr(orErr(err, cmd+" needs one USER"), cmd+" USER")
	}
	method := "OpenSession"
	if cmd == "close" {
		method = "CloseSession"
	}
	if code := c.call(method, nil, pos[0]); code != exitOK {
		return code
	}
	fmt.Fprintf(c.stdout, "%s: session of %s %sed\n", cmd, pos[0], strings.TrimSuffix(cmd, "e"))
	return exitOK
}

// autoBool is a boolean flag that also tells whether it was given.
type autoBool struct{ set, val bool }

func (b *autoBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.val)
}

func (b *autoBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.val = true, v
	return nil
}

func (b *autoBool) IsBoolFlag() bool { return true }

// isTerminal tells whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// warmWithProgress calls WarmCache and prints the daemon's WarmProgress signals on stderr
// as they come. The daemon sends them to this connection alone (a unicast signal), so no
// match rule is needed; a signal counts only if it comes from the connection that owns
// org.nostr.Homed1 (any connection may send signals to any other) and is about this target.
//
// One goroutine reads both the signals and the reply. godbus puts a signal into the channel
// in the order it reads messages (synchronously while the channel has room), and the bus
// keeps the order of the daemon's messages to us, so when the reply is there every signal
// sent before it is already in the channel: draining the channel then loses none.
func (c *cli) warmWithProgress(target string) int {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return c.errorf(exitUnavailable, "cannot reach the system bus: %v", err)
	}
	defer conn.Close()
	var owner string
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, homed.BusName).Store(&owner); err != nil {
		// No daemon: the call below fails with the error to report.
		return c.failure("WarmCache", callOn(conn, "WarmCache", nil, target), "")
	}
	sigs := make(chan *dbus.Signal, 1024)
	conn.Signal(sigs)
	defer conn.RemoveSignal(sigs)

	start := time.Now()
	show := func(sig *dbus.Signal) {
		if sig == nil || sig.Sender != owner || sig.Path != homed.ObjectPath || sig.Name != homed.Interface+"."+homed.SignalWarmProgress || len(sig.Body) != 3 {
			return
		}
		t, _ := sig.Body[0].(string)
		stage, _ := sig.Body[1].(string)
		detail, _ := sig.Body[2].(string)
		if t != target {
			return
		}
		fmt.Fprintf(c.stderr, "%6.1fs  %-9s  %s\n", time.Since(start).Seconds(), stage, detail)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	call := conn.Object(homed.BusName, homed.ObjectPath).GoWithContext(ctx, homed.Interface+".WarmCache", 0, make(chan *dbus.Call, 1), target)
	for waiting := true; waiting; {
		select {
		case sig := <-sigs:
			show(sig)
		case <-call.Done:
			waiting = false
		}
	}
	for drained := false; !drained; {
		select {
		case sig := <-sigs:
			show(sig)
		default:
			drained = true
		}
	}
	return c.failure("WarmCache", storeReply(call, nil), "")
}
