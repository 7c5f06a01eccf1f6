#!/usr/bin/env bash
# pam/test.sh: tests pam_nostr.so through libpam (pamtester) against a private system-like bus.
#
# Run as root from the repository root, after building: make -f pam/pam.mk test-pam
# - PAM service files /etc/pam.d/nostr-homed-test-$$* are written for the test and removed on
#   exit (trap), also on failure.
# - A private dbus-daemon (<type>system</type>, EXTERNAL auth, a socket in a temp dir) uses a
#   copy of system.conf's default policy plus the project's own policy dbus/org.nostr.Homed1.conf,
#   so the test also checks that policy lets root make the module's calls.
# - pam/fake_homed.py is a FAKE scripted stand-in for the daemon, so that every D-Bus error
#   can be staged (the real daemon is tested with this module in internal/pamtest).
# - syslog: each pamtester runs in a private mount namespace whose /dev/log is a socket of
#   this test, so the module's own log lines (warnings, D-Bus error names) are checked too.
# - QR codes: the module's half-block drawing is read back into a module matrix, compared with
#   the matrix of the qrencode CLI for the same text, level and margin, and decoded with zbar.
# Needs: pamtester, dbus-daemon, unshare (util-linux), qrencode, /usr/bin/python3 with
# python3-dbus, python3-gi and python3-zbar (Debian packages).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
MODULE=$BUILD/pam_nostr.so
PY=/usr/bin/python3

if [[ $(id -u) -ne 0 ]]; then
	echo "pam/test.sh must run as root (writes /etc/pam.d, unshare -m)" >&2
	exit 1
fi
[[ -e $MODULE ]] || { echo "missing $MODULE (run make -f pam/pam.mk test-pam)" >&2; exit 1; }
for tool in pamtester dbus-daemon unshare qrencode; do
	command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
if ! "$PY" -c 'import dbus, dbus.service, dbus.mainloop.glib, zbar; from gi.repository import GLib' 2>/dev/null; then
	echo "$PY cannot import dbus, gi and zbar: apt-get install python3-dbus python3-gi python3-zbar" >&2
	exit 1
fi

TMP=$(mktemp -d /tmp/pam-nostr-test.XXXXXX)
SVC=nostr-homed-test-$$
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -f /etc/pam.d/"$SVC" /etc/pam.d/"$SVC"-*
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "PASS: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() {
	if [[ "$3" == "$2" ]]; then
		ok "$1"
	else
		bad "$1"
		printf '    expected: %q\n    actual:   %q\n' "$2" "$3"
	fi
}
# check_grep DESCRIPTION FILE FIXED_STRING: FILE has a line containing FIXED_STRING.
check_grep() {
	if grep -qF -- "$3" "$2"; then
		ok "$1"
	else
		bad "$1"
		echo "    no line containing: $3"
		sed 's/^/    | /' "$2" | tail -n 20
	fi
}
# wait_for_grep SECONDS FILE FIXED_STRING
wait_for_grep() {
	local deadline=$((SECONDS + $1))
	until grep -qF -- "$3" "$2" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

# ---- PAM service files ------------------------------------------------------------------
# service SUFFIX AUTH_ARGS [LEADING_AUTH_LINE]: /etc/pam.d/$SVC-SUFFIX using the module.
service() {
	local file=/etc/pam.d/$SVC-$1 args=$2 lead=${3:-}
	{
		echo "# written by nostr-homed pam/test.sh (pid $$); removed when it exits"
		[[ -z $lead ]] || echo "$lead"
		echo "auth     required $MODULE $args"
		echo "account  required $MODULE $args"
		echo "session  required $MODULE $args"
	} >"$file"
	echo "$SVC-$1"
}
S_PLAIN=$(service plain "")
S_DEBUG=$(service debug "debug bogus_arg timeout=abc")
S_T2=$(service t2 "timeout=2")
S_UFP=$(service ufp "use_first_pass")
S_UFP_UNIX=$(service ufp-unix "use_first_pass" "auth optional pam_unix.so")
S_TFP_UNIX=$(service tfp-unix "try_first_pass" "auth optional pam_unix.so")
S_NOQR=$(service noqr "noqr")
# The base name too, as the brief names it: the same lines as "plain".
cp "/etc/pam.d/$S_PLAIN" "/etc/pam.d/$SVC"

# ---- syslog sink ------------------------------------------------------------------------
SYSLOG=$TMP/syslog.txt
: >"$SYSLOG"
"$PY" - "$TMP/log.sock" "$SYSLOG" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536).rstrip(b"\0\n") + b"\n")
EOF
PIDS+=($!)
for _ in $(seq 100); do [[ -S $TMP/log.sock ]] && break; sleep 0.05; done
chmod 0666 "$TMP/log.sock"

