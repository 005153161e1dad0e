#!/bin/sh
# build-rpm.sh: builds Entropy's binary RPMs from a `make dist` tarball and rpm/entropy.spec with
# `rpmbuild -bb` in a private %_topdir.
#
# Usage: scripts/build-rpm.sh [OUTDIR]    (default ./packages/rpm; `make rpms` uses the build tree's)
#   $ENTROPY_BUILDDIR: a configured build tree to run `make dist` in (default: a scratch one).
#   $RPMBUILD_NODEPS: "1" passes --nodeps. It defaults to 1 on hosts without an RPM database of
#   the build dependencies (Debian and Ubuntu, where rpm is only a tool: the libraries come from
#   dpkg, so rpmbuild cannot see them); set it to 0 on Fedora or openSUSE.
# Where systemd-rpm-macros are missing (Debian), the few %systemd_*/%sysusers_* macros the spec
# uses are defined here with the bodies the real macros expand to.
set -eu

srcdir=$(cd "$(dirname "$0")/.." && pwd)
outdir=${1:-${ENTROPY_RPM_DIR:-$PWD/packages/rpm}}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
command -v rpmbuild >/dev/null 2>&1 || { echo "build-rpm: rpmbuild missing: scripts/install-deps.sh package" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/entropy-rpm.XXXXXX")
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
mkdir -p "$work/top/SOURCES" "$work/top/SPECS"
cp "$builddir/entropy-$version.tar.xz" "$srcdir/units/entropy.sysusers" "$srcdir/units/entropy-worker.sysusers" \
    "$work/top/SOURCES/"
sed "s/^Version:.*/Version:        $version/" "$srcdir/rpm/entropy.spec" >"$work/top/SPECS/entropy.spec"

if [ -z "${RPMBUILD_NODEPS:-}" ]; then
    if [ -e /etc/debian_version ]; then RPMBUILD_NODEPS=1; else RPMBUILD_NODEPS=0; fi
fi
nodeps=
[ "$RPMBUILD_NODEPS" = 1 ] && nodeps=--nodeps

# Fallbacks for hosts without systemd-rpm-macros (rpm --eval shows whether they exist).
macros=$work/macros
: >"$macros"
if [ "$(rpm --eval '%{?_unitdir}')" = "" ]; then
    cat >"$macros" <<'MACROS'
%_unitdir /lib/systemd/system
%_sysusersdir /usr/lib/sysusers.d
%_tmpfilesdir /usr/lib/tmpfiles.d
%systemd_requires Requires(post): systemd\
Requires(preun): systemd\
Requires(postun): systemd
%sysusers_requires_compat Requires(pre): systemd
%systemd_post() if [ $1 -eq 1 ]; then systemctl --no-reload preset %{?*} >/dev/null 2>&1 || : ; fi
%systemd_preun() if [ $1 -eq 0 ]; then systemctl --no-reload disable --now %{?*} >/dev/null 2>&1 || : ; fi
%systemd_postun() if [ $1 -ge 1 ]; then systemctl daemon-reload >/dev/null 2>&1 || : ; fi
%systemd_postun_with_restart() if [ $1 -ge 1 ]; then systemctl try-restart %{?*} >/dev/null 2>&1 || : ; fi
%sysusers_create_compat() systemd-sysusers - >/dev/null 2>&1 <<'SYSUSERS' || :\
%(cat %1)\
SYSUSERS
%tmpfiles_create() systemd-tmpfiles --create %{?*} >/dev/null 2>&1 || :
%journal_catalog_update journalctl --update-catalog >/dev/null 2>&1 || :
MACROS
fi

rpmbuild -bb $nodeps --define "_topdir $work/top" --load "$macros" \
    "$work/top/SPECS/entropy.spec" >"$work/rpmbuild.log" 2>&1 || {
    tail -40 "$work/rpmbuild.log" >&2
    echo "build-rpm: rpmbuild failed (last 40 lines above)" >&2
    exit 1
}
cp "$work/rpmbuild.log" "$outdir/build.log"
rm -f "$outdir"/*.rpm
find "$work/top/RPMS" -name '*.rpm' -exec cp {} "$outdir/" \;
echo "build-rpm: packages in $outdir:"
ls -1 "$outdir"/*.rpm
