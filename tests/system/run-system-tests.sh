#!/usr/bin/env bash
# run-system-tests.sh: Entropy's system test suite (TAP), as root, on a booted systemd.
#
# Two containers, each the machine's own root under an overlay with a tmpfs upper layer, each in
# its own network namespace, joined by a veth link: "ctl" (10.231.0.1) runs the control plane,
# "wrk" (10.231.0.2) a worker. The built .deb packages are installed in them with apt, offline,
# (offline: its network namespace has no route out) and the operator's path is exercised: start, submit with entropyctl and busctl, run on the
# worker, audit in the journal with catalog text, restart mid-work, socket activation, watchdog,
# purge. Then the same hosts install the RPMs with rpm(8) and go through install, a job, upgrade
# and removal again (steps-rpm.sh). Everything (containers, namespaces, mounts, processes) is
# removed on any exit.
#
# Environment: ENTROPY_DEB_DIR (default $ENTROPY_BUILDDIR/packages/deb: `make debs`),
# ENTROPY_RPM_DIR (default $ENTROPY_BUILDDIR/packages/rpm: `make rpms`),
# ENTROPY_SYSTEM_LOGDIR (keep the containers' journals there), ENTROPY_SYSTEM_BUDGET (seconds,
# default 420). Without root: "1..0 # SKIP", exit 77; as root, a missing tool or package is a
# failure. See tests/system/README.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

sys_require_root
sys_setup "${ENTROPY_SYSTEM_BUDGET:-420}"

builddir=${ENTROPY_BUILDDIR:-$(pwd)}
debdir=${ENTROPY_DEB_DIR:-$builddir/packages/deb}
CTL=ctl
WRK=wrk
CTL_ADDR=10.231.0.1
WRK_ADDR=10.231.0.2
rpmdir=${ENTROPY_RPM_DIR:-$builddir/packages/rpm}
have_debs=no
ls "$debdir"/entropy-control_*.deb "$debdir"/entropy-worker_*.deb "$debdir"/entropyctl_*.deb >/dev/null 2>&1 && have_debs=yes
have_rpms=no
ls "$rpmdir"/entropy-control-[0-9]*.rpm "$rpmdir"/entropy-worker-[0-9]*.rpm "$rpmdir"/entropyctl-[0-9]*.rpm >/dev/null 2>&1 &&
    have_rpms=yes

# --- Containers -------------------------------------------------------------------------------
netns_create "${SYS_TAG}-ctl" && netns_create "${SYS_TAG}-wrk" &&
    netns_link "${SYS_TAG}-ctl" "$CTL_ADDR/24" "${SYS_TAG}-wrk" "$WRK_ADDR/24"
check "private network namespaces joined by a veth link" ip -n "${SYS_TAG}-wrk" addr show dev eth0

booted=yes
for c in $CTL $WRK; do
    container_create "$c" "${SYS_TAG}-$c" || booted=no
done
binds=()
[ $have_debs = yes ] && binds+=(--bind-ro="$debdir:/debs")
[ $have_rpms = yes ] && binds+=(--bind-ro="$rpmdir:/rpms")
for c in $CTL $WRK; do
    container_boot "$c" "${binds[@]}"
done
for c in $CTL $WRK; do
    check "container $c boots systemd to a finished start-up" container_wait_booted "$c" 60 || booted=no
done
if [ $booted = no ]; then
    echo "Bail out! containers did not boot (see $SYS_LOGDIR/*-console.log)"
    exit 1
fi
check "$WRK reaches $CTL over the veth link, and only it" \
    cexec "$WRK" bash -c "timeout 3 bash -c 'exec 3<>/dev/tcp/$CTL_ADDR/9' 2>&1 | grep -q refused && ! ip route get 1.1.1.1 >/dev/null 2>&1"

if [ $have_debs = no ]; then
    # check-system builds them when packages/deb/ is empty: none here is an error, not a skip.
    tap_not_ok "Entropy steps: packages entropy-control, entropy-worker, entropyctl in $debdir (make debs)"
    echo "1..$SYS_N"
    exit 1
fi
. "$here/steps.sh"
. "$here/steps-rpm.sh"
run_entropy_steps
if [ $have_rpms = yes ]; then
    run_rpm_steps
else
    # check-system builds them when packages/rpm/ is empty: none here is an error, not a skip.
    tap_not_ok "RPM steps: packages entropy-control, entropy-worker, entropyctl in $rpmdir (make rpms)"
fi

echo "1..$SYS_N"
[ "$SYS_FAILED" -eq 0 ]