# in_ns CMD...: runs CMD in a private mount namespace whose /dev is a tmpfs holding the usual
# device nodes (bind mounts of the real ones) and a /dev/log symlink to the test's sink.
in_ns() {
	unshare -m bash -c '
		set -e
		real=$1 sock=$2
		shift 2
		mkdir -p "$real"
		mount --rbind /dev "$real"
		mount -t tmpfs -o mode=0755,size=1m tmpfs /dev
		for n in null zero full random urandom tty; do
			[ -e "$real/$n" ] || continue
			touch "/dev/$n"
			mount --bind "$real/$n" "/dev/$n"
		done
		ln -s /proc/self/fd /dev/fd
		ln -s "$sock" /dev/log
		exec "$@"' in_ns "$TMP/realdev" "$TMP/log.sock" "$@"
}

# pt BUS_ADDRESS STDIN PAMTESTER_ARGS...: runs pamtester; sets $out (stdout, then stderr), $rc,
# $elapsed. Its stdout alone, the conversation (prompts, PAM_TEXT_INFO), is left in $CONV: kept
# apart because stdout is block-buffered in a file, and stderr would land inside a QR code.
CONV=$TMP/conversation.txt
pt() {
	local addr=$1 input=$2 start
	shift 2
	start=$(date +%s%N)
	printf '%s' "$input" | in_ns env LC_ALL=C DBUS_SYSTEM_BUS_ADDRESS="$addr" timeout 60 \
		pamtester -v "$@" >"$CONV" 2>"$TMP/pt.stderr" && rc=0 || rc=$?
	elapsed=$((($(date +%s%N) - start) / 1000000))
	out=$(cat "$CONV" "$TMP/pt.stderr")
}
# last: pamtester's final result line. (A prompt has no newline, so the line is found by its
# text, not by position.)
last() {
	printf '%s\n' "$out" | grep -o 'pamtester: .*' |
		grep -v -e '^pamtester: invoking pam_start' -e '^pamtester: performing operation' |
		tail -n 1
}

# pamtester prints pam_strerror() of the result (Linux-PAM 1.5, LC_ALL=C).
MSG_OK_AUTH="pamtester: successfully authenticated"
# PAM_AUTHINFO_UNAVAIL. ("Authentication information cannot be recovered" is the text of
# PAM_AUTHTOK_RECOVERY_ERR, a different code.)
MSG_AUTHINFO="pamtester: Authentication service cannot retrieve authentication info"
MSG_AUTH_ERR="pamtester: Authentication failure"                                     # PAM_AUTH_ERR
MSG_USER_UNKNOWN="pamtester: User not known to the underlying authentication module"  # PAM_USER_UNKNOWN
MSG_PERM="pamtester: Permission denied"                                               # PAM_PERM_DENIED
MSG_SESSION_ERR="pamtester: Cannot make/remove an entry for the specified session"    # PAM_SESSION_ERR

