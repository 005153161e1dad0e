# lib.sh: the system test harness (sourced by run-system-tests.sh, and by the make-check scripts
# test-*.sh for its tool checks). TAP output, containers that boot the machine's own systemd over
# an overlay of /, private network namespaces joined by a veth pair, and cleanup of all of it on
# any exit.
#
# A container NAME lives in $SYS_WORK/NAME: tmpfs/ holds the overlay's upper and work dirs, root/
# is the merged tree systemd-nspawn boots. Writes inside the container land in the tmpfs and
# vanish with it; the host's files are the read-only lower layer and are never written.

SYS_N=0
SYS_FAILED=0
SYS_CONTAINERS=""
SYS_NETNS=""
SYS_MOUNTS=""

tap_ok() { SYS_N=$((SYS_N + 1)); echo "ok $SYS_N - $*"; }
tap_not_ok() { SYS_N=$((SYS_N + 1)); SYS_FAILED=$((SYS_FAILED + 1)); echo "not ok $SYS_N - $*"; }
tap_skip() { SYS_N=$((SYS_N + 1)); echo "ok $SYS_N # SKIP $*"; }
diag() { if [ $# -gt 0 ]; then printf '%s\n' "$*" | sed 's/^/# /'; else sed 's/^/# /'; fi; }
# check DESCRIPTION COMMAND...: one test point from a command's status; its output goes to the
# diagnostics when it fails.
check() {
    local desc=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        tap_ok "$desc"
    else
        [ -n "$out" ] && printf '%s\n' "$out" | tail -n 30 | diag
        tap_not_ok "$desc (exit $rc)"
    fi
    return $rc
}
# wait_until SECONDS COMMAND...: polls COMMAND every 0.5 s until it succeeds or time runs out.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.5
    done
}

# --- Tools the tests need. This part is also sourced by the `make check` scripts
# (tests/system/test-*.sh, run by /bin/sh), so it stays POSIX sh.
#
# scripts/install-deps.sh installs every tool the tests use. A run without root (a developer's
# `make check`) may lack some: what needs them is reported skipped. As root (CI, which ran
# install-deps.sh) a missing tool is an error, "Bail out!", never a skip that passes.

# missing_tools TOOL...: prints those of the TOOLs that are not on PATH (nothing if none).
missing_tools() {
    local t missing=""
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
    done
    printf '%s' "${missing# }"
}
# have_tools TOOL...: true when every TOOL is on PATH. Otherwise, as root: "Bail out!" and exit 1
# (anywhere in a TAP stream); without root: false, and the caller reports its test points
# skipped. Call it as a condition (if have_tools ...), not in a subshell.
have_tools() {
    local missing
    missing=$(missing_tools "$@")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "Bail out! missing: $missing (scripts/install-deps.sh test installs it; as root this is an error, not a skip)"
        exit 1
    fi
    return 1
}
# require_tools TOOL...: before the first test point of a TAP script. Without root and with a
# tool missing, the whole script is skipped: "1..0 # SKIP", exit 0 under make check (which sets
# ENTROPY_BUILDDIR; its TAP driver takes any other status as an error), 77 otherwise. As root,
# have_tools' "Bail out!".
require_tools() {
    have_tools "$@" && return 0
    echo "1..0 # SKIP missing: $(missing_tools "$@") (scripts/install-deps.sh test installs it)"
    [ -n "${ENTROPY_BUILDDIR:-}" ] && exit 0
    exit 77
}

# sys_require_root: the container suite runs as root only ("1..0 # SKIP needs root", exit 77
# otherwise), and then with every tool it uses.
sys_require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "1..0 # SKIP needs root"
        exit 77
    fi
    have_tools systemd-nspawn systemd-id128 nsenter ip mount umount timeout pgrep python3
}

# sys_setup BUDGET_SECONDS: work directory, cleanup trap, and a watchdog that ends the whole run
# (cleanup included) when the budget is spent, so no step can hang it.
sys_setup() {
    SYS_WORK=$(mktemp -d /tmp/entropy-system.XXXXXX)
    SYS_LOGDIR=${ENTROPY_SYSTEM_LOGDIR:-$SYS_WORK/logs}
    mkdir -p "$SYS_LOGDIR"
    SYS_TAG=es$$
    trap sys_cleanup EXIT
    trap 'echo "# interrupted"; exit 130' INT TERM HUP
    local main=$$
    (
        trap 'kill "$sp" 2>/dev/null; exit 0' TERM
        sleep "$1" &
        sp=$!
        wait "$sp" || exit 0
        echo "# system tests: time budget of $1 s spent, stopping" >&2
        kill -TERM "$main"
    ) </dev/null >/dev/null 2>&1 &
    SYS_WATCHDOG=$!
}

