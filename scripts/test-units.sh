#!/usr/bin/env bash
# Checks the systemd units in systemd/ without a running systemd (`make test-units`, part of
# `make test`; needs `make build` first):
#   - `systemd-analyze verify` accepts each unit, with no warning about it;
#   - `systemd-analyze security --offline=true` rates each unit at or below its threshold
#     (below), so that a change loosening a sandbox fails here;
#   - nostrfs@.service uses no setting that puts it in a mount namespace of its own (its FUSE
#     mount must land in the host's namespace: see the unit's comments);
#   - `make install DESTDIR=...` puts both units in usr/lib/systemd/system, unchanged.
#
# verify fails if a unit's ExecStart binary does not exist, and /usr/bin/nostr-homectl and
# /usr/bin/nostrfs are not installed on a test machine. So each unit is checked as a temporary
# copy whose ExecStart= has /usr/bin/ replaced by the absolute path of $BUILD (default build/,
# where `make build` put the binaries); nothing else in the copy differs, which is checked.
# The copies are verified with the real unit search path (/lib/systemd/system and so on, from
# the installed systemd), so sysinit.target, dbus.service etc. resolve.
#
# Environment: BUILD (default build), MAKE (default make).
set -euo pipefail
cd "$(dirname "$0")/.."

# Exposure thresholds (0 = best, 10 = worst), the scores measured when the units were written.
# Lower them when a unit gets tighter; raising one needs a reason in docs/SECURITY.md.
declare -A threshold=(
  [nostr-homectl.service]=2.2
  [nostrfs@.service]=3.9
)

build=${BUILD:-build}
make=${MAKE:-make}
pass=0 fail=0
ok() { pass=$((pass+1)); echo "PASS: $*"; }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

for b in nostr-homectl nostrfs; do
  if [ ! -x "$build/$b" ]; then
    echo "test-units: $build/$b is missing; run 'make build' first" >&2
    exit 1
  fi
done
bindir=$(cd "$build" && pwd)
command -v systemd-analyze >/dev/null || { echo "test-units: systemd-analyze not found (install systemd)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/units" "$tmp/dest"

units=(systemd/*.service)
for name in "${!threshold[@]}"; do
  [ -f "systemd/$name" ] || bad "systemd/$name is missing"
done

for src in "${units[@]}"; do
  name=$(basename "$src")
  copy="$tmp/units/$name"
  sed "s|^ExecStart=/usr/bin/|ExecStart=$bindir/|" "$src" >"$copy"
  # Exactly one line may differ: ExecStart=.
  d=$(diff "$src" "$copy" || true)
  changed=$(grep -c '^>' <<<"$d" || true)
  if [ "$changed" -ne 1 ] || ! grep -qF "> ExecStart=$bindir/" <<<"$d"; then
    bad "$name: ExecStart= must name exactly one binary under /usr/bin/ (copy differs in $changed lines)"
    continue
  fi

  # verify: the exit status alone is not enough (an unknown or unparsable setting is only a
  # warning), so any message about this unit fails too.
  out=$(systemd-analyze verify --man=no "$copy" 2>&1) && rc=0 || rc=$?
  unit_re="${name%.service}"
  if [ "$rc" -ne 0 ] || grep -qF -e "$copy" -e "$unit_re" <<<"$out"; then
    bad "$name: systemd-analyze verify (exit $rc):"
    sed 's/^/    /' <<<"$out"
  else
    ok "$name: systemd-analyze verify"
    [ -z "$out" ] || sed 's/^/    note: /' <<<"$out"
  fi

  # security: the overall exposure from the last line, e.g.
  #   → Overall exposure level for nostr-homectl.service: 2.2 OK 🙂
  out=$(systemd-analyze security --offline=true "$copy" 2>&1) && rc=0 || rc=$?
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$out" | tail -n 1)
  max=${threshold[$name]:-}
  if [ -z "$score" ]; then
    bad "$name: no exposure level in systemd-analyze security output (exit $rc):"
    sed 's/^/    /' <<<"$out"
  elif [ -z "$max" ]; then
    bad "$name: exposure $score, but no threshold is set for it in scripts/test-units.sh"
  elif awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
    ok "$name: exposure $score (threshold $max)"
  else
    bad "$name: exposure $score is above the threshold $max; what got looser:"
    grep '✗' <<<"$out" | sed 's/^/    /'
  fi
done

# nostrfs@: nothing that makes systemd set up a mount namespace (systemd 252,
# exec_needs_mount_namespace(), and PrivateUsers=, under which CAP_SYS_ADMIN is not the host's).
# A mount made in such a namespace never propagates to the host, whatever MountFlags= says.
if [ -f systemd/nostrfs@.service ]; then
  ns=$(awk -F= '
    /^[[:space:]]*[#;]/ { next }
    {
      key = $1; gsub(/[[:space:]]/, "", key)
      val = substr($0, index($0, "=") + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", val)
      if (key ~ /^(ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|PrivateMounts|PrivateNetwork|PrivateIPC|PrivateUsers|DynamicUser|ProtectKernelTunables|ProtectKernelModules|ProtectKernelLogs|ProtectControlGroups)$/) {
        if (val !~ /^(no|false|off|0|)$/) print key "=" val
      } else if (key == "ProtectProc") {
        if (val !~ /^(default|)$/) print key "=" val
      } else if (key == "ProcSubset") {
        if (val !~ /^(all|)$/) print key "=" val
      } else if (key == "MountFlags") {
        if (val !~ /^(shared|)$/) print key "=" val
      } else if (key ~ /^(ReadWritePaths|ReadOnlyPaths|InaccessiblePaths|ExecPaths|NoExecPaths|BindPaths|BindReadOnlyPaths|TemporaryFileSystem|RootDirectory|RootImage|MountImages|ExtensionImages|ExtensionDirectories|NetworkNamespacePath|IPCNamespacePath|LogNamespace|JoinsNamespaceOf)$/) {
        if (val != "") print key "=" val
      }
    }' systemd/nostrfs@.service)
  if [ -z "$ns" ]; then
    ok "nostrfs@.service: runs in the host's mount namespace (no namespacing setting)"
  else
    bad "nostrfs@.service: these settings give it a private mount namespace, so its FUSE mount would not reach the host:"
    sed 's/^/    /' <<<"$ns"
  fi
fi

# make install puts both units where systemd looks for vendor units, unchanged and 0644.
if "$make" -s install BUILD="$build" DESTDIR="$tmp/dest" PREFIX=/usr >"$tmp/install.log" 2>&1; then
  for src in "${units[@]}"; do
    f="$tmp/dest/usr/lib/systemd/system/$(basename "$src")"
    if [ -f "$f" ] && [ "$(stat -c %a "$f")" = 644 ] && cmp -s "$src" "$f"; then
      ok "make install: /usr/lib/systemd/system/$(basename "$src") (644)"
    else
      bad "make install: /usr/lib/systemd/system/$(basename "$src") missing, not 0644, or not the same as $src"
    fi
  done
else
  bad "make install DESTDIR=... failed:"
  sed 's/^/    /' "$tmp/install.log"
fi

echo "units: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
