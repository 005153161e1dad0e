#!/usr/bin/env bash
# Runs every libFuzzer target of Entropy for a bounded time, starting from the checked-in corpus
# (tests/fuzz/corpus/<target>/). New inputs go to a scratch directory, not into the repository;
# a crash leaves its reproducer in the scratch directory and fails the run: copy it into the
# corpus (it becomes a regression test replayed by make check) and fix the bug.
#
#   scripts/fuzz.sh [--build-dir DIR] [TARGET...]      FUZZ_SECONDS per target (default 25)
#
# Without --build-dir it configures a clang build with --enable-fuzzers in build/fuzz.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=""
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build=$2; shift 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(http-api reconnect conf signed-token wake)
seconds=${FUZZ_SECONDS:-25}

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz.sh: SKIP: clang is not installed (scripts/install-deps.sh test)"
    exit 0
fi
if [ -z "$build" ]; then
    build="$top/build/fuzz"
    mkdir -p "$build"
    [ -f "$build/Makefile" ] || (cd "$build" && CC=clang "$top/configure" -q --enable-fuzzers)
fi
make -C "$build" -j"$(nproc 2>/dev/null || echo 2)" $(printf 'tests/fuzz/fuzz-%s ' "${targets[@]}") >/dev/null

scratch=$(mktemp -d "${TMPDIR:-/tmp}/entropy-fuzz-XXXXXX")
status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t/corpus" "$scratch/$t/artifacts"
    echo "=== fuzz $t for ${seconds}s"
    # The corpus directory comes second: libFuzzer writes new inputs to the first one only.
    if ! (cd "$scratch/$t" && TMPDIR="$scratch/$t" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -max_len=65536 -print_final_stats=1 -artifact_prefix="$scratch/$t/artifacts/" \
            "$scratch/$t/corpus" "$top/tests/fuzz/corpus/$t" > "$scratch/$t/log" 2>&1); then
        status=1
        echo "FAIL: fuzz-$t found a crash; reproducer(s) in $scratch/$t/artifacts:"
        ls -l "$scratch/$t/artifacts"
        tail -n 60 "$scratch/$t/log"
    else
        grep -E "^stat::(number_of_executed_units|new_units_added)" "$scratch/$t/log" | tr '\n' ' '
        echo
    fi
done
[ $status -eq 0 ] && rm -rf "$scratch"
exit $status
