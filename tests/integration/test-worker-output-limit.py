#!/usr/bin/env python3
"""Integration tests of entropy-worker's output limit, max-output-size: a job writing past it is
stopped by SIGXFSZ and fails with the reason, its output kept up to the limit; a sparse stdout far
past it (what RLIMIT_FSIZE cannot stop) is cut, not hashed for hours; a job within it is unaffected;
a reload applies to the jobs started after it; a bad value stops the start."""

import json
import os
import signal

from entropy_test import binary, run, test
from worker_harness import WorkerProcess, require_daemons, sha256_file

require_daemons()

LIMIT = 65536


def limited_worker(t, cp, limit=LIMIT, **kw):
    return WorkerProcess(t, cp, "w1", options={"max-output-size": str(limit)}, **kw).start()


def run_file(w, job, name):
    """A stream of the job's run in the worker's state directory."""
    return os.path.join(w.state_dir, "artifacts", job["job_id"], job["assignment_id"], name)


def result(w, job_id):
    """The result the worker recorded and sent: the control plane keeps no artifact fields of a
    failed job, nor its failure_kind when it has no attempts left."""
    records = w.outbox(job_id)
    return json.loads(records[-1]["body"]) if records else {}


def fsize_limit(path):
    """The soft RLIMIT_FSIZE in a copy of /proc/self/limits."""
    with open(path) as f:
        for line in f:
            if line.startswith("Max file size"):
                return line.split()[3]
    return None


@test
def test_output_past_the_limit_stops_the_job_and_fails_it(t):
    """The job writes a megabyte to stdout: the write past the limit raises SIGXFSZ, at its default
    action in the job (the worker ignores it), which ends the job there. It fails, saying which
    stream went past which limit, and keeps the output up to the limit, checksummed."""
    cp = t.control_plane()
    w = limited_worker(t, cp)
    job_id = cp.submit("sh", args=["-c", "echo start >&2; exec head -c 1000000 /dev/zero"], max_attempts=1)
    job = cp.wait_job_state(job_id, ["FAILED", "COMPLETED"], timeout=15)
    t.eq(job["status"], "FAILED", "failed")
    error = job.get("last_error") or ""
    t.ok(f"stdout exceeded max-output-size ({LIMIT} bytes): cut to its first {LIMIT} bytes" in error,
         f"the reason names the stream and the limit: {error}")
    t.ok("killed by signal File size limit exceeded" in error, f"and how the job ended: {error}")
    t.eq(job.get("exit_code"), 128 + signal.SIGXFSZ, "exit code: killed by SIGXFSZ")
    sent = result(w, job_id)
    t.eq((sent.get("failure_kind"), sent.get("retryable")), ("output-limit", True), "failure kind, retryable")
    out = run_file(w, job, "stdout")
    t.eq(os.path.getsize(out), LIMIT, "stdout kept up to the limit")
    t.eq((sent.get("stdout_size"), sent.get("stdout_sha256")), (LIMIT, sha256_file(out)),
         "its size and checksum reported are the kept file's")
    with open(run_file(w, job, "stderr")) as f:
        t.eq(f.read(), "start\n", "stderr untouched")


@test
def test_job_that_takes_the_failed_write_and_exits_0_still_fails(t):
    """A shell script goes on after its writer was killed, and exits 0: its output is still cut
    short, so the job fails rather than completing with half its output."""
    cp = t.control_plane()
    w = limited_worker(t, cp)
    job_id = cp.submit("sh", args=["-c", "head -c 1000000 /dev/zero; echo carried on >&2; exit 0"], max_attempts=1)
    job = cp.wait_job_state(job_id, ["FAILED", "COMPLETED"], timeout=15)
    t.eq(job["status"], "FAILED", "failed")
    t.ok("stdout exceeded max-output-size" in (job.get("last_error") or ""), f"reason: {job.get('last_error')}")
    t.ok("exited with status 0" in (job.get("last_error") or ""), "though it exited 0")
    t.eq(os.path.getsize(run_file(w, job, "stdout")), LIMIT, "stdout kept up to the limit")


