#!/usr/bin/env bash
# Checks `make install` with DESTDIR and PREFIX: every artifact lands where Debian expects it,
# with the right mode, and nothing is written outside DESTDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
multiarch=$(${CC:-cc} -print-multiarch)
pass=0 fail=0
check() { # check MODE PATH
  if [ -f "$dest$2" ] && [ "$(stat -c %a "$dest$2")" = "$1" ]; then pass=$((pass+1)); echo "PASS: $2 ($1)"
  else fail=$((fail+1)); echo "FAIL: $2 missing or not mode $1"; fi
}
make -s install DESTDIR="$dest" PREFIX=/usr >/dev/null
check 755 /usr/bin/nostrfs
check 755 /usr/bin/nostr-homectl
check 644 "/usr/lib/$multiarch/security/pam_nostr.so"
check 644 "/usr/lib/$multiarch/libnss_nostr.so.2"
check 644 /usr/share/dbus-1/system.d/org.nostr.Homed1.conf
check 644 /usr/share/dbus-1/interfaces/org.nostr.Homed1.xml
check 644 /usr/share/dbus-1/interfaces/org.nostr.Signer.xml
check 644 /etc/nostr-homed/config.toml
# A second install keeps the admin's configuration.
echo "# edited" >> "$dest/etc/nostr-homed/config.toml"
make -s install DESTDIR="$dest" PREFIX=/usr >/dev/null
if grep -q "# edited" "$dest/etc/nostr-homed/config.toml"; then pass=$((pass+1)); echo "PASS: reinstall keeps config.toml"
else fail=$((fail+1)); echo "FAIL: reinstall overwrote config.toml"; fi
# PREFIX moves everything but /etc.
make -s install DESTDIR="$dest/p" PREFIX=/opt/nh >/dev/null
check 755 /p/opt/nh/bin/nostrfs
check 644 "/p/opt/nh/lib/$multiarch/security/pam_nostr.so"
echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
