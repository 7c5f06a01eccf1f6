#!/usr/bin/env bash
# nss/test.sh: tests libnss_nostr.so.2 through glibc (getent, id) and in-process (test_nss).
#
# Run as root from the repository root, after building: make -f nss/nss.mk test-nss
# It never touches the machine's /etc/nsswitch.conf: every lookup runs in a private mount
# namespace (unshare -m) where a test nsswitch.conf is bind-mounted over it, with
# LD_LIBRARY_PATH pointing at the build directory and NOSTR_HOMED_USERDB at a temp database.
# Needs: sqlite3, unshare/setpriv (util-linux), getent/id.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SCHEMA=$ROOT/internal/userdb/schema.sql

if [[ $(id -u) -ne 0 ]]; then
	echo "nss/test.sh must run as root (unshare -m, mount --bind)" >&2
	exit 1
fi
for f in "$BUILD/libnss_nostr.so.2" "$BUILD/test_nss" "$SCHEMA"; do
	[[ -e $f ]] || { echo "missing $f (run make -f nss/nss.mk test-nss)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/nss-nostr-test.XXXXXX)
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
# Readable by an unprivileged user for the non-root check.
chmod 0755 "$TMP"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "PASS: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
# check DESCRIPTION EXPECTED ACTUAL: exact comparison.
check() {
	if [[ "$3" == "$2" ]]; then
		ok "$1"
	else
		bad "$1"
		printf '    expected: %q\n    actual:   %q\n' "$2" "$3"
	fi
}

# make_db FILE GECOS_OF_ALICE [EXTRA_SQL]: a schema-version-1 cache with alice and bob.
make_db() {
	local file=$1 alice_gecos=$2 extra=${3:-}
	rm -f "$file" "$file-wal" "$file-shm"
	sqlite3 "$file" <"$SCHEMA" >/dev/null
	sqlite3 "$file" <<-EOF
		INSERT INTO users(pubkey, name, uid, gid, gecos, home, shell, enrolled_at) VALUES
		  (printf('%064x', 1), 'alice', 70001, 70001, '$alice_gecos', '/home/alice', '/bin/bash', 1700000000),
		  (printf('%064x', 2), 'bob',   70002, 70002, 'Bob',   '/home/bob',   '/bin/sh',   1700000000);
		INSERT INTO groups(gid, name) VALUES (70001, 'alice'), (70002, 'bob'), (70100, 'nostr-admins');
		INSERT INTO members(gid, user_name) VALUES (70100, 'alice');
		$extra
	EOF
	chmod 0644 "$file"
}

cat >"$TMP/nsswitch.conf" <<'EOF'
passwd: files nostr
group: files nostr
shadow: files
EOF

DB=$TMP/users.db
# in_ns DBPATH CMD...: runs CMD with the test nsswitch.conf and the module.
in_ns() {
	local db=$1
	shift
	NOSTR_HOMED_USERDB=$db LD_LIBRARY_PATH=$BUILD unshare -m sh -c \
		'mount --bind "$0" /etc/nsswitch.conf && exec "$@"' "$TMP/nsswitch.conf" "$@"
}
# run CMD...: sets $out (stdout) and $rc (exit status) without tripping set -e.
run() {
	out=$("$@" 2>"$TMP/stderr") && rc=0 || rc=$?
}

ALICE='alice:x:70001:70001:Alice:/home/alice:/bin/bash'
BOB='bob:x:70002:70002:Bob:/home/bob:/bin/sh'
ROOT_LINE=$(grep '^root:' /etc/passwd)

make_db "$DB" Alice "
  INSERT INTO users VALUES (printf('%064x', 3), 'evil', 0, 0, 'uid 0', '/root', '/bin/sh', 1);
  INSERT INTO users VALUES (printf('%064x', 4), 'mallory', 70004, 70004, 'a:b', '/home/m', '/bin/sh', 1);"
DB_SUM=$(sha256sum <"$DB")
mkdir -m 0755 "$TMP/lib"
cp "$BUILD/libnss_nostr.so.2" "$TMP/lib/"
chmod 0755 "$TMP/lib/libnss_nostr.so.2"

# 1. Before any root process opened it (no -wal/-shm yet), an unprivileged process resolves
#    alice: SQLite cannot create the -shm file for it, so the module reads the file immutable.
check "fresh database has no -wal/-shm files" "none" \
	"$(ls "$DB-wal" "$DB-shm" 2>/dev/null || echo none)"
# (The module is copied to $TMP/lib: the build directory may not be readable by nobody.
# setpriv itself runs without the module: as root it would look "65534" up as a name through
# NSS and so create the -wal/-shm files.)
run unshare -m sh -c 'mount --bind "$0" /etc/nsswitch.conf && exec "$@"' "$TMP/nsswitch.conf" \
	setpriv --reuid=65534 --regid=65534 --clear-groups \
	env NOSTR_HOMED_USERDB="$DB" LD_LIBRARY_PATH="$TMP/lib" getent passwd alice
check "non-root getent passwd alice with no -wal/-shm present" "$ALICE" "$out"

# 2. Lookups through glibc.
run in_ns "$DB" getent passwd alice
check "getent passwd alice" "$ALICE" "$out"
run in_ns "$DB" getent passwd 70002
check "getent passwd 70002" "$BOB" "$out"
run in_ns "$DB" getent group nostr-admins
check "getent group nostr-admins lists alice" "nostr-admins:x:70100:alice" "$out"
run in_ns "$DB" getent group 70001
check "getent group 70001 (private group, no members)" "alice:x:70001:" "$out"
run in_ns "$DB" getent group bob
check "getent group bob" "bob:x:70002:" "$out"
run in_ns "$DB" id alice
check "id alice (initgroups adds nostr-admins)" \
	"uid=70001(alice) gid=70001(alice) groups=70001(alice),70100(nostr-admins)" "$out"
run in_ns "$DB" id -G bob
check "id -G bob (no supplementary groups)" "70002" "$out"
run in_ns "$DB" getent initgroups alice
check "getent initgroups alice" "70100" "$(echo "$out" | awk '{ $1 = ""; print substr($0, 2) }')"
run in_ns "$DB" getent passwd nosuchuser
check "getent passwd nosuchuser exits 2 with no output" "2:" "$rc:$out"
run in_ns "$DB" getent group nosuchgroup
check "getent group nosuchgroup exits 2" "2:" "$rc:$out"
run in_ns "$DB" getent passwd 70999
check "getent passwd 70999 (unknown uid) exits 2" "2:" "$rc:$out"

# 3. Enumeration.
run in_ns "$DB" getent passwd
check "getent passwd enumeration: nostr users, after files, in uid order" \
	"$ALICE
$BOB" "$(echo "$out" | grep -E '^(alice|bob|evil|mallory):' || true)"
check "getent passwd enumeration starts with files (root first)" "$ROOT_LINE" "$(echo "$out" | head -n1)"
run in_ns "$DB" getent group
check "getent group enumeration" "alice:x:70001:
bob:x:70002:
nostr-admins:x:70100:alice" "$(echo "$out" | grep -E '^(alice|bob|nostr-admins):' || true)"

# 4. files still answers, unsafe rows are never served.
run in_ns "$DB" getent passwd root
check "root still resolves via files" "$ROOT_LINE" "$out"
run in_ns "$DB" getent passwd evil
check "a cache row with uid 0 is not served" "2:" "$rc:$out"
run in_ns "$DB" getent passwd mallory
check "a cache row with ':' in a field is not served" "2:" "$rc:$out"
check "the module never wrote to the database file" "$DB_SUM" "$(sha256sum <"$DB")"

# 5. Database absent: nostr users are not found, files still answers.
run in_ns "$TMP/absent.db" getent passwd alice
check "database absent: getent passwd alice exits 2" "2:" "$rc:$out"
run in_ns "$TMP/absent.db" getent passwd root
check "database absent: root still resolves" "$ROOT_LINE" "$out"
run in_ns "$TMP/absent.db" id -u root
check "database absent: id -u root" "0" "$out"

# 6. Unknown schema version: the module refuses the file.
make_db "$TMP/v2schema.db" Alice "UPDATE meta SET value = '2' WHERE key = 'schema_version';"
run in_ns "$TMP/v2schema.db" getent passwd alice
check "schema_version '2': getent passwd alice exits 2" "2:" "$rc:$out"
run in_ns "$TMP/v2schema.db" getent passwd root
check "schema_version '2': root still resolves" "$ROOT_LINE" "$out"

# 7. Replacement by rename, seen from a fresh process.
make_db "$TMP/next.db" "Alice renamed"
mv "$TMP/next.db" "$DB"
run in_ns "$DB" getent passwd alice
check "a new process sees the replaced file" \
	"alice:x:70001:70001:Alice renamed:/home/alice:/bin/bash" "$out"

# 8. In-process: one long-lived process, file replaced under it, small buffers, 8 threads,
#    fork. test_nss prints PASS/FAIL lines that count here.
CAROL_SQL="INSERT INTO users VALUES (printf('%064x', 5), 'carol', 70003, 70003, 'Carol', '/home/carol', '/bin/zsh', 1);
  INSERT INTO groups VALUES (70003, 'carol');
  INSERT INTO members VALUES (70100, 'carol');"
make_db "$DB" Alice
make_db "$TMP/users-v2.db" "Alice v2" "$CAROL_SQL"
make_db "$TMP/users-v3.db" "Alice v2" "$CAROL_SQL"
set +e
in_ns "$DB" timeout 120 "$BUILD/test_nss" "$DB" "$TMP/users-v2.db" "$TMP/users-v3.db" >"$TMP/test_nss.out" 2>&1
test_nss_rc=$?
set -e
while IFS= read -r line; do
	case $line in
	"PASS: "*) ok "test_nss: ${line#PASS: }" ;;
	"FAIL: "*) bad "test_nss: ${line#FAIL: }" ;;
	*) echo "    $line" ;;
	esac
done <"$TMP/test_nss.out"
if [[ $test_nss_rc -ne 0 ]] && ! grep -q '^FAIL: ' "$TMP/test_nss.out"; then
	bad "test_nss exited with status $test_nss_rc"
fi
[[ $(grep -c '^PASS: ' "$TMP/test_nss.out" || true) -eq 13 ]] ||
	bad "test_nss ran all 13 of its checks"

# 9. Only the NSS entry points are exported.
exports=$(nm -D --defined-only "$BUILD/libnss_nostr.so.2" | awk '{ print $3 }' | sort | tr '\n' ' ')
check "exported symbols are exactly the NSS entry points" \
	"_nss_nostr_endgrent _nss_nostr_endpwent _nss_nostr_getgrent_r _nss_nostr_getgrgid_r _nss_nostr_getgrnam_r _nss_nostr_getpwent_r _nss_nostr_getpwnam_r _nss_nostr_getpwuid_r _nss_nostr_initgroups_dyn _nss_nostr_setgrent _nss_nostr_setpwent " \
	"$exports"
check "soname is libnss_nostr.so.2" "libnss_nostr.so.2" \
	"$(readelf -d "$BUILD/libnss_nostr.so.2" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')"

echo "NSS: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
