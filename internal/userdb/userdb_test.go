package userdb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var ctx = context.Background()

// testPasswd and testGroup are the fake account files every test starts from.
const testPasswd = `root:x:0:0:root:/root:/bin/bash
# a comment
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
local:x:1000:1000:Local User:/home/local:/bin/bash
`
const testGroup = `root:x:0:
staff:x:50:
nogroup:x:65534:
local:x:1000:
`

type testEnv struct {
	dir    string
	dbPath string
	opts   Options
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := &testEnv{dir: dir, dbPath: filepath.Join(dir, "db", "users.db")}
	e.opts = Options{
		PasswdPath: filepath.Join(dir, "passwd"),
		GroupPath:  filepath.Join(dir, "group"),
		SubUIDPath: filepath.Join(dir, "subuid"), // absent unless a test writes it
		SubGIDPath: filepath.Join(dir, "subgid"),
	}
	writeFile(t, e.opts.PasswdPath, testPasswd)
	writeFile(t, e.opts.GroupPath, testGroup)
	return e
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// open opens the env's database with its options; the DB is closed at the end of the test.
func (e *testEnv) open(t *testing.T) *DB {
	t.Helper()
	d, err := Open(e.dbPath, e.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// pk returns a deterministic test public key.
func pk(i int) string {
	s := sha256.Sum256([]byte(fmt.Sprintf("test public key %d", i)))
	return hex.EncodeToString(s[:])
}

func slotOf(t *testing.T, o Options, pubkey string) uint32 {
	t.Helper()
	s, err := o.UserSlot(pubkey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAdd(t *testing.T, d *DB, pubkey, name string) User {
	t.Helper()
	u, err := d.AddUser(ctx, User{Pubkey: pubkey, Name: name})
	if err != nil {
		t.Fatalf("AddUser(%s): %v", name, err)
	}
	return u
}

func wantErr(t *testing.T, err, kind error, substrings ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want %v", err, kind)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// snapshot dumps every table the package writes, to check that a refused call changed
// nothing.
func snapshot(t *testing.T, d *DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT pubkey, name, uid, gid, gecos, home, shell, enrolled_at FROM users ORDER BY uid`,
		`SELECT gid, name FROM groups ORDER BY gid`,
		`SELECT gid, user_name FROM members ORDER BY gid, user_name`,
		`SELECT uid, pubkey FROM uid_allocations ORDER BY uid`,
		`SELECT gid, name FROM gid_allocations ORDER BY gid`,
		`SELECT key, value FROM meta ORDER BY key`,
	} {
		rows, err := d.db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, vals...)
		}
		rows.Close()
		b.WriteString("--\n")
	}
	return b.String()
}

func count(t *testing.T, d *DB, table string) int {
	t.Helper()
	var n int
	if err := d.db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDefaultRangeInsideSystemdUnusedRange(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	first, last := uint64(o.Base), uint64(o.Base)+uint64(o.Range)-1
	// systemd (UIDS-GIDS.md) leaves 65536..524287 unused.
	if first < 65536 || last > 524287 {
		t.Errorf("default range %d..%d is not inside 65536..524287", first, last)
	}
	// shadow's useradd starts subordinate IDs at SUB_UID_MIN = 100000.
	if last >= 100000 {
		t.Errorf("default range %d..%d overlaps the default subordinate IDs (100000 and up)", first, last)
	}
	if first != DefaultBase || last != 99999 {
		t.Errorf("default range %d..%d, want %d..99999", first, last, DefaultBase)
	}
	for _, bad := range []Options{{Base: 4294967000, Range: 296}, {Base: 1, Range: 4294967295}} {
		if _, err := Open(filepath.Join(t.TempDir(), "u.db"), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open with range %d+%d: %v, want ErrInvalid", bad.Base, bad.Range, err)
		}
	}
}

func TestMappingIsDeterministicAndInRange(t *testing.T) {
	for _, o := range []Options{{}, {Base: 70000, Range: 10}, {Base: 200000, Range: 262144, Key: [16]byte{1, 2, 3}}} {
		o, _ := o.withDefaults()
		seen := map[uint32]bool{}
		for i := range 2000 {
			s := slotOf(t, o, pk(i))
			if s < o.Base || uint64(s) > uint64(o.Base)+uint64(o.Range)-1 {
				t.Fatalf("slot %d of key %d outside %d+%d", s, i, o.Base, o.Range)
			}
			if again := slotOf(t, o, strings.ToUpper(pk(i))); again != s {
				t.Fatalf("slot of key %d: %d then %d", i, s, again)
			}
			seen[s] = true
		}
		// Spread: 2000 keys over a big range land on many slots; over 10 slots, on all.
		if want := min(int(o.Range), 1900); len(seen) < want {
			t.Errorf("range %d: 2000 keys hit only %d slots, want at least %d", o.Range, len(seen), want)
		}
	}
	// The mapping is a contract across versions and machines: pin it. SipHash-2-4 with the
	// zero key over the 32 raw key bytes (not the hex or npub text).
	one := strings.Repeat("0", 63) + "1"
	if s := slotOf(t, Options{}, one); s != 95202 {
		t.Errorf("slot of %s with the default options = %d, want 95202", one, s)
	}
	raw, _ := hex.DecodeString(one)
	if want := DefaultBase + uint32(sipHash24([16]byte{}, raw)%DefaultRange); want != 95202 {
		t.Errorf("independent computation gives %d", want)
	}
	// A different key gives a different mapping.
	differ := 0
	for i := range 100 {
		if slotOf(t, Options{}, pk(i)) != slotOf(t, Options{Key: [16]byte{9}}, pk(i)) {
			differ++
		}
	}
	if differ < 90 {
		t.Errorf("changing the key changed only %d of 100 slots", differ)
	}
}

func TestSameUIDAfterReopenAndReAdd(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	alice := mustAdd(t, d, pk(1), "alice")
	if want := slotOf(t, e.opts, pk(1)); alice.UID != want || alice.GID != want {
		t.Fatalf("alice uid/gid %d/%d, want the slot %d", alice.UID, alice.GID, want)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = e.open(t)
	got, err := d.UserByPubkey(ctx, pk(1))
	if err != nil || got.UID != alice.UID || got.Name != "alice" {
		t.Fatalf("after reopen: %+v, %v; want uid %d", got, err, alice.UID)
	}
	if got, err := d.UserByUID(ctx, alice.UID); err != nil || got.Name != "alice" {
		t.Fatalf("UserByUID: %+v, %v", got, err)
	}
	if err := d.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.User(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("User after removal: %v, want ErrNotFound", err)
	}
	if uid, ok, err := d.AllocatedUID(ctx, pk(1)); err != nil || !ok || uid != alice.UID {
		t.Fatalf("allocation after removal: %d %v %v", uid, ok, err)
	}
	d.Close()
	d = e.open(t)
	again := mustAdd(t, d, pk(1), "alice2")
	if again.UID != alice.UID {
		t.Fatalf("re-added key got uid %d, want its old %d", again.UID, alice.UID)
	}
}

// findCollidingKey returns a SipHash key under which two public keys map to the same slot,
// trying keys until one does, and that slot.
func findCollidingKey(t *testing.T, o Options, a, b string, avoidLast bool) (Options, uint32) {
	t.Helper()
	for i := uint64(0); i < 1_000_000; i++ {
		binary.LittleEndian.PutUint64(o.Key[:], i)
		sa, sb := slotOf(t, o, a), slotOf(t, o, b)
		if sa == sb && (!avoidLast || sa != o.Base+o.Range-1) {
			return o, sa
		}
	}
	t.Fatal("no colliding key found")
	return o, 0
}

func TestUIDCollisionProbesToNextSlot(t *testing.T) {
	e := newEnv(t)
	e.opts.Base, e.opts.Range = 70000, 1000
	var s uint32
	e.opts, s = findCollidingKey(t, e.opts, pk(1), pk(2), true)
	t.Logf("key %x maps both test keys to %d", e.opts.Key, s)

	d := e.open(t)
	a := mustAdd(t, d, pk(1), "alice")
	b := mustAdd(t, d, pk(2), "bob")
	if a.UID != s || b.UID != s+1 {
		t.Fatalf("alice %d, bob %d; want %d and %d", a.UID, b.UID, s, s+1)
	}
	if b.GID != b.UID {
		t.Fatalf("bob's gid %d != uid %d", b.GID, b.UID)
	}
	d.Close()

	// Across a restart, in either order of re-enrolment.
	d = e.open(t)
	for _, u := range []User{a, b} {
		got, err := d.UserByPubkey(ctx, u.Pubkey)
		if err != nil || got.UID != u.UID {
			t.Fatalf("after reopen %s: %+v %v, want uid %d", u.Name, got, err, u.UID)
		}
	}
	for _, name := range []string{"alice", "bob"} {
		if err := d.RemoveUser(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if b2 := mustAdd(t, d, pk(2), "bob"); b2.UID != b.UID {
		t.Fatalf("bob re-added first got %d, want %d", b2.UID, b.UID)
	}
	if a2 := mustAdd(t, d, pk(1), "alice"); a2.UID != a.UID {
		t.Fatalf("alice re-added second got %d, want %d", a2.UID, a.UID)
	}

	// A third key on the same slot gets neither of the two, even once both are removed.
	var third string
	for i := 3; ; i++ {
		if slotOf(t, e.opts, pk(i)) == s {
			third = pk(i)
			break
		}
	}
	d.RemoveUser(ctx, "alice")
	d.RemoveUser(ctx, "bob")
	if c := mustAdd(t, d, third, "carol"); c.UID != s+2 {
		t.Fatalf("third key on slot %d got %d, want %d", s, c.UID, s+2)
	}
}

func TestUIDCollisionWrapsInsideRange(t *testing.T) {
	e := newEnv(t)
	e.opts.Base, e.opts.Range = 70000, 5
	// Two keys on the last slot: the second wraps to the first slot.
	var last []string
	for i := 0; len(last) < 2; i++ {
		if slotOf(t, e.opts, pk(i)) == 70004 {
			last = append(last, pk(i))
		}
	}
	d := e.open(t)
	if u := mustAdd(t, d, last[0], "alice"); u.UID != 70004 {
		t.Fatalf("first: %d, want 70004", u.UID)
	}
	if u := mustAdd(t, d, last[1], "bob"); u.UID != 70000 {
		t.Fatalf("second: %d, want 70000 (wrapped)", u.UID)
	}
}

func TestSystemIDsAreSkipped(t *testing.T) {
	e := newEnv(t)
	// Keys whose slots are well inside the default range, on distinct slots.
	var keys []string
	slots := map[uint32]bool{}
	for i := 0; len(keys) < 3; i++ {
		s := slotOf(t, e.opts, pk(i))
		if s > DefaultBase+100 && s < DefaultBase+DefaultRange-100 && !slots[s] {
			keys = append(keys, pk(i))
			for j := s - 20; j < s+20; j++ {
				slots[j] = true
			}
		}
	}
	sa, sb, sc := slotOf(t, e.opts, keys[0]), slotOf(t, e.opts, keys[1]), slotOf(t, e.opts, keys[2])
	appendLine(t, e.opts.PasswdPath, fmt.Sprintf("squatter:x:%d:100::/home/squatter:/bin/sh", sa))
	appendLine(t, e.opts.GroupPath, fmt.Sprintf("squatters:x:%d:", sb))
	appendLine(t, e.opts.SubUIDPath, fmt.Sprintf("local:%d:10", sc-3)) // sc-3 .. sc+6

	d := e.open(t)
	if u := mustAdd(t, d, keys[0], "alice"); u.UID != sa+1 {
		t.Errorf("slot %d is a uid in the passwd file: got %d, want %d", sa, u.UID, sa+1)
	}
	if u := mustAdd(t, d, keys[1], "bob"); u.UID != sb+1 {
		t.Errorf("slot %d is a gid in the group file: got %d, want %d", sb, u.UID, sb+1)
	}
	if u := mustAdd(t, d, keys[2], "carol"); u.UID != sc+7 {
		t.Errorf("slot %d is inside subordinate range %d..%d: got %d, want %d", sc, sc-3, sc+6, u.UID, sc+7)
	}
}

func TestRemovedUIDIsNeverReused(t *testing.T) {
	e := newEnv(t)
	e.opts.Base, e.opts.Range = 70000, 2
	d := e.open(t)
	a := mustAdd(t, d, pk(1), "alice")
	if err := d.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	b := mustAdd(t, d, pk(2), "bob")
	if b.UID == a.UID {
		t.Fatalf("bob got removed alice's uid %d", a.UID)
	}
	if err := d.RemoveUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, d)
	_, err := d.AddUser(ctx, User{Pubkey: pk(3), Name: "carol"})
	wantErr(t, err, ErrRangeFull, "70000..70001")
	if after := snapshot(t, d); after != before {
		t.Fatalf("refused AddUser changed the database:\n%s\nthen\n%s", before, after)
	}
	// The range is full for new keys, not for keys that already have an ID.
	if u := mustAdd(t, d, pk(1), "alice"); u.UID != a.UID {
		t.Fatalf("alice back: %d, want %d", u.UID, a.UID)
	}
	if u := mustAdd(t, d, pk(2), "bob"); u.UID != b.UID {
		t.Fatalf("bob back: %d, want %d", u.UID, b.UID)
	}
}

func TestRangeFull(t *testing.T) {
	e := newEnv(t)
	e.opts.Base, e.opts.Range = 70000, 3
	appendLine(t, e.opts.PasswdPath, "squatter:x:70001:70001::/:/bin/sh")
	d := e.open(t)
	uids := []uint32{mustAdd(t, d, pk(1), "alice").UID, mustAdd(t, d, pk(2), "bob").UID}
	slices.Sort(uids)
	if !slices.Equal(uids, []uint32{70000, 70002}) {
		t.Fatalf("uids %v, want [70000 70002] (70001 is in the passwd file)", uids)
	}
	_, err := d.AddUser(ctx, User{Pubkey: pk(3), Name: "carol"})
	wantErr(t, err, ErrRangeFull, "70000..70002", "public key "+pk(3))
	if n := count(t, d, "users"); n != 2 {
		t.Errorf("%d users after ErrRangeFull", n)
	}
	if n := count(t, d, "uid_allocations"); n != 2 {
		t.Errorf("%d allocations after ErrRangeFull", n)
	}
	_, err = d.AddGroup(ctx, "admins")
	wantErr(t, err, ErrRangeFull, "group admins")
}

func TestRecordedUIDNowInPasswdIsNotShared(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	a := mustAdd(t, d, pk(1), "alice")
	if err := d.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	appendLine(t, e.opts.PasswdPath, fmt.Sprintf("intruder:x:%d:100::/:/bin/sh", a.UID))
	_, err := d.AddUser(ctx, User{Pubkey: pk(1), Name: "alice"})
	wantErr(t, err, ErrIDConflict, "intruder", fmt.Sprint(a.UID))
}

func TestAlreadyEnrolled(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	mustAdd(t, d, pk(1), "alice")
	before := snapshot(t, d)
	for _, key := range []string{pk(1), strings.ToUpper(pk(1))} {
		_, err := d.AddUser(ctx, User{Pubkey: key, Name: "bob"})
		wantErr(t, err, ErrExists, "already enrolled as alice")
	}
	if after := snapshot(t, d); after != before {
		t.Fatal("refused AddUser changed the database")
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"a", "_", "_svc", "alice", "alice-2", "a_b", "a1", "_1",
		strings.Repeat("a", 32)} {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	invalid := []string{"", "Alice", "1alice", "123", "-alice", "al ice", "al:ice", "al,ice",
		"al.ice", "alice$", "ali\nce", "älice", strings.Repeat("a", 33), "al/ice"}
	for _, n := range invalid {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}

	e := newEnv(t)
	d := e.open(t)
	mustAdd(t, d, pk(1), "alice")
	if _, err := d.AddGroup(ctx, "admins"); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, d)
	for _, n := range invalid {
		_, err := d.AddUser(ctx, User{Pubkey: pk(2), Name: n})
		wantErr(t, err, ErrInvalidName)
		_, err = d.AddGroup(ctx, n)
		wantErr(t, err, ErrInvalidName)
	}
	clashes := []struct{ name, mention string }{
		{"alice", "cached user alice"},
		{"admins", "cached group admins"},
		{"local", e.opts.PasswdPath + " has user local (uid 1000)"},
		{"nobody", "has user nobody"},
		{"staff", e.opts.GroupPath + " has group staff (gid 50)"},
	}
	for _, c := range clashes {
		_, err := d.AddUser(ctx, User{Pubkey: pk(2), Name: c.name})
		wantErr(t, err, ErrNameTaken, c.mention)
		_, err = d.AddGroup(ctx, c.name)
		wantErr(t, err, ErrNameTaken, c.mention)
	}
	if after := snapshot(t, d); after != before {
		t.Fatalf("refused calls changed the database:\n%s\nthen\n%s", before, after)
	}
	if u, err := d.User(ctx, "alice"); err != nil || u.Pubkey != pk(1) {
		t.Fatalf("alice overwritten: %+v %v", u, err)
	}
}

func TestBadFields(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	for _, u := range []User{
		{Pubkey: "abc", Name: "alice"},
		{Pubkey: strings.Repeat("g", 64), Name: "alice"},
		{Pubkey: pk(1) + "00", Name: "alice"},
		{Pubkey: pk(1), Name: "alice", Gecos: "a:b"},
		{Pubkey: pk(1), Name: "alice", Gecos: "a\nb"},
		{Pubkey: pk(1), Name: "alice", Home: "home/alice"},
		{Pubkey: pk(1), Name: "alice", Shell: "bash"},
		{Pubkey: pk(1), Name: "alice", Shell: "/bin/sh:x"},
	} {
		_, err := d.AddUser(ctx, u)
		wantErr(t, err, ErrInvalid)
	}
	if n := count(t, d, "uid_allocations"); n != 0 {
		t.Fatalf("%d allocations after refused calls", n)
	}
	u, err := d.AddUser(ctx, User{Pubkey: pk(1), Name: "alice", Gecos: "Alice Liddell,,,"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Home != "/home/alice" || u.Shell != "/bin/bash" || u.Gecos != "Alice Liddell,,," {
		t.Fatalf("defaults: %+v", u)
	}
	got, err := d.User(ctx, "alice")
	if err != nil || got != u {
		t.Fatalf("stored %+v, returned %+v (%v)", got, u, err)
	}
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	alice := mustAdd(t, d, pk(1), "alice")
	bob := mustAdd(t, d, pk(2), "bob")
	admins, err := d.AddGroup(ctx, "admins")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := e.opts.GroupSlot("admins"); admins.GID != want {
		t.Errorf("admins gid %d, want its slot %d", admins.GID, want)
	}
	for _, step := range []struct {
		op          func() error
		kind        error
		description string
	}{
		{func() error { return d.AddMember(ctx, "admins", "alice") }, nil, "add alice"},
		{func() error { return d.AddMember(ctx, "admins", "alice") }, ErrExists, "add alice twice"},
		{func() error { return d.AddMember(ctx, "admins", "local") }, nil, "add a passwd user"},
		{func() error { return d.AddMember(ctx, "admins", "bob") }, nil, "add bob"},
		{func() error { return d.AddMember(ctx, "admins", "nosuch") }, ErrNotFound, "add an unknown user"},
		{func() error { return d.AddMember(ctx, "nosuch", "alice") }, ErrNotFound, "add to an unknown group"},
		{func() error { return d.AddMember(ctx, "alice", "alice") }, ErrExists, "add alice to her primary group"},
		{func() error { return d.AddMember(ctx, "alice", "bob") }, nil, "add bob to alice's group"},
		{func() error { return d.RemoveMember(ctx, "admins", "bob") }, nil, "remove bob"},
		{func() error { return d.RemoveMember(ctx, "admins", "bob") }, ErrNotFound, "remove bob twice"},
		{func() error { return d.RemoveGroup(ctx, "alice") }, ErrPrivateGroup, "remove a private group"},
		{func() error { return d.RemoveGroup(ctx, "nosuch") }, ErrNotFound, "remove an unknown group"},
	} {
		err := step.op()
		if (step.kind == nil && err != nil) || (step.kind != nil && !errors.Is(err, step.kind)) {
			t.Fatalf("%s: %v, want %v", step.description, err, step.kind)
		}
	}
	g, err := d.Group(ctx, "admins")
	if err != nil || !slices.Equal(g.Members, []string{"alice", "local"}) || g.Private {
		t.Fatalf("admins: %+v %v", g, err)
	}
	if g, _ := d.Group(ctx, "alice"); !g.Private || g.GID != alice.UID || !slices.Equal(g.Members, []string{"bob"}) {
		t.Fatalf("alice's group: %+v", g)
	}
	all, err := d.Groups(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("Groups: %+v %v", all, err)
	}

	// Removing a user removes its memberships and private group, and nothing else.
	if err := d.RemoveUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if g, _ := d.Group(ctx, "alice"); len(g.Members) != 0 {
		t.Fatalf("bob still in alice's group: %+v", g)
	}
	if _, err := d.Group(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob's private group after removal: %v", err)
	}
	if err := d.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if g, _ := d.Group(ctx, "admins"); !slices.Equal(g.Members, []string{"local"}) {
		t.Fatalf("admins after removing alice: %+v", g)
	}
	// A new user called alice does not inherit the old alice's groups.
	mustAdd(t, d, pk(3), "alice")
	if g, _ := d.Group(ctx, "admins"); !slices.Equal(g.Members, []string{"local"}) {
		t.Fatalf("admins after a new alice: %+v", g)
	}

	// A removed group's GID comes back for the same name only.
	if err := d.RemoveGroup(ctx, "admins"); err != nil {
		t.Fatal(err)
	}
	if g, err := d.AddGroup(ctx, "admins"); err != nil || g.GID != admins.GID {
		t.Fatalf("admins re-added: %+v %v, want gid %d", g, err, admins.GID)
	}
	_ = bob
}

// TestGroupAndUserIDsShareOneSpace: a supplementary GID never equals an allocated UID and the
// other way round, so no GID ever equals a private group's.
func TestGroupAndUserIDsShareOneSpace(t *testing.T) {
	e := newEnv(t)
	e.opts.Base, e.opts.Range = 70000, 7
	d := e.open(t)
	a := mustAdd(t, d, pk(1), "alice")
	if err := d.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// A group name on alice's slot: skips the (removed) user's UID.
	var name string
	for i := 0; ; i++ {
		name = fmt.Sprintf("g%d", i)
		if s, _ := e.opts.GroupSlot(name); s == a.UID {
			break
		}
	}
	g, err := d.AddGroup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if g.GID == a.UID {
		t.Fatalf("group %s got gid %d, the uid of a removed user", name, g.GID)
	}
	// A key on the group's GID: skips it.
	var key string
	for i := 100; ; i++ {
		if slotOf(t, e.opts, pk(i)) == g.GID {
			key = pk(i)
			break
		}
	}
	if u := mustAdd(t, d, key, "bob"); u.UID == g.GID {
		t.Fatalf("bob got uid %d, the gid of group %s", u.UID, name)
	}
}

func TestConcurrentWritersNeverShareAnID(t *testing.T) {
	e := newEnv(t)
	e.opts.Base, e.opts.Range = 70000, 64
	d1 := e.open(t)
	d2 := e.open(t) // a second handle: another writer on the same file
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w, d := range []*DB{d1, d2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				n := w*100 + i
				if _, err := d.AddUser(ctx, User{Pubkey: pk(n), Name: fmt.Sprintf("u%d", n)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	users, err := d1.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]string{}
	for _, u := range users {
		if other, dup := seen[u.UID]; dup {
			t.Errorf("uid %d given to %s and %s", u.UID, other, u.Name)
		}
		seen[u.UID] = u.Name
	}
	if len(users) != 40 {
		t.Errorf("%d users, want 40", len(users))
	}
}

// rawExec runs statements on the database file through a plain connection of the driver
// (no userdb), as another program would.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestSchemaVersionTooNew(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	mustAdd(t, d, pk(1), "alice")
	d.Close()
	rawExec(t, e.dbPath, `UPDATE meta SET value = '99' WHERE key = 'schema_version'`)
	_, err := Open(e.dbPath, e.opts)
	wantErr(t, err, ErrSchemaTooNew, e.dbPath, "schema version 99", "version 1")

	rawExec(t, e.dbPath, `UPDATE meta SET value = 'one' WHERE key = 'schema_version'`)
	_, err = Open(e.dbPath, e.opts)
	wantErr(t, err, ErrNotUserDB, `"one"`)

	other := filepath.Join(e.dir, "other.db")
	rawExec(t, other, `CREATE TABLE t (x)`)
	_, err = Open(other, e.opts)
	wantErr(t, err, ErrNotUserDB, "no meta table")

	// The refused database was left alone.
	rawExec(t, e.dbPath, `UPDATE meta SET value = '1' WHERE key = 'schema_version'`)
	d = e.open(t)
	if u, err := d.User(ctx, "alice"); err != nil || u.Pubkey != pk(1) {
		t.Fatalf("alice after the refused opens: %+v %v", u, err)
	}
}

// TestOpenAddsNewTables: a version-1 database from before gid_allocations existed gets the
// table on open, with no version bump and its rows intact.
func TestOpenAddsNewTables(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	mustAdd(t, d, pk(1), "alice")
	d.Close()
	rawExec(t, e.dbPath, `DROP TABLE gid_allocations`)
	d = e.open(t)
	if _, err := d.AddGroup(ctx, "admins"); err != nil {
		t.Fatal(err)
	}
	var v string
	d.db.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	if v != "1" {
		t.Fatalf("schema_version %q", v)
	}
	if _, err := d.User(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return st.Mode().Perm()
}

func TestFileModesAndPersistentWAL(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	e := newEnv(t)
	d := e.open(t)
	mustAdd(t, d, pk(1), "alice")
	for path, want := range map[string]os.FileMode{
		filepath.Dir(e.dbPath): 0o755,
		e.dbPath:               0o644,
		e.dbPath + "-wal":      0o644,
		e.dbPath + "-shm":      0o644,
	} {
		if m := mode(t, path); m != want {
			t.Errorf("%s: mode %o, want %o", path, m, want)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// After close: the WAL pair stays, the WAL checkpointed and truncated.
	for _, suffix := range []string{"-wal", "-shm"} {
		if m := mode(t, e.dbPath+suffix); m != 0o644 {
			t.Errorf("after close %s: mode %o", suffix, m)
		}
	}
	if st, _ := os.Stat(e.dbPath + "-wal"); st.Size() != 0 {
		t.Errorf("-wal is %d bytes after close, want 0", st.Size())
	}
	hdr, err := os.ReadFile(e.dbPath)
	if err != nil || len(hdr) < 100 {
		t.Fatal(err)
	}
	if hdr[18] != 2 || hdr[19] != 2 {
		t.Errorf("file format bytes %d %d, want 2 2 (WAL)", hdr[18], hdr[19])
	}
	// A file whose mode someone tightened is made readable again.
	if err := os.Chmod(e.dbPath, 0o600); err != nil {
		t.Fatal(err)
	}
	d = e.open(t)
	if m := mode(t, e.dbPath); m != 0o644 {
		t.Errorf("reopened: mode %o", m)
	}
	if u, err := d.User(ctx, "alice"); err != nil || u.Name != "alice" {
		t.Fatal(u, err)
	}
}

func TestClosed(t *testing.T) {
	e := newEnv(t)
	d := e.open(t)
	d.Close()
	if _, err := d.List(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
