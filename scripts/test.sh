#!/usr/bin/env bash
# Installs what is needed, builds, and runs Entropy's whole test suite:
#   1. unit and integration tests (make check) in a normal build;
#   2. the same suite in a build with AddressSanitizer and UndefinedBehaviorSanitizer;
#   2b. a short libFuzzer run of every fuzz target (scripts/fuzz.sh, clang);
#   3. the system tests on a booted systemd in containers (make check-system), as root.
# Run as root on Debian 12. Exits non-zero when anything failed.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)
started=$(date +%s)

if [ "$(id -u)" -eq 0 ]; then
    scripts/install-deps.sh all
else
    echo "test.sh: not root, not installing packages; the system tests will be skipped" >&2
fi

[ -x configure ] || ./autogen.sh

summary=()
total_pass=0 total_fail=0 total_skip=0
status=0

# Adds the counts of a finished `make check` run (from its test-suite.log) to the totals.
count_results() {
    local log=$1 label=$2 p f s e x
    p=$(sed -n 's/^# PASS: *//p' "$log" | head -n1)
    f=$(sed -n 's/^# FAIL: *//p' "$log" | head -n1)
    s=$(sed -n 's/^# SKIP: *//p' "$log" | head -n1)
    e=$(sed -n 's/^# ERROR: *//p' "$log" | head -n1)
    x=$(sed -n 's/^# XPASS: *//p' "$log" | head -n1)
    p=${p:-0} f=$(( ${f:-0} + ${e:-0} + ${x:-0} )) s=${s:-0}
    total_pass=$(( total_pass + p )) total_fail=$(( total_fail + f )) total_skip=$(( total_skip + s ))
    summary+=("$label: $p passed, $f failed, $s skipped")
}

# run_suite NAME CONFIGURE-ARGS... : builds in build/NAME and runs make check there.
run_suite() {
    local name=$1; shift
    local dir="$top/build/$name"
    mkdir -p "$dir"
    echo "=== $name: configure $*"
    (cd "$dir" && "$top/configure" -q "$@")
    echo "=== $name: build"
    make -C "$dir" -j"$jobs" >/dev/null
    echo "=== $name: make check"
    if ! make -C "$dir" -j"$jobs" check; then
        status=1
        # Show what failed, in full, where CI keeps it.
        if [ -f "$dir/test-suite.log" ]; then
            cat "$dir/test-suite.log"
        else
            summary+=("$name: make check did not get to run the tests")
            total_fail=$(( total_fail + 1 ))
        fi
    fi
    if [ -f "$dir/test-suite.log" ]; then
        count_results "$dir/test-suite.log" "$name"
    fi
}

run_suite default
run_suite sanitizers --enable-sanitizers

# A bounded libFuzzer run of every fuzz target from its corpus (about two minutes, clang build).
echo "=== fuzz (scripts/fuzz.sh, ${FUZZ_SECONDS:-25}s per target)"
if command -v clang >/dev/null 2>&1; then
    if scripts/fuzz.sh; then
        summary+=("fuzz: no crash")
    else
        status=1
        total_fail=$(( total_fail + 1 ))
        summary+=("fuzz: a target crashed (see above)")
    fi
else
    echo "SKIP: fuzzing needs clang"
    total_skip=$(( total_skip + 1 ))
fi

if [ "$(id -u)" -eq 0 ]; then
    echo "=== system tests (booted systemd in containers)"
    syslog="$top/build/default/check-system.tap"
    if ! make -C "$top/build/default" check-system 2>&1 | tee "$syslog"; then
        status=1
    fi
    p=$(grep -cE '^ok [0-9]+( |$)' "$syslog" | head -n1) || true
    s=$(grep -cE '^ok [0-9]+ # SKIP' "$syslog") || true
    f=$(grep -cE '^not ok ' "$syslog") || true
    if grep -q '^Bail out!' "$syslog"; then f=$(( f + 1 )); fi
    p=$(( p - s ))
    # A suite skipped as a whole ("1..0 # SKIP reason") is one skip, shown with its reason.
    skipped_all=$(sed -n 's/^1\.\.0 *# *[Ss][Kk][Ii][Pp]:\{0,1\} *//p' "$syslog" | head -n1)
    if grep -qE '^1\.\.0 *# *[Ss][Kk][Ii][Pp]' "$syslog"; then s=$(( s + 1 )); fi
    total_pass=$(( total_pass + p )) total_fail=$(( total_fail + f )) total_skip=$(( total_skip + s ))
    line="system: $p passed, $f failed, $s skipped"
    [ -n "$skipped_all" ] && line="$line (skipped as a whole: $skipped_all)"
    # As root the system tests must run: none run is a failure, whatever the reason.
    if [ $(( p + f )) -eq 0 ]; then
        status=1
        total_fail=$(( total_fail + 1 ))
        line="$line; FAILED: no system test ran as root"
    fi
    summary+=("$line")
else
    echo "SKIP: system tests need root"
    total_skip=$(( total_skip + 1 ))
fi

echo
echo "=== summary ($(( $(date +%s) - started ))s)"
for line in "${summary[@]}"; do echo "  $line"; done
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ] || status=1
exit $status
