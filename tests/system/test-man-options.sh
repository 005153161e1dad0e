#!/bin/sh
# test-man-options.sh: every option that a program's --help shows (generated from its option
# table, common/conf.h) is documented in its manual page, and every option of the two daemons
# is a documented key of its configuration file's page (TAP). Programs not built yet are
# skipped.
set -u
srcdir=${ENTROPY_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$srcdir/tests/system/lib.sh" # require_tools, have_tools
builddir=${ENTROPY_BUILDDIR:-$(pwd)}
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }

require_tools mandoc
tmp=$(mktemp -d "${TMPDIR:-/tmp}/entropy-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

built_program() {
    for d in "$builddir" "$builddir/daemon" "$builddir/worker" "$builddir/ctl"; do
        if [ -x "$d/$1" ] && [ -f "$d/$1" ]; then echo "$d/$1"; return; fi
    done
}
render() { # page -> plain text
    mandoc -T utf8 "$srcdir/man/$1" | col -b >"$tmp/$1.txt"
}

# program  man page  config page (or -)
while read -r prog page confpage; do
    bin=$(built_program "$prog")
    if [ -z "$bin" ]; then
        skip "$prog is not built yet"
        continue
    fi
    if ! "$bin" --help >"$tmp/$prog.help" 2>&1; then
        not_ok "$prog --help succeeds"
        continue
    fi
    opts=$(grep -o -- '--[a-z][a-z0-9-]*' "$tmp/$prog.help" | sort -u)
    if [ -z "$opts" ]; then
        not_ok "$prog --help lists options"
        continue
    fi
    render "$page"
    [ "$confpage" = - ] || render "$confpage"
    for opt in $opts; do
        if grep -Eq -- "$opt([^a-z0-9-]|\$)" "$tmp/$page.txt"; then
            ok "$prog $opt is documented in $page"
        else
            not_ok "$prog $opt is documented in $page"
        fi
        [ "$confpage" = - ] && continue
        key=${opt#--}
        case "$key" in help | version | config) continue ;; esac
        # Keys are listed as "key = VALUE" (several may share a line: "a, b = FILE").
        if grep -Eq "(^|[ ,])$key( =|,)" "$tmp/$confpage.txt"; then
            ok "$prog key '$key' is documented in $confpage"
        else
            not_ok "$prog key '$key' is documented in $confpage"
        fi
    done
done <<LIST
entropy-control entropy-control.8 entropy-control.conf.5
entropy-worker entropy-worker.8 entropy-worker.conf.5
entropyctl entropyctl.1 -
LIST
echo "1..$n"
[ "$failed" -eq 0 ]