sys_cleanup() {
    local rc=$? c m
    trap - EXIT INT TERM HUP
    [ -n "${SYS_WATCHDOG:-}" ] && kill "$SYS_WATCHDOG" 2>/dev/null
    for c in $SYS_CONTAINERS; do
        container_save_logs "$c"
    done
    for c in $SYS_CONTAINERS; do
        container_destroy "$c"
    done
    for m in $SYS_MOUNTS; do # most recent first
        umount -l "$m" 2>/dev/null
    done
    for m in $SYS_NETNS; do
        ip netns delete "$m" 2>/dev/null
    done
    if [ -n "${ENTROPY_SYSTEM_LOGDIR:-}" ] || [ "${SYS_FAILED:-0}" -ne 0 ] || [ $rc -ne 0 ]; then
        if [ "$SYS_LOGDIR" = "$SYS_WORK/logs" ]; then
            mkdir -p /tmp/entropy-system-logs
            rm -rf /tmp/entropy-system-logs/last
            mv "$SYS_LOGDIR" /tmp/entropy-system-logs/last 2>/dev/null
            echo "# container logs and journals: /tmp/entropy-system-logs/last"
        else
            echo "# container logs and journals: $SYS_LOGDIR"
        fi
    fi
    rm -rf "$SYS_WORK"
    exit $rc
}

sys_mount() { # remembers mounts, most recent first, for cleanup
    mount "$@" && SYS_MOUNTS="${*: -1} $SYS_MOUNTS"
}

# netns_create NAME: a network namespace with only lo (up).
netns_create() {
    ip netns add "$1" || return 1
    SYS_NETNS="$SYS_NETNS $1"
    ip -n "$1" link set lo up
}
# netns_link NS1 ADDR1/PFX NS2 ADDR2/PFX: a veth pair between two namespaces. The addresses exist
# only inside these namespaces; the host's network is not touched.
netns_link() {
    ip link add "${SYS_TAG}a" netns "$1" type veth peer name "${SYS_TAG}b" netns "$3" || return 1
    ip -n "$1" link set "${SYS_TAG}a" name eth0
    ip -n "$3" link set "${SYS_TAG}b" name eth0
    ip -n "$1" addr add "$2" dev eth0 && ip -n "$1" link set eth0 up &&
        ip -n "$3" addr add "$4" dev eth0 && ip -n "$3" link set eth0 up
}

# container_create NAME NETNS: an overlay of / ready to boot.
container_create() {
    local name=$1 d=$SYS_WORK/$1
    mkdir -p "$d/tmpfs" "$d/root"
    sys_mount -t tmpfs -o mode=0755,size=4G "${SYS_TAG}-$name" "$d/tmpfs" || return 1
    mkdir -p "$d/tmpfs/upper" "$d/tmpfs/work"
    sys_mount -t overlay -o "lowerdir=/,upperdir=$d/tmpfs/upper,workdir=$d/tmpfs/work" \
        "${SYS_TAG}-$name" "$d/root" || return 1
    SYS_CONTAINERS="$name $SYS_CONTAINERS"
    echo "$2" >"$d/netns"
    local r=$d/root
    # Leftovers of the host's own state (if it ever ran Entropy) are not the container's.
    rm -rf "$r/var/lib/entropy" "$r/var/lib/entropy-worker" "$r/etc/entropy" \
        "$r/etc/systemd/system/entropy-control"* "$r/etc/systemd/system/entropy-worker"* 2>/dev/null
    # Its own identity: a machine id (journal, worker id) and a host name.
    systemd-id128 new >"$r/etc/machine-id"
    echo "$name" >"$r/etc/hostname"
    # A container image's policy-rc.d ("exit 101": start nothing while building an image) would
    # make deb-systemd-invoke refuse every start, stop and restart of the maintainer scripts, and
    # the package steps would pass or fail for that reason. An operator's host has none.
    rm -f "$r/usr/sbin/policy-rc.d"
    # Boot a small target instead of the host's default one: only what the tests need (journald,
    # D-Bus, logind, polkit on demand), so that the host's own services (databases, web servers,
    # anything installed here) are not started in the container.
    cat >"$r/etc/systemd/system/entropy-test.target" <<'UNIT'
[Unit]
Description=Entropy system test target
Requires=basic.target
Wants=dbus.service systemd-logind.service
After=basic.target dbus.service systemd-logind.service
AllowIsolate=yes
UNIT
}

