#!/bin/sh
# Regenerates the build system: ./autogen.sh && ./configure && make
set -e
cd "$(dirname "$0")"
autoreconf --force --install --warnings=all
# automake ships the TAP driver but only copies the drivers it knows it needs.
if [ ! -f build-aux/tap-driver.sh ]; then
    cp "$(ls -d /usr/share/automake-*/ | sort -V | tail -n 1)tap-driver.sh" build-aux/tap-driver.sh
fi
