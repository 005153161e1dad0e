#!/usr/bin/env python3
"""Worker behaviour that needs the control plane's support: abort and reassignment named in the
heartbeat answer (abort_jobs), non-retryable failures ("retryable": false on /fail), and wake-ups
sent to an idle worker's wake port when work arrives (docs/http-api.md)."""

import os
import time

from entropy_test import run, test
from worker_harness import WorkerProcess, free_udp_port, require_daemons

require_daemons()


@test
def test_abort_kills_the_process_group(t):
    cp = t.control_plane()
    pidfile = os.path.join(t.tmp, "child.pid")
    w = WorkerProcess(t, cp, "w1").start()
    job_id = cp.submit(command="sh", args=["-c", f"sleep 100 & echo $! > {pidfile}; wait"])
    cp.wait_job_state(job_id, "RUNNING")
    t.wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 5, "the child's pid")
    child = int(open(pidfile).read())

    def kill_child():
        try:
            os.kill(child, 9)
        except ProcessLookupError:
            pass
    t.cleanups.append(kill_child)  # if the abort never comes, the test must not leave it behind
    status, body = cp.admin("POST", "/abort", {"job_id": job_id, "reason": "test"})
    t.require(status == 200, f"abort answered {status} {body}")

    def gone():
        try:
            with open(f"/proc/{child}/stat") as f:
                return ") Z" in f.read()
        except FileNotFoundError:
            return True
    t.wait_for(gone, 3, "the job's child process to be killed with its group")
    t.wait_for(lambda: [r for r in w.runs(job_id) if r["outcome"] == "aborted"], 3, "the run recorded as aborted")


@test
def test_policy_refusal_is_not_retried(t):
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1", options={"command-allowlist": "echo"}).start()
    job_id = cp.submit(command="touch", args=[os.path.join(t.tmp, "x")], max_attempts=3)
    job = cp.wait_job_state(job_id, "FAILED", timeout=15)
    t.eq(job["attempt_count"], 1, "refused once, not retried")


@test
def test_control_plane_wakes_an_idle_worker(t):
    cp = t.control_plane()
    port = free_udp_port()
    w = WorkerProcess(t, cp, "w1", options={"poll-interval": "30s", "wake-listen": f"127.0.0.1:{port}"}).start()
    w.wait_log("No work offered")
    submitted = time.monotonic()
    job_id = cp.submit(command="true")
    cp.wait_job_state(job_id, "COMPLETED", timeout=5)
    t.ok(time.monotonic() - submitted < 1.5, "started within a second of the submission")


@test
def test_control_plane_wakes_a_worker_whose_id_is_not_ascii(t):
    # Registration accepts UTF-8 ids; the wake datagram carries them percent-encoded
    # (entropy-wake1e, common/wake-proto.h), so such a worker is woken like any other.
    cp = t.control_plane()
    port = free_udp_port()
    w = WorkerProcess(t, cp, "w1", worker_id="wörker-⚡",
                      options={"poll-interval": "30s", "wake-listen": f"127.0.0.1:{port}"}).start()
    w.wait_log("No work offered")
    submitted = time.monotonic()
    job_id = cp.submit(command="true")
    job = cp.wait_job_state(job_id, "COMPLETED", timeout=5)
    t.ok(time.monotonic() - submitted < 1.5, "started within a second of the submission")
    t.eq(job["worker_id"], "wörker-⚡", "run by the worker with that id")
    t.ok("Woken up by the control plane" in w.log_text(), "the worker says it was woken")


if __name__ == "__main__":
    run()