# ---- QR code reader ----------------------------------------------------------------------
# qr.py size|grid|decode FILE reads the one QR code drawn in half blocks in FILE (lines of
# "█▀▄ " only): size prints COLUMNSxROWS of text; grid prints its module matrix, quiet zone
# included, as `qrencode -t ASCII` does ("##" dark, "  " light, one line per module row);
# decode prints what zbar reads from it, drawn light blocks on the dark ground of a terminal.
cat >"$TMP/qr.py" <<'EOF'
import sys

HALVES = {"\u2588": (1, 1), "\u2580": (1, 0), "\u2584": (0, 1), " ": (0, 0)}  # drawn = light


def fail(msg):
    sys.exit("qr.py: " + msg)


def read(path):
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    idx = [i for i, l in enumerate(lines) if l.strip() and set(l) <= set(HALVES)]
    if not idx:
        return None
    if idx != list(range(idx[0], idx[-1] + 1)):
        fail("more than one block of QR lines")
    return [lines[i] for i in idx]


def matrix(rows):
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        fail("lines of different widths")
    light = []
    for r in rows:
        light.append([HALVES[c][0] for c in r])
        light.append([HALVES[c][1] for c in r])
    if len(light) not in (n, n + 1):
        fail("%d module rows for %d columns: not square" % (len(light), n))
    if len(light) == n + 1 and not all(light[-1]):
        fail("the half row below the symbol is not light")
    return light[:n]


def decode(light, scale=4, pad=4):
    import zbar
    n = len(light)
    w = (n + 2 * pad) * scale
    px = bytearray(w * w)  # 0: the terminal's dark ground around the code
    for y in range(n):
        for x in range(n):
            if light[y][x]:
                for dy in range(scale):
                    o = ((y + pad) * scale + dy) * w + (x + pad) * scale
                    px[o:o + scale] = b"\xff" * scale
    scanner = zbar.ImageScanner()
    scanner.parse_config("enable")
    image = zbar.Image(w, w, "Y800", bytes(px))
    scanner.scan(image)
    return [s.data for s in image]


mode, path = sys.argv[1], sys.argv[2]
rows = read(path)
if mode == "size":
    print("none" if rows is None else "%dx%d" % (len(rows[0]), len(rows)))
    sys.exit(0)
if rows is None:
    fail("no QR code in " + path)
light = matrix(rows)
if mode == "grid":
    for row in light:
        print("".join("  " if v else "##" for v in row))
elif mode == "decode":
    print("\n".join(decode(light)))
else:
    fail("unknown mode " + mode)
EOF

# qr_checks WHO URI LEVEL: the conversation in $CONV shows one QR code of URI at LEVEL: the
# size qrencode makes, the same modules, and zbar reads URI back.
qr_checks() {
	local who=$1 uri=$2 level=$3 n
	qrencode -l "$level" -m 2 -t ASCII -o "$TMP/expected.txt" "$uri"
	n=$(wc -l <"$TMP/expected.txt") # modules per side, quiet zone included
	check "$who: QR code of ${n}x$(((n + 1) / 2)) characters, the size qrencode -l $level -m 2 makes" \
		"${n}x$(((n + 1) / 2))" "$("$PY" "$TMP/qr.py" size "$CONV")"
	if "$PY" "$TMP/qr.py" grid "$CONV" >"$TMP/grid.txt" && cmp -s "$TMP/grid.txt" "$TMP/expected.txt"; then
		ok "$who: the QR code has the same modules as qrencode -l $level -m 2 -t ASCII"
	else
		bad "$who: the QR code has the same modules as qrencode -l $level -m 2 -t ASCII"
		diff "$TMP/grid.txt" "$TMP/expected.txt" | head -n 10 | sed 's/^/    | /' || true
	fi
	check "$who: zbar decodes the QR code to the URI" "$uri" "$("$PY" "$TMP/qr.py" decode "$CONV" 2>&1)"
}
# cols LEVEL URI: modules per side, quiet zone of 2 included, of qrencode's symbol for URI.
cols() { qrencode -l "$1" -m 2 -t ASCII "$2" | wc -l; }