# container_boot NAME [nspawn options...]: starts systemd in it (in the background).
container_boot() {
    local name=$1 d=$SYS_WORK/$1
    shift
    systemd-nspawn --quiet --keep-unit --register=no -D "$d/root" --machine="$name" \
        --network-namespace-path="/run/netns/$(cat "$d/netns")" --console=read-only \
        "$@" --boot systemd.firstboot=off systemd.unit=entropy-test.target \
        </dev/null >"$SYS_LOGDIR/$name-console.log" 2>&1 &
    echo $! >"$d/nspawn.pid"
}

# container_leader NAME: PID (on the host) of the container's systemd.
container_leader() {
    local d=$SYS_WORK/$1 p
    [ -f "$d/leader.pid" ] && kill -0 "$(cat "$d/leader.pid")" 2>/dev/null && { cat "$d/leader.pid"; return 0; }
    p=$(pgrep -x -P "$(cat "$d/nspawn.pid" 2>/dev/null)" systemd 2>/dev/null | head -n 1)
    [ -n "$p" ] || return 1
    echo "$p" >"$d/leader.pid"
    echo "$p"
}

# container_wait_booted NAME SECONDS: until the boot is finished ("running" or "degraded").
container_wait_booted() {
    local name=$1 budget=$2 state deadline=$((SECONDS + $2))
    wait_until "$budget" container_leader "$name" || return 1
    # "offline" until its systemd accepts connections; then --wait waits for the boot to end.
    while :; do
        state=$(cexec_t "$((deadline - SECONDS + 1))" "$name" systemctl is-system-running --wait 2>"$SYS_WORK/$name/boot.err")
        case "$state" in offline | "") [ $SECONDS -lt $deadline ] || break ;; *) break ;; esac
        sleep 0.3
    done
    case "$state" in
        running) return 0 ;;
        degraded)
            cexec "$name" systemctl --failed --no-legend --plain | diag
            return 0 ;;
        *) echo "state: '$state'"; cat "$SYS_WORK/$name/boot.err"; return 1 ;;
    esac
}

# cexec NAME COMMAND...: runs a command inside, with a clean environment, within 60 s.
# cexec_t SECONDS NAME COMMAND...: the same with another time limit.
cexec_t() {
    local t=$1 name=$2 leader
    shift 2
    leader=$(container_leader "$name") || { echo "container $name is not running" >&2; return 125; }
    timeout -k 5 "$t" nsenter -t "$leader" -a -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive \
        "$@"
}
cexec() { cexec_t 60 "$@"; }
# csh NAME 'shell code': a shell command line inside.
csh() { local name=$1; shift; cexec "$name" sh -c "$*"; }

container_save_logs() {
    local name=$1
    container_leader "$name" >/dev/null 2>&1 || return 0
    cexec_t 20 "$name" journalctl -b --no-pager -o short-precise >"$SYS_LOGDIR/$name-journal.log" 2>&1
    cexec_t 10 "$name" systemctl list-units --no-pager --all 'entropy*' >"$SYS_LOGDIR/$name-units.log" 2>&1
}

# container_destroy NAME: power off; after 10 s, kill its PID 1 (which ends every process in its
# PID namespace, including those we started with nsenter) and nspawn itself.
container_destroy() {
    local name=$1 d=$SYS_WORK/$1 np leader
    np=$(cat "$d/nspawn.pid" 2>/dev/null)
    leader=$(container_leader "$name" 2>/dev/null)
    if [ -n "$np" ] && kill -0 "$np" 2>/dev/null; then
        kill -TERM "$np" 2>/dev/null
        wait_until 10 sh -c "! kill -0 $np 2>/dev/null"
        [ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null
        kill -KILL "$np" 2>/dev/null
        wait_until 5 sh -c "! kill -0 $np 2>/dev/null"
    fi
    rm -f "$d/leader.pid"
}

# container_power_cut NAME: the container vanishes at once, as a host losing power.
container_power_cut() {
    local leader
    leader=$(container_leader "$1") && kill -KILL "$leader"
}
