#!/usr/bin/env bash
# Installs, from Debian's packages, what Entropy needs to build, test and package itself, or to
# run scripts/demo.sh.
# Usage: scripts/install-deps.sh [build|demo|test|package|all]   (default: all)
set -euo pipefail

build_pkgs=(
    build-essential autoconf automake autoconf-archive pkg-config
    libsystemd-dev libmicrohttpd-dev libcurl4-gnutls-dev libjson-c-dev
    libgnutls28-dev libinih-dev libsqlite3-dev
)
# What scripts/demo.sh runs besides the programs it builds (the test set has them too).
demo_pkgs=(
    curl python3
)
test_pkgs=(
    python3 python3-dbus python3-gi dbus dbus-daemon curl jq sqlite3 valgrind mandoc clang
    libclang-rt-14-dev gnutls-bin systemd systemd-container iproute2 util-linux strace bsdextrautils
    beanstalkd prometheus chromium
)
package_pkgs=(
    debhelper dh-exec devscripts dpkg-dev fakeroot rpm lintian
)

want=${1:-all}
pkgs=()
case "$want" in
    build)   pkgs=("${build_pkgs[@]}") ;;
    demo)    pkgs=("${build_pkgs[@]}" "${demo_pkgs[@]}") ;;
    test)    pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    package) pkgs=("${build_pkgs[@]}" "${package_pkgs[@]}") ;;
    all)     pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}" "${package_pkgs[@]}") ;;
    *) echo "usage: $0 [build|demo|test|package|all]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root (apt-get install)" >&2
    exit 1
fi

# The browser test drives Chromium from Node; a host that already has node and npm
# (from any source) keeps them, Debian's are installed only where there are none.
if [ "$want" = test ] || [ "$want" = all ]; then
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
