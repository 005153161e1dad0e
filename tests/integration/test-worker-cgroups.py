#!/usr/bin/env python3
"""Integration tests of entropy-worker's job cgroups (job-cgroups, worker/job-cgroup.h): a job runs
in a cgroup of its own below the worker's, so that a process the job started and that left the
job's process group (setsid) ends with the job: when it exits, when it is stopped (SIGTERM too),
and when the worker was killed and starts again. Where the worker's cgroup is not delegated to it,
auto runs the job in the worker's cgroup, and says so.

Each test makes a cgroup of its own in the cgroup v2 hierarchy and starts the worker in it, as
systemd starts entropy-worker.service in its delegated cgroup: that needs root (SKIP without)."""

import os
import signal
import time

from entropy_test import binary, missing_dependency, require_root, run, test
from worker_harness import WorkerProcess, require_daemons

require_daemons()
require_root()


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


MOUNT = cgroup2_mount()
if not MOUNT or not os.access(MOUNT, os.W_OK):
    missing_dependency("no writable cgroup v2 hierarchy (root should have one on Linux 5.14 or later)")


def cgroup_tree(path):
    """path and the cgroups below it, deepest first."""
    below = [os.path.join(root, d) for root, dirs, _ in os.walk(path, topdown=False) for d in dirs]
    return below + [path]


