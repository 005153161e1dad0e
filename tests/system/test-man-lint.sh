#!/bin/sh
# test-man-lint.sh: every manual page is clean under `mandoc -T lint -W warning`, and every page
# a unit names in Documentation= exists in man/ (TAP).
set -u
srcdir=${ENTROPY_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$srcdir/tests/system/lib.sh" # require_tools, have_tools
builddir=${ENTROPY_BUILDDIR:-$(pwd)}
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }

require_tools mandoc
for page in "$srcdir"/man/*.[1-8]; do
    out=$(mandoc -T lint -W warning "$page" 2>&1)
    if [ -z "$out" ]; then
        ok "mandoc -T lint: $(basename "$page")"
    else
        printf '%s\n' "$out" | sed 's/^/# /'
        not_ok "mandoc -T lint: $(basename "$page")"
    fi
done

# Documentation=man:NAME(SECTION) in the units, D-Bus and packaging files.
for unit in "$srcdir"/units/*.socket "$srcdir"/units/*.in; do
    for ref in $(sed -n 's/^Documentation=//p' "$unit"); do
        case "$ref" in
            man:*) ;;
            *) continue ;;
        esac
        name=${ref#man:}
        section=${name##*(}
        section=${section%)}
        name=${name%(*}
        if [ -f "$srcdir/man/$name.$section" ]; then
            ok "$(basename "$unit"): $ref exists"
        else
            not_ok "$(basename "$unit"): $ref exists (no man/$name.$section)"
        fi
    done
done
echo "1..$n"
[ "$failed" -eq 0 ]
