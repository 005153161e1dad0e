# steps.sh: the Entropy steps of the system test suite (sourced by run-system-tests.sh, after the
# containers $CTL and $WRK have booted; see lib.sh for cexec, csh, check, wait_until).

JOB_STATES_RE='PENDING|ASSIGNED|RUNNING|COMPLETED|FAILED|RETRYING|LOST|ABORTED'

# job_field JOB FIELD: a field of `entropyctl -o json status JOB`, in $CTL.
job_field() {
    cexec "$CTL" entropyctl --no-pager -o json status "$1" 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    line = line.strip()
    if line:
        v = json.loads(line).get(sys.argv[1])
        print("" if v is None else v)
        break' "$2"
}
job_is() { [ "$(job_field "$1" status)" = "$2" ]; }
unit_active() { [ "$(cexec "$1" systemctl is-active "$2")" = active ]; }
main_pid() { cexec "$1" systemctl show -P MainPID "$2"; }
main_pid_changed() {
    local p
    p=$(main_pid "$CTL" entropy-control)
    [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$1" ]
}

install_debs() { # container package...
    local c=$1 debs="" p
    shift
    for p in "$@"; do debs="$debs /debs/${p}_*.deb"; done
    cexec_t 240 "$c" sh -c "apt-get install -y -q -o Dpkg::Use-Pty=0 $debs" \
        >"$SYS_LOGDIR/$c-apt-install.log" 2>&1 || { tail -n 25 "$SYS_LOGDIR/$c-apt-install.log"; return 1; }
}

step_install_control() {
    check "apt installs entropy-control and entropyctl in $CTL (offline)" \
        install_debs "$CTL" entropy-control entropyctl || return 1
    check "users entropy, group entropy-admin exist; tokens are in place with their modes" csh "$CTL" '
        getent passwd entropy >/dev/null && getent group entropy-admin >/dev/null &&
        [ "$(stat -c %a:%U:%G /etc/entropy/admin-token)" = 640:root:entropy-admin ] &&
        [ "$(stat -c %a:%U /etc/entropy/worker-token)" = 600:root ]'
    check "the package enabled and started entropy-control.service and .socket" csh "$CTL" '
        systemctl is-enabled entropy-control.service && systemctl is-enabled entropy-control.socket &&
        systemctl is-active entropy-control.service && systemctl is-active entropy-control.socket'
    # Serve the worker's host too: in this namespace there are only lo and the veth link.
    mkdir -p "$SYS_WORK/$CTL/root/etc/systemd/system/entropy-control.socket.d"
    printf '[Socket]\nListenStream=\nListenStream=0.0.0.0:8420\n' \
        >"$SYS_WORK/$CTL/root/etc/systemd/system/entropy-control.socket.d/test-listen.conf"
    csh "$CTL" 'systemctl daemon-reload && systemctl stop entropy-control.service entropy-control.socket &&
        systemctl start entropy-control.socket' >/dev/null 2>&1
    check "systemctl start entropy-control reaches active (READY=1 received)" \
        csh "$CTL" 'systemctl start entropy-control.service && [ "$(systemctl show -P ActiveState entropy-control)" = active ] &&
            [ "$(systemctl show -P SubState entropy-control)" = running ]'
    check "it owns org.entropy.Control1 on the system bus" \
        cexec "$CTL" busctl --system status org.entropy.Control1
    check "it runs as user entropy with its credentials" csh "$CTL" '
        pid=$(systemctl show -P MainPID entropy-control); [ "$(stat -c %U /proc/$pid)" = entropy ] &&
        [ -s /run/credentials/entropy-control.service/admin-token ]'
}

step_install_worker() {
    check "apt installs entropy-worker in $WRK (offline)" install_debs "$WRK" entropy-worker || return 1
    check "user entropy-worker exists; the unconfigured worker skipped itself (no token yet)" csh "$WRK" '
        getent passwd entropy-worker >/dev/null && ! systemctl is-active -q entropy-worker.service &&
        ! systemctl is-failed -q entropy-worker.service'
    # Configure it as an operator would: the control plane's worker token, its URL.
    local r=$SYS_WORK/$WRK/root
    mkdir -p "$r/etc/entropy"
    install -m 0600 "$SYS_WORK/$CTL/root/etc/entropy/worker-token" "$r/etc/entropy/worker-token"
    printf '[worker]\ncontrol-url = http://%s:8420\npoll-interval = 1s\nheartbeat-interval = 2s\nidle-exit = 5min\n' \
        "$CTL_ADDR" >"$r/etc/entropy/worker.conf"
    check "entropy-worker.socket listens for wake-ups (worker not running)" csh "$WRK" '
        systemctl start entropy-worker.socket && systemctl is-active -q entropy-worker.socket &&
        ! systemctl is-active -q entropy-worker.service'
}

step_socket_activation() {
    # Any datagram on the socket makes systemd start the worker (an unauthenticated one is then
    # dropped by the worker, which polls at once anyway).
    cexec "$CTL" bash -c "echo wake > /dev/udp/$WRK_ADDR/8421"
    check "a wake-up datagram starts entropy-worker.service by socket activation" \
        wait_until 20 unit_active "$WRK" entropy-worker.service
    check "the worker registers with the control plane across the link" \
        wait_until 20 csh "$CTL" "entropyctl --no-pager --no-legend list-workers | grep -q ONLINE"
}

JOB1=
JOB2=
step_submit_and_run() {
    JOB1=$(cexec "$CTL" entropyctl submit -- /bin/echo hello-from-entropyctl 2>"$SYS_WORK/submit.err" | tail -n 1 | awk '{print $NF}')
    if [ -n "$JOB1" ]; then tap_ok "entropyctl submit gives job $JOB1"; else diag <"$SYS_WORK/submit.err"; tap_not_ok "entropyctl submit gives a job id"; fi
    JOB2=$(cexec "$CTL" busctl --system call org.entropy.Control1 /org/entropy/Control1 org.entropy.Control1.Manager \
        SubmitJob 'a{sv}' 2 command s /bin/echo args as 1 hello-from-busctl 2>"$SYS_WORK/busctl.err" | awk '{print $2}' | tr -d '"')
    if [ -n "$JOB2" ]; then tap_ok "busctl SubmitJob gives job $JOB2"; else diag <"$SYS_WORK/busctl.err"; tap_not_ok "busctl SubmitJob gives a job id"; fi
    local j
    for j in $JOB1 $JOB2; do
        check "job $j runs on the worker in $WRK and completes" wait_until 45 job_is "$j" COMPLETED
    done
    [ -n "$JOB1" ] && check "job $JOB1 ran on the worker host $WRK" \
        csh "$CTL" "entropyctl --no-pager -o json status $JOB1 | grep -q '\"worker_id\": *\"$WRK-'"
}

# A job's process that leaves its process group (setsid) ends with the job: the unit delegates
# its cgroup (Delegate=yes), and each job runs in a cgroup of its own below the worker's.
step_job_cgroups() {
    local j
    check "the worker runs each job in a cgroup of its own (Delegate=yes)" csh "$WRK" \
        "journalctl --no-pager -u entropy-worker.service | grep -q 'Each job runs in a cgroup of its own below'"
    j=$(cexec "$CTL" entropyctl submit -- /bin/sh -c \
        'setsid sh -c "touch /tmp/left; exec sleep 300" </dev/null >/dev/null 2>&1 & until [ -e /tmp/left ]; do sleep 0.05; done' |
        tail -n 1 | awk '{print $NF}')
    [ -n "$j" ] || { tap_not_ok "submit a job that leaves a setsid() process behind"; return; }
    check "job $j, which leaves a setsid() process behind, completes" wait_until 45 job_is "$j" COMPLETED
    check "and that process is gone with it" wait_until 15 csh "$WRK" "! pgrep -u entropy-worker -x sleep"
}

step_journal() {
    local j=$JOB1 ev
    [ -n "$j" ] || { tap_not_ok "journal: a job to look up (entropyctl submit gave none)"; return; }
    cexec "$CTL" journalctl --no-pager -o json "ENTROPY_JOB_ID=$j" >"$SYS_WORK/journal-$j.json" 2>&1
    for ev in job.submitted job.assigned job.running job.completed; do
        check "journalctl ENTROPY_JOB_ID=$j shows $ev with its MESSAGE_ID" python3 -c '
import json, re, sys
ev, path = sys.argv[1], sys.argv[2]
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("ENTROPY_EVENT") == ev and re.fullmatch("[0-9a-f]{32}", e.get("MESSAGE_ID", "")):
        sys.exit(0)
sys.exit("no %s entry with a MESSAGE_ID" % ev)' "$ev" "$SYS_WORK/journal-$j.json"
    done
    check "journalctl -x shows the catalog text for the job's events" \
        csh "$CTL" "journalctl --no-pager -x ENTROPY_JOB_ID=$j | grep -q 'Subject: Entropy job'"
}

# journald drops what a service logs past its rate limit (RateLimitBurst=, per 30 s by default):
# the unit raises it for the control plane, whose audit copies must all arrive. Checked with a
# global limit far below what 120 submissions log.
journal_submitted() {
    cexec "$CTL" journalctl --no-pager -q -o cat --output-fields=ENTROPY_JOB_ID --since="$1" \
        _SYSTEMD_UNIT=entropy-control.service ENTROPY_EVENT=job.submitted
}
journal_has_all() { [ -z "$(journal_submitted "$1" | sort | comm -13 - "$2")" ]; }
step_journal_not_rate_limited() {
    local d=$SYS_WORK/$CTL/root/etc/systemd/journald.conf.d since ids=$SYS_WORK/rate-limit-ids
    mkdir -p "$d"
    printf '[Journal]\nRateLimitIntervalSec=30s\nRateLimitBurst=10\n' >"$d/test-ratelimit.conf"
    csh "$CTL" 'systemctl restart systemd-journald' >/dev/null 2>&1
    since=$(cexec "$CTL" date '+%Y-%m-%d %H:%M:%S')
    # A requirement no worker has: the jobs stay PENDING, out of the later steps' way.
    cexec "$CTL" sh -c 'for i in $(seq 120); do entropyctl submit --requirement=no-such-capability -- /bin/true | tail -n 1; done' \
        2>/dev/null | awk '{print $NF}' | sort >"$ids"
    check "120 submissions in a row under journald's RateLimitBurst=10 (got $(grep -c . "$ids"))" \
        test "$(grep -c . "$ids")" = 120
    if ! check "the journal has the job.submitted entry of every one" wait_until 10 journal_has_all "$since" "$ids"; then
        journal_submitted "$since" | sort | comm -13 - "$ids" | sed 's/^/missing: /' | diag
    fi
    rm -f "$d/test-ratelimit.conf"
    csh "$CTL" 'systemctl restart systemd-journald' >/dev/null 2>&1
}

step_restart_mid_work() {
    local j n
    j=$(cexec "$CTL" entropyctl submit -- /bin/sh -c 'sleep 6; echo survived' | tail -n 1 | awk '{print $NF}')
    [ -n "$j" ] || { tap_not_ok "submit a long job"; return; }
    check "long job $j is RUNNING" wait_until 30 job_is "$j" RUNNING
    check "systemctl restart entropy-control while it runs" \
        csh "$CTL" 'systemctl restart entropy-control && systemctl is-active -q entropy-control'
    check "the job completes after the restart" wait_until 60 job_is "$j" COMPLETED
    check "nothing lost or repeated: one attempt" test "$(job_field "$j" attempt_count)" = 1
    n=$(cexec "$CTL" journalctl --no-pager -o cat --output-fields=ENTROPY_EVENT ENTROPY_JOB_ID="$j" ENTROPY_EVENT=job.completed | grep -c .)
    check "exactly one completion in the journal (got $n)" test "$n" = 1
}

# entropy-control(8), BACKUP AND RESTORE, as written there.
step_backup_restore() {
    local after
    check "entropyctl backup copies the running control plane's database, checked" csh "$CTL" '
        rm -f /root/control-backup.db &&
        entropyctl backup /root/control-backup.db | grep -q "^Copied /var/lib/entropy/control.db to /root/control-backup.db: "'
    check "it never replaces a file" csh "$CTL" '! entropyctl backup /root/control-backup.db 2>/dev/null'
    after=$(cexec "$CTL" entropyctl submit -- /bin/true | tail -n 1 | awk '{print $NF}')
    check "the copy restored (sockets and service stopped, -wal and -shm removed) serves again" csh "$CTL" '
        systemctl stop entropy-control.socket entropy-control.service && cd /var/lib/entropy &&
        rm -f control.db-wal control.db-shm && install -o entropy -g entropy -m 0600 /root/control-backup.db control.db &&
        systemctl start entropy-control.socket entropy-control.service && systemctl is-active -q entropy-control'
    [ -n "$JOB1" ] && check "with the jobs of the copy" wait_until 20 job_is "$JOB1" COMPLETED
    check "and without the job submitted after it" test -n "$after" -a -z "$(job_field "$after" status)"
}

step_upgrade() {
    local old
    old=$(main_pid "$CTL" entropy-control)
    check "reinstalling the packages (the upgrade path) restarts the control plane: the new version runs" \
        csh "$CTL" "[ -n '$old' ] && [ '$old' != 0 ] &&
            apt-get install -y -q --reinstall -o Dpkg::Use-Pty=0 /debs/entropy-control_*.deb &&
            systemctl is-active -q entropy-control && [ \"\$(systemctl show -P MainPID entropy-control)\" != '$old' ]"
    [ -n "$JOB1" ] && check "and keeps the job store" job_is "$JOB1" COMPLETED
    # The worker started by a wake-up (step_socket_activation) is still running (idle-exit 5min).
    local pid
    pid=$(main_pid "$WRK" entropy-worker.service)
    check "reinstalling entropy-worker keeps the wake-up socket active and the running worker running" \
        csh "$WRK" "[ -n '$pid' ] && [ '$pid' != 0 ] &&
            apt-get install -y -q --reinstall -o Dpkg::Use-Pty=0 /debs/entropy-worker_*.deb &&
            systemctl is-active -q entropy-worker.socket &&
            [ \"\$(systemctl show -P MainPID entropy-worker.service)\" = '$pid' ]"
    csh "$WRK" 'systemctl stop entropy-worker.service' >/dev/null 2>&1
    cexec "$CTL" bash -c "echo wake > /dev/udp/$WRK_ADDR/8421"
    check "after it, a wake-up datagram starts the stopped worker again" \
        wait_until 20 unit_active "$WRK" entropy-worker.service
}

step_watchdog() {
    local d=$SYS_WORK/$CTL/root/etc/systemd/system/entropy-control.service.d pid
    mkdir -p "$d"
    printf '[Service]\nWatchdogSec=3s\nRestartSec=500ms\n' >"$d/test-watchdog.conf"
    csh "$CTL" 'systemctl daemon-reload && systemctl restart entropy-control' >/dev/null 2>&1
    pid=$(main_pid "$CTL" entropy-control)
    if [ -z "$pid" ] || [ "$pid" = 0 ]; then tap_not_ok "watchdog: the control plane runs"; return; fi
    cexec "$CTL" kill -STOP "$pid"
    check "the watchdog restarts the hung (SIGSTOPped) control plane" wait_until 30 main_pid_changed "$pid"
    check "it is active again and the journal names the watchdog" wait_until 20 csh "$CTL" \
        "systemctl is-active -q entropy-control && journalctl --no-pager -u entropy-control | grep -q 'Watchdog timeout'"
    rm -f "$d/test-watchdog.conf"
    csh "$CTL" 'systemctl daemon-reload' >/dev/null 2>&1
}

step_purge() {
    # A per-GPU instance next to the socket-activated worker: removal stops them all.
    cp "$SYS_WORK/$WRK/root/etc/entropy/worker.conf" "$SYS_WORK/$WRK/root/etc/entropy/worker-0.conf"
    check "entropy-worker@0.service runs next to entropy-worker.socket and .service" csh "$WRK" '
        systemctl start entropy-worker@0.service && systemctl is-active -q entropy-worker@0.service &&
        systemctl is-active -q entropy-worker.socket && systemctl is-active -q entropy-worker.service'
    check "apt purge entropy-worker in $WRK removes its state and token, keeps the user" csh "$WRK" '
        apt-get purge -y -q -o Dpkg::Use-Pty=0 entropy-worker &&
        [ ! -e /var/lib/entropy-worker ] && [ ! -e /etc/entropy/worker-token ] &&
        [ ! -e /lib/systemd/system/entropy-worker.service ] && getent passwd entropy-worker >/dev/null'
    check "and its removal stopped entropy-worker.socket, .service and @0.service: no worker runs" csh "$WRK" '
        ! systemctl is-active -q entropy-worker.socket && ! systemctl is-active -q entropy-worker.service &&
        ! systemctl is-active -q entropy-worker@0.service && ! pgrep -x entropy-worker'
    check "apt purge entropy-control entropyctl in $CTL removes the store, tokens, units, keeps the user" csh "$CTL" '
        apt-get purge -y -q -o Dpkg::Use-Pty=0 entropy-control entropyctl &&
        [ ! -e /var/lib/entropy ] && [ ! -e /etc/entropy/admin-token ] && [ ! -e /etc/entropy/worker-token ] &&
        [ ! -e /lib/systemd/system/entropy-control.service ] && ! systemctl is-active -q entropy-control &&
        [ ! -e /usr/share/dbus-1/system.d/org.entropy.Control1.conf ] && getent passwd entropy >/dev/null'
}

run_entropy_steps() {
    step_install_control || { echo "Bail out! control plane not installed"; return 1; }
    step_install_worker || { echo "Bail out! worker not installed"; return 1; }
    step_socket_activation
    step_submit_and_run
    step_job_cgroups
    step_journal
    step_journal_not_rate_limited
    step_restart_mid_work
    step_backup_restore
    step_upgrade
    step_watchdog
    step_purge
}