# ---- 1. no bus at all ---------------------------------------------------------------------
NOBUS=unix:path=$TMP/no-such-bus-socket
pt "$NOBUS" "" "$S_PLAIN" alice authenticate
check "no bus socket: authenticate is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
check_grep "no bus socket: the module logs that it cannot connect" "$SYSLOG" \
	"cannot connect to the system bus"
pt "$NOBUS" "" "$S_PLAIN" alice open_session
check "no bus socket: open_session is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"

# ---- 2. a private system-like bus, nobody owns org.nostr.Homed1 ---------------------------
mkdir -p "$TMP/system.d"
cp "$ROOT/dbus/org.nostr.Homed1.conf" "$TMP/system.d/"
# bus_start NAME [SERVICEDIR]: starts a dbus-daemon listening on $TMP/NAME, with SERVICEDIR as
# its only activation directory if given (else nothing is activatable).
bus_start() {
	local name=$1 servicedir=${2:-}
	cat >"$TMP/$name.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$TMP/$name</listen>
  <auth>EXTERNAL</auth>
  ${servicedir:+<servicedir>$servicedir</servicedir>}
  <!-- system.conf's default policy: deny owning and method calls unless allowed. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <!-- The project's policy for org.nostr.Homed1. -->
  <includedir>$TMP/system.d</includedir>
</busconfig>
EOF
	dbus-daemon --config-file="$TMP/$name.conf" --nofork --print-address=1 >"$TMP/$name.address" \
		2>"$TMP/$name.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [[ -s $TMP/$name.address && -S $TMP/$name ]] && break; sleep 0.05; done
	[[ -S $TMP/$name ]] || { echo "dbus-daemon $name did not start:"; cat "$TMP/$name.log"; exit 1; }
}
bus_start bus
BUS=unix:path=$TMP/bus

pt "$BUS" "" "$S_PLAIN" alice authenticate
check "no daemon on the bus: authenticate is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
check_grep "no daemon: the failure is logged with the D-Bus error name" "$SYSLOG" \
	"BeginLogin for user \"alice\" failed: org.freedesktop.DBus.Error.ServiceUnknown"
pt "$BUS" "" "$S_PLAIN" alice open_session
check "no daemon on the bus: open_session is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
pt "$BUS" "" "$S_PLAIN" alice acct_mgmt
check "no daemon on the bus: acct_mgmt is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"

# ---- 2b. the bus cannot start the daemon: org.freedesktop.DBus.Error.Spawn.* -------------
# A second bus with an activation file for org.nostr.Homed1 whose Exec fails, so the real
# dbus-daemon answers the module's calls (sd-bus asks for auto-start) with Spawn errors:
# first the program is missing (Spawn.ExecFailed), then it exits 3 (Spawn.ChildExited).
# Spawn.ServiceNotFound (from the system bus's activation helper) comes from the fake, gina.
mkdir -p "$TMP/services"
cat >"$TMP/services/org.nostr.Homed1.service" <<EOF
[D-BUS Service]
Name=org.nostr.Homed1
Exec=$TMP/homed-exec
EOF
bus_start actbus "$TMP/services"
ACTBUS=unix:path=$TMP/actbus
for op in authenticate acct_mgmt open_session; do
	pt "$ACTBUS" "" "$S_PLAIN" alice $op
	check "activation fails (ExecFailed): $op is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
done
check_grep "ExecFailed is logged with its D-Bus error name" "$SYSLOG" \
	"OpenSession for user \"alice\" failed: org.freedesktop.DBus.Error.Spawn.ExecFailed"
printf '#!/bin/sh\nexit 3\n' >"$TMP/homed-exec"
chmod 0755 "$TMP/homed-exec"
for op in authenticate acct_mgmt open_session; do
	pt "$ACTBUS" "" "$S_PLAIN" alice $op
	check "activation fails (ChildExited): $op is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
done
check_grep "ChildExited is logged with its D-Bus error name" "$SYSLOG" \
	"CheckAccount for user \"alice\" failed: org.freedesktop.DBus.Error.Spawn.ChildExited"

