#!/bin/sh
# build-deb.sh: builds Entropy's Debian packages (entropy-control, entropy-worker, entropyctl)
# from a `make dist` tarball plus debian/, with `dpkg-buildpackage -us -uc -b`.
#
# Usage: scripts/build-deb.sh [OUTDIR]
#   OUTDIR (or $ENTROPY_DEB_DIR) receives the .deb, .buildinfo and .changes files; default
#   ./packages/deb under the current directory. `make debs` in a build tree uses
#   <builddir>/packages/deb, which is where `make check-system` looks for them.
#   $ENTROPY_BUILDDIR: a configured build tree to run `make dist` in (default: a scratch one).
#   $DEB_BUILD_OPTIONS: passed on; default "nocheck" (make check is run separately).
set -eu

srcdir=$(cd "$(dirname "$0")/.." && pwd)
outdir=${1:-${ENTROPY_DEB_DIR:-$PWD/packages/deb}}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

for tool in dpkg-buildpackage dh; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-deb: $tool missing: run scripts/install-deps.sh package" >&2
        exit 1
    }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/entropy-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

builddir=${ENTROPY_BUILDDIR:-}
if [ -z "$builddir" ]; then
    builddir=$work/build
    mkdir -p "$builddir"
    [ -x "$srcdir/configure" ] || (cd "$srcdir" && ./autogen.sh)
    (cd "$builddir" && "$srcdir/configure" -q)
fi
make -C "$builddir" -s dist >/dev/null
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")
tarball=$builddir/entropy-$version.tar.xz
[ -f "$tarball" ] || { echo "build-deb: $tarball not made" >&2; exit 1; }

# The upstream tarball is the orig tarball; debian/ comes from this tree (it is not shipped in
# the upstream tarball).
cp "$tarball" "$work/entropy_$version.orig.tar.xz"
tar -C "$work" -xf "$tarball"
cp -a "$srcdir/debian" "$work/entropy-$version/"
(
    cd "$work/entropy-$version"
    DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck} dpkg-buildpackage -us -uc -b
) >"$work/build.log" 2>&1 || {
    tail -50 "$work/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (full log above, last 50 lines)" >&2
    exit 1
}
cp "$work/build.log" "$outdir/build.log"
rm -f "$outdir"/*.deb
mv "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$outdir/"
echo "build-deb: packages in $outdir:"
ls -1 "$outdir"/*.deb
