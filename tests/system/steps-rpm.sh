# steps-rpm.sh: the RPM steps of the system test suite (sourced by run-system-tests.sh, run after
# the .deb steps have purged their packages). The same two containers become hosts that never had
# Entropy and install it from the RPMs with rpm(8), so that the spec's scriptlets run as they do
# on an RPM distribution: users and tokens at installation, the presets, a restart of the control
# plane and none of the worker on upgrade, everything stopped at removal. rpm runs with --nodeps:
# on Debian the libraries are dpkg's, and rpm's own database does not know them.

RPM_CTL_UNITS='entropy-control.socket entropy-control.service'
RPM_WRK_UNITS='entropy-worker.socket entropy-worker.service'

# rpm_run CONTAINER MODE PACKAGE...: rpm -i, -U or -e of the packages, its output in the log.
rpm_run() {
    local c=$1 mode=$2 args="" p
    shift 2
    for p in "$@"; do
        case "$mode" in
            -e) args="$args $p" ;;
            *) args="$args /rpms/$p-[0-9]*.rpm" ;;
        esac
    done
    [ "$mode" = -U ] && mode="-U --replacepkgs"
    cexec_t 120 "$c" sh -c "rpm $mode --nodeps $args" >>"$SYS_LOGDIR/$c-rpm.log" 2>&1 ||
        { tail -n 25 "$SYS_LOGDIR/$c-rpm.log"; return 1; }
}

# What the .deb steps left behind on purpose (the users) goes too: the RPMs' %pre makes them.
rpm_hosts_fresh() {
    csh "$CTL" '! dpkg -s entropy-control entropyctl >/dev/null 2>&1 &&
        userdel entropy && groupdel entropy-admin && ! getent passwd entropy' &&
        csh "$WRK" '! dpkg -s entropy-worker >/dev/null 2>&1 &&
            userdel entropy-worker && ! getent passwd entropy-worker'
}

step_rpm_install_control() {
    check "the .deb packages are gone and their users removed in $CTL and $WRK" rpm_hosts_fresh || return 1
    check "rpm -i installs entropy-control and entropyctl in $CTL" \
        rpm_run "$CTL" -i entropy-control entropyctl || return 1
    check "their %pre made user entropy and group entropy-admin; %post the tokens and the state directory" csh "$CTL" '
        getent passwd entropy >/dev/null && getent group entropy-admin >/dev/null &&
        [ "$(stat -c %a:%U:%G /etc/entropy/admin-token)" = 640:root:entropy-admin ] &&
        [ "$(stat -c %a:%U /etc/entropy/worker-token)" = 600:root ] &&
        [ "$(stat -c %a:%U /var/lib/entropy)" = 700:entropy ]'
    check "%post applied the presets (Debian's enable every unit) and started nothing" csh "$CTL" "
        systemctl is-enabled -q $RPM_CTL_UNITS && ! systemctl is-active -q entropy-control.service"
    # The .deb steps' drop-in (listen on the link, not only on loopback) is the operator's file:
    # it stayed through the purge. Written again so that this step stands on its own.
    mkdir -p "$SYS_WORK/$CTL/root/etc/systemd/system/entropy-control.socket.d"
    printf '[Socket]\nListenStream=\nListenStream=0.0.0.0:8420\n' \
        >"$SYS_WORK/$CTL/root/etc/systemd/system/entropy-control.socket.d/test-listen.conf"
    check "systemctl enable --now entropy-control: active, owns org.entropy.Control1, runs as entropy" csh "$CTL" "
        systemctl daemon-reload && systemctl enable --now $RPM_CTL_UNITS &&
        systemctl is-active -q entropy-control.service && busctl --system status org.entropy.Control1 >/dev/null &&
        [ \"\$(stat -c %U /proc/\$(systemctl show -P MainPID entropy-control))\" = entropy ]"
}

rpm_worker_online() { csh "$CTL" 'entropyctl --no-pager --no-legend list-workers | grep -q ONLINE'; }

step_rpm_install_worker() {
    local r=$SYS_WORK/$WRK/root
    check "rpm -i installs entropy-worker in $WRK" rpm_run "$WRK" -i entropy-worker || return 1
    check "its %pre made user entropy-worker, %post the state directory; nothing runs yet" csh "$WRK" "
        getent passwd entropy-worker >/dev/null && [ \"\$(stat -c %a:%U /var/lib/entropy-worker)\" = 700:entropy-worker ] &&
        systemctl is-enabled -q $RPM_WRK_UNITS && ! systemctl is-active -q entropy-worker.service &&
        [ -x /usr/libexec/entropy/entropy-keeper ]"
    mkdir -p "$r/etc/entropy"
    install -m 0600 "$SYS_WORK/$CTL/root/etc/entropy/worker-token" "$r/etc/entropy/worker-token"
    printf '[worker]\ncontrol-url = http://%s:8420\npoll-interval = 1s\nheartbeat-interval = 2s\n' \
        "$CTL_ADDR" >"$r/etc/entropy/worker.conf"
    check "systemctl enable --now entropy-worker: active" csh "$WRK" "
        systemctl enable --now $RPM_WRK_UNITS && systemctl is-active -q entropy-worker.service" || return 1
    check "it registers with the RPM-installed control plane across the link" wait_until 20 rpm_worker_online
    RPM_JOB=$(cexec "$CTL" entropyctl submit -- /bin/echo hello-from-the-rpms | tail -n 1 | awk '{print $NF}')
    if [ -z "$RPM_JOB" ]; then tap_not_ok "entropyctl submit (RPMs) gives a job id"; return 1; fi
    check "job $RPM_JOB runs on the RPM-installed worker and completes" wait_until 45 job_is "$RPM_JOB" COMPLETED
}

# rpm_upgraded CONTAINER PACKAGE UNIT OLD-PID same|new: rpm -U, then UNIT active with the same or a
# new main process.
rpm_upgraded() {
    local pid
    [ -n "$4" ] && [ "$4" != 0 ] && rpm_run "$1" -U "$2" && unit_active "$1" "$3" || return 1
    pid=$(main_pid "$1" "$3")
    case "$5" in
        same) [ "$pid" = "$4" ] ;;
        new) [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != "$4" ] ;;
    esac
}