# ---- 3. the FAKE daemon -------------------------------------------------------------------
FAKELOG=$TMP/fake_homed.log
: >"$FAKELOG"
"$PY" "$ROOT/pam/fake_homed.py" --address "$BUS" --log "$FAKELOG" --ready "$TMP/fake.ready" \
	--signer-delay 6 >"$TMP/fake.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do [[ -e $TMP/fake.ready ]] && break; sleep 0.05; done
[[ -e $TMP/fake.ready ]] || { echo "fake_homed.py did not start:"; cat "$TMP/fake.out"; exit 1; }

# password method
pt "$BUS" $'right-password\n' -I rhost=203.0.113.7 "$S_PLAIN" alice authenticate
check "alice, right password: authenticated" "0|$MSG_OK_AUTH" "$rc|$(last)"
check_grep "BeginLogin got user, PAM service and rhost" "$FAKELOG" "BeginLogin alice $S_PLAIN 203.0.113.7"
check_grep "the daemon's prompt was shown" <(printf '%s\n' "$out") "Password: "
check "CompleteLogin got the typed password" "ok" \
	"$(grep '^CompleteLogin L[0-9]*-alice' "$FAKELOG" | tail -n1 | awk '{ print $3 }')"
pt "$BUS" $'wrong-password\n' "$S_PLAIN" alice authenticate
check "alice, wrong password: PAM_AUTH_ERR" "1|$MSG_AUTH_ERR" "$rc|$(last)"
check_grep "AuthFailed is logged with its D-Bus name and message" "$SYSLOG" \
	"CompleteLogin for user \"alice\" failed: org.nostr.Homed1.Error.AuthFailed: wrong password (fake)"
pt "$BUS" "" "$S_PLAIN" alice authenticate
check "alice, conversation fails (no input): PAM_CONV_ERR" "1|pamtester: Conversation error" "$rc|$(last)"
check_grep "conversation failure: CancelLogin sent" "$FAKELOG" \
	"CancelLogin $(grep -o 'L[0-9]*-alice' "$FAKELOG" | tail -n1)"

# errors from BeginLogin
pt "$BUS" "" "$S_PLAIN" carol authenticate
check "carol (UnknownUser): PAM_USER_UNKNOWN" "1|$MSG_USER_UNKNOWN" "$rc|$(last)"
pt "$BUS" "" "$S_PLAIN" frank authenticate
check "frank (Unavailable): PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
for op in authenticate acct_mgmt open_session; do
	pt "$BUS" "" "$S_PLAIN" gina $op
	check "gina (Spawn.ServiceNotFound): $op is PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
done
pt "$BUS" "" "$S_PLAIN" erin authenticate
check "erin (unknown login method): PAM_AUTHINFO_UNAVAIL" "1|$MSG_AUTHINFO" "$rc|$(last)"
check_grep "unknown login method: logged" "$SYSLOG" "unsupported login method \"telepathy\""
check_grep "unknown login method: CancelLogin sent" "$FAKELOG" "CancelLogin L"
wait_for_grep 2 "$FAKELOG" "-erin" || true
check "unknown login method: the CancelLogin names erin's login" "1" \
	"$(grep -c '^CancelLogin L[0-9]*-erin$' "$FAKELOG" || true)"

# remote-signer method, the signer answers after 6 s, the module waits timeout=2
pt "$BUS" "" "$S_T2" dave authenticate
check "dave (remote signer slower than timeout=2): PAM_AUTH_ERR" "1|$MSG_AUTH_ERR" "$rc|$(last)"
if ((elapsed >= 1900 && elapsed < 5000)); then
	ok "dave: gave up after the 2 s timeout (${elapsed} ms)"
else
	bad "dave: gave up after the 2 s timeout (took ${elapsed} ms)"
fi
check_grep "dave: the daemon's message was shown" <(printf '%s\n' "$out") \
	"Approve this login in your Nostr signer app (fake)."