@test
def test_sparse_stdout_far_past_the_limit_is_not_hashed(t):
    """A terabyte of holes on stdout costs the job one ftruncate() and would cost the worker hours
    of hashing. The job's own attempt is stopped by RLIMIT_FSIZE; one the limit cannot stop (made
    here from outside the job, as a job able to raise its limit could) is cut to the limit when the
    job ends: the job fails promptly, and the file left is the limit's size."""
    cp = t.control_plane()
    w = limited_worker(t, cp)
    own = cp.submit("sh", args=["-c", "exec truncate -s 1T /proc/self/fd/1"], max_attempts=1)
    job = cp.wait_job_state(own, "FAILED", timeout=10)
    t.ok(f"the job tried to make a file larger than max-output-size ({LIMIT} bytes)" in (job.get("last_error") or ""),
         f"the job's own truncate is refused, and said so: {job.get('last_error')}")
    t.eq(os.path.getsize(run_file(w, job, "stdout")), 0, "its stdout stays empty")

    gate = os.path.join(t.tmp, "gate")
    job_id = cp.submit("sh", args=["-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; echo done"], max_attempts=1)
    box = {}

    def running():
        box["job"] = cp.job(job_id)
        return box["job"]["status"] == "RUNNING" and os.path.exists(run_file(w, box["job"], "stdout.tmp"))
    t.wait_for(running, 10, "the job to run")
    os.truncate(run_file(w, box["job"], "stdout.tmp"), 1 << 40)
    open(gate, "w").close()
    job = cp.wait_job_state(job_id, ["FAILED", "COMPLETED"], timeout=10)
    t.eq(job["status"], "FAILED", "failed within seconds, not hours of hashing")
    t.ok(f"stdout exceeded max-output-size ({LIMIT} bytes)" in (job.get("last_error") or ""),
         f"reason: {job.get('last_error')}")
    out = run_file(w, job, "stdout")
    t.eq(os.path.getsize(out), LIMIT, "stdout cut to the limit")
    t.eq(result(w, job_id).get("stdout_sha256"), sha256_file(out), "its checksum is the kept file's")


@test
def test_output_within_the_limit_is_unaffected(t):
    """Exactly the limit on stdout, and on stderr, is within it."""
    cp = t.control_plane()
    w = limited_worker(t, cp)
    job_id = cp.submit("sh", args=["-c", f"head -c {LIMIT} /dev/zero; head -c {LIMIT} /dev/zero >&2"])
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq((job["status"], job.get("exit_code")), ("COMPLETED", 0), f"completed: {job.get('last_error')}")
    for name in ("stdout", "stderr"):
        path = run_file(w, job, name)
        t.eq(os.path.getsize(path), LIMIT, f"all of {name} kept")
        t.eq(job.get(f"{name}_sha256"), sha256_file(path), f"{name} checksum")


@test
def test_zero_means_no_limit_and_is_the_default(t):
    cp = t.control_plane()
    w = limited_worker(t, cp, limit=0)
    job_id = cp.submit("sh", args=["-c", f"head -c {4 * LIMIT} /dev/zero"])
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq(job["status"], "COMPLETED", f"0: no limit ({job.get('last_error')})")
    t.eq(os.path.getsize(run_file(w, job, "stdout")), 4 * LIMIT, "all the output kept")
    w.stop()

    w = WorkerProcess(t, cp, "w2").start()
    job_id = cp.submit("cat", args=["/proc/self/limits"])
    job = cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    t.eq(fsize_limit(run_file(w, job, "stdout")), "unlimited",
         "by default (0) no limit: RLIMIT_FSIZE would hold every file a job writes to it")


@test
def test_reload_applies_to_jobs_started_after_it(t):
    cp = t.control_plane()
    conf = os.path.join(t.tmp, "worker.conf")
    with open(conf, "w") as f:
        f.write(f"[worker]\nmax-output-size = {LIMIT}\n")
    w = WorkerProcess(t, cp, "w1", options={"config": conf}).start()
    first = cp.wait_job_state(cp.submit("cat", args=["/proc/self/limits"]), "COMPLETED", timeout=15)
    t.eq(fsize_limit(run_file(w, first, "stdout")), str(LIMIT + 1), "the file's limit")
    with open(conf, "w") as f:
        f.write(f"[worker]\nmax-output-size = {2 * LIMIT}\n")
    w.signal(signal.SIGHUP)
    w.wait_log("Configuration reloaded.")
    second = cp.wait_job_state(cp.submit("cat", args=["/proc/self/limits"]), "COMPLETED", timeout=15)
    t.eq(fsize_limit(run_file(w, second, "stdout")), str(2 * LIMIT + 1), "the reloaded limit")


@test
def test_bad_value_stops_the_start(t):
    for value, why in (("1G", "expected an integer"), ("-1", "out of range")):
        r = t.run_cmd([binary("entropy-worker"), "--config=", "--worker-id=w1", f"--max-output-size={value}"])
        t.ok(r.returncode != 0, f"--max-output-size={value}: exit status {r.returncode}")
        t.ok(f"Invalid value '{value}' for --max-output-size: {why}" in r.stderr, f"and says why: {r.stderr!r}")
    r = t.run_cmd([binary("entropy-worker"), "--help"])
    t.ok("--max-output-size=BYTES" in r.stdout, "--help lists it")


if __name__ == "__main__":
    run()