step_rpm_upgrade() {
    check "rpm -U of entropy-control (the upgrade path) restarts the control plane" \
        rpm_upgraded "$CTL" entropy-control entropy-control.service "$(main_pid "$CTL" entropy-control)" new
    check "and keeps its store: job $RPM_JOB is still COMPLETED" wait_until 20 job_is "$RPM_JOB" COMPLETED
    check "rpm -U of entropy-worker leaves the running worker running (its jobs would die with it)" \
        rpm_upgraded "$WRK" entropy-worker entropy-worker.service "$(main_pid "$WRK" entropy-worker.service)" same
}

step_rpm_erase() {
    cp "$SYS_WORK/$WRK/root/etc/entropy/worker.conf" "$SYS_WORK/$WRK/root/etc/entropy/worker-0.conf"
    check "entropy-worker@0.service runs next to the RPMs' entropy-worker.socket and .service" csh "$WRK" "
        systemctl start entropy-worker@0.service && systemctl is-active -q entropy-worker@0.service $RPM_WRK_UNITS"
    rpm_run "$WRK" -e entropy-worker
    check "rpm -e entropy-worker stops the socket, .service and @0.service: no worker runs; keeps the user" csh "$WRK" '
        ! rpm -q entropy-worker >/dev/null 2>&1 &&
        ! systemctl is-active -q entropy-worker.socket && ! systemctl is-active -q entropy-worker.service &&
        ! systemctl is-active -q entropy-worker@0.service && ! pgrep -x entropy-worker && ! pgrep -x entropy-keeper &&
        [ ! -e /usr/lib/systemd/system/entropy-worker.service ] && getent passwd entropy-worker >/dev/null'
    rpm_run "$CTL" -e entropy-control entropyctl
    check "rpm -e entropy-control entropyctl stops the control plane, removes its units, keeps store and tokens" csh "$CTL" '
        ! rpm -q entropy-control >/dev/null 2>&1 &&
        ! systemctl is-active -q entropy-control.socket && ! systemctl is-active -q entropy-control.service &&
        ! pgrep -x entropy-control && [ ! -e /usr/lib/systemd/system/entropy-control.service ] &&
        [ ! -e /usr/bin/entropyctl ] && [ -s /var/lib/entropy/control.db ] && [ -s /etc/entropy/admin-token ] &&
        getent passwd entropy >/dev/null'
}

run_rpm_steps() {
    step_rpm_install_control || { echo "# the RPM steps stop: the control plane's RPM is not running"; return 1; }
    step_rpm_install_worker || return 1
    step_rpm_upgrade
    step_rpm_erase
}