check_grep "dave: the nostrconnect URI was shown" <(printf '%s\n' "$out") \
	"nostrconnect://0000000000000000000000000000000000000000000000000000000000000001?relay=wss%3A%2F%2Frelay.invalid&secret=fake"
if wait_for_grep 3 "$FAKELOG" "CancelLogin" && grep -q '^CancelLogin L[0-9]*-dave$' "$FAKELOG"; then
	ok "dave: CancelLogin sent after the timeout"
else
	bad "dave: CancelLogin sent after the timeout"
fi
check_grep "dave: the timeout is logged" "$SYSLOG" "the remote signer did not answer within 2 s"

# remote-signer QR codes: dave's run above; hank, ivan and judy get signers that answer at once
URI_DAVE=$("$PY" "$ROOT/pam/fake_homed.py" --print-uri dave)
qr_checks dave "$URI_DAVE" M
# line_of FIXED_STRING: number of the first line of $CONV that contains it (0: none)
line_of() { { grep -n -m1 -F -- "$1" "$CONV" || echo 0:; } | cut -d: -f1; }
m=$(line_of "signer app (fake)") q=$(line_of "█") u=$(line_of "$URI_DAVE")
if ((m > 0 && m < q && q < u)); then
	ok "dave: the message, then the QR code, then the URI"
else
	bad "dave: the message, then the QR code, then the URI (lines $m, $q, $u)"
fi
URI_HANK=$("$PY" "$ROOT/pam/fake_homed.py" --print-uri hank)
pt "$BUS" "" "$S_PLAIN" hank authenticate
check "hank (remote signer answers at once): authenticated" "0|$MSG_OK_AUTH" "$rc|$(last)"
check "hank's URI (${#URI_HANK} bytes) is wider than 80 columns at level M, not at L" "81 73" \
	"$(cols M "$URI_HANK") $(cols L "$URI_HANK")"
qr_checks hank "$URI_HANK" L
check_grep "hank: the URI is shown as text too" "$CONV" "$URI_HANK"
URI_IVAN=$("$PY" "$ROOT/pam/fake_homed.py" --print-uri ivan)
pt "$BUS" "" "$S_PLAIN" ivan authenticate
check "ivan: authenticated" "0|$MSG_OK_AUTH" "$rc|$(last)"
check "ivan's URI (${#URI_IVAN} bytes) is wider than 80 columns even at level L" "81" "$(cols L "$URI_IVAN")"
check "ivan: no QR code" "none" "$("$PY" "$TMP/qr.py" size "$CONV")"
check_grep "ivan: says why there is no QR code" "$CONV" \
	"No QR code: the URI is too long for a QR code 80 columns wide."
check_grep "ivan: the URI is shown as text" "$CONV" "$URI_IVAN"
pt "$BUS" "" "$S_PLAIN" judy authenticate
check "judy (a URI that is not nostrconnect://): authenticated, no QR code, no excuse" "0|none|0" \
	"$rc|$("$PY" "$TMP/qr.py" size "$CONV")|$(grep -c 'No QR code' "$CONV" || true)"
check_grep "judy: the URI is shown as text" "$CONV" "https://signer.invalid/approve?login=1"
pt "$BUS" "" "$S_NOQR" hank authenticate
check "noqr: hank authenticated, no QR code" "0|$MSG_OK_AUTH|none" "$rc|$(last)|$("$PY" "$TMP/qr.py" size "$CONV")"
check_grep "noqr: the URI is still shown as text" "$CONV" "$URI_HANK"
if grep -q 'unknown argument "noqr"' "$SYSLOG"; then
	bad "noqr is a known argument (no warning)"
else
	ok "noqr is a known argument (no warning)"
fi