def kill_cgroup_tree(path):
    """Kills everything in path and below and removes the cgroups, deepest first: a cgroup goes
    once its killed processes have exited (bounded: 10 s in all)."""
    tree = cgroup_tree(path)
    for d in tree:
        try:
            with open(os.path.join(d, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
    deadline = time.monotonic() + 10
    for d in tree:
        while os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def test_cgroup(t, delegated=False):
    """A cgroup for this test's worker; with delegated, marked as systemd marks a Delegate=yes one."""
    path = os.path.join(MOUNT, f"entropy-test-{os.getpid()}-{t.name}{'-delegated' if delegated else ''}")
    os.mkdir(path)
    t.cleanups.append(lambda: kill_cgroup_tree(path))
    if delegated:
        os.setxattr(path, "trusted.delegate", b"1")
    return path


def worker_in(t, cp, cgroup, **options):
    """The worker, started in cgroup (a shell moves itself there and execs the worker)."""
    wrapper = ["sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', cgroup]
    opts = {"job-cgroups": "yes"}
    opts.update(options)
    return WorkerProcess(t, cp, "w1", wrapper=wrapper, options=opts).start()


def job_cgroups(cgroup):
    return sorted(d for d in os.listdir(cgroup) if d.startswith("job-"))


def alive(pid):
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_pid(t, path):
    t.wait_for(lambda: os.path.exists(path) and open(path).read().strip(), 10, f"{path} written")
    return int(open(path).read().strip())


def escape(pidfile, then, on_term=None):
    """A job's shell script: a background process leaves the job's process group and session
    (setsid) and runs on, writing its pid to pidfile once it has left (and, with on_term, once it
    traps SIGTERM to run that); the job writes its own cgroup to its stdout, then runs `then`."""
    trap = f'trap "{on_term}; exit 0" TERM; ' if on_term else ""
    return (f"setsid sh -c '{trap}echo $$ > {pidfile}.new && mv {pidfile}.new {pidfile}; "
            f"while :; do sleep 0.05; done' </dev/null >/dev/null 2>&1 & cat /proc/self/cgroup; {then}")


def wait_for_file(path):
    return f"until test -e {path}; do sleep 0.01; done"


@test
def test_a_process_that_left_the_group_ends_with_its_job(t):
    """The job exits at once, leaving a setsid() process behind: without a cgroup of its own that
    process runs on after the job is COMPLETED (the group kill misses it); in one it is killed."""
    cp = t.control_plane()
    cg = test_cgroup(t)
    w = worker_in(t, cp, cg)
    pidfile = os.path.join(t.tmp, "escaped.pid")
    job_id = cp.submit("sh", args=["-c", escape(pidfile, then=wait_for_file(pidfile))])
    job = cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    pid = read_pid(t, pidfile)
    t.wait_for(lambda: not alive(pid), 10, f"the setsid() process {pid} killed with its job")
    with open(os.path.join(w.state_dir, "artifacts", job_id, job["assignment_id"], "stdout")) as f:
        lines = [x for x in f.read().splitlines() if x.startswith("0::")]
    rel = "/" + os.path.relpath(cg, MOUNT)
    t.ok(len(lines) == 1 and lines[0].startswith(f"0::{rel}/job-"),
         f"the job ran in a cgroup of its own below the worker's {rel}: {lines}")
    t.wait_for(lambda: job_cgroups(cg) == [], 10, "the job's cgroup removed", lambda: job_cgroups(cg))
    t.ok("Each job runs in a cgroup of its own below" in w.log_text(), "the worker says so at start-up")


@test
def test_a_stopped_job_stops_what_left_its_group_with_sigterm(t):
    """A job that times out is stopped with SIGTERM, then SIGKILL: a process of it outside its
    process group gets the SIGTERM too (it may want to clean up), not only the final SIGKILL, and
    is gone when its job is."""
    cp = t.control_plane()
    cg = test_cgroup(t)
    worker_in(t, cp, cg, **{"kill-grace": "5s"})
    pidfile = os.path.join(t.tmp, "escaped.pid")
    termfile = os.path.join(t.tmp, "term")
    # The job's own process waits for that (when it exits, what is left is killed at once).
    script = escape(pidfile, then=f"trap '' TERM; {wait_for_file(termfile)}", on_term=f"echo TERM > {termfile}")
    job_id = cp.submit("sh", args=["-c", script], timeout_ms=3000, max_attempts=1)
    pid = read_pid(t, pidfile)
    t.ok(alive(pid), "the setsid() process runs while its job does")
    job = cp.wait_job_state(job_id, "FAILED", timeout=15)
    t.ok("timed out" in (job.get("last_error") or ""), f"the job timed out: {job.get('last_error')}")
    t.wait_for(lambda: os.path.exists(termfile), 10, "the setsid() process got SIGTERM")
    t.wait_for(lambda: not alive(pid), 10, f"and is gone ({pid})")
    t.wait_for(lambda: job_cgroups(cg) == [], 10, "the job's cgroup removed", lambda: job_cgroups(cg))


@test
def test_a_restarted_worker_kills_what_its_predecessor_left(t):
    """The worker is SIGKILLed while its job runs: entropy-keeper kills the job's group, but not
    what left it. The next worker process kills that and removes the cgroup before it runs jobs."""
    cp = t.control_plane()
    cg = test_cgroup(t)
    w = worker_in(t, cp, cg)
    pidfile = os.path.join(t.tmp, "escaped.pid")
    cp.submit("sh", args=["-c", escape(pidfile, then="exec sleep 300")], max_attempts=1)
    pid = read_pid(t, pidfile)
    w.kill9()
    t.ok(alive(pid), f"the setsid() process outlives the killed worker: {open(f'/proc/{pid}/stat').read() if os.path.exists(f'/proc/{pid}/stat') else 'gone'}")
    t.eq(len(job_cgroups(cg)), 1, "in the job's cgroup, still there")
    w.start()
    t.wait_for(lambda: not alive(pid), 10, f"the new worker process killed it ({pid})")
    t.wait_for(lambda: job_cgroups(cg) == [], 10, "and removed the cgroup", lambda: job_cgroups(cg))
    t.ok("of an earlier worker process" in w.log_text(), "and said so")


@test
def test_auto_uses_a_delegated_cgroup_only(t):
    """auto (the default): in a cgroup that is not delegated (root's, unmarked) jobs run in the
    worker's cgroup and the worker says why; in one systemd marked as delegated, in their own."""
    cp = t.control_plane()
    plain = test_cgroup(t)
    w = worker_in(t, cp, plain, **{"job-cgroups": "auto"})
    t.ok("Job cgroups not used" in w.log_text() and "not delegated" in w.log_text(),
         "not delegated: no job cgroups, and the log says why")
    job_id = cp.submit("sh", args=["-c", "cat /proc/self/cgroup"])
    job = cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    with open(os.path.join(w.state_dir, "artifacts", job_id, job["assignment_id"], "stdout")) as f:
        text = f.read()
    t.ok(f"0::/{os.path.relpath(plain, MOUNT)}\n" in text, f"the job ran in the worker's cgroup: {text!r}")
    w.stop()

    delegated = test_cgroup(t, delegated=True)
    w = worker_in(t, cp, delegated, **{"job-cgroups": "auto"})
    pidfile = os.path.join(t.tmp, "escaped.pid")
    job_id = cp.submit("sh", args=["-c", escape(pidfile, then=wait_for_file(pidfile))])
    cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    pid = read_pid(t, pidfile)
    t.wait_for(lambda: not alive(pid), 10, "delegated: the setsid() process killed with its job")


@test
def test_a_bad_value_stops_the_start(t):
    r = t.run_cmd([binary("entropy-worker"), "--config=", "--worker-id=w1", "--job-cgroups=maybe"])
    t.ok(r.returncode != 0, f"the worker does not start: exit status {r.returncode}")
    t.ok("Invalid --job-cgroups 'maybe': expected auto, yes or no." in r.stderr, f"and says why: {r.stderr!r}")
    r = t.run_cmd([binary("entropy-worker"), "--help"])
    t.ok("--job-cgroups=auto|yes|no" in r.stdout, "--help lists it")


if __name__ == "__main__":
    run()
