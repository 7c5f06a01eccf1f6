#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a bounded time (`make fuzz`, and `.ci/run` with
# FUZZTIME=3s). The targets are found, not listed here: `go test -list '^Fuzz'` in each
# package whose tests declare a `func Fuzz`, so a new target is picked up without editing this.
#
# Each target runs on its own (`go test -run '^$' -fuzz '^NAME$' -fuzztime FUZZTIME`), after
# its seed corpus and testdata/fuzz/NAME. One line per target says how it went. On the first
# failure the script prints go test's output, the failing input (which go test wrote to the
# package's testdata/fuzz/NAME/; commit it as a regression seed once fixed) and how to re-run
# it, and exits non-zero. A run that finds nothing writes nothing in the tree: the corpus
# the fuzzer grows is kept in GOCACHE (`go env GOCACHE`/fuzz), not in testdata.
#
# Usage: scripts/fuzz.sh [package pattern...]   (default ./...)
# Environment: FUZZTIME (default 10s) per target, FUZZPARALLEL (default: go test's, one worker
# per CPU), GO (default go).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZPARALLEL=${FUZZPARALLEL:-}
[ $# -gt 0 ] || set -- ./...

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Packages whose test files declare a fuzz target (grep first: `go test -list` builds the test
# binary, which is not worth doing for every package), then the targets go test reports.
targets=()
while read -r pkg dir files; do
  [ -n "$files" ] || continue
  (cd "$dir" && grep -qs '^func Fuzz' $files) || continue
  for t in $("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    targets+=("$pkg $dir $t")
  done
done < <("$GO" list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' "$@")

if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets in $*" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each${FUZZPARALLEL:+, $FUZZPARALLEL workers}"

root=$PWD
start=$SECONDS
for entry in "${targets[@]}"; do
  read -r pkg dir name <<<"$entry"
  rel=./${dir#"$root"/}
  t0=$SECONDS
  if "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" ${FUZZPARALLEL:+-parallel "$FUZZPARALLEL"} "$pkg" >"$log" 2>&1; then
    # The fuzzer's last progress line, "fuzz: elapsed: 3s, execs: 1234 (411/sec), new
    # interesting: 2 (total: 30)", without the elapsed time and the last interval's rate.
    stats=$(grep '^fuzz: elapsed:' "$log" | tail -n 1 | sed -E 's/^fuzz: elapsed: [^,]*, //; s/ \([0-9]+\/sec\)//')
    printf 'ok    %-22s %-22s %3ds  %s\n' "$rel" "$name" $((SECONDS - t0)) "${stats:-no progress line}"
    continue
  fi
  printf 'FAIL  %-22s %-22s %3ds\n' "$rel" "$name" $((SECONDS - t0))
  cat "$log"
  # go test says "Failing input written to testdata/fuzz/NAME/HASH" (relative to the package).
  input=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | tail -n 1)
  if [ -n "$input" ] && [ -f "$dir/$input" ]; then
    echo
    echo "fuzz: $name failed; the failing input is saved in $rel/$input:"
    head -c 4096 "$dir/$input"
    echo
    echo "fuzz: re-run it with: $GO test -run '^$name/$(basename "$input")\$' $rel"
  else
    echo "fuzz: $name failed (no failing input was saved: a build error, a seed that fails, or a crash outside the fuzz function)"
  fi
  exit 1
done
echo "fuzz: all ${#targets[@]} targets passed in $((SECONDS - start))s"
