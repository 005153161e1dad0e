#!/bin/bash
# with-private-journald.sh: runs a command (normally entropy-bench) with a systemd-journald of its
# own, so that the control plane's audit copies cost what they cost on a host: the copy, the
# wake-up of journald and journald's work (reported apart: journald is not the control plane).
# Needs root: it makes a private mount namespace whose /run/systemd/journal, /run/log and
# /var/log/journal are empty tmpfs, starts journald there, runs the command, and prints the CPU
# time journald used. Nothing of the host's journal is touched.
#
#   sudo tests/bench/with-private-journald.sh tests/bench/entropy-bench --beanstalkd=no
set -euo pipefail

journald=${ENTROPY_JOURNALD:-/lib/systemd/systemd-journald}
if [ $# -eq 0 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "with-private-journald.sh: needs root (a mount namespace)" >&2; exit 1; }
[ -x "$journald" ] || { echo "with-private-journald.sh: no $journald (set ENTROPY_JOURNALD)" >&2; exit 1; }

if [ "${ENTROPY_PRIVATE_JOURNALD_INSIDE:-}" != 1 ]; then
    ENTROPY_PRIVATE_JOURNALD_INSIDE=1 exec unshare --mount --propagation private "$0" "$@"
fi

for d in /run/systemd/journal /run/log /var/log/journal; do
    mkdir -p "$d"
    mount -t tmpfs -o mode=0755 tmpfs "$d"
done
"$journald" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [ -S /run/systemd/journal/socket ] && break
    kill -0 "$pid" 2>/dev/null || { echo "with-private-journald.sh: journald exited" >&2; exit 1; }
    sleep 0.05
done
[ -S /run/systemd/journal/socket ] || { echo "with-private-journald.sh: journald did not start" >&2; exit 1; }

ticks0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
rc=0
"$@" || rc=$?
ticks1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
hz=$(getconf CLK_TCK)
awk -v t=$((ticks1 - ticks0)) -v hz="$hz" 'BEGIN { printf "journald CPU during the command: %.2f s\n", t / hz }'
exit $rc
