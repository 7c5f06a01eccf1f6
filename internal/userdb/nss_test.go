package userdb

// End-to-end tests through the real NSS module (nss/, build/libnss_nostr.so.2) and glibc's
// getent, as root and as an unprivileged user, in a private mount namespace where a test
// nsswitch.conf is bind-mounted over /etc/nsswitch.conf (the approach of nss/test.sh): the
// machine's configuration is never touched.

import (
	"bufio"
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helper modes of the test binary, selected by USERDB_TEST_HELPER (see TestMain).
const (
	helperEnv   = "USERDB_TEST_HELPER"
	helperDBEnv = "USERDB_TEST_DB"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "read":
		os.Exit(helperRead(os.Getenv(helperDBEnv)))
	case "write-and-hang":
		os.Exit(helperWriteAndHang(os.Getenv(helperDBEnv)))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode")
		os.Exit(2)
	}
}

// helperRead opens the database read-only the ordinary way (no immutable=1, unlike the NSS
// module's fallback) and prints the user names by UID. Run as a non-root user, it succeeds
// only if the -wal and -shm files exist and are readable.
func helperRead(path string) int {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM users ORDER BY uid`)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(strings.Join(names, " "))
	return 0
}

// helperWriteAndHang enrols dave, prints "ready UID" and waits to be killed: a daemon that
// crashes with the change still in the WAL.
func helperWriteAndHang(path string) int {
	d, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	u, err := d.AddUser(ctx, User{Pubkey: pk(4), Name: "dave", Gecos: "Dave"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready %d\n", u.UID)
	select {}
}

type nssEnv struct {
	dir  string // 0755, readable by the unprivileged user
	lib  string // holds a copy of libnss_nostr.so.2
	conf string // the test nsswitch.conf
}

// setupNSS prepares the module, a test nsswitch.conf and a directory every user can read.
// It skips the test when not root and fails when a tool or the module is missing.
func setupNSS(t *testing.T) *nssEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: the NSS end-to-end tests need root (unshare -m, mount --bind, setpriv)")
	}
	for _, tool := range []string{"unshare", "setpriv", "getent", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (util-linux, libc-bin): %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(root, "build", "libnss_nostr.so.2")
	if _, err := os.Stat(so); err != nil {
		cmd := exec.Command("make", "build/libnss_nostr.so.2")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s is missing and building it failed (run `make build` in %s): %v\n%s", so, root, err, out)
		}
	}
	dir, err := os.MkdirTemp("", "userdb-nss-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &nssEnv{dir: dir, lib: filepath.Join(dir, "lib"), conf: filepath.Join(dir, "nsswitch.conf")}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.lib, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, so, filepath.Join(e.lib, "libnss_nostr.so.2"), 0o755)
	writeFile(t, e.conf, "passwd: files nostr\ngroup: files nostr\nshadow: files\n")
	return e
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

// cleanEnv is the test's environment without the variables the commands get explicitly.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LD_LIBRARY_PATH=") && !strings.HasPrefix(kv, "NOSTR_HOMED_USERDB=") &&
			!strings.HasPrefix(kv, helperEnv+"=") && !strings.HasPrefix(kv, helperDBEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

const bindConf = `mount --bind "$0" /etc/nsswitch.conf && exec "$@"`

// run runs argv in a private mount namespace with the test nsswitch.conf, as root or as
// uid/gid 65534, with NOSTR_HOMED_USERDB=db and the module on LD_LIBRARY_PATH. It returns
// stdout (trimmed) and the exit status.
func (e *nssEnv) run(t *testing.T, db string, nobody bool, argv ...string) (string, int) {
	t.Helper()
	vars := []string{"NOSTR_HOMED_USERDB=" + db, "LD_LIBRARY_PATH=" + e.lib}
	args := []string{"-m", "sh", "-c", bindConf, e.conf}
	env := cleanEnv()
	if nobody {
		// setpriv itself runs without the module (as root it could create the WAL files);
		// env hands the variables to the unprivileged command only.
		args = append(args, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env")
		args = append(args, vars...)
	} else {
		env = append(env, vars...)
	}
	cmd := exec.Command("unshare", append(args, argv...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	if stderr.Len() > 0 {
		t.Logf("%v (nobody=%v) stderr: %s", argv, nobody, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), code
}

func who(nobody bool) string {
	if nobody {
		return "as uid 65534"
	}
	return "as root"
}

// expectLine checks that `getent DB KEY` prints want (and exits 0).
func (e *nssEnv) expectLine(t *testing.T, db string, nobody bool, want string, args ...string) {
	t.Helper()
	out, code := e.run(t, db, nobody, append([]string{"getent"}, args...)...)
	if code != 0 || out != want {
		t.Errorf("getent %s %s: exit %d, %q; want %q", strings.Join(args, " "), who(nobody), code, out, want)
	}
}

// expectAbsent checks that `getent DB KEY` finds nothing (exit 2).
func (e *nssEnv) expectAbsent(t *testing.T, db string, nobody bool, args ...string) {
	t.Helper()
	out, code := e.run(t, db, nobody, append([]string{"getent"}, args...)...)
	if code != 2 || out != "" {
		t.Errorf("getent %s %s: exit %d, %q; want exit 2 and no output", strings.Join(args, " "), who(nobody), code, out)
	}
}

func pwLine(u User) string {
	return fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", u.Name, u.UID, u.GID, u.Gecos, u.Home, u.Shell)
}

// strictRead runs helperRead as uid 65534 from a copy of the test binary.
func (e *nssEnv) strictRead(t *testing.T, db string) (string, int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(e.dir, "userdb.test")
	if _, err := os.Stat(bin); err != nil {
		copyFile(t, self, bin, 0o755)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin)
	cmd.Env = append(cleanEnv(), helperEnv+"=read", helperDBEnv+"="+db)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Logf("strict read-only open as uid 65534: %s", stderr.String())
	}
	return strings.TrimSpace(stdout.String()), code
}

func TestNSSEndToEnd(t *testing.T) {
	e := setupNSS(t)
	// Open creates the state directory (0755) and the file; the real /etc/passwd and
	// /etc/group are the account files.
	db := filepath.Join(e.dir, "state", "users.db")
	d, err := Open(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	alice, err := d.AddUser(ctx, User{Pubkey: pk(1), Name: "alice", Gecos: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := d.AddUser(ctx, User{Pubkey: pk(2), Name: "bob", Shell: "/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	admins, err := d.AddGroup(ctx, "nostr-admins")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddMember(ctx, "nostr-admins", "alice"); err != nil {
		t.Fatal(err)
	}
	t.Logf("alice uid %d, bob uid %d, nostr-admins gid %d", alice.UID, bob.UID, admins.GID)

	// check looks alice and her groups up; members is the expected member list of
	// nostr-admins.
	check := func(t *testing.T, nobody bool, members string) {
		e.expectLine(t, db, nobody, pwLine(alice), "passwd", "alice")
		e.expectLine(t, db, nobody, pwLine(alice), "passwd", fmt.Sprint(alice.UID))
		e.expectLine(t, db, nobody, fmt.Sprintf("alice:x:%d:", alice.GID), "group", "alice")
		e.expectLine(t, db, nobody, fmt.Sprintf("alice:x:%d:", alice.GID), "group", fmt.Sprint(alice.GID))
		e.expectLine(t, db, nobody, fmt.Sprintf("nostr-admins:x:%d:%s", admins.GID, members), "group", "nostr-admins")
		out, code := e.run(t, db, nobody, "getent", "initgroups", "alice")
		if f := strings.Fields(out); code != 0 || len(f) != 2 || f[0] != "alice" || f[1] != fmt.Sprint(admins.GID) {
			t.Errorf("getent initgroups alice %s: exit %d, %q; want alice and %d", who(nobody), code, out, admins.GID)
		}
	}

	t.Run("writer open, root", func(t *testing.T) {
		check(t, false, "alice")
		e.expectLine(t, db, false, pwLine(bob), "passwd", "bob")
		e.expectAbsent(t, db, false, "passwd", "carol")
	})
	t.Run("writer open, non-root", func(t *testing.T) {
		check(t, true, "alice")
		e.expectLine(t, db, true, pwLine(bob), "passwd", "bob")
		e.expectAbsent(t, db, true, "passwd", "carol")
	})

	// Changes made while the writer is open sit in the WAL (no checkpoint yet); a non-root
	// reader that fell back to reading the main file alone would miss them.
	carol, err := d.AddUser(ctx, User{Pubkey: pk(3), Name: "carol", Gecos: "Carol"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := d.AddMember(ctx, "nostr-admins", "carol"); err != nil {
		t.Fatal(err)
	}
	t.Run("changes while the writer is open, non-root", func(t *testing.T) {
		e.expectLine(t, db, true, pwLine(carol), "passwd", "carol")
		e.expectAbsent(t, db, true, "passwd", "bob")
		e.expectAbsent(t, db, true, "passwd", fmt.Sprint(bob.UID))
		e.expectLine(t, db, true, fmt.Sprintf("nostr-admins:x:%d:alice,carol", admins.GID), "group", "nostr-admins")
		if out, code := e.strictRead(t, db); code != 0 || out != "alice carol" && out != "carol alice" {
			t.Errorf("read-only open as uid 65534 with the writer open: exit %d, %q", code, out)
		}
	})

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Run("writer closed, non-root", func(t *testing.T) {
		for _, suffix := range []string{"-wal", "-shm"} {
			if st, err := os.Stat(db + suffix); err != nil {
				t.Errorf("after close: %v", err)
			} else if m := st.Mode().Perm(); m != 0o644 {
				t.Errorf("%s after close: mode %o", suffix, m)
			}
		}
		check(t, true, "alice,carol")
		e.expectLine(t, db, true, pwLine(carol), "passwd", "carol")
		e.expectAbsent(t, db, true, "passwd", "bob")
		// Not only through the module's immutable fallback: an ordinary read-only open works.
		if out, code := e.strictRead(t, db); code != 0 || out != "alice carol" && out != "carol alice" {
			t.Errorf("read-only open as uid 65534 after close: exit %d, %q", code, out)
		}
	})
	t.Run("writer closed, root", func(t *testing.T) {
		check(t, false, "alice,carol")
		e.expectLine(t, db, false, pwLine(carol), "passwd", "carol")
	})
	// Root's lookups above may have recreated state in -shm; a non-root reader still works.
	t.Run("writer closed, non-root after root", func(t *testing.T) {
		check(t, true, "alice,carol")
		if out, code := e.strictRead(t, db); code != 0 || out != "alice carol" && out != "carol alice" {
			t.Errorf("read-only open as uid 65534 after root's lookups: exit %d, %q", code, out)
		}
	})
}

// TestNSSAfterWriterCrash: the daemon dies with a change still in the WAL; non-root lookups
// still see it.
func TestNSSAfterWriterCrash(t *testing.T) {
	e := setupNSS(t)
	db := filepath.Join(e.dir, "state", "users.db")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(cleanEnv(), helperEnv+"=write-and-hang", helperDBEnv+"="+db)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer helper did not get ready: %s", stderr.String())
	}
	var uid uint32
	if _, err := fmt.Sscanf(line, "ready %d", &uid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer helper: %q, %s", line, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	st, err := os.Stat(db + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() == 0 {
		t.Fatal("the WAL is empty after the crash: this test needs the change to be in the WAL only")
	}
	dave := User{Name: "dave", UID: uid, GID: uid, Gecos: "Dave", Home: "/home/dave", Shell: "/bin/bash"}
	e.expectLine(t, db, true, pwLine(dave), "passwd", "dave")
	e.expectLine(t, db, true, fmt.Sprintf("dave:x:%d:", uid), "group", "dave")
	if out, code := e.strictRead(t, db); code != 0 || out != "dave" {
		t.Errorf("read-only open as uid 65534 after the crash: exit %d, %q", code, out)
	}
	e.expectLine(t, db, false, pwLine(dave), "passwd", "dave")

	// The next writer recovers and goes on.
	d, err := Open(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if u, err := d.User(ctx, "dave"); err != nil || u.UID != uid {
		t.Fatalf("dave after the crash: %+v %v", u, err)
	}
}