# account
pt "$BUS" "" "$S_PLAIN" alice acct_mgmt
check "CheckAccount(alice): success" "0|pamtester: account management done." "$rc|$(last)"
pt "$BUS" "" "$S_PLAIN" bob acct_mgmt
check "CheckAccount(bob) NotAllowed: PAM_PERM_DENIED" "1|$MSG_PERM" "$rc|$(last)"
pt "$BUS" "" "$S_PLAIN" carol acct_mgmt
check "CheckAccount(carol) UnknownUser: PAM_USER_UNKNOWN" "1|$MSG_USER_UNKNOWN" "$rc|$(last)"

# session
pt "$BUS" "" "$S_PLAIN" alice open_session close_session
check "alice: open_session and close_session succeed" "0|pamtester: session has successfully been closed." "$rc|$(last)"
check "the daemon saw OpenSession(alice) then CloseSession(alice)" "OpenSession alice
CloseSession alice" "$(grep -E '^(Open|Close)Session alice' "$FAKELOG")"
pt "$BUS" "" "$S_PLAIN" bob open_session
check "OpenSession(bob) MountFailed: PAM_SESSION_ERR" "1|$MSG_SESSION_ERR" "$rc|$(last)"

# use_first_pass / try_first_pass, with pam_unix in front to set PAM_AUTHTOK
pt "$BUS" "" "$S_UFP" alice authenticate
check "use_first_pass with no earlier password: PAM_AUTH_ERR without prompting" \
	"1|$MSG_AUTH_ERR|0" "$rc|$(last)|$(grep -c 'Password: ' <<<"$out" || true)"
n_begin=$(grep -c '^BeginLogin alice' "$FAKELOG")
pt "$BUS" $'right-password\n' "$S_UFP_UNIX" alice authenticate
check "use_first_pass after pam_unix: the stored password is used" "0|$MSG_OK_AUTH" "$rc|$(last)"
pt "$BUS" $'wrong-password\nright-password\n' "$S_UFP_UNIX" alice authenticate
check "use_first_pass with a wrong stored password: PAM_AUTH_ERR, no second prompt" \
	"1|$MSG_AUTH_ERR" "$rc|$(last)"
pt "$BUS" $'wrong-password\nright-password\n' "$S_TFP_UNIX" alice authenticate
check "try_first_pass with a wrong stored password: prompts again and succeeds" "0|$MSG_OK_AUTH" "$rc|$(last)"
check "BeginLogin count for those three (1 + 1 + 2)" "4" \
	"$(($(grep -c '^BeginLogin alice' "$FAKELOG") - n_begin))"

# arguments: debug, an unknown one, an invalid value
pt "$BUS" $'right-password\n' "$S_DEBUG" alice authenticate
check "debug bogus_arg timeout=abc: still authenticates" "0|$MSG_OK_AUTH" "$rc|$(last)"
check_grep "unknown argument is logged as a warning" "$SYSLOG" 'unknown argument "bogus_arg" ignored'
check_grep "invalid timeout value is logged" "$SYSLOG" 'invalid argument "timeout=abc"'
check_grep "debug logs the D-Bus calls" "$SYSLOG" "calling CompleteLogin"
if grep -q 'calling ' <(grep -v "$S_DEBUG" "$SYSLOG"); then
	bad "without debug, no debug lines"
else
	ok "without debug, no debug lines"
fi
check_grep "syslog lines carry the module name" "$SYSLOG" "pamtester: pam_nostr(${S_PLAIN}:auth):"
check "every pam_nostr syslog line has facility authpriv (priority <80> to <87>)" "0" \
	"$(grep 'pam_nostr(' "$SYSLOG" | grep -c -v -E '^<8[0-7]>' || true)"
if grep -q 'right-password' "$SYSLOG"; then
	bad "the password never reaches syslog"
else
	ok "the password never reaches syslog"
fi

# ---- 4. exported symbols ------------------------------------------------------------------
check "exported symbols are exactly pam_sm_*" \
	"pam_sm_acct_mgmt pam_sm_authenticate pam_sm_close_session pam_sm_open_session pam_sm_setcred " \
	"$(nm -D --defined-only "$MODULE" | awk '{ print $3 }' | sort | tr '\n' ' ')"

echo "PAM: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
