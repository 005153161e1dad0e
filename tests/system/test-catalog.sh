#!/bin/sh
# test-catalog.sh: the journal catalog (catalog/entropy.catalog) compiles with journalctl into a
# scratch root, as systemd does at installation, and every MESSAGE_ID the code emits has an
# entry there (TAP). IDs are found as the 32-hex-digit strings of the audit event table
# (daemon/audit.c) and any literal MESSAGE_ID=... in daemon/, worker/ and common/.
set -u
srcdir=${ENTROPY_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$srcdir/tests/system/lib.sh" # require_tools, have_tools
catalog=$srcdir/catalog/entropy.catalog
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }

require_tools journalctl
if [ ! -f "$catalog" ]; then
    not_ok "catalog/entropy.catalog exists"
    echo "1..$n"
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/entropy-catalog.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Entry headers are "-- <32 hex digits>" (optionally a language); anything else starting with
# "-- " would be swallowed as text of the entry before it.
bad=$(grep -n '^-- ' "$catalog" | grep -Ev '^[0-9]+:-- [0-9a-f]{32}( [a-zA-Z_@.-]+)?$')
if [ -z "$bad" ]; then ok "entry headers are well formed"; else echo "$bad" | sed 's/^/# /'; not_ok "entry headers are well formed"; fi

mkdir -p "$tmp/usr/lib/systemd/catalog"
cp "$catalog" "$tmp/usr/lib/systemd/catalog/"
if journalctl --root="$tmp" --update-catalog >"$tmp/update.log" 2>&1 && [ ! -s "$tmp/update.log" ] &&
   [ -s "$tmp/var/lib/systemd/catalog/database" ]; then
    ok "journalctl --update-catalog compiles it"
else
    sed 's/^/# /' "$tmp/update.log"
    not_ok "journalctl --update-catalog compiles it"
fi
journalctl --root="$tmp" --list-catalog 2>/dev/null | awk '{ print $1 }' | sort -u >"$tmp/listed"
entries=$(grep -c '^-- ' "$catalog")
listed=$(wc -l <"$tmp/listed")
if [ "$entries" -eq "$listed" ]; then ok "all $entries entries are in the compiled catalog"; else not_ok "all $entries entries are in the compiled catalog (found $listed)"; fi

# Every entry says what it is and where to read more.
missing=$(awk '/^-- /{ if (id && !(s && d)) print id; id=$2; s=0; d=0 } /^Subject: /{s=1} /^Defined-By: /{d=1}
               END { if (id && !(s && d)) print id }' "$catalog")
if [ -z "$missing" ]; then ok "every entry has Subject: and Defined-By:"; else echo "# incomplete: $missing"; not_ok "every entry has Subject: and Defined-By:"; fi

ids=$(cat "$srcdir"/daemon/*.c "$srcdir"/daemon/*.h "$srcdir"/worker/*.c "$srcdir"/common/*.c 2>/dev/null |
      grep -oE '"[0-9a-f]{32}"|MESSAGE_ID=[0-9a-f]{32}' | grep -oE '[0-9a-f]{32}' | sort -u)
if [ -z "$ids" ]; then
    not_ok "the code emits MESSAGE_IDs (none found in daemon/, worker/, common/)"
fi
for id in $ids; do
    if grep -qx "$id" "$tmp/listed"; then
        ok "MESSAGE_ID $id has a catalog entry"
    else
        not_ok "MESSAGE_ID $id has a catalog entry"
    fi
done
# Entries nobody emits are not an error (an event may be retired), but worth a note.
for id in $(cat "$tmp/listed"); do
    printf '%s\n' "$ids" | grep -qx "$id" || echo "# note: catalog entry $id is not used by the code"
done
echo "1..$n"
[ "$failed" -eq 0 ]
